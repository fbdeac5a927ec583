//! Writing pods on behalf of a controller: upstream's `RealPodControl` (pkg/controller/
//! controller_utils.go: `GetPodFromTemplate`, `CreatePods`, `DeletePod`) and the adopt and release
//! patches of `PodControllerRefManager` (pkg/controller/controller_ref_manager.go).
//!
//! Each write records the event upstream records on the controller object (`SuccessfulCreate`,
//! `FailedCreate`, `SuccessfulDelete`, `FailedDelete`). Only the API call lives here; deciding what
//! to write is the controllers' pure planning.

use k8s_openapi::{
    api::core::v1::{ObjectReference, Pod, PodTemplateSpec},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::json;

use crate::{Error, events::EventSink};

/// Upstream's event reasons for pod writes.
pub mod reasons {
    /// A pod was created.
    pub const SUCCESSFUL_CREATE: &str = "SuccessfulCreate";
    /// A pod could not be created (also the reason of the `ReplicaFailure` condition).
    pub const FAILED_CREATE: &str = "FailedCreate";
    /// A pod was deleted.
    pub const SUCCESSFUL_DELETE: &str = "SuccessfulDelete";
    /// A pod could not be deleted.
    pub const FAILED_DELETE: &str = "FailedDelete";
}

/// The pod a controller creates from its template (upstream's `GetPodFromTemplate`): the template's
/// labels, annotations, finalizers and spec, a name generated from `prefix`, and `controller_ref`.
pub fn pod_from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    prefix: &str,
    controller_ref: OwnerReference,
) -> Result<Pod, Error> {
    let meta = template.metadata.clone().unwrap_or_default();
    // A pod without labels could never be matched back to its controller.
    if meta.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Err(Error::NoLabels);
    }
    Ok(Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    })
}

/// The `generateName` prefix of a controller's pods: `<name>-` (upstream's `getPodsPrefix`; the API
/// server shortens an over-long prefix itself).
pub fn pods_prefix(controller_name: &str) -> String {
    format!("{controller_name}-")
}

/// The human-readable part of an API error, for event notes and condition messages.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// Whether a failed write means the pod is already gone (or was replaced by another of that name).
pub fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found() || s.is_conflict())
}

/// Writes pods for one controller object, recording events about it.
#[derive(Clone)]
pub struct PodControl {
    client: Client,
    events: EventSink,
}

impl PodControl {
    /// Pod writes through `client`, with events posted to `events`.
    pub fn new(client: Client, events: EventSink) -> Self {
        Self { client, events }
    }

