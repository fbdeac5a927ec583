//! The scheduling framework: per-node state (`NodeInfo`), the Filter and Score plugin traits, and one
//! scheduling cycle over a snapshot. Mirrors pkg/scheduler/framework (types.go, interface.go) and
//! schedule_one.go (findNodesThatFitPod, prioritizeNodes, selectHost, numFeasibleNodesToFind).

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Node, Pod};

use crate::resources::{Resource, pod_requests, pod_requests_nonzero};

/// Upstream's MaxNodeScore: every score plugin normalizes into 0..=100.
pub const MAX_NODE_SCORE: i64 = 100;

/// A node and what is already placed on it, as upstream's framework.NodeInfo.
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    /// The node object.
    pub node: Node,
    /// Allocatable resources (status.allocatable).
    pub allocatable: Resource,
    /// Sum of the requests of pods on the node (pod count included).
    pub requested: Resource,
    /// Sum of the requests with upstream's non-zero defaults, for scoring.
    pub non_zero_requested: Resource,
    /// Host ports in use: (protocol, hostIP, port).
    pub used_ports: HashSet<(String, String, i32)>,
    /// Pods placed on the node (bound or assumed).
    pub pods: Vec<Pod>,
}

impl NodeInfo {
    /// A NodeInfo for `node` with no pods.
    pub fn new(node: Node) -> Self {
        let allocatable = node
            .status
            .as_ref()
            .and_then(|s| s.allocatable.as_ref())
            .map(Resource::from_list)
            .unwrap_or_default();
        Self {
            node,
            allocatable,
            ..Default::default()
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }

    /// Accounts `pod` on this node (its requests, host ports and the pod itself).
    pub fn add_pod(&mut self, pod: &Pod) {
        self.requested.add(&pod_requests(pod));
        self.non_zero_requested.add(&pod_requests_nonzero(pod));
        for p in host_ports(pod) {
            self.used_ports.insert(p);
        }
        self.pods.push(pod.clone());
    }

    /// Removes `pod` (by namespace/name) from this node's accounting.
    pub fn remove_pod(&mut self, pod: &Pod) {
        let key = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref());
        if let Some(i) = self
            .pods
            .iter()
            .position(|p| (p.metadata.namespace.as_deref(), p.metadata.name.as_deref()) == key)
        {
            let old = self.pods.swap_remove(i);
            self.requested.sub(&pod_requests(&old));
            self.non_zero_requested.sub(&pod_requests_nonzero(&old));
            self.used_ports = self.pods.iter().flat_map(host_ports).collect();
        }
    }
}

/// The host ports a pod asks for: (protocol, hostIP defaulted to 0.0.0.0, port), as upstream's
/// GetContainerPorts + HostPortInfo.
pub fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = &pod.spec else { return vec![] };
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|hp| *hp > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

/// The outcome of one Filter plugin on one node: `None` fits, `Some(reasons)` does not.
pub type FilterResult = Option<Vec<String>>;

