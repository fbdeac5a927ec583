//! The scheduling framework (upstream's pkg/scheduler/framework): what the plugins see of a pod and
//! of a node, the Filter and Score plugin interfaces, and one scheduling cycle over a snapshot:
//! filter the nodes, score the feasible ones, weigh and add the scores, pick the best.
//!
//! Plugins are pure functions of ([`PodInfo`], [`NodeInfo`]); everything that talks to the API server
//! lives in [`crate::scheduler`]. That makes every plugin a table test.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
};

use k8s_openapi::api::core::v1::{
    Affinity, Node, Pod, PodAffinityTerm, Taint, Toleration, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};

use crate::quantity;

/// Amounts of the resources the scheduler counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU in millicores.
    pub milli_cpu: i64,
    /// Memory in bytes.
    pub memory: i64,
    /// Ephemeral storage in bytes.
    pub ephemeral_storage: i64,
    /// Pods.
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
    }

    fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
    }

    fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }
}

/// A host port a container asks for: (protocol, host IP, port).
pub type HostPort = (String, String, i32);

/// What the plugins need of a pod.
#[derive(Clone, Debug, Default)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: String,
    /// The pod's uid.
    pub uid: String,
    /// Requests as the resource filter counts them (upstream's `computePodResourceRequest`).
    pub requests: Resources,
    /// Requests with upstream's defaults for unset CPU (100m) and memory (200Mi), for scoring.
    pub nonzero: Resources,
    /// Host ports its containers ask for.
    pub host_ports: Vec<HostPort>,
    /// `spec.nodeName` when set.
    pub node_name: Option<String>,
    /// `spec.nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `spec.affinity`.
    pub affinity: Option<Affinity>,
    /// `spec.tolerations`.
    pub tolerations: Vec<Toleration>,
    /// The uid of its controller (ReplicaSet…), for spreading one owner's pods.
    pub owner: Option<String>,
    /// `spec.priority`.
    pub priority: i32,
    /// What other pods' inter-pod affinity and spreading look at: namespace, labels, its own terms.
    pub meta: Arc<PodMeta>,
    /// `spec.topologySpreadConstraints`.
    pub spread: Vec<TopologySpreadConstraint>,
}

/// What inter-pod affinity and topology spreading need of a pod already placed: its namespace and
/// labels (to match terms against) and its own terms (existing pods' anti-affinity binds newcomers).
#[derive(Clone, Debug, Default)]
pub struct PodMeta {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `podAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_affinity: Vec<PodAffinityTerm>,
    /// `podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution`.
    pub required_anti_affinity: Vec<PodAffinityTerm>,
    /// `podAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_affinity: Vec<WeightedPodAffinityTerm>,
    /// `podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution`.
    pub preferred_anti_affinity: Vec<WeightedPodAffinityTerm>,
}

/// Upstream's defaults for a container without requests, used in scoring only.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

