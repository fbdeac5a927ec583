//! The ReplicaSet's status, computed from the pods it claims: upstream's `calculateStatus` and the
//! condition helpers of pkg/controller/replicaset/replica_set_utils.go, plus the early return of
//! `updateReplicaSetStatus` (nothing to write when nothing changed). Pure; the write is in
//! `replicaset.rs`.

use std::{sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus},
        core::v1::Pod,
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

use crate::pod_util;

/// The condition type a ReplicaSet reports failed creates or deletes with.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";

/// Why managing replicas failed, for the `ReplicaFailure` condition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ManageError {
    /// `FailedCreate` or `FailedDelete`.
    pub reason: &'static str,
    /// The API server's message.
    pub message: String,
}

/// `calculateStatus`: replica counts over the claimed pods, and the `ReplicaFailure` condition set
/// when managing replicas failed (kept as it was while it keeps failing) and removed once it works.
pub fn calculate_status(
    rs: &ReplicaSet,
    claimed: &[Arc<Pod>],
    manage_error: Option<&ManageError>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels = rs
        .spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready_seconds = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for pod in claimed {
        let labels = pod.metadata.labels.as_ref();
        // The template's labels are a superset of the selector: a pod can match the selector
        // without carrying all of them.
        if template_labels
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        {
            fully_labeled += 1;
        }
        if pod_util::is_ready(pod) {
            ready += 1;
            if pod_util::is_available(pod, min_ready_seconds, now) {
                available += 1;
            }
        }
    }
    let has_failure = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == REPLICA_FAILURE);
    match manage_error {
        Some(e) if !has_failure => set_condition(&mut status, failure_condition(e, now)),
        None if has_failure => remove_condition(&mut status, REPLICA_FAILURE),
        _ => {}
    }
    status.replicas = claimed.len() as i32;
    status.fully_labeled_replicas = Some(fully_labeled);
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.observed_generation = rs.metadata.generation;
    status
}

/// Whether `new` differs from what the ReplicaSet reports, or the generation was not yet observed
/// (the early return of upstream's `updateReplicaSetStatus`).
pub fn needs_update(rs: &ReplicaSet, new: &ReplicaSetStatus) -> bool {
    let old = rs.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || n(old.fully_labeled_replicas) != n(new.fully_labeled_replicas)
        || n(old.ready_replicas) != n(new.ready_replicas)
        || n(old.available_replicas) != n(new.available_replicas)
        || rs.metadata.generation != old.observed_generation
        || old.conditions.unwrap_or_default() != new.conditions.clone().unwrap_or_default()
}

/// How long until the next claimed pod that is ready but not yet available (minReadySeconds)
/// becomes available, so the controller looks again then (upstream requeues after minReadySeconds
/// for the same reason). One second is added, as upstream does, against clock granularity.
pub fn next_availability_check(rs: &ReplicaSet, claimed: &[Arc<Pod>], now: Timestamp) -> Option<Duration> {
    let min_ready_seconds = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    claimed
        .iter()
        .filter(|p| pod_util::is_ready(p) && !pod_util::is_available(p, min_ready_seconds, now))
        .filter_map(|p| pod_util::available_at(p, min_ready_seconds))
        .map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_secs(1))
        .min()
}

fn failure_condition(e: &ManageError, now: Timestamp) -> ReplicaSetCondition {
    ReplicaSetCondition {
        type_: REPLICA_FAILURE.into(),
        status: "True".into(),
        reason: Some(e.reason.into()),
        message: Some(e.message.clone()),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetCondition`: replaces the condition of that type unless status and reason are unchanged.
fn set_condition(status: &mut ReplicaSetStatus, condition: ReplicaSetCondition) {
    let conditions = status.conditions.get_or_insert_default();
    let unchanged = |c: &ReplicaSetCondition| {
        c.type_ == condition.type_ && c.status == condition.status && c.reason == condition.reason
    };
    if conditions.iter().any(unchanged) {
        return;
    }
    conditions.retain(|c| c.type_ != condition.type_);
    conditions.push(condition);
}

/// `RemoveCondition`.
fn remove_condition(status: &mut ReplicaSetStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}
