//! Container probes (exec, httpGet over HTTP or HTTPS, tcpSocket, gRPC: [`probes`], [`grpc`]), as
//! upstream's prober manager (pkg/kubelet/prober): one worker per (pod, container, probe kind)
//! probing every `periodSeconds` once `initialDelaySeconds` passed since the container started,
//! counting outcomes against the thresholds ([`results`]) and publishing the result for the
//! container instance it probed. A changed result makes the pod sync again (the
//! pod worker reads the results):
//!
//! - liveness (or startup) failure: the pod worker stops the container and the restart policy
//!   decides whether it starts again ([`ProbeManager::containers_to_kill`]);
//! - readiness: the container's `ready` and the pod's ContainersReady and Ready conditions
//!   ([`ProbeManager::apply_to_status`]), so endpoints follow;
//! - startup: `started`, and liveness and readiness wait until it succeeded.
//!
//! A container is an *instance* (its id and restart count): a restarted container starts from the
//! initial results again. Containers without a readiness probe are ready once running.

pub mod grpc;
pub mod probes;
pub mod results;
pub mod tls;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use self::{
    probes::{ProbeRun, Target},
    results::{Counter, Outcome, ProbeKind, ProbeSpec},
};
use crate::{
    events::PodEvents,
    runtime::{Container, ContainerRuntime, ContainerState},
};

/// A running container instance: its id and restart count (ids are reused across restarts here).
fn instance(c: &Container) -> String {
    format!("{}#{}", c.id, c.restart_count)
}

type Key = (String, String, ProbeKind);

/// A pod's running containers by name: instance and start time.
type RunningContainers = HashMap<String, (String, Option<chrono::DateTime<chrono::Utc>>)>;

#[derive(Default)]
struct State {
    workers: HashMap<Key, tokio::task::AbortHandle>,
    /// Results by probe, for the instance they were found for.
    results: HashMap<Key, (String, Outcome)>,
    /// Running containers by pod: instance and start time.
    running: HashMap<String, RunningContainers>,
}

/// The probe workers of one node and their results.
#[derive(Default)]
pub struct ProbeManager {
    state: Mutex<State>,
    /// Pods whose results changed (the kubelet resyncs them).
    updates: Mutex<Option<mpsc::UnboundedSender<String>>>,
}

