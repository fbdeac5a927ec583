//! StatefulSets: the order of creation against the in-process API server with only the
//! StatefulSet controller running (so the test decides when each pod is Ready), then the real
//! kubectl against `skiff server` and hollow nodes: stable names and identity, scaling up and down,
//! `rollout status|history|undo`, a partitioned rolling update, and volume claim templates refused
//! with upstream's event while this API serves no PersistentVolumeClaims.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use k8s_openapi::api::{apps::v1::StatefulSet, core::v1::Pod};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_tests::{Component, InProcess, Server, hollow_nodes, kubectl, kubectl_ok as ok, poll_until};

const T: Duration = Duration::from_secs(10);

async fn t<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("API call in time")
}

async fn exists(pods: &Api<Pod>, name: &str) -> bool {
    t(pods.get_opt(name)).await.expect("get pod").is_some()
}

async fn eventually_exists(pods: &Api<Pod>, name: &str) -> Pod {
    let deadline = Instant::now() + T;
    loop {
        if let Some(p) = t(pods.get_opt(name)).await.expect("get pod") {
            return p;
        }
        assert!(Instant::now() < deadline, "{name} never created");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn make_ready(pods: &Api<Pod>, name: &str) {
    let status = json!({ "status": { "phase": "Running", "conditions": [
        { "type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z" }] } });
    t(pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)))
        .await
        .expect("pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_waits_for_each_pod_before_the_next() {
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server");
    let client: Client = server.client.clone();
    let c = client.clone();
    let _controller = Component::spawn(move |down| skiff_controllers::run_statefulset(c, down));
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": { "name": "db" },
        "spec": { "replicas": 3, "serviceName": "db", "selector": { "matchLabels": { "app": "db" } },
                  "template": { "metadata": { "labels": { "app": "db" } },
                                "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } } }
    }))
    .expect("a StatefulSet");
    t(sets.create(&PostParams::default(), &set))
        .await
        .expect("create");

    for ordinal in 0..3 {
        let name = format!("db-{ordinal}");
        let pod = eventually_exists(&pods, &name).await;
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("db"));
        let labels = pod.metadata.labels.expect("labels");
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(labels["apps.kubernetes.io/pod-index"], ordinal.to_string());
        assert!(
            labels["controller-revision-hash"].starts_with("db-"),
            "{labels:?}"
        );
        // The next one waits while this one is not Ready.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let next = format!("db-{}", ordinal + 1);
        assert!(
            !exists(&pods, &next).await,
            "{next} created before {name} was ready"
        );
        make_ready(&pods, &name).await;
    }
    let deadline = Instant::now() + T;
    loop {
        let st = t(sets.get("db")).await.expect("get").status.unwrap_or_default();
        if st.ready_replicas == Some(3) && st.replicas == 3 {
            assert_eq!(st.current_revision, st.update_revision);
            break;
        }
        assert!(Instant::now() < deadline, "status never counted 3 ready: {st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Scaling down takes the highest ordinal first, one at a time.
    t(sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "replicas": 1 } })),
    ))
    .await
    .expect("scale");
    let deadline = Instant::now() + T;
    while exists(&pods, "db-2").await {
        assert!(exists(&pods, "db-1").await, "db-1 went before db-2");
        assert!(Instant::now() < deadline, "db-2 never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + T;
    while exists(&pods, "db-1").await {
        assert!(Instant::now() < deadline, "db-1 never deleted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(exists(&pods, "db-0").await);
}

const STATEFULSET: &str = r#"
apiVersion: v1
kind: Service
metadata: { name: web }
spec:
  clusterIP: None
  selector: { app: web }
  ports: [{ port: 80 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: web }
spec:
  replicas: 3
  serviceName: web
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: busybox:1.36
"#;

fn rolled_out(server: &Server) -> String {
    ok(server, &["rollout", "status", "statefulset/web", "--timeout=60s"])
}

/// `name=image` of each pod of the set, by name.
fn pods(server: &Server) -> Vec<String> {
    let out = ok(
        server,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image}{"\n"}{end}"#,
        ],
    );
    let mut names: Vec<String> = out.lines().map(str::to_string).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_with_kubectl() {
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let _nodes = hollow_nodes(&server, 2);
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(STATEFULSET));
    assert!(success, "{out}{err}");
    let status = rolled_out(&server);
    assert!(
        status.ends_with("partitioned roll out complete: 3 new pods have been updated...\n"),
        "{status}"
    );
    assert_eq!(
        pods(&server),
        ["web-0=busybox:1.36", "web-1=busybox:1.36", "web-2=busybox:1.36"]
    );

    // Scale up and down through the scale subresource.
    ok(&server, &["scale", "statefulset", "web", "--replicas=5"]);
    rolled_out(&server);
    poll_until("five pods", Duration::from_secs(30), || pods(&server).len() == 5);
    ok(&server, &["scale", "statefulset", "web", "--replicas=2"]);
    poll_until("web-0 and web-1 only", Duration::from_secs(30), || {
        pods(&server) == ["web-0=busybox:1.36", "web-1=busybox:1.36"]
    });

    // An image change rolls out; history has two revisions; undo goes back.
    ok(&server, &["set", "image", "statefulset/web", "web=busybox:1.37"]);
    rolled_out(&server);
    poll_until("the new image everywhere", Duration::from_secs(30), || {
        pods(&server) == ["web-0=busybox:1.37", "web-1=busybox:1.37"]
    });
    let history = ok(&server, &["rollout", "history", "statefulset/web"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    assert_eq!(
        ok(&server, &["rollout", "undo", "statefulset/web"]),
        "statefulset.apps/web rolled back\n"
    );
    poll_until("the old image back", Duration::from_secs(30), || {
        pods(&server) == ["web-0=busybox:1.36", "web-1=busybox:1.36"]
    });

    // A partition keeps the pods below it on the old revision.
    ok(
        &server,
        &[
            "patch",
            "statefulset",
            "web",
            "-p",
            r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}"#,
        ],
    );
    ok(&server, &["set", "image", "statefulset/web", "web=busybox:1.38"]);
    poll_until("web-1 updated", Duration::from_secs(30), || {
        pods(&server) == ["web-0=busybox:1.36", "web-1=busybox:1.38"]
    });
    let status = rolled_out(&server);
    assert!(
        status.ends_with("partitioned roll out complete: 1 new pods have been updated...\n"),
        "{status}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(pods(&server), ["web-0=busybox:1.36", "web-1=busybox:1.38"]);

    // Volume claims need PersistentVolumeClaims, which this API does not serve: upstream's event,
    // and no pod.
    let with_claims = STATEFULSET
        .split("---")
        .nth(1)
        .expect("the StatefulSet")
        .replace("name: web }", "name: db }")
        .replace("app: web", "app: db")
        .replace("      - name: web\n", "      - name: db\n")
        + "  volumeClaimTemplates:\n  - metadata: { name: data }\n    spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } }\n";
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(&with_claims));
    assert!(success, "{out}{err}\n{with_claims}");
    poll_until("the FailedCreate event", Duration::from_secs(30), || {
        ok(
            &server,
            &[
                "get",
                "events",
                "--field-selector",
                "reason=FailedCreate",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        )
        .contains("create Claim data-db-0 for Pod db-0 in StatefulSet db failed error:")
    });
    assert!(!ok(&server, &["get", "pods", "-o", "name"]).contains("pod/db-0"));

    // Deleting the set takes its pods and revisions along.
    ok(&server, &["delete", "statefulset", "web", "db"]);
    poll_until("no pods or revisions", Duration::from_secs(30), || {
        pods(&server).is_empty()
            && ok(&server, &["get", "controllerrevisions", "-o", "name"])
                .trim()
                .is_empty()
    });
}
