//! One worker per pod, as upstream's pod_workers.go: the pods bound to the node arrive from a watch,
//! each pod's updates go to its own worker, and a worker syncs one pod at a time, always with the
//! latest version of the pod (updates that arrive while a sync runs are coalesced into the next).
//!
//! A sync is [`plan`] (pure: what the pod needs, given what the runtime runs) and then doing it: run the
//! sandbox, start the init containers in order and then the app containers, write the status when it
//! changed, or, for a pod being deleted, stop everything and delete the pod for good (grace period 0,
//! guarded by its uid, as upstream's status manager does).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    runtime::{Container, ContainerRuntime, ContainerSpec, ContainerState, RuntimeError, SandboxSpec},
    status,
};

/// What a sync does for a pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The pod is being deleted: stop it (within this grace period), then delete it for good.
    Kill {
        /// Seconds the containers get to stop.
        grace_seconds: i64,
    },
    /// The pod ran to its end (Succeeded/Failed): nothing more to do.
    Done,
    /// Run the sandbox if needed, then start these containers in order (init first), then report.
    Run {
        /// The containers to start (or start again), in order.
        start: Vec<ContainerSpec>,
        /// A container waits out its restart back-off: sync again after this long.
        retry_after: Option<Duration>,
    },
}

/// The first restart back-off (upstream: 10 s, doubling per restart up to 5 min).
pub const BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest restart back-off.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// How long a container that exited after `restart_count` restarts waits before it starts again.
pub fn restart_backoff(base: Duration, restart_count: i32) -> Duration {
    let doublings = restart_count.clamp(0, 16) as u32;
    base.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

/// Decides what a sync of `pod` does, given what the runtime has for it, at `now`: containers never
/// started are started; exited ones are started again as the restart policy says (upstream's
/// `computePodActions`), each once its back-off (from `base`) has passed since it finished.
pub fn plan(pod: &Value, current: &[Container], now: DateTime<Utc>, base: Duration) -> Plan {
    if pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        let grace = pod["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(30);
        return Plan::Kill { grace_seconds: grace };
    }
    if matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed")) {
        return Plan::Done;
    }
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let mut retry_after: Option<Duration> = None;
    let mut wanted = |c: &Value, init: bool| -> bool {
        let Some(existing) = c["name"]
            .as_str()
            .and_then(|n| current.iter().find(|x| x.name == n))
        else {
            return c["name"].is_string();
        };
        if !status::will_restart(policy, init, &existing.state) {
            return false;
        }
        let ContainerState::Exited { finished_at, .. } = &existing.state else {
            return false;
        };
        let wait = restart_backoff(base, existing.restart_count);
        let since = DateTime::parse_from_rfc3339(finished_at)
            .map(|t| now.signed_duration_since(t).to_std().unwrap_or_default())
            .unwrap_or(wait);
        if since >= wait {
            return true;
        }
        let left = wait - since;
        retry_after = Some(retry_after.map_or(left, |r| r.min(left)));
        false
    };
    let mut start = Vec::new();
    // Init containers in order: one that is neither done nor to be started (running, backing off,
    // failed for good) holds back everything after it.
    for c in pod["spec"]["initContainers"].as_array().into_iter().flatten() {
        let done = current.iter().any(|x| {
            Some(x.name.as_str()) == c["name"].as_str()
                && matches!(x.state, ContainerState::Exited { exit_code: 0, .. })
        });
        if done {
            continue;
        }
        if !wanted(c, true) {
            return Plan::Run { start, retry_after };
        }
        start.push(ContainerSpec::from_pod_container(pod, c, true));
    }
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        if wanted(c, false) {
            start.push(ContainerSpec::from_pod_container(pod, c, false));
        }
    }
    Plan::Run { start, retry_after }
}

/// What every worker of one node shares.
pub struct NodeContext {
    /// The API client.
    pub client: Client,
    /// The node's name.
    pub node: String,
    /// The node's InternalIP (`status.hostIP`).
    pub host_ip: String,
    /// The node's pod CIDR once node IPAM gave it one.
    pub pod_cidr: Mutex<Option<String>>,
    /// What runs the pods.
    pub runtime: Arc<dyn ContainerRuntime>,
    /// The first restart back-off of a container ([`BACKOFF_BASE`]; shorter in tests).
    pub backoff_base: Duration,
    /// The probe workers of the node's pods and their results.
    pub probes: Arc<crate::prober::ProbeManager>,
    /// How often a pod with configMap, secret, downwardAPI or projected volumes is synced again to
    /// refresh them ([`VOLUME_RESYNC`]; upstream's sync frequency).
    pub volume_resync: Duration,
    /// Where events about the node's pods go.
    pub events: crate::events::PodEvents,
    /// Pods the eviction manager evicts, with the status it gave them once they are killed: their
    /// workers stand down, and then only keep that status in the API (see [`crate::eviction`]).
    pub evicted: Mutex<HashMap<String, Option<Value>>>,
    /// The node's pressure conditions as the eviction manager last found them (new pods are
    /// admitted by them).
    pub pressure: Arc<crate::eviction::NodePressure>,
}