impl ProbeManager {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The UIDs of pods whose probe results changed, from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        *self.updates.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Records what runs for `pod` and starts the probe workers its app containers lack.
    pub fn sync(
        self: &Arc<Self>,
        pod: &Value,
        containers: &[Container],
        pod_ip: &str,
        runtime: Arc<dyn ContainerRuntime>,
        events: &PodEvents,
    ) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let running: HashMap<_, _> = containers
            .iter()
            .filter_map(|c| match &c.state {
                ContainerState::Running { started_at } => {
                    let at = chrono::DateTime::parse_from_rfc3339(started_at)
                        .ok()
                        .map(|t| t.with_timezone(&chrono::Utc));
                    Some((c.name.clone(), (instance(c), at)))
                }
                _ => None,
            })
            .collect();
        let mut state = self.lock();
        state.running.insert(uid.clone(), running);
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let name = c["name"].as_str().unwrap_or_default();
            let has_startup = c["startupProbe"].is_object();
            for (kind, field) in ProbeKind::ALL {
                if !c[field].is_object() {
                    continue;
                }
                let key = (uid.clone(), name.to_owned(), kind);
                if state.workers.contains_key(&key) {
                    continue;
                }
                let worker = Worker {
                    manager: self.clone(),
                    key: key.clone(),
                    spec: ProbeSpec::parse(&c[field], c),
                    has_startup,
                    pod_ip: pod_ip.to_owned(),
                    runtime: runtime.clone(),
                    events: events.clone(),
                    pod: pod.clone(),
                };
                state
                    .workers
                    .insert(key, tokio::spawn(worker.run()).abort_handle());
            }
        }
    }

    /// Stops the workers of pod `uid` and forgets its results (it is gone or finished).
    pub fn remove_pod(&self, uid: &str) {
        let mut state = self.lock();
        state.workers.retain(|(u, _, _), w| {
            if u == uid {
                w.abort();
            }
            u != uid
        });
        state.results.retain(|(u, _, _), _| u != uid);
        state.running.remove(uid);
    }

    /// Stops every worker (the kubelet is stopping; a restarted one probes afresh).
    pub fn stop_all(&self) {
        let mut state = self.lock();
        for (_, w) in state.workers.drain() {
            w.abort();
        }
        state.results.clear();
        state.running.clear();
    }

    /// The result of a probe for the container instance `inst`, if one was found for it.
    fn result(&self, uid: &str, name: &str, kind: ProbeKind, inst: &str) -> Option<Outcome> {
        let state = self.lock();
        state
            .results
            .get(&(uid.to_owned(), name.to_owned(), kind))
            .filter(|(i, _)| i == inst)
            .map(|(_, o)| *o)
    }

    fn publish(&self, key: &Key, inst: &str, outcome: Outcome) {
        let previous = self
            .lock()
            .results
            .insert(key.clone(), (inst.to_owned(), outcome));
        if previous.as_ref() != Some(&(inst.to_owned(), outcome))
            && let Some(tx) = &*self.updates.lock().unwrap_or_else(|e| e.into_inner())
        {
            let _ = tx.send(key.0.clone());
        }
    }

    /// The running containers of pod `uid` whose liveness or startup probe failed: the kubelet
    /// stops them (and the restart policy decides what follows).
    pub fn containers_to_kill(&self, uid: &str, containers: &[Container]) -> Vec<String> {
        containers
            .iter()
            .filter(|c| matches!(c.state, ContainerState::Running { .. }))
            .filter(|c| {
                [ProbeKind::Liveness, ProbeKind::Startup]
                    .iter()
                    .any(|k| self.result(uid, &c.name, *k, &instance(c)) == Some(Outcome::Failure))
            })
            .map(|c| c.name.clone())
            .collect()
    }

    /// Whether container `c` of `pod` (its spec `spec`) started: running, and its startup probe (if
    /// any) succeeded.
    fn started(&self, uid: &str, spec: &Value, c: &Container) -> bool {
        matches!(c.state, ContainerState::Running { .. })
            && (!spec["startupProbe"].is_object()
                || self.result(uid, &c.name, ProbeKind::Startup, &instance(c)) == Some(Outcome::Success))
    }

    /// Sets `ready` and `started` of the app containers in `status` (computed by
    /// [`crate::status::pod_status`]) from the probe results, and the pod's ContainersReady and
    /// Ready conditions from them (upstream's `GenerateContainersReadyCondition`).
    pub fn apply_to_status(&self, pod: &Value, containers: &[Container], status: &mut Value, now: &str) {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
        let mut unready = Vec::new();
        let specs: Vec<&Value> = pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        for entry in status["containerStatuses"].as_array_mut().into_iter().flatten() {
            let name = entry["name"].as_str().unwrap_or_default().to_owned();
            let spec = specs
                .iter()
                .find(|c| c["name"] == name.as_str())
                .copied()
                .unwrap_or(&Value::Null);
            let (started, ready) = match containers.iter().find(|c| c.name == name) {
                Some(c) if entry["state"]["running"].is_object() => {
                    let started = self.started(uid, spec, c);
                    let ready = started
                        && (!spec["readinessProbe"].is_object()
                            || self.result(uid, &name, ProbeKind::Readiness, &instance(c))
                                == Some(Outcome::Success));
                    (started, ready)
                }
                _ => (false, false),
            };
            entry["started"] = json!(started);
            entry["ready"] = json!(ready);
            if !ready {
                unready.push(name);
            }
        }
        let containers_ready = unready.is_empty() && !specs.is_empty();
        let terminal = matches!(status["phase"].as_str(), Some("Succeeded" | "Failed"));
        let old = &pod["status"];
        let gates = readiness_gates(pod, status);
        for kind in ["ContainersReady", "Ready"] {
            let (ready, reason, message) = match (containers_ready, terminal) {
                (true, _) if kind == "Ready" && !gates.is_empty() => {
                    (false, Some("ReadinessGatesNotReady"), Some(gates.join(", ")))
                }
                (true, _) => (true, None, None),
                (false, true) => (false, Some("PodCompleted"), None),
                (false, false) => (
                    false,
                    Some("ContainersNotReady"),
                    Some(format!("containers with unready status: [{}]", unready.join(" "))),
                ),
            };
            let mut c = crate::status::condition(old, kind, ready, reason, now);
            if let Some(m) = message {
                c["message"] = json!(m);
            }
            for slot in status["conditions"].as_array_mut().into_iter().flatten() {
                if slot["type"] == kind {
                    *slot = c.clone();
                }
            }
        }
    }
}

