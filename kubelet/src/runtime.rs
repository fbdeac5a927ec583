//! The container runtime behind the kubelet, shaped after CRI's RuntimeService: a pod is a sandbox
//! (its network namespace and IP) plus containers started in it. The kubelet decides *what* should run;
//! a runtime only does it and reports what runs.
//!
//! [`FakeRuntime`] is the runtime of hollow nodes: sandboxes get an IP from the node's pod CIDR and
//! containers run at once and never exit (kwok's and kubemark's fake). The real runtime (pause + runc
//! + CNI) is [`crate::runc_runtime::RuncRuntime`].

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
};

use serde_json::Value;

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
    /// How its previous run ended, once it was restarted (`lastState` in the status).
    pub last_state: Option<ContainerState>,
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

/// What a sandbox is asked to be: the pod it belongs to and what its network needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxSpec {
    /// The pod's UID (the runtime's key for it).
    pub uid: String,
    /// The pod's name.
    pub name: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The hostname its containers see (`spec.hostname`, else the pod's name).
    pub hostname: String,
    /// The node's pod CIDR, which pod IPs come from (None until node IPAM assigned one).
    pub pod_cidr: Option<String>,
    /// `hostPort`s of its containers (CNI's portMappings capability).
    pub port_mappings: Vec<PortMapping>,
    /// `spec.hostNetwork`: the pod uses the node's network (and UTS) namespace, no CNI.
    pub host_network: bool,
    /// `spec.dnsPolicy` and `spec.dnsConfig`.
    pub dns: crate::dns::PodDns,
}

/// One `hostPort` of a container, as CNI's `portMappings` runtime config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapping {
    /// The port on the node.
    pub host_port: u16,
    /// The port in the pod.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp` (lower case, as CNI wants it).
    pub protocol: String,
    /// The node address to bind, if not all.
    pub host_ip: Option<String>,
}

/// The cgroup settings of a container, from its requests and limits (already in plain units).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// `requests.cpu` in millicores (becomes cpu shares).
    pub cpu_request_milli: Option<i64>,
    /// `limits.cpu` in millicores (becomes a CFS quota).
    pub cpu_limit_milli: Option<i64>,
    /// `limits.memory` in bytes.
    pub memory_limit_bytes: Option<i64>,
    /// A limit on the number of processes (upstream sets it per pod: `podPidsLimit`).
    pub pids_limit: Option<i64>,
}

/// What a container is asked to run: the parts of a pod's container spec the runtime uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Its name in the pod spec.
    pub name: String,
    /// The image it runs.
    pub image: String,
    /// `command` (the image's entrypoint when empty).
    pub command: Vec<String>,
    /// `args` (the image's cmd when empty).
    pub args: Vec<String>,
    /// `env` entries with literal values, in order.
    pub env: Vec<(String, String)>,
    /// `workingDir`, if set.
    pub working_dir: Option<String>,
    /// Requests and limits.
    pub resources: Resources,
    /// An init container: runs to completion before the next one starts.
    pub init: bool,
    /// Its security context (the pod's, overridden by the container's).
    pub security: SecurityContext,
    /// Its `volumeMounts`, as bind mounts of the pod's volumes (see [`crate::volumes`]).
    pub mounts: Vec<VolumeMount>,
}

/// A volume (or a subPath of one) bind-mounted into a container.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeMount {
    /// The path on the node.
    pub host_path: String,
    /// `mountPath` in the container.
    pub container_path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// What a command run in a container (an exec probe) gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecResult {
    /// Its exit code.
    pub exit_code: i32,
    /// Its stdout and stderr (the start of them).
    pub output: String,
}

/// The parts of a container's `securityContext` (and the pod's) the runtime applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecurityContext {
    /// `runAsUser` (unset: the image config's `User`, else root).
    pub run_as_user: Option<u32>,
    /// `runAsGroup`.
    pub run_as_group: Option<u32>,
    /// `privileged`: every capability and device, nothing masked.
    pub privileged: bool,
    /// `readOnlyRootFilesystem`.
    pub read_only_root_filesystem: bool,
    /// `allowPrivilegeEscalation` (true when unset, as upstream).
    pub allow_privilege_escalation: Option<bool>,
    /// `capabilities.add` (Kubernetes names: `NET_ADMIN`, or `ALL`).
    pub add_capabilities: Vec<String>,
    /// `capabilities.drop`.
    pub drop_capabilities: Vec<String>,
}

