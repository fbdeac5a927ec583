//! `skiff bench cluster`: the control plane at scale on one machine, with hollow nodes (issue 4's
//! figures), everything in this process over one API server on the embedded store:
//!
//! - **scheduler throughput**: N Nodes and P pending pods are written first, then the scheduler
//!   starts; pods bound per second until the last is bound, beside upstream kube-scheduler's CI
//!   threshold (about 810 pods/s at 5,000 nodes);
//! - **a big Deployment**: R replicas on H hollow nodes with the whole control plane (controllers,
//!   scheduler, hollow kubelets): apply → Available, then a full rolling update, with the process's
//!   CPU seconds and peak RSS;
//! - **pod replacement**: pods of a running Deployment deleted one at a time: delete → replacement
//!   bound, p50/p99.

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt as _, stream};
use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentStatus},
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use super::api::{open_sqlite, serve_in_process};

/// Options of `skiff bench cluster`.
#[derive(clap::Args, Debug)]
pub struct ClusterBenchArgs {
    /// Node counts of the scheduler cells, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000")]
    pub nodes: Vec<usize>,
    /// Pending pods each scheduler cell binds (0 skips the scheduler cells).
    #[arg(long, default_value_t = 10_000)]
    pub pods: usize,
    /// Replicas of the big Deployment (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    pub replicas: i32,
    /// Hollow nodes it runs on.
    #[arg(long, default_value_t = 1000)]
    pub hollow_nodes: usize,
    /// Pods deleted one at a time for the replacement figure.
    #[arg(long, default_value_t = 50)]
    pub replacements: usize,
}

/// Requests in flight while filling the store (not timed).
const FILL: usize = 64;
/// Upstream kube-scheduler's CI threshold at 5,000 nodes (scheduler_perf, SchedulingBasic).
const UPSTREAM_PODS_PER_SECOND: f64 = 810.0;

/// Runs every cell and prints the figures.
pub async fn run(args: ClusterBenchArgs) -> anyhow::Result<()> {
    println!(
        "skiff bench cluster (one process: API server on SQLite, controllers, scheduler, hollow nodes)\n"
    );
    println!(
        "scheduler throughput ({} pending pods, bound through pods/binding)",
        args.pods
    );
    for &nodes in args.nodes.iter().filter(|_| args.pods > 0) {
        let rate = scheduler_cell(nodes, args.pods).await?;
        println!(
            "  {nodes:>6} nodes: {rate:>8.0} pods/s   (upstream kube-scheduler CI threshold: {UPSTREAM_PODS_PER_SECOND:.0} pods/s at 5,000 nodes; target ≥ 1,000)"
        );
    }
    if args.replicas > 0 {
        deployment_cells(&args).await?;
    }
    Ok(())
}

