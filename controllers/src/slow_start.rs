//! Upstream's `slowStartBatch` (pkg/controller/replicaset/replica_set.go), shared by the controllers
//! that create many pods at once.
//!
//! Calls go out in batches of 1, 2, 4, … (each batch concurrently); the first batch with a failure
//! is the last. A namespace over its quota, or a template the API server rejects, then costs one
//! failed request and one event rather than hundreds.

use std::future::Future;

/// The batch size upstream starts with (`SlowStartInitialBatchSize`).
pub const INITIAL_BATCH_SIZE: usize = 1;

/// Calls `call` up to `count` times in doubling batches starting at `initial`, stopping after the
/// first batch with an error. Returns how many calls succeeded and the first error, if any.
pub async fn slow_start_batch<F, Fut, E>(count: usize, initial: usize, mut call: F) -> (usize, Option<E>)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    while batch > 0 {
        let results = futures::future::join_all((0..batch).map(|_| call())).await;
        let mut first_error = None;
        for result in results {
            match result {
                Ok(()) => successes += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if first_error.is_some() {
            return (successes, first_error);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// Runs a slow start of `count` calls where call number `fail_from` and later fail; returns
    /// (successes, error seen, batch sizes).
    async fn run(count: usize, fail_from: Option<usize>) -> (usize, bool, Vec<usize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(Mutex::new(Vec::<usize>::new()));
        let in_batch = Arc::new(AtomicUsize::new(0));
        let (successes, err) = slow_start_batch(count, INITIAL_BATCH_SIZE, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            in_batch.fetch_add(1, Ordering::SeqCst);
            let (batches, in_batch) = (batches.clone(), in_batch.clone());
            async move {
                // The last call of a batch records the batch size.
                tokio::task::yield_now().await;
                let size = in_batch.swap(0, Ordering::SeqCst);
                if size > 0 {
                    batches.lock().expect("lock").push(size);
                }
                if fail_from.is_some_and(|f| n >= f) {
                    Err("quota exceeded")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let batches = batches.lock().expect("lock").clone();
        (successes, err.is_some(), batches)
    }

    #[tokio::test]
    async fn batches_double_until_done() {
        assert_eq!(run(10, None).await, (10, false, vec![1, 2, 4, 3]));
        assert_eq!(run(0, None).await, (0, false, vec![]));
    }

    #[tokio::test]
    async fn stops_after_the_first_failing_batch() {
        // Calls 0, 1, 2 succeed (batches 1 and 2); the batch of 4 starting at call 3 fails at call 5.
        assert_eq!(run(100, Some(5)).await, (5, true, vec![1, 2, 4]));
        // The very first call fails: nothing else is tried.
        assert_eq!(run(100, Some(0)).await, (0, true, vec![1]));
    }
}
