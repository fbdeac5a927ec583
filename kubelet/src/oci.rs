//! OCI runtime-spec `config.json` for pod sandboxes and app containers, the part of containerd's CRI
//! plugin that turns a pod into bundles (containerd `pkg/cri/server/sandbox_run.go` /
//! `container_create_linux.go` and `oci/spec.go` for the defaults). Only the fields skiff uses are
//! modelled; everything here is a pure function of its inputs.
//!
//! - The sandbox runs the pause binary in new network, IPC, UTS, mount and PID namespaces, with the
//!   pod's hostname and a read-only root filesystem holding nothing but pause.
//! - An app container joins the sandbox's network, IPC and UTS namespaces by path
//!   (`/proc/<pause-pid>/ns/…`), so a pod's containers share localhost, hostname and SysV IPC, and gets
//!   its own mount and PID namespaces.
//! - Both get runc's default mounts, masked and read-only paths, and containerd's default
//!   capabilities; requests and limits become cgroup settings the way the kubelet computes them
//!   (`pkg/kubelet/cm/helpers_linux.go`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::runtime::{ContainerSpec, Resources, SecurityContext};

/// The OCI runtime-spec version written.
pub const OCI_VERSION: &str = "1.0.2";

/// `PATH` for containers whose spec does not set one (containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capabilities (`oci/spec.go` defaultUnixCaps): what a container gets unless
/// its securityContext asks otherwise.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every Linux capability (what `privileged` and `add: [ALL]` give).
pub const ALL_CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The capabilities of a container with `security` (containerd's `WithAddedCapabilities` /
/// `WithDroppedCapabilities`): the defaults, less what it drops (`ALL`: everything), plus what it
/// adds; every capability when privileged. Kubernetes names (`NET_ADMIN`) gain the `CAP_` prefix.
pub fn capabilities(security: &SecurityContext) -> Vec<String> {
    let full = |c: &str| {
        let c = c.to_ascii_uppercase();
        if c.starts_with("CAP_") {
            c
        } else {
            format!("CAP_{c}")
        }
    };
    let is_all = |list: &[String]| list.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    if security.privileged || is_all(&security.add_capabilities) {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let mut caps: Vec<String> = if is_all(&security.drop_capabilities) {
        Vec::new()
    } else {
        let dropped: Vec<String> = security.drop_capabilities.iter().map(|c| full(c)).collect();
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !dropped.contains(c))
            .collect()
    };
    for c in security.add_capabilities.iter().map(|c| full(c)) {
        if !caps.contains(&c) {
            caps.push(c);
        }
    }
    caps
}

/// runc's default masked paths (`runc spec`): hidden behind /dev/null or an empty tmpfs.
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

/// runc's default read-only paths (`runc spec`).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// CFS period the kubelet uses (100 ms).
pub const CPU_PERIOD: u64 = 100_000;

/// A `config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// The runtime-spec version.
    pub oci_version: String,
    /// The process to run.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// The hostname (only for a container with its own UTS namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Filesystems mounted in the container.
    pub mounts: Vec<Mount>,
    /// Free-form labels; `runc state` reports them back (how a restarted kubelet learns whose a
    /// container is).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Linux specifics.
    pub linux: Linux,
}

/// `process`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    /// Whether a terminal is attached (never, for now).
    pub terminal: bool,
    /// Who it runs as.
    pub user: User,
    /// argv.
    pub args: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// Its capability sets.
    pub capabilities: Capabilities,
    /// Whether it may gain privileges (setuid binaries, file capabilities).
    pub no_new_privileges: bool,
}

/// `process.user`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// The user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
}

/// `process.capabilities`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The bounding set.
    pub bounding: Vec<String>,
    /// The effective set.
    pub effective: Vec<String>,
    /// The permitted set.
    pub permitted: Vec<String>,
}

