//! `skiff bench node`: a real single-node cluster, measured from the outside (issues 5 and 7).
//!
//! The cluster is run as `scripts/quickstart.sh` runs it: this very binary (`std::env::current_exe()`)
//! started as `skiff server --node-netns /run/netns/NS --node-name … --node-ip …` in a fresh temp data
//! dir, its node in a network namespace the bench makes (the node's address a /32 on the namespace's
//! loopback), a busybox image tarball left in `<data-dir>/agent/images/` (imported at start), and
//! `skiff-pause` and `skiff-shim` next to the binary. Nothing of the host's network changes.
//!
//! - **start**: spawn → `/readyz` answers, and spawn → the Node is Ready (the image import and the
//!   node's registration included);
//! - **memory**: `VmRSS` of the server process, of every `skiff-shim` it started, of every pause
//!   process (the sandboxes' init, from `runc list`), with `manifests/demo.yaml` running; the `runc
//!   run` each shim keeps as its container's parent and the containers' own processes (the workload)
//!   beside them; PSS (shared pages counted once) of the whole;
//! - **the demo**: `kubectl apply -f manifests/demo.yaml` (the real kubectl, a cold discovery cache) →
//!   every replica Ready (seen by a watch) and each one answering through the Service's ClusterIP,
//!   asked from a thread of this process inside the node's namespace;
//! - **pod startup** with the image present: a pod (busybox `sleep`, no probes) created → seen
//!   Running and Ready by a watch, one at a time, then many at once; the kubelet's breakdown of each
//!   start comes from the `observed pod startup` line it logs (`skiff_kubelet::startup` says what
//!   each phase covers); the server's RSS with those pods running beside a `--disable-agent` server's
//!   idle RSS, so the node's share shows (with the server's anonymous and file-backed RSS and its
//!   thread count, which say where it went).
//!
//! Everything is removed at the end, and on failure: the server is stopped by its PID, the runc
//! containers it left deleted, their overlay mounts unmounted, their cgroups removed, the namespace
//! deleted.

use std::{
    collections::{BTreeSet, HashMap},
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, PostParams},
    runtime::watcher,
};
use serde_json::{Value, json};

use super::{
    api::{client_from_kubeconfig, get, process},
    percentile,
};

/// Options of `skiff bench node`.
#[derive(clap::Args, Debug)]
pub struct NodeBenchArgs {
    /// Pods created, waited for and deleted one at a time.
    #[arg(long, default_value_t = 10)]
    pub single: usize,
    /// Pods created at once.
    #[arg(long, default_value_t = 30)]
    pub batch: usize,
    /// The skiff source tree: `manifests/demo.yaml` and `scripts/build-busybox-image.sh` are read there.
    #[arg(long, default_value = ".")]
    pub repo: PathBuf,
    /// A busybox image tarball (docker-archive, tagged busybox:latest); unset = built with
    /// `scripts/build-busybox-image.sh`.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Seconds the cluster sits before its memory is read.
    #[arg(long, default_value_t = 3)]
    pub settle: u64,
}

const NODE_NAME: &str = "bench-node";
/// The node's address, on its namespace's loopback: nothing outside routes to it.
const NODE_IP: &str = "10.200.0.1";
/// The longest any one wait may take.
const TIMEOUT: Duration = Duration::from_secs(120);
/// How often the server's readiness is polled before a watch can take over.
const POLL: Duration = Duration::from_millis(5);
const MB: f64 = 1024.0 * 1024.0;

/// Runs every measurement and prints the figures.
pub async fn run(args: NodeBenchArgs) -> anyhow::Result<()> {
    let euid = std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .nth(1)?
            .parse::<u32>()
            .ok()
    });
    anyhow::ensure!(
        euid == Some(0),
        "skiff bench node runs pods for real: run it as root"
    );
    let exe = std::env::current_exe().context("cannot find this skiff binary")?;
    let beside = exe.parent().context("the skiff binary has no directory")?;
    for helper in ["skiff-pause", "skiff-shim"] {
        anyhow::ensure!(
            beside.join(helper).is_file(),
            "{helper} is not next to {}: build it with `cargo rustc --release --manifest-path \
             pause/Cargo.toml --bin {helper} -- -C target-feature=+crt-static` and copy it there",
            exe.display()
        );
    }
    let manifest = args.repo.join("manifests/demo.yaml");
    anyhow::ensure!(
        manifest.is_file(),
        "{} not found (--repo is the skiff source tree)",
        manifest.display()
    );

    let mut cluster = Cluster::new()?;
    let measured = async {
        cluster.start(&exe, &args).await?;
        measure(&cluster, &args, &manifest).await
    }
    .await;
    let log = cluster.log();
    cluster.stop();
    let mut figures = measured.with_context(|| format!("the server's log:\n{}", tail(&log, 30)))?;
    figures.breakdown = parse_startups(&log);
    eprintln!("  a server with --disable-agent, for its idle memory");
    let control_plane = process::start_server(Duration::from_secs(args.settle)).await?;
    figures.control_plane_rss = control_plane.rss_bytes;
    print_report(&figures, &args);
    Ok(())
}

