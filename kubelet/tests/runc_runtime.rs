//! The real runtime, for real: pause sandboxes, runc containers and CNI bridge networking.
//!
//! Needs root, runc, nsenter, the CNI plugins (/usr/lib/cni) and busybox (scripts/setup.sh installs
//! them); each test prints why and passes without doing anything when one is missing. Every test makes
//! its own node network namespace (`ip netns add skiff-rt-…`), state directory and cgroup parent, runs
//! the CNI plugins inside that namespace only, and removes all of it in a Drop guard, even when it
//! fails. Traffic goes only between pods on that namespace's bridge (and over loopback in a pod).

mod common;
use common::{helpers, which};

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use skiff_kubelet::{
    kubelet::{KubeletOptions, run_kubelet},
    node::NodeConfig,
    runc::Runc,
    runc_runtime::{RuncConfig, RuncRuntime, remove_cgroup},
    runtime::{ContainerRuntime, ContainerSpec, ContainerState, SandboxSpec},
};

/// Why these tests cannot run here, if they cannot.
fn missing() -> Option<String> {
    if !nix_is_root() {
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

macro_rules! require_node {
    () => {
        if let Some(why) = missing() {
            eprintln!("skipped: {why} (run as root after scripts/setup.sh)");
            return;
        }
    };
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One node: its own network namespace, state directory, cgroup parent and runtime. Dropping it
/// removes all of them, whatever the test did.
struct Node {
    netns: String,
    dir: PathBuf,
    cgroup_parent: String,
    rootfs: PathBuf,
    cfg: RuncConfig,
    rt: Option<RuncRuntime>,
    /// Another runtime (a kubelet's) works on this state too and may still finish an operation
    /// after the test ends (a blocking task outlives its aborted caller): clean up twice, a moment
    /// apart.
    settle: bool,
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
        let netns = format!("skiff-rt-{tag}");
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
        cfg.cgroup_parent = format!("/skiff-test-{tag}");
        cfg.cluster_dns = skiff_kubelet::dns::ClusterDns {
            servers: vec!["10.96.0.10".into()],
            domain: "cluster.local".into(),
        };
        let mut node = Node {
            netns: netns.clone(),
            dir,
            cgroup_parent: cfg.cgroup_parent.clone(),
            rootfs,
            cfg: cfg.clone(),
            rt: None,
            settle: false,
        };
        assert!(
            Command::new("ip")
                .args(["netns", "add", &netns])
                .status()
                .unwrap()
                .success()
        );
        // A node has its loopback up (traffic to its own addresses goes through it).
        let lo = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status();
        assert!(lo.unwrap().success());
        make_busybox_rootfs(&node.rootfs);
        node.rt = Some(RuncRuntime::new(cfg).expect("the runtime starts"));
        node
    }

    fn rt(&self) -> &RuncRuntime {
        self.rt.as_ref().unwrap()
    }

    /// `ip …` inside the node's namespace.
    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.netns.as_str()];
        all.extend(args);
        run("ip", &all)
    }

    fn veths(&self) -> usize {
        self.ip(&["-o", "link", "show", "type", "veth"]).lines().count()
    }

    fn allocations(&self) -> Vec<String> {
        let dir = self.dir.join("state/cni/networks/skiff");
        std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|n: &String| n.parse::<std::net::Ipv4Addr>().is_ok())
            .collect()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let rounds = if self.settle { 2 } else { 1 };
        for round in 0..rounds {
            if round > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            self.clean_up();
        }
        // Bridge, veths and the plugins' iptables rules all live in the namespace and go with it.
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_cgroup(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Node {
    /// Stops every pod (with its CNI DEL), then whatever runc still has under our root, and removes
    /// the state.
    fn clean_up(&mut self) {
        let rt = match self.rt.take() {
            Some(rt) => rt,
            None => match RuncRuntime::new(self.cfg.clone()) {
                Ok(rt) => rt,
                Err(_) => return,
            },
        };
        for uid in rt.pods() {
            if let Err(e) = rt.kill_pod(&uid, 0) {
                eprintln!("cleanup: killing pod {uid}: {e}");
            }
        }
        // Whatever runc still has under our root (half-made pods).
        let runc: Runc = rt.runc().clone();
        for c in runc.list().unwrap_or_default() {
            let _ = runc.delete_force(&c.id);
        }
        remove_cgroup(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn make_busybox_rootfs(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "www"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy(which("busybox").unwrap(), bin.join("busybox")).unwrap();
    for applet in [
        "sh", "sleep", "hostname", "httpd", "wget", "timeout", "seq", "echo", "cat", "true", "id", "grep",
        "dd", "touch",
    ] {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    std::fs::write(dir.join("www/index.html"), "hello from skiff\n").unwrap();
}

fn sandbox(uid: &str, hostname: &str, cidr: &str) -> SandboxSpec {
    SandboxSpec {
        uid: uid.into(),
        name: hostname.into(),
        namespace: "default".into(),
        hostname: hostname.into(),
        pod_cidr: Some(cidr.into()),
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

/// An HTTP server on :8080 serving "hello from skiff".
fn web() -> ContainerSpec {
    sh("web", "exec httpd -f -p 8080 -h /www", false)
}

/// A container that fetches `url` (retrying while the server starts), then prints its hostname.
fn fetch(url: &str) -> ContainerSpec {
    sh(
        "fetch",
        &format!(
            "for i in $(seq 50); do timeout 2 wget -q -O - {url} && break; sleep 0.1; done; echo hostname=$(hostname)"
        ),
        true,
    )
}

fn exit_code(c: &skiff_kubelet::runtime::Container) -> Option<i32> {
    match c.state {
        ContainerState::Exited { exit_code, .. } => Some(exit_code),
        ContainerState::Running { .. } => None,
    }
}

#[test]
fn a_sandbox_gets_an_ip_from_the_pod_cidr_and_its_containers_share_localhost_and_hostname() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let pod = sandbox("3f0e6a52-0000-4000-8000-000000000001", "web-1", "10.244.7.0/24");
    let sb = rt.run_sandbox(&pod).expect("sandbox");
    assert!(
        sb.ip.starts_with("10.244.7.") && sb.ip != "10.244.7.1",
        "pod IP {}",
        sb.ip
    );
    assert_eq!(rt.run_sandbox(&pod).unwrap(), sb, "a second run finds the first");
    assert!(
        node.ip(&["-o", "addr", "show", "cni0"]).contains("10.244.7.1/24"),
        "the bridge is the gateway"
    );
    assert_eq!(node.veths(), 1);

    let server = rt.start_container(&pod.uid, &web()).expect("web starts");
    assert!(
        matches!(server.state, ContainerState::Running { .. }),
        "{server:?}"
    );
    let client = rt
        .start_container(&pod.uid, &fetch("http://127.0.0.1:8080/"))
        .expect("fetch runs");
    let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&pod.uid, "fetch"));
    let raw = std::fs::read_to_string(rt.log_path(&pod.uid, "fetch")).unwrap();
    assert!(
        raw.lines()
            .all(|l| skiff_kubelet::logs::parse_line(l).is_some_and(|e| e.stream == "stdout" && !e.partial)),
        "the log is in the CRI format: {raw}"
    );
    assert_eq!(exit_code(&client), Some(0), "log: {log}");
    assert!(
        log.contains("hello from skiff"),
        "reached the other container over localhost: {log}"
    );
    assert!(
        log.contains("hostname=web-1"),
        "shares the sandbox's hostname: {log}"
    );

    let (status_sb, containers) = rt.pod_status(&pod.uid).expect("status");
    assert_eq!(status_sb.ip, sb.ip);
    let by_name = |n: &str| containers.iter().find(|c| c.name == n).cloned().unwrap();
    assert!(matches!(by_name("web").state, ContainerState::Running { .. }));
    assert_eq!(exit_code(&by_name("fetch")), Some(0));
    assert_eq!(by_name("web").image, "busybox");
    assert_eq!(rt.pods(), vec![pod.uid.clone()]);

    // The pod's /etc files: its own address and name, the cluster DNS with the namespace's search path.
    let etc = rt
        .start_container(
            &pod.uid,
            &sh(
                "etc",
                "cat /etc/hosts /etc/resolv.conf /etc/hostname; echo HOSTNAME=$HOSTNAME",
                true,
            ),
        )
        .unwrap();
    let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&pod.uid, "etc"));
    assert_eq!(exit_code(&etc), Some(0), "{log}");
    assert!(log.contains(&format!("{}\tweb-1\n", sb.ip)), "/etc/hosts: {log}");
    assert!(log.contains("nameserver 10.96.0.10\n"), "/etc/resolv.conf: {log}");
    assert!(
        log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{log}"
    );
    assert!(log.contains("options ndots:5"), "{log}");
    assert!(
        log.contains("web-1\nHOSTNAME=web-1"),
        "/etc/hostname and $HOSTNAME: {log}"
    );

    // /dev/shm is the pod's: what one container puts there, another reads.
    rt.start_container(&pod.uid, &sh("shm-writer", "echo shared > /dev/shm/note", true))
        .unwrap();
    let reader = rt
        .start_container(&pod.uid, &sh("shm-reader", "cat /dev/shm/note", true))
        .unwrap();
    let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&pod.uid, "shm-reader"));
    assert_eq!((exit_code(&reader), log.as_str()), (Some(0), "shared\n"));

    // A container that fails reports its exit code.
    let failing = rt.start_container(&pod.uid, &sh("fail", "exit 3", true)).unwrap();
    assert_eq!(exit_code(&failing), Some(3));
    // Starting it again is a restart: a new run, counted, the last one kept as its last state.
    let again = rt
        .start_container(
            &pod.uid,
            &sh("fail", "echo second run; echo oops >&2; exit 4", true),
        )
        .unwrap();
    assert_eq!((exit_code(&again), again.restart_count), (Some(4), 1));
    assert!(
        matches!(
            again.last_state,
            Some(ContainerState::Exited { exit_code: 3, .. })
        ),
        "{again:?}"
    );
    let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&pod.uid, "fail"));
    // Two streams, two pipes: their lines interleave in no fixed order.
    let mut lines: Vec<&str> = log.lines().collect();
    lines.sort();
    assert_eq!(lines, ["oops", "second run"], "each run has its own log");
    let raw = std::fs::read_to_string(rt.log_path(&pod.uid, "fail")).unwrap();
    assert!(
        raw.contains(" stderr F oops\n"),
        "stderr is its own stream: {raw}"
    );
    assert!(
        rt.log_path(&pod.uid, "fail")
            .with_file_name("previous.log")
            .exists()
    );
    // An image the node does not have is an error, not a hang.
    let mut missing = web();
    missing.name = "other".into();
    missing.image = "nginx".into();
    assert!(rt.start_container(&pod.uid, &missing).is_err());
    // A command the image does not have: runc fails the start, and the error says why.
    let mut absent = sh("absent", "", false);
    absent.command = vec!["/no/such/command".into()];
    let err = rt.start_container(&pod.uid, &absent).unwrap_err();
    assert!(
        err.0.contains("failed to start") && err.0.contains("no such file or directory"),
        "{err:?}"
    );
    // The web server still runs, and no runc process stays behind with it: its shim reaps it.
    let root = rt.runc().root.to_string_lossy().into_owned();
    let resident: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&root) && c.split(' ').next().is_some_and(|b| b.ends_with("runc")))
        .collect();
    assert!(resident.is_empty(), "{resident:?}");
    let (_, containers) = rt.pod_status(&pod.uid).unwrap();
    let web = containers.iter().find(|c| c.name == "web").unwrap();
    assert!(matches!(web.state, ContainerState::Running { .. }), "{web:?}");
}