/// `root`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Root {
    /// The root filesystem's path (absolute, or relative to the bundle).
    pub path: String,
    /// Mounted read-only.
    #[serde(default)]
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Where in the container.
    pub destination: String,
    /// The filesystem type (`proc`, `tmpfs`, `bind`…).
    #[serde(rename = "type")]
    pub kind: String,
    /// The device or directory mounted.
    pub source: String,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// `linux`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces to create (no path) or join (path).
    pub namespaces: Vec<Namespace>,
    /// The cgroup, relative to the cgroup root of each hierarchy.
    pub cgroups_path: String,
    /// cgroup settings.
    pub resources: LinuxResources,
    /// Paths hidden in the container.
    pub masked_paths: Vec<String>,
    /// Paths made read-only in the container.
    pub readonly_paths: Vec<String>,
}

/// One entry of `linux.namespaces`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Namespace {
    /// `network`, `ipc`, `uts`, `mount`, `pid`…
    #[serde(rename = "type")]
    pub kind: String,
    /// A namespace to join; a new one when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `linux.resources`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinuxResources {
    /// Device cgroup rules (deny all; runc adds its default allowed devices).
    pub devices: Vec<DeviceRule>,
    /// Memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Memory>,
    /// CPU shares and quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    /// Process count limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Pids>,
}

/// One device cgroup rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceRule {
    /// Allow or deny.
    pub allow: bool,
    /// `rwm` subset.
    pub access: String,
}

/// `linux.resources.memory`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// The limit in bytes.
    pub limit: i64,
}

/// `linux.resources.cpu`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Relative weight (cgroup v1 shares; runc converts to a v2 weight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<u64>,
    /// CFS quota in µs per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<i64>,
    /// CFS period in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
}

/// `linux.resources.pids`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pids {
    /// The most processes at once.
    pub limit: i64,
}

/// The network a sandbox has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxNetwork {
    /// Its own network and UTS namespaces (a pod network pod): CNI attaches it.
    Own,
    /// The node's network namespace at this path (`hostNetwork` on a node that is a namespace), and
    /// the UTS namespace runc runs in.
    Join(String),
    /// The network and UTS namespaces runc runs in (`hostNetwork` on a node that is the host).
    Inherit,
}

/// The pod sandbox: `pause` (its path inside `rootfs`) in new IPC, mount and PID namespaces and the
/// network `network` says (its own, with `hostname`; or the node's, whose hostname it keeps, as
/// containerd does for host-network pods), read-only root.
pub fn sandbox_spec(
    hostname: &str,
    network: &SandboxNetwork,
    rootfs: &str,
    pause: &str,
    cgroups_path: &str,
    annotations: BTreeMap<String, String>,
) -> Spec {
    let ns = |kind: &str, path: Option<&String>| Namespace {
        kind: kind.into(),
        path: path.cloned(),
    };
    let mut namespaces = vec![ns("pid", None)];
    match network {
        SandboxNetwork::Own => namespaces.extend([ns("network", None), ns("ipc", None), ns("uts", None)]),
        SandboxNetwork::Join(path) => namespaces.extend([ns("network", Some(path)), ns("ipc", None)]),
        SandboxNetwork::Inherit => namespaces.push(ns("ipc", None)),
    }
    namespaces.push(ns("mount", None));
    let own = *network == SandboxNetwork::Own;
    Spec {
        oci_version: OCI_VERSION.into(),
        process: Process {
            terminal: false,
            user: User::default(),
            args: vec![pause.into()],
            env: vec![DEFAULT_PATH.into()],
            cwd: "/".into(),
            capabilities: default_capabilities(),
            // pause needs nothing it could gain.
            no_new_privileges: true,
        },
        root: Root {
            path: rootfs.into(),
            readonly: true,
        },
        hostname: own.then(|| hostname.into()),
        mounts: default_mounts(),
        annotations,
        linux: Linux {
            namespaces,
            cgroups_path: cgroups_path.into(),
            resources: LinuxResources {
                devices: deny_all_devices(),
                // Upstream gives the sandbox the least weight (MinShares).
                cpu: Some(Cpu {
                    shares: Some(MIN_SHARES),
                    ..Default::default()
                }),
                ..Default::default()
            },
            masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
            readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
        },
    }
}

