//! NodePorts: a pod's host ports must be free on the node (same protocol and port, and the same host
//! IP or either one 0.0.0.0).

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Reason};

/// The plugin.
pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn preemption_may_help(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let conflict = pod.host_ports.iter().any(|(proto, ip, port)| {
            node.used_ports
                .iter()
                .any(|(p, i, n)| p == proto && n == port && (i == ip || i == "0.0.0.0" || ip == "0.0.0.0"))
        });
        if conflict {
            return Err(vec![
                "node(s) didn't have free ports for the requested pod ports".into(),
            ]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_conflict_by_protocol_port_and_address() {
        let mut node = NodeInfo::default();
        node.used_ports.insert(("TCP".into(), "0.0.0.0".into(), 8080));
        let pod = |proto: &str, ip: &str, port| PodInfo {
            host_ports: vec![(proto.into(), ip.into(), port)],
            ..Default::default()
        };
        assert!(NodePorts.filter(&pod("TCP", "10.0.0.1", 8080), &node).is_err());
        assert!(NodePorts.filter(&pod("UDP", "0.0.0.0", 8080), &node).is_ok());
        assert!(NodePorts.filter(&pod("TCP", "0.0.0.0", 8081), &node).is_ok());
    }
}
