//! Small questions asked about a Pod by every workload controller, as upstream answers them:
//! `IsPodActive` (pkg/controller/controller_utils.go), `IsPodReady` / `IsPodAvailable`
//! (pkg/api/v1/pod/util.go) and `metav1.GetControllerOf`; and which controllers a pod event
//! concerns ([`controllers_for_pod`], their `addPod`/`updatePod`/`deletePod` handlers).

use k8s_openapi::{
    api::core::v1::{Pod, PodCondition},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::{SignedDuration, Timestamp},
};

/// Upstream's `IsPodActive`: not Succeeded, not Failed and not being deleted. Only active pods count
/// towards a controller's replicas.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// Whether the pod is being deleted (`deletionTimestamp` is set).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's `Ready` condition, if it has one.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// Upstream's `IsPodReady`: the `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// When the pod last became ready (the `Ready` condition's `lastTransitionTime`), if it is ready.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Upstream's `IsPodAvailable`: ready, and ready for at least `min_ready_seconds` (a ready pod
/// without a transition time is available only when `min_ready_seconds` is 0).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    ready_since(pod).is_some_and(|since| since + SignedDuration::from_secs(min_ready_seconds.into()) < now)
}

/// When a ready pod that is not yet available will become available, for a requeue at that time.
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    if min_ready_seconds <= 0 {
        return None;
    }
    ready_since(pod).map(|since| since + SignedDuration::from_secs(min_ready_seconds.into()))
}

/// `metav1.GetControllerOf`: the owner reference with `controller: true`, if any.
pub fn controller_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `pod` lives on a node (`spec.nodeName` set).
pub fn is_assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

/// The pod's node name, empty when unassigned.
pub fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Which objects of `kind` (in API group `group`) a pod event concerns, as upstream's workload
/// controllers resolve it: the pod's controller if it is one of them; for an orphan, every one of its
/// namespace whose selector (`selector`: None when unusable) selects something and matches the pod,
/// as one of them may adopt it.
pub fn controllers_for_pod<K>(
    store: &kube::runtime::reflector::Store<K>,
    pod: &Pod,
    kind: &str,
    group: &str,
    selector: impl Fn(&K) -> Option<kube::core::Selector>,
) -> Vec<kube::runtime::reflector::ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    use kube::{core::SelectorExt, runtime::reflector::ObjectRef};
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    if let Some(owner) = controller_of(&pod.metadata) {
        let ours = owner.kind == kind && owner.api_version.starts_with(&format!("{group}/"));
        return if ours {
            vec![ObjectRef::new(&owner.name).within(&namespace)]
        } else {
            vec![]
        };
    }
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    store
        .state_filter(|o| {
            o.meta().namespace.as_deref() == Some(namespace.as_str())
                && selector(o).is_some_and(|s| !s.selects_all() && s.matches(&labels))
        })
        .iter()
        .map(|o| ObjectRef::from_obj(o.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::PodStatus,
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    };

    use super::*;

    fn pod(phase: &str, ready: Option<(&str, Timestamp)>) -> Pod {
        Pod {
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|(status, at)| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: status.into(),
                        last_transition_time: Some(Time(at)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn active_excludes_finished_and_terminating_pods() {
        assert!(is_active(&pod("Pending", None)));
        assert!(is_active(&pod("Running", None)));
        assert!(!is_active(&pod("Succeeded", None)));
        assert!(!is_active(&pod("Failed", None)));
        let mut deleting = pod("Running", None);
        deleting.metadata = ObjectMeta {
            deletion_timestamp: Some(Time(Timestamp::now())),
            ..Default::default()
        };
        assert!(!is_active(&deleting));
    }

    #[test]
    fn available_honours_min_ready_seconds() {
        let now = Timestamp::now();
        let ten_ago = now - SignedDuration::from_secs(10);
        assert!(!is_available(&pod("Running", Some(("False", ten_ago))), 0, now));
        assert!(is_available(&pod("Running", Some(("True", now))), 0, now));
        assert!(is_available(&pod("Running", Some(("True", ten_ago))), 5, now));
        assert!(!is_available(&pod("Running", Some(("True", ten_ago))), 30, now));
        assert_eq!(
            available_at(&pod("Running", Some(("True", ten_ago))), 30),
            Some(ten_ago + SignedDuration::from_secs(30))
        );
    }
}
