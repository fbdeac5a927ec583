//! One real node's kubelet: the main loop of upstream's pkg/kubelet/kubelet.go (`Run`, `syncLoop`,
//! `HandlePodCleanups`) over any [`ContainerRuntime`], in practice the [`crate::runc_runtime::RuncRuntime`].
//!
//! It registers the Node, renews its Lease and posts its status, learns its pod CIDR from the Node
//! (node IPAM assigns it), and hands every pod bound to it to the pod workers. Once the first list of
//! its pods is in, it stops whatever the runtime still runs for pods the API no longer has (they were
//! deleted while the kubelet was down): upstream's pod cleanup. Stopping the kubelet leaves pods
//! running, as upstream does; a restarted kubelet finds them through the runtime.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::{
    Api, Client,
    runtime::{WatchStreamExt, watcher},
};

use crate::{
    lease,
    node::{self, NodeConfig},
    pod_workers::{NodeContext, PodWorkers},
    runtime::{Container, ContainerRuntime},
};

/// What the kubelet of one node needs besides its client and runtime.
#[derive(Clone, Debug)]
pub struct KubeletOptions {
    /// The Node it registers (name, address, capacity, runtime version).
    pub node: NodeConfig,
    /// How often the Lease is renewed (upstream: 10 s).
    pub lease_interval: Duration,
    /// How often node status is posted when nothing changed (upstream's nodeStatusReportFrequency).
    pub status_interval: Duration,
    /// How often the PLEG relists the runtime to notice containers that started or exited
    /// (upstream's relist period: 1 s).
    pub relist_interval: Duration,
    /// The first restart back-off of a crashed container (upstream: 10 s, doubling to 5 min).
    pub restart_backoff: Duration,
    /// How often pods with configMap, secret, downwardAPI or projected volumes are synced again to
    /// refresh them (upstream: the 1 min sync frequency).
    pub volume_resync: Duration,
    /// The kubelet API (logs, exec, attach), if served.
    pub server: Option<crate::server::ServerOptions>,
    /// The eviction manager's thresholds and where its numbers come from; None runs none (the node
    /// then never reports pressure).
    pub eviction: Option<crate::eviction::EvictionConfig>,
}

impl KubeletOptions {
    /// Upstream's intervals for `node`.
    pub fn new(node: NodeConfig) -> Self {
        Self {
            node,
            lease_interval: Duration::from_secs(10),
            status_interval: Duration::from_secs(60),
            relist_interval: Duration::from_secs(1),
            restart_backoff: crate::pod_workers::BACKOFF_BASE,
            volume_resync: crate::pod_workers::VOLUME_RESYNC,
            server: None,
            eviction: None,
        }
    }
}

/// What this machine offers: (`cpu`, `memory`) as Node capacity quantities (CPUs the process may use,
/// MemTotal from /proc/meminfo in Ki).
pub fn machine_capacity() -> (String, String) {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    (cpus.to_string(), mem_total(&meminfo))
}

/// `MemTotal` of a /proc/meminfo text as a quantity (`16318060Ki`).
pub fn mem_total(meminfo: &str) -> String {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .map(|kib| format!("{kib}Ki"))
        .unwrap_or_else(|| "0".into())
}

/// The pods the runtime runs that the API no longer has (HandlePodCleanups' orphans).
pub fn orphans(running: &[String], in_api: &HashSet<String>) -> Vec<String> {
    running
        .iter()
        .filter(|uid| !in_api.contains(*uid))
        .cloned()
        .collect()
}

/// The kubelet could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The API refused or could not be reached.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// The kubelet API could not be served.
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
}

