//! The TTL-after-finished controller (upstream's pkg/controller/ttlafterfinished): deletes a
//! finished Job once `spec.ttlSecondsAfterFinished` seconds have passed since it finished.
//!
//! A Job is finished when its `Complete` or `Failed` condition is True; it finished at that
//! condition's `lastTransitionTime` (upstream's `jobFinishTime`). Before its expiry a Job is looked
//! at again at the expiry time; at it, the Job is read again from the API server (the cache may
//! be stale: the TTL may have just been changed or removed) and, if still expired, deleted with
//! `propagationPolicy: Background` (the garbage collector takes its pods) and a precondition on
//! its uid, so a new Job of the same name is never deleted in its place.
//!
//! Not mirrored: the warning upstream logs about clock skew when a Job finished in the future.

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{api::batch::v1::Job, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Preconditions, PropagationPolicy},
    runtime::{
        Controller,
        controller::{Action, Config},
        watcher,
    },
};

use crate::{Error, backoff::Backoff};

/// Jobs synced at once (upstream's `--concurrent-ttl-after-finished-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 5;

/// When a finished Job with a TTL expires (upstream's `timeLeft` without the clock): `None` when
/// it has no TTL, is not finished, or its finishing condition has no transition time.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = job
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")?;
    let at = finished.last_transition_time.as_ref()?.0;
    Some(at + Duration::from_secs(ttl.max(0) as u64))
}

/// How long until `job` expires at `now`: `Some(ZERO)` once expired, `None` when it never does.
pub fn time_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let at = expires_at(job)?;
    Some(Duration::try_from(at - now).unwrap_or_default())
}

struct Context {
    client: Client,
    backoff: Backoff,
}

/// Runs the TTL-after-finished controller until `shutdown` completes, then lets running syncs
/// finish.
pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let context = Arc::new(Context {
        client,
        backoff: Backoff::new(),
    });
    crate::runner::until_shutdown("ttl-after-finished controller", shutdown, |stopped| {
        controller
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

/// The action for a Job that expires in `left` (or never).
fn wait(left: Option<Duration>) -> Action {
    left.map_or_else(Action::await_change, Action::requeue)
}

/// One sync (upstream's `processJob`).
async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let left = time_left(&job, Timestamp::now());
    if left != Some(Duration::ZERO) {
        return Ok(wait(left));
    }
    let uid = job.metadata.uid.clone().ok_or(Error::MissingUid)?;
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    // The cached Job expired; only the one on the server decides.
    let Some(fresh) = api.get_opt(&job.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if fresh.metadata.uid.as_deref() != Some(uid.as_str()) || fresh.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let left = time_left(&fresh, Timestamp::now());
    if left != Some(Duration::ZERO) {
        return Ok(wait(left));
    }
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        preconditions: Some(Preconditions {
            uid: Some(uid.clone()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    tracing::debug!(job = %job.name_any(), "deleting expired job");
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => {}
        // Gone already, or replaced by another Job of that name: nothing to do.
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => return Err(e.into()),
    }
    ctx.backoff.forget(&uid);
    Ok(Action::await_change())
}

/// After a failed sync, retry with a per-Job exponential backoff.
fn error_policy(job: Arc<Job>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::runner::retry(&job, error, &ctx.backoff)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::batch::v1::{JobCondition, JobSpec, JobStatus},
        apimachinery::pkg::apis::meta::v1::Time,
    };

    use super::*;

    fn job(ttl: Option<i32>, condition: Option<(&str, &str)>) -> Job {
        let finished = Timestamp::from_second(1_000_000).unwrap();
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                conditions: condition.map(|(type_, status)| {
                    vec![
                        JobCondition {
                            type_: "SuccessCriteriaMet".into(),
                            status: "True".into(),
                            last_transition_time: Some(Time(Timestamp::from_second(999_000).unwrap())),
                            ..Default::default()
                        },
                        JobCondition {
                            type_: type_.into(),
                            status: status.into(),
                            last_transition_time: Some(Time(finished)),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    #[test]
    fn a_finished_job_expires_ttl_seconds_after_its_finishing_condition() {
        for type_ in ["Complete", "Failed"] {
            let j = job(Some(10), Some((type_, "True")));
            assert_eq!(expires_at(&j), Some(at(1_000_010)));
            assert_eq!(time_left(&j, at(1_000_004)), Some(Duration::from_secs(6)));
            assert_eq!(time_left(&j, at(1_000_010)), Some(Duration::ZERO));
            assert_eq!(time_left(&j, at(1_000_100)), Some(Duration::ZERO));
        }
        let zero = job(Some(0), Some(("Complete", "True")));
        assert_eq!(time_left(&zero, at(1_000_000)), Some(Duration::ZERO));
    }

    #[test]
    fn jobs_without_a_ttl_or_not_finished_never_expire() {
        assert_eq!(expires_at(&job(None, Some(("Complete", "True")))), None);
        assert_eq!(expires_at(&job(Some(10), None)), None);
        assert_eq!(expires_at(&job(Some(10), Some(("Complete", "False")))), None);
        assert_eq!(expires_at(&job(Some(10), Some(("Suspended", "True")))), None);
    }
}