impl PodInfo {
    /// Reads what the plugins need from a pod.
    pub fn new(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.clone().unwrap_or_default();
        let requests_of = |c: &k8s_openapi::api::core::v1::Container, nonzero: bool| {
            let r = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.clone())
                .unwrap_or_default();
            let get = |k: &str| r.get(k).map(|q| q.0.clone());
            Resources {
                milli_cpu: get("cpu").map(|q| quantity::milli(&q)).unwrap_or(if nonzero {
                    DEFAULT_MILLI_CPU
                } else {
                    0
                }),
                memory: get("memory").map(|q| quantity::value(&q)).unwrap_or(if nonzero {
                    DEFAULT_MEMORY
                } else {
                    0
                }),
                ephemeral_storage: get("ephemeral-storage").map(|q| quantity::value(&q)).unwrap_or(0),
                pods: 0,
            }
        };
        // Sum of the app containers, or the largest init container if that is more (init containers
        // run one at a time, before the app containers).
        let total = |nonzero: bool| {
            let mut sum = Resources::default();
            for c in &spec.containers {
                sum.add(&requests_of(c, nonzero));
            }
            // Restartable init containers (sidecars) keep running: each adds to every init step after
            // it and to the app containers (upstream's PodRequests).
            let mut sidecars = Resources::default();
            let mut init_max = Resources::default();
            for c in spec.init_containers.iter().flatten() {
                let r = requests_of(c, nonzero);
                if c.restart_policy.as_deref() == Some("Always") {
                    sidecars.add(&r);
                    init_max.max(&sidecars);
                } else {
                    let mut step = r;
                    step.add(&sidecars);
                    init_max.max(&step);
                }
            }
            sum.add(&sidecars);
            sum.max(&init_max);
            if let Some(overhead) = &spec.overhead {
                sum.milli_cpu += overhead.get("cpu").map(|q| quantity::milli(&q.0)).unwrap_or(0);
                sum.memory += overhead.get("memory").map(|q| quantity::value(&q.0)).unwrap_or(0);
            }
            sum.pods = 1;
            sum
        };
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| {
                (
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    p.host_ip
                        .clone()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    p.host_port.unwrap_or(0),
                )
            })
            .collect();
        Self {
            key: format!(
                "{}/{}",
                meta.namespace.as_deref().unwrap_or(""),
                meta.name.as_deref().unwrap_or("")
            ),
            uid: meta.uid.clone().unwrap_or_default(),
            requests: total(false),
            nonzero: total(true),
            host_ports,
            node_name: spec.node_name.clone().filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            affinity: spec.affinity.clone(),
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            owner: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            priority: spec.priority.unwrap_or(0),
            meta: Arc::new(PodMeta {
                namespace: meta.namespace.clone().unwrap_or_default(),
                labels: meta.labels.clone().unwrap_or_default(),
                required_affinity: spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.pod_affinity.as_ref())
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
                    .unwrap_or_default(),
                required_anti_affinity: spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.pod_anti_affinity.as_ref())
                    .and_then(|a| a.required_during_scheduling_ignored_during_execution.clone())
                    .unwrap_or_default(),
                preferred_affinity: spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.pod_affinity.as_ref())
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone())
                    .unwrap_or_default(),
                preferred_anti_affinity: spec
                    .affinity
                    .as_ref()
                    .and_then(|a| a.pod_anti_affinity.as_ref())
                    .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.clone())
                    .unwrap_or_default(),
            }),
            spread: spec.topology_spread_constraints.clone().unwrap_or_default(),
        }
    }
}

/// What the plugins see of a node: the Node and the pods counted on it (bound or assumed).
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its taints.
    pub taints: Vec<Taint>,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    /// What it offers.
    pub allocatable: Resources,
    /// What its pods request.
    pub requested: Resources,
    /// The same with the scoring defaults.
    pub nonzero_requested: Resources,
    /// Host ports in use.
    pub used_ports: HashSet<HostPort>,
    /// Pods on it per controller uid.
    pub owners: HashMap<String, i64>,
    /// The pods counted, by uid.
    pub pods: HashMap<String, Arc<PodMeta>>,
    /// How many of them have required anti-affinity terms (which every newcomer must respect).
    pub anti_affinity_pods: usize,
}

