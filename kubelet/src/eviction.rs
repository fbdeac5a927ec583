//! Node pressure: the kubelet's eviction manager, as upstream's pkg/kubelet/eviction.
//!
//! This module owns the *hard eviction thresholds* (`--eviction-hard`, [`parse_thresholds`]), the
//! *signals* they are compared with ([`NodeStats`], read for real by [`SystemStats`]), the node's
//! *pressure conditions* (MemoryPressure, DiskPressure, PIDPressure: [`Manager::synchronize`], which
//! holds a condition True for `--eviction-pressure-transition-period` after its threshold was last
//! crossed), and *evicting* pods while a threshold is crossed: one pod per monitoring interval (10 s,
//! upstream's housekeeping), chosen by [`rank`] (upstream's `rankMemoryPressure`,
//! `rankDiskPressureFunc`, `rankPIDPressure`), killed, and left Failed with reason `Evicted`, a
//! `DisruptionTarget` condition (reason `TerminationByKubelet`) and an `Evicted` event
//! ([`evicted_status`]). The pod is not deleted: its ReplicaSet sees it Failed and replaces it.
//!
//! The signals, as upstream names them:
//! - `memory.available`: the machine's MemTotal minus the working set of the root memory cgroup
//!   (usage minus inactive file pages: `memory.usage_in_bytes` and `total_inactive_file` on cgroup
//!   v1, `memory.current` and `inactive_file` on v2), as upstream's summary API computes it. Where
//!   the root cgroup has no usage file (a cgroup-v2 root has no `memory.current`) it falls back to
//!   /proc/meminfo's `MemAvailable`, the kernel's own estimate.
//! - `nodefs.available` and `nodefs.inodesFree`: statvfs of the kubelet's data directory.
//! - `pid.available`: `kernel.pid_max` minus the tasks that exist (/proc/loadavg's count, the same
//!   number upstream reads through sysinfo).
//!
//! The node lifecycle controller turns the conditions into the `node.kubernetes.io/memory-pressure`,
//! `disk-pressure` and `pid-pressure` NoSchedule taints (upstream's TaintNodesByCondition), as
//! upstream does; the kubelet only reports the conditions.
//!
//! While a condition holds, new pods are admitted as upstream's `Admit` says ([`admit`]): under
//! memory pressure alone only pods that are not BestEffort (or tolerate the memory-pressure taint),
//! under disk or PID pressure none; a rejected pod is left Failed with reason `Evicted`.
//!
//! Not mirrored: soft thresholds with grace periods, `--eviction-minimum-reclaim`, image garbage
//! collection as node-level reclaim before evicting, and the imagefs signals (images live on the
//! nodefs here).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::pod_workers::PodWorkers;

/// The default hard thresholds: upstream's on Linux (less the imagefs ones: images share the
/// nodefs), with k3s's 5% of free disk instead of upstream's 10%. A small node's disk is often a
/// shared one (a laptop's, a build machine's), where 10% free is tens of gigabytes other programs
/// may well be using; k3s made the same choice for the same users.
pub const DEFAULT_EVICTION_HARD: &str = "memory.available<100Mi,nodefs.available<5%,nodefs.inodesFree<5%";
/// The thresholds of the nodes that benchmarks and tests start on a development or CI machine:
/// every signal kept, but a fixed 1 GiB of free disk rather than a share of it, so a cluster under
/// test does not report DiskPressure (and reject every pod) because the machine's shared disk is
/// nearly full of other builds.
pub const SHARED_MACHINE_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<1Gi,nodefs.inodesFree<5%";
/// How long a pressure condition stays after its threshold was last crossed (upstream: 5 min).
pub const DEFAULT_PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);
/// How often the manager looks (upstream's housekeeping interval, 10 s).
pub const DEFAULT_MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// The grace period a pod evicted for a hard threshold gets (upstream's
/// `immediateEvictionGracePeriodSeconds`).
pub const IMMEDIATE_EVICTION_GRACE_PERIOD_SECONDS: i64 = 1;
/// Pods at or above this priority (`system-cluster-critical`'s) are critical and never evicted.
pub const SYSTEM_CRITICAL_PRIORITY: i64 = 2_000_000_000;

/// What the manager watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// `memory.available`.
    MemoryAvailable,
    /// `nodefs.available`.
    NodeFsAvailable,
    /// `nodefs.inodesFree`.
    NodeFsInodesFree,
    /// `pid.available`.
    PidAvailable,
}

impl Signal {
    /// Every signal, in upstream's eviction priority (memory first).
    pub const ALL: [Signal; 4] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::PidAvailable,
    ];

    /// Its name in `--eviction-hard`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource it measures (upstream's `signalToResource`), as eviction messages name it and
    /// as pods request it.
    pub fn resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// The node condition it drives (upstream's `signalToNodeCondition`).
    pub fn condition(self) -> Condition {
        match self {
            Signal::MemoryAvailable => Condition::MemoryPressure,
            Signal::NodeFsAvailable | Signal::NodeFsInodesFree => Condition::DiskPressure,
            Signal::PidAvailable => Condition::PidPressure,
        }
    }

    /// Whether its amounts are bytes (printed as binary quantities) rather than counts.
    fn bytes(self) -> bool {
        matches!(self, Signal::MemoryAvailable | Signal::NodeFsAvailable)
    }

    fn format(self, n: u64) -> String {
        if self.bytes() {
            format_bytes(n)
        } else {
            n.to_string()
        }
    }
}

