//! The pure part of a Job sync (upstream's `syncJob` and `manageJob` decisions, without the API):
//! from a Job and the pods it owns, the status it should have, how many pods to create and which
//! to delete. No I/O, no clock: `now` is passed in.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::{
        batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods},
        core::v1::Pod,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

use super::indexed;
use crate::pod_util;

/// Condition types (upstream's `batch.JobConditionType`).
pub mod conditions {
    /// All pods are gone after the Job succeeded.
    pub const COMPLETE: &str = "Complete";
    /// All pods are gone after the Job failed.
    pub const FAILED: &str = "Failed";
    /// The Job is suspended (or, False, was resumed).
    pub const SUSPENDED: &str = "Suspended";
    /// The Job will fail once its pods are gone.
    pub const FAILURE_TARGET: &str = "FailureTarget";
    /// The Job will complete once its pods are gone.
    pub const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
}

/// (reason, message) of each ending, as upstream words them.
pub const BACKOFF_LIMIT_EXCEEDED: (&str, &str) = (
    "BackoffLimitExceeded",
    "Job has reached the specified backoff limit",
);
/// The active deadline passed.
pub const DEADLINE_EXCEEDED: (&str, &str) = (
    "DeadlineExceeded",
    "Job was active longer than specified deadline",
);
/// More indexes failed than `maxFailedIndexes` (with `backoffLimitPerIndex`).
pub const MAX_FAILED_INDEXES_EXCEEDED: (&str, &str) = (
    "MaxFailedIndexesExceeded",
    "Job has exceeded the specified maximal number of failed indexes",
);
/// Every index succeeded or failed, and some failed (with `backoffLimitPerIndex`).
pub const FAILED_INDEXES: (&str, &str) = ("FailedIndexes", "Job has failed indexes");
/// The endings that fail a Job, by reason.
pub const FAILURES: [(&str, &str); 4] = [
    BACKOFF_LIMIT_EXCEEDED,
    DEADLINE_EXCEEDED,
    MAX_FAILED_INDEXES_EXCEEDED,
    FAILED_INDEXES,
];
/// Enough pods succeeded.
pub const COMPLETIONS_REACHED: (&str, &str) =
    ("CompletionsReached", "Reached expected number of succeeded pods");

/// What one sync should do.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write.
    pub status: JobStatus,
    /// Pods to create.
    pub create: usize,
    /// For an Indexed Job, the completion index of each pod to create (`create` of them).
    pub indexes: Vec<i32>,
    /// With `backoffLimitPerIndex`, the failures so far of each index to create (the pod's
    /// `batch.kubernetes.io/job-index-failure-count`; 0 when absent).
    pub failure_counts: BTreeMap<i32, i32>,
    /// Active pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// When to look again even if nothing changes (the active deadline).
    pub requeue: Option<Duration>,
    /// An event to record: (reason, message), when the Job starts to end or is suspended.
    pub event: Option<(&'static str, &'static str)>,
}

/// The pods of a Job by state (upstream's counting in `syncJob`).
#[derive(Debug, Default)]
pub struct Counts {
    /// Not finished and not being deleted.
    pub active: Vec<Arc<Pod>>,
    /// Active and Ready.
    pub ready: i32,
    /// Being deleted and not finished.
    pub terminating: i32,
    /// Phase Succeeded.
    pub succeeded: i32,
    /// Phase Failed, or deleted before finishing (counted as failed, as upstream's `isPodFailed`
    /// does with `podReplacementPolicy: TerminatingOrFailed`, except while the Job is suspended).
    pub failed: i32,
}

/// Counts `pods` for `job`.
pub fn count(job: &Job, pods: &[Arc<Pod>]) -> Counts {
    let spec = job.spec.clone().unwrap_or_default();
    let deleted_fail =
        !spec.suspend.unwrap_or(false) && spec.pod_replacement_policy.as_deref() != Some("Failed");
    let mut c = Counts::default();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        match phase {
            Some("Succeeded") => c.succeeded += 1,
            Some("Failed") => c.failed += 1,
            _ if pod_util::is_terminating(pod) => {
                c.terminating += 1;
                if deleted_fail {
                    c.failed += 1;
                }
            }
            _ => {
                if pod_util::is_ready(pod) {
                    c.ready += 1;
                }
                c.active.push(pod.clone());
            }
        }
    }
    c
}

