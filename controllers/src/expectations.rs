//! What a controller is still waiting to see in its pod cache: upstream's `ControllerExpectations`
//! and `UIDTrackingControllerExpectations` (pkg/controller/controller_utils.go).
//!
//! A controller that has just created or deleted pods must not act on its cache until the cache has
//! caught up with those writes, or it would create (or delete) the same pods twice. So before the
//! writes it records how many creations it expects and which pods (by UID) it expects to go; the pod
//! watch lowers the counts as it sees them ([`ControllerExpectations::observe`]); and the controller
//! manages replicas again only once its expectations are [satisfied](ControllerExpectations::satisfied)
//! or have expired ([`EXPECTATIONS_TIMEOUT`]), the safety net for a watch event that was lost.
//!
//! Keys are the controller object's UID (every pod names it in its controllerRef), so one store can
//! serve every kind of pod owner without the key collisions upstream warns about.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;

use crate::pod_util;

/// How long expectations hold before the controller syncs anyway (upstream's `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Pending creations and deletions per controller, shared by the reconciler and the pod watch.
#[derive(Debug, Default)]
pub struct ControllerExpectations {
    entries: Mutex<HashMap<String, Expectation>>,
}

/// What one controller waits for.
#[derive(Debug, Clone)]
struct Expectation {
    /// Creations not yet seen (may go below zero when more pods show up than were asked for).
    adds: i64,
    /// UIDs of pods whose deletion has not been seen yet.
    deletes: HashSet<String>,
    /// When the expectations were set; they expire [`EXPECTATIONS_TIMEOUT`] later.
    set_at: Instant,
}

impl Expectation {
    fn fulfilled(&self) -> bool {
        self.adds <= 0 && self.deletes.is_empty()
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.set_at) > EXPECTATIONS_TIMEOUT
    }
}

impl ControllerExpectations {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        // A panic while holding this lock cannot leave the counters half-written, so a poisoned lock
        // is still usable.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether the controller `key` may create or delete pods: it set no expectations, they were all
    /// observed, or they expired.
    pub fn satisfied(&self, key: &str, now: Instant) -> bool {
        self.lock()
            .get(key)
            .is_none_or(|e| e.fulfilled() || e.expired(now))
    }

    /// How long until unsatisfied expectations expire (`None` when satisfied), so the controller can
    /// requeue itself then even if the watch never delivers what it waits for.
    pub fn expires_in(&self, key: &str, now: Instant) -> Option<Duration> {
        let entries = self.lock();
        let e = entries.get(key).filter(|e| !e.fulfilled() && !e.expired(now))?;
        Some(EXPECTATIONS_TIMEOUT.saturating_sub(now.saturating_duration_since(e.set_at)))
    }

    /// Records that `count` pods are about to be created (upstream's `ExpectCreations`, which
    /// replaces whatever was expected before).
    pub fn expect_creations(&self, key: &str, count: usize, now: Instant) {
        self.set(
            key,
            Expectation {
                adds: count as i64,
                deletes: HashSet::new(),
                set_at: now,
            },
            now,
        );
    }

