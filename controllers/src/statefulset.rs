//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), stable network identity
//! (`hostname` = the pod's name, `subdomain` = the set's `serviceName`, so a headless Service gives
//! each one a DNS name) and an order to their creation, deletion and update, as upstream's
//! pkg/controller/statefulset does, on kube-runtime's `Controller`.
//!
//! A sync (upstream's `syncStatefulSet`) claims the set's pods (adopting orphans whose name is one
//! of its ordinals and whose labels its selector matches), finds the two revisions it works with
//! ([`history`](crate::history): the update revision holding the template as it is now, written or
//! renumbered as needed, and the current revision most pods still run), asks [`plan::steps`] what
//! to do next and does it, then writes the status `kubectl rollout status sts` reads. Pods are
//! created with fixed names, so a create that raced another is refused by the API server (409)
//! rather than duplicated: the controller needs no expectations.
//!
//! Volume claim templates: the claims `<template>-<set>-<ordinal>` are created before their pod,
//! as upstream does; this API server serves no PersistentVolumeClaims yet, so such a set reports
//! upstream's `FailedCreate` event for the claim and creates no pod.
//!
//! Not mirrored (yet): `persistentVolumeClaimRetentionPolicy`, `maxUnavailable` for rolling
//! updates (upstream's feature gate, off by default), and updating a live pod's identity labels.

pub mod plan;
#[cfg(test)]
mod tests;

use std::{future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus},
        core::v1::{PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
    core::{Selector, SelectorExt},
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;

use self::plan::{POD_INDEX_LABEL, POD_NAME_LABEL, Revisions, Step};
use crate::{
    Error,
    backoff::Backoff,
    deployment::util::compute_hash,
    events::EventSink,
    history::{self, REVISION_HASH_LABEL},
    pod_control::{self, PodControl, reasons},
    pod_util,
};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "statefulset-controller";
/// StatefulSets synced at once (upstream's `--concurrent-statefulset-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 5;
/// Upstream's default `revisionHistoryLimit`.
const DEFAULT_HISTORY_LIMIT: i32 = 10;

/// What every sync shares.
struct Context {
    client: Client,
    pods: Store<Pod>,
    revisions: Store<ControllerRevision>,
    pod_control: PodControl,
    events: EventSink,
    backoff: Backoff,
}

/// Runs the StatefulSet controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, events: EventSink, shutdown: impl Future<Output = ()>) {
    let (pod_cache, pod_writer) = reflector::store::<Pod>();
    let pods = crate::pod_informer::watch(
        &client,
        "StatefulSet",
        "apps",
        pod_cache.clone(),
        pod_writer,
        None,
    );
    let (revision_cache, revision_writer) = reflector::store::<ControllerRevision>();
    let revisions = watcher(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|r| r.managed_fields_mut().clear())
    .reflect(revision_writer)
    .touched_objects();
    let controller = Controller::new(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let sets = controller.store();
    let context = Arc::new(Context {
        pod_control: PodControl::new(client.clone(), events.clone()),
        events,
        client,
        pods: pod_cache,
        revisions: revision_cache,
        backoff: Backoff::new(),
    });
    crate::runner::until_shutdown("statefulset controller", shutdown, |stopped| {
        controller
            .watches_stream(pods, move |pod| {
                pod_util::controllers_for_pod(&sets, &pod, "StatefulSet", "apps", |set| selector(set).ok())
            })
            .watches_stream(revisions, |revision| {
                pod_util::controller_of(&revision.metadata)
                    .filter(|o| o.kind == "StatefulSet")
                    .map(|o| ObjectRef::new(&o.name).within(&revision.namespace().unwrap_or_default()))
            })
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

fn selector(set: &StatefulSet) -> Result<Selector, Error> {
    let spec = set.spec.clone().unwrap_or_default();
    Selector::try_from(spec.selector).map_err(|e| Error::InvalidSelector(e.to_string()))
}

fn controller_ref(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..set.owner_ref(&()).unwrap_or_default()
    }
}

/// One sync (upstream's `syncStatefulSet`).
async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [
        crate::cache_ready::cache_ready(&ctx.pods).await,
        crate::cache_ready::cache_ready(&ctx.revisions).await,
    ] {
        ready.map_err(|_| Error::CacheGone)?;
    }
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = set.metadata.uid.clone().ok_or(Error::MissingUid)?;
    let selector = match selector(&set) {
        Ok(s) if !s.selects_all() => s,
        Ok(_) | Err(_) => {
            tracing::warn!(statefulset = %set.name_any(), "not syncing: selector selects everything or cannot be parsed");
            return Ok(Action::await_change());
        }
    };
    let namespace = set.namespace().unwrap_or_default();
    let candidates = ctx
        .pods
        .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()));
    let member = |p: &Pod| {
        plan::ordinal(&set, p).is_some() && selector.matches(&p.metadata.labels.clone().unwrap_or_default())
    };
    let pods = ctx
        .pod_control
        .claim_pods(candidates, &controller_ref(&set), member)
        .await?;
    let revisions = revisions(&set, &ctx).await?;
    let now = Timestamp::now();
    for step in plan::steps(&set, &pods, &revisions, now) {
        match step {
            Step::Create { ordinal, update } => {
                let (name, template) = if update {
                    &revisions.update
                } else {
                    &revisions.current
                };
                create_pod(&set, ordinal, name, template, &ctx).await?;
            }
            Step::Delete(pod) => delete_pod(&set, &pod, &ctx).await?,
        }
    }
    let status = plan::status(&set, &pods, &revisions, now);
    write_status(&set, &status, &ctx.client).await?;
    truncate_history(&set, &pods, &revisions, &ctx).await?;
    ctx.backoff.forget(&key);
    // A ready pod becomes available minReadySeconds later: look again then.
    let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    if min_ready > 0 && status.ready_replicas != status.available_replicas.filter(|n| *n > 0) {
        return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
    }
    Ok(Action::await_change())
}

