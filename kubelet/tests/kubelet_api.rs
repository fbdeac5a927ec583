//! The kubelet API for real: a kubelet over runc with its API on a loopback port, an API server in
//! this process that proxies `pods/log`, `pods/exec` and `pods/attach` to it, and the real kubectl.
//!
//! Needs root, runc, the CNI plugins, busybox and kubectl (scripts/setup.sh installs them); it
//! prints why and passes without doing anything when one is missing. The node is a network
//! namespace the test creates (`skiff-kapi-…`); its pods, runc state, cgroups and the namespace are
//! removed by a Drop guard, even when the test fails. Every wait and every kubectl has a timeout.

mod common;
use common::{helpers, which};

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_kubelet::{
    kubelet::{KubeletOptions, run_kubelet},
    node::NodeConfig,
    runc_runtime::{RuncConfig, RuncRuntime, remove_cgroup},
    runtime::ContainerRuntime,
    server::{ServerOptions, tls::pem_certificates},
};
use skiff_tests::{Component, InProcess, eventually};

/// Why this test cannot run here, if it cannot.
fn missing() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !root {
        return Some("not root".into());
    }
    for tool in ["runc", "nsenter", "ip", "busybox", "kubectl", "script", "curl"] {
        if which(tool).is_none() {
            return Some(format!("{tool} not found"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins (/usr/lib/cni) are not installed".into());
    }
    None
}

/// The node: a network namespace, a state directory, a cgroup parent; all removed on drop.
struct Node {
    netns: String,
    dir: PathBuf,
    cfg: RuncConfig,
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
        let netns = format!("skiff-kapi-{tag}");
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
        cfg.cgroup_parent = format!("/skiff-kapi-{tag}");
        let node = Node {
            netns: netns.clone(),
            dir,
            cfg,
        };
        assert!(
            Command::new("ip")
                .args(["netns", "add", &netns])
                .status()
                .unwrap()
                .success()
        );
        let lo = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status();
        assert!(lo.unwrap().success());
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for d in ["proc", "dev", "sys", "tmp", "www"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::write(rootfs.join("www/index.html"), "hello through port-forward\n").unwrap();
        std::fs::copy(which("busybox").unwrap(), bin.join("busybox")).unwrap();
        for applet in [
            "sh", "sleep", "echo", "cat", "tty", "printf", "seq", "tar", "httpd",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A kubelet task may still finish an operation after the test ends: clean up twice.
        for round in 0..2 {
            if round > 0 {
                std::thread::sleep(Duration::from_secs(1));
            }
            if let Ok(rt) = RuncRuntime::new(self.cfg.clone()) {
                for uid in rt.pods() {
                    let _ = rt.kill_pod(&uid, 0);
                }
                let runc = rt.runc().clone();
                for c in runc.list().unwrap_or_default() {
                    let _ = runc.delete_force(&c.id);
                }
            }
        }
        // Whatever still runs in the test's cgroups (a sandbox a kubelet task was still making
        // during the passes above, whose runc state is gone with the directory) is killed.
        for _ in 0..3 {
            let pids = cgroup_pids(&self.cfg.cgroup_parent);
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_cgroup(&self.cfg.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The processes in cgroup `parent` and below, in any hierarchy (v1 or v2).
fn cgroup_pids(parent: &str) -> Vec<String> {
    fn walk(dir: &Path, pids: &mut Vec<String>) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.lines().map(str::to_owned));
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), pids);
            }
        }
    }
    let rel = parent.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    let mut mounts = vec![root.to_path_buf()];
    mounts.extend(
        std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir()),
    );
    let mut pids = Vec::new();
    for mount in mounts {
        let dir = mount.join(rel);
        if dir.is_dir() {
            walk(&dir, &mut pids);
        }
    }
    pids.sort();
    pids.dedup();
    pids
}

/// Runs kubectl with `args` (and `stdin`), killed after `secs`: (exit code, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>, secs: u64) -> (i32, String, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env("HOME", kubeconfig.parent().unwrap())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut to = child.stdin.take().unwrap();
        to.write_all(input.as_bytes()).unwrap();
    }
    wait_output(child, Duration::from_secs(secs))
}

