//! Node IPAM and the node lifecycle controllers against the real API server (in process) through
//! kube-rs: nodes get distinct pod CIDRs (reused once a node is gone), a node whose Lease stops being
//! renewed becomes Ready=Unknown and tainted unreachable, and the taint eviction deletes the pods that
//! do not tolerate a NoExecute taint, at once or when their tolerationSeconds run out.
//!
//! No kubelet runs here: the tests write the Nodes, their status and their Leases, and the pods'
//! status, as kubelets would.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node, Pod},
        events::v1::Event,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_controllers::{nodeipam, nodelifecycle};
use skiff_tests::{Component, InProcess};

/// The bound on any single API call.
const T: Duration = Duration::from_secs(10);

async fn start_server() -> InProcess {
    tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server")
}

/// Bounds one API call.
async fn t<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("API call in time")
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `within`.
async fn eventually<V, F, Fut>(what: &str, within: Duration, mut check: F) -> V
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<V>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(v)) = tokio::time::timeout(T, check()).await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn create_node(client: &Client, name: &str, pod_cidr: Option<&str>) -> Node {
    let mut node = json!({ "metadata": { "name": name } });
    if let Some(cidr) = pod_cidr {
        node["spec"] = json!({ "podCIDR": cidr, "podCIDRs": [cidr] });
    }
    let node: Node = serde_json::from_value(node).expect("node");
    t(Api::<Node>::all(client.clone()).create(&PostParams::default(), &node))
        .await
        .expect("create node")
}

fn pod_cidr(node: &Node) -> Option<String> {
    node.spec.as_ref()?.pod_cidr.clone()
}

/// Waits until node `name` has a pod CIDR; returns it.
async fn wait_cidr(client: &Client, name: &str) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(
        &format!("a pod CIDR on {name}"),
        Duration::from_secs(10),
        || async {
            let node = nodes.get(name).await.ok()?;
            let cidr = pod_cidr(&node)?;
            assert_eq!(
                node.spec.as_ref()?.pod_cidrs.as_deref(),
                Some(&[cidr.clone()][..])
            );
            Some(cidr)
        },
    )
    .await
}

/// The notes of the events with `reason` about the object named `name`.
async fn event_notes(client: &Client, reason: &str, name: &str) -> Vec<String> {
    let events = t(Api::<Event>::all(client.clone()).list(&Default::default()))
        .await
        .expect("list events");
    events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs_and_a_deleted_nodes_cidr_is_reused() {
    let server = start_server().await;
    let client = server.client.clone();
    // A node that already has a CIDR before the allocator starts: it must never be handed out again.
    create_node(&client, "old", Some("10.244.0.0/24")).await;
    let options = nodeipam::Options {
        cluster_cidr: "10.244.0.0/22".parse().expect("cidr"),
        node_cidr_mask_size: 24,
    };
    let c = client.clone();
    let _ipam = Component::spawn(|shutdown| nodeipam::run(c, options, shutdown));

    for name in ["n1", "n2", "n3"] {
        create_node(&client, name, None).await;
    }
    let mut cidrs = Vec::new();
    for name in ["n1", "n2", "n3"] {
        cidrs.push(wait_cidr(&client, name).await);
    }
    let mut sorted = cidrs.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"],
        "got {cidrs:?}"
    );

    // The range is full: a fourth node waits, with a CIDRNotAvailable event.
    create_node(&client, "n4", None).await;
    let notes = eventually(
        "a CIDRNotAvailable event about n4",
        Duration::from_secs(10),
        || async {
            let notes = event_notes(&client, "CIDRNotAvailable", "n4").await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    assert_eq!(notes[0], "Node n4 status is now: CIDRNotAvailable");
    let n4 = t(Api::<Node>::all(client.clone()).get("n4")).await.expect("n4");
    assert_eq!(pod_cidr(&n4), None);

    // n2 goes: n4 gets its CIDR.
    t(Api::<Node>::all(client.clone()).delete("n2", &DeleteParams::default()))
        .await
        .expect("delete n2");
    assert_eq!(wait_cidr(&client, "n4").await, cidrs[1]);
}

/// A node that posts Ready=True once and a Lease the test renews while `renewing` is set.
struct HollowNode {
    name: String,
    renewing: Arc<AtomicBool>,
    renewer: tokio::task::JoinHandle<()>,
}

impl HollowNode {
    async fn start(client: &Client, name: &str) -> Self {
        create_node(client, name, None).await;
        post_ready(client, name).await;
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
        let lease: Lease = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": { "holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": micro_now() }
        }))
        .expect("lease");
        t(leases.create(&PostParams::default(), &lease))
            .await
            .expect("create lease");
        let renewing = Arc::new(AtomicBool::new(true));
        let (flag, lease_name) = (renewing.clone(), name.to_owned());
        let renewer = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                if flag.load(Ordering::SeqCst) {
                    let patch = json!({ "spec": { "renewTime": micro_now() } });
                    let _ = tokio::time::timeout(
                        T,
                        leases.patch(&lease_name, &PatchParams::default(), &Patch::Merge(patch)),
                    )
                    .await;
                }
            }
        });
        Self {
            name: name.to_owned(),
            renewing,
            renewer,
        }
    }
}

