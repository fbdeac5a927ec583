//! What a StatefulSet sync does next, pure (upstream's `updateStatefulSet` in
//! pkg/controller/statefulset/stateful_set_control.go): pods `<set>-<ordinal>` for the ordinals
//! `[start, start+replicas)`, made from the current revision below the update partition and from
//! the update revision from it on; failed or finished pods deleted (to be made again); pods past
//! the range ("condemned") deleted from the highest ordinal down; then, for RollingUpdate, pods of
//! an older revision deleted from the highest ordinal down to the partition, one at a time, each
//! only once every pod above it is healthy again.
//!
//! With `podManagementPolicy: OrderedReady` (the default) the set is *monotonic*: one step per
//! sync, and nothing happens past a pod that is not yet Running and Ready (nor past one
//! terminating). With `Parallel`, creations and deletions all go at once.
//!
//! The status counts pods (`replicas`), Running and Ready ones, available ones, and those of the
//! current and the update revision; once every pod is updated and ready, the update revision
//! becomes the current one (`completeRollingUpdate`).

use std::sync::Arc;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetStatus},
        core::v1::{Pod, PodTemplateSpec},
    },
    jiff::Timestamp,
};

use crate::{history::REVISION_HASH_LABEL, pod_util};

/// The label naming a StatefulSet pod (so a Service can select one pod).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label holding a StatefulSet pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The two revisions a sync works with: the one most pods run (current) and the one the template
/// now asks for (update), by name, with their templates.
pub struct Revisions {
    /// The current revision's name and template.
    pub current: (String, PodTemplateSpec),
    /// The update revision's name and template.
    pub update: (String, PodTemplateSpec),
}

/// One thing to do.
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Create the pod of this ordinal from the named revision.
    Create {
        /// The ordinal.
        ordinal: i32,
        /// Made from the update revision (else the current one).
        update: bool,
    },
    /// Delete this pod.
    Delete(Arc<Pod>),
}

/// `getPodName`.
pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!("{}-{ordinal}", set.metadata.name.as_deref().unwrap_or_default())
}

/// `getOrdinal`: the ordinal a pod's name ends with, if it is one of this set's names.
pub fn ordinal(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let name = pod.metadata.name.as_deref()?;
    let rest = name
        .strip_prefix(set.metadata.name.as_deref()?)?
        .strip_prefix('-')?;
    // A canonical decimal only ("web-01" is no ordinal of "web").
    let n: i32 = rest.parse().ok()?;
    (n >= 0 && n.to_string() == rest).then_some(n)
}

fn spec_replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0)
}

