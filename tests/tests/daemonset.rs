//! DaemonSets with the real kubectl against `skiff server` and three hollow nodes: a pod on every
//! node, replaced where one is deleted, kept off nodes whose taints it does not tolerate or whose
//! labels its selector does not match; `rollout status|history|undo` through ControllerRevisions;
//! a rolling update that never takes down more than `maxUnavailable` nodes' pods at a time.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use skiff_tests::{Server, hollow_nodes, kubectl, kubectl_ok as ok, poll_until};

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector: { matchLabels: { app: agent } }
  updateStrategy: { type: RollingUpdate, rollingUpdate: { maxUnavailable: 1 } }
  template:
    metadata: { labels: { app: agent } }
    spec:
      containers:
      - name: agent
        image: busybox:1.36
"#;

fn rolled_out(server: &Server) {
    let out = ok(server, &["rollout", "status", "daemonset/agent", "--timeout=60s"]);
    assert!(
        out.ends_with("daemon set \"agent\" successfully rolled out\n"),
        "{out}"
    );
}

/// The nodes of the live (not terminating) agent pods, with their images.
fn placed(server: &Server) -> Vec<(String, String)> {
    let out = ok(
        server,
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "-o",
            r#"jsonpath={range .items[*]}{.spec.nodeName} {.spec.containers[0].image} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ],
    );
    let mut live: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let (node, image, deleting) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
            (deleting.is_empty() && !node.is_empty()).then(|| (node.to_string(), image.to_string()))
        })
        .collect();
    live.sort();
    live
}

fn on_every_node(server: &Server, image: &str) -> bool {
    placed(server)
        == ["hollow-0", "hollow-1", "hollow-2"]
            .map(|n| (n.to_string(), image.to_string()))
            .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_runs_one_pod_per_node_and_rolls_out_through_revisions() {
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let _nodes = hollow_nodes(&server, 3);
    poll_until("three nodes", Duration::from_secs(30), || {
        ok(&server, &["get", "nodes", "-o", "name"]).lines().count() == 3
    });
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(DAEMONSET));
    assert!(success, "{out}{err}");
    rolled_out(&server);
    assert!(on_every_node(&server, "busybox:1.36"), "{:?}", placed(&server));
    let table = ok(&server, &["get", "ds", "agent", "--no-headers"]);
    let columns: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(
        &columns[..7],
        ["agent", "3", "3", "3", "3", "3", "<none>"],
        "{table}"
    );

    // A deleted pod comes back on its node.
    let victim = ok(
        &server,
        &[
            "get",
            "pods",
            "-l",
            "app=agent",
            "--field-selector",
            "spec.nodeName=hollow-1",
            "-o",
            "name",
        ],
    );
    ok(&server, &["delete", victim.trim(), "--wait=false"]);
    poll_until("the pod on hollow-1 replaced", Duration::from_secs(20), || {
        on_every_node(&server, "busybox:1.36")
            && !ok(&server, &["get", "pods", "-o", "name"]).contains(victim.trim())
    });

    // An image change rolls out node by node: never two nodes without a ready pod of either.
    ok(
        &server,
        &["set", "image", "daemonset/agent", "agent=busybox:1.37"],
    );
    let started = Instant::now();
    let mut worst = 3;
    while !on_every_node(&server, "busybox:1.37") {
        let ready = ok(
            &server,
            &[
                "get",
                "pods",
                "-l",
                "app=agent",
                "-o",
                r#"jsonpath={range .items[*]}{.spec.nodeName}={.status.conditions[?(@.type=="Ready")].status}{.metadata.deletionTimestamp}{"\n"}{end}"#,
            ],
        );
        let nodes: BTreeSet<&str> = ready.lines().filter_map(|l| l.strip_suffix("=True")).collect();
        worst = worst.min(nodes.len());
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "rollout stuck: {:?}",
            placed(&server)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        worst >= 2,
        "{worst} nodes had a ready pod at one point (maxUnavailable 1)"
    );
    rolled_out(&server);

    // Two revisions; undo goes back to the first template, which becomes revision 3.
    let history = ok(&server, &["rollout", "history", "daemonset/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");
    let detail = ok(
        &server,
        &["rollout", "history", "daemonset/agent", "--revision=1"],
    );
    assert!(detail.contains("busybox:1.36"), "{detail}");
    let out = ok(&server, &["rollout", "undo", "daemonset/agent"]);
    assert_eq!(out, "daemonset.apps/agent rolled back\n");
    rolled_out(&server);
    poll_until(
        "the first image back on every node",
        Duration::from_secs(30),
        || on_every_node(&server, "busybox:1.36"),
    );
    let history = ok(&server, &["rollout", "history", "daemonset/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(revisions, ["2", "3"], "{history}");

    // A NoExecute taint it does not tolerate takes the node's pod away; untainted, it returns.
    ok(&server, &["taint", "nodes", "hollow-2", "dedicated=db:NoExecute"]);
    poll_until("no agent on hollow-2", Duration::from_secs(20), || {
        placed(&server).iter().all(|(n, _)| n != "hollow-2")
    });
    poll_until("desired 2", Duration::from_secs(20), || {
        ok(
            &server,
            &[
                "get",
                "ds",
                "agent",
                "-o",
                "jsonpath={.status.desiredNumberScheduled}",
            ],
        ) == "2"
    });
    ok(
        &server,
        &["taint", "nodes", "hollow-2", "dedicated=db:NoExecute-"],
    );
    poll_until("the agent back on hollow-2", Duration::from_secs(20), || {
        on_every_node(&server, "busybox:1.36")
    });

    // A node selector narrows it to the labelled node.
    ok(&server, &["label", "nodes", "hollow-0", "edge=true"]);
    ok(
        &server,
        &[
            "patch",
            "daemonset",
            "agent",
            "-p",
            r#"{"spec":{"template":{"spec":{"nodeSelector":{"edge":"true"}}}}}"#,
        ],
    );
    poll_until("only hollow-0", Duration::from_secs(30), || {
        placed(&server)
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            == ["hollow-0"]
    });
    rolled_out(&server);
    let table = ok(&server, &["get", "ds", "agent", "--no-headers"]);
    let columns: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(
        &columns[..7],
        ["agent", "1", "1", "1", "1", "1", "edge=true"],
        "{table}"
    );

    // Deleting it takes its pods and revisions along.
    ok(&server, &["delete", "daemonset", "agent"]);
    poll_until("no agent pods or revisions", Duration::from_secs(30), || {
        placed(&server).is_empty()
            && ok(&server, &["get", "controllerrevisions", "-o", "name"])
                .trim()
                .is_empty()
    });
}