/// Everything measured.
#[derive(Default)]
struct Figures {
    readyz: Duration,
    node_ready: Duration,
    idle_node_rss: u64,
    demo: Demo,
    demo_memory: Memory,
    single: Vec<Startup>,
    batch: Vec<Startup>,
    batch_wall: Duration,
    batch_server_rss: u64,
    control_plane_rss: u64,
    /// The kubelet's `observed pod startup` fields, by pod name.
    breakdown: HashMap<String, HashMap<String, f64>>,
}

/// The demo's apply.
#[derive(Default)]
struct Demo {
    replicas: usize,
    kubectl: Duration,
    all_ready: Duration,
    vip_first: Duration,
    vip_all: Duration,
}

/// Resident memory of the cluster's processes, in bytes, by kind.
#[derive(Default)]
struct Memory {
    server: u64,
    shims: (usize, u64),
    pauses: (usize, u64),
    runcs: (usize, u64),
    workload: (usize, u64),
    /// PSS of server, shims and pauses (shared pages counted once).
    cluster_pss: u64,
    /// PSS of the same plus the runc parents.
    with_runc_pss: u64,
}

/// One pod's start: create request sent → seen Running, → seen Ready.
struct Startup {
    name: String,
    running: Duration,
    ready: Duration,
}

async fn measure(cluster: &Cluster, args: &NodeBenchArgs, manifest: &Path) -> anyhow::Result<Figures> {
    let mut f = Figures {
        readyz: cluster.readyz,
        node_ready: cluster.node_ready,
        ..Default::default()
    };
    let client = cluster.client().await?;
    let pods = PodTimes::watch(client.clone()).await?;

    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    f.idle_node_rss = vm_rss(cluster.server_pid()?)?;
    eprintln!(
        "  node Ready {:.0} ms after spawn; idle with its node: {:.1} MB ({})",
        ms(f.node_ready),
        f.idle_node_rss as f64 / MB,
        rss_detail(cluster.server_pid()?)
    );

    f.demo = apply_demo(cluster, &client, &pods, manifest).await?;
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    f.demo_memory = cluster.memory()?;
    let deleted = cluster
        .kubectl(&[
            "delete",
            "-f",
            &manifest.to_string_lossy(),
            "--wait=true",
            "--timeout=60s",
        ])
        .await?;
    anyhow::ensure!(
        deleted.status.success(),
        "kubectl delete failed: {}",
        stderr(&deleted)
    );
    pods.wait("the demo's pods to be gone", |t| {
        t.values()
            .all(|p| p.deleted || !p.name.starts_with("default/web-"))
    })
    .await?;

    let api: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..args.single {
        let name = format!("single-{i}");
        let start = create_pod(&api, &name).await?;
        let times = pods
            .wait(&format!("pod {name} to be Ready"), |t| ready(t, &name))
            .await?;
        f.single.push(startup(&name, start, &times)?);
        delete_pods(&api, std::slice::from_ref(&name), &pods).await?;
    }
    if let Some(s) = f.single.first() {
        eprintln!(
            "  1 pod at a time: first Running {:.0} ms, Ready {:.0} ms",
            ms(s.running),
            ms(s.ready)
        );
    }

    let names: Vec<String> = (0..args.batch).map(|i| format!("batch-{i}")).collect();
    let starts = futures::future::try_join_all(names.iter().map(|n| create_pod(&api, n))).await?;
    let times = pods
        .wait(&format!("{} pods to be Ready", names.len()), |t| {
            names.iter().all(|n| ready(t, n))
        })
        .await?;
    for (name, start) in names.iter().zip(&starts) {
        f.batch.push(startup(name, *start, &times)?);
    }
    let first = starts.iter().min().copied();
    let last_running = names
        .iter()
        .filter_map(|n| times.get(&format!("default/{n}"))?.running)
        .max();
    if let (Some(first), Some(last)) = (first, last_running) {
        f.batch_wall = last - first;
    }
    eprintln!(
        "  {} pods at once: all Running {:.0} ms after the first create",
        names.len(),
        ms(f.batch_wall)
    );
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    f.batch_server_rss = vm_rss(cluster.server_pid()?)?;
    eprintln!(
        "  server with {} pods: {}",
        names.len(),
        rss_detail(cluster.server_pid()?)
    );
    delete_pods(&api, &names, &pods).await?;
    Ok(f)
}

