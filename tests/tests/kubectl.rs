//! The real kubectl against `skiff server`: discovery, apply (create, unchanged, configured with a
//! removed field), get tables, scale through /scale, the three patch types, label/annotate, dry runs,
//! strict field validation and delete.

use skiff_tests::{Server, kubectl, kubectl_command};

const MANIFEST: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo
data:
  a: "1"
  b: "2"
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: { app: web }
spec:
  replicas: 2
  selector: { matchLabels: { app: web } }
  template:
    metadata: { labels: { app: web } }
    spec:
      containers:
      - name: web
        image: busybox:1.36
        env: [{ name: A, value: "1" }, { name: B, value: "2" }]
      - name: sidecar
        image: busybox:1.36
"#;

fn ok(server: &Server, args: &[&str]) -> String {
    let (success, out, err) = kubectl(server, args, None);
    assert!(success, "kubectl {args:?} failed: {err}\n{out}");
    out
}

fn apply(server: &Server, manifest: &str) -> String {
    let (success, out, err) = kubectl(server, &["apply", "-f", "-"], Some(manifest));
    assert!(success, "apply failed: {err}\n{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_scale_patch_delete() {
    let server = Server::start(&[]).await.expect("start server");
    let resources = ok(&server, &["api-resources"]);
    assert!(
        resources.contains("deployments") && resources.contains("deploy") && resources.contains("apps/v1"),
        "{resources}"
    );

    let explained = ok(&server, &["explain", "deployment.spec.replicas"]);
    assert!(
        explained.contains("FIELD: replicas <integer>") && explained.contains("Number of desired pods"),
        "{explained}"
    );

    let out = apply(&server, MANIFEST);
    assert!(
        out.contains("configmap/demo created") && out.contains("deployment.apps/web created"),
        "{out}"
    );
    let out = apply(&server, MANIFEST);
    assert!(
        out.contains("configmap/demo unchanged") && out.contains("deployment.apps/web unchanged"),
        "{out}"
    );

    // Changed image, env B removed, key b removed: kubectl sends a strategic merge patch.
    let changed = MANIFEST
        .replace(", { name: B, value: \"2\" }", "")
        .replace("  b: \"2\"\n", "")
        .replacen("busybox:1.36", "busybox:1.37", 1);
    let out = apply(&server, &changed);
    assert!(
        out.contains("configmap/demo configured") && out.contains("deployment.apps/web configured"),
        "{out}"
    );
    let env = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].env[*].name} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[1].name} {.metadata.generation}",
        ],
    );
    assert_eq!(env, "A busybox:1.37 sidecar 2");
    let data = ok(&server, &["get", "cm", "demo", "-o", "jsonpath={.data}"]);
    assert_eq!(data, r#"{"a":"1"}"#);

    // Server-side tables, with the wide columns.
    let table = ok(&server, &["get", "deployments", "-o", "wide"]);
    let header: Vec<&str> = table.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        table.contains("0/2") && table.contains("web,sidecar") && table.contains("app=web"),
        "{table}"
    );
    let names = ok(&server, &["get", "cm,deploy", "-o", "name"]);
    assert!(
        names.contains("configmap/demo") && names.contains("deployment.apps/web"),
        "{names}"
    );

    ok(&server, &["scale", "deployment", "web", "--replicas=5"]);
    assert_eq!(
        ok(
            &server,
            &["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]
        ),
        "5"
    );

    ok(&server, &["patch", "cm", "demo", "-p", r#"{"data":{"c":"3"}}"#]);
    ok(
        &server,
        &[
            "patch",
            "cm",
            "demo",
            "--type=merge",
            "-p",
            r#"{"data":{"a":null}}"#,
        ],
    );
    ok(
        &server,
        &[
            "patch",
            "cm",
            "demo",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/data/d","value":"4"}]"#,
        ],
    );
    assert_eq!(
        ok(&server, &["get", "cm", "demo", "-o", "jsonpath={.data}"]),
        r#"{"c":"3","d":"4"}"#
    );
    let (success, _, err) = kubectl(
        &server,
        &[
            "patch",
            "cm",
            "demo",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/data/c","value":"9"}]"#,
        ],
        None,
    );
    assert!(
        !success && err.contains("The request is invalid") && err.contains("test failed"),
        "{err}"
    );

    ok(&server, &["label", "cm", "demo", "tier=web"]);
    ok(&server, &["annotate", "cm", "demo", "note=hello"]);
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "cm",
                "demo",
                "-o",
                "jsonpath={.metadata.labels.tier} {.metadata.annotations.note}"
            ]
        ),
        "web hello"
    );

    // Dry runs store nothing; unknown fields are refused under kubectl's default strict validation.
    let ghost = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ghost\ndata:\n  a: b\n";
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-", "--dry-run=server"], Some(ghost));
    assert!(
        success && out.contains("configmap/ghost created (server dry run)"),
        "{out}{err}"
    );
    let (success, _, _) = kubectl(&server, &["get", "cm", "ghost"], None);
    assert!(!success, "a dry run must not store");
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\ndatta:\n  a: b\n";
    let (success, _, err) = kubectl(&server, &["create", "-f", "-"], Some(bad));
    assert!(!success && err.contains("unknown field \"datta\""), "{err}");

    let out = ok(&server, &["delete", "cm", "demo"]);
    assert!(out.contains("configmap \"demo\" deleted"), "{out}");
    let (success, _, err) = kubectl(&server, &["get", "cm", "demo"], None);
    assert!(
        !success && err.contains("NotFound") && err.contains("configmaps \"demo\" not found"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_wait_diff_replace_describe() {
    let server = Server::start(&[]).await.expect("start server");
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  replicas: 2\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [{ name: web, image: \"busybox:1.36\" }] }\n---\napiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec: { selector: { app: web }, ports: [{ port: 80 }] }\n";
    apply(&server, deploy);

    // `get -w` on a list prints the table, then a row per change.
    let mut watcher = kubectl_command(&server, 60, &["get", "deploy", "web", "-w"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl get -w");
    // Lines arrive on a thread; the test waits for the initial row before changing anything, so a
    // slow kubectl start cannot make it miss the change.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watcher.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("kubectl get -w never printed {needle}"),
            }
        }
    };
    wait_for("0/2");
    ok(&server, &["scale", "deploy", "web", "--replicas=1"]);
    wait_for("0/1");
    // SIGTERM, which `timeout` passes on to kubectl (a SIGKILL would orphan kubectl).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(watcher.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = watcher.wait();

    // diff shows the change a re-apply would make and exits 1; replace applies it.
    let changed = deploy.replace("replicas: 2", "replicas: 3");
    let (success, diff, _) = kubectl(&server, &["diff", "-f", "-"], Some(&changed));
    assert!(
        !success && diff.contains("-  replicas: 1") && diff.contains("+  replicas: 3"),
        "{diff}"
    );
    let (success, out, err) = kubectl(&server, &["replace", "-f", "-"], Some(&changed));
    assert!(
        success && out.contains("deployment.apps/web replaced"),
        "{out}{err}"
    );

    let described = ok(&server, &["describe", "service", "web"]);
    assert!(
        described.contains("Type:                     ClusterIP")
            && described.contains("IP:                       10."),
        "{described}"
    );
    let described = ok(&server, &["describe", "deployment", "web"]);
    assert!(
        described.contains("Replicas:               3 desired")
            && described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{described}"
    );

    // wait --for=delete returns once the object is gone.
    let mut wait = kubectl_command(
        &server,
        20,
        &["wait", "--for=delete", "service/web", "--timeout=15s"],
    );
    let waiter = std::thread::spawn(move || wait.output().expect("kubectl wait"));
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    ok(&server, &["delete", "service", "web"]);
    let waited = waiter.join().expect("wait thread");
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );

    // Foreground deletion: the garbage collector removes the ReplicaSet (and its pods) first, then
    // the Deployment; kubectl waits for it to be gone.
    assert!(
        !ok(&server, &["get", "rs", "-l", "app=web", "-o", "name"]).is_empty(),
        "the Deployment made a ReplicaSet"
    );
    let out = ok(
        &server,
        &["delete", "deploy", "web", "--cascade=foreground", "--timeout=30s"],
    );
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    assert_eq!(
        ok(&server, &["get", "rs,pods", "-l", "app=web", "-o", "name"]),
        ""
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selectors_chunks_namespaces_conditions() {
    // No controllers: the test writes a Deployment's status itself, and watches a namespace stay
    // Terminating.
    let server = Server::start(&["--disable-controller-manager"])
        .await
        .expect("start server");
    let cm = |name: &str, tier: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels: {{ tier: {tier} }}\n")
    };
    let cms = [cm("a1", "web"), cm("a2", "db"), cm("a3", "web")].join("---\n");
    apply(&server, &cms);
    apply(
        &server,
        "apiVersion: v1\nkind: Namespace\nmetadata: { name: other }\n",
    );
    apply(
        &server,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: far, namespace: other }\n",
    );

    assert_eq!(
        ok(&server, &["get", "cm", "-l", "tier=web", "-o", "name"]),
        "configmap/a1\nconfigmap/a3\n"
    );
    assert_eq!(
        ok(&server, &["get", "cm", "-l", "tier notin (web)", "-o", "name"]),
        "configmap/a2\n"
    );
    assert_eq!(
        ok(
            &server,
            &["get", "cm", "--field-selector", "metadata.name=a2", "-o", "name"]
        ),
        "configmap/a2\n"
    );
    let (success, _, err) = kubectl(
        &server,
        &["get", "pods", "--field-selector", "spec.bogus=x"],
        None,
    );
    assert!(
        !success && err.contains("field label not supported: spec.bogus"),
        "{err}"
    );
    let chunked = ok(&server, &["get", "cm", "--chunk-size=1", "-o", "name"]);
    assert_eq!(
        chunked, "configmap/a1\nconfigmap/a2\nconfigmap/a3\n",
        "every page, in order"
    );
    let all = ok(&server, &["get", "cm", "-A"]);
    let header: Vec<&str> = all.lines().next().expect("header").split_whitespace().collect();
    assert_eq!(header, ["NAMESPACE", "NAME", "DATA", "AGE"]);
    assert!(
        all.lines().any(|l| l.starts_with("other") && l.contains("far")),
        "{all}"
    );

    // A condition set through /status satisfies `kubectl wait --for=condition`.
    apply(
        &server,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec:\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [{ name: web, image: \"busybox:1.36\" }] }\n",
    );
    ok(
        &server,
        &[
            "patch",
            "deploy",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable","message":"ok"}]}}"#,
        ],
    );
    let waited = ok(
        &server,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=10s",
        ],
    );
    assert!(waited.contains("deployment.apps/web condition met"), "{waited}");

    // delete waits for the object to be gone; namespace deletion leaves it Terminating.
    let out = ok(&server, &["delete", "cm", "a1", "--wait=true"]);
    assert!(out.contains("configmap \"a1\" deleted"), "{out}");
    ok(&server, &["delete", "namespace", "other", "--wait=false"]);
    assert_eq!(
        ok(&server, &["get", "ns", "other", "-o", "jsonpath={.status.phase}"]),
        "Terminating"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_conflicts_and_force() {
    // No controllers: the test checks that an unchanged apply leaves the resourceVersion alone, and
    // the Deployment controller's status writes would move it.
    let server = Server::start(&["--disable-controller-manager"])
        .await
        .expect("start server");
    let manifest = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: { team: a }\nspec:\n  replicas: 2\n  selector: { matchLabels: { app: web } }\n  template:\n    metadata: { labels: { app: web } }\n    spec: { containers: [{ name: web, image: \"busybox:1.36\" }] }\n";
    let ssa = |m: &str, extra: &[&str]| {
        let mut args = vec!["apply", "--server-side", "-f", "-"];
        args.extend_from_slice(extra);
        kubectl(&server, &args, Some(m))
    };
    let (success, out, err) = ssa(manifest, &[]);
    assert!(
        success && out.contains("deployment.apps/web serverside-applied"),
        "{out}{err}"
    );
    let rv = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.resourceVersion}",
        ],
    );
    let (success, _, _) = ssa(manifest, &[]);
    assert!(success);
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.metadata.resourceVersion}"
            ]
        ),
        rv,
        "an unchanged apply writes nothing"
    );

    // Another manager (kubectl scale, through /scale) owns spec.replicas now: a different value conflicts.
    ok(&server, &["scale", "deploy", "web", "--replicas=5"]);
    let changed = manifest
        .replace("replicas: 2", "replicas: 3")
        .replace("labels: { team: a }", "labels: {}");
    let (success, _, err) = ssa(&changed, &[]);
    assert!(!success && err.contains("Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"), "{err}");
    let (success, _, err) = ssa(&changed, &["--force-conflicts"]);
    assert!(success, "{err}");
    // Forced: the value is ours, and the label this manager stopped applying is gone.
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "deploy",
                "web",
                "-o",
                "jsonpath={.spec.replicas} {.metadata.labels.team}"
            ]
        ),
        "3 "
    );
    let managers = ok(
        &server,
        &[
            "get",
            "deploy",
            "web",
            "--show-managed-fields",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
    );
    assert!(managers.contains("kubectl"), "{managers}");
}

