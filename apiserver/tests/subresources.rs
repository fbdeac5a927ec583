//! The subresources the scheduler, the node agent and the controllers write through (pods/binding,
//! pods/eviction, namespaces/finalize), the kubelet-proxied ones (log, exec) while no kubelet API is
//! served, metadata-only responses, and the DefaultTolerationSeconds admission.

mod common;

use axum::{
    body::Body,
    http::{Method, Request},
};
use common::{T, call, server};
use serde_json::{Value, json};
use tower::ServiceExt;

fn pod(name: &str) -> Value {
    json!({ "metadata": { "name": name, "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c", "image": "busybox" }, { "name": "d", "image": "busybox" }] } })
}

async fn get_with_accept(r: &axum::Router, uri: &str, accept: &str) -> (u16, Vec<u8>) {
    let req = Request::builder()
        .uri(uri)
        .header("accept", accept)
        .body(Body::empty())
        .expect("request");
    let resp = tokio::time::timeout(T, r.clone().oneshot(req))
        .await
        .expect("in time")
        .expect("infallible");
    let code = resp.status().as_u16();
    let body = resp.into_body().into_data_stream();
    use futures::StreamExt;
    // A watch never ends: read the first line only.
    let mut body = body;
    let mut buf = Vec::new();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(std::time::Duration::from_millis(300), body.next()).await
    {
        buf.extend_from_slice(&chunk);
        if uri.contains("watch=true") && buf.contains(&b'\n') {
            break;
        }
    }
    (code, buf)
}

#[tokio::test]
async fn binding_assigns_a_pod_once() {
    let (_api, r) = server().await;
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p")),
    )
    .await;
    assert_eq!(code, 201);
    let binding = json!({ "apiVersion": "v1", "kind": "Binding", "metadata": { "name": "p" },
                          "target": { "apiVersion": "v1", "kind": "Node", "name": "n1" } });
    let (code, status) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/binding",
        Some(binding.clone()),
    )
    .await;
    assert_eq!(
        (code, status["status"].as_str()),
        (201, Some("Success")),
        "{status}"
    );
    let (_, p) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/p", None).await;
    assert_eq!(p["spec"]["nodeName"], "n1");
    let scheduled = p["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned();
    assert_eq!(scheduled.expect("PodScheduled")["status"], "True");

    // A second binding (another scheduler, a stale cache) is refused: pods never move.
    let mut again = binding.clone();
    again["target"]["name"] = json!("n2");
    let (code, err) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/binding",
        Some(again),
    )
    .await;
    assert_eq!((code, err["reason"].as_str()), (409, Some("Conflict")), "{err}");
    assert_eq!(err["message"], "pod default/p is already assigned to node \"n1\"");

    // Bad bindings: a missing target, a name that is not the URL's, a missing pod.
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("q")),
    )
    .await;
    let (code, err) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/q/binding",
        Some(json!({ "metadata": { "name": "q" }, "target": {} })),
    )
    .await;
    assert_eq!(
        (code, err["details"]["causes"][0]["field"].as_str()),
        (422, Some("target.name")),
        "{err}"
    );
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/q/binding",
        Some(json!({ "metadata": { "name": "x" }, "target": { "name": "n1" } })),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/missing/binding",
        Some(json!({ "metadata": { "name": "missing" }, "target": { "name": "n1" } })),
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/q/binding", None).await;
    assert_eq!(code, 405);
    let (_, q) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/q", None).await;
    assert!(
        q["spec"].get("nodeName").is_none(),
        "failed bindings change nothing: {q}"
    );
}

#[tokio::test]
async fn eviction_deletes_the_pod() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p")),
    )
    .await;
    let eviction = json!({ "apiVersion": "policy/v1", "kind": "Eviction", "metadata": { "name": "p", "namespace": "default" } });
    let (code, status) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/eviction",
        Some(eviction.clone()),
    )
    .await;
    assert_eq!(
        (code, status["status"].as_str()),
        (201, Some("Success")),
        "{status}"
    );
    let (code, _) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/p", None).await;
    assert_eq!(code, 404, "an unbound pod goes at once");
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/eviction",
        Some(eviction),
    )
    .await;
    assert_eq!(code, 404);
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/eviction",
        Some(json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p" } })),
    )
    .await;
    assert_eq!(code, 400, "only an Eviction is accepted");
}

#[tokio::test]
async fn finalize_lets_a_terminating_namespace_go() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces",
        Some(json!({ "metadata": { "name": "gone" } })),
    )
    .await;
    let (_, ns) = call(&r, Method::GET, "/api/v1/namespaces/gone", None).await;
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]), "{ns}");
    let (code, ns) = call(&r, Method::DELETE, "/api/v1/namespaces/gone", None).await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (200, Some("Terminating")),
        "{ns}"
    );

    // Only spec.finalizers is taken from a finalize body.
    let mut body = ns.clone();
    body["spec"]["finalizers"] = json!([]);
    body["metadata"]["labels"] = json!({ "ignored": "yes" });
    let (code, done) = call(&r, Method::PUT, "/api/v1/namespaces/gone/finalize", Some(body)).await;
    assert_eq!(code, 200, "{done}");
    let (code, _) = call(&r, Method::GET, "/api/v1/namespaces/gone", None).await;
    assert_eq!(code, 404, "the last finalizer removed, the namespace is deleted");

    // On a live namespace finalize only edits the finalizers.
    let (_, def) = call(&r, Method::GET, "/api/v1/namespaces/default", None).await;
    let mut body = def.clone();
    body["spec"]["finalizers"] = json!(["kubernetes", "example.com/x"]);
    body["metadata"]["labels"] = json!({ "ignored": "yes" });
    let (code, out) = call(&r, Method::PUT, "/api/v1/namespaces/default/finalize", Some(body)).await;
    assert_eq!(code, 200, "{out}");
    assert_eq!(out["spec"]["finalizers"], json!(["kubernetes", "example.com/x"]));
    assert!(out["metadata"]["labels"].get("ignored").is_none(), "{out}");
}