#[test]
fn two_pods_reach_each_other_across_the_bridge() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let a = sandbox("3f0e6a52-0000-4000-8000-00000000000a", "a", "10.244.8.0/24");
    let b = sandbox("3f0e6a52-0000-4000-8000-00000000000b", "b", "10.244.8.0/24");
    let ip_a = rt.run_sandbox(&a).unwrap().ip;
    let ip_b = rt.run_sandbox(&b).unwrap().ip;
    assert_ne!(ip_a, ip_b);
    assert_eq!(node.veths(), 2);
    rt.start_container(&a.uid, &web()).unwrap();
    let client = rt
        .start_container(&b.uid, &fetch(&format!("http://{ip_a}:8080/")))
        .unwrap();
    let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&b.uid, "fetch"));
    assert_eq!(exit_code(&client), Some(0), "log: {log}");
    assert!(
        log.contains("hello from skiff") && log.contains("hostname=b"),
        "{log}"
    );
    // And the pods do not share localhost.
    let local = rt
        .start_container(
            &b.uid,
            &sh("local", "timeout 2 wget -q -O - http://127.0.0.1:8080/", true),
        )
        .unwrap();
    assert_ne!(
        exit_code(&local),
        Some(0),
        "pod b has no server on its own localhost"
    );
}

#[test]
fn a_restarted_runtime_adopts_its_pods_and_their_exit_codes() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let pod = sandbox(
        "3f0e6a52-0000-4000-8000-0000000000e1",
        "survivor",
        "10.244.12.0/24",
    );
    let ip = rt.run_sandbox(&pod).unwrap().ip;
    rt.start_container(&pod.uid, &web()).unwrap();
    rt.start_container(&pod.uid, &sh("fail", "exit 3", true)).unwrap();

    // A new kubelet on the same state directory (the old one's shims and containers run on).
    let restarted = RuncRuntime::new(node.cfg.clone()).unwrap();
    assert_eq!(restarted.pods(), vec![pod.uid.clone()]);
    let (sb, containers) = restarted.pod_status(&pod.uid).expect("adopted");
    assert_eq!(sb.ip, ip);
    let by_name = |n: &str| containers.iter().find(|c| c.name == n).cloned().unwrap();
    assert!(matches!(by_name("web").state, ContainerState::Running { .. }));
    assert_eq!(exit_code(&by_name("fail")), Some(3));
    assert_eq!(
        restarted.run_sandbox(&pod).unwrap().ip,
        ip,
        "the sandbox is kept, not remade"
    );
    // The kubelet reads runc's state files itself: what it reads is what `runc state` says, for a
    // running sandbox and container and a stopped one…
    let runc = Runc::new("runc", node.cfg.state_dir.join("runc"));
    same_as_runc_state(
        &runc,
        &[
            &pod.uid,
            &format!("{}_web", pod.uid),
            &format!("{}_fail", pod.uid),
        ],
    );
    // …and for a sandbox whose pause process died (SIGKILL, as a machine under memory pressure may):
    // stopped, so the next sync makes it again rather than adopting it. (Not remade here: CNI's
    // bridge 1.1 cannot remove the masquerade rule of a pod whose namespace is gone, and that rule
    // keeps the chain that a remade sandbox of the same pod id shares busy at its own DEL.)
    let pause = runc.state(&pod.uid).unwrap().unwrap().pid;
    assert!(pause > 0);
    run("kill", &["-KILL", &pause.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while runc.state(&pod.uid).unwrap().unwrap().status != "stopped" {
        assert!(
            Instant::now() < deadline,
            "the killed pause still reads as running"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    same_as_runc_state(&runc, &[&pod.uid]);
    assert!(restarted.pod_status(&pod.uid).is_some(), "listed until torn down");
    restarted.kill_pod(&pod.uid, 0).unwrap();
    assert!(rt.pods().is_empty());
}

/// `runc state` of each of `ids` (the Go binary's answer) equals [`Runc::state`] (the kubelet's own
/// reading of runc's files).
fn same_as_runc_state(runc: &Runc, ids: &[&str]) {
    for id in ids {
        let out = runc.command(&["state", id]).output().unwrap();
        assert!(
            out.status.success(),
            "runc state {id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: skiff_kubelet::runc::State = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(runc.state(id).unwrap().as_ref(), Some(&theirs), "{id}");
    }
}

#[test]
fn limits_become_cgroup_settings_and_host_ports_are_mapped() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let mut pod = sandbox(
        "3f0e6a52-0000-4000-8000-0000000000f1",
        "limited",
        "10.244.13.0/24",
    );
    pod.port_mappings = vec![skiff_kubelet::runtime::PortMapping {
        host_port: 8081,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: None,
    }];
    let ip = rt.run_sandbox(&pod).unwrap().ip;
    let mut spec = web();
    spec.resources = skiff_kubelet::runtime::Resources {
        cpu_request_milli: Some(250),
        cpu_limit_milli: Some(500),
        memory_limit_bytes: Some(64 << 20),
        pids_limit: Some(64),
    };
    rt.start_container(&pod.uid, &spec).unwrap();
    let cgroup = format!(
        "{}/{}_web",
        rt.pod_cgroup(&pod.uid).trim_start_matches('/'),
        pod.uid
    );
    let read = |path: String| {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|e| format!("{path}: {e}"))
    };
    if Path::new("/sys/fs/cgroup/memory").is_dir() {
        assert_eq!(
            read(format!("/sys/fs/cgroup/memory/{cgroup}/memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(
            read(format!("/sys/fs/cgroup/cpu/{cgroup}/cpu.cfs_quota_us")),
            "50000"
        );
        assert_eq!(read(format!("/sys/fs/cgroup/cpu/{cgroup}/cpu.shares")), "256");
        assert_eq!(read(format!("/sys/fs/cgroup/pids/{cgroup}/pids.max")), "64");
    } else {
        assert_eq!(read(format!("/sys/fs/cgroup/{cgroup}/memory.max")), "67108864");
        assert_eq!(read(format!("/sys/fs/cgroup/{cgroup}/cpu.max")), "50000 100000");
        assert_eq!(read(format!("/sys/fs/cgroup/{cgroup}/pids.max")), "64");
    }

    // Going over the memory limit: the OOM killer ends it, and the reason says so.
    let mut hog = sh("hog", "dd if=/dev/zero of=/dev/null bs=64M count=1", true);
    hog.resources.memory_limit_bytes = Some(16 << 20);
    let killed = rt.start_container(&pod.uid, &hog).unwrap();
    match &killed.state {
        ContainerState::Exited {
            exit_code, reason, ..
        } => {
            assert_eq!((*exit_code, reason.as_str()), (137, "OOMKilled"))
        }
        other => panic!("{other:?}"),
    }

    // hostPort 8081 on the node (here: its bridge address, inside its namespace) reaches the pod.
    let gateway = format!("{}.1", ip.rsplit_once('.').unwrap().0);
    let mut body = String::new();
    for _ in 0..50 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.netns,
                "busybox",
                "timeout",
                "2",
                "wget",
                "-q",
                "-O",
                "-",
            ])
            .arg(format!("http://{gateway}:8081/"))
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        body.contains("hello from skiff"),
        "through the host port: {body:?}"
    );
    rt.kill_pod(&pod.uid, 0).unwrap();
    let nat = Command::new("ip")
        .args(["netns", "exec", &node.netns, "iptables-save", "-t", "nat"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains("8081"),
        "the host port rules are gone"
    );
}

#[test]
fn a_host_network_pod_uses_the_nodes_namespace_without_cni() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    // An ordinary pod first, so the node's namespace has its bridge.
    rt.run_sandbox(&sandbox(
        "3f0e6a52-0000-4000-8000-0000000000b1",
        "ordinary",
        "10.244.16.0/24",
    ))
    .unwrap();
    let mut host = sandbox(
        "3f0e6a52-0000-4000-8000-0000000000b2",
        "hostnet",
        "10.244.16.0/24",
    );
    host.host_network = true;
    let sb = rt.run_sandbox(&host).unwrap();
    assert_eq!(sb.ip, "", "no pod address: the status reports the node's");
    assert_eq!(node.veths(), 1, "no veth for it");
    assert_eq!(node.allocations().len(), 1, "no IP allocated for it");
    let mut server = web();
    server.command = vec![
        "httpd".into(),
        "-f".into(),
        "-p".into(),
        "8082".into(),
        "-h".into(),
        "/www".into(),
    ];
    rt.start_container(&host.uid, &server).unwrap();
    let view = rt
        .start_container(
            &host.uid,
            &sh("view", "cat /proc/net/dev; head -1 /etc/hosts", true),
        )
        .unwrap();
    let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&host.uid, "view"));
    assert_eq!(exit_code(&view), Some(0), "{log}");
    assert!(log.contains("cni0:"), "it sees the node's interfaces: {log}");
    assert!(
        log.contains("# Kubernetes-managed hosts file (host network)."),
        "{log}"
    );
    // It listens in the node's namespace (its loopback: not a pod's, not the host's).
    let mut body = String::new();
    for _ in 0..20 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.netns,
                "busybox",
                "timeout",
                "2",
                "wget",
                "-q",
                "-O",
                "-",
            ])
            .arg("http://127.0.0.1:8082/")
            .output()
            .unwrap();
        body = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(body.contains("hello from skiff"), "{body:?}");
    rt.kill_pod(&host.uid, 0).unwrap();
    assert_eq!(node.veths(), 1, "killing it leaves the other pod's network alone");
}

