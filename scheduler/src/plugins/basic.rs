//! The small filters: NodeUnschedulable (plugins/nodeunschedulable), NodeName (plugins/nodename) and
//! NodePorts (plugins/nodeports), with upstream's reason strings.

use k8s_openapi::api::core::v1::{Pod, Taint};

use super::taint_toleration::tolerates;
use crate::framework::{CycleState, FilterPlugin, FilterResult, NodeInfo, host_ports};

/// Filters out nodes with spec.unschedulable unless the pod tolerates node.kubernetes.io/unschedulable.
pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult {
        if !node
            .node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false)
        {
            return None;
        }
        let taint = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let tols = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        if tols.iter().any(|t| tolerates(t, &taint)) {
            return None;
        }
        Some(vec!["node(s) were unschedulable".into()])
    }
}

/// Filters out every node but spec.nodeName when the pod names one (nominated, not yet bound).
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult {
        match pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(n) if !n.is_empty() && n != node.name() => {
                Some(vec!["node(s) didn't match the requested node name".into()])
            }
            _ => None,
        }
    }
}

/// Filters out nodes where a requested host port (protocol, IP, port) is taken; 0.0.0.0 conflicts
/// with every IP, as upstream's HostPortInfo.CheckConflict.
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }
    fn preemption_may_help(&self) -> bool {
        true
    }
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult {
        let conflict = host_ports(pod).into_iter().any(|(proto, ip, port)| {
            node.used_ports.iter().any(|(p2, ip2, port2)| {
                *p2 == proto && *port2 == port && (ip == "0.0.0.0" || ip2 == "0.0.0.0" || *ip2 == ip)
            })
        });
        conflict.then(|| vec!["node(s) didn't have free ports for the requested pod ports".into()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{node, pod};
    use serde_json::json;

    #[test]
    fn unschedulable_node_is_filtered_unless_tolerated() {
        let n = node("n", "1", "1Gi", json!({"spec": {"unschedulable": true}}));
        let s = CycleState::default();
        assert_eq!(
            NodeUnschedulable.filter(&s, &pod("p", json!({})), &n),
            Some(vec!["node(s) were unschedulable".to_string()])
        );
        let tolerant = pod(
            "p",
            json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
                "effect": "NoSchedule"}]}),
        );
        assert_eq!(NodeUnschedulable.filter(&s, &tolerant, &n), None);
        assert_eq!(
            NodeUnschedulable.filter(&s, &pod("p", json!({})), &node("m", "1", "1Gi", json!({}))),
            None
        );
    }

    #[test]
    fn node_name_must_match() {
        let s = CycleState::default();
        let p = pod("p", json!({"nodeName": "a"}));
        assert_eq!(NodeName.filter(&s, &p, &node("a", "1", "1Gi", json!({}))), None);
        assert!(
            NodeName
                .filter(&s, &p, &node("b", "1", "1Gi", json!({})))
                .is_some()
        );
    }

    #[test]
    fn host_port_conflicts() {
        let s = CycleState::default();
        let with_port = |ip: &str| {
            pod(
                "p",
                json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080,
                "hostIP": ip}]}]}),
            )
        };
        let mut n = node("a", "1", "1Gi", json!({}));
        n.add_pod(&with_port("10.0.0.1"));
        assert!(NodePorts.filter(&s, &with_port("10.0.0.1"), &n).is_some());
        assert!(NodePorts.filter(&s, &with_port(""), &n).is_some());
        assert_eq!(NodePorts.filter(&s, &with_port("10.0.0.2"), &n), None);
        let udp = pod(
            "p",
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080,
            "protocol": "UDP"}]}]}),
        );
        assert_eq!(NodePorts.filter(&s, &udp, &n), None);
    }
}
