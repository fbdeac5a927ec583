//! NodeName: a pod that names its node fits only that node.

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Reason};

/// The plugin.
pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        match &pod.node_name {
            Some(name) if *name != node.name => {
                Err(vec!["node(s) didn't match the requested node name".into()])
            }
            _ => Ok(()),
        }
    }
}
