//! Waiting for an informer cache's first list from many reconciles at once.
//!
//! kube-runtime's `Store::wait_until_ready` keeps its readiness in a oneshot channel whose receiver
//! remembers one waker: the last task that polled it. Of several reconciles waiting at the same time
//! (every object of a controller right after it starts), only that last one is woken when the first
//! list arrives; the others sleep until something else polls them, which for the controller's runner
//! is never: their objects are never synced again. It happened to a ReplicaSet controller restarted
//! mid-rollout (`tests/tests/cluster_rollout.rs`): one ReplicaSet stayed at its old status for good.
//! [`cache_ready`] asks afresh every [`RECHECK`] instead, so no waiter depends on a wake-up.

use std::{hash::Hash, time::Duration};

use kube::runtime::reflector::{Lookup, Store, store::WriterDropped};

/// How often a waiter looks at the cache again.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Waits until `store` holds its first list; an error when its writer is gone.
pub async fn cache_ready<K>(store: &Store<K>) -> Result<(), WriterDropped>
where
    K: 'static + Clone + Lookup,
    K::DynamicType: Eq + Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(RECHECK, store.wait_until_ready()).await {
            return ready;
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::runtime::{reflector, watcher};

    use super::*;

    #[tokio::test]
    async fn every_concurrent_waiter_sees_the_first_list() {
        let (store, mut writer) = reflector::store::<Pod>();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { cache_ready(&store).await.is_ok() })
            })
            .collect();
        // Every waiter polls (and parks) before the list arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitDone);
        for w in waiters {
            let done = tokio::time::timeout(Duration::from_secs(2), w).await;
            assert!(matches!(done, Ok(Ok(true))), "a waiter never woke");
        }
    }
}
