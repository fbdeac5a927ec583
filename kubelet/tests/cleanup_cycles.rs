//! Issue 5: a deleted pod leaves nothing on the node. Many pods are created and deleted, in waves run
//! concurrently, through the calls the pod workers make (`run_sandbox`, the volumes set up in the
//! runtime's volume directory, `start_container`, `kill_pod`), each with a memory emptyDir (a tmpfs on
//! the node), a disk emptyDir and a configMap volume, an init container that uses them and a main
//! container left running until the kill. Afterwards, compared with before: no runc containers, no
//! mounts under the node's directory, no pod cgroups (any hierarchy), no host-local IP allocations or
//! cached CNI results, no veths, no pod directories (bundles, logs), no processes (shims, pause,
//! containers), and the test process's open fds and threads do not grow with the number of cycles.
//!
//! Needs root, runc, nsenter, the CNI plugins and busybox (scripts/setup.sh); skipped without them.
//! It makes its own node network namespace, state directory and cgroup parent and removes them in a
//! Drop guard, even when it fails.
//!
//! `SKIFF_CLEANUP_CYCLES` sets the number of pods (default [`DEFAULT_CYCLES`]).

mod common;
use common::{helpers, which};

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use skiff_kubelet::{
    envvars::sources::{Fetched, ObjectData, Sources},
    runc_runtime::{RuncConfig, RuncRuntime, remove_cgroup},
    runtime::{ContainerRuntime, ContainerSpec, ContainerState, SandboxSpec},
    volumes,
};

/// Pods created and deleted by default. 300, not the 1,000: a pod's cycle takes about 270 ms
/// here (debug build, 2 cores, 16 at a time), so 1,000 take 4.5 minutes, too long for every CI run;
/// `SKIFF_CLEANUP_CYCLES=1000` runs the full count (it passed in 273 s, fds and threads flat).
const DEFAULT_CYCLES: usize = 300;
/// Pods alive at once.
const WAVE: usize = 16;