/// A Filter plugin (upstream's FilterPlugin): can `pod` run on `node`?
pub trait FilterPlugin: Send + Sync {
    /// The plugin's name, as upstream's.
    fn name(&self) -> &'static str;
    /// The reasons the pod does not fit, or None.
    fn filter(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult;
    /// Whether evicting pods could make a failing node fit (upstream's Unschedulable, as opposed to
    /// UnschedulableAndUnresolvable); only NodePorts and NodeResourcesFit say yes.
    fn preemption_may_help(&self) -> bool {
        false
    }
}

/// A Score plugin (upstream's ScorePlugin with ScoreExtensions::NormalizeScore).
pub trait ScorePlugin: Send + Sync {
    /// The plugin's name, as upstream's.
    fn name(&self) -> &'static str;
    /// The weight in the default profile.
    fn weight(&self) -> i64;
    /// The raw score of `node` for `pod`.
    fn score(&self, state: &CycleState, pod: &Pod, node: &NodeInfo) -> i64;
    /// Normalizes raw scores in place into 0..=MAX_NODE_SCORE; the default leaves them as they are.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// Per-cycle state shared by the plugins: the snapshot's totals they need.
#[derive(Debug, Default)]
pub struct CycleState {
    /// How many pods of the pod's owner (same namespace, same controller) are on each node.
    pub owner_pods_per_node: BTreeMap<String, i64>,
}

/// Why no node fits: reason -> number of nodes, as upstream's Diagnosis.NodeToStatus summarised.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// Count of nodes per reason.
    pub reasons: BTreeMap<String, usize>,
    /// Number of nodes considered.
    pub num_nodes: usize,
    /// Nodes that failed a filter which preemption could resolve.
    pub resolvable_nodes: usize,
}

impl Diagnosis {
    /// Upstream's FitError.Error(): "0/N nodes are available: <count> <reason>, ... ." with reasons
    /// sorted, followed by the preemption summary (we do not preempt, so "not helpful" for all).
    pub fn message(&self) -> String {
        if self.num_nodes == 0 {
            // upstream's ErrNoNodesAvailable
            return "no nodes available to schedule pods".into();
        }
        let mut parts: Vec<String> = self.reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
        parts.sort();
        let mut msg = format!("0/{} nodes are available", self.num_nodes);
        if !parts.is_empty() {
            msg.push_str(": ");
            msg.push_str(&parts.join(", "));
        }
        msg.push('.');
        // skiff does not preempt: nodes preemption could help report no victims (as upstream does when
        // no lower-priority pods exist), the rest are "not helpful".
        let mut pre = Vec::new();
        let unresolvable = self.num_nodes - self.resolvable_nodes;
        if unresolvable > 0 {
            pre.push(format!("{unresolvable} Preemption is not helpful for scheduling"));
        }
        if self.resolvable_nodes > 0 {
            pre.push(format!(
                "{} No preemption victims found for incoming pod",
                self.resolvable_nodes
            ));
        }
        pre.sort();
        msg.push_str(&format!(
            " preemption: 0/{} nodes are available: {}.",
            self.num_nodes,
            pre.join(", ")
        ));
        msg
    }
}

/// Upstream's numFeasibleNodesToFind with percentageOfNodesToScore unset (adaptive): all nodes below
/// 100, else 50 - nodes/125 percent, at least 5 percent and at least 100 nodes.
pub fn num_feasible_nodes_to_find(num_all_nodes: usize) -> usize {
    const MIN_FEASIBLE: usize = 100;
    const MIN_PERCENT: i64 = 5;
    if num_all_nodes < MIN_FEASIBLE {
        return num_all_nodes;
    }
    let percent = (50 - num_all_nodes as i64 / 125).max(MIN_PERCENT);
    let n = num_all_nodes * percent as usize / 100;
    n.max(MIN_FEASIBLE)
}

/// A profile: the plugins run in a cycle.
pub struct Framework {
    /// Filter plugins, in order.
    pub filters: Vec<Box<dyn FilterPlugin>>,
    /// Score plugins.
    pub scorers: Vec<Box<dyn ScorePlugin>>,
}

impl Framework {
    /// One scheduling cycle over `nodes`, starting the search at `*next_start` (round-robin, as
    /// upstream's nextStartNodeIndex). Returns the chosen node index or the diagnosis.
    pub fn schedule(
        &self,
        pod: &Pod,
        nodes: &[NodeInfo],
        next_start: &mut usize,
    ) -> Result<usize, Diagnosis> {
        if nodes.is_empty() {
            return Err(Diagnosis::default());
        }
        let state = CycleState::build(pod, nodes);
        let to_find = num_feasible_nodes_to_find(nodes.len());
        let mut feasible = Vec::with_capacity(to_find.min(nodes.len()));
        let mut diag = Diagnosis {
            num_nodes: nodes.len(),
            ..Default::default()
        };
        let start = *next_start % nodes.len();
        let mut processed = 0;
        for i in 0..nodes.len() {
            let idx = (start + i) % nodes.len();
            processed += 1;
            match self
                .filters
                .iter()
                .find_map(|f| f.filter(&state, pod, &nodes[idx]).map(|r| (f, r)))
            {
                None => {
                    feasible.push(idx);
                    if feasible.len() >= to_find {
                        break;
                    }
                }
                Some((plugin, reasons)) => {
                    if plugin.preemption_may_help() {
                        diag.resolvable_nodes += 1;
                    }
                    for r in reasons {
                        *diag.reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        *next_start = (start + processed) % nodes.len();
        if feasible.is_empty() {
            return Err(diag);
        }
        if feasible.len() == 1 {
            return Ok(feasible[0]);
        }
        let totals = self.prioritize(&state, pod, nodes, &feasible);
        // selectHost: the highest total; ties go to the first seen (upstream picks one at random).
        let best = totals
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i);
        Ok(feasible[best.unwrap_or(0)])
    }

    /// Weighted, normalized scores of the feasible nodes (upstream's prioritizeNodes).
    pub fn prioritize(
        &self,
        state: &CycleState,
        pod: &Pod,
        nodes: &[NodeInfo],
        feasible: &[usize],
    ) -> Vec<i64> {
        let mut totals = vec![0i64; feasible.len()];
        for s in &self.scorers {
            let mut scores: Vec<i64> = feasible.iter().map(|&i| s.score(state, pod, &nodes[i])).collect();
            s.normalize(&mut scores);
            for (t, v) in totals.iter_mut().zip(scores) {
                *t += v * s.weight();
            }
        }
        totals
    }
}

impl CycleState {
    /// Computes the per-cycle totals for `pod` over the snapshot (PreScore).
    pub fn build(pod: &Pod, nodes: &[NodeInfo]) -> Self {
        let mut state = CycleState::default();
        let Some(owner) = controller_uid(pod) else {
            return state;
        };
        for n in nodes {
            let c = n
                .pods
                .iter()
                .filter(|p| {
                    p.metadata.namespace == pod.metadata.namespace && controller_uid(p) == Some(owner)
                })
                .count();
            if c > 0 {
                state.owner_pods_per_node.insert(n.name().to_owned(), c as i64);
            }
        }
        state
    }
}

/// The uid of the pod's controller ownerReference, if any.
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{
        default_framework,
        fixtures::{node, pod, pod_req},
    };
    use serde_json::json;

    #[test]
    fn adaptive_percentage_of_nodes_to_score() {
        assert_eq!(num_feasible_nodes_to_find(50), 50);
        assert_eq!(num_feasible_nodes_to_find(100), 100);
        assert_eq!(num_feasible_nodes_to_find(1000), 420); // 50 - 8 = 42%
        assert_eq!(num_feasible_nodes_to_find(5000), 500); // 50 - 40 = 10%
        assert_eq!(num_feasible_nodes_to_find(10000), 500); // floor of 5%
    }

    #[test]
    fn failure_summary_matches_upstream_wording() {
        let fw = default_framework();
        let mut ready = node("a", "1", "1Gi", json!({}));
        ready.add_pod(&pod_req("x", "900m", "1Mi"));
        let nodes = vec![
            ready.clone(),
            node(
                "b",
                "1",
                "1Gi",
                json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready",
                "effect": "NoSchedule"}]}}),
            ),
            {
                let mut n = ready;
                n.node.metadata.name = Some("c".into());
                n
            },
        ];
        let err = fw
            .schedule(&pod_req("p", "500m", "1Mi"), &nodes, &mut 0)
            .unwrap_err();
        assert_eq!(
            err.message(),
            "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }, \
             2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for \
             scheduling, 2 No preemption victims found for incoming pod."
        );
    }

    #[test]
    fn picks_the_best_scored_feasible_node_and_advances_the_start_index() {
        let fw = default_framework();
        let mut busy = node("a", "4", "4Gi", json!({}));
        busy.add_pod(&pod_req("x", "3", "3Gi"));
        let nodes = vec![
            busy,
            node("b", "4", "4Gi", json!({})),
            node("c", "1", "1Gi", json!({})),
        ];
        let mut start = 0;
        assert_eq!(
            fw.schedule(&pod_req("p", "500m", "512Mi"), &nodes, &mut start),
            Ok(1)
        );
        assert_eq!(
            start, 0,
            "all 3 nodes were examined, so the next search starts where this one did"
        );
        let only_c = pod("p", json!({"nodeName": "c"}));
        assert_eq!(fw.schedule(&only_c, &nodes, &mut start), Ok(2));
    }

    #[test]
    fn no_nodes_gives_an_empty_diagnosis() {
        let err = default_framework()
            .schedule(&pod("p", json!({})), &[], &mut 0)
            .unwrap_err();
        assert_eq!(err.message(), "no nodes available to schedule pods");
    }
}