/// `kubectl edit` with an EDITOR that changes the image: kubectl diffs the edited file against what
/// it showed and sends a strategic merge patch; an edit that breaks validation is refused with the
/// server's field error and kubectl keeps the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edit_with_an_editor() {
    let server = Server::start(&["--disable-controller-manager"])
        .await
        .expect("start server");
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: edited }\ndata: { colour: blue }\n";
    apply(&server, cm);
    let out = kubectl_command(&server, 60, &["edit", "configmap", "edited"])
        .env("EDITOR", "sed -i s/colour:\\ blue/colour:\\ green/")
        .output()
        .expect("kubectl edit runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("configmap/edited edited"), "{stdout}");
    assert_eq!(
        ok(&server, &["get", "cm", "edited", "-o", "jsonpath={.data.colour}"]),
        "green"
    );

    // An invalid edit (a bad label value) is refused with the server's field error, which kubectl
    // writes into the file it reopens; an editor that then changes nothing ends the edit.
    let script = server.data_dir.path().join("bad-label.sh");
    std::fs::write(&script, "grep -q 'bad:' \"$1\" || sed -i 's/name: edited/name: edited\\n  labels: { bad: \"-x-\" }/' \"$1\"\n")
        .expect("editor script");
    let out = kubectl_command(&server, 60, &["edit", "configmap", "edited"])
        .env("EDITOR", format!("sh {}", script.display()))
        // kubectl keeps the rejected edit in TMPDIR: the data dir, removed with the server.
        .env("TMPDIR", server.data_dir.path())
        .output()
        .expect("kubectl edit runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an invalid edit fails: {stderr}");
    assert!(
        stderr.contains("configmaps \"edited\" is invalid") && stderr.contains("Edit cancelled"),
        "{stderr}"
    );
    let kept = stderr
        .split_whitespace()
        .find(|w| w.contains("kubectl-edit-"))
        .map(|path| std::fs::read_to_string(path.trim_matches(|c| c == '"' || c == '.')).unwrap_or_default())
        .unwrap_or_default();
    assert!(
        kept.contains("metadata.labels"),
        "kubectl kept the edit with the field error: {kept}\n{stderr}"
    );
    assert_eq!(
        ok(
            &server,
            &["get", "cm", "edited", "-o", "jsonpath={.metadata.labels}"]
        ),
        ""
    );
}

/// A file of `kind: List`: kubectl validates it against `/openapi/v2` (as protobuf), then applies each
/// item; the server's strict decoding still rejects an item's unknown field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_a_list() {
    let server = Server::start(&[]).await.expect("start server");
    let list = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: { name: first }
  data: { x: "1" }
- apiVersion: v1
  kind: Service
  metadata: { name: second }
  spec: { ports: [{ port: 80 }], selector: { app: x } }
"#;
    let out = apply(&server, list);
    assert!(
        out.contains("configmap/first created") && out.contains("service/second created"),
        "{out}"
    );
    let out = apply(&server, list);
    assert!(
        out.contains("configmap/first unchanged") && out.contains("service/second unchanged"),
        "{out}"
    );
    let bad = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: { name: third }\n  bogus: 1\n";
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(bad));
    assert!(!success, "{out}");
    assert!(
        err.contains(r#"strict decoding error: unknown field "bogus""#),
        "{err}"
    );
    let (found, _, _) = kubectl(&server, &["get", "configmap", "third"], None);
    assert!(!found, "the invalid item was not created");
}
