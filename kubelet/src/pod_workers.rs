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
};

use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    runtime::{ContainerRuntime, ContainerSpec, ContainerState, RuntimeError, SandboxSpec},
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
        /// The containers to start, in order.
        start: Vec<ContainerSpec>,
    },
}

/// Decides what a sync of `pod` does, given the names of the containers the runtime has for it.
pub fn plan(pod: &Value, running: &[String]) -> Plan {
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
    let spec = |field: &str, init: bool| -> Vec<ContainerSpec> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| !running.iter().any(|r| r == n))
            })
            .map(|c| ContainerSpec::from_pod_container(c, init))
            .collect()
    };
    let mut start = spec("initContainers", true);
    start.extend(spec("containers", false));
    Plan::Run { start }
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

    /// The pod is gone from the API: its worker stops once its current sync ends.
    pub fn forget(&self, uid: &str) {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
    }

    /// Stops every worker (once its current sync ends): the node is shutting down.
    pub fn stop_all(&self) {
        self.workers.lock().unwrap_or_else(|e| e.into_inner()).clear();
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
    loop {
        let pod = rx.borrow_and_update().clone();
        match sync_pod(&workers.node, &pod).await {
            Ok(true) => {
                workers.forget(&uid);
                return;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::debug!(pod = %uid, error = %e, "pod sync failed; retrying");
                // Retry after a pause unless a newer version of the pod arrives first.
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await;
                continue;
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// One sync of `pod`; `Ok(true)` when the pod is finished with (deleted for good).
pub async fn sync_pod(
    node: &NodeContext,
    pod: &Value,
) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), ns);
    let rt = node.runtime.clone();
    let key = uid.to_owned();
    let running: Vec<String> = blocking(move || Ok(rt.pod_status(&key)))
        .await?
        .map(|(_, c)| c.into_iter().map(|c| c.name).collect())
        .unwrap_or_default();
    match plan(pod, &running) {
        Plan::Done => Ok(false),
        Plan::Kill { grace_seconds } => {
            let (rt, key) = (node.runtime.clone(), uid.to_owned());
            blocking(move || rt.kill_pod(&key, grace_seconds)).await?;
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.to_owned()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(name, &params).await {
                Ok(_) => Ok(true),
                // Gone already, or another pod of the same name: either way this one is done.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(true),
                Err(e) => Err(e.into()),
            }
        }
        Plan::Run { start } => {
            let cidr = node.pod_cidr.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let (rt, key, sandbox) = (
                node.runtime.clone(),
                uid.to_owned(),
                SandboxSpec::from_pod(pod, cidr.as_deref()),
            );
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
            let new = status::pod_status(pod, Some(&sandbox), &containers, &node.host_ip, &crate::now());
            if status::changed(&pod["status"], &new) {
                match pods
                    .patch_status(
                        name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": new })),
                    )
                    .await
                {
                    Ok(_) => {}
                    // Deleted meanwhile: the watch brings the delete.
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            Ok(false)
        }
    }
}

/// Runs runtime calls (which fork processes and wait for them) on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, Box<dyn std::error::Error + Send + Sync>> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let pod = json!({ "metadata": { "uid": "u" }, "spec": {
            "initContainers": [{ "name": "i", "image": "b" }], "containers": [{ "name": "a", "image": "b" }, { "name": "c", "image": "d" }] } });
        let names = |p: Plan| match p {
            Plan::Run { start } => start.into_iter().map(|c| (c.name, c.image, c.init)).collect(),
            _ => Vec::new(),
        };
        assert_eq!(
            names(plan(&pod, &[])),
            vec![
                ("i".into(), "b".into(), true),
                ("a".into(), "b".into(), false),
                ("c".into(), "d".into(), false)
            ]
        );
        assert_eq!(
            names(plan(&pod, &["i".into(), "a".into()])),
            vec![("c".to_owned(), "d".to_owned(), false)]
        );
        let mut deleting = pod.clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        deleting["metadata"]["deletionGracePeriodSeconds"] = json!(5);
        assert_eq!(plan(&deleting, &[]), Plan::Kill { grace_seconds: 5 });
        let mut done = pod;
        done["status"]["phase"] = json!("Succeeded");
        assert_eq!(plan(&done, &[]), Plan::Done);
    }
}