/// `kubectl apply` of the demo → every replica Ready and each answering through the Service's VIP.
async fn apply_demo(
    cluster: &Cluster,
    client: &Client,
    pods: &PodTimes,
    manifest: &Path,
) -> anyhow::Result<Demo> {
    let start = Instant::now();
    let out = cluster
        .kubectl(&["apply", "-f", &manifest.to_string_lossy()])
        .await?;
    let kubectl = start.elapsed();
    anyhow::ensure!(out.status.success(), "kubectl apply failed: {}", stderr(&out));
    let svc: Value = serde_json::from_str(&get(client, "/api/v1/namespaces/default/services/web").await?)?;
    let deploy: Value =
        serde_json::from_str(&get(client, "/apis/apps/v1/namespaces/default/deployments/web").await?)?;
    let vip = svc["spec"]["clusterIP"]
        .as_str()
        .context("the web Service has no clusterIP")?
        .to_owned();
    let replicas = deploy["spec"]["replicas"].as_u64().unwrap_or(1) as usize;

    // Asked from inside the node's namespace, as a pod or the node would.
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (netns, stop) = (cluster.netns_path(), stop.clone());
        std::thread::spawn(move || probe_vip(&netns, &vip, &stop, &tx))
    };
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let mut demo = Demo {
        replicas,
        kubectl,
        ..Default::default()
    };
    let deadline = Instant::now() + TIMEOUT;
    let outcome = loop {
        while let Ok((at, pod)) = rx.try_recv() {
            if answered.is_empty() {
                demo.vip_first = at - start;
            }
            if answered.insert(pod) {
                demo.vip_all = at - start;
            }
        }
        let times = pods.snapshot();
        let web: Vec<&PodTime> = times
            .values()
            .filter(|p| p.name.starts_with("default/web-") && !p.deleted)
            .collect();
        let ready: Vec<_> = web.iter().filter_map(|p| p.ready).collect();
        if ready.len() == replicas && web.len() == replicas {
            demo.all_ready = ready.iter().max().copied().unwrap_or(start) - start;
            let every = web
                .iter()
                .all(|p| answered.contains(p.name.trim_start_matches("default/")));
            if every {
                break Ok(());
            }
        }
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!(
                "the demo was not up within {TIMEOUT:?}: {} of {replicas} replicas Ready, answered by {answered:?}",
                ready.len()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let probed = prober
        .join()
        .map_err(|_| anyhow::anyhow!("the VIP prober panicked"))?;
    outcome?;
    probed?;
    eprintln!(
        "  demo: every replica Ready {:.0} ms, each answered through the VIP {:.0} ms after kubectl apply began",
        ms(demo.all_ready),
        ms(demo.vip_all)
    );
    Ok(demo)
}

/// Asks `http://vip/` over and over from inside `netns` (this thread only enters it), sending which
/// pod answered, until `stop`.
fn probe_vip(
    netns: &Path,
    vip: &str,
    stop: &AtomicBool,
    tx: &mpsc::Sender<(Instant, String)>,
) -> anyhow::Result<()> {
    let ns = std::fs::File::open(netns).with_context(|| format!("cannot open {}", netns.display()))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
        .context("cannot enter the node's namespace")?;
    let addr: SocketAddr = format!("{vip}:80").parse()?;
    let ask = || -> Option<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
        let mut page = String::new();
        s.read_to_string(&mut page).ok()?;
        let after = page.split("Served by pod ").nth(1)?;
        Some(after.split(['<', ' ', '\n']).next()?.to_owned())
    };
    while !stop.load(Ordering::Relaxed) {
        if let Some(pod) = ask() {
            let _ = tx.send((Instant::now(), pod));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// Creates a busybox pod that sleeps (no probes; it ends at once on SIGTERM); returns when the request
/// was sent.
async fn create_pod(api: &Api<Pod>, name: &str) -> anyhow::Result<Instant> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "skiff-bench": "node" } },
        "spec": {
            "terminationGracePeriodSeconds": 5,
            "containers": [{ "name": "main", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                             "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"] }],
        },
    }))?;
    let start = Instant::now();
    api.create(&PostParams::default(), &pod)
        .await
        .with_context(|| format!("cannot create pod {name}"))?;
    Ok(start)
}