/// Whether `status` has a condition of `type_` that is True.
pub fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Whether the Job has finished (Complete or Failed).
pub fn finished(status: &JobStatus) -> bool {
    has_condition(status, conditions::COMPLETE) || has_condition(status, conditions::FAILED)
}

/// Sets condition `type_` to `status` (keeping its transition time when the status is unchanged).
fn set_condition(job_status: &mut JobStatus, type_: &str, status: &str, why: (&str, &str), now: Timestamp) {
    let list = job_status.conditions.get_or_insert_with(Vec::new);
    let fresh = JobCondition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(why.0.to_owned()),
        message: Some(why.1.to_owned()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    match list.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {}
        Some(c) => *c = fresh,
        None => list.push(fresh),
    }
}

/// One sync's decisions (upstream's `syncJob` + `manageJob`).
pub fn plan(job: &Job, pods: &[Arc<Pod>], now: Timestamp) -> Plan {
    let old = job.status.clone().unwrap_or_default();
    if finished(&old) {
        return Plan {
            status: old,
            ..Plan::default()
        };
    }
    let spec = job.spec.clone().unwrap_or_default();
    let c = count(job, pods);
    let mut status = old.clone();
    // Counts never go down: a finished pod deleted by someone else stays counted.
    let mut succeeded = old.succeeded.unwrap_or(0).max(c.succeeded);
    // An Indexed Job counts succeeded indexes, not pods: those recorded in `completedIndexes`
    // stay succeeded even when their pods are gone (upstream's `calculateSucceededIndexes`).
    let indexed = indexed::is_indexed(job);
    let completions = spec.completions.unwrap_or(0);
    let succeeded_indexes = if indexed {
        let recorded = old.completed_indexes.as_deref().unwrap_or("");
        indexed::succeeded_indexes(recorded, pods, completions)
    } else {
        Default::default()
    };
    if indexed {
        succeeded = succeeded_indexes.len() as i32;
        let completed = indexed::format_indexes(&succeeded_indexes);
        status.completed_indexes = (!completed.is_empty()).then_some(completed);
    }
    // With a backoff limit per index an index fails on its own (upstream's `isIndexFailed`); the
    // recorded ones stay failed.
    let per_index = spec.backoff_limit_per_index.filter(|_| indexed);
    let failed_indexes = match per_index {
        Some(limit) => {
            let recorded = old.failed_indexes.as_deref().unwrap_or("");
            let set = indexed::failed_indexes(recorded, pods, completions, limit);
            status.failed_indexes = Some(indexed::format_indexes(&set));
            set
        }
        None => BTreeSet::new(),
    };
    let failed = old.failed.unwrap_or(0).max(c.failed);
    status.succeeded = Some(succeeded);
    status.failed = Some(failed);
    status.ready = Some(c.ready);
    status.terminating = Some(c.terminating);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    let mut plan = Plan::default();
    let suspended = spec.suspend.unwrap_or(false);

    // Ending: a failure or success decided earlier, or now.
    let mut failure = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == conditions::FAILURE_TARGET && c.status == "True")
        .map(|c| {
            FAILURES
                .into_iter()
                .find(|f| c.reason.as_deref() == Some(f.0))
                .unwrap_or(BACKOFF_LIMIT_EXCEEDED)
        });
    let mut success = has_condition(&status, conditions::SUCCESS_CRITERIA_MET);
    if failure.is_none() && !success && !suspended {
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
        let start = status.start_time.as_ref().map_or(now, |t| t.0);
        let deadline = spec
            .active_deadline_seconds
            .map(|s| start + Duration::from_secs(s.max(0) as u64));
        let failed_indexes = failed_indexes.len() as i32;
        if per_index.is_none() && failed > spec.backoff_limit.unwrap_or(6) {
            failure = Some(BACKOFF_LIMIT_EXCEEDED);
        } else if deadline.is_some_and(|d| d <= now) {
            failure = Some(DEADLINE_EXCEEDED);
        } else if per_index.is_some() && spec.max_failed_indexes.is_some_and(|max| failed_indexes > max) {
            failure = Some(MAX_FAILED_INDEXES_EXCEEDED);
        } else if failed_indexes > 0 && succeeded + failed_indexes >= completions {
            failure = Some(FAILED_INDEXES);
        } else {
            success = match spec.completions {
                Some(want) => succeeded >= want,
                // A work-queue Job: done when one pod succeeded and none still runs.
                None => succeeded > 0 && c.active.is_empty(),
            };
            if let Some(deadline) = deadline {
                plan.requeue = Some(
                    Duration::try_from(deadline - now)
                        .unwrap_or_default()
                        .max(Duration::from_millis(100)),
                );
            }
        }
        if let Some(why) = failure {
            set_condition(&mut status, conditions::FAILURE_TARGET, "True", why, now);
            plan.event = Some(why);
        } else if success {
            set_condition(
                &mut status,
                conditions::SUCCESS_CRITERIA_MET,
                "True",
                COMPLETIONS_REACHED,
                now,
            );
        }
    }
    if failure.is_some() || success {
        // The remaining pods go; the final condition waits until they are gone.
        plan.delete = c.active.clone();
        if c.active.is_empty() && c.terminating == 0 {
            if let Some(why) = failure {
                set_condition(&mut status, conditions::FAILED, "True", why, now);
            } else {
                set_condition(
                    &mut status,
                    conditions::COMPLETE,
                    "True",
                    COMPLETIONS_REACHED,
                    now,
                );
                status.completion_time = Some(Time(now));
                plan.event = Some(("Completed", "Job completed"));
            }
        }
        status.active = Some(c.active.len() as i32);
        plan.status = status;
        return plan;
    }

    if suspended {
        plan.delete = c.active.clone();
        if !has_condition(&status, conditions::SUSPENDED) {
            set_condition(
                &mut status,
                conditions::SUSPENDED,
                "True",
                ("JobSuspended", "Job suspended"),
                now,
            );
            plan.event = Some(("Suspended", "Job suspended"));
        }
        // A suspended Job's clock stops; it starts again on resume (as upstream).
        status.start_time = None;
    } else {
        if has_condition(&status, conditions::SUSPENDED) {
            set_condition(
                &mut status,
                conditions::SUSPENDED,
                "False",
                ("JobResumed", "Job resumed"),
                now,
            );
            plan.event = Some(("Resumed", "Job resumed"));
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0);
        let mut want = match spec.completions {
            Some(completions) => (completions - succeeded).clamp(0, parallelism),
            None if succeeded > 0 => c.active.len() as i32,
            None => parallelism,
        };
        // With `podReplacementPolicy: Failed` a pod being deleted still holds its place.
        if spec.pod_replacement_policy.as_deref() == Some("Failed") {
            want = (want - c.terminating).max(0);
        }
        // An Indexed Job first drops the active pods no index needs (upstream's
        // `activePodsForRemoval`); the rest count against `want`.
        let (surplus, kept) = if indexed {
            indexed::surplus(&c.active, completions, &failed_indexes)
        } else {
            (Vec::new(), c.active.clone())
        };
        plan.delete = surplus;
        let active = kept.len() as i32;
        if active < want && indexed {
            let missing = (want - active) as usize;
            let done = &succeeded_indexes | &failed_indexes;
            plan.indexes = indexed::first_pending(missing, completions, &done, &kept);
            if per_index.is_some() {
                let counts = indexed::failure_counts(pods);
                plan.failure_counts = (plan.indexes.iter())
                    .map(|i| (*i, counts.get(i).copied().unwrap_or(0)))
                    .collect();
            }
            plan.create = plan.indexes.len();
        } else if active < want {
            plan.create = (want - active) as usize;
        } else if active > want {
            // Not-ready pods go first, then the newest (as upstream's ranking, in short).
            let mut ranked = kept;
            ranked.sort_by_key(|p| {
                (
                    pod_util::is_ready(p),
                    std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)),
                )
            });
            plan.delete
                .extend(ranked.into_iter().take((active - want) as usize));
        }
    }
    status.active = Some(c.active.len() as i32);
    plan.status = status;
    plan
}
