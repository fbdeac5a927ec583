//! Upstream semantics beyond plain CRUD: Service IP and NodePort allocation, finalizers and graceful
//! deletion, namespaces that terminate, status and scale subresources, generation, selectors on lists
//! and watches, deletecollection, discovery.

mod common;

use axum::http::Method;
use common::{call, rv, server, watch_lines};
use serde_json::{Value, json};

fn deployment(name: &str) -> Value {
    json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": name, "labels": { "app": name } },
        "spec": { "replicas": 2, "selector": { "matchLabels": { "app": name } },
            "template": { "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } } } })
}

#[tokio::test]
async fn services_get_unique_cluster_ips_and_node_ports() {
    let (_api, r) = server().await;
    let (code, k) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/services/kubernetes",
        None,
    )
    .await;
    assert_eq!(
        (code, k["spec"]["clusterIP"].as_str()),
        (200, Some("10.96.0.1")),
        "the kubernetes Service is bootstrapped"
    );

    let svc = |name: &str, spec: Value| json!({ "metadata": { "name": name }, "spec": spec });
    let (code, a) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(svc(
            "a",
            json!({ "type": "NodePort", "selector": { "app": "a" }, "ports": [{ "port": 80 }] }),
        )),
    )
    .await;
    assert_eq!(code, 201, "{a}");
    let ip = a["spec"]["clusterIP"].as_str().expect("allocated").to_owned();
    assert!(ip.starts_with("10.") && ip != "10.96.0.1");
    assert_eq!(a["spec"]["ports"][0]["targetPort"], 80, "defaulted");
    let node_port = a["spec"]["ports"][0]["nodePort"].as_i64().expect("node port");
    assert!((30000..=32767).contains(&node_port));

    let (code, b) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(svc("b", json!({ "clusterIP": ip, "ports": [{ "port": 80 }] }))),
    )
    .await;
    assert_eq!((code, b["reason"].as_str()), (422, Some("Invalid")), "{b}");
    let (code, c) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(svc(
            "c",
            json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": node_port }] }),
        )),
    )
    .await;
    assert_eq!(code, 422, "{c}");

    // An update that leaves clusterIP out keeps it; one that changes it is refused.
    let mut update = a.clone();
    update["spec"].as_object_mut().expect("spec").remove("clusterIP");
    update["spec"].as_object_mut().expect("spec").remove("clusterIPs");
    let (code, kept) = call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/services/a",
        Some(update),
    )
    .await;
    assert_eq!(
        (code, kept["spec"]["clusterIP"].as_str()),
        (200, Some(ip.as_str())),
        "{kept}"
    );
    let mut change = kept.clone();
    change["spec"]["clusterIP"] = json!("10.96.0.99");
    let (code, _) = call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/services/a",
        Some(change),
    )
    .await;
    assert_eq!(code, 422);

    // Deleting releases both: the same address and port can be requested again.
    call(&r, Method::DELETE, "/api/v1/namespaces/default/services/a", None).await;
    let (code, again) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/services",
        Some(svc(
            "d",
            json!({ "type": "NodePort", "clusterIP": ip, "ports": [{ "port": 80, "nodePort": node_port }] }),
        )),
    )
    .await;
    assert_eq!(code, 201, "{again}");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_api, r) = server().await;
    let cm = json!({ "metadata": { "name": "held", "finalizers": ["example.com/hold"] } });
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm),
    )
    .await;
    let (code, marked) = call(
        &r,
        Method::DELETE,
        "/api/v1/namespaces/default/configmaps/held",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string(), "{marked}");
    let (code, still) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps/held",
        None,
    )
    .await;
    assert_eq!(
        (code, &still["metadata"]["deletionTimestamp"]),
        (200, &marked["metadata"]["deletionTimestamp"])
    );
    let mut release = still.clone();
    release["metadata"]["finalizers"] = json!([]);
    let (code, _) = call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/configmaps/held",
        Some(release),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps/held",
        None,
    )
    .await;
    assert_eq!(code, 404, "removing the last finalizer completes the delete");

    // Foreground deletion is recorded as the foregroundDeletion finalizer for the garbage collector.
    call(
        &r,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deployment("fg")),
    )
    .await;
    let (_, marked) = call(
        &r,
        Method::DELETE,
        "/apis/apps/v1/namespaces/default/deployments/fg",
        Some(json!({ "propagationPolicy": "Foreground" })),
    )
    .await;
    assert_eq!(
        marked["metadata"]["finalizers"],
        json!(["foregroundDeletion"]),
        "{marked}"
    );
    let (code, s) = call(
        &r,
        Method::DELETE,
        "/apis/apps/v1/namespaces/default/deployments/fg",
        Some(json!({ "propagationPolicy": "Sideways" })),
    )
    .await;
    assert_eq!(code, 400, "{s}");
}