/// An app container of the pod whose pause process is `pause_pid`: joins its network, IPC and UTS
/// namespaces, has its own mount and PID namespaces, runs `spec`'s command from `rootfs`, with
/// `mounts` (the pod's /etc files, its shared /dev/shm) after runc's defaults, replacing any default of
/// the same destination.
pub fn container_spec(
    spec: &ContainerSpec,
    rootfs: &str,
    hostname: &str,
    pause_pid: u32,
    cgroups_path: &str,
    mounts: &[Mount],
    annotations: BTreeMap<String, String>,
) -> Spec {
    let join = |kind: &str, ns: &str| Namespace {
        kind: kind.into(),
        path: Some(format!("/proc/{pause_pid}/ns/{ns}")),
    };
    let new = |kind: &str| Namespace {
        kind: kind.into(),
        path: None,
    };
    // Without an image config yet, the command is what the pod says: command, then args.
    let args: Vec<String> = spec.command.iter().chain(&spec.args).cloned().collect();
    let mut env = Vec::new();
    if !spec.env.iter().any(|(k, _)| k == "PATH") {
        env.push(DEFAULT_PATH.to_owned());
    }
    // containerd sets HOSTNAME to the sandbox's hostname.
    env.push(format!("HOSTNAME={hostname}"));
    env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    let security = &spec.security;
    let caps = capabilities(security);
    let privileged = security.privileged;
    Spec {
        oci_version: OCI_VERSION.into(),
        process: Process {
            terminal: false,
            user: User {
                uid: security.run_as_user.unwrap_or(0),
                gid: security.run_as_group.unwrap_or(0),
            },
            args,
            env,
            cwd: spec.working_dir.clone().unwrap_or_else(|| "/".into()),
            capabilities: Capabilities {
                bounding: caps.clone(),
                effective: caps.clone(),
                permitted: caps,
            },
            // allowPrivilegeEscalation defaults to true.
            no_new_privileges: security.allow_privilege_escalation == Some(false) && !privileged,
        },
        root: Root {
            path: rootfs.into(),
            readonly: security.read_only_root_filesystem,
        },
        hostname: None,
        // A mount given for one of the defaults' destinations replaces it.
        mounts: default_mounts()
            .into_iter()
            .filter(|d| !mounts.iter().any(|m| m.destination == d.destination))
            .chain(mounts.iter().cloned())
            .collect(),
        annotations,
        linux: Linux {
            namespaces: vec![
                join("network", "net"),
                join("ipc", "ipc"),
                join("uts", "uts"),
                new("mount"),
                new("pid"),
            ],
            cgroups_path: cgroups_path.into(),
            resources: LinuxResources {
                // Privileged: every device (the default rule denies them all but runc's few).
                devices: vec![DeviceRule {
                    allow: privileged,
                    access: "rwm".into(),
                }],
                ..linux_resources(&spec.resources)
            },
            // Privileged containers see /proc and /sys unmasked, as upstream.
            masked_paths: if privileged {
                Vec::new()
            } else {
                MASKED_PATHS.iter().map(|p| p.to_string()).collect()
            },
            readonly_paths: if privileged {
                Vec::new()
            } else {
                READONLY_PATHS.iter().map(|p| p.to_string()).collect()
            },
        },
    }
}

/// The least cpu shares (upstream MinShares).
pub const MIN_SHARES: u64 = 2;
/// The most cpu shares (upstream MaxShares).
pub const MAX_SHARES: u64 = 262_144;
/// The smallest CFS quota upstream sets (1 ms).
pub const MIN_QUOTA: i64 = 1000;