impl Drop for HollowNode {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// A MicroTime as the API writes it.
fn micro_now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Posts the node's status as a kubelet does: Ready=True with a fresh heartbeat.
async fn post_ready(client: &Client, name: &str) {
    let now = Timestamp::now().to_string();
    let status = json!({ "status": { "conditions": [
        { "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
          "lastHeartbeatTime": now, "lastTransitionTime": now },
        { "type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
          "lastHeartbeatTime": now, "lastTransitionTime": now },
    ]}});
    t(Api::<Node>::all(client.clone()).patch_status(name, &PatchParams::default(), &Patch::Merge(status)))
        .await
        .expect("node status");
}

/// Creates a ready pod on `node` with `tolerations`.
async fn ready_pod(client: &Client, name: &str, node: &str, tolerations: serde_json::Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "nodeName": node, "tolerations": tolerations,
                  "containers": [{ "name": "c", "image": "busybox:1.36" }] }
    }))
    .expect("pod");
    t(pods.create(&PostParams::default(), &pod))
        .await
        .expect("create pod");
    let status = json!({ "status": { "phase": "Running", "podIP": "10.244.1.5",
        "conditions": [{ "type": "Ready", "status": "True", "lastTransitionTime": Timestamp::now().to_string() }] }});
    t(pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)))
        .await
        .expect("pod status");
}

fn toleration(key: &str, seconds: Option<i64>) -> serde_json::Value {
    let mut t = json!({ "key": key, "operator": "Exists", "effect": "NoExecute" });
    if let Some(s) = seconds {
        t["tolerationSeconds"] = json!(s);
    }
    t
}

/// Whether the pod is gone or being deleted.
async fn evicted(pods: &Api<Pod>, name: &str) -> bool {
    match t(pods.get_opt(name)).await.expect("get pod") {
        None => true,
        Some(p) => p.metadata.deletion_timestamp.is_some(),
    }
}

fn ready_status(pod: &Pod) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