    fn pods(&self, namespace: &str) -> Api<Pod> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates one pod from `template` for the controller `owner` (upstream's `CreatePods`).
    pub async fn create_pod(
        &self,
        namespace: &str,
        template: &PodTemplateSpec,
        prefix: &str,
        owner: &ObjectReference,
        controller_ref: OwnerReference,
    ) -> Result<Pod, Error> {
        let pod = pod_from_template(template, namespace, prefix, controller_ref)?;
        match self.pods(namespace).create(&PostParams::default(), &pod).await {
            Ok(created) => {
                let name = created.metadata.name.clone().unwrap_or_default();
                tracing::debug!(pod = %name, controller = ?owner.name, "created pod");
                self.events.normal(
                    owner,
                    reasons::SUCCESSFUL_CREATE,
                    "Create",
                    format!("Created pod: {name}"),
                );
                Ok(created)
            }
            Err(e) => {
                // A terminating namespace refuses every create; upstream records no event for it.
                if !is_namespace_terminating(&e) {
                    let note = format!("Error creating: {}", error_message(&e));
                    self.events.warning(owner, reasons::FAILED_CREATE, "Create", note);
                }
                Err(e.into())
            }
        }
    }

    /// Deletes `pod` (only that very pod: the UID is a precondition) for the controller `owner`.
    pub async fn delete_pod(&self, pod: &Pod, owner: &ObjectReference) -> Result<(), kube::Error> {
        let (namespace, name) = (
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod_name(pod),
        );
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.pods(namespace).delete(name, &params).await {
            Ok(_) => {
                self.events.normal(
                    owner,
                    reasons::SUCCESSFUL_DELETE,
                    "Delete",
                    format!("Deleted pod: {name}"),
                );
                Ok(())
            }
            Err(e) => {
                if !is_gone(&e) {
                    let note = format!("Error deleting: {}", error_message(&e));
                    self.events.warning(owner, reasons::FAILED_DELETE, "Delete", note);
                }
                Err(e)
            }
        }
    }

    /// Makes `controller_ref` the controller of the orphan `pod` (upstream's `AdoptPod`: a strategic
    /// merge patch of the owner reference, keyed by UID, that names the pod's UID too).
    pub async fn adopt_pod(&self, pod: &Pod, controller_ref: &OwnerReference) -> Result<(), kube::Error> {
        let patch = json!({ "metadata": { "ownerReferences": [controller_ref], "uid": pod.metadata.uid } });
        self.patch(pod, patch).await
    }

    /// Removes the owner reference with `owner_uid` from `pod` (upstream's `ReleasePod`).
    pub async fn release_pod(&self, pod: &Pod, owner_uid: &str) -> Result<(), kube::Error> {
        let patch = json!({ "metadata": {
            "ownerReferences": [{ "$patch": "delete", "uid": owner_uid }],
            "uid": pod.metadata.uid,
        } });
        self.patch(pod, patch).await
    }

    /// `ClaimPods` (upstream's `PodControllerRefManager`): of `candidates` (one namespace's pods),
    /// those the owner with `controller_ref` controls and `matches` still accepts, and orphans it
    /// accepts, adopted; pods it controls that `matches` no longer accepts are released.
    pub async fn claim_pods(
        &self,
        candidates: Vec<std::sync::Arc<Pod>>,
        controller_ref: &OwnerReference,
        matches: impl Fn(&Pod) -> bool,
    ) -> Result<Vec<std::sync::Arc<Pod>>, kube::Error> {
        let uid = controller_ref.uid.as_str();
        let mut claimed = Vec::new();
        for pod in candidates {
            let wanted = matches(&pod);
            match crate::pod_util::controller_of(&pod.metadata) {
                Some(c) if c.uid == uid => {
                    if wanted {
                        claimed.push(pod);
                    } else {
                        match self.release_pod(&pod, uid).await {
                            // Gone, or no longer ours (422): either way not ours to count.
                            Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 422 => {}
                            other => other?,
                        }
                    }
                }
                None if wanted && !crate::pod_util::is_terminating(&pod) => {
                    match self.adopt_pod(&pod, controller_ref).await {
                        Ok(()) => claimed.push(pod),
                        Err(e) if is_gone(&e) => {}
                        Err(e) => return Err(e),
                    }
                }
                _ => {}
            }
        }
        Ok(claimed)
    }

    async fn patch(&self, pod: &Pod, patch: serde_json::Value) -> Result<(), kube::Error> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
        self.pods(namespace)
            .patch(pod_name(pod), &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .map(drop)
    }
}

fn pod_name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// Whether a create failed because the namespace is being deleted (upstream checks the
/// `NamespaceTerminating` status cause).
pub fn is_namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(status) = e else {
        return false;
    };
    status
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;

    fn template(labels: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                annotations: Some(BTreeMap::from([("a".to_owned(), "b".to_owned())])),
                name: Some("ignored".into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn pod_from_template_carries_labels_spec_and_controller_ref() {
        let owner = OwnerReference {
            uid: "rs-uid".into(),
            controller: Some(true),
            ..Default::default()
        };
        let pod = pod_from_template(
            &template(&[("app", "x")]),
            "ns",
            &pods_prefix("web"),
            owner.clone(),
        )
        .expect("pod");
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(pod.metadata.name, None);
        assert_eq!(pod.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("x")
        );
        assert_eq!(
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|l| l.get("a"))
                .map(String::as_str),
            Some("b")
        );
        assert_eq!(pod.metadata.owner_references, Some(vec![owner]));
        assert_eq!(pod.spec.as_ref().map(|s| s.containers.len()), Some(1));
    }

    #[test]
    fn a_template_without_labels_is_refused() {
        let owner = OwnerReference::default();
        assert!(matches!(
            pod_from_template(&template(&[]), "ns", "web-", owner),
            Err(Error::NoLabels)
        ));
    }
}