/// Requests and limits as cgroup settings: shares from the cpu request (MilliCPUToShares), a quota
/// from the cpu limit (MilliCPUToQuota), the memory and pids limits as they are.
pub fn linux_resources(r: &Resources) -> LinuxResources {
    let shares = match r.cpu_request_milli.unwrap_or(0) {
        m if m <= 0 => MIN_SHARES,
        m => ((m as u64) * 1024 / 1000).clamp(MIN_SHARES, MAX_SHARES),
    };
    let quota = r
        .cpu_limit_milli
        .filter(|m| *m > 0)
        .map(|m| (m * CPU_PERIOD as i64 / 1000).max(MIN_QUOTA));
    LinuxResources {
        devices: deny_all_devices(),
        memory: r.memory_limit_bytes.map(|limit| Memory { limit }),
        cpu: Some(Cpu {
            shares: Some(shares),
            quota,
            period: quota.map(|_| CPU_PERIOD),
        }),
        pids: r.pids_limit.map(|limit| Pids { limit }),
    }
}

fn default_capabilities() -> Capabilities {
    let caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    Capabilities {
        bounding: caps.clone(),
        effective: caps.clone(),
        permitted: caps,
    }
}

fn deny_all_devices() -> Vec<DeviceRule> {
    vec![DeviceRule {
        allow: false,
        access: "rwm".into(),
    }]
}

/// A file or directory of the host bind-mounted at `destination` (how the pod's /etc/hosts,
/// /etc/hostname and /etc/resolv.conf get into each container, as containerd mounts them).
pub fn bind_mount(source: &str, destination: &str) -> Mount {
    Mount {
        destination: destination.into(),
        kind: "bind".into(),
        source: source.into(),
        options: vec!["rbind".into(), "rprivate".into(), "rw".into()],
    }
}

/// A volume mount of a container: a bind of the node's path, read-only if asked (runc remounts it).
pub fn volume_mount(m: &crate::runtime::VolumeMount) -> Mount {
    let mut mount = bind_mount(&m.host_path, &m.container_path);
    if m.read_only {
        mount.options = vec!["rbind".into(), "rprivate".into(), "ro".into()];
    }
    mount
}

