//! The real container runtime: pod sandboxes and containers with runc and CNI, doing in one module what
//! containerd's CRI plugin does for the kubelet (`pkg/cri/server/sandbox_run.go`, `sandbox_stop.go`,
//! `container_start.go`, `container_stop.go`), with runc in the role of containerd-shim-runc-v2.
//!
//! - A sandbox is the pause process (`runc run -d`, config from [`oci::sandbox_spec`]) plus its CNI
//!   attachment (ADD into `/proc/<pause-pid>/ns/net`), which gives the pod IP.
//! - An app container is a runc container joining the pause namespaces, started by `skiff-shim` (the
//!   monitor that outlives the kubelet) with a detached `runc run`: runc exits once the container
//!   runs, the shim, its subreaper, reaps it and writes the exit code to a file, and the stopped
//!   container stays listed until the pod is killed.
//! - Everything lives under one state directory: `runc/` (runc's `--root`), `cni/`, `pause-rootfs/`
//!   and `pods/<uid>/{sandbox,<container>}/` (bundles, logs, exit codes, the sandbox's IP).
//! - Whose a container is comes back from `runc list` through the annotations containerd uses
//!   (`io.kubernetes.cri.*`), so a restarted kubelet finds its pods again.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    cni::Cni,
    dns::{self, ClusterDns},
    oci::{self, SandboxNetwork},
    pause::{self, PAUSE_BINARY, SHIM_BINARY},
    runc::{Runc, State},
    runtime::{
        Container, ContainerRuntime, ContainerSpec, ContainerState, RuntimeError, Sandbox, SandboxSpec,
    },
    startup::{Phase, StartupTracker},
};

/// Annotation: `sandbox` or `container`.
pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// Annotation: the pod's UID.
pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
/// Annotation: the pod's name.
pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
/// Annotation: the pod's namespace.
pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
/// Annotation: the container's name in the pod.
pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
/// Annotation: the image it runs.
pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";

/// Gives containers their root filesystems: the image store ([`crate::images::manager::ImageManager`])
/// or, for tests and `--images-dir`, a function from image name to directory.
pub type RootfsResolver = Arc<dyn crate::images::ImageService>;

/// Images as directories (`--images-dir`, no image config): `busybox:1.36` is `<dir>/busybox_1.36` if
/// that exists, else `<dir>/busybox` (registry hosts and paths are dropped: `docker.io/library/busybox`
/// is `busybox`).
pub fn images_in_dir(dir: PathBuf) -> RootfsResolver {
    Arc::new(move |image: &str| -> Result<PathBuf, RuntimeError> {
        let name = image.rsplit('/').next().unwrap_or(image);
        let name = name.split('@').next().unwrap_or(name);
        let (repo, tag) = name.split_once(':').unwrap_or((name, "latest"));
        [dir.join(format!("{repo}_{tag}")), dir.join(repo)]
            .into_iter()
            .find(|p| p.is_dir())
            .ok_or_else(|| RuntimeError(format!("image {image:?} not found in {}", dir.display())))
    })
}

/// How the runtime is set up.
#[derive(Clone)]
pub struct RuncConfig {
    /// Where all state goes (runc root, CNI state, bundles, logs).
    pub state_dir: PathBuf,
    /// The runc binary.
    pub runc: PathBuf,
    /// The static pause binary.
    pub pause: PathBuf,
    /// The container monitor.
    pub shim: PathBuf,
    /// The CNI plugins.
    pub cni_plugin_dir: PathBuf,
    /// The node's network namespace, when it is not the one the kubelet runs in.
    pub node_netns: Option<PathBuf>,
    /// The cgroup all pods go under (`/skiff` → `/skiff/pod<uid>/<container>`).
    pub cgroup_parent: String,
    /// The CNI bridge.
    pub bridge: String,
    /// Whether the bridge masquerades pod traffic leaving the pod CIDR (off when the node's
    /// [`crate::hostgw`] masquerades instead, leaving pod-to-pod traffic across nodes unNATed).
    pub ip_masq: bool,
    /// Where images' root filesystems are.
    pub images: RootfsResolver,
    /// The cluster DNS pods with `dnsPolicy: ClusterFirst` resolve through.
    pub cluster_dns: ClusterDns,
    /// The node's resolv.conf (`--resolv-conf`): what `dnsPolicy: Default` pods get.
    pub resolv_conf: PathBuf,
    /// The node's hosts file: what host-network pods get as /etc/hosts.
    pub hosts_file: PathBuf,
}