#[tokio::test]
async fn log_and_exec_say_what_is_missing() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p")),
    )
    .await;
    let (code, err) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/p/log", None).await;
    assert_eq!(
        (code, err["message"].as_str()),
        (
            400,
            Some("a container name must be specified for pod p, choose one of: [c d]")
        )
    );
    let (code, err) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/pods/p/log?container=zz",
        None,
    )
    .await;
    assert_eq!(
        (code, err["message"].as_str()),
        (400, Some("container zz is not valid for pod p"))
    );
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/pods/p/log?container=c",
        None,
    )
    .await;
    assert_eq!(code, 200, "an unscheduled pod has an empty log");
    let (code, err) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/pods/p/exec?container=c&command=ls",
        None,
    )
    .await;
    assert_eq!(
        (code, err["message"].as_str()),
        (400, Some("pod p does not have a host assigned"))
    );
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods/p/binding",
        Some(json!({ "metadata": { "name": "p" }, "target": { "name": "n1" } })),
    )
    .await;
    let (code, err) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/pods/p/log?container=c",
        None,
    )
    .await;
    assert_eq!(
        (code, err["reason"].as_str()),
        (503, Some("ServiceUnavailable")),
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap_or("").contains("node \"n1\""),
        "{err}"
    );
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/pods/missing/log",
        None,
    )
    .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn discovery_lists_the_pod_subresources() {
    let (_api, r) = server().await;
    let (_, list) = call(&r, Method::GET, "/api/v1", None).await;
    let find = |name: &str| {
        list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|x| x["name"] == name)
            .cloned()
    };
    assert_eq!(find("pods/binding").expect("binding")["verbs"], json!(["create"]));
    let eviction = find("pods/eviction").expect("eviction");
    assert_eq!(
        (eviction["group"].as_str(), eviction["kind"].as_str()),
        (Some("policy"), Some("Eviction"))
    );
    assert_eq!(find("pods/exec").expect("exec")["kind"], "PodExecOptions");
    assert_eq!(
        find("namespaces/finalize").expect("finalize")["verbs"],
        json!(["update"])
    );
}

#[tokio::test]
async fn metadata_only_responses() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p")),
    )
    .await;
    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
    let (code, body) = get_with_accept(&r, "/api/v1/namespaces/default/pods", accept).await;
    let list: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (code, list["kind"].as_str()),
        (200, Some("PartialObjectMetadataList")),
        "{list}"
    );
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "p");
    assert!(list["items"][0].get("spec").is_none());

    let accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
    let (_, body) = get_with_accept(&r, "/api/v1/namespaces/default/pods/p", accept).await;
    let one: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (one["kind"].as_str(), one["metadata"]["name"].as_str()),
        (Some("PartialObjectMetadata"), Some("p"))
    );
    let (_, body) = get_with_accept(
        &r,
        "/api/v1/namespaces/default/pods?watch=true&resourceVersion=0",
        accept,
    )
    .await;
    let line = body.split(|b| *b == b'\n').next().expect("a line");
    let event: Value = serde_json::from_slice(line).expect("event");
    assert_eq!(
        (event["type"].as_str(), event["object"]["kind"].as_str()),
        (Some("ADDED"), Some("PartialObjectMetadata")),
        "{event}"
    );
}

#[tokio::test]
async fn pods_get_default_not_ready_and_unreachable_tolerations() {
    let (_api, r) = server().await;
    let (_, p) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("p")),
    )
    .await;
    let keys: Vec<&str> = p["spec"]["tolerations"]
        .as_array()
        .expect("tolerations")
        .iter()
        .filter_map(|t| t["key"].as_str())
        .collect();
    assert_eq!(
        keys,
        ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    );
    assert_eq!(p["spec"]["tolerations"][0]["tolerationSeconds"], 300);
}

/// A Scale to zero written by a Go client leaves `spec.replicas` out (it is omitempty): it means 0.
#[tokio::test]
async fn a_scale_without_replicas_scales_to_zero() {
    let (_api, r) = server().await;
    let d = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "web" },
        "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } },
            "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "c", "image": "i" }] } } } });
    let (code, _) = call(
        &r,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(d),
    )
    .await;
    assert_eq!(code, 201);
    let scale =
        json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": { "name": "web" }, "spec": {} });
    let (code, out) = call(
        &r,
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some(scale),
    )
    .await;
    assert_eq!((code, out["spec"]["replicas"].as_i64()), (200, Some(0)), "{out}");
    let bad = json!({ "apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": { "name": "web" }, "spec": { "replicas": -1 } });
    let (code, _) = call(
        &r,
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some(bad),
    )
    .await;
    assert_eq!(code, 422);
}
