//! The scheduling queue (upstream's internal/queue): pods waiting to be scheduled, highest priority
//! first and then oldest; pods that did not fit wait apart (*unschedulable*) until something changes
//! that could make them fit (a node added or changed, a pod deleted), or a minute passes.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap, HashSet},
};

use k8s_openapi::api::core::v1::Pod;

/// Pending pods and where each waits.
#[derive(Default)]
pub struct Queue {
    /// (priority, arrival) order of the pods ready to be tried.
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    /// The latest version of every pending pod, by uid.
    pods: HashMap<String, Pod>,
    /// Where each active pod sits in `active`.
    slots: HashMap<String, (Reverse<i32>, u64)>,
    /// Pods that fit nowhere last time.
    unschedulable: HashSet<String>,
    seq: u64,
}

impl Queue {
    /// A pending pod was added or changed: it is (re)tried.
    pub fn add(&mut self, uid: String, pod: Pod) {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.pods.insert(uid.clone(), pod);
        self.unschedulable.remove(&uid);
        if !self.slots.contains_key(&uid) {
            self.seq += 1;
            self.active.insert((Reverse(priority), self.seq, uid.clone()));
            self.slots.insert(uid, (Reverse(priority), self.seq));
        }
    }

    /// The pod is no longer pending (bound, deleted, or not ours).
    pub fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
        self.unschedulable.remove(uid);
        if let Some((p, s)) = self.slots.remove(uid) {
            self.active.remove(&(p, s, uid.to_owned()));
        }
    }

    /// The next pod to try.
    pub fn pop(&mut self) -> Option<(String, Pod)> {
        while let Some((p, s, uid)) = self.active.pop_first() {
            self.slots.remove(&uid);
            let _ = (p, s);
            if let Some(pod) = self.pods.get(&uid) {
                return Some((uid, pod.clone()));
            }
        }
        None
    }

    /// The pod fit nowhere: it waits for a change.
    pub fn park(&mut self, uid: &str) {
        if self.pods.contains_key(uid) {
            self.unschedulable.insert(uid.to_owned());
        }
    }

    /// Something changed that may make parked pods fit: they are tried again.
    pub fn move_all_to_active(&mut self) {
        for uid in std::mem::take(&mut self.unschedulable) {
            if let Some(pod) = self.pods.get(&uid).cloned() {
                self.add(uid, pod);
            }
        }
    }

    /// Pods ready to be tried.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(priority: i32) -> Pod {
        serde_json::from_value(serde_json::json!({ "spec": { "containers": [], "priority": priority } }))
            .unwrap()
    }

    #[test]
    fn higher_priority_first_then_oldest_and_parked_pods_wait_for_a_change() {
        let mut q = Queue::default();
        q.add("a".into(), pod(0));
        q.add("b".into(), pod(10));
        q.add("c".into(), pod(0));
        assert_eq!(q.pop().unwrap().0, "b");
        assert_eq!(q.pop().unwrap().0, "a");
        q.park("a");
        assert_eq!(q.pop().unwrap().0, "c");
        assert!(q.pop().is_none(), "a parked pod is not retried by itself");
        q.move_all_to_active();
        assert_eq!(q.pop().unwrap().0, "a");
        q.remove("a");
        q.move_all_to_active();
        assert!(q.pop().is_none());
    }
}