/// A fresh API server in a temp dir; dropped → stopped and removed.
struct Server {
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

async fn server() -> anyhow::Result<Server> {
    let dir = tempfile::Builder::new()
        .prefix("skiff-bench-cluster-")
        .tempdir()?;
    let store = open_sqlite(&dir.path().join("state.db"))?;
    let (_api, client, stop) = serve_in_process(dir.path(), store).await?;
    Ok(Server {
        client,
        _stop: stop,
        _dir: dir,
    })
}

/// Writes `n` Ready nodes with 4 CPUs, 16 GiB and 110 pods each.
async fn add_nodes(client: &Client, n: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    stream::iter(0..n)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let name = format!("node-{i}");
                let node: Node = serde_json::from_value(
                    json!({ "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name } } }),
                )?;
                nodes.create(&PostParams::default(), &node).await?;
                let status = json!({ "status": {
                    "allocatable": { "cpu": "4", "memory": "16Gi", "pods": "110" },
                    "capacity": { "cpu": "4", "memory": "16Gi", "pods": "110" },
                    "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }] } });
                nodes
                    .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(FILL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(())
}

/// Seconds until `want` pods carry a node, counted on one watch.
async fn wait_bound(client: &Client, want: usize, start: Instant) -> anyhow::Result<Duration> {
    let mut events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut bound = HashSet::new();
    while let Some(pod) = events.next().await {
        // A watch closed under load (too slow a reader) is resumed by the watcher: keep counting.
        let Ok(pod) = pod else { continue };
        if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
            bound.insert(pod.metadata.uid.clone().unwrap_or_default());
            if bound.len() >= want {
                return Ok(start.elapsed());
            }
        }
    }
    anyhow::bail!("the pod watch ended")
}

async fn scheduler_cell(nodes: usize, pods: usize) -> anyhow::Result<f64> {
    let server = server().await?;
    add_nodes(&server.client, nodes)
        .await
        .context("cannot add the nodes")?;
    let api: Api<Pod> = Api::namespaced(server.client.clone(), "default");
    stream::iter(0..pods)
        .map(|i| {
            let api = api.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": { "name": format!("pending-{i}") },
                    "spec": { "containers": [{ "name": "c", "image": "busybox",
                               "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } } }] } }))?;
                api.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(FILL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()
        .context("cannot create the pods")?;
    let start = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let scheduler = tokio::spawn(skiff_scheduler::run(server.client.clone(), async move {
        let _ = stopped.await;
    }));
    let took = wait_bound(&server.client, pods, start).await?;
    let _ = stop.send(());
    let _ = scheduler.await;
    Ok(pods as f64 / took.as_secs_f64())
}

/// (user+system CPU seconds, peak RSS in MB) of this process so far.
fn usage() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of /proc/<pid>/stat (11 and 12 after the command name).
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

/// Whether the Deployment is rolled out as `kubectl rollout status` decides it, and its status.
async fn rolled_out(api: &Api<Deployment>, name: &str, generation: i64) -> (bool, Option<DeploymentStatus>) {
    let Ok(d) = api.get(name).await else {
        return (false, None);
    };
    let (Some(spec), Some(status)) = (d.spec, d.status) else {
        return (false, None);
    };
    let want = spec.replicas.unwrap_or(1);
    let done = status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.available_replicas == Some(want);
    (done, Some(status))
}

/// Waits until the Deployment is rolled out, printing its status every [`PROGRESS_EVERY`] so a slow
/// phase (creating, becoming ready, scaling the old ReplicaSet down) shows where the time goes.
async fn wait_rolled_out(api: &Api<Deployment>, name: &str, generation: i64, start: Instant) -> Duration {
    let mut next_report = PROGRESS_EVERY;
    loop {
        let (done, status) = rolled_out(api, name, generation).await;
        if done {
            return start.elapsed();
        }
        if start.elapsed() >= next_report {
            next_report += PROGRESS_EVERY;
            let s = status.unwrap_or_default();
            println!(
                "    {:>5.1} s: replicas {:>6}  updated {:>6}  ready {:>6}  available {:>6}",
                start.elapsed().as_secs_f64(),
                s.replicas.unwrap_or(0),
                s.updated_replicas.unwrap_or(0),
                s.ready_replicas.unwrap_or(0),
                s.available_replicas.unwrap_or(0),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How often [`wait_rolled_out`] prints progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Controller options for the bench: a cluster CIDR with a /24 for each of up to 4,096 hollow nodes
/// (the default /16 has 256).
fn controller_options() -> anyhow::Result<skiff_controllers::Options> {
    let mut options = skiff_controllers::Options::default();
    options.nodeipam.cluster_cidr = "10.128.0.0/12".parse()?;
    Ok(options)
}

async fn deployment_cells(args: &ClusterBenchArgs) -> anyhow::Result<()> {
    let server = server().await?;
    let c = server.client.clone();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signal = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let (cpu0, _) = usage();
    let mut tasks = vec![
        tokio::spawn(
            skiff_controllers::ControllerManager::new(c.clone(), controller_options()?).run(signal()),
        ),
        tokio::spawn(skiff_scheduler::run(c.clone(), signal())),
    ];
    let hollow = skiff_kubelet::hollow::HollowOptions {
        count: args.hollow_nodes,
        ..Default::default()
    };
    let hollow_client = c.clone();
    let hollow_signal = signal();
    tasks.push(tokio::spawn(async move {
        if let Err(e) = skiff_kubelet::hollow::run_hollow_nodes(hollow_client, hollow, hollow_signal).await {
            eprintln!("hollow nodes: {e}");
        }
    }));
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": { "name": "big" },
        "spec": { "replicas": args.replicas, "selector": { "matchLabels": { "app": "big" } },
                  "template": { "metadata": { "labels": { "app": "big" } },
                                "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } } } }))?;
    println!(
        "\na Deployment of {} replicas on {} hollow nodes (whole control plane in this process)",
        args.replicas, args.hollow_nodes
    );
    let start = Instant::now();
    deployments.create(&PostParams::default(), &d).await?;
    let available = wait_rolled_out(&deployments, "big", 1, start).await;
    println!(
        "  apply → Available        {:>8.1} s   (target ≤ 30 s)",
        available.as_secs_f64()
    );
    let start = Instant::now();
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": "busybox:1.37" }] } } } });
    deployments
        .patch("big", &PatchParams::default(), &Patch::Strategic(patch))
        .await?;
    let rollout = wait_rolled_out(&deployments, "big", 2, start).await;
    println!(
        "  rolling update            {:>8.1} s   (target ≤ 60 s)",
        rollout.as_secs_f64()
    );
    let (cpu1, peak) = usage();
    println!(
        "  CPU                       {:>8.1} s   (API server, controllers, scheduler and hollow nodes together)",
        cpu1 - cpu0
    );
    println!("  peak RSS                  {:>8.0} MB", peak);

    // Replacement: delete one pod at a time and time until a new one is bound, as a watch sees it
    // (polling lists of thousands of pods would time the lists).
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let bound_watch = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let config = watcher::Config::default().labels("app=big");
            let mut events = watcher(pods, config).default_backoff().applied_objects().boxed();
            let mut seen = HashSet::new();
            while let Some(pod) = events.next().await {
                let Ok(pod) = pod else { continue };
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if pod.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() && seen.insert(uid.clone())
                {
                    let _ = bound_tx.send(uid);
                }
            }
        })
    };
    // The watch first reports every pod already bound.
    let mut known: HashSet<String> = HashSet::new();
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(3) {
        match tokio::time::timeout(Duration::from_millis(500), bound_rx.recv()).await {
            Ok(Some(uid)) => {
                known.insert(uid);
            }
            _ => break,
        }
    }
    let mut times = Vec::new();
    for _ in 0..args.replacements {
        let list = pods
            .list(&ListParams::default().labels("app=big").limit(50))
            .await?;
        let Some(victim) = list
            .items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
        else {
            break;
        };
        let start = Instant::now();
        pods.delete(&victim.name_any(), &DeleteParams::default()).await?;
        while let Ok(Some(uid)) = tokio::time::timeout(Duration::from_secs(30), bound_rx.recv()).await {
            if known.insert(uid) {
                times.push(start.elapsed());
                break;
            }
        }
    }
    bound_watch.abort();
    times.sort();
    if !times.is_empty() {
        let pct = |p: f64| {
            times[((times.len() as f64 * p).ceil() as usize)
                .saturating_sub(1)
                .min(times.len() - 1)]
        };
        println!(
            "  pod deleted → replacement bound: p50 {:.0} ms, p99 {:.0} ms over {} deletes (target: within 1 s)",
            pct(0.5).as_secs_f64() * 1000.0,
            pct(0.99).as_secs_f64() * 1000.0,
            times.len()
        );
    }
    stop.send_replace(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    Ok(())
}
