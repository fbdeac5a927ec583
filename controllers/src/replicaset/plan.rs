//! The pure half of the ReplicaSet controller: given a ReplicaSet and the pods of its namespace as
//! the cache holds them, what to do. It mirrors, in upstream's pkg/controller/replicaset/
//! replica_set.go and pkg/controller/controller_ref_manager.go:
//!
//! - `FilterActivePods` then `ClaimPods`: which pods the ReplicaSet counts, adopts and releases;
//! - `manageReplicas`: how many pods to create, or which to delete (`getPodsToDelete`), at most
//!   `burstReplicas` per sync, and nothing while earlier writes are still unseen (expectations);
//! - `getIndirectlyRelatedPods`: the pods of sibling ReplicaSets, for the doubled-up rank.
//!
//! No I/O here: `replicaset.rs` carries a [`Plan`] out.

use std::{collections::HashSet, sync::Arc};

use k8s_openapi::{
    api::{apps::v1::ReplicaSet, core::v1::Pod},
    jiff::Timestamp,
};
use kube::core::{Selector, SelectorExt};

use crate::{Error, pod_util, ranking};

/// The most pods one sync creates or deletes (upstream's `BurstReplicas`); the rest wait for the
/// next sync, once these writes have been observed.
pub const BURST_REPLICAS: usize = 500;

/// What a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The ReplicaSet, as cached.
    pub rs: &'a ReplicaSet,
    /// The pods of its namespace, as cached.
    pub pods: &'a [Arc<Pod>],
    /// The ReplicaSets with the same controller as `rs` (itself included), for ranking victims.
    pub siblings: &'a [Arc<ReplicaSet>],
    /// Whether earlier creates and deletes have all been observed (or expired).
    pub expectations_satisfied: bool,
    /// The time the plan is made at.
    pub now: Timestamp,
}

/// What to do about one ReplicaSet.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Orphans that match the selector: set the ReplicaSet as their controller.
    pub adopt: Vec<Arc<Pod>>,
    /// Owned pods that no longer match the selector: remove the owner reference.
    pub release: Vec<Arc<Pod>>,
    /// The active pods the ReplicaSet counts once adoptions and releases are done.
    pub claimed: Vec<Arc<Pod>>,
    /// Creates or deletes.
    pub manage: Manage,
}

/// The replica management part of a [`Plan`].
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Manage {
    /// As many pods as wanted, or the ReplicaSet is being deleted: nothing to write.
    #[default]
    Nothing,
    /// Earlier writes are not in the cache yet; acting now could create or delete twice.
    AwaitExpectations,
    /// Create this many pods from the template.
    Create(usize),
    /// Delete these pods (ranked by [`ranking::pods_to_delete`]).
    Delete(Vec<Arc<Pod>>),
}

/// The ReplicaSet's label selector; `None` (no spec) selects nothing, as upstream's nil selector.
pub fn selector(rs: &ReplicaSet) -> Result<Option<Selector>, Error> {
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(None);
    };
    Selector::try_from(spec.selector.clone())
        .map(Some)
        .map_err(|e| Error::InvalidSelector(e.to_string()))
}

/// Wanted replicas (`spec.replicas`, 1 when unset, as defaulting makes it).
pub fn wanted_replicas(rs: &ReplicaSet) -> usize {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize
}

/// Plans one sync of `input.rs`. Fails only when the selector cannot be parsed.
pub fn plan(input: &Input<'_>) -> Result<Plan, Error> {
    let rs = input.rs;
    let selector = selector(rs)?;
    let mut plan = claim_pods(rs, selector.as_ref(), input.pods);
    plan.manage = if rs.metadata.deletion_timestamp.is_some() {
        Manage::Nothing
    } else if !input.expectations_satisfied {
        Manage::AwaitExpectations
    } else {
        manage_replicas(input, &plan.claimed)
    };
    Ok(plan)
}

/// `FilterActivePods` + `PodControllerRefManager.ClaimPods`.
fn claim_pods(rs: &ReplicaSet, selector: Option<&Selector>, pods: &[Arc<Pod>]) -> Plan {
    let uid = rs.metadata.uid.as_deref().unwrap_or_default();
    let namespace = rs.metadata.namespace.as_deref();
    let deleting = rs.metadata.deletion_timestamp.is_some();
    let mut plan = Plan::default();
    for pod in pods
        .iter()
        .filter(|p| pod_util::is_active(p) && p.metadata.namespace.as_deref() == namespace)
    {
        let matches =
            selector.is_some_and(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&Default::default())));
        match pod_util::controller_of(&pod.metadata) {
            Some(owner) if owner.uid == uid => {
                if matches {
                    plan.claimed.push(pod.clone());
                } else if !deleting {
                    // A ReplicaSet being deleted leaves its pods to the garbage collector.
                    plan.release.push(pod.clone());
                }
            }
            // Another controller's pod.
            Some(_) => {}
            None if matches && !deleting => {
                plan.adopt.push(pod.clone());
                plan.claimed.push(pod.clone());
            }
            None => {}
        }
    }
    plan
}

/// `manageReplicas`' arithmetic: create the shortfall, or delete the best-ranked surplus.
fn manage_replicas(input: &Input<'_>, claimed: &[Arc<Pod>]) -> Manage {
    let wanted = wanted_replicas(input.rs);
    if claimed.len() < wanted {
        Manage::Create((wanted - claimed.len()).min(BURST_REPLICAS))
    } else if claimed.len() > wanted {
        let count = (claimed.len() - wanted).min(BURST_REPLICAS);
        let related = related_pods(input.siblings, input.pods);
        Manage::Delete(ranking::pods_to_delete(claimed, &related, count, input.now))
    } else {
        Manage::Nothing
    }
}

/// `getIndirectlyRelatedPods`: the pods matched by any of `siblings` (the ReplicaSets sharing a
/// controller, such as a Deployment's old and new ReplicaSets), each once.
pub fn related_pods(siblings: &[Arc<ReplicaSet>], pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
    let mut seen = HashSet::new();
    let mut related = Vec::new();
    for sibling in siblings {
        // A sibling with an invalid selector matches no pods.
        let Ok(Some(selector)) = selector(sibling) else {
            continue;
        };
        let namespace = sibling.metadata.namespace.as_deref();
        for pod in pods
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == namespace)
        {
            let labels = pod.metadata.labels.clone().unwrap_or_default();
            if selector.matches(&labels) && seen.insert(pod.metadata.uid.clone()) {
                related.push(pod.clone());
            }
        }
    }
    related
}