fn node_condition(node: &Node, type_: &str) -> Option<(String, Option<String>, Option<String>)> {
    let c = node
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn taint_keys(node: &Node) -> Vec<(String, String)> {
    let mut keys: Vec<_> = node
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .map(|t| (t.key.clone(), t.effect.clone()))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_renewing_its_lease_is_tainted_and_its_pods_evicted() {
    let server = start_server().await;
    let client = server.client.clone();
    let options = nodelifecycle::Options {
        node_monitor_grace_period: Duration::from_secs(3),
        node_monitor_period: Duration::from_millis(250),
        ..Default::default()
    };
    let c = client.clone();
    let _lifecycle = Component::spawn(|shutdown| nodelifecycle::run(c, options, shutdown));
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let node = HollowNode::start(&client, "n1").await;
    // "plain" gets DefaultTolerationSeconds' 300 s from admission.
    ready_pod(&client, "plain", "n1", json!([])).await;
    ready_pod(
        &client,
        "two-seconds",
        "n1",
        json!([toleration("node.kubernetes.io/unreachable", Some(2))]),
    )
    .await;
    ready_pod(
        &client,
        "forever",
        "n1",
        json!([toleration("node.kubernetes.io/unreachable", None)]),
    )
    .await;

    // The status is never posted again, but the Lease is renewed: beyond the grace period the node
    // is still Ready and untainted.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let n1 = t(nodes.get("n1")).await.expect("n1");
    assert_eq!(node_condition(&n1, "Ready").map(|c| c.0), Some("True".into()));
    assert!(
        taint_keys(&n1).is_empty(),
        "tainted while the lease is renewed: {:?}",
        taint_keys(&n1)
    );

    // The Lease is no longer renewed: Ready=Unknown, then the unreachable taints.
    node.renewing.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    let n1 = eventually(
        "n1 to be Unknown and tainted unreachable",
        Duration::from_secs(10),
        || async {
            let n1 = nodes.get("n1").await.ok()?;
            let keys = taint_keys(&n1);
            keys.contains(&("node.kubernetes.io/unreachable".into(), "NoExecute".into()))
                .then_some(n1)
        },
    )
    .await;
    let tainted = Instant::now();
    assert!(
        stopped.elapsed() >= Duration::from_secs(2),
        "tainted {:?} after the lease stopped",
        stopped.elapsed()
    );
    assert_eq!(
        node_condition(&n1, "Ready"),
        Some((
            "Unknown".into(),
            Some("NodeStatusUnknown".into()),
            Some("Kubelet stopped posting node status.".into())
        ))
    );
    assert_eq!(
        node_condition(&n1, "MemoryPressure").map(|c| c.0),
        Some("Unknown".into())
    );
    assert_eq!(
        node_condition(&n1, "DiskPressure").map(|c| c.0),
        Some("Unknown".into())
    );
    assert!(
        !evicted(&pods, "two-seconds").await,
        "evicted before its toleration ran out"
    );
    eventually(
        "the NoSchedule unreachable taint",
        Duration::from_secs(5),
        || async {
            let keys = taint_keys(&nodes.get("n1").await.ok()?);
            keys.contains(&("node.kubernetes.io/unreachable".into(), "NoSchedule".into()))
                .then_some(())
        },
    )
    .await;

    // The story is told in events about the node.
    for (reason, note) in [
        (
            "RegisteredNode",
            "Node n1 event: Registered Node n1 in Controller",
        ),
        ("NodeNotReady", "Node n1 status is now: NodeNotReady"),
    ] {
        let notes = eventually(&format!("a {reason} event"), Duration::from_secs(5), || async {
            let notes = event_notes(&client, reason, "n1").await;
            (!notes.is_empty()).then_some(notes)
        })
        .await;
        assert_eq!(notes, [note]);
    }

    // Its pods are marked not ready.
    for name in ["plain", "two-seconds", "forever"] {
        eventually(
            &format!("{name} to be not ready"),
            Duration::from_secs(5),
            || async {
                let pod = pods.get(name).await.ok()?;
                (ready_status(&pod).as_deref() == Some("False")).then_some(())
            },
        )
        .await;
    }

    // The pod tolerating the taint for 2 s goes after about 2 s (timeAdded has second precision).
    eventually("two-seconds to be evicted", Duration::from_secs(8), || async {
        evicted(&pods, "two-seconds").await.then_some(())
    })
    .await;
    assert!(
        tainted.elapsed() >= Duration::from_millis(900),
        "evicted after only {:?}",
        tainted.elapsed()
    );
    let gone = t(pods.get_opt("two-seconds")).await.expect("get");
    if let Some(pod) = gone {
        let marked = pod
            .status
            .iter()
            .flat_map(|s| s.conditions.iter().flatten())
            .any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("DeletionByTaintManager")
            });
        assert!(marked, "no DisruptionTarget condition on the evicted pod");
    }
    let notes = eventually("a TaintManagerEviction event", Duration::from_secs(5), || async {
        let notes = event_notes(&client, "TaintManagerEviction", "two-seconds").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await;
    assert_eq!(notes[0], "Marking for deletion Pod default/two-seconds");

    // The pod tolerating it for good stays, and so does "plain" (admission gave it 300 s).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !evicted(&pods, "forever").await,
        "the pod tolerating forever was evicted"
    );
    assert!(
        !evicted(&pods, "plain").await,
        "the pod with the default 300 s toleration was evicted"
    );
    let plain = t(pods.get("plain")).await.expect("plain");
    let default = plain
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"))
                .and_then(|t| t.toleration_seconds)
        });
    assert_eq!(default, Some(300));

    // The kubelet is back: Lease renewed, Ready posted; the taints go.
    node.renewing.store(true, Ordering::SeqCst);
    post_ready(&client, &node.name).await;
    eventually("n1's taints to be removed", Duration::from_secs(10), || async {
        let n1 = nodes.get("n1").await.ok()?;
        taint_keys(&n1).is_empty().then_some(())
    })
    .await;
    let n1 = t(nodes.get("n1")).await.expect("n1");
    assert_eq!(node_condition(&n1, "Ready").map(|c| c.0), Some("True".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_noexecute_taint_evicts_pods_that_do_not_tolerate_it_at_once() {
    let server = start_server().await;
    let client = server.client.clone();
    let options = nodelifecycle::Options {
        node_monitor_period: Duration::from_millis(250),
        ..Default::default()
    };
    let c = client.clone();
    let _lifecycle = Component::spawn(|shutdown| nodelifecycle::run(c, options, shutdown));
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    let _node = HollowNode::start(&client, "n2").await;
    ready_pod(&client, "intolerant", "n2", json!([])).await;
    ready_pod(
        &client,
        "tolerant",
        "n2",
        json!([toleration("example.com/maintenance", None)]),
    )
    .await;
    ready_pod(
        &client,
        "patient",
        "n2",
        json!([toleration("example.com/maintenance", Some(60))]),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !evicted(&pods, "intolerant").await,
        "evicted from a healthy, untainted node"
    );

    let taint = json!({ "spec": { "taints": [{ "key": "example.com/maintenance", "effect": "NoExecute",
                                               "timeAdded": Timestamp::now().to_string() }] } });
    t(nodes.patch("n2", &PatchParams::default(), &Patch::Merge(taint)))
        .await
        .expect("taint n2");
    let started = Instant::now();
    eventually("intolerant to be evicted", Duration::from_secs(5), || async {
        evicted(&pods, "intolerant").await.then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "not at once: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!evicted(&pods, "tolerant").await);
    assert!(!evicted(&pods, "patient").await);

    // The taint goes before "patient"'s 60 s are up: its eviction is called off.
    t(nodes.patch(
        "n2",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "taints": null } })),
    ))
    .await
    .expect("untaint n2");
    let notes = eventually(
        "a cancelled eviction of patient",
        Duration::from_secs(5),
        || async {
            let notes = event_notes(&client, "TaintManagerEviction", "patient").await;
            (!notes.is_empty()).then_some(notes)
        },
    )
    .await;
    assert_eq!(notes, ["Cancelling deletion of Pod default/patient"]);
    assert!(!evicted(&pods, "patient").await);
}