impl NodeInfo {
    /// A node's info from the Node (no pods yet).
    pub fn from_node(node: &Node) -> Self {
        let alloc = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.clone())
            .unwrap_or_default();
        let get = |k: &str| alloc.get(k).map(|q| q.0.clone());
        let spec = node.spec.clone().unwrap_or_default();
        Self {
            name: node.metadata.name.clone().unwrap_or_default(),
            labels: node.metadata.labels.clone().unwrap_or_default(),
            taints: spec.taints.unwrap_or_default(),
            unschedulable: spec.unschedulable.unwrap_or(false),
            allocatable: Resources {
                milli_cpu: get("cpu").map(|q| quantity::milli(&q)).unwrap_or(0),
                memory: get("memory").map(|q| quantity::value(&q)).unwrap_or(0),
                ephemeral_storage: get("ephemeral-storage").map(|q| quantity::value(&q)).unwrap_or(0),
                pods: get("pods").map(|q| quantity::value(&q)).unwrap_or(0),
            },
            ..Default::default()
        }
    }

    /// Takes the Node's new state, keeping the pods counted on it.
    pub fn update_node(&mut self, node: &Node) {
        let fresh = Self::from_node(node);
        self.labels = fresh.labels;
        self.taints = fresh.taints;
        self.unschedulable = fresh.unschedulable;
        self.allocatable = fresh.allocatable;
    }

    /// Counts a pod on this node (once).
    pub fn add_pod(&mut self, pod: &PodInfo) {
        if self.pods.insert(pod.uid.clone(), pod.meta.clone()).is_some() {
            return;
        }
        if !pod.meta.required_anti_affinity.is_empty() {
            self.anti_affinity_pods += 1;
        }
        self.requested.add(&pod.requests);
        self.nonzero_requested.add(&pod.nonzero);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
    }

    /// Stops counting a pod.
    pub fn remove_pod(&mut self, pod: &PodInfo) {
        let Some(meta) = self.pods.remove(&pod.uid) else {
            return;
        };
        if !meta.required_anti_affinity.is_empty() {
            self.anti_affinity_pods -= 1;
        }
        self.requested.sub(&pod.requests);
        self.nonzero_requested.sub(&pod.nonzero);
        for port in &pod.host_ports {
            self.used_ports.remove(port);
        }
        if let Some(owner) = &pod.owner
            && let Some(n) = self.owners.get_mut(owner)
        {
            *n -= 1;
            if *n <= 0 {
                self.owners.remove(owner);
            }
        }
    }
}

/// Why a node does not fit, as upstream words it ("Insufficient cpu").
pub type Reason = String;

/// A Filter plugin: can the pod run on the node?
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name (upstream's).
    fn name(&self) -> &'static str;
    /// `Ok` if the pod may go to the node, else the reasons it may not.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>>;
    /// Whether evicting pods could make a failing node fit: upstream's `Unschedulable` code, as opposed
    /// to `UnschedulableAndUnresolvable`. Only NodePorts and NodeResourcesFit say yes.
    fn preemption_may_help(&self) -> bool {
        false
    }
}

/// A Score plugin: how good is the node for the pod (0..=100 once normalized)?
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name (upstream's).
    fn name(&self) -> &'static str;
    /// Its weight in the default profile.
    fn weight(&self) -> i64;
    /// A raw score of the node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Brings raw scores to 0..=100 (by default they already are).
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// A plugin that looks at the whole cluster once per cycle before it judges nodes: upstream's
/// PreFilter/PreScore writing CycleState, for inter-pod affinity and topology spreading, whose
/// verdict on one node depends on the pods of every node in its topology domain.
pub trait CyclePlugin: Send + Sync {
    /// The plugin's name (upstream's).
    fn name(&self) -> &'static str;
    /// Its score weight in the default profile.
    fn weight(&self) -> i64;
    /// What this cycle needs, from every node; None when the pod and the cluster give the plugin
    /// nothing to check (the common case, which then costs nothing).
    fn prepare(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Box<dyn Prepared>>;
}

/// A cycle plugin's state for one pod: it filters and scores nodes.
pub trait Prepared: Send + Sync + std::fmt::Debug {
    /// `Ok` if the pod may go to the node, else the reasons it may not and whether evicting pods
    /// could change that (see [`FilterPlugin::preemption_may_help`]; here it depends on the rule).
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), (Vec<Reason>, bool)>;
    /// A raw score of the node.
    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64;
    /// Brings raw scores to 0..=100.
    fn normalize(&self, scores: &mut [i64]);
}

/// The highest node score.
pub const MAX_NODE_SCORE: i64 = 100;

/// Scales `scores` so the highest is 100 (upstream's `DefaultNormalizeScore`), reversed when lower
/// raw scores are better.
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = MAX_NODE_SCORE);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = MAX_NODE_SCORE * *s / max;
        if reverse {
            *s = MAX_NODE_SCORE - *s;
        }
    }
}

