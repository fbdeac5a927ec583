//! Node pressure for real: the kubelet's eviction manager reads this machine's memory signal, reports
//! MemoryPressure on the Node, evicts the BestEffort pod that runs (Failed, reason Evicted, its
//! containers stopped and removed) rather than the pod within its memory request, and lets the
//! condition go once the transition period has passed.
//!
//! The threshold is set above the machine's whole memory (`memory.available<MemTotal+1Gi`), so the
//! real signal crosses it; the stats are armed by the test for one pass only, once both pods run, so
//! exactly one pod is evicted and the ranking decides which. While the condition holds, a new
//! BestEffort pod is rejected.
//!
//! Needs root, runc, the CNI plugins and busybox (scripts/setup.sh); skipped with a note otherwise.
//! Like tests/runc_runtime.rs, the node is a network namespace the test makes, with its own state
//! directory and cgroup parent, all removed by a Drop guard even when the test fails.

mod common;
use common::{helpers, which};

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Event, Node as NodeObject, Pod};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use skiff_kubelet::{
    eviction::{
        EvictionConfig, NodeStats, Observations, PodUsage, Signal, SystemStats, meminfo_bytes,
        parse_thresholds,
    },
    kubelet::{KubeletOptions, run_kubelet},
    node::NodeConfig,
    runc_runtime::{RuncConfig, RuncRuntime, remove_cgroup},
    runtime::ContainerRuntime,
};
use skiff_tests::{Component, InProcess, eventually};

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
    for tool in ["runc", "ip", "busybox"] {
        if which(tool).is_none() {
            return Some(format!("{tool} not found"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins (/usr/lib/cni) are not installed".into());
    }
    None
}

/// A node in its own network namespace, state directory and cgroup parent; dropping it stops every
/// pod and removes all of it.
struct Node {
    netns: String,
    dir: PathBuf,
    cfg: RuncConfig,
    kubelet_runtime: Option<Arc<RuncRuntime>>,
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
        let netns = format!("skiff-ev-{tag}");
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
        let node = Node {
            netns: netns.clone(),
            dir,
            cfg,
            kubelet_runtime: None,
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
        for d in ["proc", "dev", "sys", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(which("busybox").unwrap(), bin.join("busybox")).unwrap();
        for applet in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet's blocking tasks may still finish an operation: clean up twice, a moment apart.
        for round in 0..2 {
            if round > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            let rt = match &self.kubelet_runtime {
                Some(rt) => Ok(rt.clone()),
                None => RuncRuntime::new(self.cfg.clone()).map(Arc::new),
            };
            if let Ok(rt) = rt {
                for uid in rt.pods() {
                    let _ = rt.kill_pod(&uid, 0);
                }
                for c in rt.runc().list().unwrap_or_default() {
                    let _ = rt.runc().delete_force(&c.id);
                }
            }
            skiff_kubelet::volumes::unmount_all(&self.dir);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_cgroup(&self.cfg.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The machine's stats, reported only for the passes the test arms (none otherwise: no threshold
/// is crossed).
#[derive(Debug)]
struct Armed {
    inner: SystemStats,
    passes: AtomicUsize,
}

impl NodeStats for Armed {
    fn observe(&self) -> Observations {
        let armed = self
            .passes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            self.inner.observe()
        } else {
            Observations::new()
        }
    }

    fn pod_usage(&self, uid: &str, containers: &[String], signal: Signal) -> Option<PodUsage> {
        self.inner.pod_usage(uid, containers, signal)
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .unwrap_or_else(|_| panic!("{what} took too long"))
}

async fn pod_json(pods: &Api<Pod>, name: &str) -> Option<Value> {
    serde_json::to_value(pods.get(name).await.ok()?).ok()
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_pressure_evicts_the_best_effort_pod_and_is_reported_on_the_node() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why} (run as root after scripts/setup.sh)");
        return;
    }
    let started = Instant::now();
    let mut node = Node::new();
    let api = within(
        "the API server start",
        InProcess::start(skiff_apiserver::watch_cache::WatchCacheOptions::default()),
    )
    .await
    .expect("the API server starts");
    let client = api.client.clone();
    let runtime = Arc::new(RuncRuntime::new(node.cfg.clone()).unwrap());
    node.kubelet_runtime = Some(runtime.clone());

    // A threshold above all the memory there is: the real signal crosses it.
    let total = meminfo_bytes(&std::fs::read_to_string("/proc/meminfo").unwrap(), "MemTotal").unwrap();
    let threshold = format!("memory.available<{}", total + (1 << 30));
    let stats = Arc::new(Armed {
        inner: SystemStats::for_runc(&node.cfg),
        passes: AtomicUsize::new(0),
    });
    let eviction = EvictionConfig {
        thresholds: parse_thresholds(&threshold).unwrap(),
        pressure_transition_period: Duration::from_secs(10),
        monitoring_interval: Duration::from_millis(500),
        ..EvictionConfig::new(stats.clone())
    };
    let options = KubeletOptions {
        lease_interval: Duration::from_secs(1),
        status_interval: Duration::from_secs(5),
        eviction: Some(eviction),
        ..KubeletOptions::new(NodeConfig {
            name: "ev-node".into(),
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
    let nodes: Api<NodeObject> = Api::all(client.clone());
    let node_json = || {
        let nodes = nodes.clone();
        async move { serde_json::to_value(nodes.get("ev-node").await.ok()?).ok() }
    };
    let memory_pressure = |n: &Value| condition(n, "MemoryPressure").map(|c| c["status"].clone());
    // Registration creates the Node, then writes its status: wait for the status, not the create.
    let registered = eventually("the node registers", Duration::from_secs(20), || async {
        node_json().await.filter(|n| memory_pressure(n).is_some())
    })
    .await;
    assert_eq!(memory_pressure(&registered), Some(json!("False")));
    let cidr = json!({ "spec": { "podCIDR": "10.244.31.0/24", "podCIDRs": ["10.244.31.0/24"] } });
    within(
        "the pod CIDR patch",
        nodes.patch("ev-node", &PatchParams::default(), &Patch::Merge(cidr)),
    )
    .await
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let container = json!({ "name": "sleeper", "image": "busybox", "command": ["sleep", "1000"] });
    let mut guaranteed = container.clone();
    guaranteed["resources"] = json!({ "requests": { "memory": "1Gi" } });
    for (name, c) in [("besteffort", container), ("within-request", guaranteed)] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": { "nodeName": "ev-node", "terminationGracePeriodSeconds": 1, "containers": [c] }
        }))
        .unwrap();
        within("a pod create", pods.create(&PostParams::default(), &pod))
            .await
            .unwrap();
    }
    let mut uids = Vec::new();
    for name in ["besteffort", "within-request"] {
        let pod = eventually(&format!("{name} runs"), Duration::from_secs(30), || {
            let pods = pods.clone();
            async move {
                let p = pod_json(&pods, name).await?;
                (p["status"]["phase"] == "Running"
                    && p["status"]["containerStatuses"][0]["state"]["running"].is_object())
                .then_some(p)
            }
        })
        .await;
        uids.push(pod["metadata"]["uid"].as_str().unwrap().to_owned());
    }
    let ran = started.elapsed();

    // One pass with the real signal: pressure, and one pod evicted.
    stats.passes.store(1, Ordering::SeqCst);
    let pressed = eventually("MemoryPressure=True", Duration::from_secs(10), || async {
        let n = node_json().await?;
        (memory_pressure(&n) == Some(json!("True"))).then_some(n)
    })
    .await;
    let c = condition(&pressed, "MemoryPressure").unwrap();
    assert_eq!(
        (c["reason"].as_str(), c["message"].as_str()),
        (
            Some("KubeletHasInsufficientMemory"),
            Some("kubelet has insufficient memory available")
        )
    );
    let evicted = eventually("the BestEffort pod is evicted", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let p = pod_json(&pods, "besteffort").await?;
            (p["status"]["phase"] == "Failed").then_some(p)
        }
    })
    .await;
    let status = &evicted["status"];
    assert_eq!(status["reason"], "Evicted", "{status:#}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("The node was low on resource: memory. Threshold quantity: "),
        "{message}"
    );
    let target = condition(&evicted, "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!(
        (target["status"].as_str(), target["reason"].as_str()),
        (Some("True"), Some("TerminationByKubelet"))
    );
    assert!(status["containerStatuses"][0]["state"]["terminated"].is_object());
    // Its containers are stopped and their sandbox, files and cgroup removed.
    let uid = &uids[0];
    assert!(!runtime.pods().contains(uid), "the evicted pod's sandbox is gone");
    assert!(!runtime.pod_dir(uid).exists(), "the evicted pod's files are gone");
    let cgroup = runtime.pod_cgroup(uid);
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/memory{cgroup}")).exists()
            && !Path::new(&format!("/sys/fs/cgroup{cgroup}")).exists(),
        "the evicted pod's cgroup is gone"
    );
    // The Evicted event says why.
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually("an Evicted event", Duration::from_secs(10), || {
        let events = events.clone();
        async move {
            let list = events.list(&ListParams::default()).await.ok()?;
            list.items.into_iter().find(|e| {
                e.reason.as_deref() == Some("Evicted")
                    && e.involved_object.name.as_deref() == Some("besteffort")
            })
        }
    })
    .await;

    // While the condition holds a new BestEffort pod is not admitted (upstream's eviction Admit).
    let late: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "late" },
        "spec": { "nodeName": "ev-node", "containers": [{ "name": "sleeper", "image": "busybox", "command": ["sleep", "1000"] }] }
    }))
    .unwrap();
    within("a pod create", pods.create(&PostParams::default(), &late))
        .await
        .unwrap();
    let rejected = eventually("the late pod is rejected", Duration::from_secs(10), || {
        let pods = pods.clone();
        async move {
            let p = pod_json(&pods, "late").await?;
            (p["status"]["phase"] == "Failed").then_some(p)
        }
    })
    .await;
    assert_eq!(
        (
            rejected["status"]["reason"].as_str(),
            rejected["status"]["message"].as_str()
        ),
        (
            Some("Evicted"),
            Some("Pod was rejected: The node had condition: [MemoryPressure]. ")
        )
    );
    assert_eq!(runtime.pods().len(), 1, "nothing of the rejected pod runs");

    // The pressure goes after the transition period; the pod within its request still runs, and
    // the evicted one stays Failed, its sandbox not brought back.
    let relieved = eventually("MemoryPressure=False again", Duration::from_secs(20), || async {
        let n = node_json().await?;
        (memory_pressure(&n) == Some(json!("False"))).then_some(n)
    })
    .await;
    assert_eq!(
        condition(&relieved, "MemoryPressure").unwrap()["reason"],
        "KubeletHasSufficientMemory"
    );
    let kept = pod_json(&pods, "within-request").await.unwrap();
    assert_eq!(kept["status"]["phase"], "Running");
    assert!(runtime.pods().contains(&uids[1]));
    assert!(!runtime.pods().contains(uid));
    assert_eq!(
        pod_json(&pods, "besteffort").await.unwrap()["status"]["phase"],
        "Failed"
    );
    eprintln!(
        "pods ran after {:.1?}; evicted and relieved by {:.1?}",
        ran,
        started.elapsed()
    );
}
