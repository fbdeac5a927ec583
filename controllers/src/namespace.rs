//! The namespace controller: a namespace being deleted (the API server has set its
//! `deletionTimestamp` and phase Terminating) is emptied of every namespaced object, and then its
//! `kubernetes` finalizer is removed so that the API server removes it. Upstream's
//! pkg/controller/namespace/namespace_controller.go, on kube-runtime's `Controller`.
//!
//! Each sync is one pass of the [`deleter`]. Content that takes time to go (objects with
//! finalizers, pods stopping gracefully) is looked at again after half its estimated time, as
//! upstream requeues on `ResourcesRemainingError`; a failed pass is retried with backoff.

pub mod conditions;
pub mod deleter;

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{api::core::v1::Namespace, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    runtime::{
        Controller,
        controller::{Action, Config},
        watcher,
    },
};

use self::deleter::{DeleteError, Outcome};
use crate::backoff::Backoff;

/// Namespaces synced at once (upstream's `--concurrent-namespace-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 10;
/// How long after its deletion a namespace is first processed, so that creations racing with the
/// deletion land first and are deleted too (upstream's `namespaceDeletionGracePeriod`).
pub const DELETION_GRACE_PERIOD: Duration = Duration::from_secs(5);
/// The longest retry delay after failed passes (upstream's namespace rate limiter caps at 60 s).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

struct Context {
    client: Client,
    backoff: Backoff,
}

/// Runs the namespace controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    let controller = Controller::new(Api::<Namespace>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let context = Arc::new(Context {
        client,
        backoff: Backoff::new(),
    });
    crate::runner::until_shutdown("namespace controller", shutdown, |stopped| {
        controller
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

/// How long until a namespace deleted at `deleted` may be processed (zero once the grace period
/// has passed).
fn grace_remaining(deleted: Timestamp, now: Timestamp) -> Duration {
    let elapsed = now
        .duration_since(deleted)
        .unsigned_abs()
        .min(DELETION_GRACE_PERIOD);
    if now < deleted {
        return DELETION_GRACE_PERIOD;
    }
    DELETION_GRACE_PERIOD.saturating_sub(elapsed)
}

/// When to look again at content estimated to take `estimate` seconds (upstream: half, plus one).
pub fn requeue_after(estimate: i64) -> Duration {
    Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1))
}

/// One sync (upstream's `syncNamespaceFromKey`).
async fn reconcile(ns: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, DeleteError> {
    let Some(deleted) = ns.metadata.deletion_timestamp.as_ref() else {
        return Ok(Action::await_change());
    };
    let wait = grace_remaining(deleted.0, Timestamp::now());
    if !wait.is_zero() {
        return Ok(Action::requeue(wait));
    }
    let outcome = deleter::delete(&ctx.client, &ns.name_any()).await?;
    ctx.backoff.forget(&ns.name_any());
    Ok(match outcome {
        Outcome::Done => Action::await_change(),
        Outcome::Remaining { estimate } => {
            tracing::debug!(namespace = %ns.name_any(), estimate, "content remains");
            Action::requeue(requeue_after(estimate))
        }
    })
}

fn error_policy(ns: Arc<Namespace>, error: &DeleteError, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&ns.name_any()).min(MAX_RETRY_DELAY);
    tracing::debug!(namespace = %ns.name_any(), %error, ?delay, "deletion of namespace failed, retrying");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_content_is_looked_at_after_half_its_estimate() {
        assert_eq!(requeue_after(30), Duration::from_secs(16));
        assert_eq!(requeue_after(15), Duration::from_secs(8));
        assert_eq!(requeue_after(0), Duration::from_secs(1));
    }

    #[test]
    fn a_fresh_deletion_waits_out_the_grace_period() {
        let deleted = Timestamp::from_second(1_700_000_000).expect("time");
        let at = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("time");
        assert_eq!(grace_remaining(deleted, at(0)), DELETION_GRACE_PERIOD);
        assert_eq!(grace_remaining(deleted, at(2)), Duration::from_secs(3));
        assert_eq!(grace_remaining(deleted, at(5)), Duration::ZERO);
        assert_eq!(grace_remaining(deleted, at(60)), Duration::ZERO);
        // A clock behind the API server's waits the whole period rather than skipping it.
        assert_eq!(grace_remaining(deleted, at(-3)), DELETION_GRACE_PERIOD);
    }
}