impl RuncConfig {
    /// Defaults for `state_dir`: runc from PATH, the helpers found by [`pause::find_helper`], plugins in
    /// /usr/lib/cni, the node's own network, cgroups under /skiff, bridge cni0.
    pub fn new(state_dir: impl Into<PathBuf>, images: RootfsResolver) -> Self {
        let helper = |name: &str| pause::find_helper(name).unwrap_or_else(|| PathBuf::from(name));
        Self {
            state_dir: state_dir.into(),
            runc: "runc".into(),
            pause: helper(PAUSE_BINARY),
            shim: helper(SHIM_BINARY),
            cni_plugin_dir: "/usr/lib/cni".into(),
            node_netns: None,
            cgroup_parent: "/skiff".into(),
            bridge: "cni0".into(),
            ip_masq: true,
            images,
            cluster_dns: ClusterDns::default(),
            resolv_conf: "/etc/resolv.conf".into(),
            hosts_file: "/etc/hosts".into(),
        }
    }
}

/// Pods as runc containers, networked by CNI.
pub struct RuncRuntime {
    cfg: RuncConfig,
    runc: Runc,
    cni: Cni,
    version: String,
    /// One lock per pod: a pod's operations never interleave, different pods' run in parallel.
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Pods killed lately: a sync of a deleted pod still in flight must not bring its sandbox back.
    killed: Mutex<std::collections::VecDeque<String>>,
    /// The phases of pods' first starts.
    startup: StartupTracker,
}

/// How many killed pods are remembered (UIDs are never reused, so this only bounds memory).
const KILLED_REMEMBERED: usize = 4096;

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError(format!("{what}: {e}"))
}

