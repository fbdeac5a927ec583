//! The node lifecycle controller: notices nodes whose kubelet stopped reporting and acts on it, as
//! upstream's pkg/controller/nodelifecycle/node_lifecycle_controller.go does, together with the taint
//! eviction controller (pkg/controller/tainteviction) that moves pods off such nodes.
//!
//! Every `nodeMonitorPeriod` (5 s) each node is checked ([`health::check`], upstream's
//! `monitorNodeHealth` / `tryUpdateNodeHealth`): a node whose Lease in `kube-node-lease` was not
//! renewed (and whose Ready heartbeat did not move) within `nodeMonitorGracePeriod` (40 s) has its
//! Ready, MemoryPressure, DiskPressure and PIDPressure conditions set Unknown through `nodes/status`,
//! gets a `NodeNotReady` event, and its pods' Ready condition is set False (`MarkPodsNotReady`).
//! The node's taints follow ([`taints::desired_taints`]): `node.kubernetes.io/unreachable:NoExecute`
//! while Ready is Unknown, `node.kubernetes.io/not-ready:NoExecute` while it is False, the NoSchedule
//! counterparts (and those of the pressure conditions), all removed once the node is Ready again.
//! [`taint_eviction`] then deletes the pods that do not tolerate a NoExecute taint, at once or when
//! their `tolerationSeconds` run out.
//!
//! The NoSchedule taints of the pressure conditions are also kept on every change of a node
//! ([`no_schedule_loop`], upstream's `doNoScheduleTaintingPass` run from its `nodeUpdateQueue`), not
//! only every monitor period: the kubelet rejects every pod that reaches a node under pressure, and
//! their owners replace them as fast as they can, so each second the scheduler does not know about
//! the pressure is a storm of Failed pods (hundreds of them in the five seconds of a monitor period).
//!
//! Not mirrored (yet): upstream's per-zone eviction rate limits and its "full disruption" mode (no
//! tainting while every node of a zone is down); here nodes are tainted as soon as they are seen
//! unhealthy.

pub mod health;
pub mod taint_eviction;
pub mod taints;

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node, ObjectReference, Pod},
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        WatchStreamExt,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use tokio::sync::Notify;

use self::health::{GracePeriods, NodeHealth};
use crate::{events::EventSink, pod_util};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "node-controller";
/// The namespace of the nodes' heartbeat Leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// How the controller is tuned.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a node may go unheard before it is marked Unknown (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// The same for a node that never posted a Ready condition (`--node-startup-grace-period`).
    pub node_startup_grace_period: Duration,
    /// How often nodes are checked (`--node-monitor-period`).
    pub node_monitor_period: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_monitor_period: Duration::from_secs(5),
        }
    }
}

/// Runs the node lifecycle and taint eviction controllers until `shutdown` completes.
pub async fn run(client: Client, options: Options, shutdown: impl Future<Output = ()> + Send + 'static) {
    let changed = Arc::new(Notify::new());
    let node_changed = Arc::new(NodesChanged::default());
    let (nodes, node_writer) = reflector::store::<Node>();
    let node_watch = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|n| n.managed_fields_mut().clear())
        .reflect(node_writer)
        .for_each({
            let (changed, node_changed) = (changed.clone(), node_changed.clone());
            move |event| {
                changed.notify_one();
                if let Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) = &event {
                    node_changed.mark(node.name_any());
                }
                std::future::ready(())
            }
        });
    let (leases, lease_writer) = reflector::store::<Lease>();
    let lease_watch = watcher(
        Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|l| l.managed_fields_mut().clear())
    .reflect(lease_writer)
    .for_each(|_| std::future::ready(()));
    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_watch = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p| p.managed_fields_mut().clear())
        .reflect(pod_writer)
        .for_each(notify(&changed));

    let monitor = monitor_loop(
        client.clone(),
        options,
        nodes.clone(),
        leases,
        pods.clone(),
        EventSink::new(client.clone(), CONTROLLER_NAME),
    );
    let tainting = no_schedule_loop(client.clone(), nodes.clone(), node_changed);
    let eviction = taint_eviction::run_loop(
        client.clone(),
        nodes,
        pods,
        changed,
        EventSink::new(client, taint_eviction::CONTROLLER_NAME),
    );
    tokio::select! {
        () = shutdown => {}
        _ = futures::future::join3(node_watch, lease_watch, pod_watch) => {}
        _ = futures::future::join3(monitor, eviction, tainting) => {}
    }
}

