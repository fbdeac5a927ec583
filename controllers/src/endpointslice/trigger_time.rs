//! When the change that an endpoints write reflects happened, for the
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation: upstream's `TriggerTimeTracker`
//! (pkg/controller/util/endpoint/trigger_time_tracker.go), shared by the Endpoints and EndpointSlice
//! controllers.
//!
//! A pod's trigger time is its Ready condition's last transition (there is no "last updated" time
//! on a pod), a Service's is its creation. A sync reports the earliest trigger time that changed
//! since the previous sync of that Service, the Service's creation on its first sync, and nothing
//! when nothing changed (the annotation is then removed).

use std::{collections::HashMap, sync::Mutex};

use k8s_openapi::{
    api::core::v1::{Pod, Service},
    jiff::Timestamp,
};

use crate::pod_util;

#[derive(Debug, Default, Clone)]
struct State {
    pods: HashMap<String, Timestamp>,
    service: Option<Timestamp>,
}

/// Trigger times seen at the previous sync of each Service.
#[derive(Debug, Default)]
pub struct TriggerTimeTracker {
    states: Mutex<HashMap<String, State>>,
}

fn earliest(a: Option<Timestamp>, b: Timestamp) -> Option<Timestamp> {
    Some(a.map_or(b, |a| a.min(b)))
}

impl TriggerTimeTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ComputeEndpointLastChangeTriggerTime` for the Service `key` synced with `pods` (those its
    /// selector matches).
    pub fn compute<'a>(
        &self,
        key: &str,
        svc: &Service,
        pods: impl IntoIterator<Item = &'a Pod>,
    ) -> Option<Timestamp> {
        let mut states = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let known = states.get(key).cloned();
        let old = known.clone().unwrap_or_default();
        let mut changed = None;
        let mut now = State::default();
        for pod in pods {
            let Some(t) = pod_util::ready_condition(pod)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0)
            else {
                continue;
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if old.pods.get(&name).is_none_or(|prev| t > *prev) {
                changed = earliest(changed, t);
            }
            now.pods.insert(name, t);
        }
        let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
        if let Some(created) = created
            && old.service.is_none_or(|prev| created > prev)
        {
            changed = earliest(changed, created);
        }
        now.service = created;
        states.insert(key.to_owned(), now);
        if known.is_none() {
            // A Service seen for the first time: its creation is the trigger.
            return created;
        }
        changed
    }

    /// Forgets a deleted Service.
    pub fn forget(&self, key: &str) {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{PodCondition, PodStatus},
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
        jiff::SignedDuration,
    };

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn pod(name: &str, ready_at: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(ready_at))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn first_sync_reports_creation_then_only_changes() {
        let svc = Service {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            ..Default::default()
        };
        let t = TriggerTimeTracker::new();
        let (a, b) = (pod("a", 5), pod("b", 7));
        assert_eq!(t.compute("ns/s", &svc, [&a, &b]), Some(at(0)));
        assert_eq!(t.compute("ns/s", &svc, [&a, &b]), None);
        let (a2, c) = (pod("a", 20), pod("c", 15));
        assert_eq!(t.compute("ns/s", &svc, [&a2, &b, &c]), Some(at(15)));
        assert_eq!(at(15) - SignedDuration::from_secs(15), at(0));
        t.forget("ns/s");
        assert_eq!(t.compute("ns/s", &svc, [&a2]), Some(at(0)));
    }
}