/// A node pressure condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Condition {
    /// `MemoryPressure`.
    MemoryPressure,
    /// `DiskPressure`.
    DiskPressure,
    /// `PIDPressure`.
    PidPressure,
}

/// Which pressure conditions hold; what the Node's status reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pressure {
    /// MemoryPressure is True.
    pub memory: bool,
    /// DiskPressure is True.
    pub disk: bool,
    /// PIDPressure is True.
    pub pid: bool,
}

impl Pressure {
    fn set(&mut self, c: Condition) {
        match c {
            Condition::MemoryPressure => self.memory = true,
            Condition::DiskPressure => self.disk = true,
            Condition::PidPressure => self.pid = true,
        }
    }
}

/// A threshold's value: an amount, or a percentage of the signal's capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ThresholdValue {
    /// Bytes, or a count (inodes, pids).
    Quantity(u64),
    /// A fraction of capacity, 0.0 to 1.0 (`10%` → 0.1).
    Percentage(f64),
}

/// One hard threshold: the signal is under pressure while what is available is below the value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Threshold {
    /// What is measured.
    pub signal: Signal,
    /// Below what.
    pub value: ThresholdValue,
}

impl Threshold {
    /// The threshold as an amount, given the signal's capacity (upstream's `GetThresholdQuantity`).
    pub fn quantity(&self, capacity: u64) -> u64 {
        match self.value {
            ThresholdValue::Quantity(q) => q,
            ThresholdValue::Percentage(p) => (capacity as f64 * p) as u64,
        }
    }

    /// Whether `observed` crosses it.
    pub fn met(&self, observed: &Observation) -> bool {
        observed.available < self.quantity(observed.capacity)
    }
}

/// Parses `--eviction-hard` (upstream's `ParseThresholdConfig` for hard thresholds):
/// `signal<value` pairs separated by commas, values as quantities (`100Mi`, `1000`) or
/// percentages (`10%`). Empty means no thresholds.
pub fn parse_thresholds(spec: &str) -> Result<Vec<Threshold>, String> {
    let mut out: Vec<Threshold> = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, value) = item
            .split_once('<')
            .ok_or_else(|| format!("{item:?}: expected <signal><<value>, as memory.available<100Mi"))?;
        let signal = Signal::ALL
            .into_iter()
            .find(|s| s.name() == name.trim())
            .ok_or_else(|| format!("{item:?}: unsupported eviction signal {:?}", name.trim()))?;
        let value = value.trim();
        let value = match value.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p
                    .parse()
                    .map_err(|_| format!("{item:?}: invalid percentage {value:?}"))?;
                if !(0.0..=100.0).contains(&p) || p == 0.0 {
                    return Err(format!(
                        "{item:?}: eviction percentage must be more than 0% and at most 100%"
                    ));
                }
                ThresholdValue::Percentage(p / 100.0)
            }
            None => {
                let q = crate::runtime::parse_quantity(value)
                    .ok_or_else(|| format!("{item:?}: invalid quantity {value:?}"))?;
                if q < 0.0 {
                    return Err(format!("{item:?}: eviction threshold must be positive"));
                }
                ThresholdValue::Quantity(q.ceil() as u64)
            }
        };
        if out.iter().any(|t| t.signal == signal) {
            return Err(format!(
                "found duplicate eviction threshold for signal {}",
                signal.name()
            ));
        }
        out.push(Threshold { signal, value });
    }
    Ok(out)
}

/// A quantity of bytes as upstream prints a binary-SI quantity: the largest binary suffix that
/// divides it (`100Mi`, `81920Ki`), else plain bytes.
pub fn format_bytes(n: u64) -> String {
    if n == 0 {
        return "0".into();
    }
    for (suffix, shift) in [
        ("Ei", 60),
        ("Pi", 50),
        ("Ti", 40),
        ("Gi", 30),
        ("Mi", 20),
        ("Ki", 10),
    ] {
        if n.trailing_zeros() >= shift {
            return format!("{}{suffix}", n >> shift);
        }
    }
    n.to_string()
}

/// What a signal measures now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// What is left.
    pub available: u64,
    /// The whole (percentages are of this).
    pub capacity: u64,
}

/// Observations by signal (a signal that could not be read is missing).
pub type Observations = HashMap<Signal, Observation>;

/// What a pod uses of a resource: the whole pod, and its containers where known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// The pod's usage.
    pub total: u64,
    /// Its containers', by name.
    pub containers: Vec<(String, u64)>,
}