/// A `for_each` step that wakes the taint eviction loop on every watch event.
fn notify<T>(changed: &Arc<Notify>) -> impl FnMut(T) -> std::future::Ready<()> + use<T> {
    let changed = changed.clone();
    move |_| {
        changed.notify_one();
        std::future::ready(())
    }
}

/// Upstream's `doNoScheduleTaintingPass` for each node that changes (its `nodeUpdateQueue`): the
/// NoSchedule taints follow the conditions the kubelet just posted (the NoExecute ones are left to
/// the monitor, which owns the Ready condition's history). A write that loses a race with another
/// (the resourceVersion guard) is retried on the watch event the other write causes.
async fn no_schedule_loop(client: Client, nodes: Store<Node>, node_changed: Arc<NodesChanged>) {
    if crate::cache_ready::cache_ready(&nodes).await.is_err() {
        return;
    }
    let api: Api<Node> = Api::all(client);
    // Every node once, then only those that changed (a heartbeat of each of 1,000 nodes every 10 s
    // must not make every event a pass over all of them).
    let mut batch: Vec<Arc<Node>> = nodes.state();
    loop {
        for node in batch {
            let Some(taints) = taints::desired_taints(&node, None, Timestamp::now()) else {
                continue;
            };
            let patch = json!({
                "metadata": { "resourceVersion": node.resource_version() },
                "spec": { "taints": taints },
            });
            if let Err(e) = api
                .patch(&node.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                tracing::debug!(node = %node.name_any(), error = %e, "cannot update node taints, retrying on the next change");
            }
        }
        node_changed.notify.notified().await;
        batch = node_changed
            .take()
            .into_iter()
            .filter_map(|name| nodes.get(&ObjectRef::new(&name)))
            .collect();
    }
}

/// The names of the nodes changed since the NoSchedule tainting last looked, and its wake-up.
#[derive(Default)]
struct NodesChanged {
    names: std::sync::Mutex<HashSet<String>>,
    notify: Notify,
}

impl NodesChanged {
    fn mark(&self, name: String) {
        self.names.lock().unwrap_or_else(|e| e.into_inner()).insert(name);
        self.notify.notify_one();
    }