/// What keeps the pod's `readinessGates` from letting it be Ready (upstream's messages), from the
/// conditions in `status`: empty when every gate's condition is True.
fn readiness_gates(pod: &Value, status: &Value) -> Vec<String> {
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    pod["spec"]["readinessGates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["conditionType"].as_str())
        .filter_map(|t| match conditions.iter().find(|c| c["type"] == t) {
            None => Some(format!(
                "corresponding condition of pod readiness gate \"{t}\" does not exist."
            )),
            Some(c) if c["status"] != "True" => Some(format!(
                "the status of pod readiness gate \"{t}\" is not \"True\", but {}",
                c["status"].as_str().unwrap_or_default()
            )),
            Some(_) => None,
        })
        .collect()
}

/// The seconds a container killed for a failed liveness (or startup) probe gets to stop: the
/// probe's own `terminationGracePeriodSeconds`, else the pod's, else 30.
pub fn kill_grace_seconds(pod: &Value, container: &str) -> i64 {
    let c = crate::envvars::find_container(pod, container).unwrap_or(&Value::Null);
    ["livenessProbe", "startupProbe"]
        .iter()
        .find_map(|f| c[f]["terminationGracePeriodSeconds"].as_i64())
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_i64())
        .unwrap_or(30)
}

/// One probe of one container.
struct Worker {
    manager: Arc<ProbeManager>,
    key: Key,
    spec: ProbeSpec,
    has_startup: bool,
    pod_ip: String,
    runtime: Arc<dyn ContainerRuntime>,
    events: PodEvents,
    /// The pod (what its events are about).
    pod: Value,
}

