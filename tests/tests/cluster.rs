//! The one-binary cluster end to end (issue 7): `skiff server` with its embedded node in a network
//! namespace the test makes (as the quickstart runs it), the demo from `manifests/demo.yaml` applied
//! with the real kubectl, and requests through the Service's ClusterIP from inside the node's
//! namespace reaching every replica; `skiff exec` and `skiff logs` against its real containers, side
//! by side with kubectl's. Needs root (CI runs as root); skipped otherwise.

use std::{collections::BTreeMap, time::Duration};

use skiff_tests::{
    cluster::{Cluster, NODE_NAME},
    kubectl, kubectl_output,
    node::is_root,
    skiff_cli,
};

/// A pod with two containers that print and then wait (for `logs`, `-c`, `--tail`).
const TALKER: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: a
    image: busybox
    command: ["sh", "-c", "echo one; echo two; exec sleep 3600"]
  - name: b
    image: busybox
    command: ["sh", "-c", "echo bee; exec sleep 3600"]
"#;

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

    // The proxy programs the Service's endpoints as they turn ready, at most about one sync per its
    // 1 s min-sync period: the last replica can follow the first by that long, even after `rollout
    // status` is done (as with kube-proxy). Wait until every replica has answered once.
    let url = format!("http://{vip}/");
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    skiff_tests::eventually(
        "every replica answers through the VIP",
        Duration::from_secs(10),
        || async {
            let page = cluster
                .netns
                .exec("curl", &["-sf", "-m", "2", &url])
                .unwrap_or_default();
            let mut seen = seen.lock().unwrap();
            if let Some(pod) = pods.iter().find(|p| page.contains(*p)) {
                seen.insert(pod.to_string());
            }
            (seen.len() == pods.len()).then_some(())
        },
    )
    .await;
    // Then 60 requests to 3 replicas: each answers (a replica missing has probability ~1e-10).
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

    // `skiff exec` and `skiff logs` against real containers, side by side with kubectl.
    let pod = pods[0];
    let same = |args: &[&str], stdin: Option<&str>| {
        let ours = skiff_cli(cluster.server(), args, stdin);
        let theirs = kubectl_output(cluster.server(), args, stdin);
        assert_eq!(ours, theirs, "skiff and kubectl differ on {args:?}");
        ours
    };
    let page = same(&["exec", pod, "--", "cat", "/www/index.html"], None);
    assert!(page.stdout.contains(&format!("Served by pod {pod}")), "{page:?}");
    let failed = same(
        &["exec", pod, "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
        None,
    );
    assert_eq!(
        (failed.code, failed.stdout.as_str(), failed.stderr.as_str()),
        (3, "out\n", "err\ncommand terminated with exit code 3\n")
    );
    let echoed = same(&["exec", "-i", pod, "--", "tr", "a-z", "A-Z"], Some("hello\n"));
    assert_eq!(echoed.stdout, "HELLO\n");
    cluster.ok(&["apply", "-f", "-"], Some(TALKER));
    cluster.ok(
        &["wait", "--for=condition=Ready", "pod/talker", "--timeout=30s"],
        None,
    );
    skiff_tests::eventually("talker's output", Duration::from_secs(10), || async {
        let out = skiff_cli(cluster.server(), &["logs", "talker"], None);
        (out.stdout == "one\ntwo\n").then_some(())
    })
    .await;
    let logs = same(&["logs", "talker"], None);
    assert_eq!(logs.stderr, "Defaulted container \"a\" out of: a, b\n");
    assert_eq!(same(&["logs", "talker", "--tail", "1"], None).stdout, "two\n");
    assert_eq!(same(&["logs", "talker", "-c", "b"], None).stdout, "bee\n");
    let deploy_logs = skiff_cli(cluster.server(), &["logs", "deploy/web"], None);
    assert_eq!(deploy_logs.code, 0, "{deploy_logs:?}");
    assert!(
        deploy_logs.stderr.starts_with("Found 3 pods, using pod/web-"),
        "{deploy_logs:?}"
    );
    cluster.ok(&["delete", "pod", "talker", "--grace-period=1"], None);

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