#[test]
fn security_contexts_apply_in_the_container() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let pod = sandbox("3f0e6a52-0000-4000-8000-0000000000f7", "secure", "10.244.17.0/24");
    rt.run_sandbox(&pod).unwrap();
    let run = |mut spec: ContainerSpec, security: skiff_kubelet::runtime::SecurityContext| {
        spec.security = security;
        let c = rt.start_container(&pod.uid, &spec).unwrap();
        let log = skiff_kubelet::logs::read_log_text(&rt.log_path(&pod.uid, &spec.name));
        assert_eq!(exit_code(&c), Some(0), "{}: {log}", spec.name);
        log
    };
    let nobody = run(
        sh("nobody", "id -u; id -g; grep CapEff /proc/self/status", true),
        skiff_kubelet::runtime::SecurityContext {
            run_as_user: Some(1000),
            run_as_group: Some(3000),
            drop_capabilities: vec!["ALL".into()],
            ..Default::default()
        },
    );
    assert_eq!(nobody, "1000\n3000\nCapEff:\t0000000000000000\n");
    let default = run(
        sh("default", "id -u; grep CapEff /proc/self/status", true),
        Default::default(),
    );
    assert_eq!(
        default, "0\nCapEff:\t00000000a80425fb\n",
        "root with containerd's 14 default capabilities"
    );
    let probe = "touch /tmp/probe-$HOSTNAME 2>/dev/null && echo writable || echo read-only";
    let read_only = run(
        sh("ro", probe, true),
        skiff_kubelet::runtime::SecurityContext {
            read_only_root_filesystem: true,
            ..Default::default()
        },
    );
    assert_eq!(read_only, "read-only\n");
    assert_eq!(run(sh("rw", probe, true), Default::default()), "writable\n");
}

