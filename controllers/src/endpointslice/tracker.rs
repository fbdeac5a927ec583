//! Which slice writes the cache has not caught up with: upstream's `EndpointSliceTracker`
//! (staging/src/k8s.io/endpointslice/util/endpointslice_tracker.go).
//!
//! Slices are created with `generateName`, so a sync made from a cache that does not yet hold the
//! slices the previous sync created would create them again. After each write the controller records
//! the slice's resourceVersion (or its deletion); a sync first checks the cache holds at least those
//! versions (and none of the deleted slices), and otherwise waits for the watch to catch up.
//! skiff's resourceVersions are store revisions, so "at least" is a numeric comparison.

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::api::discovery::v1::EndpointSlice;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    AtLeast(u64),
    Deleted,
}

/// Expected slice states per Service key, by slice UID.
#[derive(Debug, Default)]
pub struct SliceTracker {
    expected: Mutex<HashMap<String, HashMap<String, Expect>>>,
}

fn revision(slice: &EndpointSlice) -> Option<u64> {
    slice.metadata.resource_version.as_deref()?.parse().ok()
}

impl SliceTracker {
    /// Nothing expected.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, HashMap<String, Expect>>) -> R) -> R {
        f(&mut self
            .expected
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Records a slice as written (created or updated) for Service `key`.
    pub fn written(&self, key: &str, slice: &EndpointSlice) {
        let (Some(uid), Some(rv)) = (slice.metadata.uid.clone(), revision(slice)) else {
            return;
        };
        self.with(|e| {
            e.entry(key.to_owned())
                .or_default()
                .insert(uid, Expect::AtLeast(rv));
        });
    }

    /// Records a slice as deleted for Service `key`.
    pub fn deleted(&self, key: &str, uid: &str) {
        self.with(|e| {
            e.entry(key.to_owned())
                .or_default()
                .insert(uid.to_owned(), Expect::Deleted);
        });
    }

    /// The watch reported a slice deleted: nothing more is expected of it.
    pub fn observed_deletion(&self, uid: &str) {
        self.with(|e| {
            for slices in e.values_mut() {
                slices.remove(uid);
            }
            e.retain(|_, slices| !slices.is_empty());
        });
    }

    /// Forgets a Service.
    pub fn forget(&self, key: &str) {
        self.with(|e| {
            e.remove(key);
        });
    }

    /// Whether `cached` (the Service's slices as the cache holds them) misses a write; expectations
    /// the cache meets are dropped.
    pub fn stale(&self, key: &str, cached: &[std::sync::Arc<EndpointSlice>]) -> bool {
        self.with(|e| {
            let Some(slices) = e.get_mut(key) else {
                return false;
            };
            slices.retain(|uid, expect| {
                let found = cached
                    .iter()
                    .find(|s| s.metadata.uid.as_deref() == Some(uid.as_str()));
                match (expect, found) {
                    (Expect::AtLeast(rv), Some(s)) => revision(s).is_none_or(|have| have < *rv),
                    (Expect::AtLeast(_), None) => true,
                    (Expect::Deleted, found) => found.is_some(),
                }
            });
            let stale = !slices.is_empty();
            if !stale {
                e.remove(key);
            }
            stale
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn slice(uid: &str, rv: u64) -> EndpointSlice {
        EndpointSlice {
            metadata: ObjectMeta {
                uid: Some(uid.into()),
                resource_version: Some(rv.to_string()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_cache_behind_the_writes_is_stale_until_it_catches_up() {
        let t = SliceTracker::new();
        assert!(!t.stale("ns/s", &[]));
        t.written("ns/s", &slice("a", 10));
        t.deleted("ns/s", "b");
        // The deleted slice is still cached.
        assert!(t.stale("ns/s", &[Arc::new(slice("a", 9)), Arc::new(slice("b", 3))]));
        // The written one is missing, or older than written.
        assert!(t.stale("ns/s", &[]));
        assert!(t.stale("ns/s", &[Arc::new(slice("a", 9))]));
        assert!(!t.stale("ns/s", &[Arc::new(slice("a", 11))]));
        // Expectations met are forgotten.
        assert!(!t.stale("ns/s", &[]));
        t.written("ns/s", &slice("c", 20));
        t.observed_deletion("c");
        assert!(!t.stale("ns/s", &[]));
    }
}