/// How often projected volumes are refreshed (upstream resyncs every pod each minute).
pub const VOLUME_RESYNC: Duration = Duration::from_secs(60);

/// How a sync of a pod ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Synced {
    /// The pod is deleted for good: its worker ends.
    Finished,
    /// Up to date: sync again when something changes.
    Idle,
    /// A container waits out its back-off: sync again after this long at the latest.
    RetryAfter(Duration),
}

/// The workers of one node, by pod uid.
pub struct PodWorkers {
    node: Arc<NodeContext>,
    workers: Mutex<HashMap<String, watch::Sender<Value>>>,
}

impl PodWorkers {
    /// Workers for the pods of `node`.
    pub fn new(node: Arc<NodeContext>) -> Self {
        Self {
            node,
            workers: Mutex::default(),
        }
    }

    /// The node these workers serve.
    pub fn node(&self) -> &Arc<NodeContext> {
        &self.node
    }

    /// Hands the latest version of a pod to its worker, starting one if the pod has none.
    pub fn update(self: &Arc<Self>, pod: Value) {
        let Some(uid) = pod["metadata"]["uid"].as_str().map(str::to_owned) else {
            return;
        };
        let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = workers.get(&uid) {
            tx.send_replace(pod);
            return;
        }
        let (tx, rx) = watch::channel(pod);
        workers.insert(uid.clone(), tx);
        tokio::spawn(worker(self.clone(), uid, rx));
    }

    /// Syncs the pod again with the version its worker has (what runs for it changed: the PLEG saw a
    /// container start or exit).
    pub fn resync(&self, uid: &str) {
        if let Some(tx) = self.workers.lock().unwrap_or_else(|e| e.into_inner()).get(uid) {
            tx.send_modify(|_| {});
        }
    }

    /// The pod is gone from the API: its worker stops once its current sync ends, its probes at once.
    pub fn forget(&self, uid: &str) {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
        self.node
            .evicted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        self.node.probes.remove_pod(uid);
        if let Some(startup) = self.node.runtime.startup() {
            startup.forget(uid);
        }
    }

    /// The latest version of every pod with a worker.
    pub fn pods(&self) -> Vec<Value> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|tx| tx.borrow().clone())
            .collect()
    }

    /// Stops every worker (once its current sync ends): the node is shutting down.
    pub fn stop_all(&self) {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.node.probes.stop_all();
    }

    /// Pods with a worker.
    pub fn len(&self) -> usize {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no pod has a worker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Syncs one pod until it is forgotten (or deleted for good).
async fn worker(workers: Arc<PodWorkers>, uid: String, mut rx: watch::Receiver<Value>) {
    // The last failure logged, so a sync retried every second says so once, not every second.
    let mut last_error: Option<String> = None;
    loop {
        let pod = rx.borrow_and_update().clone();
        let wait = match sync_pod(&workers.node, &pod).await {
            Ok(Synced::Finished) => {
                workers.forget(&uid);
                return;
            }
            Ok(Synced::Idle) => None,
            Ok(Synced::RetryAfter(after)) => Some(after),
            Err(e) => {
                let message = e.to_string();
                if last_error.as_deref() != Some(message.as_str()) {
                    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
                    tracing::warn!(pod = %name, uid = %uid, error = %message, "pod sync failed; retrying every second");
                    last_error = Some(message);
                }
                // Retry after a pause unless a newer version of the pod arrives first; a worker whose
                // pod was forgotten (or whose node stopped) ends instead.
                if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), rx.changed()).await {
                    return;
                }
                continue;
            }
        };
        last_error = None;
        let changed = match wait {
            Some(after) => match tokio::time::timeout(after, rx.changed()).await {
                Ok(changed) => changed,
                Err(_) => Ok(()), // The back-off is over: sync again.
            },
            None => rx.changed().await,
        };
        if changed.is_err() {
            return;
        }
    }
}

