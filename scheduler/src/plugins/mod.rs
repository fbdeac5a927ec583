//! The in-tree plugins of the default profile that skiff implements, and the profile itself.
//! Mirrors pkg/scheduler/framework/plugins and apis/config/v1/default_plugins.go (order and weights).

pub mod basic;
pub mod node_affinity;
pub mod resources_fit;
pub mod spread;
pub mod taint_toleration;

use crate::framework::Framework;

/// The default profile: filters in upstream's order, scores with upstream's weights
/// (TaintToleration 3, NodeAffinity 2, PodTopologySpread 2, NodeResourcesFit 1, BalancedAllocation 1).
pub fn default_framework() -> Framework {
    Framework {
        filters: vec![
            Box::new(basic::NodeUnschedulable),
            Box::new(basic::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(basic::NodePorts),
            Box::new(resources_fit::NodeResourcesFit),
        ],
        scorers: vec![
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(spread::OwnerSpread),
            Box::new(resources_fit::LeastAllocated),
            Box::new(resources_fit::BalancedAllocation),
        ],
    }
}

/// Upstream's DefaultNormalizeScore: scales scores so the highest is MAX_NODE_SCORE (or reversed).
pub fn default_normalize(scores: &mut [i64], reverse: bool) {
    use crate::framework::MAX_NODE_SCORE as M;
    let max = scores.iter().copied().max().unwrap_or(0);
    if max == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = M);
        }
        return;
    }
    for s in scores.iter_mut() {
        *s = M * *s / max;
        if reverse {
            *s = M - *s;
        }
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    //! Object builders for plugin tests.
    use crate::framework::NodeInfo;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use serde_json::{Value, json};

    /// A node with allocatable cpu/memory/pods and extra fields merged into it.
    pub fn node(name: &str, cpu: &str, mem: &str, extra: Value) -> NodeInfo {
        let mut v = json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110", "ephemeral-storage": "10Gi"}}});
        merge(&mut v, extra);
        NodeInfo::new(serde_json::from_value::<Node>(v).unwrap())
    }

    /// A pod with one container and the spec fields in `spec`.
    pub fn pod(name: &str, spec: Value) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "c"}]}});
        merge(&mut v["spec"], spec);
        serde_json::from_value(v).unwrap()
    }

    /// A pod requesting cpu and memory.
    pub fn pod_req(name: &str, cpu: &str, mem: &str) -> Pod {
        pod(
            name,
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}),
        )
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
}
