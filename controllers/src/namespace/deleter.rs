//! Deleting everything in a namespace, then finalizing it: upstream's
//! pkg/controller/namespace/deletion/namespaced_resources_deleter.go.
//!
//! One pass ([`delete`]): re-read the namespace; make sure it reports Terminating; for every
//! namespaced resource that supports delete, delete the collection (or each item, where
//! deletecollection is not served) and list what remains; write the conditions that explain what
//! remains; and when nothing does, remove the `kubernetes` finalizer through the `finalize`
//! subresource, after which the API server removes the namespace. What remains is not an error:
//! the pass answers [`Outcome::Remaining`] with an estimate of how long it will take.

use std::collections::BTreeMap;

use k8s_openapi::{api::core::v1::Namespace, jiff::Timestamp};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, PropagationPolicy},
    discovery::{Scope, verbs},
};
use serde_json::json;

use super::conditions::{self, DeletionReport};
use crate::garbagecollector::monitors::{self, Resource};

/// The finalizer the namespace controller owns in `spec.finalizers`.
pub const FINALIZER_TOKEN: &str = "kubernetes";
/// Seconds assumed for objects with finalizers to go (upstream's `finalizerEstimateSeconds`).
pub const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The namespace is finalized (or gone, or not being deleted).
    Done,
    /// Content remains; look again in about half this many seconds (upstream's
    /// `ResourcesRemainingError`).
    Remaining {
        /// Seconds the remaining content is estimated to take.
        estimate: i64,
    },
}

/// Why a pass failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// An API request about the namespace itself failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// Discovery or deleting content failed (the conditions say which).
    #[error("{0}")]
    Content(String),
    /// The namespace was replaced by another of the same name while being finalized.
    #[error("namespace uid has changed across retries")]
    UidChanged,
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict())
}

/// One deletion pass over namespace `name` (upstream's `namespacedResourcesDeleter.Delete`).
pub async fn delete(client: &Client, name: &str) -> Result<Outcome, DeleteError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // Others edit a terminating namespace too: start from its latest state.
    let Some(namespace) = namespaces.get_opt(name).await? else {
        return Ok(Outcome::Done);
    };
    if namespace.metadata.deletion_timestamp.is_none() {
        return Ok(Outcome::Done);
    }
    let mut namespace = match ensure_terminating(&namespaces, namespace).await {
        Ok(ns) => ns,
        Err(e) if is_not_found(&e) => return Ok(Outcome::Done),
        Err(e) => return Err(e.into()),
    };
    if finalized(&namespace) {
        return Ok(Outcome::Done);
    }

    let (estimate, report) = delete_all_content(client, name).await;
    // Always written: a condition that failed before and is fine now must say so.
    let mut status_conditions = namespace
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if conditions::update_conditions(&mut status_conditions, &report, Timestamp::now()) {
        let patch = json!({ "status": { "conditions": status_conditions } });
        match namespaces
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            // Finalizing starts from the namespace as written, not a stale resourceVersion.
            Ok(written) => namespace = written,
            Err(e) => tracing::debug!(namespace = name, error = %e, "couldn't update status conditions"),
        }
    }
    let mut errors: Vec<String> = report.discovery_error.iter().cloned().collect();
    errors.extend(report.content_errors.iter().cloned());
    if !errors.is_empty() {
        return Err(DeleteError::Content(errors.join(", ")));
    }
    if estimate > 0 {
        return Ok(Outcome::Remaining { estimate });
    }

    match finalize(&namespaces, namespace).await {
        Ok(()) => Ok(Outcome::Done),
        // Finished by someone else.
        Err(DeleteError::Api(e)) if is_not_found(&e) => Ok(Outcome::Done),
        Err(e) => Err(e),
    }
}

/// Whether the namespace no longer waits for this controller.
fn finalized(namespace: &Namespace) -> bool {
    !finalizers(namespace).iter().any(|f| f == FINALIZER_TOKEN)
}

fn finalizers(namespace: &Namespace) -> Vec<String> {
    namespace
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default()
}

/// Sets `status.phase: Terminating` if the API server has not (upstream's
/// `updateNamespaceStatusFunc`).
async fn ensure_terminating(
    namespaces: &Api<Namespace>,
    namespace: Namespace,
) -> Result<Namespace, kube::Error> {
    let phase = namespace.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Terminating") {
        return Ok(namespace);
    }
    let name = namespace.metadata.name.clone().unwrap_or_default();
    namespaces
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Terminating" } })),
        )
        .await
}