/// Where the manager's numbers come from (upstream's summary provider); the real one reads the
/// machine, tests use a fake.
pub trait NodeStats: Send + Sync + std::fmt::Debug {
    /// The node's signals now.
    fn observe(&self) -> Observations;
    /// What pod `uid` (with containers `containers`) uses of the resource `signal` measures, if
    /// known.
    fn pod_usage(&self, uid: &str, containers: &[String], signal: Signal) -> Option<PodUsage>;
}

/// The machine's numbers: /proc, the cgroup filesystem, statvfs of the data directory.
#[derive(Clone, Debug)]
pub struct SystemStats {
    /// The kubelet's data directory (its filesystem is the nodefs); pods live in `pods/<uid>`.
    pub data_dir: PathBuf,
    /// The cgroup pods go under ([`crate::runc_runtime::RuncConfig::cgroup_parent`]).
    pub cgroup_parent: String,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

impl SystemStats {
    /// The numbers of a node whose runtime is set up as `cfg` says.
    pub fn for_runc(cfg: &crate::runc_runtime::RuncConfig) -> Self {
        Self {
            data_dir: cfg.state_dir.clone(),
            cgroup_parent: cfg.cgroup_parent.clone(),
        }
    }

    /// The working set of cgroup `rel` ("" for the root), from either cgroup version.
    fn working_set(rel: &str) -> Option<u64> {
        let rel = rel.trim_start_matches('/');
        let v1 = Path::new(CGROUP_ROOT).join("memory").join(rel);
        if let Ok(usage) = std::fs::read_to_string(v1.join("memory.usage_in_bytes")) {
            let stat = std::fs::read_to_string(v1.join("memory.stat")).unwrap_or_default();
            return Some(working_set(usage.trim().parse().ok()?, &stat, true));
        }
        let v2 = Path::new(CGROUP_ROOT).join(rel);
        let usage = std::fs::read_to_string(v2.join("memory.current")).ok()?;
        let stat = std::fs::read_to_string(v2.join("memory.stat")).unwrap_or_default();
        Some(working_set(usage.trim().parse().ok()?, &stat, false))
    }

    fn pids(rel: &str) -> Option<u64> {
        let rel = rel.trim_start_matches('/');
        [
            Path::new(CGROUP_ROOT).join("pids").join(rel),
            Path::new(CGROUP_ROOT).join(rel),
        ]
        .iter()
        .find_map(|d| std::fs::read_to_string(d.join("pids.current")).ok())
        .and_then(|s| s.trim().parse().ok())
    }
}

impl NodeStats for SystemStats {
    fn observe(&self) -> Observations {
        let mut out = Observations::new();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        if let Some(total) = meminfo_bytes(&meminfo, "MemTotal") {
            let available = match Self::working_set("") {
                Some(ws) => Some(total.saturating_sub(ws)),
                None => meminfo_bytes(&meminfo, "MemAvailable"),
            };
            if let Some(available) = available {
                out.insert(
                    Signal::MemoryAvailable,
                    Observation {
                        available,
                        capacity: total,
                    },
                );
            }
        }
        if let Ok(fs) = nix::sys::statvfs::statvfs(&self.data_dir) {
            let frsize = fs.fragment_size();
            out.insert(
                Signal::NodeFsAvailable,
                Observation {
                    available: fs.blocks_available() * frsize,
                    capacity: fs.blocks() * frsize,
                },
            );
            // Filesystems without inode limits (btrfs…) report none: no signal.
            if fs.files() > 0 {
                out.insert(
                    Signal::NodeFsInodesFree,
                    Observation {
                        available: fs.files_free(),
                        capacity: fs.files(),
                    },
                );
            }
        }
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let tasks = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| loadavg_tasks(&s));
        if let (Some(max), Some(tasks)) = (pid_max, tasks) {
            out.insert(
                Signal::PidAvailable,
                Observation {
                    available: max.saturating_sub(tasks),
                    capacity: max,
                },
            );
        }
        out
    }

    fn pod_usage(&self, uid: &str, containers: &[String], signal: Signal) -> Option<PodUsage> {
        let pod_cgroup = crate::runc_runtime::pod_cgroup(&self.cgroup_parent, uid);
        match signal {
            Signal::MemoryAvailable => Some(PodUsage {
                total: Self::working_set(&pod_cgroup)?,
                containers: containers
                    .iter()
                    .filter_map(|name| {
                        let cg = crate::runc_runtime::container_cgroup(&self.cgroup_parent, uid, name);
                        Some((name.clone(), Self::working_set(&cg)?))
                    })
                    .collect(),
            }),
            Signal::NodeFsAvailable | Signal::NodeFsInodesFree => {
                let dir = self.data_dir.join("pods").join(uid);
                let (bytes, inodes) = dir_usage(&dir)?;
                Some(PodUsage {
                    total: if signal == Signal::NodeFsAvailable {
                        bytes
                    } else {
                        inodes
                    },
                    containers: Vec::new(),
                })
            }
            Signal::PidAvailable => Some(PodUsage {
                total: Self::pids(&pod_cgroup)?,
                containers: Vec::new(),
            }),
        }
    }
}