#[tokio::test]
async fn bound_pods_terminate_gracefully_and_unbound_ones_go_at_once() {
    let (_api, r) = server().await;
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({ "metadata": { "name": name }, "spec": { "containers": [{ "name": "c", "image": "busybox" }] } });
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    let (code, created) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("bound", Some("node-1"))),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"]["phase"], "Pending");
    assert_eq!(created["spec"]["terminationGracePeriodSeconds"], 30);
    let (_, marked) = call(&r, Method::DELETE, "/api/v1/namespaces/default/pods/bound", None).await;
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30, "{marked}");
    let (code, _) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/bound", None).await;
    assert_eq!(code, 200, "still there while its kubelet stops it");
    let (code, gone) = call(
        &r,
        Method::DELETE,
        "/api/v1/namespaces/default/pods/bound",
        Some(json!({ "gracePeriodSeconds": 0 })),
    )
    .await;
    assert_eq!(
        (code, gone["kind"].as_str()),
        (200, Some("Pod")),
        "the final delete returns the pod"
    );
    let (code, _) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/bound", None).await;
    assert_eq!(code, 404);

    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/pods",
        Some(pod("loose", None)),
    )
    .await;
    call(&r, Method::DELETE, "/api/v1/namespaces/default/pods/loose", None).await;
    let (code, _) = call(&r, Method::GET, "/api/v1/namespaces/default/pods/loose", None).await;
    assert_eq!(code, 404, "an unbound pod is removed at once");
}

#[tokio::test]
async fn terminating_namespaces_refuse_new_objects() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces",
        Some(json!({ "metadata": { "name": "doomed" } })),
    )
    .await;
    let (code, ns) = call(&r, Method::DELETE, "/api/v1/namespaces/doomed", None).await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (200, Some("Terminating")),
        "{ns}"
    );
    let (code, s) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/doomed/configmaps",
        Some(json!({ "metadata": { "name": "x" } })),
    )
    .await;
    assert_eq!((code, s["reason"].as_str()), (403, Some("Forbidden")), "{s}");
}

#[tokio::test]
async fn status_and_scale_subresources_and_generation() {
    let (_api, r) = server().await;
    let (code, d) = call(
        &r,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deployment("web")),
    )
    .await;
    assert_eq!(code, 201, "{d}");
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");

    // Status through the main resource is ignored; through /status it is the only thing written.
    let mut with_status = d.clone();
    with_status["status"] = json!({ "replicas": 7 });
    let (_, after) = call(
        &r,
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(with_status.clone()),
    )
    .await;
    assert!(after["status"].get("replicas").is_none(), "{after}");
    assert_eq!(
        after["metadata"]["generation"], 1,
        "no spec change, no new generation"
    );
    with_status["metadata"]["resourceVersion"] = after["metadata"]["resourceVersion"].clone();
    with_status["spec"]["replicas"] = json!(9);
    let (code, after) = call(
        &r,
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web/status",
        Some(with_status),
    )
    .await;
    assert_eq!(
        (
            code,
            after["status"]["replicas"].as_i64(),
            after["spec"]["replicas"].as_i64()
        ),
        (200, Some(7), Some(2))
    );

    let (code, scale) = call(
        &r,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        None,
    )
    .await;
    assert_eq!(
        (code, scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (200, Some("Scale"), Some(2))
    );
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, scaled) = call(
        &r,
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web/scale",
        Some(json!({ "spec": { "replicas": 4 } })),
    )
    .await;
    assert_eq!((code, scaled["spec"]["replicas"].as_i64()), (200, Some(4)));
    let (_, d) = call(
        &r,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    )
    .await;
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(4), Some(2))
    );
}