/// runc's default mounts (`runc spec`): /proc, a tmpfs /dev with pts, shm and mqueue, a read-only
/// /sys and its cgroups.
pub fn default_mounts() -> Vec<Mount> {
    let mount = |destination: &str, kind: &str, source: &str, options: &[&str]| Mount {
        destination: destination.into(),
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|o| o.to_string()).collect(),
    };
    vec![
        mount("/proc", "proc", "proc", &[]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn annotations() -> BTreeMap<String, String> {
        BTreeMap::from([("io.kubernetes.pod.uid".to_owned(), "u1".to_owned())])
    }

    #[test]
    fn the_sandbox_gets_new_namespaces_a_hostname_and_a_read_only_root() {
        let spec = sandbox_spec(
            "web-1",
            &SandboxNetwork::Own,
            "/var/lib/skiff/pause",
            "/pause",
            "/skiff/podu1/u1",
            annotations(),
        );
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(v["ociVersion"], "1.0.2");
        assert_eq!(v["process"]["args"], json!(["/pause"]));
        assert_eq!(v["process"]["noNewPrivileges"], true);
        assert_eq!(
            v["root"],
            json!({ "path": "/var/lib/skiff/pause", "readonly": true })
        );
        assert_eq!(v["hostname"], "web-1");
        assert_eq!(
            v["linux"]["namespaces"],
            json!([{ "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" }, { "type": "mount" }])
        );
        assert_eq!(v["linux"]["cgroupsPath"], "/skiff/podu1/u1");
        assert_eq!(v["linux"]["resources"]["cpu"], json!({ "shares": 2 }));
        assert_eq!(v["annotations"]["io.kubernetes.pod.uid"], "u1");
        // It reads back as it was written.
        assert_eq!(serde_json::from_value::<Spec>(v).unwrap(), spec);
    }

    #[test]
    fn a_host_network_sandbox_joins_the_nodes_network_and_keeps_its_hostname() {
        let kinds = |network: SandboxNetwork| {
            let v = serde_json::to_value(sandbox_spec("h", &network, "/r", "/pause", "/c", BTreeMap::new()))
                .unwrap();
            assert!(
                v.get("hostname").is_none(),
                "{network:?} keeps the node's hostname"
            );
            v["linux"]["namespaces"].clone()
        };
        assert_eq!(
            kinds(SandboxNetwork::Join("/run/netns/node".into())),
            json!([{ "type": "pid" }, { "type": "network", "path": "/run/netns/node" }, { "type": "ipc" }, { "type": "mount" }])
        );
        assert_eq!(
            kinds(SandboxNetwork::Inherit),
            json!([{ "type": "pid" }, { "type": "ipc" }, { "type": "mount" }])
        );
    }

    #[test]
    fn an_app_container_joins_the_sandbox_namespaces_by_path() {
        let c = ContainerSpec {
            name: "web".into(),
            image: "busybox".into(),
            command: vec!["httpd".into()],
            args: vec!["-f".into(), "-p".into(), "8080".into()],
            env: vec![("GREETING".into(), "hi".into())],
            working_dir: Some("/www".into()),
            resources: Resources {
                cpu_request_milli: Some(250),
                cpu_limit_milli: Some(500),
                memory_limit_bytes: Some(64 << 20),
                pids_limit: Some(100),
            },
            init: false,
            security: SecurityContext::default(),
            mounts: Vec::new(),
        };
        let v = serde_json::to_value(container_spec(
            &c,
            "/images/busybox",
            "web-1",
            4242,
            "/skiff/podu1/u1_web",
            &[bind_mount("/var/lib/skiff/pods/u1/sandbox/hosts", "/etc/hosts")],
            annotations(),
        ))
        .unwrap();
        assert_eq!(
            v["linux"]["namespaces"],
            json!([
                { "type": "network", "path": "/proc/4242/ns/net" },
                { "type": "ipc", "path": "/proc/4242/ns/ipc" },
                { "type": "uts", "path": "/proc/4242/ns/uts" },
                { "type": "mount" },
                { "type": "pid" }
            ])
        );
        assert!(
            v.get("hostname").is_none(),
            "the hostname comes with the joined UTS namespace"
        );
        assert_eq!(v["process"]["args"], json!(["httpd", "-f", "-p", "8080"]));
        assert_eq!(
            v["process"]["env"],
            json!([DEFAULT_PATH, "HOSTNAME=web-1", "GREETING=hi"])
        );
        assert_eq!(v["process"]["cwd"], "/www");
        assert_eq!(v["root"], json!({ "path": "/images/busybox", "readonly": false }));
        assert_eq!(
            v["linux"]["resources"],
            json!({
                "devices": [{ "allow": false, "access": "rwm" }],
                "memory": { "limit": 67108864 },
                "cpu": { "shares": 256, "quota": 50000, "period": 100000 },
                "pids": { "limit": 100 }
            })
        );
        let caps = &v["process"]["capabilities"];
        assert_eq!(caps["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(caps["bounding"], caps["effective"]);
        assert!(
            caps["bounding"]
                .as_array()
                .unwrap()
                .contains(&json!("CAP_NET_BIND_SERVICE"))
        );
        assert!(
            !caps["bounding"]
                .as_array()
                .unwrap()
                .contains(&json!("CAP_SYS_ADMIN"))
        );
        let masked: Vec<&str> = v["linux"]["maskedPaths"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(masked.contains(&"/proc/kcore") && masked.contains(&"/sys/firmware"));
        assert_eq!(v["linux"]["readonlyPaths"][3], "/proc/sys");
        let destinations: Vec<&str> = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["destination"].as_str())
            .collect();
        assert_eq!(
            destinations,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup",
                "/etc/hosts"
            ]
        );
        assert_eq!(
            v["mounts"][7],
            json!({ "destination": "/etc/hosts", "type": "bind", "source": "/var/lib/skiff/pods/u1/sandbox/hosts",
                    "options": ["rbind", "rprivate", "rw"] })
        );
        assert_eq!(
            v["mounts"][5]["options"],
            json!(["nosuid", "noexec", "nodev", "ro"])
        );
    }

    #[test]
    fn security_contexts_set_user_capabilities_and_privilege() {
        let caps = |drop: &[&str], add: &[&str]| {
            capabilities(&SecurityContext {
                drop_capabilities: drop.iter().map(|c| c.to_string()).collect(),
                add_capabilities: add.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            })
        };
        assert_eq!(caps(&["ALL"], &["NET_BIND_SERVICE"]), ["CAP_NET_BIND_SERVICE"]);
        let fewer = caps(&["NET_RAW", "CAP_KILL"], &["NET_ADMIN"]);
        assert_eq!(fewer.len(), 13);
        assert!(!fewer.contains(&"CAP_NET_RAW".into()) && fewer.contains(&"CAP_NET_ADMIN".into()));
        assert_eq!(caps(&[], &["ALL"]).len(), ALL_CAPABILITIES.len());

        let spec = ContainerSpec {
            security: SecurityContext {
                run_as_user: Some(1000),
                run_as_group: Some(3000),
                read_only_root_filesystem: true,
                allow_privilege_escalation: Some(false),
                ..Default::default()
            },
            ..Default::default()
        };
        let v =
            serde_json::to_value(container_spec(&spec, "/r", "h", 1, "/c", &[], BTreeMap::new())).unwrap();
        assert_eq!(v["process"]["user"], json!({ "uid": 1000, "gid": 3000 }));
        assert_eq!(
            (
                v["root"]["readonly"].as_bool(),
                v["process"]["noNewPrivileges"].as_bool()
            ),
            (Some(true), Some(true))
        );

        let privileged = ContainerSpec {
            security: SecurityContext {
                privileged: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let v = serde_json::to_value(container_spec(
            &privileged,
            "/r",
            "h",
            1,
            "/c",
            &[],
            BTreeMap::new(),
        ))
        .unwrap();
        assert_eq!(
            v["process"]["capabilities"]["bounding"].as_array().unwrap().len(),
            ALL_CAPABILITIES.len()
        );
        assert_eq!(
            v["linux"]["resources"]["devices"],
            json!([{ "allow": true, "access": "rwm" }])
        );
        assert_eq!(
            (
                v["linux"]["maskedPaths"].clone(),
                v["linux"]["readonlyPaths"].clone()
            ),
            (json!([]), json!([]))
        );
    }

    #[test]
    fn a_mount_replaces_the_default_at_its_destination() {
        let shm = bind_mount("/var/lib/skiff/pods/u1/sandbox/shm", "/dev/shm");
        let spec = container_spec(
            &ContainerSpec::default(),
            "/r",
            "h",
            42,
            "/c",
            std::slice::from_ref(&shm),
            BTreeMap::new(),
        );
        let at_shm: Vec<&Mount> = spec
            .mounts
            .iter()
            .filter(|m| m.destination == "/dev/shm")
            .collect();
        assert_eq!(at_shm, [&shm]);
        assert_eq!(spec.mounts.len(), default_mounts().len());
    }

    #[test]
    fn a_path_in_env_replaces_the_default_and_no_limits_mean_least_shares() {
        let c = ContainerSpec {
            command: vec!["sh".into()],
            env: vec![("PATH".into(), "/bin".into())],
            ..Default::default()
        };
        let v = serde_json::to_value(container_spec(&c, "/r", "h", 1, "/c", &[], BTreeMap::new())).unwrap();
        assert_eq!(v["process"]["env"], json!(["HOSTNAME=h", "PATH=/bin"]));
        assert_eq!(v["linux"]["resources"]["cpu"], json!({ "shares": 2 }));
        assert!(v["linux"]["resources"].get("memory").is_none());
        // Tiny limits still get upstream's floors; huge requests its ceiling.
        let tiny = linux_resources(&Resources {
            cpu_request_milli: Some(1),
            cpu_limit_milli: Some(1),
            ..Default::default()
        });
        assert_eq!(
            tiny.cpu.unwrap(),
            Cpu {
                shares: Some(2),
                quota: Some(1000),
                period: Some(100_000)
            }
        );
        let huge = linux_resources(&Resources {
            cpu_request_milli: Some(1_000_000),
            ..Default::default()
        });
        assert_eq!(huge.cpu.unwrap().shares, Some(MAX_SHARES));
    }
}