/// A `Key:   123 kB` line of /proc/meminfo, in bytes.
pub fn meminfo_bytes(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    })
}

/// A cgroup's working set: its usage less its inactive file pages (`total_inactive_file` in a
/// cgroup-v1 memory.stat, which counts the whole subtree; `inactive_file` on v2).
pub fn working_set(usage: u64, memory_stat: &str, v1: bool) -> u64 {
    let key = if v1 {
        "total_inactive_file"
    } else {
        "inactive_file"
    };
    let inactive = memory_stat
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<u64>().ok())?
        })
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// The number of tasks that exist, from /proc/loadavg (`0.1 0.2 0.3 5/130 30856` → 130).
pub fn loadavg_tasks(loadavg: &str) -> Option<u64> {
    loadavg.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()
}

/// Bytes and inodes under `dir`, not crossing into other filesystems (the containers' overlay
/// root filesystems, tmpfs volumes): the pod's own ephemeral storage.
fn dir_usage(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let top = std::fs::symlink_metadata(dir).ok()?;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != top.dev() {
                continue;
            }
            bytes += meta.blocks() * 512;
            inodes += 1;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Some((bytes, inodes))
}

/// How the manager is tuned.
#[derive(Clone, Debug)]
pub struct EvictionConfig {
    /// The hard thresholds (`--eviction-hard`).
    pub thresholds: Vec<Threshold>,
    /// How long a condition stays True after its threshold was last crossed
    /// (`--eviction-pressure-transition-period`).
    pub pressure_transition_period: Duration,
    /// How often signals are read and at most one pod is evicted.
    pub monitoring_interval: Duration,
    /// Where the numbers come from.
    pub stats: Arc<dyn NodeStats>,
}

impl EvictionConfig {
    /// Upstream's defaults over `stats`.
    pub fn new(stats: Arc<dyn NodeStats>) -> Self {
        Self {
            thresholds: parse_thresholds(DEFAULT_EVICTION_HARD).unwrap_or_default(),
            pressure_transition_period: DEFAULT_PRESSURE_TRANSITION_PERIOD,
            monitoring_interval: DEFAULT_MONITORING_INTERVAL,
            stats,
        }
    }
}

/// The manager's memory between passes: when each condition was last seen (upstream's
/// `nodeConditionsLastObservedAt`).
#[derive(Debug, Default)]
pub struct Manager {
    last_observed: HashMap<Condition, Instant>,
}

/// What one pass found.
#[derive(Debug, PartialEq)]
pub struct Synchronized {
    /// The thresholds crossed now, memory first.
    pub met: Vec<Threshold>,
    /// The conditions to report: crossed now, or within the transition period.
    pub pressure: Pressure,
}

impl Manager {
    /// One pass of upstream's `synchronize` up to choosing what to reclaim: which thresholds the
    /// observations cross, and which conditions hold at `now` given `transition`.
    pub fn synchronize(
        &mut self,
        thresholds: &[Threshold],
        observations: &Observations,
        transition: Duration,
        now: Instant,
    ) -> Synchronized {
        let mut met: Vec<Threshold> = thresholds
            .iter()
            .filter(|t| observations.get(&t.signal).is_some_and(|o| t.met(o)))
            .copied()
            .collect();
        met.sort_by_key(|t| t.signal);
        for t in &met {
            self.last_observed.insert(t.signal.condition(), now);
        }
        let mut pressure = Pressure::default();
        for (condition, at) in &self.last_observed {
            if now.saturating_duration_since(*at) < transition
                || met.iter().any(|t| t.signal.condition() == *condition)
            {
                pressure.set(*condition);
            }
        }
        self.last_observed.retain(|c, at| {
            now.saturating_duration_since(*at) < transition || met.iter().any(|t| t.signal.condition() == *c)
        });
        Synchronized { met, pressure }
    }
}

/// The node's pressure as the manager last found it, shared with the node status loop, which
/// posts the Node's status at once when it changes.
#[derive(Debug, Default)]
pub struct NodePressure {
    state: Mutex<Pressure>,
    /// Woken when the pressure changes.
    pub changed: Notify,
}

impl NodePressure {
    /// The pressure now.
    pub fn get(&self) -> Pressure {
        *self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets it; wakes the status loop if it changed.
    pub fn set(&self, p: Pressure) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if *state != p {
            *state = p;
            self.changed.notify_one();
        }
    }
}

/// Whether a new pod may start on a node under `pressure` (upstream's eviction `Admit`): None if so,
/// else the rejection message ("The node had condition: [MemoryPressure]. ").
pub fn admit(pod: &Value, pressure: Pressure) -> Option<String> {
    let mut conditions = Vec::new();
    for (on, name) in [
        (pressure.memory, "MemoryPressure"),
        (pressure.disk, "DiskPressure"),
        (pressure.pid, "PIDPressure"),
    ] {
        if on {
            conditions.push(name);
        }
    }
    if conditions.is_empty() || priority(pod) >= SYSTEM_CRITICAL_PRIORITY {
        return None;
    }
    if conditions == ["MemoryPressure"] {
        let tolerates = pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                let key = t["key"].as_str().unwrap_or_default();
                let effect = t["effect"].as_str().unwrap_or_default();
                let exists = t["operator"] == "Exists";
                (key == "node.kubernetes.io/memory-pressure" || (key.is_empty() && exists))
                    && (effect.is_empty() || effect == "NoSchedule")
            });
        if crate::status::qos_class(pod) != "BestEffort" || tolerates {
            return None;
        }
    }
    Some(format!("The node had condition: [{}]. ", conditions.join(" ")))
}

