//! The container runtime behind the kubelet, shaped after CRI's RuntimeService: a pod is a sandbox
//! (its network namespace and IP) plus containers started in it. The kubelet decides *what* should run;
//! a runtime only does it and reports what runs.
//!
//! [`FakeRuntime`] is the runtime of hollow nodes: sandboxes get an IP from the node's pod CIDR and
//! containers run at once and never exit (kwok's and kubemark's fake). The real runtime (pause + runc
//! + CNI) implements the same trait in issue 5.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

/// A running sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    /// The runtime's id for it.
    pub id: String,
    /// The pod IP.
    pub ip: String,
}

/// What a container is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Started at this time (RFC 3339) and running.
    Running {
        /// When it started (RFC 3339).
        started_at: String,
    },
    /// Exited with this code (init containers that completed).
    Exited {
        /// Its exit code.
        exit_code: i32,
        /// `Completed`, `Error`, `OOMKilled`…
        reason: String,
        /// When it started.
        started_at: String,
        /// When it ended.
        finished_at: String,
    },
}

/// One container as the runtime reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container's name in the pod spec.
    pub name: String,
    /// `<runtime>://<id>`, as `containerID` in the pod status.
    pub id: String,
    /// The image it runs.
    pub image: String,
    /// What it is doing.
    pub state: ContainerState,
    /// Times it was restarted.
    pub restart_count: i32,
}

/// A runtime error.
#[derive(Debug)]
pub struct RuntimeError(pub String);

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuntimeError {}

/// What the kubelet asks of a runtime, per pod UID.
pub trait ContainerRuntime: Send + Sync {
    /// The name in `containerID`s and the node's `containerRuntimeVersion` (`fake://0.1`).
    fn version(&self) -> String;
    /// Creates the pod's sandbox if it has none; returns it.
    fn run_sandbox(&self, pod_uid: &str, pod_cidr: Option<&str>) -> Result<Sandbox, RuntimeError>;
    /// Runs `name` (from `image`) in the pod's sandbox if it is not running; an init container
    /// (`init: true`) runs to completion before this returns.
    fn start_container(
        &self,
        pod_uid: &str,
        name: &str,
        image: &str,
        init: bool,
    ) -> Result<Container, RuntimeError>;
    /// Stops and removes the pod's containers and sandbox, giving them `grace_seconds` to stop.
    fn kill_pod(&self, pod_uid: &str, grace_seconds: i64) -> Result<(), RuntimeError>;
    /// The pod's sandbox and containers, if it has any.
    fn pod_status(&self, pod_uid: &str) -> Option<(Sandbox, Vec<Container>)>;
    /// UIDs of every pod the runtime has a sandbox for (a restarted kubelet adopts them).
    fn pods(&self) -> Vec<String>;
}

#[derive(Default)]
struct FakeState {
    pods: HashMap<String, (Sandbox, Vec<Container>)>,
    /// Host numbers handed out per CIDR (and for pods without one).
    next_host: HashMap<String, u32>,
    next_id: u64,
}

/// Containers that run at once and never exit; IPs from the node's pod CIDR.
#[derive(Clone, Default)]
pub struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
    /// The second octet of IPs handed out without a pod CIDR (10.<this>.x.y), so two hollow nodes
    /// without CIDRs still give out distinct IPs.
    fallback_octet: u8,
}