/// The plugins of a profile.
pub struct Profile {
    /// Filters, in order.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Scores.
    pub scores: Vec<Box<dyn ScorePlugin>>,
    /// Plugins that filter and score from a view of the whole cluster, after the filters above.
    pub cycle: Vec<Box<dyn CyclePlugin>>,
}

/// The outcome of filtering: the feasible nodes and, per reason, how many nodes gave it.
#[derive(Debug, Default)]
pub struct Filtered {
    /// Indices (into the snapshot) of the nodes the pod fits.
    pub feasible: Vec<usize>,
    /// Reason → number of nodes.
    pub reasons: BTreeMap<Reason, usize>,
    /// Nodes examined.
    pub examined: usize,
    /// Nodes that failed a filter which preemption could resolve.
    pub resolvable: usize,
    /// The cycle plugins' states for this pod, with their weights (used again to score).
    pub prepared: Vec<(i64, Box<dyn Prepared>)>,
}

/// How many feasible nodes are enough to stop looking (upstream's adaptive
/// `percentageOfNodesToScore`: 50% minus 1% per 125 nodes, at least 5%, at least 100 nodes).
pub fn nodes_to_find(total: usize) -> usize {
    if total < 100 {
        return total;
    }
    let percentage = (50 - total as i64 / 125).max(5) as usize;
    (total * percentage / 100).max(100)
}

