//! Hollow nodes (kubemark's and kwok's idea): many nodes in one process, each with the kubelet's node,
//! lease, pod-worker and status code over the [`FakeRuntime`], so the control plane can be exercised
//! and measured at the scale of a thousand nodes on one machine.
//!
//! What they share keeps a thousand of them cheap: one pod watch for all (pods with a node, each
//! handed to its node's workers), one Node watch (to learn the pod CIDRs node IPAM assigns), one
//! ticker renewing every Lease and one posting every status heartbeat.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::Value;

use crate::{
    lease,
    node::{self, NodeConfig},
    pod_workers::{NodeContext, PodWorkers},
    runtime::{ContainerRuntime, FakeRuntime, host_address},
};

/// The label every hollow node carries (its value: the name prefix of its group).
pub const HOLLOW_LABEL: &str = "skiff.dev/hollow";

/// How many hollow nodes, and what each offers.
#[derive(Clone, Debug)]
pub struct HollowOptions {
    /// How many nodes.
    pub count: usize,
    /// Nodes are named `<prefix>-<i>`.
    pub prefix: String,
    /// `capacity.cpu` of each.
    pub cpu: String,
    /// `capacity.memory` of each.
    pub memory: String,
    /// `capacity.pods` of each.
    pub pods: u32,
    /// How often Leases are renewed (upstream: 10 s).
    pub lease_interval: Duration,
    /// How often node status is posted when nothing changed (upstream's nodeStatusReportFrequency is
    /// 5 min; the Lease is the heartbeat).
    pub status_interval: Duration,
}

impl Default for HollowOptions {
    fn default() -> Self {
        Self {
            count: 1,
            prefix: "hollow".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
        }
    }
}

/// Requests in flight at once for registrations, renewals and heartbeats.
const CONCURRENCY: usize = 32;

/// Runs the hollow nodes until `shutdown`; an error only when they cannot register at all.
pub async fn run_hollow_nodes(
    client: Client,
    options: HollowOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), kube::Error> {
    let runtime = Arc::new(FakeRuntime::new(255));
    let configs: Vec<NodeConfig> = (0..options.count)
        .map(|i| NodeConfig {
            name: format!("{}-{i}", options.prefix),
            // Addresses only: nothing is ever sent to them.
            address: host_address("10.254.0.0/16", i as u32 + 1).unwrap_or_default(),
            cpu: options.cpu.clone(),
            memory: options.memory.clone(),
            pods: options.pods,
            ephemeral_storage: "100Gi".into(),
            runtime_version: runtime.version(),
            labels: vec![(HOLLOW_LABEL.into(), options.prefix.clone())],
        })
        .collect();
    let registered: Vec<(NodeConfig, Value)> = stream::iter(configs)
        .map(|cfg| {
            let client = client.clone();
            async move { node::register(&client, &cfg).await.map(|stored| (cfg, stored)) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    let mut nodes: HashMap<String, (NodeConfig, String, Arc<PodWorkers>)> = HashMap::new();
    for (cfg, stored) in registered {
        let context = Arc::new(NodeContext {
            client: client.clone(),
            node: cfg.name.clone(),
            host_ip: cfg.address.clone(),
            pod_cidr: std::sync::Mutex::new(stored["spec"]["podCIDR"].as_str().map(str::to_owned)),
            runtime: runtime.clone() as Arc<dyn ContainerRuntime>,
            backoff_base: crate::pod_workers::BACKOFF_BASE,
            // The fake runtime has no volume directory: hollow pods are never probed or mounted.
            probes: Arc::default(),
            volume_resync: crate::pod_workers::VOLUME_RESYNC,
            events: crate::events::PodEvents::disabled(),
            evicted: Default::default(),
            pressure: Default::default(),
        });
        let uid = stored["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        nodes.insert(cfg.name.clone(), (cfg, uid, Arc::new(PodWorkers::new(context))));
    }
    let nodes = Arc::new(nodes);
    tracing::info!(count = nodes.len(), prefix = %options.prefix, "hollow nodes registered");

    let stop_nodes = nodes.clone();
    let tasks = [
        tokio::spawn(renew_leases(
            client.clone(),
            nodes.clone(),
            options.lease_interval,
        )),
        tokio::spawn(post_status(
            client.clone(),
            nodes.clone(),
            options.status_interval,
        )),
        tokio::spawn(follow_nodes(
            client.clone(),
            nodes.clone(),
            options.prefix.clone(),
        )),
        tokio::spawn(follow_pods(client, nodes, runtime)),
    ];
    shutdown.await;
    for task in tasks {
        task.abort();
    }
    // Each worker holds its node's workers; dropping their channels is what ends them.
    for (_, _, workers) in stop_nodes.values() {
        workers.stop_all();
    }
    Ok(())
}

type Nodes = Arc<HashMap<String, (NodeConfig, String, Arc<PodWorkers>)>>;

async fn renew_leases(client: Client, nodes: Nodes, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        stream::iter(nodes.iter())
            .for_each_concurrent(CONCURRENCY, |(name, (_, uid, _))| {
                let client = client.clone();
                async move {
                    if let Err(e) = lease::renew(&client, name, uid).await {
                        tracing::warn!(node = %name, error = %e, "lease renewal failed");
                    }
                }
            })
            .await;
    }
}

async fn post_status(client: Client, nodes: Nodes, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // Registration just posted it.
    loop {
        tick.tick().await;
        stream::iter(nodes.iter())
            .for_each_concurrent(CONCURRENCY, |(_, (cfg, _, _))| {
                let client = client.clone();
                async move {
                    let stored = Api::<Node>::all(client.clone())
                        .get(&cfg.name)
                        .await
                        .ok()
                        .and_then(|n| serde_json::to_value(n).ok());
                    if let Err(e) =
                        node::update_status(&client, cfg, &stored.unwrap_or_default(), Default::default())
                            .await
                    {
                        tracing::warn!(node = %cfg.name, error = %e, "node status update failed");
                    }
                }
            })
            .await;
    }
}

/// Learns the pod CIDRs node IPAM gives the nodes.
async fn follow_nodes(client: Client, nodes: Nodes, prefix: String) {
    let config = watcher::Config::default().labels(&format!("{HOLLOW_LABEL}={prefix}"));
    let mut events = watcher(Api::<Node>::all(client), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(node) = event else { continue };
        let name = node.metadata.name.clone().unwrap_or_default();
        if let (Some((_, _, workers)), Some(cidr)) = (nodes.get(&name), node.spec.and_then(|s| s.pod_cidr)) {
            *workers.node().pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = Some(cidr);
        }
    }
}

/// One watch of the pods bound to any node, each handed to its node's workers.
async fn follow_pods(client: Client, nodes: Nodes, runtime: Arc<FakeRuntime>) {
    let config = watcher::Config::default().fields("spec.nodeName!=");
    let mut events = watcher(Api::<Pod>::all(client), config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let (pod, deleted) = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
            Ok(watcher::Event::Delete(pod)) => (pod, true),
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "pod watch");
                continue;
            }
        };
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        let Some((_, _, workers)) = nodes.get(&node_name) else {
            continue;
        };
        let Ok(pod) = serde_json::to_value(pod) else {
            continue;
        };
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        if deleted {
            workers.forget(&uid);
            let _ = runtime.kill_pod(&uid, 0);
            continue;
        }
        // A restarted hollow node adopts what it "ran" before: same IP, containers still running.
        if let Some(ip) = pod["status"]["podIP"].as_str() {
            runtime.adopt(&uid, ip, &pod);
        }
        workers.update(pod);
    }
}
