//! The scheduler's cache (upstream's internal/cache): every node, and every pod counted on one,
//! bound or only *assumed*. A pod is assumed on its node the moment the scheduler picks it, so the
//! next cycle sees its requests even though the binding is still on its way; the watch then confirms
//! it, or a failed binding forgets it.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::Node;

use crate::framework::{NodeInfo, PodInfo};

/// Nodes and the pods counted on them.
#[derive(Default)]
pub struct Cache {
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeInfo>,
    /// Counted pods by uid: (node, pod).
    pods: HashMap<String, (String, PodInfo)>,
    /// Uids counted before their binding was seen.
    assumed: HashSet<String>,
}

impl Cache {
    /// A node appeared or changed.
    pub fn upsert_node(&mut self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.nodes.get_mut(&name) {
            Some(info) => info.update_node(node),
            None => {
                let mut info = NodeInfo::from_node(node);
                // Pods counted before their node arrived (a restart lists both at once).
                for (on, pod) in self.pods.values() {
                    if *on == name {
                        info.add_pod(pod);
                    }
                }
                self.nodes.insert(name, info);
            }
        }
    }

    /// A node is gone.
    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Counts `pod` on `node` (a bound pod seen through the watch, or an assumed one).
    pub fn add_pod(&mut self, node: &str, pod: PodInfo, assumed: bool) {
        if let Some((on, _)) = self.pods.get(&pod.uid) {
            if on == node {
                if !assumed {
                    self.assumed.remove(&pod.uid);
                }
                return;
            }
            self.remove_pod(&pod.uid.clone());
        }
        if let Some(info) = self.nodes.get_mut(node) {
            info.add_pod(&pod);
        }
        if assumed {
            self.assumed.insert(pod.uid.clone());
        }
        self.pods.insert(pod.uid.clone(), (node.to_owned(), pod));
    }

    /// Stops counting a pod (deleted, finished, or a binding that failed).
    pub fn remove_pod(&mut self, uid: &str) {
        self.assumed.remove(uid);
        if let Some((node, pod)) = self.pods.remove(uid)
            && let Some(info) = self.nodes.get_mut(&node)
        {
            info.remove_pod(&pod);
        }
    }

    /// Whether a pod is counted somewhere (assumed or bound).
    pub fn has_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Resources;

    #[test]
    fn assumed_pods_count_until_forgotten_and_are_not_counted_twice() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": { "name": "n" }, "status": { "allocatable": { "cpu": "1", "memory": "1Gi", "pods": "10" } } }))
        .unwrap();
        let mut cache = Cache::default();
        cache.upsert_node(&node);
        let pod = PodInfo {
            uid: "u".into(),
            requests: Resources {
                milli_cpu: 500,
                pods: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        cache.add_pod("n", pod.clone(), true);
        cache.add_pod("n", pod.clone(), false); // the watch confirms the binding
        assert_eq!(cache.nodes["n"].requested.milli_cpu, 500);
        cache.remove_pod("u");
        assert_eq!(cache.nodes["n"].requested.milli_cpu, 0);
        assert!(!cache.has_pod("u"));
    }
}