/// Runs the kubelet of one node until `shutdown`; an error only when the Node cannot be registered
/// or the kubelet API cannot listen.
pub async fn run_kubelet(
    client: Client,
    options: KubeletOptions,
    runtime: Arc<dyn ContainerRuntime>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), KubeletError> {
    let cfg = options.node.clone();
    let server = match &options.server {
        Some(opts) => Some(crate::server::bind(opts).await?),
        None => None,
    };
    let stored = node::register(&client, &cfg).await?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(server) = server {
        node::report_kubelet_port(&client, &cfg.name, server.port()).await?;
        tracing::info!(node = %cfg.name, port = server.port(), "kubelet API listening");
        tokio::spawn(server.serve(async move {
            let _ = server_stopped.await;
        }));
    }
    let pressure = Arc::new(crate::eviction::NodePressure::default());
    let node_uid = stored["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let context = Arc::new(NodeContext {
        client: client.clone(),
        node: cfg.name.clone(),
        host_ip: cfg.address.clone(),
        pod_cidr: Mutex::new(stored["spec"]["podCIDR"].as_str().map(str::to_owned)),
        runtime: runtime.clone(),
        backoff_base: options.restart_backoff,
        probes: Arc::default(),
        volume_resync: options.volume_resync,
        events: crate::events::PodEvents::new(client.clone(), &cfg.name),
        evicted: Default::default(),
        pressure: pressure.clone(),
    });
    let probe_updates = context.probes.subscribe();
    let workers = Arc::new(PodWorkers::new(context));
    tracing::info!(node = %cfg.name, runtime = %runtime.version(), "kubelet registered its node");

    let eviction = options
        .eviction
        .clone()
        .map(|config| tokio::spawn(crate::eviction::run(config, workers.clone(), pressure.clone())));
    let tasks = [
        tokio::spawn(renew_lease(
            client.clone(),
            cfg.name.clone(),
            node_uid,
            options.lease_interval,
        )),
        tokio::spawn(post_status(
            client.clone(),
            cfg.clone(),
            options.status_interval,
            pressure,
        )),
        tokio::spawn(follow_node(client.clone(), workers.clone())),
        tokio::spawn(follow_pods(client, workers.clone(), runtime.clone())),
        tokio::spawn(relist(workers.clone(), runtime, options.relist_interval)),
        tokio::spawn(follow_probes(workers.clone(), probe_updates)),
    ];
    shutdown.await;
    let _ = stop_server.send(());
    for task in tasks.into_iter().chain(eviction) {
        task.abort();
    }
    workers.stop_all();
    Ok(())
}

async fn renew_lease(client: Client, node: String, uid: String, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if let Err(e) = lease::renew(&client, &node, &uid).await {
            tracing::warn!(node = %node, error = %e, "lease renewal failed");
        }
    }
}

/// Posts the node's status every `every`, and at once when its pressure changes.
async fn post_status(
    client: Client,
    cfg: NodeConfig,
    every: Duration,
    pressure: Arc<crate::eviction::NodePressure>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await; // Registration just posted it.
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = pressure.changed.notified() => {}
        }
        let stored = Api::<Node>::all(client.clone())
            .get(&cfg.name)
            .await
            .ok()
            .and_then(|n| serde_json::to_value(n).ok());
        if let Err(e) = node::update_status(&client, &cfg, &stored.unwrap_or_default(), pressure.get()).await
        {
            tracing::warn!(node = %cfg.name, error = %e, "node status update failed");
        }
    }
}

/// Learns the pod CIDR node IPAM gives the node.
async fn follow_node(client: Client, workers: Arc<PodWorkers>) {
    let name = workers.node().node.clone();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(Api::<Node>::all(client), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(node) = event else { continue };
        if let Some(cidr) = node.spec.and_then(|s| s.pod_cidr) {
            *workers.node().pod_cidr.lock().unwrap_or_else(|e| e.into_inner()) = Some(cidr);
        }
    }
}

/// Follows the pods bound to this node; after each full list, stops the runtime's orphans.
async fn follow_pods(client: Client, workers: Arc<PodWorkers>, runtime: Arc<dyn ContainerRuntime>) {
    let name = workers.node().node.clone();
    let config = watcher::Config::default().fields(&format!("spec.nodeName={name}"));
    let mut events = watcher(Api::<Pod>::all(client), config).default_backoff().boxed();
    let mut listed: HashSet<String> = HashSet::new();
    while let Some(event) = events.next().await {
        let uid = |pod: &Pod| pod.metadata.uid.clone().unwrap_or_default();
        match event {
            Ok(watcher::Event::Init) => listed.clear(),
            Ok(watcher::Event::InitApply(pod)) => {
                listed.insert(uid(&pod));
                hand_over(&workers, pod);
            }
            Ok(watcher::Event::InitDone) => {
                let rt = runtime.clone();
                let in_api = std::mem::take(&mut listed);
                tokio::task::spawn_blocking(move || {
                    for orphan in orphans(&rt.pods(), &in_api) {
                        tracing::info!(pod = %orphan, "stopping a pod the API no longer has");
                        if let Err(e) = rt.kill_pod(&orphan, 0) {
                            tracing::warn!(pod = %orphan, error = %e, "stopping an orphaned pod");
                        }
                    }
                });
            }
            Ok(watcher::Event::Apply(pod)) => hand_over(&workers, pod),
            Ok(watcher::Event::Delete(pod)) => {
                // Deleted for good (by this kubelet after it stopped the pod, or forced): make sure
                // nothing of it runs.
                let uid = uid(&pod);
                workers.forget(&uid);
                let rt = runtime.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = rt.kill_pod(&uid, 0) {
                        tracing::warn!(pod = %uid, error = %e, "stopping a deleted pod");
                    }
                });
            }
            Err(e) => tracing::debug!(error = %e, "pod watch"),
        }
    }
}