fn alive(pid: i64) -> bool {
    // A zombie has exited; only its entry is left for its parent to reap.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().and_then(|r| r.split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

#[test]
fn kill_pod_removes_processes_the_veth_and_the_ip_allocation() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let pod = sandbox("3f0e6a52-0000-4000-8000-0000000000c1", "doomed", "10.244.9.0/24");
    let ip = rt.run_sandbox(&pod).unwrap().ip;
    // One container stops on TERM; the other (PID 1 without a handler ignores TERM) needs KILL.
    rt.start_container(
        &pod.uid,
        &sh(
            "polite",
            "trap 'exit 0' TERM; while true; do sleep 0.1; done",
            false,
        ),
    )
    .unwrap();
    rt.start_container(&pod.uid, &sh("stubborn", "exec sleep 1000", false))
        .unwrap();
    let runc = rt.runc();
    let pids: Vec<i64> = runc.list().unwrap().iter().map(|s| s.pid).collect();
    assert_eq!(pids.len(), 3, "pause and two containers");
    assert!(pids.iter().all(|p| alive(*p)));
    assert_eq!(node.allocations(), vec![ip.clone()]);
    assert_eq!(node.veths(), 1);
    let cgroup = Path::new("/sys/fs/cgroup/pids").join(rt.pod_cgroup(&pod.uid).trim_start_matches('/'));
    let v1 = Path::new("/sys/fs/cgroup/pids").exists();
    if v1 {
        assert!(cgroup.exists(), "the pod cgroup {}", cgroup.display());
    }

    let started = Instant::now();
    rt.kill_pod(&pod.uid, 2).expect("kill");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "the grace period is honoured: {took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !pids.iter().any(|p| alive(*p)),
        "every process of the pod is gone"
    );
    assert!(runc.list().unwrap().is_empty(), "runc has nothing left");
    assert_eq!(node.veths(), 0, "the veth is gone");
    assert!(node.allocations().is_empty(), "the IP is released");
    assert!(!rt.pod_dir(&pod.uid).exists());
    if v1 {
        assert!(!cgroup.exists(), "the pod cgroup is removed");
    }
    assert!(rt.pod_status(&pod.uid).is_none() && rt.pods().is_empty());
    rt.kill_pod(&pod.uid, 0).expect("killing a pod twice is fine");

    // The node goes on: the next pod is networked as usual (host-local moves on round-robin).
    let next = rt
        .run_sandbox(&sandbox(
            "3f0e6a52-0000-4000-8000-0000000000c2",
            "next",
            "10.244.9.0/24",
        ))
        .unwrap();
    assert_eq!(node.allocations(), vec![next.ip]);
}

