//! The real kubectl against a whole control plane: `skiff server` (API server, controllers, scheduler)
//! and `skiff agent --hollow-nodes 2` (nodes that report pods Running and Ready without running them).
//! `rollout status|history|undo|restart|pause|resume`, `scale`, and `describe deployment|pod|node`
//! print what they print against Kubernetes.

use std::time::Duration;

use skiff_tests::{Server, hollow_nodes, kubectl, kubectl_ok as ok};

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector: { matchLabels: { app: web } }
  strategy: { rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: busybox:1.36
"#;

fn rolled_out(server: &Server) {
    let out = ok(server, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
}

fn image(server: &Server) -> String {
    ok(
        server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollouts_with_kubectl() {
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let _nodes = hollow_nodes(&server, 2);
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(DEPLOYMENT));
    assert!(success, "{out}{err}");
    rolled_out(&server);

    // An image change rolls out; history shows both revisions.
    ok(&server, &["set", "image", "deployment/web", "web=busybox:1.37"]);
    rolled_out(&server);
    let history = ok(&server, &["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("REVISION") && history.contains("CHANGE-CAUSE"),
        "{history}"
    );
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    // Undo goes back to the first template (as revision 3); undo --to-revision=2 forward again.
    let out = ok(&server, &["rollout", "undo", "deployment/web"]);
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    rolled_out(&server);
    assert_eq!(image(&server), "busybox:1.36");
    ok(&server, &["rollout", "undo", "deployment/web", "--to-revision=2"]);
    rolled_out(&server);
    assert_eq!(image(&server), "busybox:1.37");

    // Paused: a template change makes no new ReplicaSet until resumed.
    let out = ok(&server, &["rollout", "pause", "deployment/web"]);
    assert!(out.contains("deployment.apps/web paused"), "{out}");
    let before = ok(&server, &["get", "rs", "-l", "app=web", "-o", "name"])
        .lines()
        .count();
    ok(&server, &["set", "image", "deployment/web", "web=busybox:1.38"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ok(&server, &["get", "rs", "-l", "app=web", "-o", "name"])
            .lines()
            .count(),
        before,
        "paused: no new ReplicaSet"
    );
    ok(&server, &["rollout", "resume", "deployment/web"]);
    rolled_out(&server);

    // Restart: a new ReplicaSet whose template carries restartedAt.
    let out = ok(&server, &["rollout", "restart", "deployment/web"]);
    assert!(out.contains("deployment.apps/web restarted"), "{out}");
    rolled_out(&server);
    let restarted = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.metadata.annotations}",
        ],
    );
    assert!(
        restarted.contains("kubectl.kubernetes.io/restartedAt"),
        "{restarted}"
    );

    // Scale, then every pod is on a hollow node and Running.
    ok(&server, &["scale", "deployment/web", "--replicas=5"]);
    rolled_out(&server);
    let ready = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}/{.status.replicas}",
        ],
    );
    assert_eq!(ready, "5/5");
    let pods = ok(
        &server,
        &["get", "pods", "-l", "app=web", "-o", "wide", "--no-headers"],
    );
    assert_eq!(pods.lines().count(), 5, "{pods}");
    assert!(
        pods.lines()
            .all(|l| l.contains("Running") && l.contains("hollow-")),
        "{pods}"
    );

    // describe tells the story.
    let deploy = ok(&server, &["describe", "deployment", "web"]);
    for want in [
        "Replicas:",
        "5 desired | 5 updated | 5 total | 5 available | 0 unavailable",
        "NewReplicaSet:",
        "ScalingReplicaSet",
        "Available      True",
    ] {
        assert!(
            deploy.contains(want),
            "describe deployment lacks {want:?}:\n{deploy}"
        );
    }
    let pod = ok(
        &server,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    let described = ok(&server, &["describe", "pod", &pod]);
    for want in [
        "Node:",
        "hollow-",
        "Status:       Running",
        "Controlled By:  ReplicaSet/web-",
        "Scheduled",
        "Successfully assigned default/",
    ] {
        assert!(
            described.contains(want),
            "describe pod lacks {want:?}:\n{described}"
        );
    }
    let node = ok(
        &server,
        &["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"],
    );
    let described = ok(&server, &["describe", "node", &node]);
    for want in [
        "Ready",
        "KubeletReady",
        "Capacity:",
        "Allocatable:",
        "PodCIDR:",
        "Non-terminated Pods:",
    ] {
        assert!(
            described.contains(want),
            "describe node lacks {want:?}:\n{described}"
        );
    }
}
