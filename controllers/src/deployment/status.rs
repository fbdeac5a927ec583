//! The Deployment's status as upstream computes it (sync.go `calculateStatus`, progress.go and
//! util's condition helpers): counts summed over its ReplicaSets, the Available condition from
//! maxUnavailable, and the Progressing condition that `kubectl rollout status` and
//! `progressDeadlineSeconds` rely on.

use k8s_openapi::{
    api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

use super::util::{max_unavailable, replicas, rs_replicas, rs_status};

/// Progressing reasons (upstream's util constants).
pub mod reasons {
    /// A new ReplicaSet was created.
    pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
    /// An existing ReplicaSet matches the template.
    pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
    /// The rollout moves.
    pub const RS_UPDATED: &str = "ReplicaSetUpdated";
    /// The rollout finished.
    pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
    /// The rollout did not move within progressDeadlineSeconds.
    pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
    /// Paused.
    pub const PAUSED: &str = "DeploymentPaused";
    /// Resumed.
    pub const RESUMED: &str = "DeploymentResumed";
}

/// A condition of the status, if set.
pub fn condition<'a>(status: Option<&'a DeploymentStatus>, kind: &str) -> Option<&'a DeploymentCondition> {
    status?.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// Sets a condition, keeping its transition time when its status does not change (upstream's
/// `SetDeploymentCondition`: same status and reason → nothing to do).
pub fn set_condition(status: &mut DeploymentStatus, new: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_)
        && old.status == new.status
        && old.reason == new.reason
    {
        return;
    }
    let mut new = new;
    if let Some(old) = conditions.iter().find(|c| c.type_ == new.type_)
        && old.status == new.status
    {
        new.last_transition_time = old.last_transition_time.clone();
    }
    conditions.retain(|c| c.type_ != new.type_);
    conditions.push(new);
}

/// A condition stamped `now`.
pub fn new_condition(
    kind: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Counts over the ReplicaSets, and Available (upstream's `calculateStatus`).
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available: i32 = all.iter().map(|rs| rs_status(rs).2).sum();
    let total: i32 = all.iter().map(|rs| rs_replicas(rs)).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(all.iter().map(|rs| rs_status(rs).0).sum()),
        updated_replicas: Some(new_rs.map_or(0, |rs| rs_status(rs).0)),
        ready_replicas: Some(all.iter().map(|rs| rs_status(rs).1).sum()),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        ..Default::default()
    };
    let available_condition = if available >= replicas(d) - max_unavailable(d) {
        new_condition(
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".into(),
            now,
        )
    } else {
        new_condition(
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".into(),
            now,
        )
    };
    set_condition(&mut status, available_condition);
    status
}

/// All replicas updated, running and available, and the spec observed (upstream's
/// `DeploymentComplete`).
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let r = replicas(d);
    status.updated_replicas == Some(r)
        && status.replicas == Some(r)
        && status.available_replicas == Some(r)
        && status.observed_generation >= d.metadata.generation
}

/// Whether the rollout moved since the stored status (upstream's `DeploymentProgressing`).
pub fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(new.replicas) - n(new.updated_replicas);
    n(new.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(new.ready_replicas) > n(old.ready_replicas)
        || n(new.available_replicas) > n(old.available_replicas)
}

/// The progress deadline, if the Deployment has one.
pub fn progress_deadline(d: &Deployment) -> Option<i64> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s < i32::MAX)
        .map(i64::from)
}

/// Whether the rollout has not moved for longer than its deadline (upstream's `DeploymentTimedOut`).
pub fn timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(cond) = condition(Some(status), "Progressing") else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(reasons::NEW_RS_AVAILABLE) => false,
        Some(reasons::TIMED_OUT) => true,
        _ => cond
            .last_update_time
            .as_ref()
            .is_some_and(|from| from.0.as_second() + deadline < now.as_second()),
    }
}

/// Adds the Progressing condition for this sync (upstream's `syncRolloutStatus`).
pub fn update_progressing(
    d: &Deployment,
    status: &mut DeploymentStatus,
    new_rs: Option<&ReplicaSet>,
    now: Timestamp,
) {
    if progress_deadline(d).is_none() {
        if let Some(c) = status.conditions.as_mut() {
            c.retain(|c| c.type_ != "Progressing");
        }
        return;
    }
    let current = condition(Some(status), "Progressing").cloned();
    let finished = status.replicas == status.updated_replicas
        && current.as_ref().and_then(|c| c.reason.as_deref()) == Some(reasons::NEW_RS_AVAILABLE);
    if finished {
        return;
    }
    let name = new_rs.and_then(|rs| rs.metadata.name.clone()).unwrap_or_default();
    if complete(d, status) {
        let c = new_condition(
            "Progressing",
            "True",
            reasons::NEW_RS_AVAILABLE,
            format!("ReplicaSet \"{name}\" has successfully progressed."),
            now,
        );
        set_condition(status, c);
    } else if progressing(d, status) {
        let mut c = new_condition(
            "Progressing",
            "True",
            reasons::RS_UPDATED,
            format!("ReplicaSet \"{name}\" is progressing."),
            now,
        );
        // Still progressing: the transition time stays, the update time moves (the deadline counts
        // from the last progress).
        if let Some(old) = current.filter(|c| c.status == "True") {
            c.last_transition_time = old.last_transition_time;
        }
        if let Some(conds) = status.conditions.as_mut() {
            conds.retain(|c| c.type_ != "Progressing");
        }
        status.conditions.get_or_insert_with(Vec::new).push(c);
    } else if timed_out(d, status, now) {
        let c = new_condition(
            "Progressing",
            "False",
            reasons::TIMED_OUT,
            format!("ReplicaSet \"{name}\" has timed out progressing."),
            now,
        );
        set_condition(status, c);
    }
}