fn start(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

fn monotonic(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        .is_none_or(|p| p != "Parallel")
}

fn rolling(set: &StatefulSet) -> bool {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

fn partition(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
}

fn min_ready_seconds(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// `isCreated`: the API server gave it a phase.
fn is_created(pod: &Pod) -> bool {
    !phase(pod).is_empty()
}

fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pod_util::is_ready(pod)
}

fn is_running_and_available(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    phase(pod) == "Running" && pod_util::is_available(pod, min_ready, now)
}

/// `isHealthy`: running, ready, available and not terminating.
fn is_healthy(pod: &Pod, min_ready: i32, now: Timestamp) -> bool {
    is_running_and_available(pod, min_ready, now) && !pod_util::is_terminating(pod)
}

/// `getPodRevision`: the name of the revision the pod was made from.
pub fn pod_revision(pod: &Pod) -> &str {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .map(String::as_str)
        .unwrap_or("")
}

/// Whether the pod of `ordinal` is made from the update revision (`newVersionedStatefulSetPod`):
/// below the partition it keeps the current revision.
fn made_from_update(set: &StatefulSet, ordinal: i32) -> bool {
    !(rolling(set) && ordinal - start(set) < partition(set))
}

/// The steps of one sync. `pods` are the set's own pods.
pub fn steps(set: &StatefulSet, pods: &[Arc<Pod>], revisions: &Revisions, now: Timestamp) -> Vec<Step> {
    let (first, count) = (start(set), spec_replicas(set));
    let monotonic = monotonic(set);
    let min_ready = min_ready_seconds(set);
    let mut replicas: Vec<Option<Arc<Pod>>> = vec![None; count as usize];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for pod in pods {
        let Some(ord) = ordinal(set, pod) else { continue };
        if (first..first + count).contains(&ord) {
            replicas[(ord - first) as usize] = Some(pod.clone());
        } else {
            condemned.push((ord, pod.clone()));
        }
    }
    condemned.sort_by_key(|(ord, _)| std::cmp::Reverse(*ord));
    let mut out = Vec::new();

    // Bring every ordinal of the range up, in order.
    for (i, slot) in replicas.iter().enumerate() {
        let ord = first + i as i32;
        let Some(pod) = slot else {
            out.push(Step::Create {
                ordinal: ord,
                update: made_from_update(set, ord),
            });
            if monotonic {
                return out;
            }
            continue;
        };
        if matches!(phase(pod), "Failed" | "Succeeded") && !pod_util::is_terminating(pod) {
            // Made again once it is gone.
            out.push(Step::Delete(pod.clone()));
            if monotonic {
                return out;
            }
            continue;
        }
        if !is_created(pod) {
            // Not seen with a phase yet.
            if monotonic {
                return out;
            }
            continue;
        }
        if monotonic
            && (pod_util::is_terminating(pod)
                || !is_running_and_ready(pod)
                || !is_running_and_available(pod, min_ready, now))
        {
            return out;
        }
    }

    // Then the pods past the range, highest ordinal first.
    for (_, pod) in &condemned {
        if pod_util::is_terminating(pod) {
            if monotonic {
                return out;
            }
            continue;
        }
        // A monotonic set scales down only while its pods are healthy (or the unhealthy one is the
        // one going).
        if monotonic && !is_running_and_ready(pod) {
            let first_unhealthy = condemned
                .iter()
                .map(|(_, p)| p)
                .chain(replicas.iter().flatten())
                .find(|p| !is_running_and_ready(p));
            if first_unhealthy.is_some_and(|u| u.metadata.uid != pod.metadata.uid) {
                return out;
            }
        }
        out.push(Step::Delete(pod.clone()));
        if monotonic {
            return out;
        }
    }
    if !out.is_empty() && monotonic {
        return out;
    }

    // A rolling update: the highest ordinal of an older revision goes first, one at a time.
    if !rolling(set) {
        return out;
    }
    let update_min = partition(set).max(0);
    for target in (update_min..count).rev() {
        let Some(pod) = &replicas[target as usize] else {
            return out;
        };
        if pod_revision(pod) != revisions.update.0 && !pod_util::is_terminating(pod) {
            out.push(Step::Delete(pod.clone()));
            return out;
        }
        if !is_healthy(pod, min_ready, now) {
            return out;
        }
    }
    out
}

/// `computeReplicaStatus` and `completeRollingUpdate`.
pub fn status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    revisions: &Revisions,
    now: Timestamp,
) -> StatefulSetStatus {
    let mut st = StatefulSetStatus {
        collision_count: set.status.as_ref().and_then(|s| s.collision_count),
        observed_generation: set.metadata.generation,
        current_revision: Some(revisions.current.0.clone()),
        update_revision: Some(revisions.update.0.clone()),
        ..Default::default()
    };
    let min_ready = min_ready_seconds(set);
    let (mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0);
    for pod in pods.iter().filter(|p| ordinal(set, p).is_some()) {
        if is_created(pod) {
            st.replicas += 1;
        }
        if is_running_and_ready(pod) {
            ready += 1;
            if is_running_and_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if is_created(pod) && !pod_util::is_terminating(pod) {
            let revision = pod_revision(pod);
            if revision == revisions.current.0 {
                current += 1;
            }
            if revision == revisions.update.0 {
                updated += 1;
            }
        }
    }
    if rolling(set) && updated == st.replicas && ready == st.replicas {
        current = updated;
        st.current_revision = st.update_revision.clone();
    }
    st.ready_replicas = Some(ready).filter(|n| *n > 0);
    // Not omitted when zero (upstream's field has no omitempty).
    st.available_replicas = Some(available);
    st.current_replicas = Some(current).filter(|n| *n > 0);
    st.updated_replicas = Some(updated).filter(|n| *n > 0);
    st
}
