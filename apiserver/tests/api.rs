//! The HTTP surface on the memory store, driven through the router in-process: objects get
//! resourceVersions, lists page at a fixed revision, watches stream and resume, and bad input gets a
//! Kubernetes Status with the right code and reason.

mod common;

use std::time::Duration;

use axum::{
    body::Body,
    http::{Method, Request},
};
use common::{call, cm, rv, server, watch_lines};
use serde_json::json;
use tower::ServiceExt;

#[tokio::test]
async fn create_get_update_delete_with_resource_versions() {
    let (_api, r) = server().await;
    let (code, created) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("a")),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
    assert!(created["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(created["metadata"]["creationTimestamp"].is_string());
    let rv1 = rv(&created);

    let (code, got) = call(&r, Method::GET, "/api/v1/namespaces/default/configmaps/a", None).await;
    assert_eq!((code, &got), (200, &created));

    let mut changed = got.clone();
    changed["data"]["k"] = json!("w");
    let (code, updated) = call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/configmaps/a",
        Some(changed.clone()),
    )
    .await;
    assert_eq!(code, 200, "{updated}");
    assert!(rv(&updated) > rv1);
    assert_eq!(
        updated["metadata"]["uid"], created["metadata"]["uid"],
        "uid is kept"
    );

    // The same stale body again: 409 Conflict, as kubectl users know it.
    let (code, status) = call(
        &r,
        Method::PUT,
        "/api/v1/namespaces/default/configmaps/a",
        Some(changed),
    )
    .await;
    assert_eq!((code, status["reason"].as_str()), (409, Some("Conflict")));
    assert!(
        status["message"]
            .as_str()
            .expect("message")
            .contains("the object has been modified")
    );

    let (code, dup) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("a")),
    )
    .await;
    assert_eq!((code, dup["reason"].as_str()), (409, Some("AlreadyExists")));
    assert_eq!(dup["message"], "configmaps \"a\" already exists");

    let (code, del) = call(
        &r,
        Method::DELETE,
        "/api/v1/namespaces/default/configmaps/a",
        None,
    )
    .await;
    assert_eq!((code, del["status"].as_str()), (200, Some("Success")));
    let (code, gone) = call(&r, Method::GET, "/api/v1/namespaces/default/configmaps/a", None).await;
    assert_eq!(
        (code, gone["reason"].as_str(), gone["message"].as_str()),
        (404, Some("NotFound"), Some("configmaps \"a\" not found"))
    );
}

#[tokio::test]
async fn bad_input_gets_precise_statuses() {
    let (_api, r) = server().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .expect("request");
    let resp = r.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status().as_u16(), 400);

    let (code, s) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("Bad_Name")),
    )
    .await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");

    let (code, s) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/nope/configmaps",
        Some(cm("a")),
    )
    .await;
    assert_eq!(
        (code, s["message"].as_str()),
        (404, Some("namespaces \"nope\" not found"))
    );

    let mut wrong = cm("a");
    wrong["kind"] = json!("Secret");
    let (code, _) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(wrong),
    )
    .await;
    assert_eq!(code, 400);

    let big = json!({ "metadata": { "name": "big" }, "data": { "k": "x".repeat(4 * 1024 * 1024) } });
    let (code, s) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(big),
    )
    .await;
    assert_eq!((code, s["reason"].as_str()), (413, Some("RequestEntityTooLarge")));

    let (code, _) = call(&r, Method::GET, "/api/v1/widgets", None).await;
    assert_eq!(code, 404);
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?resourceVersion=abc",
        None,
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?limit=1&continue=garbage",
        None,
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn pagination_pins_the_first_pages_revision() {
    let (_api, r) = server().await;
    for i in 0..7 {
        let (code, _) = call(
            &r,
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            Some(cm(&format!("c{i}"))),
        )
        .await;
        assert_eq!(code, 201);
    }
    let (code, page) = call(
        &r,
        Method::GET,
        "/api/v1/namespaces/default/configmaps?limit=3",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(page["kind"], "ConfigMapList");
    let list_rv = page["metadata"]["resourceVersion"].clone();
    let mut names: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();
    // A write between pages must not show up in this list.
    call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("c3a")),
    )
    .await;
    let mut token = page["metadata"]["continue"]
        .as_str()
        .expect("continue")
        .to_owned();
    loop {
        let (code, page) = call(
            &r,
            Method::GET,
            &format!("/api/v1/namespaces/default/configmaps?limit=3&continue={token}"),
            None,
        )
        .await;
        assert_eq!(code, 200, "{page}");
        assert_eq!(page["metadata"]["resourceVersion"], list_rv);
        names.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["metadata"]["name"].as_str().expect("name").to_owned()),
        );
        match page["metadata"]["continue"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    // Lists across all namespaces and at "any" resourceVersion (the cache) see the new one too.
    let (_, all) = call(&r, Method::GET, "/api/v1/configmaps", None).await;
    assert_eq!(all["items"].as_array().expect("items").len(), 8);
}

#[tokio::test]
async fn watch_streams_events_and_resumes_from_a_resource_version() {
    let (api, r) = server().await;
    let (_, a) = call(
        &r,
        Method::POST,
        "/api/v1/namespaces/default/configmaps",
        Some(cm("a")),
    )
    .await;
    let start = rv(&a);
    let writer = {
        let r = r.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (_, mut b) = call(
                &r,
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                Some(cm("b")),
            )
            .await;
            b["data"]["k"] = json!("2");
            call(
                &r,
                Method::PUT,
                "/api/v1/namespaces/default/configmaps/b",
                Some(b),
            )
            .await;
            call(
                &r,
                Method::DELETE,
                "/api/v1/namespaces/default/configmaps/b",
                None,
            )
            .await;
        })
    };
    let events = watch_lines(
        &r,
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={start}"),
        3,
    )
    .await;
    writer.await.expect("writer");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["ADDED", "MODIFIED", "DELETED"]);
    assert!(events.iter().all(|e| e["object"]["metadata"]["name"] == "b"));
    let revs: Vec<i64> = events.iter().map(|e| rv(&e["object"])).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "increasing resourceVersions {revs:?}"
    );

    // Without a resourceVersion the watch starts with the current objects.
    let initial = watch_lines(&r, "/api/v1/namespaces/default/configmaps?watch=1", 1).await;
    assert_eq!(
        (
            initial[0]["type"].as_str(),
            initial[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );

    // Resuming from a compacted revision: a 200 stream with one ERROR event carrying 410 Expired.
    let now = api.store.current_revision().await.expect("rev");
    api.store.compact(now).await.expect("compact");
    let expired = watch_lines(
        &r,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}",
            start - 1
        ),
        1,
    )
    .await;
    assert_eq!(expired[0]["type"], "ERROR");
    assert_eq!(expired[0]["object"]["code"], 410);
    assert_eq!(expired[0]["object"]["reason"], "Expired");
}