fn missing() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not root".into());
    }
    for tool in ["runc", "nsenter", "ip", "busybox"] {
        if which(tool).is_none() {
            return Some(format!("{tool} not found"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins (/usr/lib/cni) are not installed".into());
    }
    None
}

/// The node: its network namespace, state directory, cgroup parent and runtime, all removed on drop.
struct Node {
    netns: String,
    dir: PathBuf,
    cgroup_parent: String,
    cfg: RuncConfig,
    rt: Option<RuncRuntime>,
}

impl Node {
    fn new() -> Self {
        let tag = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let netns = format!("skiff-cc-{tag}");
        let dir = std::env::temp_dir().join(&netns);
        let rootfs = dir.join("busybox");
        let images = rootfs.clone();
        let mut cfg = RuncConfig::new(
            dir.join("state"),
            Arc::new(move |image: &str| match image {
                "busybox" => Ok(images.clone()),
                other => Err(skiff_kubelet::runtime::RuntimeError(format!("no image {other}"))),
            }),
        );
        let (pause, shim) = helpers().clone();
        cfg.pause = pause;
        cfg.shim = shim;
        cfg.node_netns = Some(PathBuf::from(format!("/run/netns/{netns}")));
        cfg.cgroup_parent = format!("/skiff-cc-{tag}");
        let mut node = Node {
            netns: netns.clone(),
            dir,
            cgroup_parent: cfg.cgroup_parent.clone(),
            cfg: cfg.clone(),
            rt: None,
        };
        let ok = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
        assert!(ok(&["netns", "add", &netns]));
        assert!(ok(&["-n", &netns, "link", "set", "lo", "up"]));
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for d in ["proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(which("busybox").unwrap(), bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep", "cat", "echo"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        node.rt = Some(RuncRuntime::new(cfg).expect("the runtime starts"));
        node
    }

    fn rt(&self) -> &RuncRuntime {
        self.rt.as_ref().unwrap()
    }

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// What the node has of pods now (empty when none ever ran or all went cleanly).
    fn residue(&self) -> Residue {
        let state = self.state();
        let canonical = self.dir.canonicalize().unwrap_or_else(|_| self.dir.clone());
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| Path::new(p).starts_with(&canonical) || Path::new(p).starts_with(&self.dir))
            .map(str::to_owned)
            .collect();
        // Every hierarchy: the unified one on v2, each controller's (and named ones) on v1.
        let rel = self.cgroup_parent.trim_start_matches('/');
        let mut hierarchies = vec![PathBuf::from("/sys/fs/cgroup")];
        hierarchies.extend(
            std::fs::read_dir("/sys/fs/cgroup")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir()),
        );
        let mut cgroups = Vec::new();
        let mut cgroup_procs = Vec::new();
        for h in &hierarchies {
            let parent = h.join(rel);
            for d in walk(&parent).into_iter().filter(|d| d.is_dir()) {
                cgroup_procs.extend(
                    std::fs::read_to_string(d.join("cgroup.procs"))
                        .unwrap_or_default()
                        .lines()
                        .map(|p| format!("{}: {p}", d.display())),
                );
                if d != parent {
                    cgroups.push(d.display().to_string());
                }
            }
        }
        let names = |d: PathBuf| -> Vec<String> {
            std::fs::read_dir(d)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        };
        let allocations = names(state.join("cni/networks/skiff"))
            .into_iter()
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        let veths = Command::new("ip")
            .args(["-n", &self.netns, "-o", "link", "show", "type", "veth"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let runc = self
            .rt()
            .runc()
            .list()
            .expect("runc list")
            .into_iter()
            .map(|s| format!("{} {}", s.id, s.status))
            .collect();
        Residue {
            runc,
            mounts,
            cgroups,
            cgroup_procs,
            allocations,
            cni_results: names(state.join("cni/results")),
            veths,
            pod_files: walk(&state.join("pods"))
                .into_iter()
                .skip(1)
                .map(|p| p.display().to_string())
                .collect(),
            processes: processes(&self.dir),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take().or_else(|| RuncRuntime::new(self.cfg.clone()).ok()) {
            for uid in rt.pods() {
                let _ = rt.kill_pod(&uid, 0);
            }
            for c in rt.runc().list().unwrap_or_default() {
                let _ = rt.runc().delete_force(&c.id);
            }
        }
        volumes::unmount_all(&self.dir);
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_cgroup(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `dir` and everything under it.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if std::fs::symlink_metadata(dir).is_err() {
        return out;
    }
    out.push(dir.to_path_buf());
    if dir.is_dir() && !dir.is_symlink() {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// Processes that are the node's: our children (shims, runc, plugins; zombies too) and anything whose
/// command line names the node's directory.
fn processes(dir: &Path) -> Vec<String> {
    let me = std::process::id().to_string();
    let dir = dir.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid.parse::<u32>().is_err() || pid == me {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let ppid = after.split_whitespace().nth(1).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .unwrap_or_default();
        // Threads of ours are under /proc/<me>/task, not /proc: a ppid of ours is a child process.
        if ppid == me || cmdline.contains(&dir) {
            out.push(format!("{pid} (ppid {ppid}): {stat:.60} {cmdline}"));
        }
    }
    out
}

#[derive(Debug, Default, PartialEq)]
struct Residue {
    runc: Vec<String>,
    mounts: Vec<String>,
    cgroups: Vec<String>,
    cgroup_procs: Vec<String>,
    allocations: Vec<String>,
    cni_results: Vec<String>,
    veths: Vec<String>,
    pod_files: Vec<String>,
    processes: Vec<String>,
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The pod's volumes as its spec says them, and the configMap they project.
fn pod_json(name: &str, uid: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": "default", "uid": uid },
        "spec": {
            "volumes": [
                { "name": "scratch", "emptyDir": {} },
                { "name": "cache", "emptyDir": { "medium": "Memory", "sizeLimit": "1Mi" } },
                { "name": "config", "configMap": { "name": "greeting" } },
            ],
            "containers": [{ "name": "main", "volumeMounts": [
                { "name": "scratch", "mountPath": "/scratch" },
                { "name": "cache", "mountPath": "/cache" },
                { "name": "config", "mountPath": "/config" },
            ]}],
        },
    })
}

fn sources() -> Sources {
    let data = ObjectData {
        data: BTreeMap::from([("greeting".to_owned(), b"hello".to_vec())]),
        ..Default::default()
    };
    Sources {
        config_maps: [("greeting".to_owned(), Fetched::Found(data))].into(),
        ..Default::default()
    }
}

fn sh(name: &str, script: &str, init: bool) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: "busybox".into(),
        command: vec!["sh".into(), "-c".into(), script.into()],
        init,
        ..Default::default()
    }
}

/// One pod's life: sandbox, volumes, an init container that uses them, a running main container,
/// then the kill (as a pod worker does for a deleted pod).
fn cycle(rt: &RuncRuntime, i: usize, sources: &Sources) -> Result<(), String> {
    cycle_inspected(rt, i, sources, |_| {})
}

/// [`cycle`], calling `inspect` with the pod's UID while it runs.
fn cycle_inspected(
    rt: &RuncRuntime,
    i: usize,
    sources: &Sources,
    inspect: impl FnOnce(&str),
) -> Result<(), String> {
    let uid = format!("c1ea0000-0000-4000-8000-{i:012x}");
    let name = format!("cycle-{i}");
    let spec = SandboxSpec {
        uid: uid.clone(),
        name: name.clone(),
        namespace: "default".into(),
        hostname: name.clone(),
        pod_cidr: Some("10.244.0.0/24".into()),
        ..Default::default()
    };
    let result = (|| -> Result<(), String> {
        let e = |e: skiff_kubelet::runtime::RuntimeError| e.0;
        rt.run_sandbox(&spec).map_err(e)?;
        let pod = pod_json(&name, &uid);
        let dir = rt.volume_dir(&uid).ok_or("no volume dir")?;
        let vols = volumes::set_up(&pod, &dir, sources)?;
        let mounts = volumes::container_mounts(&pod["spec"]["containers"][0], &vols, &[])?;
        let mut init = sh(
            "init",
            &format!(
                "echo {i} > /scratch/n && echo {i} > /cache/n && cat /config/greeting /scratch/n /cache/n"
            ),
            true,
        );
        init.mounts = mounts.clone();
        let done = rt.start_container(&uid, &init).map_err(e)?;
        let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&uid, "init"));
        match done.state {
            ContainerState::Exited { exit_code: 0, .. } if log == format!("hello{i}\n{i}\n") => {}
            other => return Err(format!("init: {other:?}, log {log:?}")),
        }
        let mut main = sh("main", "exec sleep 3600", false);
        main.mounts = mounts;
        let running = rt.start_container(&uid, &main).map_err(e)?;
        if !matches!(running.state, ContainerState::Running { .. }) {
            return Err(format!("main: {running:?}"));
        }
        inspect(&uid);
        Ok(())
    })();
    // Deleted whatever happened.
    let killed = rt.kill_pod(&uid, 0).map_err(|e| format!("kill: {}", e.0));
    result.and(killed).map_err(|e| format!("pod {i}: {e}"))
}

/// Pods `range`, `WAVE` at a time.
fn run_waves(rt: &RuncRuntime, range: std::ops::Range<usize>, sources: &Sources) {
    let ids: Vec<usize> = range.collect();
    for wave in ids.chunks(WAVE) {
        let errors: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = wave
                .iter()
                .map(|&i| s.spawn(move || cycle(rt, i, sources)))
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap().err())
                .collect()
        });
        assert!(errors.is_empty(), "{errors:#?}");
    }
}