/// Removes [`FINALIZER_TOKEN`] from `spec.finalizers` through the `finalize` subresource, retried
/// on conflict from a fresh read (upstream's `finalizeNamespace` in `retryOnConflictError`).
async fn finalize(namespaces: &Api<Namespace>, mut namespace: Namespace) -> Result<(), DeleteError> {
    let name = namespace.metadata.name.clone().unwrap_or_default();
    loop {
        let mut remaining: Vec<String> = finalizers(&namespace)
            .into_iter()
            .filter(|f| f != FINALIZER_TOKEN)
            .collect();
        remaining.sort();
        remaining.dedup();
        let mut body = namespace.clone();
        body.spec.get_or_insert_default().finalizers = Some(remaining);
        match namespaces
            .replace_subresource("finalize", &name, &PostParams::default(), &body)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_conflict(&e) => {
                let latest = namespaces.get(&name).await?;
                if latest.metadata.uid != namespace.metadata.uid {
                    return Err(DeleteError::UidChanged);
                }
                namespace = latest;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// What deleting one resource's content found (upstream's `gvrDeletionMetadata`).
#[derive(Debug, Default)]
struct ResourceRemaining {
    estimate: i64,
    remaining: usize,
    finalizers: BTreeMap<String, usize>,
}

/// Deletes the content of every namespaced resource; returns the longest estimate and the report
/// the conditions are made from (upstream's `deleteAllContent`).
async fn delete_all_content(client: &Client, namespace: &str) -> (i64, DeletionReport) {
    let mut report = DeletionReport::default();
    let resources = match namespaced_resources(client).await {
        Ok(resources) => resources,
        Err(e) => {
            report.discovery_error = Some(e.to_string());
            vec![]
        }
    };
    let mut estimate = 0;
    for resource in &resources {
        let label = format!("{}.{}", resource.api.plural, resource.api.group);
        match delete_all_content_for(client, resource, namespace).await {
            Ok(found) => {
                estimate = estimate.max(found.estimate);
                if found.remaining > 0 {
                    report.remaining.insert(label, found.remaining);
                    for (finalizer, n) in found.finalizers {
                        *report.finalizers.entry(finalizer).or_default() += n;
                    }
                }
            }
            Err((found, message)) => {
                estimate = estimate.max(found.estimate);
                if found.remaining > 0 {
                    report.remaining.insert(label, found.remaining);
                }
                report.content_errors.push(message);
            }
        }
    }
    (estimate, report)
}

/// The namespaced resources, at their preferred versions, that support delete (upstream's
/// `ServerPreferredNamespacedResources` filtered by the delete verb).
async fn namespaced_resources(client: &Client) -> Result<Vec<Resource>, kube::Error> {
    let discovery = monitors::discover(client).await?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (api, caps) in group.recommended_resources() {
            if caps.scope == Scope::Namespaced && caps.supports_operation(verbs::DELETE) {
                out.push(Resource {
                    api,
                    namespaced: true,
                });
            }
        }
    }
    Ok(out)
}

/// The upstream spelling of a resource in error messages (`GroupVersionResource.String()`).
fn gvr(resource: &Resource) -> String {
    format!(
        "{}/{}, Resource={}",
        resource.api.group, resource.api.version, resource.api.plural
    )
}

/// Whether an error means the verb is not served for this resource.
fn not_supported(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 405 || s.is_not_found())
}

/// Deletes one resource's content in `namespace` and says what remains (upstream's
/// `deleteAllContentForGroupVersionResource`).
async fn delete_all_content_for(
    client: &Client,
    resource: &Resource,
    namespace: &str,
) -> Result<ResourceRemaining, (ResourceRemaining, String)> {
    let api = resource.api(client, namespace);
    let fail = |estimate, e: &dyn std::fmt::Display| {
        (
            ResourceRemaining {
                estimate,
                ..Default::default()
            },
            e.to_string(),
        )
    };
    // Pods stop gracefully: estimate how long from their grace periods.
    let estimate = if resource.api.group.is_empty() && resource.api.plural == "pods" {
        estimate_graceful_termination_for_pods(client, namespace)
            .await
            .map_err(|e| fail(0, &e))?
    } else {
        0
    };
    // Background: the namespace controller empties the namespace itself, no orphan finalizers.
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete_collection(&params, &ListParams::default()).await {
        Ok(_) => {}
        Err(e) if not_supported(&e) => delete_each_item(&api, &params)
            .await
            .map_err(|e| fail(estimate, &e))?,
        Err(e) => return Err(fail(estimate, &e)),
    }

    // Verify what remains: not an error while finalizers or graceful deletion explain it.
    let items = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if not_supported(&e) => {
            return Ok(ResourceRemaining {
                estimate,
                ..Default::default()
            });
        }
        Err(e) => return Err(fail(estimate, &e)),
    };
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    for item in &items {
        for f in item.metadata.finalizers.iter().flatten() {
            *finalizers.entry(f.clone()).or_default() += 1;
        }
    }
    let remaining = items.len();
    if estimate != 0 {
        return Ok(ResourceRemaining {
            estimate,
            remaining,
            finalizers,
        });
    }
    if !finalizers.is_empty() {
        return Ok(ResourceRemaining {
            estimate: FINALIZER_ESTIMATE_SECONDS,
            remaining,
            finalizers,
        });
    }
    if remaining > 0 {
        return Err((
            ResourceRemaining {
                estimate,
                remaining,
                finalizers,
            },
            format!(
                "unexpected items still remain in namespace: {namespace} for gvr: {}",
                gvr(resource)
            ),
        ));
    }
    Ok(ResourceRemaining::default())
}

/// Where deletecollection is not served: list, then delete each item.
async fn delete_each_item(api: &Api<DynamicObject>, params: &DeleteParams) -> Result<(), kube::Error> {
    let items = match api.list_metadata(&ListParams::default()).await {
        Ok(list) => list.items,
        Err(e) if not_supported(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for item in items {
        let name = item.metadata.name.unwrap_or_default();
        match api.delete(&name, params).await {
            Ok(_) => {}
            Err(e) if not_supported(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The longest grace period of the namespace's pods that are not finished (upstream's
/// `estimateGracefulTerminationForPods`).
async fn estimate_graceful_termination_for_pods(
    client: &Client,
    namespace: &str,
) -> Result<i64, kube::Error> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let mut estimate = 0;
    for pod in pods.list(&ListParams::default()).await? {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            continue;
        }
        if let Some(grace) = pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds) {
            estimate = estimate.max(grace);
        }
    }
    Ok(estimate)
}
