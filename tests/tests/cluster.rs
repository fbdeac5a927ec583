//! The one-binary cluster end to end (issue 7): `skiff server` with its embedded node in a network
//! namespace the test makes (as the quickstart runs it), the demo from `manifests/demo.yaml` applied
//! with the real kubectl, and requests through the Service's ClusterIP from inside the node's
//! namespace reaching every replica. Needs root (CI runs as root); skipped otherwise.

use std::{collections::BTreeMap, time::Duration};

use skiff_tests::{
    cluster::{Cluster, NODE_NAME},
    kubectl,
    node::is_root,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_answers_through_its_service_vip() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let cluster = Cluster::start("e2e-demo").await;
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/demo.yaml"))
        .expect("manifests/demo.yaml");
    cluster.ok(&["apply", "-f", "-"], Some(&demo));
    cluster.ok(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE_NAME}"),
            "--timeout=30s",
        ],
        None,
    );
    cluster.ok(&["rollout", "status", "deployment/web", "--timeout=50s"], None);
    let pods = cluster.ok(
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ],
        None,
    );
    let pods: Vec<&str> = pods.split_whitespace().collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    let vip = cluster.ok(
        &["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"],
        None,
    );

    // The proxy programs the Service once its endpoints are ready (within its 1 s sync period).
    let url = format!("http://{vip}/");
    skiff_tests::eventually("the Service VIP answers", Duration::from_secs(10), || async {
        cluster
            .netns
            .exec("curl", &["-sf", "-m", "2", &url])
            .filter(|page| page.contains("Served by pod web-"))
    })
    .await;
    // 60 requests to 3 replicas: each answers (a replica missing has probability ~1e-10).
    let mut answered: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..60 {
        let page = cluster
            .netns
            .exec("curl", &["-s", "-m", "2", &url])
            .unwrap_or_default();
        let pod = pods.iter().find(|p| page.contains(*p)).map_or("(none)", |p| p);
        *answered.entry(pod.to_owned()).or_default() += 1;
    }
    assert_eq!(
        answered.get("(none)"),
        None,
        "every request answered by a pod: {answered:?}"
    );
    assert_eq!(answered.len(), 3, "every replica answered: {answered:?}");

    // Tear the demo down through the API: the kubelet removes the pods' containers and cgroups.
    cluster.ok(
        &["delete", "-f", "-", "--wait=true", "--timeout=40s"],
        Some(&demo),
    );
    skiff_tests::eventually("the pods are gone", Duration::from_secs(40), || async {
        let (_, out, _) = kubectl(cluster.server(), &["get", "pods", "-o", "name"], None);
        out.trim().is_empty().then_some(())
    })
    .await;
}
