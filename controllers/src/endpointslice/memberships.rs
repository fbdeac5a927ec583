//! Which Services a pod event concerns, for the EndpointSlice and Endpoints controllers: upstream's
//! `GetPodServiceMemberships` (pkg/controller/util/endpoint/controller_utils.go) over the Services
//! of the pod's namespace, united, as upstream's `getServicesToUpdateOnPodChange` does with the old
//! and new pod, with the Services the pod matched when it was last seen: a pod relabelled away from
//! a Service must still wake it, to leave its endpoints.
//!
//! kube-runtime hands a trigger mapper only the new object, so the old memberships are remembered
//! here, per pod, and forgotten when the pod is gone from the cache.

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::reflector::{ObjectRef, Store};

use super::utils;

/// A pod's namespace and name.
type PodKey = (String, String);

/// The Services each pod matched when last seen.
#[derive(Debug, Default)]
pub struct Memberships {
    last: Mutex<HashMap<PodKey, Vec<ObjectRef<Service>>>>,
}

impl Memberships {
    /// Nothing remembered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Services to sync for an event about `pod`: those selecting it now and those it matched
    /// before. `pods` is the pod cache, already updated with the event.
    pub fn services_for_pod(
        &self,
        services: &Store<Service>,
        pods: &Store<Pod>,
        pod: &Pod,
    ) -> Vec<ObjectRef<Service>> {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let labels = pod.metadata.labels.as_ref();
        let mut now: Vec<ObjectRef<Service>> = services
            .state_filter(|svc| {
                svc.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && utils::service_selector(svc).is_some_and(|s| utils::selects(s, labels))
            })
            .iter()
            .map(|svc| ObjectRef::from_obj(svc.as_ref()))
            .collect();
        let key = (namespace, pod.metadata.name.clone().unwrap_or_default());
        let gone = pods
            .get(&ObjectRef::from_obj(pod))
            .is_none_or(|cached| cached.metadata.uid != pod.metadata.uid);
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = if gone {
            last.remove(&key)
        } else {
            last.insert(key, now.clone())
        };
        for svc in before.into_iter().flatten() {
            if !now.contains(&svc) {
                now.push(svc);
            }
        }
        now
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{api::core::v1::ServiceSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn labels(app: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([("app".to_string(), app.to_string())]))
    }

    fn service(name: &str, app: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: labels(app),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(app: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-p".into()),
                labels: labels(app),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_relabelled_or_deleted_pod_still_wakes_the_services_it_matched() {
        let (services, mut service_writer) = reflector::store::<Service>();
        for svc in [service("a", "a"), service("b", "b")] {
            service_writer.apply_watcher_event(&watcher::Event::Apply(svc));
        }
        let (pods, mut pod_writer) = reflector::store::<Pod>();
        let m = Memberships::new();
        let names = |refs: Vec<ObjectRef<Service>>| refs.into_iter().map(|r| r.name).collect::<Vec<_>>();

        pod_writer.apply_watcher_event(&watcher::Event::Apply(pod("a")));
        assert_eq!(names(m.services_for_pod(&services, &pods, &pod("a"))), ["a"]);
        pod_writer.apply_watcher_event(&watcher::Event::Apply(pod("b")));
        assert_eq!(names(m.services_for_pod(&services, &pods, &pod("b"))), ["b", "a"]);
        assert_eq!(names(m.services_for_pod(&services, &pods, &pod("b"))), ["b"]);
        pod_writer.apply_watcher_event(&watcher::Event::Delete(pod("b")));
        assert_eq!(names(m.services_for_pod(&services, &pods, &pod("b"))), ["b"]);
        assert!(m.last.lock().unwrap().is_empty(), "a deleted pod is forgotten");
    }
}