/// A pod the manager may evict, with what it uses of the resource to reclaim.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The pod (JSON).
    pub pod: Value,
    /// What it uses, if known.
    pub usage: Option<PodUsage>,
}

/// The sum of the pod's containers' requests of `resource`, in plain units.
fn pod_request(pod: &Value, resource: &str) -> u64 {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| container_request(c, resource))
        .sum()
}

fn container_request(c: &Value, resource: &str) -> u64 {
    c["resources"]["requests"][resource]
        .as_str()
        .and_then(crate::runtime::parse_quantity)
        .map_or(0, |q| q.max(0.0) as u64)
}

fn priority(pod: &Value) -> i64 {
    pod["spec"]["priority"].as_i64().unwrap_or(0)
}

/// Orders `candidates` for reclaiming what `signal` measures, the first to be evicted first, as
/// upstream's rank functions do: pods without stats first, then pods using more than they request
/// (not for pids, which nothing requests), then lower priority, then more usage above the request.
pub fn rank(candidates: &mut [Candidate], signal: Signal) {
    let resource = signal.resource();
    let above = |c: &Candidate| -> i128 {
        let used = c.usage.as_ref().map_or(0, |u| u.total) as i128;
        used - pod_request(&c.pod, resource) as i128
    };
    candidates.sort_by(|a, b| {
        let unknown = |c: &Candidate| c.usage.is_none();
        let exceeds = |c: &Candidate| signal != Signal::PidAvailable && above(c) > 0;
        unknown(b)
            .cmp(&unknown(a))
            .then_with(|| exceeds(b).cmp(&exceeds(a)))
            .then_with(|| priority(&a.pod).cmp(&priority(&b.pod)))
            .then_with(|| above(b).cmp(&above(a)))
    });
}

/// Upstream's eviction message: "The node was low on resource: memory. Threshold quantity: 100Mi,
/// available: 80Mi. Container x was using 200Mi, request is 0, has larger consumption of memory. "
pub fn eviction_message(
    threshold: &Threshold,
    observed: &Observation,
    pod: &Value,
    usage: Option<&PodUsage>,
) -> String {
    let signal = threshold.signal;
    let resource = signal.resource();
    let mut message = format!(
        "The node was low on resource: {resource}. Threshold quantity: {}, available: {}. ",
        signal.format(threshold.quantity(observed.capacity)),
        signal.format(observed.available)
    );
    if matches!(signal, Signal::MemoryAvailable | Signal::NodeFsAvailable) {
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let Some(name) = c["name"].as_str() else { continue };
            let used = usage.and_then(|u| u.containers.iter().find(|(n, _)| n == name).map(|(_, b)| *b));
            let request = container_request(c, resource);
            if let Some(used) = used
                && used > request
            {
                message += &format!(
                    "Container {name} was using {}, request is {}, has larger consumption of {resource}. ",
                    format_bytes(used),
                    format_bytes(request)
                );
            }
        }
    }
    message
}

/// The status of a pod the kubelet evicted: Failed, reason Evicted, its containers terminated, not
/// ready, and a DisruptionTarget condition (reason TerminationByKubelet), as upstream's eviction
/// manager and status manager write it.
pub fn evicted_status(pod: &Value, message: &str, now: &str) -> Value {
    let old = &pod["status"];
    let mut conditions: Vec<Value> = old["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "DisruptionTarget")
        .map(|mut c| {
            if (c["type"] == "Ready" || c["type"] == "ContainersReady") && c["status"] != "False" {
                c["status"] = json!("False");
                c["reason"] = json!("PodFailed");
                c["lastTransitionTime"] = json!(now);
            }
            c
        })
        .collect();
    conditions.push(
        json!({ "type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet",
                            "message": message, "lastTransitionTime": now }),
    );
    let terminate = |statuses: &Value| -> Value {
        let list: Vec<Value> = statuses
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut s| {
                if s["state"].get("terminated").is_none() {
                    let started = s["state"]["running"]["startedAt"].clone();
                    let mut terminated = json!({ "exitCode": 137, "reason": "Error", "finishedAt": now });
                    if !started.is_null() {
                        terminated["startedAt"] = started;
                    }
                    if let Some(id) = s["containerID"].as_str() {
                        terminated["containerID"] = json!(id);
                    }
                    s["state"] = json!({ "terminated": terminated });
                }
                s["ready"] = json!(false);
                s["started"] = json!(false);
                s
            })
            .collect();
        json!(list)
    };
    let mut status = old
        .as_object()
        .cloned()
        .map(Value::Object)
        .unwrap_or_else(|| json!({}));
    status["phase"] = json!("Failed");
    status["reason"] = json!("Evicted");
    status["message"] = json!(message);
    status["conditions"] = json!(conditions);
    for field in ["containerStatuses", "initContainerStatuses"] {
        if !old[field].is_null() {
            status[field] = terminate(&old[field]);
        }
    }
    status
}

