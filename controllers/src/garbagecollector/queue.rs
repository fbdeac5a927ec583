//! A work queue of keys with client-go's workqueue semantics, for the garbage collector's
//! attemptToDelete and attemptToOrphan queues (upstream uses `workqueue.TypedRateLimitingInterface`):
//!
//! - a key queued twice before a worker takes it is processed once;
//! - a key is never processed by two workers at once: added while in process, it is processed again
//!   after [`WorkQueue::done`];
//! - [`WorkQueue::add_after`] queues a key once a delay passes (the rate-limited requeue), without a
//!   task per delayed key.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashSet, VecDeque},
    sync::Mutex,
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    delayed: BinaryHeap<Reverse<(Instant, String)>>,
}

impl Inner {
    fn add(&mut self, key: String) -> bool {
        if !self.dirty.insert(key.clone()) {
            return false;
        }
        if self.processing.contains(&key) {
            return false;
        }
        self.queue.push_back(key);
        true
    }

    /// Moves the delayed keys whose time has come into the queue.
    fn promote(&mut self, now: Instant) {
        while self.delayed.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse((_, key))) = self.delayed.pop() {
                self.add(key);
            }
        }
    }
}

/// The queue; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct WorkQueue {
    inner: Mutex<Inner>,
    notify: Notify,
}

impl WorkQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `key` (once, however often it is added before a worker takes it).
    pub fn add(&self, key: &str) {
        if self.lock().add(key.to_owned()) {
            self.notify.notify_one();
        }
    }

    /// Queues `key` once `delay` has passed.
    pub fn add_after(&self, key: &str, delay: Duration) {
        if delay.is_zero() {
            return self.add(key);
        }
        self.lock()
            .delayed
            .push(Reverse((Instant::now() + delay, key.to_owned())));
        // Waiting workers recompute how long to sleep.
        self.notify.notify_waiters();
    }

    /// Waits for the next key; the caller must call [`WorkQueue::done`] with it when finished.
    pub async fn get(&self) -> String {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_delayed = {
                let mut inner = self.lock();
                inner.promote(Instant::now());
                if let Some(key) = inner.queue.pop_front() {
                    inner.dirty.remove(&key);
                    inner.processing.insert(key.clone());
                    return key;
                }
                inner.delayed.peek().map(|Reverse((at, _))| *at)
            };
            match next_delayed {
                Some(at) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Marks `key` finished; if it was added meanwhile, it is queued again.
    pub fn done(&self, key: &str) {
        let mut inner = self.lock();
        inner.processing.remove(key);
        if inner.dirty.contains(key) {
            inner.queue.push_back(key.to_owned());
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// How many keys wait (not counting delayed ones).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Whether no key waits (not counting delayed ones).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn keys_are_deduplicated_until_taken() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(tokio::time::timeout(T, q.get()).await.expect("a"), "a");
        assert_eq!(tokio::time::timeout(T, q.get()).await.expect("b"), "b");
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn a_key_added_while_processing_comes_back_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let key = tokio::time::timeout(T, q.get()).await.expect("a");
        q.add("a");
        // Not handed to a second worker while the first holds it.
        assert!(q.is_empty());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), q.get())
                .await
                .is_err()
        );
        q.done(&key);
        assert_eq!(tokio::time::timeout(T, q.get()).await.expect("again"), "a");
    }

    #[tokio::test]
    async fn delayed_keys_arrive_after_their_delay() {
        let q = std::sync::Arc::new(WorkQueue::new());
        let start = Instant::now();
        q.add_after("late", Duration::from_millis(100));
        q.add_after("later", Duration::from_millis(200));
        assert_eq!(tokio::time::timeout(T, q.get()).await.expect("late"), "late");
        assert!(start.elapsed() >= Duration::from_millis(100));
        // A waiting worker is woken by an immediate add before the delayed key is due.
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.get().await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        q.add("now");
        assert_eq!(
            tokio::time::timeout(T, waiter).await.expect("now").expect("task"),
            "now"
        );
        assert_eq!(tokio::time::timeout(T, q.get()).await.expect("later"), "later");
        assert!(start.elapsed() >= Duration::from_millis(200));
    }
}