impl Profile {
    /// Filters `nodes` starting at `start` (round robin between cycles, as upstream), stopping once
    /// enough feasible nodes are found.
    pub fn filter(&self, pod: &PodInfo, nodes: &[&NodeInfo], start: usize) -> Filtered {
        let want = nodes_to_find(nodes.len());
        let mut out = Filtered {
            prepared: self
                .cycle
                .iter()
                .filter_map(|p| Some((p.weight(), p.prepare(pod, nodes)?)))
                .collect(),
            ..Default::default()
        };
        for i in 0..nodes.len() {
            if out.feasible.len() >= want {
                break;
            }
            let index = (start + i) % nodes.len();
            out.examined += 1;
            let failed = self
                .filters
                .iter()
                .find_map(|f| {
                    let reasons = f.filter(pod, nodes[index]).err()?;
                    Some((f.preemption_may_help(), reasons))
                })
                .or_else(|| {
                    out.prepared.iter().find_map(|(_, p)| {
                        let (reasons, may_help) = p.filter(pod, nodes[index]).err()?;
                        Some((may_help, reasons))
                    })
                });
            match failed {
                None => out.feasible.push(index),
                Some((may_help, reasons)) => {
                    if may_help {
                        out.resolvable += 1;
                    }
                    for r in reasons {
                        *out.reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        out
    }

    /// The weighted, normalized total score of each feasible node of `filtered`.
    pub fn score(&self, pod: &PodInfo, nodes: &[&NodeInfo], filtered: &Filtered) -> Vec<i64> {
        let feasible = &filtered.feasible;
        let mut total = vec![0i64; feasible.len()];
        let mut add = |weight: i64, scores: Vec<i64>| {
            for (t, s) in total.iter_mut().zip(scores) {
                *t += s * weight;
            }
        };
        for plugin in &self.scores {
            let mut scores: Vec<i64> = feasible.iter().map(|i| plugin.score(pod, nodes[*i])).collect();
            plugin.normalize(&mut scores);
            add(plugin.weight(), scores);
        }
        for (weight, prepared) in &filtered.prepared {
            let mut scores: Vec<i64> = feasible.iter().map(|i| prepared.score(pod, nodes[*i])).collect();
            prepared.normalize(&mut scores);
            add(*weight, scores);
        }
        total
    }
}

/// Upstream's FailedScheduling message (FitError.Error): "0/3 nodes are available: 1 Insufficient cpu,
/// 2 node(s) had untolerated taint {…}." (reasons counted per node, the "count reason" strings sorted),
/// then the DefaultPreemption PostFilter's own summary. skiff does not preempt, so the nodes where
/// preemption could help (`resolvable`) report what upstream reports when no lower-priority victim
/// exists, and the rest "Preemption is not helpful for scheduling". With no nodes at all upstream
/// says ErrNoNodesAvailable.
pub fn fit_error(total_nodes: usize, reasons: &BTreeMap<Reason, usize>, resolvable: usize) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".to_owned();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{total_nodes} nodes are available");
    if !parts.is_empty() {
        msg.push_str(": ");
        msg.push_str(&parts.join(", "));
    }
    let resolvable = resolvable.min(total_nodes);
    let mut preemption = Vec::new();
    if total_nodes > resolvable {
        preemption.push(format!(
            "{} Preemption is not helpful for scheduling",
            total_nodes - resolvable
        ));
    }
    if resolvable > 0 {
        preemption.push(format!(
            "{resolvable} No preemption victims found for incoming pod"
        ));
    }
    preemption.sort();
    format!(
        "{msg}. preemption: 0/{total_nodes} nodes are available: {}.",
        preemption.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_to_find_follows_upstreams_adaptive_percentage() {
        assert_eq!(nodes_to_find(50), 50);
        assert_eq!(nodes_to_find(100), 100);
        assert_eq!(nodes_to_find(1000), 420);
        assert_eq!(nodes_to_find(5000), 500);
        assert_eq!(nodes_to_find(10000), 500);
    }

    #[test]
    fn fit_errors_read_as_upstreams() {
        let mut reasons = BTreeMap::new();
        reasons.insert("Insufficient cpu".to_owned(), 2);
        reasons.insert(
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_owned(),
            1,
        );
        assert_eq!(
            fit_error(3, &reasons, 2),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for \
             scheduling, 2 No preemption victims found for incoming pod."
        );
        reasons.remove("Insufficient cpu");
        assert_eq!(
            fit_error(1, &reasons, 0),
            "0/1 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. \
             preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_error(0, &BTreeMap::new(), 0),
            "no nodes available to schedule pods"
        );
    }

    #[test]
    fn init_containers_count_by_their_largest_and_defaults_apply_to_scoring_only() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u" },
            "spec": {
                "initContainers": [{ "name": "i", "resources": { "requests": { "cpu": "2" } } }],
                "containers": [
                    { "name": "a", "resources": { "requests": { "cpu": "500m", "memory": "1Gi" } } },
                    { "name": "b", "ports": [{ "containerPort": 80, "hostPort": 8080 }] }
                ]
            }
        }))
        .unwrap();
        let info = PodInfo::new(&pod);
        assert_eq!(
            info.requests,
            Resources {
                milli_cpu: 2000,
                memory: 1 << 30,
                ephemeral_storage: 0,
                pods: 1
            }
        );
        assert_eq!(info.nonzero.memory, (1 << 30) + DEFAULT_MEMORY);
        assert_eq!(
            info.host_ports,
            vec![("TCP".to_owned(), "0.0.0.0".to_owned(), 8080)]
        );
        assert_eq!(info.key, "ns/p");
    }

    #[test]
    fn sidecars_add_to_init_steps_and_to_the_app_containers() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u" },
            "spec": {
                "initContainers": [
                    { "name": "s", "restartPolicy": "Always", "resources": { "requests": { "cpu": "200m" } } },
                    { "name": "i", "resources": { "requests": { "cpu": "1" } } }
                ],
                "containers": [{ "name": "a", "resources": { "requests": { "cpu": "300m" } } }],
                "overhead": { "cpu": "10m" }
            }
        }))
        .unwrap();
        // max(300m + 200m, 1 + 200m) + 10m overhead
        assert_eq!(PodInfo::new(&pod).requests.milli_cpu, 1210);
    }
}