/// The set's revisions, oldest first.
fn owned_revisions(set: &StatefulSet, ctx: &Context) -> Vec<Arc<ControllerRevision>> {
    let uid = set.metadata.uid.as_deref().unwrap_or_default();
    let namespace = set.namespace().unwrap_or_default();
    let mut owned = ctx.revisions.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(namespace.as_str())
            && pod_util::controller_of(&r.metadata).is_some_and(|c| c.uid == uid)
    });
    owned.sort_by_key(|r| r.revision);
    owned
}

/// `getStatefulSetRevisions`: the update revision (the newest if it holds the template; an older
/// one holding it renumbered as the newest, a rollback; else a new one), and the current revision
/// (the one `status.currentRevision` names, else the update revision).
async fn revisions(set: &StatefulSet, ctx: &Context) -> Result<Revisions, Error> {
    let template = set.spec.clone().unwrap_or_default().template;
    let owned = owned_revisions(set, ctx);
    let next = history::next_revision(owned.iter().map(AsRef::as_ref));
    let namespace = set.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let equal: Vec<&Arc<ControllerRevision>> =
        owned.iter().filter(|r| history::holds(r, &template)).collect();
    let update = match (equal.last(), owned.last()) {
        (Some(eq), Some(newest)) if eq.metadata.uid == newest.metadata.uid => eq.name_any(),
        (Some(eq), _) => {
            api.patch(
                &eq.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "revision": next })),
            )
            .await?;
            eq.name_any()
        }
        (None, _) => create_revision(set, &template, next, &ctx.client).await?,
    };
    let current_name = set
        .status
        .as_ref()
        .and_then(|s| s.current_revision.clone())
        .filter(|name| owned.iter().any(|r| r.name_any() == *name))
        .unwrap_or_else(|| update.clone());
    let current_template = owned
        .iter()
        .find(|r| r.name_any() == current_name)
        .and_then(|r| history::template_of(r))
        .unwrap_or_else(|| template.clone());
    Ok(Revisions {
        current: (current_name, current_template),
        update: (update, template),
    })
}