/// Whether the manager may evict `pod`: it is not done or going, not critical.
fn evictable(pod: &Value) -> bool {
    let deleting = pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    !deleting
        && !matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
        && priority(pod) < SYSTEM_CRITICAL_PRIORITY
}

/// The manager's loop (upstream's `Start`): every `monitoring_interval` it reads the signals,
/// reports the conditions, and while a threshold is crossed evicts the first pod of the ranking.
pub async fn run(config: EvictionConfig, workers: Arc<PodWorkers>, pressure: Arc<NodePressure>) {
    let mut manager = Manager::default();
    let mut tick = tokio::time::interval(config.monitoring_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let stats = config.stats.clone();
        let Ok(observations) = tokio::task::spawn_blocking(move || stats.observe()).await else {
            continue;
        };
        let found = manager.synchronize(
            &config.thresholds,
            &observations,
            config.pressure_transition_period,
            Instant::now(),
        );
        if found.pressure != pressure.get() {
            tracing::info!(node = %workers.node().node, pressure = ?found.pressure, "node pressure changed");
        }
        pressure.set(found.pressure);
        let Some(threshold) = found.met.first().copied() else {
            continue;
        };
        let Some(observed) = observations.get(&threshold.signal).copied() else {
            continue;
        };
        tracing::warn!(
            signal = threshold.signal.name(),
            available = observed.available,
            "eviction threshold crossed"
        );
        let pods: Vec<Value> = workers.pods().into_iter().filter(evictable).collect();
        let stats = config.stats.clone();
        let signal = threshold.signal;
        let Ok(mut candidates) = tokio::task::spawn_blocking(move || {
            pods.into_iter()
                .map(|pod| {
                    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
                    let names: Vec<String> = pod["spec"]["containers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["name"].as_str().map(str::to_owned))
                        .collect();
                    let usage = stats.pod_usage(&uid, &names, signal);
                    Candidate { pod, usage }
                })
                .collect::<Vec<_>>()
        })
        .await
        else {
            continue;
        };
        rank(&mut candidates, signal);
        // One pod per pass (upstream evicts at most one and looks again).
        for candidate in candidates {
            let message = eviction_message(&threshold, &observed, &candidate.pod, candidate.usage.as_ref());
            match evict(&workers, &candidate.pod, &message).await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "eviction failed"),
            }
        }
    }
}