impl SecurityContext {
    /// The container `c`'s context over its pod's (`spec.securityContext` of `pod`).
    pub fn of(pod: &Value, c: &Value) -> Self {
        let (own, pods) = (&c["securityContext"], &pod["spec"]["securityContext"]);
        let id = |field: &str| {
            own[field]
                .as_u64()
                .or_else(|| pods[field].as_u64())
                .map(|n| n as u32)
        };
        let caps = |list: &str| -> Vec<String> {
            own["capabilities"][list]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        Self {
            run_as_user: id("runAsUser"),
            run_as_group: id("runAsGroup"),
            privileged: own["privileged"].as_bool().unwrap_or(false),
            read_only_root_filesystem: own["readOnlyRootFilesystem"].as_bool().unwrap_or(false),
            allow_privilege_escalation: own["allowPrivilegeEscalation"].as_bool(),
            add_capabilities: caps("add"),
            drop_capabilities: caps("drop"),
        }
    }
}

impl ContainerSpec {
    /// The spec of one container `c` of `pod` (a `containers[]` or `initContainers[]` entry as JSON).
    /// Env entries taken from other objects (`valueFrom`) are not resolved here.
    pub fn from_pod_container(pod: &Value, c: &Value, init: bool) -> Self {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let env = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| Some((e["name"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
            .collect();
        let res = &c["resources"];
        let cpu = |v: &Value| {
            v.as_str()
                .and_then(parse_quantity)
                .map(|n| (n * 1000.0).ceil() as i64)
        };
        let bytes = |v: &Value| v.as_str().and_then(parse_quantity).map(|n| n.ceil() as i64);
        Self {
            name: c["name"].as_str().unwrap_or_default().to_owned(),
            image: c["image"].as_str().unwrap_or_default().to_owned(),
            command: strings(&c["command"]),
            args: strings(&c["args"]),
            env,
            working_dir: c["workingDir"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            resources: Resources {
                // A limit without a request defaults the request (API defaulting does the same).
                cpu_request_milli: cpu(&res["requests"]["cpu"]).or_else(|| cpu(&res["limits"]["cpu"])),
                cpu_limit_milli: cpu(&res["limits"]["cpu"]),
                memory_limit_bytes: bytes(&res["limits"]["memory"]),
                pids_limit: None,
            },
            init,
            security: SecurityContext::of(pod, c),
            mounts: Vec::new(),
        }
    }
}

impl SandboxSpec {
    /// The sandbox of `pod` (JSON) on a node whose pod CIDR is `pod_cidr`.
    pub fn from_pod(pod: &Value, pod_cidr: Option<&str>) -> Self {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let hostname = pod["spec"]["hostname"]
            .as_str()
            .filter(|h| !h.is_empty())
            .unwrap_or(name);
        let mut port_mappings = Vec::new();
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            for p in c["ports"].as_array().into_iter().flatten() {
                let (Some(host), Some(container)) = (p["hostPort"].as_u64(), p["containerPort"].as_u64())
                else {
                    continue;
                };
                port_mappings.push(PortMapping {
                    host_port: host as u16,
                    container_port: container as u16,
                    protocol: p["protocol"].as_str().unwrap_or("TCP").to_ascii_lowercase(),
                    host_ip: p["hostIP"].as_str().filter(|s| !s.is_empty()).map(str::to_owned),
                });
            }
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        };
        let config = &pod["spec"]["dnsConfig"];
        let dns = crate::dns::PodDns {
            policy: pod["spec"]["dnsPolicy"]
                .as_str()
                .unwrap_or("ClusterFirst")
                .to_owned(),
            nameservers: strings(&config["nameservers"]),
            searches: strings(&config["searches"]),
            options: config["options"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| {
                    let name = o["name"].as_str()?;
                    Some(match o["value"].as_str() {
                        Some(v) => format!("{name}:{v}"),
                        None => name.to_owned(),
                    })
                })
                .collect(),
        };
        Self {
            uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned(),
            name: name.to_owned(),
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_owned(),
            // A DNS label: upstream truncates the hostname to 63 characters.
            hostname: hostname.chars().take(63).collect(),
            pod_cidr: pod_cidr.map(str::to_owned),
            port_mappings,
            host_network: pod["spec"]["hostNetwork"].as_bool().unwrap_or(false),
            dns,
        }
    }
}

/// The value of a Kubernetes quantity (`500m`, `1.5`, `128Mi`, `1G`, `1e3`), or None if malformed.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => 10f64.powi(e[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// What the kubelet asks of a runtime, per pod UID. Calls block (a real runtime forks processes and
/// waits for them): async callers run them on blocking threads.
pub trait ContainerRuntime: Send + Sync {
    /// The name in `containerID`s and the node's `containerRuntimeVersion` (`fake://0.1`).
    fn version(&self) -> String;
    /// Creates the pod's sandbox if it has none; returns it.
    fn run_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError>;
    /// Runs `spec` in the pod's sandbox if it is not running (a container of that name that exited is
    /// started again: its restart count goes up and its last run becomes its last state); an init
    /// container (`spec.init`) runs to completion before this returns.
    fn start_container(&self, pod_uid: &str, spec: &ContainerSpec) -> Result<Container, RuntimeError>;
    /// Stops and removes the pod's containers and sandbox, giving them `grace_seconds` to stop.
    fn kill_pod(&self, pod_uid: &str, grace_seconds: i64) -> Result<(), RuntimeError>;
    /// The pod's sandbox and containers, if it has any.
    fn pod_status(&self, pod_uid: &str) -> Option<(Sandbox, Vec<Container>)>;
    /// UIDs of every pod the runtime has a sandbox for (a restarted kubelet adopts them).
    fn pods(&self) -> Vec<String>;
    /// Where pod `uid`'s volumes are set up on the node, for a runtime that runs real processes. A
    /// runtime without one (the fake of hollow nodes) runs pods without volumes, without resolving
    /// env from other objects and without probes: nothing it "runs" could use them.
    fn volume_dir(&self, _pod_uid: &str) -> Option<std::path::PathBuf> {
        None
    }
    /// Runs `cmd` in container `name` of pod `uid` (an exec probe); an error when it cannot run or
    /// outlasts `timeout`.
    fn exec_sync(
        &self,
        _pod_uid: &str,
        _name: &str,
        _cmd: &[String],
        _timeout: std::time::Duration,
    ) -> Result<ExecResult, RuntimeError> {
        Err(RuntimeError("this runtime cannot exec in containers".into()))
    }
    /// Stops container `name` of pod `uid` (TERM, KILL after `grace_seconds`), leaving it exited, as
    /// the kubelet does to a container whose liveness probe failed.
    fn stop_container(&self, _pod_uid: &str, _name: &str, _grace_seconds: i64) -> Result<(), RuntimeError> {
        Err(RuntimeError("this runtime cannot stop single containers".into()))
    }
    /// The network namespace the node's own traffic (HTTP and TCP probes) leaves from, when it is not
    /// the kubelet's.
    fn node_netns(&self) -> Option<std::path::PathBuf> {
        None
    }
    /// The node's image manager, when the runtime has one (pull policies, image statuses).
    fn images(&self) -> Option<&crate::images::manager::ImageManager> {
        None
    }
    /// Where the runtime times the phases of pods' first starts, when it does
    /// ([`crate::startup`]).
    fn startup(&self) -> Option<&crate::startup::StartupTracker> {
        None
    }
    /// Every pod's containers at once: what the kubelet's PLEG relists every second to notice
    /// containers that changed (exited) without the pod changing. Runtimes that can list everything
    /// in one go do better than this default.
    fn relist(&self) -> Vec<(String, Vec<Container>)> {
        self.pods()
            .into_iter()
            .filter_map(|uid| self.pod_status(&uid).map(|(_, containers)| (uid, containers)))
            .collect()
    }
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
    /// The second octet of IPs handed out without a pod CIDR (`10.<this>.x.y`), so two hollow nodes
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
                    last_state: None,
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

    fn run_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        let (pod_uid, pod_cidr) = (spec.uid.as_str(), spec.pod_cidr.as_deref());
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

    fn start_container(&self, pod_uid: &str, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        let (name, image, init) = (spec.name.as_str(), spec.image.as_str(), spec.init);
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
            last_state: None,
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

/// A sandbox spec for tests: pod `uid` named after it, in `default`.
#[cfg(test)]
pub(crate) fn test_sandbox(uid: &str, pod_cidr: Option<&str>) -> SandboxSpec {
    SandboxSpec {
        uid: uid.into(),
        name: uid.into(),
        namespace: "default".into(),
        hostname: uid.into(),
        pod_cidr: pod_cidr.map(str::to_owned),
        port_mappings: Vec::new(),
        ..Default::default()
    }
}

/// A container spec for tests.
#[cfg(test)]
pub(crate) fn test_container(name: &str, image: &str, init: bool) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: image.into(),
        init,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandboxes_get_distinct_ips_from_the_cidr_and_are_idempotent() {
        let rt = FakeRuntime::new(250);
        let a = rt.run_sandbox(&test_sandbox("a", Some("10.244.3.0/24"))).unwrap();
        let b = rt.run_sandbox(&test_sandbox("b", Some("10.244.3.0/24"))).unwrap();
        assert_eq!((a.ip.as_str(), b.ip.as_str()), ("10.244.3.2", "10.244.3.3"));
        assert_eq!(
            rt.run_sandbox(&test_sandbox("a", Some("10.244.3.0/24"))).unwrap(),
            a,
            "a second run finds the first"
        );
        let c = rt.run_sandbox(&test_sandbox("c", None)).unwrap();
        assert_eq!(c.ip, "10.250.0.2");
        rt.start_container("a", &test_container("web", "busybox", false))
            .unwrap();
        let init = rt
            .start_container("a", &test_container("setup", "busybox", true))
            .unwrap();
        assert!(matches!(init.state, ContainerState::Exited { exit_code: 0, .. }));
        assert_eq!(rt.pod_status("a").unwrap().1.len(), 2);
        rt.kill_pod("a", 30).unwrap();
        assert!(rt.pod_status("a").is_none());
        assert!(
            rt.start_container("a", &test_container("web", "busybox", false))
                .is_err(),
            "no sandbox, no container"
        );
    }

    #[test]
    fn specs_come_from_the_pod() {
        let pod = serde_json::json!({
            "metadata": { "name": "web-1", "namespace": "prod", "uid": "u1" },
            "spec": { "containers": [{
                "name": "web", "image": "busybox", "command": ["httpd"], "args": ["-f"],
                "env": [{ "name": "A", "value": "1" }, { "name": "B", "valueFrom": {} }],
                "ports": [{ "containerPort": 80, "hostPort": 8080 }, { "containerPort": 81 }],
                "resources": { "limits": { "cpu": "250m", "memory": "64Mi" } }
            }] }
        });
        let sandbox = SandboxSpec::from_pod(&pod, Some("10.244.1.0/24"));
        assert_eq!(
            (sandbox.hostname.as_str(), sandbox.namespace.as_str()),
            ("web-1", "prod")
        );
        assert_eq!(
            sandbox.port_mappings,
            vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: None
            }]
        );
        let c = ContainerSpec::from_pod_container(&pod, &pod["spec"]["containers"][0], false);
        assert_eq!(c.security, SecurityContext::default());
        let mut secure = pod.clone();
        secure["spec"]["securityContext"] = serde_json::json!({ "runAsUser": 1000, "runAsGroup": 3000 });
        secure["spec"]["containers"][0]["securityContext"] = serde_json::json!({
            "runAsUser": 2000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
            "capabilities": { "drop": ["ALL"], "add": ["NET_BIND_SERVICE"] } });
        let s = ContainerSpec::from_pod_container(&secure, &secure["spec"]["containers"][0], false).security;
        assert_eq!(
            (s.run_as_user, s.run_as_group),
            (Some(2000), Some(3000)),
            "the container's over the pod's"
        );
        assert!(s.read_only_root_filesystem && s.allow_privilege_escalation == Some(false));
        assert_eq!(
            (s.drop_capabilities, s.add_capabilities),
            (vec!["ALL".to_owned()], vec!["NET_BIND_SERVICE".to_owned()])
        );
        assert_eq!(
            (c.command, c.args),
            (vec!["httpd".to_owned()], vec!["-f".to_owned()])
        );
        assert_eq!(
            c.env,
            vec![("A".to_owned(), "1".to_owned())],
            "valueFrom is not resolved here"
        );
        assert_eq!(
            c.resources,
            Resources {
                cpu_request_milli: Some(250),
                cpu_limit_milli: Some(250),
                memory_limit_bytes: Some(64 << 20),
                pids_limit: None
            }
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1.5Gi"), Some(1.5 * 1024.0 * 1024.0 * 1024.0));
        assert_eq!(parse_quantity("1G"), Some(1e9));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("12Q"), None);
        assert_eq!(parse_quantity(""), None);
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
