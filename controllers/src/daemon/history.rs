//! A DaemonSet's revision history, as upstream's pkg/controller/daemon/update.go keeps it: one
//! ControllerRevision per pod template the DaemonSet has had, named `<daemonset>-<hash>`, whose
//! `data` is the patch that puts that template back (`{"spec":{"template":{…,"$patch":"replace"}}}`,
//! what `kubectl rollout undo daemonset` applies), numbered by `revision`, the current one highest.
//! Pods carry the hash of the revision they were made from (`controller-revision-hash`).
//!
//! This module is the pure part: the patch, which revisions match the DaemonSet, the next revision
//! number, and which old revisions go when there are more than `revisionHistoryLimit`.

use std::{collections::HashSet, sync::Arc};

use k8s_openapi::{
    api::apps::v1::{ControllerRevision, DaemonSet},
    apimachinery::pkg::runtime::RawExtension,
};
use kube::Resource;
use serde_json::Value;

use crate::deployment::util::compute_hash;
use crate::history::REVISION_HASH_LABEL;

/// Upstream's default `revisionHistoryLimit` of a DaemonSet.
pub const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// `getPatch`: the patch that restores the DaemonSet's current pod template.
pub fn patch(ds: &DaemonSet) -> Value {
    crate::history::template_patch(&ds.spec.clone().unwrap_or_default().template)
}

/// `Match`: whether `revision` holds the DaemonSet's current template.
pub fn matches(ds: &DaemonSet, revision: &ControllerRevision) -> bool {
    crate::history::holds(revision, &ds.spec.clone().unwrap_or_default().template)
}

/// The hash a revision stands for: its label, or (a revision written without one) its name.
pub fn hash_of(revision: &ControllerRevision) -> String {
    revision
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(REVISION_HASH_LABEL))
        .cloned()
        .or_else(|| revision.metadata.name.clone())
        .unwrap_or_default()
}

/// The revision `snapshot` writes for the DaemonSet's current template: named for the hash of the
/// template (and the collision count), labelled as the template and with the hash, annotated as the
/// DaemonSet (a `kubernetes.io/change-cause` shows in `rollout history`), owned by the DaemonSet.
pub fn snapshot(ds: &DaemonSet, revision: i64) -> ControllerRevision {
    let spec = ds.spec.clone().unwrap_or_default();
    let collision = ds.status.as_ref().and_then(|s| s.collision_count);
    let hash = compute_hash(&spec.template, collision);
    let mut labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.clone());
    let owner = k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..ds.controller_owner_ref(&()).unwrap_or_default()
    };
    ControllerRevision {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(format!(
                "{}-{hash}",
                ds.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: ds.metadata.annotations.clone(),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(patch(ds))),
        revision,
    }
}

/// The revisions that hold the current template, and the others.
pub type Split = (Vec<Arc<ControllerRevision>>, Vec<Arc<ControllerRevision>>);

/// Splits the DaemonSet's revisions into those matching its template and the old ones.
pub fn split(ds: &DaemonSet, revisions: &[Arc<ControllerRevision>]) -> Split {
    revisions.iter().cloned().partition(|r| matches(ds, r))
}

/// The number the current revision should have: one more than any old one.
pub fn next_revision(old: &[Arc<ControllerRevision>]) -> i64 {
    crate::history::next_revision(old.iter().map(AsRef::as_ref))
}

/// `cleanupHistory`: beyond `revisionHistoryLimit` old revisions, the oldest that no live pod was
/// made from.
pub fn to_clean_up<'a>(
    ds: &DaemonSet,
    old: &'a [Arc<ControllerRevision>],
    live_hashes: &HashSet<String>,
) -> Vec<&'a Arc<ControllerRevision>> {
    let keep = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .max(0) as usize;
    let mut excess = old.len().saturating_sub(keep);
    let mut oldest_first: Vec<&Arc<ControllerRevision>> = old.iter().collect();
    oldest_first.sort_by_key(|r| r.revision);
    let mut out = Vec::new();
    for r in oldest_first {
        if excess == 0 {
            break;
        }
        if live_hashes.contains(&hash_of(r)) {
            continue;
        }
        out.push(r);
        excess -= 1;
    }
    out
}