impl FakeRuntime {
    /// A fake runtime; `fallback_octet` picks its private range for pods without a pod CIDR.
    pub fn new(fallback_octet: u8) -> Self {
        Self {
            state: Arc::default(),
            fallback_octet,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `n`th host address of an IPv4 CIDR `a.b.c.d/len` (1-based; wraps within the range).
pub fn host_address(cidr: &str, n: u32) -> Option<String> {
    let (base, len) = cidr.split_once('/')?;
    let base: Ipv4Addr = base.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 30)?;
    let hosts = (1u32 << (32 - len)) - 2;
    let offset = (n - 1) % hosts + 1;
    Some(Ipv4Addr::from(u32::from(base) + offset).to_string())
}

impl FakeRuntime {
    /// Takes on a pod this node "ran" before it restarted (what a real runtime finds by listing its
    /// sandboxes): the sandbox keeps the pod's IP and the containers the status reports running or
    /// completed keep running, so a restart changes nothing the API shows. A pod it knows is left as is.
    pub fn adopt(&self, pod_uid: &str, ip: &str, pod: &serde_json::Value) {
        let mut state = self.lock();
        if state.pods.contains_key(pod_uid) {
            return;
        }
        let mut containers = Vec::new();
        for (field, init) in [("initContainerStatuses", true), ("containerStatuses", false)] {
            for c in pod["status"][field].as_array().into_iter().flatten() {
                let started = |s: &serde_json::Value| s["startedAt"].as_str().unwrap_or_default().to_owned();
                let state = match (&c["state"]["running"], &c["state"]["terminated"]) {
                    (r, _) if r.is_object() && !init => ContainerState::Running {
                        started_at: started(r),
                    },
                    (_, t) if t.is_object() && init => ContainerState::Exited {
                        exit_code: t["exitCode"].as_i64().unwrap_or(0) as i32,
                        reason: t["reason"].as_str().unwrap_or("Completed").to_owned(),
                        started_at: started(t),
                        finished_at: t["finishedAt"].as_str().unwrap_or_default().to_owned(),
                    },
                    _ => continue,
                };
                containers.push(Container {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    id: c["containerID"].as_str().unwrap_or_default().to_owned(),
                    image: c["image"].as_str().unwrap_or_default().to_owned(),
                    state,
                    restart_count: c["restartCount"].as_i64().unwrap_or(0) as i32,
                });
            }
        }
        state.next_id += 1;
        let sandbox = Sandbox {
            id: format!("{:016x}", state.next_id),
            ip: ip.to_owned(),
        };
        state.pods.insert(pod_uid.to_owned(), (sandbox, containers));
    }
}

impl ContainerRuntime for FakeRuntime {
    fn version(&self) -> String {
        "fake://0.1.0".into()
    }

    fn run_sandbox(&self, pod_uid: &str, pod_cidr: Option<&str>) -> Result<Sandbox, RuntimeError> {
        let fallback = format!("10.{}.0.0/16", self.fallback_octet);
        let mut state = self.lock();
        if let Some((sandbox, _)) = state.pods.get(pod_uid) {
            return Ok(sandbox.clone());
        }
        // .1 is the gateway of a CNI bridge on a real node: pods start at .2.
        let cidr = pod_cidr.unwrap_or(&fallback).to_owned();
        let host = state.next_host.entry(cidr.clone()).or_insert(1);
        *host += 1;
        let ip = host_address(&cidr, *host).ok_or_else(|| RuntimeError(format!("bad pod CIDR {cidr:?}")))?;
        state.next_id += 1;
        let sandbox = Sandbox {
            id: format!("{:016x}", state.next_id),
            ip,
        };
        state
            .pods
            .insert(pod_uid.to_owned(), (sandbox.clone(), Vec::new()));
        Ok(sandbox)
    }

    fn start_container(
        &self,
        pod_uid: &str,
        name: &str,
        image: &str,
        init: bool,
    ) -> Result<Container, RuntimeError> {
        let mut state = self.lock();
        state.next_id += 1;
        let id = format!("fake://{:016x}", state.next_id);
        let (_, containers) = state
            .pods
            .get_mut(pod_uid)
            .ok_or_else(|| RuntimeError(format!("pod {pod_uid} has no sandbox")))?;
        if let Some(existing) = containers.iter().find(|c| c.name == name) {
            return Ok(existing.clone());
        }
        let now = crate::now();
        let state = match init {
            true => ContainerState::Exited {
                exit_code: 0,
                reason: "Completed".into(),
                started_at: now.clone(),
                finished_at: now,
            },
            false => ContainerState::Running { started_at: now },
        };
        let container = Container {
            name: name.to_owned(),
            id,
            image: image.to_owned(),
            state,
            restart_count: 0,
        };
        containers.push(container.clone());
        Ok(container)
    }

    fn kill_pod(&self, pod_uid: &str, _grace_seconds: i64) -> Result<(), RuntimeError> {
        self.lock().pods.remove(pod_uid);
        Ok(())
    }

    fn pod_status(&self, pod_uid: &str) -> Option<(Sandbox, Vec<Container>)> {
        self.lock().pods.get(pod_uid).cloned()
    }

    fn pods(&self) -> Vec<String> {
        self.lock().pods.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_get_distinct_ips_from_the_cidr_and_are_idempotent() {
        let rt = FakeRuntime::new(250);
        let a = rt.run_sandbox("a", Some("10.244.3.0/24")).unwrap();
        let b = rt.run_sandbox("b", Some("10.244.3.0/24")).unwrap();
        assert_eq!((a.ip.as_str(), b.ip.as_str()), ("10.244.3.2", "10.244.3.3"));
        assert_eq!(
            rt.run_sandbox("a", Some("10.244.3.0/24")).unwrap(),
            a,
            "a second run finds the first"
        );
        let c = rt.run_sandbox("c", None).unwrap();
        assert_eq!(c.ip, "10.250.0.2");
        rt.start_container("a", "web", "busybox", false).unwrap();
        let init = rt.start_container("a", "setup", "busybox", true).unwrap();
        assert!(matches!(init.state, ContainerState::Exited { exit_code: 0, .. }));
        assert_eq!(rt.pod_status("a").unwrap().1.len(), 2);
        rt.kill_pod("a", 30).unwrap();
        assert!(rt.pod_status("a").is_none());
        assert!(
            rt.start_container("a", "web", "busybox", false).is_err(),
            "no sandbox, no container"
        );
    }

    #[test]
    fn host_addresses_wrap_inside_the_range() {
        assert_eq!(host_address("10.244.0.0/24", 1).as_deref(), Some("10.244.0.1"));
        assert_eq!(
            host_address("10.244.0.0/24", 254).as_deref(),
            Some("10.244.0.254")
        );
        assert_eq!(host_address("10.244.0.0/24", 255).as_deref(), Some("10.244.0.1"));
        assert_eq!(host_address("nonsense", 1), None);
    }
}
