//! Events that tell the story of what a controller did (`SuccessfulCreate`, `FailedCreate`, …), as
//! upstream's `record.EventRecorder` does: best effort and off the reconcile path.
//!
//! kube-runtime's `events::Recorder` posts them as events.k8s.io/v1 Events (and folds repeats into a
//! series). Posting happens on a background task fed by a bounded queue: a reconcile never waits for
//! an event, and when the API server is slow the queue drops events instead of growing without end
//! (upstream's broadcaster drops them too, and rate-limits per object).

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Client,
    runtime::events::{Event, EventType, Recorder, Reporter},
};
use tokio::sync::mpsc;

/// How many events may wait to be posted before new ones are dropped.
const QUEUE: usize = 1024;

/// A handle to post events from; cheap to clone.
#[derive(Clone, Debug)]
pub struct EventSink {
    tx: Option<mpsc::Sender<(Event, ObjectReference)>>,
}

impl EventSink {
    /// Starts the posting task (on the current tokio runtime) for events reported by `controller`
    /// (e.g. `replicaset-controller`, upstream's component name). The task ends when the last
    /// handle is dropped.
    pub fn new(client: Client, controller: &str) -> Self {
        let recorder = Recorder::new(
            client,
            Reporter {
                controller: controller.to_owned(),
                instance: None,
            },
        );
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            while let Some((event, regarding)) = rx.recv().await {
                if let Err(e) = recorder.publish(&event, &regarding).await {
                    tracing::debug!(reason = %event.reason, error = %e, "event not posted");
                }
            }
        });
        Self { tx: Some(tx) }
    }

    /// A sink that drops every event (unit tests, or a controller run without events).
    pub fn disabled() -> Self {
        Self { tx: None }
    }

    /// Records a `Normal` event about `regarding`.
    pub fn normal(&self, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
        self.post(EventType::Normal, regarding, reason, action, note);
    }

    /// Records a `Warning` event about `regarding`.
    pub fn warning(&self, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
        self.post(EventType::Warning, regarding, reason, action, note);
    }

    fn post(&self, type_: EventType, regarding: &ObjectReference, reason: &str, action: &str, note: String) {
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
        if tx.try_send((event, regarding.clone())).is_err() {
            tracing::debug!(reason, "event queue full, event dropped");
        }
    }
}