/// Waits for `child` at most `within` (killing it then) and returns its code and output.
fn wait_output(mut child: std::process::Child, within: Duration) -> (i32, String, String) {
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let readers = (
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        }),
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        }),
    );
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break -9;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, readers.0.join().unwrap(), readers.1.join().unwrap())
}

async fn create(pods: &Api<Pod>, pod: serde_json::Value) {
    let pod: Pod = serde_json::from_value(pod).unwrap();
    tokio::time::timeout(Duration::from_secs(10), pods.create(&PostParams::default(), &pod))
        .await
        .expect("create in time")
        .expect("create");
}

async fn running(pods: &Api<Pod>, name: &str) {
    let (pods, name) = (pods.clone(), name.to_owned());
    eventually(&format!("pod {name} runs"), Duration::from_secs(30), || {
        let (pods, name) = (pods.clone(), name.clone());
        async move {
            let status = pods.get(&name).await.ok()?.status?;
            let all = status.container_statuses?;
            all.iter()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_logs_and_exec_reach_the_kubelet_through_the_api_server() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why} (run as root after scripts/setup.sh)");
        return;
    }
    let node = Node::new();
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
        restart_backoff: Duration::from_millis(300),
        status_interval: Duration::from_secs(5),
        server: Some(ServerOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            client_ca: pem_certificates(&api.ca_pem),
            serving_names: vec!["127.0.0.1".into()],
            streams: runtime.clone(),
        }),
        ..KubeletOptions::new(NodeConfig {
            name: "kapi-node".into(),
            address: "127.0.0.1".into(),
            cpu: "2".into(),
            memory: "4Gi".into(),
            pods: 110,
            ephemeral_storage: "10Gi".into(),
            runtime_version: runtime.version(),
            labels: Vec::new(),
        })
    };
    let (kubelet_client, kubelet_runtime) = (client.clone(), runtime.clone());
    let _kubelet = Component::spawn(move |shutdown| async move {
        let _ = run_kubelet(kubelet_client, options, kubelet_runtime, shutdown).await;
    });

    // The node registers with the kubelet API's real port; the pod CIDR is node IPAM's part.
    let nodes: Api<NodeObject> = Api::all(client.clone());
    let port = eventually(
        "the node reports its kubelet port",
        Duration::from_secs(20),
        || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get_opt("kapi-node").await.ok().flatten()?;
                let port = node.status?.daemon_endpoints?.kubelet_endpoint?.port;
                (port != 10250 && port > 0).then_some(port)
            }
        },
    )
    .await;
    let cidr = json!({ "spec": { "podCIDR": "10.244.16.0/24", "podCIDRs": ["10.244.16.0/24"] } });
    tokio::time::timeout(
        Duration::from_secs(10),
        nodes.patch("kapi-node", &PatchParams::default(), &Patch::Merge(cidr)),
    )
    .await
    .unwrap()
    .unwrap();

    // Anyone without the cluster CA's certificate is turned away.
    let curl = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"])
        .arg(format!("https://127.0.0.1:{port}/containerLogs/default/talker/a"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&curl.stdout), "401");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    create(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "talker" },
            "spec": { "nodeName": "kapi-node", "terminationGracePeriodSeconds": 1, "containers": [
                { "name": "a", "image": "busybox", "command": ["sh", "-c",
                  "echo one; sleep 0.1; echo two >&2; sleep 0.1; printf 'thr'; sleep 0.1; printf 'ee\\n'; exec sleep 3600"] },
                { "name": "b", "image": "busybox", "command": ["sh", "-c",
                  "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"] },
            ] }
        }),
    )
    .await;
    create(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "crasher" },
            "spec": { "nodeName": "kapi-node", "terminationGracePeriodSeconds": 1, "containers": [
                { "name": "c", "image": "busybox", "command": ["sh", "-c", "echo run; sleep 0.5; exit 1"] },
            ] }
        }),
    )
    .await;
    create(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "half" },
            "spec": { "nodeName": "kapi-node", "terminationGracePeriodSeconds": 1, "restartPolicy": "Never",
              "containers": [
                { "name": "done", "image": "busybox", "command": ["sh", "-c", "echo finished"] },
                { "name": "runs", "image": "busybox", "command": ["sleep", "3600"] },
            ] }
        }),
    )
    .await;
    create(
        &pods,
        json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "web" },
            "spec": { "nodeName": "kapi-node", "terminationGracePeriodSeconds": 1, "containers": [
                { "name": "web", "image": "busybox", "command": ["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"] },
            ] }
        }),
    )
    .await;
    running(&pods, "talker").await;
    let kc = api.kubeconfig.clone();
    let kubectl = move |args: &[&str], stdin: Option<&str>, secs: u64| {
        let (kc, args, stdin) = (
            kc.clone(),
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            stdin.map(str::to_owned),
        );
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                kubectl(&kc, &args, stdin.as_deref(), secs)
            })
            .await
            .unwrap()
        }
    };

    // Logs: whole, tail, timestamps, limit, since; partial writes are one line.
    let wrote_all = || {
        let kubectl = kubectl.clone();
        async move {
            let (code, out, _) = kubectl(&["logs", "talker", "-c", "a"], None, 20).await;
            (code == 0 && out.lines().count() >= 3).then_some(out)
        }
    };
    let out = eventually("talker wrote its lines", Duration::from_secs(10), wrote_all).await;
    assert_eq!(out, "one\ntwo\nthree\n");
    let (code, out, err) = kubectl(&["logs", "talker"], None, 20).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("one\n"), "the first container by default: {out}");
    assert!(err.contains("Defaulted container \"a\" out of: a, b"), "{err}");
    let (_, out, _) = kubectl(&["logs", "talker", "-c", "a", "--tail=1"], None, 20).await;
    assert_eq!(out, "three\n");
    let (_, out, _) = kubectl(&["logs", "talker", "-c", "a", "--limit-bytes=6"], None, 20).await;
    assert_eq!(out, "one\ntw");
    let (_, out, _) = kubectl(&["logs", "talker", "-c", "a", "--since=1h"], None, 20).await;
    assert_eq!(out, "one\ntwo\nthree\n");
    let (_, out, _) = kubectl(&["logs", "talker", "-c", "a", "--timestamps"], None, 20).await;
    let first = out.lines().next().unwrap_or_default();
    let (time, text) = first.split_once(' ').unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && text == "one",
        "a timestamp, then the line: {out:?}"
    );

    // Errors are upstream's.
    let (code, _, err) = kubectl(&["logs", "talker", "-c", "nope"], None, 20).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("container nope is not valid for pod talker"),
        "{err}"
    );
    let (code, _, err) = kubectl(&["logs", "ghost"], None, 20).await;
    assert_ne!(code, 0);
    assert!(err.contains("pods \"ghost\" not found"), "{err}");

    // -f streams new lines as they are written, until kubectl is stopped.
    let (code, out, _) = kubectl(&["logs", "-f", "talker", "-c", "b"], None, 3).await;
    assert_eq!(code, -9, "still following when stopped");
    let ticks = out.lines().filter(|l| l.starts_with("tick ")).count();
    assert!(ticks >= 8, "about 15 ticks in 3 s, got {ticks}: {out}");

    // --previous: the run before the restart; -f on a container that ends, ends.
    eventually("the crasher restarted", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let s = pods
                .get("crasher")
                .await
                .ok()?
                .status?
                .container_statuses?
                .pop()?;
            (s.restart_count >= 1).then_some(())
        }
    })
    .await;
    let (code, out, err) = kubectl(&["logs", "crasher", "--previous"], None, 20).await;
    assert_eq!((code, out.as_str()), (0, "run\n"), "{err}");
    let (code, _, err) = kubectl(&["logs", "talker", "-c", "a", "--previous"], None, 20).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("previous terminated container \"a\" in pod \"talker\" not found"),
        "{err}"
    );
    let started = Instant::now();
    let (code, out, err) = kubectl(&["logs", "-f", "crasher"], None, 20).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("run\n"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "-f ends with the container"
    );

    // exec: exit codes propagate, stdout and stderr stay apart, stdin arrives and ends.
    let (code, _, err) = kubectl(
        &["exec", "talker", "-c", "a", "--", "sh", "-c", "exit 3"],
        None,
        20,
    )
    .await;
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("command terminated with exit code 3"), "{err}");
    let (code, out, err) = kubectl(
        &[
            "exec",
            "talker",
            "-c",
            "a",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2",
        ],
        None,
        20,
    )
    .await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "out\n", "err\n"));
    let (code, out, err) = kubectl(
        &["exec", "-i", "talker", "-c", "a", "--", "cat"],
        Some("hi\nthere\n"),
        20,
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "hi\nthere\n"), "{err}");

    // cp is tar over exec's stdin and stdout, both ways.
    let local = api.kubeconfig.with_file_name("payload");
    let payload: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&local, &payload).unwrap();
    let to_pod = format!("{}", local.display());
    let (code, _, err) = kubectl(&["cp", "-c", "a", &to_pod, "talker:/tmp/payload"], None, 30).await;
    assert_eq!(code, 0, "{err}");
    let back = api.kubeconfig.with_file_name("back");
    let from_pod = format!("{}", back.display());
    let (code, _, err) = kubectl(&["cp", "-c", "a", "talker:/tmp/payload", &from_pod], None, 30).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        std::fs::read_to_string(&back).unwrap_or_default() == payload,
        "the file came back whole"
    );

    // exec -it: a real terminal (kubectl's own stdin is a terminal through script(1)).
    let script = Command::new("script")
        .args(["-qec"])
        .arg(format!(
            "kubectl --kubeconfig {} exec -it talker -c a -- sh -c 'tty; exit 4'",
            api.kubeconfig.display()
        ))
        .arg("/dev/null")
        .env("HOME", api.kubeconfig.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (code, out, err) = tokio::task::spawn_blocking(move || wait_output(script, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(
        out.contains("/dev/pts/"),
        "the command has a terminal: {out} {err}"
    );
    assert_eq!(code, 4, "{out} {err}");

    // attach: what the container writes from now on, until kubectl is stopped.
    let (code, out, err) = kubectl(&["attach", "talker", "-c", "b"], None, 5).await;
    assert_eq!(code, -9, "still attached when stopped: {err}");
    assert!(
        out.lines().filter(|l| l.starts_with("tick ")).count() >= 3,
        "{out} {err}"
    );
    assert!(!out.contains("tick 0\n"), "only new output: {out}");

    // A container that ended has its log, but cannot be exec'd into: the kubelet's words.
    eventually("half's first container ends", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let s = pods.get("half").await.ok()?.status?.container_statuses?;
            s.iter()
                .any(|c| c.name == "done" && c.state.as_ref().is_some_and(|s| s.terminated.is_some()))
                .then_some(())
        }
    })
    .await;
    let (code, out, err) = kubectl(&["logs", "half", "-c", "done"], None, 20).await;
    assert_eq!((code, out.as_str()), (0, "finished\n"), "{err}");
    let (code, _, err) = kubectl(&["exec", "half", "-c", "done", "--", "true"], None, 20).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("unable to upgrade connection: container not found (\"done\")"),
        "{err}"
    );

    // port-forward: local connections reach the pod's loopback, one after another.
    running(&pods, "web").await;
    let local_port = skiff_tests::free_port();
    let mut forward = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&api.kubeconfig)
        .args(["port-forward", "pod/web", &format!("{local_port}:8080")])
        .env("HOME", api.kubeconfig.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let get = move || {
        use std::io::Write;
        let mut conn = std::net::TcpStream::connect(("127.0.0.1", local_port)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        conn.read_to_string(&mut response).ok()?;
        response.contains("200 OK").then_some(response)
    };
    let first = eventually("port-forward answers", Duration::from_secs(20), || async move {
        tokio::task::spawn_blocking(get).await.ok().flatten()
    })
    .await;
    assert!(first.ends_with("hello through port-forward\n"), "{first}");
    for _ in 0..3 {
        let again = tokio::task::spawn_blocking(get).await.unwrap();
        assert!(again.is_some_and(|r| r.ends_with("hello through port-forward\n")));
    }
    let _ = forward.kill();
    let _ = forward.wait();

    // A container that is not the pod's cannot be exec'd into.
    let (code, _, err) = kubectl(&["exec", "talker", "-c", "nope", "--", "true"], None, 20).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("container nope is not valid for pod talker"),
        "{err}"
    );
}