/// One sync of `pod`.
pub async fn sync_pod(
    node: &NodeContext,
    pod: &Value,
) -> Result<Synced, Box<dyn std::error::Error + Send + Sync>> {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), ns);
    if let Some(startup) = node.runtime.startup() {
        startup.seen(uid);
    }
    let deleting = pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let evicted = node
        .evicted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(uid)
        .cloned();
    if let Some(status) = evicted
        && !deleting
    {
        // Evicted: the eviction manager kills it; once it did, keep its Failed status (a sync that
        // was under way when it was evicted may have written over it).
        node.probes.remove_pod(uid);
        if let Some(status) = status
            && pod["status"]["phase"] != "Failed"
        {
            match pods
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Synced::Idle);
    }
    let rt = node.runtime.clone();
    let key = uid.to_owned();
    let mut current: Vec<Container> = blocking(move || Ok(rt.pod_status(&key)))
        .await?
        .map(|(_, c)| c)
        .unwrap_or_default();
    // Where the pod's volumes go; None on a runtime that runs nothing (hollow nodes): no volumes, env
    // sources or probes there.
    let volume_dir = node.runtime.volume_dir(uid);
    if volume_dir.is_some() {
        // Containers whose liveness (or startup) probe failed are stopped; the plan restarts them as
        // the restart policy says.
        let doomed = node.probes.containers_to_kill(uid, &current);
        if !doomed.is_empty() {
            let (rt, key) = (node.runtime.clone(), uid.to_owned());
            let graces: Vec<(String, i64)> = doomed
                .into_iter()
                .map(|name| {
                    let grace = crate::prober::kill_grace_seconds(pod, &name);
                    (name, grace)
                })
                .collect();
            current = blocking(move || {
                for (name, grace) in graces {
                    tracing::info!(pod = %key, container = %name, "stopping a container whose liveness probe failed");
                    rt.stop_container(&key, &name, grace)?;
                }
                Ok(rt.pod_status(&key))
            })
            .await?
            .map(|(_, c)| c)
            .unwrap_or_default();
        }
    }
    // A pod new to the node (nothing of it runs, it never ran) is admitted under the node's pressure
    // as upstream's eviction manager says, or rejected: Failed, reason Evicted.
    let never_ran = current.is_empty() && matches!(pod["status"]["phase"].as_str(), None | Some("Pending"));
    if never_ran
        && !deleting
        && let Some(why) = crate::eviction::admit(pod, node.pressure.get())
    {
        let rt = node.runtime.clone();
        let key = uid.to_owned();
        let has_sandbox = blocking(move || Ok(rt.pod_status(&key).is_some())).await?;
        if !has_sandbox {
            let message = format!("Pod was rejected: {why}");
            tracing::info!(pod = %format!("{ns}/{name}"), %message, "pod rejected under node pressure");
            node.events
                .warning(pod, None, "Evicted", "Admit", message.clone());
            let status = json!({ "phase": "Failed", "reason": "Evicted", "message": message });
            match pods
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "status": status })),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Synced::Idle);
        }
    }
    match plan(pod, &current, chrono::Utc::now(), node.backoff_base) {
        Plan::Done => {
            node.probes.remove_pod(uid);
            Ok(Synced::Idle)
        }
        Plan::Kill { grace_seconds } => {
            node.probes.remove_pod(uid);
            if let Some(startup) = node.runtime.startup() {
                startup.forget(uid);
            }
            // preStop hooks of the running containers first (only where containers really run),
            // within the grace period; then TERM with what is left of it.
            let hooked: Vec<Value> = running_specs(pod, &current)
                .into_iter()
                .filter(|c| crate::lifecycle::pre_stop(c).is_some())
                .collect();
            let grace_seconds = if volume_dir.is_some() && !hooked.is_empty() {
                let (rt, key) = (node.runtime.clone(), uid.to_owned());
                let ip = pod["status"]["podIP"].as_str().unwrap_or_default().to_owned();
                let (left, failed) = blocking(move || {
                    Ok(crate::lifecycle::run_pre_stop_hooks(
                        rt.as_ref(),
                        &key,
                        &ip,
                        &hooked,
                        grace_seconds,
                    ))
                })
                .await?;
                for (container, why) in failed {
                    tracing::warn!(pod = %name, container = %container, error = %why, "preStop hook failed");
                    node.events.warning(
                        pod,
                        Some(&container),
                        "FailedPreStopHook",
                        "Killing",
                        format!("PreStopHook failed: {why}"),
                    );
                }
                left
            } else {
                grace_seconds
            };
            let (rt, key) = (node.runtime.clone(), uid.to_owned());
            blocking(move || rt.kill_pod(&key, grace_seconds)).await?;
            if let Some(images) = node.runtime.images() {
                images.forget_pod(uid);
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_owned()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(name, &params).await {
                Ok(_) => Ok(Synced::Finished),
                // Gone already, or another pod of the same name: either way this one is done.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(Synced::Finished),
                Err(e) => Err(e.into()),
            }
        }
        Plan::Run {
            mut start,
            mut retry_after,
        } => {
            // Images first, as their pull policies say: a container whose image is not there waits
            // (ErrImagePull, ImagePullBackOff…) and the pod is synced again when it may be.
            if let Some(images) = node.runtime.images()
                && let Some(after) = images.ensure(&node.client, pod, &mut start).await
            {
                retry_after = Some(retry_after.map_or(after, |r| r.min(after)));
            }
            let cidr = node.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let sandbox = SandboxSpec::from_pod(pod, cidr.as_deref());
            let mut prepared = None;
            if let Some(dir) = &volume_dir {
                // The sandbox first: env and downward API volumes need the pod IP.
                let (rt, spec) = (node.runtime.clone(), sandbox.clone());
                let sb = blocking(move || rt.run_sandbox(&spec)).await?;
                let ip = pod_ip(pod, &sb.ip, &node.host_ip);
                let p = crate::container_config::prepare(node, pod, &ip, dir, start).await;
                start = p.start.clone();
                let mut wait = |d: Duration| retry_after = Some(retry_after.map_or(d, |r| r.min(d)));
                if p.mount_error.is_some() || !p.config_errors.is_empty() {
                    wait(Duration::from_secs(2));
                }
                if crate::volumes::has_projected_volumes(pod) {
                    wait(node.volume_resync);
                }
                prepared = Some(p);
            }
            let (rt, key) = (node.runtime.clone(), uid.to_owned());
            let status = blocking(move || {
                rt.run_sandbox(&sandbox)?;
                for container in start {
                    let started = rt.start_container(&key, &container)?;
                    if container.init && !matches!(started.state, ContainerState::Exited { exit_code: 0, .. })
                    {
                        break; // The next init container waits for this one.
                    }
                }
                Ok(rt.pod_status(&key))
            })
            .await?;
            let (sandbox, containers) = status.ok_or("the sandbox vanished")?;
            let now = crate::now();
            let mut new = status::pod_status(pod, Some(&sandbox), &containers, &node.host_ip, &now);
            if let Some(prepared) = &prepared {
                crate::container_config::apply_to_status(prepared, &mut new);
                node.probes.apply_to_status(pod, &containers, &mut new, &now);
                let ip = pod_ip(pod, &sandbox.ip, &node.host_ip);
                node.probes
                    .sync(pod, &containers, &ip, node.runtime.clone(), &node.events);
            }
            if let Some(images) = node.runtime.images() {
                images.annotate(uid, &mut new);
            }
            if status::changed(&pod["status"], &new) {
                match pods
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": new })),
                    )
                    .await
                {
                    Ok(_) => {
                        if let Some(startup) = node.runtime.startup()
                            && new["phase"] == "Running"
                        {
                            startup.running(uid, &format!("{ns}/{name}"));
                        }
                    }
                    // Deleted meanwhile: the watch brings the delete.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(retry_after.map_or(Synced::Idle, Synced::RetryAfter))
        }
    }
}

/// The pod's IP: its sandbox's, or the node's for a host-network pod.
fn pod_ip(pod: &Value, sandbox_ip: &str, host_ip: &str) -> String {
    match pod["spec"]["hostNetwork"].as_bool() {
        Some(true) => host_ip.to_owned(),
        _ => sandbox_ip.to_owned(),
    }
}

/// Runs runtime calls (which fork processes and wait for them) on a blocking thread.
/// The specs of `pod`'s containers that run now (the ones a preStop hook is for).
fn running_specs(pod: &Value, current: &[Container]) -> Vec<Value> {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            current.iter().any(|x| {
                Some(x.name.as_str()) == c["name"].as_str()
                    && matches!(x.state, ContainerState::Running { .. })
            })
        })
        .cloned()
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(name: &str, state: ContainerState, restart_count: i32) -> Container {
        Container {
            name: name.into(),
            id: format!("runc://{name}"),
            image: "b".into(),
            state,
            restart_count,
            last_state: None,
        }
    }

    fn running(name: &str) -> Container {
        container(
            name,
            ContainerState::Running {
                started_at: "t".into(),
            },
            0,
        )
    }

    fn exited(name: &str, exit_code: i32, finished_at: &str, restart_count: i32) -> Container {
        let state = ContainerState::Exited {
            exit_code,
            reason: "Error".into(),
            started_at: "t".into(),
            finished_at: finished_at.into(),
        };
        container(name, state, restart_count)
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    fn names(p: Plan) -> Vec<(String, bool)> {
        match p {
            Plan::Run { start, .. } => start.into_iter().map(|c| (c.name, c.init)).collect(),
            _ => Vec::new(),
        }
    }

    const T0: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn plans() {
        let pod = json!({ "metadata": { "uid": "u" }, "spec": {
            "initContainers": [{ "name": "i", "image": "b" }], "containers": [{ "name": "a", "image": "b" }, { "name": "c", "image": "d" }] } });
        let now = at(T0);
        assert_eq!(
            names(plan(&pod, &[], now, BACKOFF_BASE)),
            vec![("i".into(), true), ("a".into(), false), ("c".into(), false)]
        );
        assert_eq!(
            names(plan(
                &pod,
                &[exited("i", 0, T0, 0), running("a")],
                now,
                BACKOFF_BASE
            )),
            vec![("c".to_owned(), false)]
        );
        assert!(
            names(plan(&pod, &[running("i")], now, BACKOFF_BASE)).is_empty(),
            "a running init container holds the rest back"
        );
        let mut deleting = pod.clone();
        deleting["metadata"]["deletionTimestamp"] = json!(T0);
        deleting["metadata"]["deletionGracePeriodSeconds"] = json!(5);
        assert_eq!(
            plan(&deleting, &[], now, BACKOFF_BASE),
            Plan::Kill { grace_seconds: 5 }
        );
        let mut done = pod;
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(plan(&done, &[], now, BACKOFF_BASE), Plan::Done);
    }

    #[test]
    fn exited_containers_restart_by_policy_after_their_back_off() {
        let pod = |policy: &str| json!({ "spec": { "restartPolicy": policy, "containers": [{ "name": "a", "image": "b" }] } });
        // Exited at T0 after 2 restarts: the back-off is 40 s.
        let crashed = [exited("a", 1, T0, 2)];
        let early = plan(&pod("Always"), &crashed, at("2026-01-01T00:00:30Z"), BACKOFF_BASE);
        assert_eq!(
            early,
            Plan::Run {
                start: vec![],
                retry_after: Some(Duration::from_secs(10))
            }
        );
        let due = plan(&pod("Always"), &crashed, at("2026-01-01T00:00:40Z"), BACKOFF_BASE);
        assert_eq!(names(due), vec![("a".to_owned(), false)]);
        let later = at("2026-01-01T01:00:00Z");
        assert_eq!(
            names(plan(&pod("OnFailure"), &crashed, later, BACKOFF_BASE)).len(),
            1
        );
        assert!(
            names(plan(
                &pod("OnFailure"),
                &[exited("a", 0, T0, 0)],
                later,
                BACKOFF_BASE
            ))
            .is_empty()
        );
        assert!(names(plan(&pod("Never"), &crashed, later, BACKOFF_BASE)).is_empty());
        assert_eq!(
            names(plan(
                &pod("Always"),
                &[exited("a", 0, T0, 0)],
                later,
                BACKOFF_BASE
            ))
            .len(),
            1
        );
        // A failed init container is retried (unless Never); the app containers follow it in the plan
        // but a sync starts them only once it succeeded.
        let init =
            json!({ "spec": { "initContainers": [{ "name": "i" }], "containers": [{ "name": "a" }] } });
        assert_eq!(
            names(plan(&init, &[exited("i", 1, T0, 0)], later, BACKOFF_BASE)),
            vec![("i".to_owned(), true), ("a".to_owned(), false)]
        );
        let mut never = init.clone();
        never["spec"]["restartPolicy"] = json!("Never");
        assert!(names(plan(&never, &[exited("i", 1, T0, 0)], later, BACKOFF_BASE)).is_empty());
        let waiting = plan(
            &init,
            &[exited("i", 1, T0, 0)],
            at("2026-01-01T00:00:01Z"),
            BACKOFF_BASE,
        );
        assert_eq!(
            waiting,
            Plan::Run {
                start: vec![],
                retry_after: Some(Duration::from_secs(9))
            }
        );
    }

    #[test]
    fn back_off_doubles_up_to_five_minutes() {
        let b = |n| restart_backoff(BACKOFF_BASE, n).as_secs();
        assert_eq!(
            (b(0), b(1), b(2), b(4), b(5), b(100)),
            (10, 20, 40, 160, 300, 300)
        );
    }
}
