//! Events that tell the story of what a controller did (`SuccessfulCreate`, `FailedCreate`, …), as
//! upstream's `record.EventRecorder` does: best effort and off the reconcile path.
//!
//! They are posted as events.k8s.io/v1 Events, an exact repeat folded into a series
//! ([`SeriesRecorder`]). Posting happens on a background task fed by a bounded queue: a reconcile never waits for
//! an event, and when the API server is slow the queue drops events instead of growing without end
//! (upstream's broadcaster drops them too). As upstream's `EventCorrelator` does, a [`SpamFilter`] lets
//! each object have a burst of 25 events from one component, then one per 5 minutes: a ReplicaSet
//! creating 10,000 pods tells its first 25 `SuccessfulCreate`s, not 10,000 (each would be a write).

use k8s_openapi::{
    api::{
        core::v1::ObjectReference,
        events::v1::{Event as K8sEvent, EventSeries},
    },
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{Patch, PatchParams, PostParams},
    runtime::events::{Event, EventType, Reporter},
};
use serde_json::json;
use std::{
    collections::HashMap,
    time::{Duration, Instant},
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
        let mut recorder = SeriesRecorder::new(
            client,
            Reporter {
                controller: controller.to_owned(),
                instance: None,
            },
        );
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            let mut spam = SpamFilter::default();
            while let Some((event, regarding)) = rx.recv().await {
                if !spam.allow(spam_key(&event, &regarding), Instant::now()) {
                    tracing::debug!(reason = %event.reason, "event dropped by the spam filter");
                    continue;
                }
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

/// How long a posted event is remembered for folding repeats into its series (kube-runtime's and
/// client-go's cache span).
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// Posts events.k8s.io/v1 Events, folding an exact repeat (same object, type, reason, action and
/// note) into the first one's `series` as client-go's `EventCorrelator` does. kube-runtime's
/// `Recorder` folds by reason alone, so "Scaled up replica set web-a to 3" after "… to 2" kept
/// the first note with a count: `kubectl describe` lost the story.
pub struct SeriesRecorder {
    client: Client,
    reporter: Reporter,
    posted: HashMap<String, (K8sEvent, Instant)>,
}

impl SeriesRecorder {
    /// A recorder posting as `reporter`.
    pub fn new(client: Client, reporter: Reporter) -> Self {
        Self {
            client,
            reporter,
            posted: HashMap::new(),
        }
    }

    /// Posts `event` about `regarding`, or counts it into the series of the same event posted before.
    pub async fn publish(&mut self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Instant::now();
        self.posted
            .retain(|_, (_, at)| now.duration_since(*at) < SERIES_TTL);
        let field = |f: &Option<String>| f.clone().unwrap_or_default();
        let key = [
            field(&regarding.uid),
            field(&regarding.namespace),
            field(&regarding.name),
            field(&regarding.field_path),
            format!("{:?}", event.type_),
            event.reason.clone(),
            event.action.clone(),
            field(&event.note),
        ]
        .join("\u{0}");
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let stamp = Timestamp::now();
        let posted = match self.posted.get(&key) {
            Some((previous, _)) => {
                let count = previous.series.as_ref().map_or(2, |s| s.count + 1);
                let mut next = previous.clone();
                next.series = Some(EventSeries {
                    count,
                    last_observed_time: MicroTime(stamp),
                });
                let patch = json!({ "series": next.series });
                api.patch(&next.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                next
            }
            None => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.reporter.controller),
                    stamp.as_nanosecond()
                );
                let fresh = K8sEvent {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(namespace),
                        ..ObjectMeta::default()
                    },
                    event_time: Some(MicroTime(stamp)),
                    type_: Some(format!("{:?}", event.type_)),
                    reason: Some(event.reason.clone()),
                    action: Some(event.action.clone()),
                    note: event.note.clone(),
                    regarding: Some(regarding.clone()),
                    related: event.secondary.clone(),
                    reporting_controller: Some(self.reporter.controller.clone()),
                    reporting_instance: Some(
                        self.reporter
                            .instance
                            .clone()
                            .unwrap_or_else(|| self.reporter.controller.clone()),
                    ),
                    ..K8sEvent::default()
                };
                api.create(&PostParams::default(), &fresh).await?
            }
        };
        self.posted.insert(key, (posted, now));
        Ok(())
    }
}

/// Events one object may get at once from one component (upstream's `defaultSpamBurst`).
const SPAM_BURST: f64 = 25.0;
/// Then one per this long (upstream's `defaultSpamQPS`, 1/300).
const SPAM_REFILL: Duration = Duration::from_secs(300);
/// Objects remembered before those with a full bucket are forgotten (upstream keeps an LRU of 4096).
const SPAM_KEYS: usize = 4096;

/// upstream's `getSpamKey`: the regarding object and the event type (the component is the sink's).
fn spam_key(event: &Event, regarding: &ObjectReference) -> String {
    let field = |f: &Option<String>| f.clone().unwrap_or_default();
    [
        field(&regarding.kind),
        field(&regarding.namespace),
        field(&regarding.name),
        field(&regarding.uid),
        field(&regarding.api_version),
        format!("{:?}", event.type_),
    ]
    .join("/")
}

/// upstream's `EventSourceObjectSpamFilter`: a token bucket per object.
#[derive(Debug, Default)]
pub struct SpamFilter {
    buckets: HashMap<String, (f64, Instant)>,
}

impl SpamFilter {
    /// Whether an event under `key` may be posted at `now` (and takes its token if so).
    pub fn allow(&mut self, key: String, now: Instant) -> bool {
        if self.buckets.len() >= SPAM_KEYS && !self.buckets.contains_key(&key) {
            // A full bucket behaves as a forgotten one.
            self.buckets
                .retain(|_, (tokens, at)| refill(*tokens, *at, now) < SPAM_BURST);
        }
        let (tokens, at) = self.buckets.entry(key).or_insert((SPAM_BURST, now));
        let available = refill(*tokens, *at, now);
        *at = now;
        if available >= 1.0 {
            *tokens = available - 1.0;
            true
        } else {
            *tokens = available;
            false
        }
    }
}

fn refill(tokens: f64, at: Instant, now: Instant) -> f64 {
    (tokens + now.saturating_duration_since(at).as_secs_f64() / SPAM_REFILL.as_secs_f64()).min(SPAM_BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_25_per_object_then_one_per_five_minutes() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        let allowed = (0..100).filter(|_| filter.allow("rs-a".into(), t0)).count();
        assert_eq!(allowed, 25);
        assert!(
            filter.allow("rs-b".into(), t0),
            "another object has its own bucket"
        );
        assert!(!filter.allow("rs-a".into(), t0 + Duration::from_secs(299)));
        assert!(filter.allow("rs-a".into(), t0 + Duration::from_secs(301)));
        assert!(!filter.allow("rs-a".into(), t0 + Duration::from_secs(302)));
    }

    #[test]
    fn many_objects_do_not_grow_the_filter_without_end() {
        let mut filter = SpamFilter::default();
        let t0 = Instant::now();
        for i in 0..3 * SPAM_KEYS {
            assert!(filter.allow(
                format!("pod-{i}"),
                t0 + Duration::from_secs(3 * 3600) * (i / SPAM_KEYS) as u32
            ));
        }
        assert!(filter.buckets.len() <= SPAM_KEYS);
    }
}