/// Polls `f` until it holds, for up to `within`; its last value either way.
fn settle<T>(within: Duration, mut f: impl FnMut() -> (bool, T)) -> T {
    let deadline = Instant::now() + within;
    loop {
        let (ok, v) = f();
        if ok || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn deleted_pods_leave_nothing_behind_over_many_cycles() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why} (run as root after scripts/setup.sh)");
        return;
    }
    let cycles: usize = std::env::var("SKIFF_CLEANUP_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CYCLES);
    let node = Node::new();
    let rt = node.rt();
    let sources = sources();
    let before = node.residue();
    assert_eq!(before, Residue::default(), "a fresh node has nothing");

    // The residue checks see a live pod's every trace (else their emptiness afterwards means nothing).
    cycle_inspected(rt, 999_999, &sources, |uid| {
        let live = node.residue();
        let short = &uid[..8];
        let mentions = |v: &[String]| v.iter().any(|s| s.contains(short));
        assert!(live.runc.len() == 3 && mentions(&live.runc), "{live:#?}");
        // The memory emptyDir's tmpfs.
        assert!(mentions(&live.mounts), "{live:#?}");
        assert!(
            mentions(&live.cgroups) && !live.cgroup_procs.is_empty(),
            "{live:#?}"
        );
        assert_eq!(
            (live.allocations.len(), live.cni_results.len(), live.veths.len()),
            (1, 1, 1)
        );
        assert!(
            live.pod_files.iter().any(|f| f.ends_with("main/log")),
            "{live:#?}"
        );
        // The main container's shim.
        assert!(!live.processes.is_empty(), "{live:#?}");
    })
    .unwrap();

    // A first wave, so what the process sets up once (lazy statics, the helpers' build) is counted in
    // the baseline.
    let began = Instant::now();
    run_waves(rt, 0..WAVE, &sources);
    let (fds0, threads0) = settle(Duration::from_secs(10), || {
        let t = threads();
        (t <= 2, (open_fds(), t))
    });
    eprintln!("baseline after {WAVE} pods: {fds0} fds, {threads0} threads");

    let mut done = WAVE;
    while done < cycles {
        let next = (done + 10 * WAVE).min(cycles);
        run_waves(rt, done..next, &sources);
        done = next;
        eprintln!(
            "{done} pods in {:.1} s: {} fds, {} threads",
            began.elapsed().as_secs_f64(),
            open_fds(),
            threads()
        );
    }
    let elapsed = began.elapsed();

    // Shims are reaped by their own threads once their containers are gone: give them a moment.
    let after = settle(Duration::from_secs(15), || {
        let r = node.residue();
        (r == before, r)
    });
    assert_eq!(after, before, "what {done} deleted pods left behind");
    let (fds, threads) = settle(Duration::from_secs(10), || {
        let (f, t) = (open_fds(), threads());
        (f <= fds0 && t <= threads0, (f, t))
    });
    eprintln!(
        "{done} pods created and deleted in {:.1} s ({:.0} ms each, {WAVE} at a time); {fds} fds, {threads} threads",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / done as f64
    );
    // Roughly stable: a few fds of slack for whatever the runtime or the harness holds at the moment.
    assert!(
        fds <= fds0 + 4,
        "open fds grew from {fds0} to {fds} over {done} pods"
    );
    assert!(
        threads <= threads0 + 2,
        "threads grew from {threads0} to {threads} over {done} pods"
    );
}