/// The kubelet killed in the middle of a sandbox's CNI ADD (a SIGKILL of `skiff server` mid-rollout):
/// host-local has given the pod an address but the result was never recorded, nor the pod's IP.
/// The next sync must undo that ADD and start over, not fail for good with "duplicate allocation".
#[test]
fn a_cni_add_cut_short_is_undone_by_the_next_sync() {
    require_node!();
    let node = Node::new();
    let rt = node.rt();
    let pod = sandbox("3f0e6a52-0000-4000-8000-0000000000d1", "cut", "10.244.9.0/24");
    rt.run_sandbox(&pod).unwrap();
    // What the crash leaves: what DEL needs minus ADD's result, and no recorded pod IP.
    let cache = node.dir.join("state/cni/results").join(&pod.uid);
    let mut recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    recorded["result"] = serde_json::Value::Null;
    std::fs::write(&cache, recorded.to_string()).unwrap();
    std::fs::remove_file(rt.pod_dir(&pod.uid).join("sandbox/ip")).unwrap();

    let again = rt.run_sandbox(&pod).expect("the sandbox is made again");
    assert_eq!(
        node.allocations(),
        vec![again.ip.clone()],
        "one address, the new one"
    );
    assert_eq!(node.veths(), 1);
    rt.kill_pod(&pod.uid, 0).unwrap();
    assert!(node.allocations().is_empty(), "the IP is released");
}