/// Writes the revision of `template` (`CreateControllerRevision`): `<set>-<hash>`, labelled as the
/// template and with its hash, annotated as the set. A name taken by another template is a hash
/// collision: counted in the status (so the next name differs) and the sync retried.
async fn create_revision(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: i64,
    client: &Client,
) -> Result<String, Error> {
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &set.namespace().unwrap_or_default());
    let collisions = set.status.as_ref().and_then(|s| s.collision_count);
    let hash = compute_hash(template, collisions);
    let name = format!("{}-{hash}", set.name_any());
    let mut labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash);
    let object = ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: set.metadata.annotations.clone(),
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
            history::template_patch(template),
        )),
        revision,
    };
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(name),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await?;
            let ours = pod_util::controller_of(&existing.metadata)
                .is_some_and(|c| Some(&c.uid) == set.metadata.uid.as_ref());
            if ours && history::holds(&existing, template) {
                return Ok(name);
            }
            let count = collisions.unwrap_or(0) + 1;
            Api::<StatefulSet>::namespaced(client.clone(), &set.namespace().unwrap_or_default())
                .patch_status(
                    &set.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": { "collisionCount": count } })),
                )
                .await?;
            Err(Error::StaleCache(format!(
                "revision {name} exists with another template"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// `newVersionedStatefulSetPod`: the pod of `ordinal` from `template` (revision `revision`), with
/// its identity (name, hostname, subdomain, the pod-name and pod-index labels) and the volumes of
/// its claims.
fn new_pod(
    set: &StatefulSet,
    ordinal: i32,
    revision: &str,
    template: &PodTemplateSpec,
) -> Result<Pod, Error> {
    let name = plan::pod_name(set, ordinal);
    let mut pod = pod_control::pod_from_template(
        template,
        &set.namespace().unwrap_or_default(),
        "",
        controller_ref(set),
    )?;
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(Default::default);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // `updateStorage`: each claim template's volume is the claim of this pod.
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    for (volume, claim) in claims(set, ordinal) {
        volumes.retain(|v| v.name != volume);
        volumes.push(Volume {
            name: volume,
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim,
                read_only: None,
            }),
            ..Default::default()
        });
    }
    Ok(pod)
}

/// The volume claim templates' names and this ordinal's claim names (`<template>-<set>-<ordinal>`).
fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, String)> {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .map(|t| {
            let template = t.metadata.name.clone().unwrap_or_default();
            let claim = format!("{template}-{}", plan::pod_name(set, ordinal));
            (template, claim)
        })
        .collect()
}

/// `CreateStatefulPod`: the pod's claims first (those missing), then the pod, each with upstream's
/// event. A pod that already exists (a sync that raced this one) is no error.
async fn create_pod(
    set: &StatefulSet,
    ordinal: i32,
    revision: &str,
    template: &PodTemplateSpec,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = set.namespace().unwrap_or_default();
    let owner = set.object_ref(&());
    let (set_name, pod_name) = (set.name_any(), plan::pod_name(set, ordinal));
    let claims_api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &namespace);
    for (volume, claim) in claims(set, ordinal) {
        let spec_template = set
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.as_ref())
            .and_then(|ts| {
                ts.iter()
                    .find(|t| t.metadata.name.as_deref() == Some(volume.as_str()))
            })
            .cloned()
            .unwrap_or_default();
        let mut object = spec_template;
        object.metadata.name = Some(claim.clone());
        object.metadata.namespace = Some(namespace.clone());
        let labels = object.metadata.labels.get_or_insert_with(Default::default);
        for (k, v) in selector_labels(set) {
            labels.insert(k, v);
        }
        object.status = None;
        match claims_api.create(&PostParams::default(), &object).await {
            Ok(_) => ctx.events.normal(
                &owner,
                reasons::SUCCESSFUL_CREATE,
                "Create",
                format!("create Claim {claim} Pod {pod_name} in StatefulSet {set_name} success"),
            ),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                ctx.events.warning(
                    &owner,
                    reasons::FAILED_CREATE,
                    "Create",
                    format!(
                        "create Claim {claim} for Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                        pod_control::error_message(&e)
                    ),
                );
                return Err(e.into());
            }
        }
    }
    let pod = new_pod(set, ordinal, revision, template)?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.create(&PostParams::default(), &pod).await {
        Ok(_) => {
            ctx.events.normal(
                &owner,
                reasons::SUCCESSFUL_CREATE,
                "Create",
                format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
            );
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            if !pod_control::is_namespace_terminating(&e) {
                ctx.events.warning(
                    &owner,
                    reasons::FAILED_CREATE,
                    "Create",
                    format!(
                        "create Pod {pod_name} in StatefulSet {set_name} failed error: {}",
                        pod_control::error_message(&e)
                    ),
                );
            }
            Err(e.into())
        }
    }
}

