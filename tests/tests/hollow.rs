//! Hollow nodes against the real API server: they register Ready Nodes with capacity, renew their
//! Leases, run the pods bound to them (Running, Ready, a pod IP), finish graceful deletes, and a
//! restarted group adopts its Nodes and pods instead of starting over.

use std::time::Duration;

use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Node, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_kubelet::hollow::{HollowOptions, run_hollow_nodes};
use skiff_tests::{Component, InProcess};

const T: Duration = Duration::from_secs(10);

fn options() -> HollowOptions {
    HollowOptions {
        count: 3,
        lease_interval: Duration::from_millis(200),
        ..Default::default()
    }
}

fn start(client: &Client) -> Component {
    let client = client.clone();
    Component::spawn(move |shutdown| async move {
        run_hollow_nodes(client, options(), shutdown)
            .await
            .expect("hollow nodes register");
    })
}

/// Polls `check` until it returns Some, at most `T`.
async fn eventually<F, Fut, R>(what: &str, mut check: F) -> R
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<R>>,
{
    let deadline = tokio::time::Instant::now() + T;
    loop {
        if let Some(r) = tokio::time::timeout(T, check()).await.expect("in time") {
            return r;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not in {T:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn renew_time(leases: &Api<Lease>, node: &str) -> Option<String> {
    let lease = leases.get_opt(node).await.ok()??;
    Some(
        serde_json::to_value(lease.spec?.renew_time?)
            .ok()?
            .as_str()?
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hollow_nodes_register_run_pods_and_adopt_them_after_a_restart() {
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server");
    let client = server.client.clone();
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let hollow = start(&client);

    // Three Ready nodes with capacity.
    let listed = eventually("3 ready nodes", || async {
        let list = nodes
            .list(&ListParams::default().labels("skiff.dev/hollow=hollow"))
            .await
            .ok()?;
        let ready = list.items.iter().filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        (ready.count() == 3).then_some(list)
    })
    .await;
    let node = &listed.items[0];
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.clone())
        .expect("allocatable");
    assert_eq!(allocatable["pods"].0, "110");
    assert_eq!(allocatable["cpu"].0, "4");
    let uid_before = nodes.get("hollow-1").await.expect("node").metadata.uid;

    // The Lease is renewed.
    let first = eventually("a lease", || renew_time(&leases, "hollow-1")).await;
    eventually("a renewal", || async {
        renew_time(&leases, "hollow-1").await.filter(|t| *t != first)
    })
    .await;

    // A pod bound to a hollow node runs: Running, Ready, an IP.
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "p" },
        "spec": { "nodeName": "hollow-1", "initContainers": [{ "name": "setup", "image": "busybox" }],
                  "containers": [{ "name": "web", "image": "busybox" }] }
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod).await.expect("created");
    let running = eventually("a running pod", || async {
        let p = pods.get("p").await.ok()?;
        let status = p.status.clone()?;
        let ready = status
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        (status.phase.as_deref() == Some("Running") && ready).then_some(status)
    })
    .await;
    let ip = running.pod_ip.clone().expect("a pod IP");
    assert_eq!(
        running.host_ip.as_deref(),
        Some("10.254.0.2"),
        "hollow-1's address"
    );
    assert_eq!(
        running.init_container_statuses.expect("init statuses")[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(0)
    );

    // Restart: same Node (uid), the running pod keeps its IP.
    hollow.stop().await;
    let stopped_at = renew_time(&leases, "hollow-1").await.expect("lease");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        renew_time(&leases, "hollow-1").await,
        Some(stopped_at),
        "a stopped node renews nothing"
    );
    let hollow = start(&client);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        nodes.get("hollow-1").await.expect("node").metadata.uid,
        uid_before,
        "the Node is adopted, not recreated"
    );
    assert_eq!(
        pods.get("p").await.expect("pod").status.and_then(|s| s.pod_ip),
        Some(ip),
        "the pod keeps its IP"
    );

    // A graceful delete: the node stops the pod, then deletes it for good.
    pods.delete("p", &DeleteParams::default()).await.expect("delete");
    eventually("the pod gone", || async {
        pods.get_opt("p")
            .await
            .ok()
            .and_then(|p| p.is_none().then_some(()))
    })
    .await;
    hollow.stop().await;
}
