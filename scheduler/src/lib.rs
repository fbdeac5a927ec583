//! The scheduler of skiff, the counterpart of kube-scheduler: it assigns each pending pod to a node.
//!
//! - [`framework`]: what plugins see of pods and nodes, the Filter and Score interfaces, one cycle;
//! - [`plugins`]: the default profile (NodeUnschedulable, NodeName, TaintToleration, NodeAffinity,
//!   NodePorts, NodeResourcesFit with LeastAllocated, BalancedAllocation, spreading by owner);
//! - [`cache`] (nodes and the pods counted on them, assumed ones included) and [`queue`];
//! - [`scheduler`]: the loop that ties them to the API server: two watches in, `pods/binding` out,
//!   events and the `PodScheduled` condition for pods that fit nowhere.

pub mod cache;
pub mod framework;
pub mod plugins;
pub mod quantity;
pub mod queue;
pub mod scheduler;

pub use scheduler::{SCHEDULER_NAME, run};