impl Worker {
    async fn run(self) {
        let (uid, name, kind) = self.key.clone();
        let mut counter = Counter::new(kind, &self.spec);
        let mut current: Option<String> = None;
        let mut tick = tokio::time::interval(self.spec.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let running = self
                .manager
                .lock()
                .running
                .get(&uid)
                .and_then(|r| r.get(&name).cloned());
            let Some((inst, started_at)) = running else {
                // Not running (exited, or not started yet): a readiness result of the gone instance
                // turns to failure.
                if let Some(inst) = current.take()
                    && kind == ProbeKind::Readiness
                {
                    self.manager.publish(&self.key, &inst, Outcome::Failure);
                }
                continue;
            };
            if current.as_deref() != Some(inst.as_str()) {
                // A new instance starts from the initial result.
                counter.reset();
                self.manager.publish(&self.key, &inst, counter.result);
                current = Some(inst.clone());
            }
            if counter.on_hold {
                continue;
            }
            let started =
                self.manager.result(&uid, &name, ProbeKind::Startup, &inst) == Some(Outcome::Success);
            match kind {
                ProbeKind::Startup if started => continue,
                ProbeKind::Liveness | ProbeKind::Readiness if self.has_startup && !started => continue,
                _ => {}
            }
            let since = started_at.map(|t| (chrono::Utc::now() - t).to_std().unwrap_or_default());
            if since.is_some_and(|s| s < self.spec.initial_delay) {
                continue;
            }
            let run = async {
                if let results::Action::Grpc { host, port, service } = &self.spec.action {
                    let host = host.as_deref().unwrap_or(&self.pod_ip);
                    let netns = self.runtime.node_netns();
                    return Ok(grpc::check(host, *port, service, self.spec.timeout, netns).await);
                }
                let (rt, action, timeout) =
                    (self.runtime.clone(), self.spec.action.clone(), self.spec.timeout);
                let (uid, name, ip) = (uid.clone(), name.clone(), self.pod_ip.clone());
                tokio::task::spawn_blocking(move || {
                    let target = Target {
                        runtime: rt.as_ref(),
                        pod_uid: &uid,
                        container: &name,
                        pod_ip: &ip,
                    };
                    probes::run(&action, &target, timeout)
                })
                .await
            };
            // The probe's own timeout bounds it; this one only guards against a stuck thread.
            let outcome = match tokio::time::timeout(self.spec.timeout + Duration::from_secs(10), run).await {
                Ok(Ok(ProbeRun::Success)) => Outcome::Success,
                Ok(Ok(ProbeRun::Failure(why))) => {
                    let note = format!("{} probe failed: {why}", kind.title());
                    self.events
                        .warning(&self.pod, Some(&name), "Unhealthy", "Probe", note);
                    Outcome::Failure
                }
                Ok(Ok(ProbeRun::Error(why))) => {
                    let note = format!("{} probe errored: {why}", kind.title());
                    self.events
                        .warning(&self.pod, Some(&name), "ProbeWarning", "Probe", note);
                    continue;
                }
                _ => continue,
            };
            if counter.observe(outcome) {
                if counter.result == Outcome::Failure && kind != ProbeKind::Readiness {
                    let note = format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.title().to_lowercase()
                    );
                    self.events
                        .normal(&self.pod, Some(&name), "Killing", "Kill", note);
                }
                self.manager.publish(&self.key, &inst, counter.result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(name: &str, restarts: i32) -> Container {
        Container {
            name: name.into(),
            id: format!("runc://u_{name}"),
            image: "busybox".into(),
            state: ContainerState::Running {
                started_at: "2026-01-01T00:00:00Z".into(),
            },
            restart_count: restarts,
            last_state: None,
        }
    }

    #[test]
    fn readiness_and_liveness_results_reach_status_and_kills() {
        let pod = json!({ "metadata": { "uid": "u" }, "spec": { "containers": [
            { "name": "web", "readinessProbe": { "exec": { "command": ["true"] } } },
            { "name": "side" }
        ] } });
        let m = ProbeManager::default();
        let web = running("web", 0);
        let containers = vec![web.clone(), running("side", 0)];
        let mut status = json!({ "phase": "Running", "conditions": [{ "type": "Ready" }, { "type": "ContainersReady" }],
            "containerStatuses": [{ "name": "web", "state": { "running": {} } }, { "name": "side", "state": { "running": {} } }] });
        m.apply_to_status(&pod, &containers, &mut status, "t");
        assert_eq!(
            status["containerStatuses"][0]["ready"], false,
            "no readiness result yet"
        );
        assert_eq!(
            status["containerStatuses"][1]["ready"], true,
            "no readiness probe: ready when running"
        );
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(
            status["conditions"][0]["message"],
            "containers with unready status: [web]"
        );

        let key = ("u".to_owned(), "web".to_owned(), ProbeKind::Readiness);
        m.publish(&key, &instance(&web), Outcome::Success);
        m.apply_to_status(&pod, &containers, &mut status, "t");
        assert_eq!(status["containerStatuses"][0]["ready"], true);
        assert_eq!(status["conditions"][1]["status"], "True");
        // A result for an earlier instance does not count for the restarted one.
        let restarted = vec![running("web", 1), running("side", 0)];
        m.apply_to_status(&pod, &restarted, &mut status, "t");
        assert_eq!(status["containerStatuses"][0]["ready"], false);

        // A readiness gate holds Ready (not ContainersReady) until its condition is True.
        let mut gated = pod.clone();
        gated["spec"]["readinessGates"] = json!([{ "conditionType": "example.com/lb" }]);
        m.apply_to_status(&gated, &containers, &mut status, "t");
        assert_eq!(
            (
                &status["conditions"][0]["status"],
                &status["conditions"][1]["status"]
            ),
            (&json!("False"), &json!("True"))
        );
        assert_eq!(status["conditions"][0]["reason"], "ReadinessGatesNotReady");
        status["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({ "type": "example.com/lb", "status": "True" }));
        m.apply_to_status(&gated, &containers, &mut status, "t");
        assert_eq!(status["conditions"][0]["status"], "True");

        let live = ("u".to_owned(), "side".to_owned(), ProbeKind::Liveness);
        m.publish(&live, &instance(&containers[1]), Outcome::Failure);
        assert_eq!(m.containers_to_kill("u", &containers), vec!["side".to_owned()]);
        assert!(
            m.containers_to_kill("u", &[running("side", 1)]).is_empty(),
            "the restarted instance lives"
        );
        m.remove_pod("u");
        assert!(m.containers_to_kill("u", &containers).is_empty());
    }
}
