//! The default profile's plugins (upstream's pkg/scheduler/framework/plugins), one module each, and
//! the profile that wires them with upstream's weights.

pub mod inter_pod_affinity;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod pod_topology_spread;
pub mod selector_spread;
pub mod taint_toleration;

use crate::framework::Profile;

/// The default profile: filters NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
/// NodePorts, NodeResourcesFit; scores TaintToleration (3), NodeAffinity (2), NodeResourcesFit's
/// LeastAllocated (1), NodeResourcesBalancedAllocation (1) and spreading by owner (2, upstream's
/// PodTopologySpread default constraints over hostnames); then, from a view of the whole cluster,
/// InterPodAffinity (2) and a pod's own PodTopologySpread constraints (2).
pub fn default_profile() -> Profile {
    Profile {
        filters: vec![
            Box::new(node_unschedulable::NodeUnschedulable),
            Box::new(node_name::NodeName),
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_ports::NodePorts),
            Box::new(node_resources::Fit),
        ],
        scores: vec![
            Box::new(taint_toleration::TaintToleration),
            Box::new(node_affinity::NodeAffinity),
            Box::new(node_resources::LeastAllocated),
            Box::new(node_resources::BalancedAllocation),
            Box::new(selector_spread::SelectorSpread),
        ],
        cycle: vec![
            Box::new(inter_pod_affinity::InterPodAffinity),
            Box::new(pod_topology_spread::PodTopologySpread),
        ],
    }
}