#[tokio::test]
async fn selectors_filter_lists_and_watches() {
    let (_api, r) = server().await;
    for (name, tier) in [("a", "web"), ("b", "db"), ("c", "web")] {
        call(
            &r,
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({ "metadata": { "name": name, "labels": { "tier": tier } } })),
        )
        .await;
    }
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().expect("name").to_owned())
            .collect()
    };
    let (_, web) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb",
        None,
    )
    .await;
    assert_eq!(names(&web), ["a", "c"]);
    let (_, not_web) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?labelSelector=tier!%3Dweb",
        None,
    )
    .await;
    assert_eq!(names(&not_web), ["b"]);
    let (_, page) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb&limit=1",
        None,
    )
    .await;
    assert_eq!(names(&page), ["a"]);
    assert!(
        page["metadata"]["continue"].is_string(),
        "a full page of matches continues"
    );
    let (_, by_name) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Db",
        None,
    )
    .await;
    assert_eq!(names(&by_name), ["b"]);
    let (code, bad) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?fieldSelector=data.x%3D1",
        None,
    )
    .await;
    assert_eq!(code, 400, "{bad}");
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(",
        None,
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dnode-1",
        None,
    )
    .await;
    assert_eq!(code, 200, "pods select on spec.nodeName");

    // An object that stops matching is DELETED for that watcher; one that starts is ADDED.
    let (_, list) = call(&r, Method::GET, "/api/v1/namespaces/default/configmaps", None).await;
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_owned();
    let (_, mut a) = call(&r, Method::GET, "/api/v1/namespaces/default/configmaps/a", None).await;
    a["metadata"]["labels"]["tier"] = json!("db");
    call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/configmaps/a",
        Some(a),
    )
    .await;
    let (_, mut b) = call(&r, Method::GET, "/api/v1/namespaces/default/configmaps/b", None).await;
    b["metadata"]["labels"]["tier"] = json!("web");
    call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/configmaps/b",
        Some(b),
    )
    .await;
    let events = watch_lines(
        &r,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&labelSelector=tier%3Dweb&resourceVersion={from}"
        ),
        2,
    )
    .await;
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().expect("type"),
                e["object"]["metadata"]["name"].as_str().expect("name"),
            )
        })
        .collect();
    assert_eq!(seen, [("DELETED", "a"), ("ADDED", "b")]);

    // deletecollection removes exactly what the selector matches.
    let (code, deleted) = call(
        &r,
        Method::DELETE,
        "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Ddb",
        None,
    )
    .await;
    assert_eq!((code, names(&deleted)), (200, vec!["a".to_owned()]));
    let (_, left) = call(&r, Method::GET, "/api/v1/namespaces/default/configmaps", None).await;
    assert_eq!(names(&left), ["b", "c"]);
    assert!(rv(&left["items"][0]) > 0);
}

#[tokio::test]
async fn discovery_lists_every_served_resource() {
    let (_api, r) = server().await;
    let (code, core) = call(&r, Method::GET, "/api/v1", None).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = core["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    for want in [
        "pods",
        "pods/status",
        "services",
        "configmaps",
        "namespaces",
        "nodes",
        "events",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let (_, apps) = call(&r, Method::GET, "/apis/apps/v1", None).await;
    let scale = apps["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|x| x["name"] == "deployments/scale")
        .expect("scale");
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );
    let (_, groups) = call(&r, Method::GET, "/apis", None).await;
    assert!(
        groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "apps")
    );
}

#[tokio::test]
async fn metrics_count_requests_watches_and_store_operations() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(json!({ "metadata": { "name": "m" } })),
    )
    .await;
    call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps/nope",
        None,
    )
    .await;
    let _ = watch_lines(&r, "/api/v1/namespaces/default/configmaps?watch=1", 1).await;
    let req = axum::http::Request::get("/metrics")
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = tower::ServiceExt::oneshot(r.clone(), req)
        .await
        .expect("infallible");
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec(),
    )
    .expect("utf8");
    for want in [
        r#"apiserver_request_total{verb="POST",resource="configmaps",code="201"} 1"#,
        r#"apiserver_request_total{verb="GET",resource="configmaps",code="404"} 1"#,
        r#"apiserver_watch_events_total 1"#,
        r#"apiserver_storage_operation_duration_seconds_count{operation="create"}"#,
    ] {
        assert!(text.contains(want), "{want} in:\n{text}");
    }
}