/// The labels of the set's `matchLabels` (claims carry them, as upstream's do).
fn selector_labels(set: &StatefulSet) -> Vec<(String, String)> {
    set.spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// `DeleteStatefulPod`: that very pod (its UID a precondition), with upstream's event.
async fn delete_pod(set: &StatefulSet, pod: &Pod, ctx: &Context) -> Result<(), Error> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let owner = set.object_ref(&());
    match Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .delete(&name, &params)
        .await
    {
        Ok(_) => {
            ctx.events.normal(
                &owner,
                reasons::SUCCESSFUL_DELETE,
                "Delete",
                format!("delete Pod {name} in StatefulSet {} successful", set.name_any()),
            );
            Ok(())
        }
        Err(e) if pod_control::is_gone(&e) => Ok(()),
        Err(e) => {
            ctx.events.warning(
                &owner,
                reasons::FAILED_DELETE,
                "Delete",
                format!(
                    "delete Pod {name} in StatefulSet {} failed error: {}",
                    set.name_any(),
                    pod_control::error_message(&e)
                ),
            );
            Err(e.into())
        }
    }
}

/// `truncateHistory`: beyond `revisionHistoryLimit`, the oldest revisions that are neither current,
/// nor the update revision, nor one a pod runs.
async fn truncate_history(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    revisions: &Revisions,
    ctx: &Context,
) -> Result<(), Error> {
    let live: std::collections::HashSet<&str> = pods
        .iter()
        .map(|p| plan::pod_revision(p))
        .chain([revisions.current.0.as_str(), revisions.update.0.as_str()])
        .collect();
    let owned = owned_revisions(set, ctx);
    let history: Vec<&Arc<ControllerRevision>> = owned
        .iter()
        .filter(|r| !live.contains(r.name_any().as_str()))
        .collect();
    let keep = set
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(DEFAULT_HISTORY_LIMIT)
        .max(0) as usize;
    let api: Api<ControllerRevision> =
        Api::namespaced(ctx.client.clone(), &set.namespace().unwrap_or_default());
    for revision in history.iter().take(history.len().saturating_sub(keep)) {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Err(e) if !pod_control::is_gone(&e) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Writes the status through `/status` when it changed.
async fn write_status(set: &StatefulSet, status: &StatefulSetStatus, client: &Client) -> Result<(), Error> {
    if set.status.as_ref() == Some(status) {
        return Ok(());
    }
    // Zeroed optional counts are left out of `status`: written as null.
    let nulls = ["readyReplicas", "currentReplicas", "updatedReplicas"];
    crate::runner::patch_status(set, status, &nulls, client).await
}

/// After a failed sync, retry with a per-StatefulSet exponential backoff.
fn error_policy(set: Arc<StatefulSet>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::runner::retry(&set, error, &ctx.backoff)
}