/// The host's links and firewall, with packet counters (which move on their own) taken out.
fn host_network() -> String {
    let strip = |s: String| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                // iptables-save `[packets:bytes]`, nft `packets N bytes M`
                let l = l.split(" [").next().unwrap_or(l);
                l.split(" packets ").next().unwrap_or(l).to_owned()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut out = run("ip", &["-o", "link"]);
    out += &run("ip", &["-o", "addr"]);
    out += &run("ip", &["route"]);
    if which("iptables-save").is_some() {
        out += &strip(run("iptables-save", &[]));
    }
    if which("nft").is_some() {
        out += &strip(run("nft", &["list", "ruleset"]));
    }
    out
}

#[test]
fn the_host_network_is_unchanged_by_a_pod_lifecycle() {
    require_node!();
    let before = host_network();
    {
        let node = Node::new();
        let rt = node.rt();
        let pod = sandbox("3f0e6a52-0000-4000-8000-0000000000d1", "quiet", "10.244.10.0/24");
        rt.run_sandbox(&pod).unwrap();
        rt.start_container(&pod.uid, &web()).unwrap();
        // The masquerade rule exists, in the node's namespace.
        let rules = Command::new("ip")
            .args(["netns", "exec", &node.netns, "iptables-save", "-t", "nat"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&rules.stdout).contains("MASQUERADE"),
            "ipMasq rules in the node netns"
        );
        assert_eq!(host_network(), before, "nothing of the pod is on the host");
        rt.kill_pod(&pod.uid, 1).unwrap();
    }
    assert_eq!(host_network(), before);
}