/// A kubelet's DiskPressure taints its node within moments of being posted, not at the next monitor
/// pass (one that never comes here: the period is a minute), and the taint goes when the pressure
/// does; taints the controller does not own stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pressure_condition_taints_its_node_at_once() {
    let server = start_server().await;
    let client = server.client.clone();
    let options = nodelifecycle::Options {
        node_monitor_period: Duration::from_secs(60),
        ..Default::default()
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let _node = HollowNode::start(&client, "n3").await;
    t(nodes.patch(
        "n3",
        &PatchParams::default(),
        &Patch::Merge(
            json!({ "spec": { "taints": [{ "key": "example.com/gpu", "effect": "NoSchedule" }] } }),
        ),
    ))
    .await
    .expect("taint n3");
    let c = client.clone();
    let _lifecycle = Component::spawn(|shutdown| nodelifecycle::run(c, options, shutdown));

    let post_disk_pressure = |status: &'static str| {
        let nodes = nodes.clone();
        async move {
            let now = Timestamp::now().to_string();
            let patch = json!({ "status": { "conditions": [
                { "type": "Ready", "status": "True", "reason": "KubeletReady",
                  "lastHeartbeatTime": now, "lastTransitionTime": now },
                { "type": "DiskPressure", "status": status, "reason": "KubeletHasDiskPressure",
                  "lastHeartbeatTime": now, "lastTransitionTime": now },
            ]}});
            t(nodes.patch_status("n3", &PatchParams::default(), &Patch::Merge(patch)))
                .await
                .expect("node status");
        }
    };
    // Let the controller's first pass (and its watch) start before the pressure comes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    post_disk_pressure("True").await;
    let posted = Instant::now();
    eventually("the disk-pressure taint", Duration::from_secs(3), || async {
        let keys = taint_keys(&nodes.get("n3").await.ok()?);
        (keys
            == [
                ("example.com/gpu".to_string(), "NoSchedule".to_string()),
                ("node.kubernetes.io/disk-pressure".into(), "NoSchedule".into()),
            ])
        .then_some(())
    })
    .await;
    assert!(
        posted.elapsed() < Duration::from_secs(3),
        "tainted {:?} after the condition",
        posted.elapsed()
    );

    post_disk_pressure("False").await;
    eventually(
        "the disk-pressure taint to go",
        Duration::from_secs(3),
        || async {
            let keys = taint_keys(&nodes.get("n3").await.ok()?);
            (keys == [("example.com/gpu".to_string(), "NoSchedule".to_string())]).then_some(())
        },
    )
    .await;
}
