//! The scheduler against the real API server: every filter of the default profile is honoured, a pod
//! that fits nowhere gets upstream's FailedScheduling summary and `PodScheduled=False`, and is
//! scheduled as soon as a node that fits it appears. Nodes are written by the test (no kubelet).

use std::time::Duration;

use k8s_openapi::api::{
    core::v1::{Node, Pod},
    events::v1::Event,
};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_tests::{Component, InProcess};

const T: Duration = Duration::from_secs(10);

async fn add_node(client: &Client, name: &str, cpu: &str, labels: Value, taints: Value) {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(
        json!({ "metadata": { "name": name, "labels": labels }, "spec": { "taints": taints } }),
    )
    .unwrap();
    tokio::time::timeout(T, nodes.create(&PostParams::default(), &node))
        .await
        .expect("in time")
        .expect("node");
    let status = json!({ "status": {
        "allocatable": { "cpu": cpu, "memory": "8Gi", "pods": "110" }, "capacity": { "cpu": cpu, "memory": "8Gi", "pods": "110" },
        "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady" }] } });
    tokio::time::timeout(
        T,
        nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(status)),
    )
    .await
    .expect("in time")
    .expect("node status");
}

async fn create_pod(client: &Client, name: &str, spec: Value) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod =
        serde_json::from_value(json!({ "metadata": { "name": name }, "spec": spec })).expect("a pod");
    tokio::time::timeout(T, pods.create(&PostParams::default(), &pod))
        .await
        .expect("in time")
        .expect("pod");
}

fn container(cpu: &str) -> Value {
    json!({ "name": "c", "image": "busybox", "resources": { "requests": { "cpu": cpu } } })
}

