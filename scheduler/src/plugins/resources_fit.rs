//! NodeResourcesFit (plugins/noderesources/fit.go) filter, its LeastAllocated scoring strategy
//! (least_allocated.go) and NodeResourcesBalancedAllocation (balanced_allocation.go), over cpu and
//! memory with weight 1 each, as the default profile.

use k8s_openapi::api::core::v1::Pod;

use crate::{
    framework::{CycleState, FilterPlugin, FilterResult, MAX_NODE_SCORE, NodeInfo, ScorePlugin},
    resources::{pod_requests, pod_requests_nonzero},
};

/// The NodeResourcesFit filter.
pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn preemption_may_help(&self) -> bool {
        true
    }
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult {
        let req = pod_requests(pod);
        let (a, r) = (&node.allocatable, &node.requested);
        let mut reasons = Vec::new();
        if r.pods + 1 > a.pods {
            reasons.push("Too many pods".to_string());
        }
        if req.milli_cpu > 0 && req.milli_cpu > a.milli_cpu - r.milli_cpu {
            reasons.push("Insufficient cpu".into());
        }
        if req.memory > 0 && req.memory > a.memory - r.memory {
            reasons.push("Insufficient memory".into());
        }
        if req.ephemeral_storage > 0 && req.ephemeral_storage > a.ephemeral_storage - r.ephemeral_storage {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        (!reasons.is_empty()).then_some(reasons)
    }
}

/// (requested with the pod, allocatable) for cpu and memory, non-zero defaults applied.
fn cpu_mem(pod: &Pod, node: &NodeInfo) -> [(i64, i64); 2] {
    let p = pod_requests_nonzero(pod);
    let r = &node.non_zero_requested;
    [
        (r.milli_cpu + p.milli_cpu, node.allocatable.milli_cpu),
        (r.memory + p.memory, node.allocatable.memory),
    ]
}

/// NodeResourcesFit's default scoring strategy: prefers nodes with the most free cpu and memory.
pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let per: Vec<i64> = cpu_mem(pod, node)
            .iter()
            .map(|&(req, cap)| {
                if cap == 0 || req > cap {
                    0
                } else {
                    (cap - req) * MAX_NODE_SCORE / cap
                }
            })
            .collect();
        per.iter().sum::<i64>() / per.len() as i64
    }
}

/// NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory fractions stay close.
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }
    fn weight(&self) -> i64 {
        1
    }
    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let f: Vec<f64> = cpu_mem(pod, node)
            .iter()
            .map(|&(req, cap)| {
                if cap == 0 {
                    1.0
                } else {
                    (req as f64 / cap as f64).min(1.0)
                }
            })
            .collect();
        // With two resources the standard deviation is half their difference (upstream special-cases it).
        let std = (f[0] - f[1]).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{node, pod, pod_req};
    use serde_json::json;

    #[test]
    fn insufficient_resources_are_named() {
        let s = CycleState::default();
        let mut n = node("a", "2", "4Gi", json!({}));
        n.add_pod(&pod_req("x", "1500m", "1Gi"));
        assert_eq!(
            NodeResourcesFit.filter(&s, &pod_req("p", "500m", "3Gi"), &n),
            None
        );
        assert_eq!(
            NodeResourcesFit.filter(&s, &pod_req("p", "600m", "4Gi"), &n),
            Some(vec![
                "Insufficient cpu".to_string(),
                "Insufficient memory".to_string()
            ])
        );
        let eph = pod(
            "p",
            json!({"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}),
        );
        assert_eq!(
            NodeResourcesFit.filter(&s, &eph, &n),
            Some(vec!["Insufficient ephemeral-storage".to_string()])
        );
    }

    #[test]
    fn pod_count_is_limited() {
        let s = CycleState::default();
        let mut n = node("a", "2", "4Gi", json!({"status": {"allocatable": {"pods": "1"}}}));
        assert_eq!(NodeResourcesFit.filter(&s, &pod("p", json!({})), &n), None);
        n.add_pod(&pod("x", json!({})));
        assert_eq!(
            NodeResourcesFit.filter(&s, &pod("p", json!({})), &n),
            Some(vec!["Too many pods".to_string()])
        );
    }

    #[test]
    fn least_allocated_prefers_free_nodes() {
        let s = CycleState::default();
        let mut busy = node("a", "4", "4Gi", json!({}));
        busy.add_pod(&pod_req("x", "3", "3Gi"));
        let free = node("b", "4", "4Gi", json!({}));
        let p = pod_req("p", "1", "1Gi");
        assert_eq!(LeastAllocated.score(&s, &p, &free), 75);
        assert_eq!(LeastAllocated.score(&s, &p, &busy), 0);
    }

    #[test]
    fn balanced_allocation_prefers_even_use() {
        let s = CycleState::default();
        let n = node("a", "4", "4Gi", json!({}));
        assert_eq!(BalancedAllocation.score(&s, &pod_req("p", "2", "2Gi"), &n), 100);
        assert_eq!(BalancedAllocation.score(&s, &pod_req("p", "4", "1Ki"), &n), 50);
    }
}
