//! The scheduling loop (upstream's pkg/scheduler/schedule_one.go): take the next pending pod, run the
//! profile's filters and scores over the cache, assume the pod on the best node, and bind it through
//! `pods/binding` off the loop (so the next pod is scheduled while the binding travels). A pod that
//! fits nowhere gets a FailedScheduling event and the `PodScheduled=False` condition with upstream's
//! summary, and waits for a change; a binding that fails is forgotten and retried after a pause.
//!
//! Two watches feed it: Nodes (into the cache) and Pods (bound ones into the cache, pending ones into
//! the queue).

use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use skiff_controllers::events::EventSink;
use tokio::sync::{Notify, Semaphore};

use crate::{
    cache::Cache,
    framework::{PodInfo, Profile, fit_error},
    plugins::default_profile,
    queue::Queue,
};

/// The scheduler's name: pods with this `spec.schedulerName` (or none) are ours.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings in flight at once.
const BINDINGS_IN_FLIGHT: usize = 64;
/// How long a binding that failed waits before the pod is tried again.
const BIND_BACKOFF: Duration = Duration::from_secs(1);
/// How often the queue's backoff and unschedulable flushes run (upstream: every 1 s and every 30 s).
const FLUSH_PERIOD: Duration = Duration::from_secs(1);

struct State {
    cache: Cache,
    queue: Queue,
    /// Where the next cycle starts filtering (round robin over nodes, as upstream).
    next_start: usize,
}

struct Scheduler {
    client: Client,
    state: Mutex<State>,
    wake: Notify,
    events: EventSink,
    profile: Profile,
    bindings: Arc<Semaphore>,
}

/// Runs the scheduler until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    let scheduler = Arc::new(Scheduler {
        events: EventSink::new(client.clone(), SCHEDULER_NAME),
        client,
        state: Mutex::new(State {
            cache: Cache::default(),
            queue: Queue::default(),
            next_start: 0,
        }),
        wake: Notify::new(),
        profile: default_profile(),
        bindings: Arc::new(Semaphore::new(BINDINGS_IN_FLIGHT)),
    });
    let tasks = [
        tokio::spawn(scheduler.clone().follow_nodes()),
        tokio::spawn(scheduler.clone().follow_pods()),
        tokio::spawn(scheduler.clone().flush_unschedulable()),
        tokio::spawn(scheduler.clone().schedule_loop()),
    ];
    shutdown.await;
    for task in tasks {
        task.abort();
    }
}

