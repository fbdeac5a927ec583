//! Per-object retry delays after a failed reconcile: client-go's `ItemExponentialFailureRateLimiter`
//! (the per-item half of `workqueue.DefaultControllerRateLimiter`), 5 ms doubling to 1000 s.
//!
//! kube-runtime asks the controller's `error_policy` how long to wait; this remembers how many times
//! in a row each object failed so a persistent failure backs off while a transient one (a conflict,
//! a stale cache) is retried almost at once.

use std::{collections::HashMap, sync::Mutex, time::Duration};

/// The first retry delay (client-go: 5 ms).
pub const BASE_DELAY: Duration = Duration::from_millis(5);
/// The longest retry delay (client-go: 1000 s).
pub const MAX_DELAY: Duration = Duration::from_secs(1000);

/// Failure counts per object key.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// No failures yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one more failure of `key` and returns how long to wait before retrying it.
    pub fn next_delay(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key.to_owned()).or_default();
        let delay = BASE_DELAY.saturating_mul(2u32.saturating_pow(*n)).min(MAX_DELAY);
        *n = n.saturating_add(1);
        delay
    }

    /// Forgets the failures of `key` after a successful reconcile (client-go's `Forget`).
    pub fn forget(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset_on_success() {
        let b = Backoff::new();
        let delays: Vec<_> = (0..4).map(|_| b.next_delay("a")).collect();
        assert_eq!(delays, [5, 10, 20, 40].map(Duration::from_millis));
        assert_eq!(b.next_delay("b"), BASE_DELAY);
        for _ in 0..40 {
            b.next_delay("a");
        }
        assert_eq!(b.next_delay("a"), MAX_DELAY);
        b.forget("a");
        assert_eq!(b.next_delay("a"), BASE_DELAY);
    }
}