    fn take(&self) -> HashSet<String> {
        std::mem::take(&mut *self.names.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// What the monitor remembers between passes.
#[derive(Default)]
struct MonitorState {
    /// The nodes seen, by name, with their uid.
    known: HashMap<String, String>,
    health: HashMap<String, NodeHealth>,
    /// Nodes whose pods could not all be marked not ready (upstream's `nodesToRetry`).
    retry_mark: HashSet<String>,
}

/// `monitorNodeHealth` every `node_monitor_period`.
async fn monitor_loop(
    client: Client,
    options: Options,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    events: EventSink,
) {
    let (Ok(()), Ok(()), Ok(())) = (
        crate::cache_ready::cache_ready(&nodes).await,
        crate::cache_ready::cache_ready(&leases).await,
        crate::cache_ready::cache_ready(&pods).await,
    ) else {
        return;
    };
    let grace = GracePeriods {
        monitor: options.node_monitor_grace_period,
        startup: options.node_startup_grace_period,
    };
    let mut state = MonitorState::default();
    let mut tick = tokio::time::interval(options.node_monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let all = nodes.state();
        record_added_and_removed(&all, &mut state.known, &events);
        state
            .health
            .retain(|name, _| all.iter().any(|n| n.metadata.name.as_deref() == Some(name)));
        state
            .retry_mark
            .retain(|name| all.iter().any(|n| n.metadata.name.as_deref() == Some(name)));
        for node in all {
            let lease = leases.get(&ObjectRef::new(&node.name_any()).within(NODE_LEASE_NAMESPACE));
            monitor_node(
                &client,
                &node,
                lease.as_deref(),
                &pods,
                &events,
                grace,
                &mut state,
            )
            .await;
        }
    }
}

/// One node's share of a pass.
async fn monitor_node(
    client: &Client,
    node: &Node,
    lease: Option<&Lease>,
    pods: &Store<Pod>,
    events: &EventSink,
    grace: GracePeriods,
    state: &mut MonitorState,
) {
    let name = node.name_any();
    let api: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let check = health::check(node, lease, state.health.get(&name), now, grace);
    let mut resource_version = node.resource_version();
    if let Some(conditions) = &check.new_conditions {
        // Guarded by the resourceVersion read, as upstream's UpdateStatus is: a status the kubelet
        // posted meanwhile is not overwritten.
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "status": { "conditions": conditions },
        });
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(updated) => resource_version = updated.resource_version(),
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "cannot update node status, retrying next pass");
                return;
            }
        }
    }
    state.health.insert(name.clone(), check.health.clone());

    // NoExecute taints follow the Ready condition as observed (upstream's processTaintBaseEviction),
    // once the node has one.
    let ready = check
        .current_ready
        .as_ref()
        .map(|_| check.observed_ready.status.as_str());
    if let Some(taints) = taints::desired_taints(node, ready, now) {
        let patch = json!({
            "metadata": { "resourceVersion": resource_version },
            "spec": { "taints": taints },
        });
        if let Err(e) = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(node = %name, error = %e, "cannot update node taints, retrying next pass");
        }
    }

    let Some(current) = &check.current_ready else {
        return;
    };
    let was_ready = check.observed_ready.status == "True";
    let became_unready = current.status != "True" && was_ready;
    if became_unready {
        record_node_status_change(events, &name, "NodeNotReady");
    }
    if became_unready || (state.retry_mark.contains(&name) && !was_ready) {
        let on_node = pods.state_filter(|p| pod_util::node_name(p) == name);
        if mark_pods_not_ready(client, &on_node).await {
            state.retry_mark.remove(&name);
        } else {
            state.retry_mark.insert(name);
        }
    }
}

/// Upstream's `RegisteredNode` and `RemovingNode` events for nodes that appeared or went since the
/// previous pass.
fn record_added_and_removed(all: &[Arc<Node>], known: &mut HashMap<String, String>, events: &EventSink) {
    let event = |name: &str, uid: &str, reason: &str, what: String| {
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        };
        events.normal(&regarding, reason, reason, format!("Node {name} event: {what}"));
    };
    for node in all {
        let (name, uid) = (node.name_any(), node.metadata.uid.clone().unwrap_or_default());
        if known.get(&name) != Some(&uid) {
            event(
                &name,
                &uid,
                "RegisteredNode",
                format!("Registered Node {name} in Controller"),
            );
            known.insert(name, uid);
        }
    }
    known.retain(|name, uid| {
        let present = all
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(name.as_str()));
        if !present {
            event(
                name,
                uid,
                "RemovingNode",
                format!("Removing Node {name} from Controller"),
            );
        }
        present
    });
}

/// `RecordNodeStatusChange`: a Normal event about the node (whose uid upstream sets to its name).
fn record_node_status_change(events: &EventSink, name: &str, status: &str) {
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..Default::default()
    };
    events.normal(
        &regarding,
        status,
        status,
        format!("Node {name} status is now: {status}"),
    );
}

/// `MarkPodsNotReady`: the Ready condition of each pod that has one set False (a strategic merge
/// patch of that one condition). Returns whether every write succeeded.
async fn mark_pods_not_ready(client: &Client, pods: &[Arc<Pod>]) -> bool {
    let now = Timestamp::now().to_string();
    let writes = pods
        .iter()
        .filter(|p| pod_util::ready_condition(p).is_some_and(|c| c.status != "False"))
        .map(|pod| {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace().unwrap_or_default());
            let patch = json!({ "status": { "conditions": [
                { "type": "Ready", "status": "False", "lastTransitionTime": now }
            ]}});
            async move {
                match api
                    .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(_) => true,
                    Err(kube::Error::Api(s)) if s.is_not_found() => true,
                    Err(e) => {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "cannot mark pod not ready");
                        false
                    }
                }
            }
        });
    futures::future::join_all(writes).await.into_iter().all(|ok| ok)
}