impl Scheduler {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn follow_nodes(self: Arc<Self>) {
        let mut events = watcher(Api::<Node>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let mut state = self.lock();
            match event {
                Ok(watcher::Event::Apply(node) | watcher::Event::InitApply(node)) => {
                    state.cache.upsert_node(&node)
                }
                Ok(watcher::Event::Delete(node)) => state
                    .cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or("")),
                _ => continue,
            }
            // A node that appeared or changed may take pods that fit nowhere before.
            state.queue.move_all_to_active();
            drop(state);
            self.wake.notify_one();
        }
    }

    async fn follow_pods(self: Arc<Self>) {
        let mut events = watcher(Api::<Pod>::all(self.client.clone()), watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let (pod, deleted) = match event {
                Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => (pod, false),
                Ok(watcher::Event::Delete(pod)) => (pod, true),
                _ => continue,
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let spec = pod.spec.clone().unwrap_or_default();
            let node = spec.node_name.clone().filter(|n| !n.is_empty());
            let finished = matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            let mut state = self.lock();
            if deleted || finished {
                state.queue.remove(&uid);
                state.cache.remove_pod(&uid);
                // Freed resources may let parked pods fit.
                state.queue.move_all_to_active();
            } else if let Some(node) = node {
                state.queue.remove(&uid);
                state.cache.add_pod(&node, PodInfo::new(&pod), false);
            } else if pod.metadata.deletion_timestamp.is_none()
                && spec.scheduler_name.as_deref().is_none_or(|s| s == SCHEDULER_NAME)
                && !state.cache.has_pod(&uid)
            {
                state.queue.add(uid, pod);
            }
            drop(state);
            self.wake.notify_one();
        }
    }

    async fn flush_unschedulable(self: Arc<Self>) {
        let mut tick = tokio::time::interval(FLUSH_PERIOD);
        loop {
            tick.tick().await;
            if self.lock().queue.flush(tokio::time::Instant::now()) {
                self.wake.notify_one();
            }
        }
    }

    async fn schedule_loop(self: Arc<Self>) {
        loop {
            let next = self.lock().queue.pop();
            match next {
                Some((uid, pod)) => self.schedule_one(uid, pod).await,
                None => self.wake.notified().await,
            }
        }
    }

    /// One scheduling cycle (under the cache lock: it is short and never waits) and, off the loop,
    /// the binding.
    async fn schedule_one(self: &Arc<Self>, uid: String, pod: Pod) {
        let info = PodInfo::new(&pod);
        let decision = {
            let mut state = self.lock();
            let nodes: Vec<_> = state.cache.nodes.values().collect();
            let total = nodes.len();
            let start = if total == 0 { 0 } else { state.next_start % total };
            let filtered = self.profile.filter(&info, &nodes, start);
            let chosen = if filtered.feasible.is_empty() {
                None
            } else {
                let scores = self.profile.score(&info, &nodes, &filtered);
                // The first of the best (in round-robin order) wins.
                let best = scores
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, s)| (**s, std::cmp::Reverse(*i)))
                    .map(|(i, _)| i)
                    .unwrap_or(0);
                Some(nodes[filtered.feasible[best]].name.clone())
            };
            state.next_start = if total == 0 {
                0
            } else {
                (start + filtered.examined) % total
            };
            match chosen {
                Some(node) => {
                    state.cache.add_pod(&node, info.clone(), true);
                    state.queue.remove(&uid);
                    Ok(node)
                }
                None => {
                    state.queue.park(&uid);
                    Err(fit_error(total, &filtered.reasons, filtered.resolvable))
                }
            }
        };
        match decision {
            Ok(node) => {
                let permit = self.bindings.clone().acquire_owned().await;
                let this = self.clone();
                tokio::spawn(async move {
                    this.bind(&pod, &node).await;
                    drop(permit);
                });
            }
            Err(message) => self.unschedulable(&pod, message).await,
        }
    }

    async fn bind(self: &Arc<Self>, pod: &Pod, node: &str) {
        let (ns, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let binding = json!({ "apiVersion": "v1", "kind": "Binding",
            "metadata": { "name": name, "namespace": ns, "uid": uid },
            "target": { "apiVersion": "v1", "kind": "Node", "name": node } });
        let req = http_post(&format!("/api/v1/namespaces/{ns}/pods/{name}/binding"), &binding);
        match self.client.request_text(req).await {
            Ok(_) => self.events.normal(
                &reference(pod),
                "Scheduled",
                "Binding",
                format!("Successfully assigned {ns}/{name} to {node}"),
            ),
            Err(e) => {
                tracing::debug!(pod = %format!("{ns}/{name}"), error = %e, "binding failed");
                self.lock().cache.remove_pod(&uid);
                // Gone, or bound by someone else: nothing to retry. Otherwise try again shortly.
                let gone = matches!(&e, kube::Error::Api(s) if s.code == 404 || s.code == 409);
                if !gone {
                    self.events.warning(
                        &reference(pod),
                        "FailedScheduling",
                        "Scheduling",
                        format!("Binding rejected: {e}"),
                    );
                    let this = self.clone();
                    let pod = pod.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(BIND_BACKOFF).await;
                        this.lock().queue.add(uid, pod);
                        this.wake.notify_one();
                    });
                }
            }
        }
    }

    /// FailedScheduling: the event, and the PodScheduled=False condition (written only when its
    /// message changes, so retries do not rewrite the pod).
    async fn unschedulable(&self, pod: &Pod, message: String) {
        self.events
            .warning(&reference(pod), "FailedScheduling", "Scheduling", message.clone());
        let conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default();
        if conditions.iter().any(|c| {
            c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(&message)
        }) {
            return;
        }
        let mut conditions: Vec<serde_json::Value> = conditions
            .iter()
            .filter(|c| c.type_ != "PodScheduled")
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        conditions.push(
            json!({ "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                                "lastProbeTime": null, "lastTransitionTime": now() }),
        );
        let pods: Api<Pod> = Api::namespaced(
            self.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
        );
        let patch = Patch::Merge(json!({ "status": { "conditions": conditions } }));
        if let Err(e) = pods
            .patch_status(
                pod.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &patch,
            )
            .await
        {
            tracing::debug!(error = %e, "cannot record PodScheduled=False");
        }
    }
}

fn reference(pod: &Pod) -> ObjectReference {
    pod.object_ref(&())
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn http_post(path: &str, body: &serde_json::Value) -> http::Request<Vec<u8>> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap_or_default())
        .expect("a valid request")
}