/// The pods whose containers differ between two relists (or that appeared): upstream's PLEG events.
pub fn changed_pods(
    previous: &HashMap<String, Vec<Container>>,
    current: &[(String, Vec<Container>)],
) -> Vec<String> {
    current
        .iter()
        .filter(|(uid, containers)| previous.get(uid) != Some(containers))
        .map(|(uid, _)| uid.clone())
        .collect()
}

/// The PLEG (pkg/kubelet/pleg/generic.go): relists the runtime every `every` and resyncs each pod
/// whose containers changed, so a container that exits is reported without the pod changing.
async fn relist(workers: Arc<PodWorkers>, runtime: Arc<dyn ContainerRuntime>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous: HashMap<String, Vec<Container>> = HashMap::new();
    loop {
        tick.tick().await;
        let rt = runtime.clone();
        let Ok(current) = tokio::task::spawn_blocking(move || rt.relist()).await else {
            continue;
        };
        for uid in changed_pods(&previous, &current) {
            workers.resync(&uid);
        }
        previous = current.into_iter().collect();
    }
}

/// Syncs the pods whose probe results changed (upstream's sync loop reading the liveness, readiness
/// and startup result channels).
async fn follow_probes(workers: Arc<PodWorkers>, mut updates: tokio::sync::mpsc::UnboundedReceiver<String>) {
    while let Some(uid) = updates.recv().await {
        workers.resync(&uid);
    }
}

fn hand_over(workers: &Arc<PodWorkers>, mut pod: Pod) {
    // Nothing on the node reads managedFields, and they are often the largest part of a pod: every
    // worker keeps its pod (and a sync clones it) for as long as the pod runs.
    pod.metadata.managed_fields = None;
    if let Ok(pod) = serde_json::to_value(pod) {
        workers.update(pod);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_comes_from_the_machine() {
        assert_eq!(
            mem_total("MemTotal:       16318060 kB\nMemFree: 1 kB\n"),
            "16318060Ki"
        );
        assert_eq!(mem_total(""), "0");
        let (cpu, memory) = machine_capacity();
        assert!(cpu.parse::<usize>().unwrap() >= 1);
        assert!(memory.ends_with("Ki"));
    }

    #[test]
    fn the_pleg_reports_pods_whose_containers_changed() {
        use crate::runtime::ContainerState;
        let c = |state: ContainerState| Container {
            name: "c".into(),
            id: "runc://x".into(),
            image: "busybox".into(),
            state,
            restart_count: 0,
            last_state: None,
        };
        let running = c(ContainerState::Running {
            started_at: "t".into(),
        });
        let exited = c(ContainerState::Exited {
            exit_code: 0,
            reason: "Completed".into(),
            started_at: "t".into(),
            finished_at: "t2".into(),
        });
        let previous: HashMap<String, Vec<Container>> = [
            ("a".to_owned(), vec![running.clone()]),
            ("b".to_owned(), vec![running.clone()]),
        ]
        .into();
        let current = vec![
            ("a".to_owned(), vec![running.clone()]),
            ("b".to_owned(), vec![exited]),
            ("new".to_owned(), vec![]),
        ];
        assert_eq!(
            changed_pods(&previous, &current),
            vec!["b".to_owned(), "new".to_owned()]
        );
    }

    #[test]
    fn orphans_are_running_pods_the_api_does_not_have() {
        let in_api: HashSet<String> = ["a".to_owned(), "b".to_owned()].into();
        assert_eq!(orphans(&["a".into(), "c".into()], &in_api), vec!["c".to_owned()]);
        assert!(orphans(&[], &in_api).is_empty());
    }
}