/// The node the pod was bound to, waiting for it.
async fn node_of(client: &Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let pod = tokio::time::timeout(T, pods.get(name))
            .await
            .expect("in time")
            .expect("pod");
        if let Some(node) = pod.spec.and_then(|s| s.node_name) {
            return node;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} was not scheduled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pod's PodScheduled=False message, waiting for it.
async fn unschedulable_message(client: &Client, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let pod = tokio::time::timeout(T, pods.get(name))
            .await
            .expect("in time")
            .expect("pod");
        let cond = pod
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "PodScheduled");
        if let Some(c) = cond.filter(|c| c.status == "False") {
            assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
            return c.message.unwrap_or_default();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} has no PodScheduled=False"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_failed_scheduling_and_retry() {
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server");
    let client = server.client.clone();
    add_node(&client, "small", "1", json!({ "size": "small" }), json!([])).await;
    add_node(
        &client,
        "big",
        "4",
        json!({ "disk": "ssd", "zone": "b" }),
        json!([]),
    )
    .await;
    add_node(
        &client,
        "tainted",
        "8",
        json!({ "zone": "c" }),
        json!([{ "key": "dedicated", "value": "x", "effect": "NoSchedule" }]),
    )
    .await;
    let sched_client = client.clone();
    let _scheduler = Component::spawn(move |shutdown| skiff_scheduler::run(sched_client, shutdown));

    // NodeSelector; NodeResourcesFit (3 CPUs fit only "big" among the untainted nodes).
    create_pod(
        &client,
        "ssd",
        json!({ "nodeSelector": { "disk": "ssd" }, "containers": [container("100m")] }),
    )
    .await;
    assert_eq!(node_of(&client, "ssd").await, "big");
    create_pod(&client, "large", json!({ "containers": [container("3")] })).await;
    assert_eq!(node_of(&client, "large").await, "big");
    // TaintToleration with required node affinity to the tainted node's zone.
    create_pod(&client, "tolerant", json!({
        "containers": [container("100m")],
        "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule" }],
        "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": [
            { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["c"] }] }] } } } })).await;
    assert_eq!(node_of(&client, "tolerant").await, "tainted");
    // NodeName and NodePorts: the second pod asking for host port 8080 on "small" cannot go there.
    let on_small = |port: i64| {
        json!({ "nodeSelector": { "size": "small" },
        "containers": [{ "name": "c", "image": "busybox", "ports": [{ "containerPort": 80, "hostPort": port }] }] })
    };
    create_pod(&client, "port-a", on_small(8080)).await;
    assert_eq!(node_of(&client, "port-a").await, "small");
    create_pod(&client, "port-b", on_small(8080)).await;
    let message = unschedulable_message(&client, "port-b").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, \
         1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: x}. \
         preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, \
         2 Preemption is not helpful for scheduling."
    );

    // Too big for every node: upstream's summary, an event, and a retry once a node fits.
    create_pod(&client, "huge", json!({ "containers": [container("6")] })).await;
    let message = unschedulable_message(&client, "huge").await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: x}, 2 Insufficient cpu. \
         preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, \
         2 No preemption victims found for incoming pod."
    );
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let list = tokio::time::timeout(T, events.list(&ListParams::default()))
            .await
            .expect("in time")
            .expect("events");
        let failed = list.items.iter().find(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("huge")
        });
        if let Some(e) = failed {
            assert_eq!(
                (e.type_.as_deref(), e.note.as_deref()),
                (Some("Warning"), Some(message.as_str()))
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no FailedScheduling event for huge"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    add_node(&client, "huge-node", "16", json!({}), json!([])).await;
    assert_eq!(node_of(&client, "huge").await, "huge-node");
}

/// Inter-pod anti-affinity (one `web` pod per zone), affinity (a cache next to a web pod), and a
/// topology spread constraint, through the real API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inter_pod_affinity_and_topology_spread() {
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server");
    let client = server.client.clone();
    for (name, zone) in [("a1", "a"), ("a2", "a"), ("b1", "b")] {
        let labels = json!({ "zone": zone, "kubernetes.io/hostname": name });
        add_node(&client, name, "4", labels, json!([])).await;
    }
    let sched_client = client.clone();
    let _scheduler = Component::spawn(move |shutdown| skiff_scheduler::run(sched_client, shutdown));

    let web = |name: &str| {
        json!({ "metadata": { "name": name, "labels": { "app": "web" } }, "spec": {
            "containers": [container("100m")],
            "affinity": { "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
                { "topologyKey": "zone", "labelSelector": { "matchLabels": { "app": "web" } } }] } } } })
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let create = |obj: Value| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(obj).expect("a pod");
            tokio::time::timeout(T, pods.create(&PostParams::default(), &pod))
                .await
                .expect("in time")
                .expect("pod");
        }
    };
    create(web("web-1")).await;
    let first = node_of(&client, "web-1").await;
    create(web("web-2")).await;
    let second = node_of(&client, "web-2").await;
    assert_ne!(
        first[..1],
        second[..1],
        "two web pods in one zone: {first}, {second}"
    );
    create(web("web-3")).await;
    assert_eq!(
        unschedulable_message(&client, "web-3").await,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );

    // A cache that must share a node with web-1.
    create(json!({ "metadata": { "name": "cache" }, "spec": {
        "containers": [container("100m")],
        "affinity": { "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
            { "topologyKey": "kubernetes.io/hostname", "labelSelector": { "matchLabels": { "app": "web" } } }] } } } }))
    .await;
    let cache_node = node_of(&client, "cache").await;
    assert!(cache_node == first || cache_node == second, "{cache_node}");

    // Spread over zones with maxSkew 1: zone a has 2 nodes, b has 1, yet the pods alternate.
    let mut per_zone = std::collections::BTreeMap::<String, i32>::new();
    for i in 0..4 {
        let name = format!("spread-{i}");
        create(json!({ "metadata": { "name": name, "labels": { "app": "spread" } }, "spec": {
            "containers": [container("100m")],
            "topologySpreadConstraints": [{ "maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": { "matchLabels": { "app": "spread" } } }] } }))
        .await;
        let node = node_of(&client, &name).await;
        *per_zone.entry(node[..1].to_owned()).or_default() += 1;
        let counts: Vec<i32> = per_zone.values().copied().collect();
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(
            max - if per_zone.len() < 2 { 0 } else { *min } <= 1,
            "skew over 1: {per_zone:?}"
        );
    }
    assert_eq!(per_zone.values().copied().collect::<Vec<_>>(), vec![2, 2]);
}