impl RuncRuntime {
    /// Sets up the state directory and the sandbox rootfs; fails if runc or a static pause is missing.
    pub fn new(cfg: RuncConfig) -> Result<Self, RuntimeError> {
        let out = std::process::Command::new(&cfg.runc)
            .arg("--version")
            .output()
            .map_err(io_err(format!("running {}", cfg.runc.display())))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("runc version "))
            .unwrap_or("unknown")
            .to_owned();
        for dir in ["runc", "cni", "pods"] {
            std::fs::create_dir_all(cfg.state_dir.join(dir))
                .map_err(io_err("creating the state directory"))?;
        }
        for (path, name) in [(&cfg.shim, SHIM_BINARY), (&cfg.pause, PAUSE_BINARY)] {
            if !path.is_file() {
                return Err(RuntimeError(format!(
                    "{} not found; build it with `{}`",
                    path.display(),
                    pause::BUILD_HINT.replace("<name>", name)
                )));
            }
        }
        pause::prepare_rootfs(&cfg.pause, &cfg.state_dir.join("pause-rootfs"))?;
        let state_dir = cfg.state_dir.clone();
        Ok(Self {
            runc: Runc::new(&cfg.runc, state_dir.join("runc")),
            cni: Cni {
                plugin_dir: cfg.cni_plugin_dir.clone(),
                state_dir: state_dir.join("cni"),
                node_netns: cfg.node_netns.clone(),
                bridge: cfg.bridge.clone(),
                ip_masq: cfg.ip_masq,
            },
            cfg,
            version,
            locks: Mutex::default(),
            killed: Mutex::default(),
            startup: StartupTracker::default(),
        })
    }

    /// The runc wrapper (its root is ours).
    pub fn runc(&self) -> &Runc {
        &self.runc
    }

    /// The directory of pod `uid`.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.state_dir.join("pods").join(uid)
    }

    /// The log file of container `name` of pod `uid`: its stdout and stderr in the CRI log format
    /// (read it with [`crate::logs`]); the previous run's is `previous.log` beside it.
    pub fn log_path(&self, uid: &str, name: &str) -> PathBuf {
        self.pod_dir(uid).join(name).join("log")
    }

    /// The cgroup of pod `uid` (its containers' cgroups are inside).
    pub fn pod_cgroup(&self, uid: &str) -> String {
        pod_cgroup(&self.cfg.cgroup_parent, uid)
    }

    fn lock(&self, uid: &str) -> Arc<Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(uid.to_owned()).or_default().clone()
    }

    fn container_id(uid: &str, name: &str) -> String {
        // Container names are DNS labels (no '_'): the id splits back unambiguously.
        format!("{uid}_{name}")
    }

    /// The sandbox's pause pid, if it runs.
    fn pause_pid(&self, uid: &str) -> Result<Option<u32>, RuntimeError> {
        Ok(self
            .runc
            .state(uid)?
            .filter(|s| s.status == "running" && s.pid > 0)
            .map(|s| s.pid as u32))
    }

    fn sandbox_ip(&self, uid: &str) -> Option<String> {
        std::fs::read_to_string(self.pod_dir(uid).join("sandbox").join("ip"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    fn annotations(spec: &SandboxSpec, kind: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (CONTAINER_TYPE.to_owned(), kind.to_owned()),
            (SANDBOX_UID.to_owned(), spec.uid.clone()),
            (SANDBOX_NAME.to_owned(), spec.name.clone()),
            (SANDBOX_NAMESPACE.to_owned(), spec.namespace.clone()),
        ])
    }

    fn create_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        let uid = &spec.uid;
        if !spec.host_network && spec.pod_cidr.is_none() {
            return Err(RuntimeError("the node has no pod CIDR yet".into()));
        }
        let began = Instant::now();
        let bundle = self.pod_dir(uid).join("sandbox");
        std::fs::create_dir_all(&bundle).map_err(io_err("creating the sandbox bundle"))?;
        let rootfs = self.cfg.state_dir.join("pause-rootfs");
        let network = match (spec.host_network, &self.cfg.node_netns) {
            (false, _) => SandboxNetwork::Own,
            (true, Some(node)) => SandboxNetwork::Join(node.to_string_lossy().into_owned()),
            (true, None) => SandboxNetwork::Inherit,
        };
        let config = oci::sandbox_spec(
            &spec.hostname,
            &network,
            &rootfs.to_string_lossy(),
            "/pause",
            &format!("{}/{uid}", self.pod_cgroup(uid)),
            Self::annotations(spec, "sandbox"),
        );
        write_json(&bundle.join("config.json"), &config)?;
        // The pod annotations again, for containers to carry.
        write_json(&bundle.join("pod.json"), &Self::annotations(spec, "sandbox"))?;
        self.runc.run_detached(uid, &bundle, &bundle.join("log"))?;
        let sandbox_ran = Instant::now();
        self.startup.add(uid, Phase::Sandbox, sandbox_ran - began);
        let attach = || -> Result<String, RuntimeError> {
            let pid = self
                .pause_pid(uid)?
                .ok_or_else(|| RuntimeError(format!("the pause process of {uid} is not running")))?;
            if spec.host_network {
                // The node's network: no CNI, and the pod's IP is the node's (status says so).
                return Ok(String::new());
            }
            let cidr = spec
                .pod_cidr
                .as_deref()
                .ok_or_else(|| RuntimeError("the node has no pod CIDR yet".into()))?;
            let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
            self.cni.add(uid, &netns, cidr, &spec.port_mappings)
        };
        let ip = match attach().and_then(|ip| self.write_etc_files(spec, &bundle, &ip).map(|()| ip)) {
            Ok(ip) => ip,
            Err(e) => {
                // Leave nothing half made: the next sync starts over.
                let _ = self.teardown(uid, 0);
                return Err(e);
            }
        };
        // Its presence is what lets a restarted kubelet adopt the sandbox (see `run_sandbox`), so it
        // is there whole or not at all.
        write_atomic(&bundle.join("ip"), ip.as_bytes()).map_err(io_err("recording the pod IP"))?;
        self.startup.add(uid, Phase::Network, sandbox_ran.elapsed());
        Ok(Sandbox { id: uid.clone(), ip })
    }

    /// The pod's /etc/hosts, /etc/hostname and /etc/resolv.conf, which every container of it mounts.
    fn write_etc_files(&self, spec: &SandboxSpec, bundle: &Path, ip: &str) -> Result<(), RuntimeError> {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let hostname = match spec.host_network {
            // The node's hostname (its UTS namespace is the one runc runs in).
            true => read(Path::new("/proc/sys/kernel/hostname")).trim().to_owned(),
            false => spec.hostname.clone(),
        };
        let hosts = dns::hosts_file(ip, &hostname, spec.host_network, &read(&self.cfg.hosts_file));
        let resolv = dns::pod_resolv_conf(
            &spec.dns,
            &spec.namespace,
            spec.host_network,
            &self.cfg.cluster_dns,
            &read(&self.cfg.resolv_conf),
        );
        for (file, text) in [
            ("hosts", hosts),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", resolv.render()),
        ] {
            std::fs::write(bundle.join(file), text).map_err(io_err(format!("writing the pod's {file}")))?;
        }
        Ok(())
    }

    /// The app containers of pod `uid` that runc knows, from one `runc list`.
    fn pod_containers(&self, uid: &str) -> Result<Vec<State>, RuntimeError> {
        Ok(self
            .runc
            .list()?
            .into_iter()
            .filter(|s| {
                s.annotation(SANDBOX_UID) == Some(uid) && s.annotation(CONTAINER_TYPE) == Some("container")
            })
            .collect())
    }

    /// A container's status from runc's view of it and the exit code its shim wrote.
    fn container_status(&self, uid: &str, state: &State) -> Container {
        let name = state.annotation(CONTAINER_NAME).unwrap_or_default().to_owned();
        let started_at = rfc3339_secs(&state.created);
        let exit_file = self.pod_dir(uid).join(&name).join("exit");
        // Stopped, but the shim has not written the code yet: still ending (not yet an unknown exit,
        // which a `Never` pod would take for a failure).
        let ending = state.status == "stopped" && !exit_file.exists() && self.shim_alive(uid, &name);
        let container_state = match state.status.as_str() {
            "stopped" if !ending => {
                let exit_code = std::fs::read_to_string(&exit_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    // Stopped, but its shim did not say how (it was killed too): unknown.
                    .unwrap_or(-1);
                let finished_at = std::fs::metadata(&exit_file)
                    .and_then(|m| m.modified())
                    .map(|t| {
                        chrono::DateTime::<chrono::Utc>::from(t)
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    })
                    .unwrap_or_else(|_| crate::now());
                // The kernel's OOM killer ended it: its cgroup (kept until the container is deleted)
                // counted a kill. Upstream reports that as OOMKilled whatever the exit code says.
                let cgroup = format!("{}/{}", self.pod_cgroup(uid), state.id);
                let reason = match (exit_code, oom_killed(&cgroup)) {
                    (0, _) => "Completed",
                    (_, true) => "OOMKilled",
                    _ => "Error",
                };
                ContainerState::Exited {
                    exit_code,
                    reason: reason.into(),
                    started_at,
                    finished_at,
                }
            }
            _ => ContainerState::Running { started_at },
        };
        let bundle = self.pod_dir(uid).join(&name);
        let restart_count = std::fs::read_to_string(bundle.join("restarts"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let last_state = std::fs::read_to_string(bundle.join("last.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<LastState>(&s).ok())
            .map(|l| ContainerState::Exited {
                exit_code: l.exit_code,
                reason: l.reason,
                started_at: l.started_at,
                finished_at: l.finished_at,
            });
        Container {
            name,
            id: format!("runc://{}", state.id),
            image: state.annotation(IMAGE_NAME).unwrap_or_default().to_owned(),
            state: container_state,
            restart_count,
            last_state,
        }
    }

    fn create_container(&self, uid: &str, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        let began = Instant::now();
        let pid = self
            .pause_pid(uid)?
            .ok_or_else(|| RuntimeError(format!("pod {uid} has no running sandbox")))?;
        let id = Self::container_id(uid, &spec.name);
        let mut restarts = 0;
        if let Some(state) = self.runc.state(&id)? {
            let current = self.container_status(uid, &state);
            let ContainerState::Exited {
                exit_code,
                reason,
                started_at,
                finished_at,
            } = current.state
            else {
                return Ok(current);
            };
            // A restart: the run that ended becomes the last state, the count goes up, and the old
            // container makes way for the new one (same id).
            let bundle = self.pod_dir(uid).join(&spec.name);
            let last = LastState {
                exit_code,
                reason,
                started_at,
                finished_at,
            };
            write_json(&bundle.join("last.json"), &last)?;
            restarts = current.restart_count + 1;
            self.runc.delete_force(&id)?;
        }
        let sandbox_meta: BTreeMap<String, String> =
            std::fs::read_to_string(self.pod_dir(uid).join("sandbox").join("pod.json"))
                .ok()
                .and_then(|s| serde_json::from_str(&s).ok())
                .unwrap_or_default();
        let mut annotations = sandbox_meta;
        annotations.insert(CONTAINER_TYPE.into(), "container".into());
        annotations.insert(SANDBOX_UID.into(), uid.into());
        annotations.insert(CONTAINER_NAME.into(), spec.name.clone());
        annotations.insert(IMAGE_NAME.into(), spec.image.clone());
        let hostname = self.sandbox_hostname(uid)?;
        let bundle = self.pod_dir(uid).join(&spec.name);
        std::fs::create_dir_all(&bundle).map_err(io_err("creating the container bundle"))?;
        // The image's rootfs (an overlay in the bundle), and the spec over its config.
        let image = self.cfg.images.prepare(&spec.image, &bundle)?;
        let rootfs = image.rootfs.clone();
        let applied;
        let spec = match &image.config {
            Some(config) => {
                applied = crate::images::config::apply(spec, config, &rootfs)?;
                &applied
            }
            None => spec,
        };
        let etc = self.pod_dir(uid).join("sandbox");
        let mut mounts: Vec<oci::Mount> = ["hosts", "hostname", "resolv.conf"]
            .iter()
            .map(|f| oci::bind_mount(&etc.join(f).to_string_lossy(), &format!("/etc/{f}")))
            .collect();
        // One /dev/shm for the pod's containers (as containerd shares the sandbox's): POSIX shared
        // memory goes with the IPC namespace they share. A directory of the pod, not a tmpfs of its
        // own as upstream mounts (64 MiB): nothing to unmount on the node, gone with the pod.
        let shm = etc.join("shm");
        std::fs::create_dir_all(&shm).map_err(io_err("creating the pod's /dev/shm"))?;
        let mut perms = std::fs::metadata(&shm)
            .map_err(io_err("reading the pod's /dev/shm"))?
            .permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o1777);
        std::fs::set_permissions(&shm, perms).map_err(io_err("opening the pod's /dev/shm to all"))?;
        mounts.push(oci::bind_mount(&shm.to_string_lossy(), "/dev/shm"));
        // The pod's volumes, as its volumeMounts say (crate::volumes set them up).
        mounts.extend(spec.mounts.iter().map(oci::volume_mount));
        let config = oci::container_spec(
            spec,
            &rootfs.to_string_lossy(),
            &hostname,
            pid,
            &format!("{}/{id}", self.pod_cgroup(uid)),
            &mounts,
            annotations,
        );
        write_json(&bundle.join("config.json"), &config)?;
        std::fs::write(bundle.join("restarts"), restarts.to_string())
            .map_err(io_err("recording restarts"))?;
        let exit_file = bundle.join("exit");
        // What the shim writes: the container's pid (runc's pid file, then the started file once
        // runc has returned) and its exit code.
        let (pid_file, started) = (bundle.join("init.pid"), bundle.join("started"));
        for file in [&exit_file, &pid_file, &started, &bundle.join("shim.pid")] {
            let _ = std::fs::remove_file(file);
        }
        // A fresh log per run, as upstream's `<restartCount>.log`; the previous run's is kept beside it.
        let log = bundle.join("log");
        if log.exists() {
            let _ = std::fs::rename(&log, bundle.join("previous.log"));
        }
        let spawning = Instant::now();
        self.startup.add(uid, Phase::ContainerCreate, spawning - began);
        let mut shim = self
            .runc
            .spawn_monitored(
                &self.cfg.shim,
                &[
                    exit_file.clone().into(),
                    log.clone().into(),
                    started.clone().into(),
                ],
                &id,
                &bundle,
                &pid_file,
                &bundle.join("shim.log"),
            )
            .map_err(io_err(format!("starting {}", self.cfg.shim.display())))?;
        // Its pid, to tell "still ending" from "ended without a word" later (even after a restart).
        let _ = std::fs::write(bundle.join("shim.pid"), shim.id().to_string());
        // Wait until the shim says runc has started it, or that it ended (a failed start) — files,
        // not `runc state` over and over: one runc process per start, not one per 5 ms.
        let deadline = Instant::now() + Duration::from_secs(10);
        let state = loop {
            if started.exists() {
                break self.runc.state(&id)?.ok_or_else(|| {
                    RuntimeError(format!(
                        "container {} of pod {uid} vanished as it started",
                        spec.name
                    ))
                });
            }
            if exit_file.exists() || matches!(shim.try_wait(), Ok(Some(_))) {
                if started.exists() {
                    continue; // Started, then ended at once.
                }
                if let Some(state) = self.runc.state(&id)? {
                    break Ok(state);
                }
                // runc's complaint is in the container's log (runc's stderr), the shim's in its own.
                let said = crate::logs::read_log_text(&log)
                    + &std::fs::read_to_string(bundle.join("shim.log")).unwrap_or_default();
                let lines: Vec<&str> = said.lines().collect();
                break Err(RuntimeError(format!(
                    "container {} of pod {uid} failed to start: {}",
                    spec.name,
                    lines[lines.len().saturating_sub(5)..].join("\n")
                )));
            }
            if Instant::now() > deadline {
                break Err(RuntimeError(format!(
                    "container {} of pod {uid} did not start in 10 s",
                    spec.name
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        // The shim is reaped by its own thread.
        std::thread::spawn(move || shim.wait());
        let state = state?;
        self.startup.add(uid, Phase::ContainerStart, spawning.elapsed());
        Ok(self.container_status(uid, &state))
    }

    /// Waits for init container `name` of pod `uid` to end (without the pod's lock, so a kill_pod can
    /// stop it meanwhile).
    fn wait_for_exit(&self, uid: &str, name: &str) -> Result<Container, RuntimeError> {
        let id = Self::container_id(uid, name);
        let exit_file = self.pod_dir(uid).join(name).join("exit");
        loop {
            // Ended once its shim has written the exit code (or is gone): only then ask runc.
            if !exit_file.exists() && self.shim_alive(uid, name) {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match self.runc.state(&id)? {
                None => {
                    return Err(RuntimeError(format!("container {name} of pod {uid} was removed")));
                }
                Some(state) if state.status == "stopped" => {
                    // Ended once its exit code is known (or its shim died without one).
                    let container = self.container_status(uid, &state);
                    if matches!(container.state, ContainerState::Exited { .. }) {
                        return Ok(container);
                    }
                }
                Some(_) => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the shim of container `name` of pod `uid` still runs.
    fn shim_alive(&self, uid: &str, name: &str) -> bool {
        let Ok(pid) = std::fs::read_to_string(self.pod_dir(uid).join(name).join("shim.pid")) else {
            return false;
        };
        // The pid is the shim's only while its command line says so (pids are reused).
        std::fs::read(format!("/proc/{}/cmdline", pid.trim()))
            .map(|cmd| String::from_utf8_lossy(&cmd).contains(SHIM_BINARY))
            .unwrap_or(false)
    }

    fn sandbox_hostname(&self, uid: &str) -> Result<String, RuntimeError> {
        std::fs::read_to_string(self.pod_dir(uid).join("sandbox").join("hostname"))
            .map(|h| h.trim().to_owned())
            .map_err(io_err("reading the pod's hostname"))
    }

    /// Stops and removes everything of pod `uid`: containers (TERM, up to `grace_seconds`, then
    /// KILL), the network, the sandbox, its files and cgroup. Safe to repeat.
    fn teardown(&self, uid: &str, grace_seconds: i64) -> Result<(), RuntimeError> {
        let containers = self.pod_containers(uid)?;
        for c in containers.iter().filter(|c| c.status == "running") {
            // Already gone between list and kill is fine.
            let _ = self.runc.kill(&c.id, "TERM", false);
        }
        let deadline = Instant::now() + Duration::from_secs(grace_seconds.max(0) as u64);
        let mut live: Vec<&State> = containers.iter().filter(|c| c.status == "running").collect();
        while !live.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            live.retain(|c| matches!(self.runc.state(&c.id), Ok(Some(s)) if s.status == "running"));
        }
        for c in &live {
            let _ = self.runc.kill(&c.id, "KILL", true);
        }
        for c in &containers {
            self.runc.delete_force(&c.id)?;
        }
        // The network goes while the pause process still holds the namespace, so the plugins can find
        // the veth and the masquerade rules made for its address.
        let netns = self
            .pause_pid(uid)?
            .map(|pid| PathBuf::from(format!("/proc/{pid}/ns/net")));
        self.cni.del(uid, netns.as_deref())?;
        self.runc.delete_force(uid)?;
        let dir = self.pod_dir(uid);
        // Containers' rootfs overlays (and whatever else is mounted in the pod's directory) first.
        crate::images::overlay::unmount_under(&dir)?;
        // Volumes mounted on the node (tmpfs emptyDirs, secrets) go before their directories.
        crate::volumes::unmount_all(&dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err(format!("removing {}", dir.display())))?;
        }
        remove_cgroup(&self.pod_cgroup(uid));
        Ok(())
    }
}

impl ContainerRuntime for RuncRuntime {
    fn version(&self) -> String {
        format!("runc://{}", self.version)
    }

    fn images(&self) -> Option<&crate::images::manager::ImageManager> {
        self.cfg.images.manager()
    }

    fn startup(&self) -> Option<&StartupTracker> {
        Some(&self.startup)
    }

    fn run_sandbox(&self, spec: &SandboxSpec) -> Result<Sandbox, RuntimeError> {
        let lock = self.lock(&spec.uid);
        let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        if self
            .killed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&spec.uid)
        {
            return Err(RuntimeError(format!("pod {} was killed", spec.uid)));
        }
        match (self.runc.state(&spec.uid)?, self.sandbox_ip(&spec.uid)) {
            // Adopted only whole: the pause process running and the IP recorded (a pod network's IP
            // is never empty; only a host-network pod records none).
            (Some(state), Some(ip)) if state.status == "running" && (spec.host_network || !ip.is_empty()) => {
                return Ok(Sandbox {
                    id: spec.uid.clone(),
                    ip,
                });
            }
            // A sandbox that died (or was half made) takes the pod's containers with it, as upstream
            // recreates the sandbox and then the containers.
            (None, None) => {}
            _ => self.teardown(&spec.uid, 0)?,
        }
        self.create_sandbox(spec)
    }

    fn start_container(&self, pod_uid: &str, spec: &ContainerSpec) -> Result<Container, RuntimeError> {
        let container = {
            let lock = self.lock(pod_uid);
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            self.create_container(pod_uid, spec)?
        };
        match container.state {
            // An init container runs to completion before the next one starts.
            ContainerState::Running { .. } if spec.init => self.wait_for_exit(pod_uid, &spec.name),
            _ => Ok(container),
        }
    }

    fn kill_pod(&self, pod_uid: &str, grace_seconds: i64) -> Result<(), RuntimeError> {
        let lock = self.lock(pod_uid);
        let result = {
            let _guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let mut killed = self.killed.lock().unwrap_or_else(|e| e.into_inner());
            if !killed.contains(&pod_uid.to_owned()) {
                if killed.len() == KILLED_REMEMBERED {
                    killed.pop_front();
                }
                killed.push_back(pod_uid.to_owned());
            }
            drop(killed);
            self.teardown(pod_uid, grace_seconds)
        };
        if result.is_ok() {
            self.locks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(pod_uid);
        }
        result
    }

    fn pod_status(&self, pod_uid: &str) -> Option<(Sandbox, Vec<Container>)> {
        self.runc.state(pod_uid).ok()??;
        let sandbox = Sandbox {
            id: pod_uid.to_owned(),
            ip: self.sandbox_ip(pod_uid)?,
        };
        let containers = self
            .pod_containers(pod_uid)
            .ok()?
            .iter()
            .map(|s| self.container_status(pod_uid, s))
            .collect();
        Some((sandbox, containers))
    }

    fn pods(&self) -> Vec<String> {
        self.runc
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|s| s.annotation(CONTAINER_TYPE) == Some("sandbox"))
            .filter_map(|s| s.annotation(SANDBOX_UID).map(str::to_owned))
            .collect()
    }

    fn volume_dir(&self, pod_uid: &str) -> Option<PathBuf> {
        Some(self.pod_dir(pod_uid).join("volumes"))
    }

    fn exec_sync(
        &self,
        pod_uid: &str,
        name: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<crate::runtime::ExecResult, RuntimeError> {
        crate::runc_exec::exec_sync(&self.runc, &Self::container_id(pod_uid, name), cmd, timeout)
    }

    fn stop_container(&self, pod_uid: &str, name: &str, grace_seconds: i64) -> Result<(), RuntimeError> {
        let exit_file = self.pod_dir(pod_uid).join(name).join("exit");
        let id = Self::container_id(pod_uid, name);
        crate::runc_exec::stop_container(&self.runc, &id, grace_seconds, &exit_file)
    }

    fn node_netns(&self) -> Option<PathBuf> {
        self.cfg.node_netns.clone()
    }

    fn relist(&self) -> Vec<(String, Vec<Container>)> {
        // One `runc list` for the whole node.
        let all = self.runc.list().unwrap_or_default();
        let mut pods: BTreeMap<String, Vec<Container>> = all
            .iter()
            .filter(|s| s.annotation(CONTAINER_TYPE) == Some("sandbox"))
            .filter_map(|s| Some((s.annotation(SANDBOX_UID)?.to_owned(), Vec::new())))
            .collect();
        for s in all
            .iter()
            .filter(|s| s.annotation(CONTAINER_TYPE) == Some("container"))
        {
            if let Some(containers) = s.annotation(SANDBOX_UID).and_then(|uid| pods.get_mut(uid)) {
                let uid = s.annotation(SANDBOX_UID).unwrap_or_default();
                containers.push(self.container_status(uid, s));
            }
        }
        pods.into_iter().collect()
    }
}

/// How a container's previous run ended, kept across its restart.
#[derive(serde::Serialize, serde::Deserialize)]
struct LastState {
    exit_code: i32,
    reason: String,
    started_at: String,
    finished_at: String,
}

/// Writes `path` whole or not at all, even when the kubelet is SIGKILLed in the middle or read
/// meanwhile: a temporary file beside it, renamed over it (a plain write truncates first, so a kill
/// between the truncation and the write leaves an empty file that reads as a valid, empty value).
/// Not fsynced: the page cache outlives the kubelet, and what a machine crash could lose belongs to
/// a sandbox that dies with the machine anyway (its pause pid is then gone or another process, runc
/// state says stopped and the sandbox is made again); an fsync would cost the start path 5-20 ms
/// per pod on the shared disk.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), RuntimeError> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| RuntimeError(e.to_string()))?;
    std::fs::write(path, text).map_err(io_err(format!("writing {}", path.display())))
}

/// `2026-11-22T14:04:35.836432397Z` → `2026-11-22T14:04:35Z` (metav1.Time has seconds).
fn rfc3339_secs(t: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| {
            d.with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|_| t.to_owned())
}

/// The cgroup of pod `uid` under `parent` (`/skiff` → `/skiff/pod<uid>`).
pub fn pod_cgroup(parent: &str, uid: &str) -> String {
    format!("{}/pod{uid}", parent.trim_end_matches('/'))
}

/// The cgroup of container `name` of pod `uid` under `parent` (`/skiff/pod<uid>/<uid>_<name>`).
pub fn container_cgroup(parent: &str, uid: &str, name: &str) -> String {
    format!(
        "{}/{}",
        pod_cgroup(parent, uid),
        RuncRuntime::container_id(uid, name)
    )
}

/// Whether the OOM killer killed a process of cgroup `path`: `oom_kill` in memory.events (cgroup v2)
/// or memory.oom_control (v1).
pub fn oom_killed(path: &str) -> bool {
    let rel = path.trim_start_matches('/');
    [
        format!("/sys/fs/cgroup/{rel}/memory.events"),
        format!("/sys/fs/cgroup/memory/{rel}/memory.oom_control"),
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(f).ok())
    .any(|text| oom_kills(&text) > 0)
}

/// The `oom_kill` count of a memory.events / memory.oom_control text.
fn oom_kills(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Removes the (empty) cgroup `path` and what is left below it from every hierarchy: each controller's
/// on cgroup v1, the unified one on v2. runc removes a container's own cgroup; the pod's and the
/// parent's are ours. Errors (not there, still busy) are ignored.
pub fn remove_cgroup(path: &str) {
    let rel = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut mounts = vec![root.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(root) {
        mounts.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for mount in mounts {
        remove_tree(&mount.join(rel));
    }
}

/// rmdir of a cgroup directory and its sub-cgroups, deepest first (cgroup files cannot be removed,
/// only directories).
fn remove_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_directories() {
        let dir = std::env::temp_dir().join(format!("skiff-images-unit-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("busybox")).unwrap();
        std::fs::create_dir_all(dir.join("nginx_1.27")).unwrap();
        let resolver = images_in_dir(dir.clone());
        let images = |i: &str| resolver.prepare(i, &dir).map(|p| p.rootfs);
        assert_eq!(images("busybox").unwrap(), dir.join("busybox"));
        assert_eq!(
            images("docker.io/library/busybox:1.36").unwrap(),
            dir.join("busybox")
        );
        assert_eq!(images("nginx:1.27").unwrap(), dir.join("nginx_1.27"));
        assert!(images("nginx").unwrap_err().0.contains("not found"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn oom_kills_are_read_from_either_cgroup_version() {
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"), 2);
        assert_eq!(
            oom_kills("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n"),
            1
        );
        assert_eq!(oom_kills("oom_kill_disable 0\n"), 0);
        assert!(!oom_killed("/no/such/cgroup"));
    }

    #[test]
    fn times_and_ids() {
        assert_eq!(
            rfc3339_secs("2026-11-22T14:04:35.836432397Z"),
            "2026-11-22T14:04:35Z"
        );
        assert_eq!(RuncRuntime::container_id("u-1", "web"), "u-1_web");
    }

    #[test]
    fn the_ip_file_is_replaced_whole() {
        let dir = std::env::temp_dir().join(format!("skiff-ip-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = dir.join("ip");
        write_atomic(&ip, b"10.244.0.7").unwrap();
        assert_eq!(std::fs::read_to_string(&ip).unwrap(), "10.244.0.7");
        // A writer killed before its rename leaves the old file (or none) and a temporary file that
        // the next write replaces.
        std::fs::write(dir.join(".ip.tmp"), "").unwrap();
        write_atomic(&ip, b"10.244.0.8").unwrap();
        assert_eq!(std::fs::read_to_string(&ip).unwrap(), "10.244.0.8");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["ip"], "no temporary file left");
        assert!(write_atomic(&dir.join("missing").join("ip"), b"x").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
