//! `skiff`'s client verbs side by side with the real kubectl, against `skiff server` with hollow
//! nodes: for the read verbs (get in every output form, describe) both must print the same bytes;
//! for the write verbs (apply, scale, rollout, wait, delete) skiff must print kubectl's messages and
//! leave the cluster as kubectl would. skiff finds the cluster only through `--data-dir`'s
//! kubeconfig (no KUBECONFIG, an empty HOME), which also tests that lookup.

use std::time::Duration;

use skiff_tests::{Output, Server, hollow_nodes, kubectl_output, poll_until, skiff_cli};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/demo.yaml");

fn skiff(server: &Server, args: &[&str]) -> Output {
    skiff_cli(server, args, None)
}

fn ok(server: &Server, args: &[&str]) -> String {
    let out = skiff(server, args);
    assert_eq!(
        out.code,
        0,
        "skiff {args:?} failed: {out:?}\nserver log tail:\n{}",
        server.log_tail(30)
    );
    out.stdout
}

/// kubectl and skiff print exactly the same for `args` (stdout, stderr, exit code). Ages can tick
/// between the two runs, so a difference is retried a few times before it counts.
fn same(server: &Server, args: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..4 {
        let theirs = kubectl_output(server, args, None);
        let ours = skiff(server, args);
        if theirs == ours {
            return ours;
        }
        last = Some((theirs, ours));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (theirs, ours) = last.expect("ran");
    panic!(
        "`{}` differs\n--- kubectl (exit {}):\n{}{}\n--- skiff (exit {}):\n{}{}",
        args.join(" "),
        theirs.code,
        theirs.stdout,
        theirs.stderr,
        ours.code,
        ours.stdout,
        ours.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_verbs_print_what_kubectl_prints() {
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let _nodes = hollow_nodes(&server, 2);
    poll_until("two Ready nodes", Duration::from_secs(30), || {
        skiff(&server, &["get", "nodes"])
            .stdout
            .matches(" Ready ")
            .count()
            == 2
    });

    // apply: created, then unchanged; a changed manifest from stdin is configured.
    let out = ok(&server, &["apply", "-f", DEMO]);
    assert_eq!(
        out,
        "configmap/demo-page created\ndeployment.apps/web created\nservice/web created\n"
    );
    let out = ok(&server, &["apply", "-f", DEMO]);
    assert_eq!(
        out,
        "configmap/demo-page unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );
    let demo = std::fs::read_to_string(DEMO).unwrap();
    let four = demo.replace("replicas: 3", "replicas: 4");
    assert_ne!(demo, four, "the demo sets replicas: 3");
    let out = skiff_cli(&server, &["apply", "-f", "-"], Some(&four));
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("deployment.apps/web configured"), "{out:?}");
    assert!(out.stdout.contains("service/web unchanged"), "{out:?}");

    // wait and rollout status as kubectl words them.
    let out = ok(
        &server,
        &["wait", "--for=condition=Available", "deploy/web", "--timeout=60s"],
    );
    assert_eq!(out, "deployment.apps/web condition met\n");
    let out = ok(&server, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );
    poll_until("4 pods Running", Duration::from_secs(30), || {
        skiff(&server, &["get", "pods", "-l", "app=web"])
            .stdout
            .matches("Running")
            .count()
            == 4
    });

    // Read verbs: byte for byte what kubectl prints.
    for args in [
        &["get", "pods"][..],
        &["get", "pods", "-o", "wide"],
        &["get", "deploy,svc"],
        &["get", "all"],
        &["get", "all", "-A"],
        &["get", "nodes", "-o", "name"],
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            "status.phase=Running",
        ],
        &["get", "deploy", "web"],
        &["get", "deployment.apps/web", "service/web"],
        &["get", "rs", "--no-headers"],
        &["get", "pods", "-o", "jsonpath={.items[*].metadata.name}"],
        &[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath=ip={.spec.clusterIP} port={.spec.ports[0].port}{\"\\n\"}",
        ],
        &["get", "pods", "-n", "kube-system"],
        &["describe", "deploy", "web"],
        &["describe", "svc", "web"],
        &["describe", "configmap", "demo-page"],
        &["rollout", "history", "deployment/web"],
        &["rollout", "history", "deployment/web", "--revision=1"],
    ] {
        same(&server, args);
    }
    let pod = ok(&server, &["get", "pods", "-o", "name"])
        .lines()
        .next()
        .expect("a pod")
        .to_string();
    same(&server, &["describe", &pod]);

    // describe node: every pod's requests and limits and their shares of the node, then the totals
    // (sums keep their first part's format: 1010m, 129Mi; init containers count at their largest).
    let sized = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sized"},
      "spec": {"nodeName": "hollow-1", "overhead": {"cpu": "10m", "memory": "1Mi"},
        "initContainers": [
          {"name": "setup", "image": "busybox", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
          {"name": "proxy", "image": "busybox", "restartPolicy": "Always",
           "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "32Mi"}}}],
        "containers": [
          {"name": "a", "image": "busybox", "resources": {"requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"},
                                                           "limits": {"cpu": "200m", "memory": "128Mi"}}},
          {"name": "b", "image": "busybox", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}}]}}"#;
    let out = skiff_cli(&server, &["apply", "-f", "-"], Some(sized));
    assert_eq!(out.code, 0, "{out:?}");
    for node in ["hollow-0", "hollow-1"] {
        let described = same(&server, &["describe", "node", node]);
        assert!(
            described.stdout.contains("Allocated resources:"),
            "{}",
            described.stdout
        );
    }
    let described = same(&server, &["describe", "node", "hollow-1"]);
    assert!(
        described.stdout.contains("1010m (25%)") && described.stdout.contains("129Mi"),
        "{}",
        described.stdout
    );
    ok(&server, &["delete", "pod", "sized", "--now"]);
    // -o json/yaml: the same objects (formatting of long strings may differ in YAML).
    let ours: serde_json::Value =
        serde_json::from_str(&ok(&server, &["get", "deploy", "web", "-o", "json"])).expect("json");
    let theirs: serde_json::Value =
        serde_json::from_str(&kubectl_output(&server, &["get", "deploy", "web", "-o", "json"], None).stdout)
            .expect("kubectl json");
    assert_eq!(ours, theirs);
    let list: serde_json::Value =
        serde_saphyr::from_str(&ok(&server, &["get", "pods", "-o", "yaml"])).expect("yaml");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(4));
    assert!(list["items"][0]["metadata"].get("managedFields").is_none());

    // DaemonSets and StatefulSets: status, history (ControllerRevisions) and undo as kubectl's.
    let workloads = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: { name: agent }
spec:
  selector: { matchLabels: { app: agent } }
  template:
    metadata: { labels: { app: agent } }
    spec: { containers: [{ name: agent, image: "busybox:1.36" }] }
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db }
spec:
  replicas: 2
  serviceName: db
  selector: { matchLabels: { app: db } }
  template:
    metadata: { labels: { app: db } }
    spec: { containers: [{ name: db, image: "busybox:1.36" }] }
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: store }
spec:
  serviceName: store
  selector: { matchLabels: { app: store } }
  template:
    metadata: { labels: { app: store } }
    spec: { containers: [{ name: store, image: "busybox:1.36" }] }
  volumeClaimTemplates:
  - metadata: { name: data, labels: { tier: disk } }
    spec: { accessModes: [ReadWriteOnce], resources: { requests: { storage: 1Gi } } }
---
apiVersion: batch/v1
kind: Job
metadata: { name: pi }
spec:
  backoffLimit: 2
  activeDeadlineSeconds: 600
  template:
    spec:
      restartPolicy: Never
      containers: [{ name: pi, image: "busybox:1.36", command: [sh, -c, "echo 3.14"] }]
"#;
    let out = skiff_cli(&server, &["apply", "-f", "-"], Some(workloads));
    assert_eq!(out.code, 0, "{out:?}");
    poll_until("the Job's pod", Duration::from_secs(30), || {
        kubectl_output(
            &server,
            &["get", "job", "pi", "-o", "jsonpath={.status.active}"],
            None,
        )
        .stdout
            == "1"
    });
    for args in [
        &["describe", "job", "pi"][..],
        &["describe", "rs"],
        &["describe", "statefulset", "store"],
    ] {
        same(&server, args);
    }
    for target in ["daemonset/agent", "statefulset/db"] {
        ok(&server, &["rollout", "status", target, "--timeout=60s"]);
        let out = kubectl_output(&server, &["set", "image", target, "*=busybox:1.37"], None);
        assert_eq!(out.code, 0, "{out:?}");
        ok(&server, &["rollout", "status", target, "--timeout=60s"]);
        for args in [
            &["describe", target][..],
            &["rollout", "status", target],
            &["rollout", "history", target],
            &["rollout", "history", target, "--revision=1"],
            &["rollout", "history", target, "--revision=9"],
        ] {
            same(&server, args);
        }
        let kind = target.split('/').next().unwrap_or_default();
        let undone = ok(&server, &["rollout", "undo", target]);
        assert_eq!(
            undone,
            format!("{kind}.apps/{} rolled back\n", &target[kind.len() + 1..])
        );
        ok(&server, &["rollout", "status", target, "--timeout=60s"]);
        // Now revisions 2 and 3; the template already is revision 3's.
        same(&server, &["rollout", "history", target]);
        let skipped = ok(&server, &["rollout", "undo", target, "--to-revision=3"]);
        assert!(
            skipped.ends_with("skipped rollback (current template already matches revision 3)\n"),
            "{skipped}"
        );
        same(&server, &["rollout", "undo", target, "--to-revision=7"]);
    }
    assert_eq!(
        ok(
            &server,
            &[
                "delete",
                "daemonset/agent",
                "statefulset/db",
                "statefulset/store",
                "job/pi"
            ]
        ),
        "daemonset.apps \"agent\" deleted\nstatefulset.apps \"db\" deleted\nstatefulset.apps \"store\" deleted\njob.batch \"pi\" deleted\n"
    );

    // Errors: as kubectl's, exit 1.
    for args in [
        &["get", "pod", "nope"][..],
        &["get", "widgets"],
        &["describe", "pod", "nope"],
        &["rollout", "undo", "deploy/web", "--to-revision=7"],
    ] {
        let out = same(&server, args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
    }
    let unknown = skiff(&server, &["get", "pods", "-o", "yamll"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .starts_with("error: unable to match a printer suitable for the output format \"yamll\"")
    );
    let bad = skiff_cli(
        &server,
        &["apply", "-f", "-"],
        Some("kind: Pod\nmetadata: {name: x}\n"),
    );
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr,
        "error: error validating data from STDIN: apiVersion not set\n"
    );
    let invalid = skiff_cli(
        &server,
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: Service\nmetadata: {name: bad}\nspec: {ports: [{port: 0}]}\n"),
    );
    assert_eq!(invalid.code, 1);
    assert!(
        invalid
            .stderr
            .starts_with("Error from server (Invalid): error when applying \"STDIN\": ")
            && invalid.stderr.contains("spec.ports[0].port"),
        "{invalid:?}"
    );

    // scale, pause/resume, restart, undo: kubectl's messages and effects.
    assert_eq!(
        ok(&server, &["scale", "deploy/web", "--replicas=2"]),
        "deployment.apps/web scaled\n"
    );
    poll_until("2 replicas", Duration::from_secs(30), || {
        skiff(&server, &["get", "deploy", "web", "-o", "json"])
            .stdout
            .contains("\"readyReplicas\": 2")
    });
    assert_eq!(
        ok(&server, &["rollout", "pause", "deploy/web"]),
        "deployment.apps/web paused\n"
    );
    let again = same(&server, &["rollout", "pause", "deploy/web"]);
    assert_eq!(again.code, 1);
    assert_eq!(
        ok(&server, &["rollout", "resume", "deploy/web"]),
        "deployment.apps/web resumed\n"
    );
    assert_eq!(
        ok(&server, &["rollout", "restart", "deploy/web"]),
        "deployment.apps/web restarted\n"
    );
    ok(&server, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let history = same(&server, &["rollout", "history", "deploy/web"]).stdout;
    assert!(
        history.contains("\n1         <none>\n2         <none>\n"),
        "{history}"
    );
    assert_eq!(
        ok(&server, &["rollout", "undo", "deploy/web"]),
        "deployment.apps/web rolled back\n"
    );
    ok(&server, &["rollout", "status", "deploy/web", "--timeout=60s"]);
    let template = ok(&server, &["get", "deploy", "web", "-o", "yaml"]);
    assert!(
        !template.contains("restartedAt"),
        "undo went back to the template before the restart"
    );

    // wait --for=delete and delete, also by label; a missing object is an error unless ignored.
    assert_eq!(
        ok(&server, &["delete", "svc", "web"]),
        "service \"web\" deleted\n"
    );
    let gone = skiff(&server, &["wait", "--for=delete", "svc/web", "--timeout=10s"]);
    assert_eq!(gone.code, 0, "{gone:?}");
    same(&server, &["delete", "svc", "web"]);
    assert_eq!(ok(&server, &["delete", "svc", "web", "--ignore-not-found"]), "");
    let out = ok(&server, &["delete", "-f", DEMO, "--ignore-not-found"]);
    assert_eq!(
        out,
        "configmap \"demo-page\" deleted\ndeployment.apps \"web\" deleted\n"
    );
    poll_until("the demo's pods gone", Duration::from_secs(60), || {
        skiff(&server, &["get", "pods"]).stderr == "No resources found in default namespace.\n"
    });
    assert_eq!(
        same(
            &server,
            &["wait", "--for=condition=Ready", "pod/nope", "--timeout=1s"]
        )
        .code,
        1
    );
    let timeout = same(
        &server,
        &["wait", "--for=condition=Nope", "ns/default", "--timeout=1s"],
    );
    assert_eq!(
        timeout.stderr,
        "error: timed out waiting for the condition on namespaces/default\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubeconfig_is_found_in_kubectls_order() {
    let server = Server::start(&[
        "--disable-agent",
        "--disable-controller-manager",
        "--disable-scheduler",
    ])
    .await
    .expect("start server");
    let run = |envs: &[(&str, &std::path::Path)], args: &[&str]| {
        let mut cmd = std::process::Command::new("timeout");
        cmd.arg("30")
            .arg(skiff_tests::skiff_bin())
            .args(args)
            .env_remove("KUBECONFIG");
        cmd.env("SKIFF_DATA_DIR", server.data_dir.path().join("no-such-dir"));
        cmd.env("HOME", server.data_dir.path().join("empty-home"));
        for (k, v) in envs {
            cmd.env(k, v);
        }
        skiff_tests::run_with_stdin(cmd, None)
    };
    // Nowhere: a clear error naming the places looked at.
    let none = run(&[], &["get", "ns"]);
    assert_eq!(none.code, 1);
    assert!(none.stderr.starts_with("error: no kubeconfig found"), "{none:?}");
    // KUBECONFIG, the data dir, and --kubeconfig each lead to the cluster.
    let kubeconfig = server.kubeconfig();
    for out in [
        run(
            &[("KUBECONFIG", &kubeconfig)],
            &["get", "ns", "default", "-o", "name"],
        ),
        run(
            &[("SKIFF_DATA_DIR", server.data_dir.path())],
            &["get", "ns", "default", "-o", "name"],
        ),
        run(
            &[],
            &[
                "get",
                "ns",
                "default",
                "-o",
                "name",
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
            ],
        ),
    ] {
        assert_eq!(out.stdout, "namespace/default\n", "{out:?}");
    }
    // --kubeconfig wins over a KUBECONFIG that names a broken file.
    let broken = server.data_dir.path().join("broken.yaml");
    std::fs::write(&broken, "not: [a kubeconfig").unwrap();
    let out = run(
        &[("KUBECONFIG", &broken)],
        &["get", "ns", "default", "-o", "name"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let out = run(
        &[("KUBECONFIG", &broken)],
        &[
            "get",
            "ns",
            "default",
            "-o",
            "name",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert_eq!(out.stdout, "namespace/default\n", "{out:?}");
}