#[test]
fn pause_is_static_and_exits_0_on_sigterm_and_sigint() {
    if which("kill").is_none() {
        eprintln!("skipped: kill not found");
        return;
    }
    let (pause, _) = helpers();
    assert!(
        skiff_kubelet::pause::is_static(pause).unwrap(),
        "{} is statically linked",
        pause.display()
    );
    for signal in ["TERM", "INT"] {
        let mut child = Command::new(pause)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // It must be waiting in sigwait before the signal comes, or the default action would kill it.
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &child.id().to_string()])
                .status()
                .unwrap()
                .success()
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "pause did not stop on SIG{signal}");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "SIG{signal}");
    }
}

#[test]
fn a_pod_stuck_in_an_init_container_can_still_be_killed() {
    require_node!();
    let node = Node::new();
    let pod = sandbox("3f0e6a52-0000-4000-8000-0000000000a1", "stuck", "10.244.14.0/24");
    node.rt().run_sandbox(&pod).unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| {
            node.rt()
                .start_container(&pod.uid, &sh("forever", "exec sleep 1000", true))
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while node.rt().pod_status(&pod.uid).is_none_or(|(_, c)| c.is_empty()) {
            assert!(Instant::now() < deadline, "the init container never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        node.rt()
            .kill_pod(&pod.uid, 0)
            .expect("kill while the init container runs");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "kill_pod did not wait for the init container"
        );
        let result = waiting.join().unwrap();
        assert!(
            !matches!(&result, Ok(c) if exit_code(c).is_none_or(|code| code == 0)),
            "the start of a killed init container fails, or reports it killed: {result:?}"
        );
    });
    assert!(node.rt().pods().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_runs_a_bound_pod_reports_it_running_and_stops_it_on_delete() {
    use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
    use kube::{
        Api,
        api::{DeleteParams, Patch, PatchParams, PostParams},
    };
    use skiff_tests::{Component, InProcess, eventually};
    require_node!();
    let mut node = Node::new();
    node.settle = true;
    let api = tokio::time::timeout(
        Duration::from_secs(30),
        InProcess::start(skiff_apiserver::watch_cache::WatchCacheOptions::default()),
    )
    .await
    .expect("the API server starts in time")
    .expect("the API server starts");
    let client = api.client.clone();
    let runtime = Arc::new(RuncRuntime::new(node.cfg.clone()).unwrap());
    let options = KubeletOptions {
        lease_interval: Duration::from_secs(1),
        restart_backoff: Duration::from_millis(500),
        status_interval: Duration::from_secs(5),
        ..KubeletOptions::new(NodeConfig {
            name: "rt-node".into(),
            // Only written into status.hostIP: nothing is sent to it.
            address: "127.0.0.1".into(),
            cpu: "2".into(),
            memory: "4Gi".into(),
            pods: 110,
            ephemeral_storage: "10Gi".into(),
            runtime_version: runtime.version(),
            labels: Vec::new(),
        })
    };
    let kubelet_client = client.clone();
    let kubelet_runtime = runtime.clone();
    let _kubelet = Component::spawn(move |shutdown| async move {
        let _ = run_kubelet(kubelet_client, options, kubelet_runtime, shutdown).await;
    });

    // The kubelet registers its Node; node IPAM's part (the pod CIDR) the test plays itself.
    let nodes: Api<NodeObject> = Api::all(client.clone());
    eventually("the node registers", Duration::from_secs(20), || {
        let nodes = nodes.clone();
        async move { nodes.get_opt("rt-node").await.ok().flatten() }
    })
    .await;
    let cidr = json!({ "spec": { "podCIDR": "10.244.15.0/24", "podCIDRs": ["10.244.15.0/24"] } });
    tokio::time::timeout(
        Duration::from_secs(10),
        nodes.patch("rt-node", &PatchParams::default(), &Patch::Merge(cidr)),
    )
    .await
    .unwrap()
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web" },
        "spec": {
            "nodeName": "rt-node",
            "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "web", "image": "busybox", "command": ["httpd", "-f", "-p", "8080", "-h", "/www"] }]
        }
    }))
    .unwrap();
    let created = tokio::time::timeout(Duration::from_secs(10), pods.create(&PostParams::default(), &pod))
        .await
        .unwrap()
        .unwrap();
    let uid = created.metadata.uid.clone().unwrap();
    let status = eventually("the pod runs", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let status = pods.get("web").await.ok()?.status?;
            let running = status
                .container_statuses
                .as_ref()?
                .first()?
                .state
                .as_ref()?
                .running
                .is_some();
            (status.phase.as_deref() == Some("Running") && running).then_some(status)
        }
    })
    .await;
    let pod_ip = status.pod_ip.clone().unwrap_or_default();
    assert!(
        pod_ip.starts_with("10.244.15."),
        "pod IP {pod_ip} from the node's pod CIDR"
    );
    assert!(
        status.container_statuses.unwrap()[0]
            .container_id
            .as_deref()
            .unwrap_or_default()
            .starts_with("runc://"),
        "the container id names the runtime"
    );
    assert_eq!(runtime.pods(), vec![uid.clone()]);

    // A pod that runs to completion ends Succeeded, with its container's exit code: the container
    // ends seconds after the last change to the pod, so only the PLEG's relist can notice it.
    let once: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "once" },
        "spec": {
            "nodeName": "rt-node", "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "job", "image": "busybox", "command": ["sh", "-c", "sleep 2; echo done"] }]
        }
    }))
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        pods.create(&PostParams::default(), &once),
    )
    .await
    .unwrap()
    .unwrap();
    let done = eventually("the one-shot pod succeeds", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let status = pods.get("once").await.ok()?.status?;
            (status.phase.as_deref() == Some("Succeeded")).then_some(status)
        }
    })
    .await;
    let terminated = done.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    tokio::time::timeout(
        Duration::from_secs(10),
        pods.delete("once", &DeleteParams::default()),
    )
    .await
    .unwrap()
    .unwrap();

    // A container that keeps crashing is restarted (after a back-off), counted, its last run kept.
    let crasher: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "crasher" },
        "spec": {
            "nodeName": "rt-node", "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "app", "image": "busybox", "command": ["sh", "-c", "sleep 0.2; exit 7"] }]
        }
    }))
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        pods.create(&PostParams::default(), &crasher),
    )
    .await
    .unwrap()
    .unwrap();
    let crashed = eventually(
        "the crashing container is restarted twice",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                let status = pods
                    .get("crasher")
                    .await
                    .ok()?
                    .status?
                    .container_statuses?
                    .pop()?;
                (status.restart_count >= 2).then_some(status)
            }
        },
    )
    .await;
    let last = crashed
        .last_state
        .and_then(|s| s.terminated)
        .expect("lastState.terminated");
    assert_eq!(last.exit_code, 7);
    tokio::time::timeout(
        Duration::from_secs(10),
        pods.delete("crasher", &DeleteParams::default()),
    )
    .await
    .unwrap()
    .unwrap();

    tokio::time::timeout(
        Duration::from_secs(10),
        pods.delete("web", &DeleteParams::default()),
    )
    .await
    .unwrap()
    .unwrap();
    eventually(
        "the kubelet stops the pods and deletes them for good",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                pods.list(&Default::default())
                    .await
                    .ok()?
                    .items
                    .is_empty()
                    .then_some(())
            }
        },
    )
    .await;
    let probe = runtime.clone();
    eventually("nothing of the pod runs", Duration::from_secs(10), || {
        let probe = probe.clone();
        async move { probe.pods().is_empty().then_some(()) }
    })
    .await;
    assert!(node.allocations().is_empty(), "its IP is released");
    assert_eq!(node.veths(), 0);
}