/// Evicts one pod: its worker stands down, the runtime kills it, its status says why, an event too.
async fn evict(
    workers: &PodWorkers,
    pod: &Value,
    message: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let node = workers.node();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    tracing::warn!(pod = %format!("{ns}/{name}"), %message, "evicting a pod");
    // From here on the pod's worker stands down. Should the kill fail, the pod is still evictable
    // (not Failed yet) and the next pass tries again.
    node.evicted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(uid.clone(), None);
    node.events
        .warning(pod, None, "Evicted", "Evicting", message.to_owned());
    node.probes.remove_pod(&uid);
    let (rt, key) = (node.runtime.clone(), uid.clone());
    tokio::task::spawn_blocking(move || rt.kill_pod(&key, IMMEDIATE_EVICTION_GRACE_PERIOD_SECONDS)).await??;
    // Killed: the status says so, and the worker makes sure it stays what the API has.
    let status = evicted_status(pod, message, &crate::now());
    node.evicted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(uid.clone(), Some(status.clone()));
    if let Some(images) = node.runtime.images() {
        images.forget_pod(&uid);
    }
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(node.client.clone(), ns);
    match pods
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_as_upstream_writes_them() {
        let t = parse_thresholds(DEFAULT_EVICTION_HARD).unwrap();
        assert_eq!(
            t,
            vec![
                Threshold {
                    signal: Signal::MemoryAvailable,
                    value: ThresholdValue::Quantity(100 << 20)
                },
                Threshold {
                    signal: Signal::NodeFsAvailable,
                    value: ThresholdValue::Percentage(0.05)
                },
                Threshold {
                    signal: Signal::NodeFsInodesFree,
                    value: ThresholdValue::Percentage(0.05)
                },
            ]
        );
        assert_eq!(
            parse_thresholds(SHARED_MACHINE_EVICTION_HARD).unwrap()[1],
            Threshold {
                signal: Signal::NodeFsAvailable,
                value: ThresholdValue::Quantity(1 << 30)
            }
        );
        assert_eq!(
            parse_thresholds("pid.available<1000, memory.available<1Gi").unwrap()[0],
            Threshold {
                signal: Signal::PidAvailable,
                value: ThresholdValue::Quantity(1000)
            }
        );
        assert!(parse_thresholds("").unwrap().is_empty());
        for bad in [
            "memory.available>1Gi",
            "memory.free<1Gi",
            "memory.available<lots",
            "nodefs.available<150%",
            "nodefs.available<0%",
            "memory.available<1Gi,memory.available<2Gi",
        ] {
            assert!(parse_thresholds(bad).is_err(), "{bad}");
        }
        let pct = parse_thresholds("nodefs.available<10%").unwrap()[0];
        assert_eq!(pct.quantity(1000), 100);
        assert!(pct.met(&Observation {
            available: 99,
            capacity: 1000
        }));
        assert!(!pct.met(&Observation {
            available: 100,
            capacity: 1000
        }));
    }

    #[test]
    fn signals_parse_from_proc_and_cgroup_files() {
        let meminfo = "MemTotal:       24683784 kB\nMemFree:  100 kB\nMemAvailable:   22566832 kB\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(24683784 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(22566832 * 1024));
        assert_eq!(meminfo_bytes(meminfo, "Mem"), None);
        let v1 = "cache 10\ninactive_file 36864\ntotal_inactive_file 7000\n";
        assert_eq!(working_set(10_000, v1, true), 3000);
        let v2 = "anon 5\ninactive_file 4000\nactive_file 1\n";
        assert_eq!(working_set(10_000, v2, false), 6000);
        assert_eq!(working_set(100, v2, false), 0, "never below zero");
        assert_eq!(loadavg_tasks("3.63 4.37 4.81 5/130 30856\n"), Some(130));
        assert_eq!(loadavg_tasks("garbage"), None);
        assert_eq!(
            (
                format_bytes(100 << 20),
                format_bytes(81920 * 1024),
                format_bytes(1000),
                format_bytes(0)
            ),
            ("100Mi".into(), "80Mi".into(), "1000".into(), "0".into())
        );
        // The real machine gives every signal it has.
        let stats = SystemStats {
            data_dir: std::env::temp_dir(),
            cgroup_parent: "/skiff-none".into(),
        };
        let obs = stats.observe();
        let mem = obs[&Signal::MemoryAvailable];
        assert!(mem.available <= mem.capacity && mem.capacity > 0);
        assert!(obs[&Signal::NodeFsAvailable].capacity > 0);
        assert!(obs[&Signal::PidAvailable].available > 0);
        assert!(stats.pod_usage("nope", &[], Signal::MemoryAvailable).is_none());
    }

    fn pod(name: &str, priority: i64, request: Option<&str>) -> Value {
        let mut c = json!({ "name": "c" });
        if let Some(r) = request {
            c["resources"] = json!({ "requests": { "memory": r } });
        }
        json!({ "metadata": { "name": name, "uid": name }, "spec": { "priority": priority, "containers": [c] } })
    }

    fn used(total: u64) -> Option<PodUsage> {
        Some(PodUsage {
            total,
            containers: vec![("c".into(), total)],
        })
    }

    #[test]
    fn ranking_follows_rank_memory_pressure() {
        let mut pods = vec![
            Candidate {
                pod: pod("within-request", 0, Some("1Gi")),
                usage: used(500 << 20),
            },
            Candidate {
                pod: pod("small-besteffort", 0, None),
                usage: used(10 << 20),
            },
            Candidate {
                pod: pod("big-besteffort", 0, None),
                usage: used(300 << 20),
            },
            Candidate {
                pod: pod("important-besteffort", 1000, None),
                usage: used(900 << 20),
            },
            Candidate {
                pod: pod("low-priority-within", -5, Some("1Gi")),
                usage: used(1 << 20),
            },
            Candidate {
                pod: pod("no-stats", 1000, None),
                usage: None,
            },
        ];
        rank(&mut pods, Signal::MemoryAvailable);
        let order: Vec<&str> = pods
            .iter()
            .map(|c| c.pod["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            order,
            vec![
                // Without stats first, then those above their requests (lower priority first, then
                // more above), then the rest by priority.
                "no-stats",
                "big-besteffort",
                "small-besteffort",
                "important-besteffort",
                "low-priority-within",
                "within-request",
            ]
        );
        // For pids nothing is requested: priority, then usage.
        let mut pids = vec![
            Candidate {
                pod: pod("few", 0, None),
                usage: used(2),
            },
            Candidate {
                pod: pod("many", 0, None),
                usage: used(200),
            },
            Candidate {
                pod: pod("vip", 10, None),
                usage: used(9000),
            },
        ];
        rank(&mut pids, Signal::PidAvailable);
        let order: Vec<&str> = pids
            .iter()
            .map(|c| c.pod["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(order, vec!["many", "few", "vip"]);
    }

    #[test]
    fn conditions_hold_for_the_transition_period() {
        let thresholds =
            parse_thresholds("memory.available<100Mi,nodefs.available<10%,pid.available<100").unwrap();
        let obs = |mem: u64, disk: u64| -> Observations {
            [
                (
                    Signal::MemoryAvailable,
                    Observation {
                        available: mem << 20,
                        capacity: 1 << 30,
                    },
                ),
                (
                    Signal::NodeFsAvailable,
                    Observation {
                        available: disk,
                        capacity: 100,
                    },
                ),
                (
                    Signal::PidAvailable,
                    Observation {
                        available: 5000,
                        capacity: 32768,
                    },
                ),
            ]
            .into()
        };
        let period = Duration::from_secs(300);
        let t0 = Instant::now();
        let mut m = Manager::default();
        let calm = m.synchronize(&thresholds, &obs(500, 50), period, t0);
        assert_eq!((calm.met.len(), calm.pressure), (0, Pressure::default()));
        let pressed = m.synchronize(&thresholds, &obs(80, 5), period, t0 + Duration::from_secs(10));
        assert_eq!(
            pressed.met.iter().map(|t| t.signal).collect::<Vec<_>>(),
            vec![Signal::MemoryAvailable, Signal::NodeFsAvailable],
            "memory first"
        );
        assert_eq!(
            pressed.pressure,
            Pressure {
                memory: true,
                disk: true,
                pid: false
            }
        );
        // Relieved: nothing to reclaim, but the conditions stay for the transition period…
        let after = m.synchronize(&thresholds, &obs(500, 50), period, t0 + Duration::from_secs(200));
        assert!(after.met.is_empty());
        assert!(after.pressure.memory && after.pressure.disk);
        // …and end after it.
        let later = m.synchronize(&thresholds, &obs(500, 50), period, t0 + Duration::from_secs(311));
        assert_eq!(later.pressure, Pressure::default());
        // A missing signal crosses nothing.
        assert!(
            m.synchronize(&thresholds, &Observations::new(), period, t0)
                .met
                .is_empty()
        );
    }

    #[test]
    fn evicted_pods_say_why_as_upstream() {
        let threshold = parse_thresholds("memory.available<100Mi").unwrap()[0];
        let observed = Observation {
            available: 80 << 20,
            capacity: 1 << 30,
        };
        let p = json!({ "metadata": { "name": "p", "uid": "u" },
            "spec": { "containers": [{ "name": "x" }, { "name": "y", "resources": { "requests": { "memory": "1Gi" } } }] },
            "status": { "phase": "Running", "conditions": [{ "type": "Ready", "status": "True" }, { "type": "PodScheduled", "status": "True" }],
                        "containerStatuses": [{ "name": "x", "containerID": "runc://u_x", "ready": true, "state": { "running": { "startedAt": "t" } } }] } });
        let usage = PodUsage {
            total: 300 << 20,
            containers: vec![("x".into(), 200 << 20), ("y".into(), 100 << 20)],
        };
        let message = eviction_message(&threshold, &observed, &p, Some(&usage));
        assert_eq!(
            message,
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 80Mi. \
             Container x was using 200Mi, request is 0, has larger consumption of memory. "
        );
        let s = evicted_status(&p, &message, "2026-01-01T00:00:00Z");
        assert_eq!(
            (s["phase"].as_str(), s["reason"].as_str()),
            (Some("Failed"), Some("Evicted"))
        );
        let conditions = s["conditions"].as_array().unwrap();
        let find = |t: &str| conditions.iter().find(|c| c["type"] == t).unwrap();
        assert_eq!(find("Ready")["status"], "False");
        assert_eq!(find("PodScheduled")["status"], "True");
        assert_eq!(
            (
                find("DisruptionTarget")["status"].as_str(),
                find("DisruptionTarget")["reason"].as_str()
            ),
            (Some("True"), Some("TerminationByKubelet"))
        );
        let x = &s["containerStatuses"][0];
        assert_eq!(x["state"]["terminated"]["exitCode"], 137);
        assert_eq!(x["state"]["terminated"]["startedAt"], "t");
        assert_eq!(x["ready"], false);
        let inodes = parse_thresholds("nodefs.inodesFree<5%").unwrap()[0];
        assert_eq!(
            eviction_message(
                &inodes,
                &Observation {
                    available: 10,
                    capacity: 1000
                },
                &p,
                None
            ),
            "The node was low on resource: inodes. Threshold quantity: 50, available: 10. "
        );
        assert!(evictable(&p));
        let calm = Pressure::default();
        let memory = Pressure { memory: true, ..calm };
        assert_eq!(admit(&p, calm), None);
        assert_eq!(
            admit(&p, memory),
            None,
            "Burstable pods come in under memory pressure"
        );
        let besteffort = json!({ "spec": { "containers": [{ "name": "x" }] } });
        assert_eq!(
            admit(&besteffort, memory).as_deref(),
            Some("The node had condition: [MemoryPressure]. ")
        );
        let mut tolerant = besteffort.clone();
        tolerant["spec"]["tolerations"] = json!([{ "key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule" }]);
        assert_eq!(admit(&tolerant, memory), None);
        let both = Pressure { disk: true, ..memory };
        assert_eq!(
            admit(&p, both).as_deref(),
            Some("The node had condition: [MemoryPressure DiskPressure]. ")
        );
        let mut done = p.clone();
        done["status"]["phase"] = json!("Failed");
        assert!(!evictable(&done));
    }
}