    /// Records that the pods with these UIDs are about to be deleted (upstream's `ExpectDeletions`).
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>, now: Instant) {
        self.set(
            key,
            Expectation {
                adds: 0,
                deletes: uids.into_iter().collect(),
                set_at: now,
            },
            now,
        );
    }

    fn set(&self, key: &str, expectation: Expectation, now: Instant) {
        let mut entries = self.lock();
        // Forget settled entries here rather than on object deletion: kube-runtime calls no reconcile
        // for a deleted object, and a settled entry means the same as no entry.
        entries.retain(|_, e| !e.fulfilled() && !e.expired(now));
        entries.insert(key.to_owned(), expectation);
    }

    /// One expected creation was seen, or will never be (the create failed or was skipped).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The deletion of pod `uid` was seen, or will never be (the delete failed). Pods the controller
    /// did not delete itself do not count (upstream tracks deletions by key for the same reason: a
    /// graceful delete is seen twice, as an update with `deletionTimestamp` and as the delete).
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.remove(uid);
        }
    }

    /// Whether deletions by the controller `key` are still awaited (so [`Self::settle_deletions`] has
    /// something to settle).
    pub fn awaits_deletions(&self, key: &str) -> bool {
        self.lock().get(key).is_some_and(|e| !e.deletes.is_empty())
    }

    /// Level-triggered catch-up: pods expected to go that the cache no longer holds as live
    /// (`live(uid)` is false) count as observed. A relist after a broken watch replaces the cache
    /// without delete events, so without this the controller would wait for the timeout.
    pub fn settle_deletions(&self, key: &str, live: impl Fn(&str) -> bool) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.retain(|uid| live(uid));
        }
    }

    /// Forgets the controller `key` (upstream's `DeleteExpectations`).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Feeds one pod watch event to the expectations of the pod's controller, as upstream's
    /// `addPod` / `updatePod` / `deletePod` handlers do. `seen_before(pod)` tells whether the pod
    /// cache already held this pod (same UID) before the event: only a first sighting is a creation.
    ///
    /// Unlike upstream, a pod seen for the first time counts as created even when it is already
    /// terminating or is seen only as deleted: the create is reflected in the cache either way, and
    /// not counting it would leave the controller waiting for the timeout.
    pub fn observe(&self, event: &watcher::Event<Pod>, seen_before: impl Fn(&Pod) -> bool) {
        let (pod, deleted) = match event {
            watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => (pod, false),
            watcher::Event::Delete(pod) => (pod, true),
            watcher::Event::Init | watcher::Event::InitDone => return,
        };
        let Some(owner) = pod_util::controller_of(&pod.metadata) else {
            // No controller waits for orphans.
            return;
        };
        if !seen_before(pod) {
            self.creation_observed(&owner.uid);
        }
        if (deleted || pod_util::is_terminating(pod))
            && let Some(uid) = pod.metadata.uid.as_deref()
        {
            self.deletion_observed(&owner.uid, uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    use super::*;

    fn owned_pod(uid: &str, owner: &str, terminating: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("pod-{uid}")),
                uid: Some(uid.into()),
                owner_references: Some(vec![OwnerReference {
                    uid: owner.into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                deletion_timestamp: terminating.then(|| Time(k8s_openapi::jiff::Timestamp::now())),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn no_expectations_means_satisfied() {
        let exp = ControllerExpectations::new();
        assert!(exp.satisfied("rs", Instant::now()));
        assert_eq!(exp.expires_in("rs", Instant::now()), None);
    }

    #[test]
    fn creations_are_satisfied_once_each_new_pod_is_seen() {
        let exp = ControllerExpectations::new();
        let now = Instant::now();
        exp.expect_creations("rs", 2, now);
        assert!(!exp.satisfied("rs", now));
        exp.observe(&watcher::Event::Apply(owned_pod("a", "rs", false)), |_| false);
        // The same pod again (an update) is not a second creation.
        exp.observe(&watcher::Event::Apply(owned_pod("a", "rs", false)), |_| true);
        assert!(!exp.satisfied("rs", now));
        // A pod of another controller does not count.
        exp.observe(&watcher::Event::Apply(owned_pod("b", "other", false)), |_| false);
        assert!(!exp.satisfied("rs", now));
        exp.observe(&watcher::Event::Apply(owned_pod("c", "rs", false)), |_| false);
        assert!(exp.satisfied("rs", now));
    }

    #[test]
    fn deletions_are_tracked_by_uid_and_seen_once() {
        let exp = ControllerExpectations::new();
        let now = Instant::now();
        exp.expect_deletions("rs", ["a".to_owned(), "b".to_owned()], now);
        // A graceful delete shows up as an update with deletionTimestamp, then as the delete.
        exp.observe(&watcher::Event::Apply(owned_pod("a", "rs", true)), |_| true);
        exp.observe(&watcher::Event::Delete(owned_pod("a", "rs", true)), |_| true);
        // The deletion of a pod that was not expected to go does not count.
        exp.observe(&watcher::Event::Delete(owned_pod("z", "rs", false)), |_| true);
        assert!(!exp.satisfied("rs", now));
        exp.settle_deletions("rs", |uid| uid != "b");
        assert!(exp.satisfied("rs", now));
    }

    #[test]
    fn expectations_expire() {
        let exp = ControllerExpectations::new();
        let then = Instant::now();
        exp.expect_creations("rs", 1, then);
        let later = then + EXPECTATIONS_TIMEOUT + Duration::from_secs(1);
        assert_eq!(exp.expires_in("rs", then), Some(EXPECTATIONS_TIMEOUT));
        assert!(!exp.satisfied("rs", then + Duration::from_secs(60)));
        assert!(exp.satisfied("rs", later));
    }

    #[test]
    fn failed_writes_lower_the_expectations() {
        let exp = ControllerExpectations::new();
        let now = Instant::now();
        exp.expect_creations("rs", 3, now);
        for _ in 0..3 {
            exp.creation_observed("rs");
        }
        assert!(exp.satisfied("rs", now));
        exp.expect_deletions("rs", ["a".to_owned()], now);
        exp.deletion_observed("rs", "a");
        assert!(exp.satisfied("rs", now));
        exp.expect_creations("rs", 1, now);
        exp.delete("rs");
        assert!(exp.satisfied("rs", now));
    }
}
