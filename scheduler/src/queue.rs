//! The scheduling queue (upstream's internal/queue): pods waiting to be scheduled, highest priority
//! first and then oldest; pods that did not fit wait apart (*unschedulable*) until something changes
//! that could make them fit (a node added or changed, a pod deleted), or five minutes pass
//! (podMaxInUnschedulablePodsDuration). A pod moved back while its backoff (1 s, doubling per failed
//! attempt up to 10 s: podInitialBackoffDuration / podMaxBackoffDuration) still runs waits in the
//! backoff queue until it ends, as upstream's MoveAllToActiveOrBackoffQueue.

use std::{
    cmp::Reverse,
    collections::{BTreeSet, HashMap},
};

use k8s_openapi::api::core::v1::Pod;
use tokio::time::{Duration, Instant};

/// Upstream's podInitialBackoffDuration.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Upstream's podMaxBackoffDuration.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Upstream's podMaxInUnschedulablePodsDuration: a parked pod is retried after this long anyway.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// Pending pods and where each waits.
#[derive(Default)]
pub struct Queue {
    /// (priority, arrival) order of the pods ready to be tried.
    active: BTreeSet<(Reverse<i32>, u64, String)>,
    /// The latest version of every pending pod, by uid.
    pods: HashMap<String, Pod>,
    /// Where each active pod sits in `active`.
    slots: HashMap<String, (Reverse<i32>, u64)>,
    /// Pods that fit nowhere last time, with when they were parked.
    unschedulable: HashMap<String, Instant>,
    /// Pods moved back while still backing off: they become active at the given instant.
    backoff: HashMap<String, Instant>,
    /// Failed attempts per pod (upstream's QueuedPodInfo.Attempts), for the backoff.
    attempts: HashMap<String, u32>,
    seq: u64,
}

/// The backoff after `attempts` failed attempts: 1 s doubled per further attempt, at most 10 s.
pub fn backoff_duration(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(10);
    (INITIAL_BACKOFF * (1u32 << shift)).min(MAX_BACKOFF)
}

impl Queue {
    /// A pending pod was added or changed: it is (re)tried.
    pub fn add(&mut self, uid: String, pod: Pod) {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        self.pods.insert(uid.clone(), pod);
        self.unschedulable.remove(&uid);
        self.backoff.remove(&uid);
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
        self.backoff.remove(uid);
        self.attempts.remove(uid);
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
        self.park_at(uid, Instant::now());
    }

    /// [`Queue::park`] at a given instant.
    pub fn park_at(&mut self, uid: &str, now: Instant) {
        if self.pods.contains_key(uid) {
            *self.attempts.entry(uid.to_owned()).or_default() += 1;
            self.unschedulable.insert(uid.to_owned(), now);
        }
    }

    /// Something changed that may make parked pods fit: they are tried again, at once or when their
    /// backoff ends.
    pub fn move_all_to_active(&mut self) {
        self.move_all_at(Instant::now());
    }

    /// [`Queue::move_all_to_active`] at a given instant.
    pub fn move_all_at(&mut self, now: Instant) {
        for (uid, parked) in std::mem::take(&mut self.unschedulable) {
            let until = parked + backoff_duration(self.attempts.get(&uid).copied().unwrap_or(0));
            if until > now {
                self.backoff.insert(uid, until);
            } else {
                self.activate(uid);
            }
        }
    }

    /// The periodic flushes: pods whose backoff ended, and pods parked for longer than
    /// [`MAX_IN_UNSCHEDULABLE`], become active. Returns whether any did.
    pub fn flush(&mut self, now: Instant) -> bool {
        let due: Vec<String> = self
            .backoff
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(u, _)| u.clone())
            .collect();
        let stale: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= MAX_IN_UNSCHEDULABLE)
            .map(|(u, _)| u.clone())
            .collect();
        let any = !due.is_empty() || !stale.is_empty();
        for uid in due.into_iter().chain(stale) {
            self.activate(uid);
        }
        any
    }

    fn activate(&mut self, uid: String) {
        if let Some(pod) = self.pods.get(&uid).cloned() {
            self.add(uid, pod);
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
        q.park_at("a", Instant::now() - MAX_BACKOFF); // its backoff is over
        assert_eq!(q.pop().unwrap().0, "c");
        assert!(q.pop().is_none(), "a parked pod is not retried by itself");
        q.move_all_to_active();
        assert_eq!(q.pop().unwrap().0, "a");
        q.remove("a");
        q.move_all_to_active();
        assert!(q.pop().is_none());
    }

    #[test]
    fn backoff_doubles_from_one_second_to_ten() {
        let secs: Vec<u64> = (1..=6).map(|a| backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn moved_pods_still_backing_off_wait_and_stale_parked_pods_are_flushed() {
        let t0 = Instant::now();
        let mut q = Queue::default();
        q.add("a".into(), pod(0));
        q.pop();
        q.park_at("a", t0);
        q.pop();
        q.add("a".into(), pod(0)); // an update makes it active at once
        q.pop();
        q.park_at("a", t0); // second failure: 2 s backoff
        q.move_all_at(t0 + Duration::from_secs(1));
        assert!(q.pop().is_none(), "still backing off");
        assert!(!q.flush(t0 + Duration::from_millis(1500)));
        assert!(q.flush(t0 + Duration::from_secs(2)));
        assert_eq!(q.pop().unwrap().0, "a");

        q.park_at("a", t0);
        assert!(
            !q.flush(t0 + Duration::from_secs(299)),
            "parked pods wait for a change"
        );
        assert!(q.flush(t0 + MAX_IN_UNSCHEDULABLE));
        assert_eq!(q.pop().unwrap().0, "a");
    }
}