/// Deletes pods and waits until the kubelet has stopped them and removed them for good.
async fn delete_pods(api: &Api<Pod>, names: &[String], pods: &PodTimes) -> anyhow::Result<()> {
    let params = DeleteParams::default();
    futures::future::try_join_all(names.iter().map(|n| api.delete(n, &params))).await?;
    pods.wait(&format!("{} pods to be gone", names.len()), |t| {
        names
            .iter()
            .all(|n| t.get(&format!("default/{n}")).is_some_and(|p| p.deleted))
    })
    .await?;
    Ok(())
}

fn ready(times: &HashMap<String, PodTime>, name: &str) -> bool {
    times
        .get(&format!("default/{name}"))
        .is_some_and(|p| p.ready.is_some() && p.running.is_some())
}

fn startup(name: &str, start: Instant, times: &HashMap<String, PodTime>) -> anyhow::Result<Startup> {
    let p = times
        .get(&format!("default/{name}"))
        .with_context(|| format!("pod {name} was never seen"))?;
    let (running, ready) = (p.running.context("not Running")?, p.ready.context("not Ready")?);
    Ok(Startup {
        name: name.to_owned(),
        running: running.saturating_duration_since(start),
        ready: ready.saturating_duration_since(start),
    })
}

/// When a watch first saw each pod Running and Ready, and whether it is deleted.
#[derive(Clone)]
struct PodTime {
    /// namespace/name.
    name: String,
    running: Option<Instant>,
    ready: Option<Instant>,
    deleted: bool,
}

/// A watch over every pod, recording [`PodTime`]s as events arrive (the figures' resolution).
struct PodTimes {
    times: Arc<Mutex<HashMap<String, PodTime>>>,
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PodTimes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PodTimes {
    async fn watch(client: Client) -> anyhow::Result<Self> {
        let times: Arc<Mutex<HashMap<String, PodTime>>> = Arc::default();
        let changed = Arc::new(tokio::sync::Notify::new());
        let (synced_tx, synced_rx) = tokio::sync::oneshot::channel();
        let task = {
            let (times, changed) = (times.clone(), changed.clone());
            let mut synced = Some(synced_tx);
            tokio::spawn(async move {
                let mut events = watcher(Api::<Pod>::all(client), watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    let now = Instant::now();
                    let (pod, deleted) = match event {
                        Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => (p, false),
                        Ok(watcher::Event::Delete(p)) => (p, true),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = synced.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
                    let status = pod.status.as_ref();
                    let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
                    let ready = status
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                    let mut times = times.lock().unwrap_or_else(|e| e.into_inner());
                    let t = times.entry(name.clone()).or_insert(PodTime {
                        name,
                        running: None,
                        ready: None,
                        deleted: false,
                    });
                    if running && t.running.is_none() {
                        t.running = Some(now);
                    }
                    if ready && t.ready.is_none() {
                        t.ready = Some(now);
                    }
                    t.deleted |= deleted;
                    drop(times);
                    changed.notify_waiters();
                }
            })
        };
        tokio::time::timeout(Duration::from_secs(30), synced_rx)
            .await
            .context("the pod watch did not sync in 30 s")?
            .context("the pod watch ended")?;
        Ok(Self { times, changed, task })
    }

    fn snapshot(&self) -> HashMap<String, PodTime> {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (at most [`TIMEOUT`]) until `done` holds over the recorded times; returns them.
    async fn wait(
        &self,
        what: &str,
        done: impl Fn(&HashMap<String, PodTime>) -> bool,
    ) -> anyhow::Result<HashMap<String, PodTime>> {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let notified = self.changed.notified();
            let times = self.snapshot();
            if done(&times) {
                return Ok(times);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                anyhow::bail!("timed out after {TIMEOUT:?} waiting for {what}");
            }
        }
    }
}

/// The single-node cluster: its data dir, its node's namespace and its server, all removed by
/// [`Cluster::stop`] (or on drop).
struct Cluster {
    dir: tempfile::TempDir,
    netns: String,
    netns_made: bool,
    child: Option<std::process::Child>,
    readyz: Duration,
    node_ready: Duration,
}

impl Cluster {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::Builder::new().prefix("skiff-bench-node-").tempdir()?,
            netns: format!("skiff-bench-{}", std::process::id()),
            netns_made: false,
            child: None,
            readyz: Duration::ZERO,
            node_ready: Duration::ZERO,
        })
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    fn log_path(&self) -> PathBuf {
        self.data_dir().join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/{}", self.netns))
    }

