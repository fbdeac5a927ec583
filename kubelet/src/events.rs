//! The kubelet's events about pods (`FailedMount`, `Failed`, `Unhealthy`, `Killing`…), which
//! `kubectl describe pod` shows, as upstream's kubelet records them with its EventRecorder.
//!
//! Best effort and off the sync path: events go through a bounded queue to a task that posts them
//! with the controllers' [`SeriesRecorder`] (events.k8s.io, which the API also serves as core
//! Events; an exact repeat counts into a series, a different note or container is its own event). A
//! pod syncing every few seconds with the same failure says so once a minute, not on every sync
//! (upstream's event correlator folds such repeats into a count).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Reporter},
};
use serde_json::Value;
use skiff_controllers::events::SeriesRecorder;
use tokio::sync::mpsc;

/// Events waiting to be posted before new ones are dropped.
const QUEUE: usize = 1024;
/// The same event about the same pod is posted at most this often.
const REPEAT_AFTER: Duration = Duration::from_secs(60);
/// Distinct recent events remembered (older ones are forgotten first).
const REMEMBERED: usize = 4096;

/// Where a node's pod events go; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PodEvents {
    tx: Option<mpsc::Sender<(Event, ObjectReference)>>,
}

impl PodEvents {
    /// Posts events as the kubelet of `node` (on the current tokio runtime, until the last handle
    /// is dropped).
    pub fn new(client: Client, node: &str) -> Self {
        let mut recorder = SeriesRecorder::new(
            client,
            Reporter {
                controller: "kubelet".into(),
                instance: Some(node.to_owned()),
            },
        );
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            let mut recent: HashMap<String, Instant> = HashMap::new();
            while let Some((event, regarding)) = rx.recv().await {
                let key = format!(
                    "{}/{}/{}/{}",
                    regarding.uid.as_deref().unwrap_or_default(),
                    regarding.field_path.as_deref().unwrap_or_default(),
                    event.reason,
                    event.note.as_deref().unwrap_or_default()
                );
                let now = Instant::now();
                if recent
                    .get(&key)
                    .is_some_and(|at| now.duration_since(*at) < REPEAT_AFTER)
                {
                    continue;
                }
                if recent.len() >= REMEMBERED {
                    recent.retain(|_, at| now.duration_since(*at) < REPEAT_AFTER);
                }
                recent.insert(key, now);
                if let Err(e) = recorder.publish(&event, &regarding).await {
                    tracing::debug!(reason = %event.reason, error = %e, "event not posted");
                }
            }
        });
        Self { tx: Some(tx) }
    }

    /// Events that go nowhere (hollow nodes, tests).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// A `Warning` about `pod` (JSON), or one of its containers.
    pub fn warning(&self, pod: &Value, container: Option<&str>, reason: &str, action: &str, note: String) {
        self.post(EventType::Warning, pod, container, reason, action, note);
    }

    /// A `Normal` event about `pod`, or one of its containers.
    pub fn normal(&self, pod: &Value, container: Option<&str>, reason: &str, action: &str, note: String) {
        self.post(EventType::Normal, pod, container, reason, action, note);
    }

    fn post(
        &self,
        type_: EventType,
        pod: &Value,
        container: Option<&str>,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Some(tx) = &self.tx else {
            return;
        };
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: action.to_owned(),
            secondary: None,
        };
        if tx.try_send((event, pod_reference(pod, container))).is_err() {
            tracing::debug!(reason, "event queue full, event dropped");
        }
    }
}

/// The reference to `pod` (or its container `container`, by upstream's field path) an event is about.
pub fn pod_reference(pod: &Value, container: Option<&str>) -> ObjectReference {
    let meta = &pod["metadata"];
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let field_path = container.map(|name| {
        let init = pod["spec"]["initContainers"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["name"] == name));
        match init {
            true => format!("spec.initContainers{{{name}}}"),
            false => format!("spec.containers{{{name}}}"),
        }
    });
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: text(&meta["name"]),
        namespace: text(&meta["namespace"]),
        uid: text(&meta["uid"]),
        resource_version: text(&meta["resourceVersion"]),
        field_path,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn references_name_the_container_by_field_path() {
        let pod = json!({ "metadata": { "name": "p", "namespace": "ns", "uid": "u" },
                          "spec": { "initContainers": [{ "name": "i" }], "containers": [{ "name": "c" }] } });
        let r = pod_reference(&pod, Some("c"));
        assert_eq!(r.field_path.as_deref(), Some("spec.containers{c}"));
        assert_eq!(
            pod_reference(&pod, Some("i")).field_path.as_deref(),
            Some("spec.initContainers{i}")
        );
        assert_eq!((r.kind.as_deref(), r.uid.as_deref()), (Some("Pod"), Some("u")));
        assert!(pod_reference(&pod, None).field_path.is_none());
        PodEvents::disabled().warning(&pod, None, "FailedMount", "Mount", "nothing happens".into());
    }
}