#[tokio::test]
async fn send_initial_events_streams_state_then_an_end_bookmark() {
    let (_api, r) = server().await;
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(json!({ "metadata": { "name": "one" } })),
    )
    .await;
    let events = watch_lines(&r, "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true", 2).await;
    assert_eq!(
        (
            events[0]["type"].as_str(),
            events[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("one"))
    );
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?watch=1&sendInitialEvents=true",
        None,
    )
    .await;
    assert_eq!(code, 400, "needs resourceVersionMatch=NotOlderThan");
}

#[tokio::test]
async fn invalid_objects_get_one_cause_per_field() {
    let (_api, r) = server().await;
    let mut bad = deployment("bad");
    bad["spec"]["template"]["metadata"]["labels"] = json!({ "app": "other" });
    bad["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
    let (code, s) = call(
        &r,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(bad),
    )
    .await;
    assert_eq!(
        (code, s["reason"].as_str(), s["details"]["kind"].as_str()),
        (422, Some("Invalid"), Some("Deployment")),
        "{s}"
    );
    let fields: Vec<&str> = s["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert!(fields.contains(&"spec.template.metadata.labels"), "{fields:?}");
    assert!(
        fields.contains(&"spec.template.spec.containers[0].image"),
        "{fields:?}"
    );

    // The selector is immutable once created.
    call(
        &r,
        Method::POST,
        "/apis/apps/v1/namespaces/default/deployments",
        Some(deployment("web")),
    )
    .await;
    let (_, mut d) = call(
        &r,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web",
        None,
    )
    .await;
    d["spec"]["selector"] = json!({ "matchLabels": { "app": "web", "x": "y" } });
    d["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
    let (code, s) = call(
        &r,
        Method::PUT,
        "/apis/apps/v1/namespaces/default/deployments/web",
        Some(d),
    )
    .await;
    assert_eq!(code, 422, "{s}");
    assert!(
        s["message"]
            .as_str()
            .expect("message")
            .contains("field is immutable"),
        "{s}"
    );
}

/// With 27^5 generated suffixes, 15,000 objects of one generateName collide about 8 times; each
/// collision is retried with a new name (upstream's RetryGenerateName), so every create succeeds.
/// Without the retry this fails but for a 0.04 % chance.
#[tokio::test]
async fn generated_names_that_collide_are_generated_again() {
    let (_api, r) = server().await;
    let mut names = std::collections::HashSet::new();
    for _ in 0..15_000 {
        let (code, cm) = call(
            &r,
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(json!({ "metadata": { "generateName": "cm-" } })),
        )
        .await;
        assert_eq!(code, 201, "{cm}");
        assert!(names.insert(cm["metadata"]["name"].as_str().expect("name").to_owned()));
    }
}

/// A delete that marks an object (here Orphan) while another client keeps writing it (as a controller
/// writes status) is retried on the fresh object instead of failing with 409: only preconditions may
/// fail a delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_survive_concurrent_writes() {
    let (_api, r) = server().await;
    for i in 0..30 {
        let name = format!("busy-{i}");
        let uri = format!("/api/v1/namespaces/default/configmaps/{name}");
        let (code, _) = call(
            &r,
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(common::cm(&name)),
        )
        .await;
        assert_eq!(code, 201);
        let (writer_r, writer_uri, writer_name) = (r.clone(), uri.clone(), name.clone());
        let (started, mut writing) = tokio::sync::mpsc::channel::<()>(1);
        // Bounded, and yielding each round: the memory store never makes a request wait, so a writer
        // that did not yield could never be stopped.
        let writer = tokio::spawn(async move {
            for n in 0..5_000 {
                let mut cm = common::cm(&writer_name);
                cm["data"]["n"] = json!(n.to_string());
                call(&writer_r, Method::PUT, &writer_uri, Some(cm)).await;
                if n == 3 {
                    let _ = started.send(()).await;
                }
                tokio::task::yield_now().await;
            }
        });
        let _stop = AbortOnDrop(writer.abort_handle());
        tokio::time::timeout(common::T, writing.recv())
            .await
            .expect("writer in time");
        let (code, body) = call(
            &r,
            Method::DELETE,
            &uri,
            Some(json!({ "preconditions": { "uid": "not-the-uid" } })),
        )
        .await;
        assert_eq!(code, 409, "a failed precondition is still a conflict: {body}");
        let (code, body) = call(
            &r,
            Method::DELETE,
            &format!("{uri}?propagationPolicy=Orphan"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }
}

/// Aborts a task when dropped, so a failing assertion never leaves it running.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