    fn server_pid(&self) -> anyhow::Result<u32> {
        Ok(self.child.as_ref().context("the server is not running")?.id())
    }

    async fn client(&self) -> anyhow::Result<Client> {
        client_from_kubeconfig(&self.kubeconfig()).await
    }

    /// The image, the namespace, then the server; returns once its Node is Ready.
    async fn start(&mut self, exe: &Path, args: &NodeBenchArgs) -> anyhow::Result<()> {
        let airgap = self.data_dir().join("agent/images");
        std::fs::create_dir_all(&airgap)?;
        let tarball = airgap.join("busybox.tar");
        match &args.image {
            Some(image) => {
                std::fs::copy(image, &tarball).with_context(|| format!("cannot copy {}", image.display()))?;
            }
            None => {
                let script = args.repo.join("scripts/build-busybox-image.sh");
                let out = Command::new("bash")
                    .arg(&script)
                    .arg(&tarball)
                    .arg("busybox:latest")
                    .output()
                    .with_context(|| format!("cannot run {}", script.display()))?;
                anyhow::ensure!(
                    out.status.success(),
                    "{} failed: {}",
                    script.display(),
                    stderr(&out)
                );
            }
        }
        ip(&["netns", "add", &self.netns])?;
        self.netns_made = true;
        ip(&["-n", &self.netns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &self.netns,
            "addr",
            "add",
            &format!("{NODE_IP}/32"),
            "dev",
            "lo",
        ])?;

        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let log = std::fs::File::create(self.log_path())?;
        let netns = self.netns_path();
        let spawned = Instant::now();
        self.child = Some(
            Command::new(exe)
                .arg("server")
                .arg("--data-dir")
                .arg(self.data_dir())
                .args([
                    "--bind-address",
                    "127.0.0.1",
                    "--https-listen-port",
                    &port.to_string(),
                ])
                .arg("--node-netns")
                .arg(&netns)
                .args(["--node-name", NODE_NAME, "--node-ip", NODE_IP])
                // A share of free disk can be crossed on a shared development machine (a 250 GB
                // disk with 20 GB free), and the node then rejects every pod for DiskPressure.
                .args([
                    "--eviction-hard",
                    skiff_kubelet::eviction::SHARED_MACHINE_EVICTION_HARD,
                ])
                .env("NO_COLOR", "1")
                .env_remove("RUST_LOG")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .with_context(|| format!("cannot start {}", exe.display()))?,
        );
        let deadline = spawned + TIMEOUT;
        let mut client = None;
        let mut last = String::from("no kubeconfig yet");
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                anyhow::bail!("skiff server exited with {status}");
            }
            if Instant::now() > deadline {
                anyhow::bail!("the node was not Ready {TIMEOUT:?} after spawn: {last}");
            }
            if client.is_none() && self.kubeconfig().exists() {
                client = client_from_kubeconfig(&self.kubeconfig()).await.ok();
            }
            if let Some(client) = &client {
                if self.readyz.is_zero() {
                    match get(client, "/readyz").await {
                        Ok(text) if text.trim() == "ok" => self.readyz = spawned.elapsed(),
                        Ok(text) => last = text,
                        Err(e) => last = format!("{e:#}"),
                    }
                } else {
                    match get(client, &format!("/api/v1/nodes/{NODE_NAME}")).await {
                        Ok(text) if node_is_ready(&text) => {
                            self.node_ready = spawned.elapsed();
                            return Ok(());
                        }
                        Ok(_) => last = "the node is not Ready".into(),
                        Err(e) => last = format!("{e:#}"),
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Runs the real kubectl against the cluster.
    async fn kubectl(&self, args: &[&str]) -> anyhow::Result<std::process::Output> {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        tokio::time::timeout(TIMEOUT, cmd.output())
            .await
            .context("kubectl did not finish")?
            .context("cannot run kubectl (is it on PATH?)")
    }

    /// The resident memory of the cluster's processes with what runs now.
    fn memory(&self) -> anyhow::Result<Memory> {
        let server = self.server_pid()?;
        let procs = processes();
        let children = |of: &dyn Fn(u32) -> bool| -> Vec<u32> {
            procs
                .iter()
                .filter(|(_, p)| of(p.ppid))
                .map(|(pid, _)| *pid)
                .collect()
        };
        let shims: Vec<u32> = children(&|ppid| ppid == server)
            .into_iter()
            .filter(|pid| procs[pid].comm == "skiff-shim")
            .collect();
        let runcs: Vec<u32> = children(&|ppid| shims.contains(&ppid))
            .into_iter()
            .filter(|pid| procs[pid].comm.starts_with("runc"))
            .collect();
        let (mut pauses, mut workload) = (Vec::new(), Vec::new());
        for (id, pid) in runc_containers(&self.data_dir().join("agent/runc")) {
            if id.contains('_') {
                workload.push(pid);
            } else {
                pauses.push(pid);
            }
        }
        // The containers' processes are their init and every descendant.
        let mut i = 0;
        while i < workload.len() {
            let parent = workload[i];
            workload.extend(children(&|ppid| ppid == parent));
            i += 1;
        }
        let sum = |pids: &[u32], read: fn(u32) -> anyhow::Result<u64>| -> (usize, u64) {
            let total = pids.iter().filter_map(|p| read(*p).ok()).sum();
            (pids.len(), total)
        };
        let cluster: Vec<u32> = [vec![server], shims.clone(), pauses.clone()].concat();
        let with_runc: Vec<u32> = [cluster.clone(), runcs.clone()].concat();
        Ok(Memory {
            server: vm_rss(server)?,
            shims: sum(&shims, vm_rss),
            pauses: sum(&pauses, vm_rss),
            runcs: sum(&runcs, vm_rss),
            workload: sum(&workload, vm_rss),
            cluster_pss: sum(&cluster, pss).1,
            with_runc_pss: sum(&with_runc, pss).1,
        })
    }

    /// Stops the server by its PID and removes everything the cluster made (also on drop).
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let data = self.data_dir().to_path_buf();
        // A stopped kubelet leaves its containers running (as upstream's does).
        let root = data.join("agent/runc");
        for (id, _) in runc_containers(&root) {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(&root)
                .args(["delete", "--force", &id])
                .stderr(Stdio::null())
                .status();
        }
        // Containers' root filesystems are overlay mounts in their bundles.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(&data))
            .collect();
        mounts.sort_unstable_by(|a, b| b.cmp(a));
        for m in mounts {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        // The pods' cgroups, of this cluster's pods only (other nodes may share the parent).
        let uids: Vec<String> = std::fs::read_dir(data.join("agent/pods"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let parents: Vec<PathBuf> = std::iter::once(PathBuf::from("/sys/fs/cgroup/skiff"))
            .chain(
                std::fs::read_dir("/sys/fs/cgroup")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path().join("skiff")),
            )
            .collect();
        for parent in &parents {
            for uid in &uids {
                remove_empty_dirs(&parent.join(format!("pod{uid}")));
            }
        }
        if self.netns_made {
            let _ = ip(&["netns", "del", &self.netns]);
            self.netns_made = false;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn node_is_ready(node: &str) -> bool {
    let Ok(node) = serde_json::from_str::<Value>(node) else {
        return false;
    };
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run ip")?;
    anyhow::ensure!(out.status.success(), "ip {}: {}", args.join(" "), stderr(&out));
    Ok(())
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The containers runc knows under `root`, with their init pids.
fn runc_containers(root: &Path) -> Vec<(String, u32)> {
    let Ok(out) = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(["list", "--format", "json"])
        .stderr(Stdio::null())
        .output()
    else {
        return Vec::new();
    };
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["id"].as_str()?.to_owned(), c["pid"].as_u64()? as u32)))
        .filter(|(_, pid)| *pid > 0)
        .collect()
}

struct Proc {
    ppid: u32,
    comm: String,
}

/// Every process: its parent and its name, from `/proc/<pid>/stat`.
fn processes() -> HashMap<u32, Proc> {
    let mut procs = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …": comm may hold spaces and parentheses.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        procs.insert(pid, Proc { ppid, comm });
    }
    procs
}

/// A `<field>: N kB` line of a /proc file, in bytes.
fn proc_kb(path: &str, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no {field} in {path}"))?;
    Ok(kb * 1024)
}

fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    proc_kb(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Where a process's resident memory is: anonymous (heap, stacks) or file pages (the binary's code),
/// and how many threads it has (each one a stack and, under mimalloc, a heap of its own).
fn rss_detail(pid: u32) -> String {
    let status = format!("/proc/{pid}/status");
    let field = |name: &str| proc_kb(&status, name).map(|b| b as f64 / MB).unwrap_or(f64::NAN);
    let threads = std::fs::read_to_string(&status)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default();
    format!(
        "anon {:.1} MB, file {:.1} MB, {threads} threads",
        field("RssAnon:"),
        field("RssFile:")
    )
}

fn pss(pid: u32) -> anyhow::Result<u64> {
    proc_kb(&format!("/proc/{pid}/smaps_rollup"), "Pss:")
}

/// The kubelet's `observed pod startup` lines (see `skiff_kubelet::startup`): fields by pod name.
fn parse_startups(log: &str) -> HashMap<String, HashMap<String, f64>> {
    let mut found = HashMap::new();
    for line in log.lines().filter(|l| l.contains("observed pod startup")) {
        let line = strip_ansi(line);
        let mut pod = None;
        let mut fields = HashMap::new();
        for token in line.split_whitespace() {
            let Some((key, value)) = token.split_once('=') else {
                continue;
            };
            if key == "pod" {
                pod = value.rsplit('/').next().map(str::to_owned);
            } else if let Ok(v) = value.parse::<f64>() {
                fields.insert(key.to_owned(), v);
            }
        }
        if let Some(pod) = pod {
            found.insert(pod, fields);
        }
    }
    found
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of some durations, in ms.
fn p50_p99(mut values: Vec<f64>) -> Option<(f64, f64)> {
    values.sort_unstable_by(f64::total_cmp);
    Some((percentile(&values, 0.50)?, percentile(&values, 0.99)?))
}

fn print_report(f: &Figures, args: &NodeBenchArgs) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\nskiff bench node: skiff server with its node (runc, CNI bridge, iptables proxy) in a network \
         namespace, {cores} cores\n"
    );
    let line = |what: &str, ours: String, target: &str, met: Option<bool>, reference: &str| {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "",
        };
        println!("  {what:<52} {ours:>12}  {target:<13} {verdict:<8} {reference}");
    };
    let mb = |b: u64| format!("{:.1} MB", b as f64 / MB);
    let msf = |d: Duration| format!("{:.0} ms", ms(d));
    println!(
        "  {:<52} {:>12}  {:<13} {:<8} reference",
        "issue 7: the one-binary cluster", "skiff", "target", ""
    );
    line("spawn → /readyz 200", msf(f.readyz), "", None, "");
    line(
        "spawn → Node Ready (image import, registration)",
        msf(f.node_ready),
        "≤ 1 s",
        Some(f.node_ready <= Duration::from_secs(1)),
        "k3s: ~50 s to Ready system pods",
    );
    line(
        "server RSS, node Ready, no pods",
        mb(f.idle_node_rss),
        "",
        None,
        "",
    );
    let m = &f.demo_memory;
    let cluster = m.server + m.shims.1 + m.pauses.1;
    line(
        &format!(
            "RSS with the demo: server + {} shims + {} pauses",
            m.shims.0, m.pauses.0
        ),
        mb(cluster),
        "≤ 80 MB",
        Some(cluster as f64 <= 80.0 * MB),
        "k3s: 0.5–1.4 GB",
    );
    line("  the server process", mb(m.server), "", None, "");
    line(
        &format!("  {} skiff-shim", m.shims.0),
        mb(m.shims.1),
        "",
        None,
        "",
    );
    line(&format!("  {} pause", m.pauses.0), mb(m.pauses.1), "", None, "");
    line(
        "  PSS of the same (shared pages once)",
        mb(m.cluster_pss),
        "",
        None,
        "",
    );
    line(
        &format!("+ {} `runc run` (each container's parent)", m.runcs.0),
        mb(m.runcs.1),
        "",
        None,
        "",
    );
    line(
        "  = cluster with runc (RSS / PSS)",
        format!(
            "{:.1}/{:.1} MB",
            (cluster + m.runcs.1) as f64 / MB,
            m.with_runc_pss as f64 / MB
        ),
        "",
        None,
        "",
    );
    line(
        &format!("workload: the containers' {} processes", m.workload.0),
        mb(m.workload.1),
        "",
        None,
        "",
    );
    let d = &f.demo;
    line(
        "kubectl apply -f demo.yaml: kubectl returned",
        msf(d.kubectl),
        "",
        None,
        "",
    );
    line(
        &format!("  → all {} replicas Ready (watch)", d.replicas),
        msf(d.all_ready),
        "",
        None,
        "",
    );
    line(
        "  → first answer through the Service VIP",
        msf(d.vip_first),
        "",
        None,
        "",
    );
    let up = d.all_ready.max(d.vip_all);
    line(
        "  → every replica Ready and answering via the VIP",
        msf(up),
        "≤ 2 s",
        Some(up <= Duration::from_secs(2)),
        "",
    );

    println!(
        "\n  {:<52} {:>12}  {:<13} {:<8} reference",
        "issue 5: pod startup, image present (p50 / p99)", "skiff", "target", ""
    );
    let slo = "k8s SLO: p99 ≤ 5 s";
    let pair = |v: Option<(f64, f64)>| v.map_or("-".into(), |(a, b)| format!("{a:.0}/{b:.0} ms"));
    let runs =
        |set: &[Startup], pick: fn(&Startup) -> Duration| p50_p99(set.iter().map(|s| ms(pick(s))).collect());
    let single_running = runs(&f.single, |s| s.running);
    line(
        &format!("1 pod (×{}): create → Running", f.single.len()),
        pair(single_running),
        "p50 ≤ 300 ms",
        single_running.map(|(p50, _)| p50 <= 300.0),
        slo,
    );
    line(
        "  create → Ready",
        pair(runs(&f.single, |s| s.ready)),
        "",
        None,
        "",
    );
    let batch_running = runs(&f.batch, |s| s.running);
    line(
        &format!("{} pods at once: create → Running", f.batch.len()),
        pair(batch_running),
        "p99 ≤ 2 s",
        batch_running.map(|(_, p99)| p99 <= 2000.0),
        slo,
    );
    line(
        "  create → Ready",
        pair(runs(&f.batch, |s| s.ready)),
        "",
        None,
        "",
    );
    line("  first create → last Running", msf(f.batch_wall), "", None, "");
    let node_share = f.batch_server_rss.saturating_sub(f.control_plane_rss);
    line(
        &format!("server RSS with {} pods running", f.batch.len()),
        mb(f.batch_server_rss),
        "",
        None,
        "",
    );
    line(
        "server RSS --disable-agent, idle",
        mb(f.control_plane_rss),
        "",
        None,
        "",
    );
    line(
        "  node's share (kubelet, proxy, DNS, images)",
        mb(node_share),
        "≤ 30 MB",
        Some(node_share as f64 <= 30.0 * MB),
        "",
    );

    println!("\n  the kubelet's breakdown of each start (its `observed pod startup` log line), p50 / p99");
    println!(
        "  {:<52} {:>12}  {:>12}",
        "",
        "1 pod",
        format!("{} pods", args.batch)
    );
    for (key, label) in [
        ("kubelet_ms", "first sync → Running status written"),
        ("sandbox_ms", "  sandbox (pause: bundle, runc run -d)"),
        ("network_ms", "  network (CNI ADD, /etc files)"),
        ("container_create_ms", "  container create (overlay rootfs, spec)"),
        (
            "container_start_ms",
            "  container start (shim, runc run → running)",
        ),
    ] {
        let of = |set: &[Startup]| {
            p50_p99(
                set.iter()
                    .filter_map(|s| f.breakdown.get(&s.name)?.get(key).copied())
                    .collect(),
            )
        };
        println!(
            "  {label:<52} {:>12}  {:>12}",
            pair(of(&f.single)),
            pair(of(&f.batch))
        );
    }
    let missing = f
        .single
        .iter()
        .chain(&f.batch)
        .filter(|s| !f.breakdown.contains_key(&s.name))
        .count();
    if missing > 0 {
        println!("  ({missing} pods had no breakdown line in the server's log)");
    }
    println!(
        "\n  (create → Running/Ready: the create request sent → a watch sees the status; the rest of \
         it is the API server, the scheduler's bind and the watches. RSS sums count shared pages in \
         every process; PSS counts them once.)"
    );
}
