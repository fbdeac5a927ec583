//! kubectl's typed `create` commands, which send their objects as Kubernetes protobuf
//! (`application/vnd.kubernetes.protobuf`) and never fall back to JSON: each one succeeds against
//! `skiff server`, and what it stores is what the same object stores when sent as JSON
//! (`kubectl create … --dry-run=client -o json | kubectl create -f -`).

use serde_json::{Value, json};
use skiff_tests::{Server, kubectl};

/// The namespace the JSON twins of namespaced objects are created in.
const TWIN: &str = "json-twin";

fn ok(server: &Server, args: &[&str], stdin: Option<&str>) -> (String, String) {
    let (success, out, err) = kubectl(server, args, stdin);
    assert!(success, "kubectl {args:?} failed: {err}\n{out}");
    (out, err)
}

fn get(server: &Server, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&ok(server, &args, None).0).expect("kubectl -o json prints JSON")
}

/// Where the JSON twin of an object goes.
enum Twin<'a> {
    /// Same name, in the [`TWIN`] namespace.
    Namespace,
    /// Cluster-scoped: under another name.
    Named(&'a str),
}

/// Runs a typed `kubectl create …` (checking from its request log that it sent protobuf), then the
/// same command's object as JSON through `kubectl create -f -`; returns both stored objects.
fn create_both(server: &Server, args: &[&str], resource: &str, twin: Twin<'_>) -> (Value, Value) {
    let mut verbose = args.to_vec();
    verbose.push("-v=8");
    let (_, log) = ok(server, &verbose, None);
    assert!(
        log.contains("Content-Type: application/vnd.kubernetes.protobuf"),
        "kubectl {args:?} did not send protobuf:\n{log}"
    );
    let mut dry_run = args.to_vec();
    dry_run.extend(["--dry-run=client", "-o", "json"]);
    let mut object: Value = serde_json::from_str(&ok(server, &dry_run, None).0).expect("dry-run JSON");
    let name = object["metadata"]["name"].as_str().expect("name").to_owned();
    match twin {
        Twin::Namespace => object["metadata"]["namespace"] = json!(TWIN),
        Twin::Named(twin_name) => object["metadata"]["name"] = json!(twin_name),
    }
    ok(server, &["create", "-f", "-"], Some(&object.to_string()));
    let from_protobuf = get(server, &["get", resource, &name]);
    let from_json = match twin {
        Twin::Namespace => get(server, &["get", resource, &name, "-n", TWIN]),
        Twin::Named(twin_name) => get(server, &["get", resource, twin_name]),
    };
    (from_protobuf, from_json)
}

/// An object without what differs between two creates (identity, times, status, what controllers
/// add later), keeping kubectl's own managedFields entry without its time.
fn comparable(mut object: Value) -> Value {
    let o = object.as_object_mut().expect("object");
    o.remove("status");
    let meta = o
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata");
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "annotations",
    ] {
        meta.remove(key);
    }
    if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
        // The namespace controller's label holds the namespace's own name.
        labels.remove("kubernetes.io/metadata.name");
    }
    if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
        entries.retain(|e| e["manager"] == "kubectl-create");
        for entry in entries.iter_mut() {
            entry.as_object_mut().expect("entry").remove("time");
        }
    }
    object
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_create_commands_store_what_json_stores() {
    let server = tokio::time::timeout(std::time::Duration::from_secs(60), Server::start(&[]))
        .await
        .expect("server starts in time")
        .expect("start server");
    ok(
        &server,
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"json-twin"}}"#),
    );

    let (pb, js) = create_both(
        &server,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=0",
            "--port=8080",
        ],
        "deployment",
        Twin::Namespace,
    );
    assert_eq!(
        pb["spec"]["replicas"], 0,
        "a zero replicas stays 0, not the default 1: {pb:#}"
    );
    assert_eq!(pb["spec"]["template"]["spec"]["containers"][0]["image"], "nginx");
    assert_eq!(
        pb["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        8080
    );
    assert_eq!(comparable(pb), comparable(js));

    let (pb, js) = create_both(
        &server,
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=b",
            "--from-literal=empty=",
            "--from-literal=multi=line 1\nline 2\n",
        ],
        "configmap",
        Twin::Namespace,
    );
    assert_eq!(
        pb["data"],
        json!({"a": "b", "empty": "", "multi": "line 1\nline 2\n"})
    );
    assert_eq!(comparable(pb), comparable(js));

    let (pb, js) = create_both(
        &server,
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=user=admin",
            "--from-literal=empty=",
        ],
        "secret",
        Twin::Namespace,
    );
    assert_eq!(pb["data"], json!({"user": "YWRtaW4=", "empty": ""}));
    assert_eq!(pb["type"], "Opaque");
    assert_eq!(comparable(pb), comparable(js));

    let (pb, js) = create_both(
        &server,
        &["create", "namespace", "team-a"],
        "namespace",
        Twin::Named("team-a-json"),
    );
    assert_eq!(pb["metadata"]["name"], "team-a");
    assert_eq!(comparable(pb), comparable(js));

    let (pb, js) = create_both(
        &server,
        &["create", "serviceaccount", "robot"],
        "serviceaccount",
        Twin::Namespace,
    );
    assert_eq!(pb["metadata"]["name"], "robot");
    assert_eq!(comparable(pb), comparable(js));
}
