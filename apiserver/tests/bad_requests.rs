//! Bad input never gets a 500 or a panic, and a refused write stores nothing: arbitrary bytes, JSON
//! and YAML thrown at every write verb and content type (property tests), plus the classic cases
//! table-style.

mod common;

use axum::{
    body::Body,
    http::{Method, Request},
};
use common::{T, call, server};
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

const PATHS: &[&str] = &[
    "/api/v1/namespaces/default/configmaps",
    "/api/v1/namespaces/default/configmaps/a",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/apps/v1/namespaces/default/deployments/d",
    "/apis/apps/v1/namespaces/default/deployments/d/scale",
    "/api/v1/namespaces/default/services",
    "/api/v1/namespaces/default/pods/p/status",
    "/api/v1/namespaces",
];

const TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "text/plain",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z$/:.]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("metadata".to_owned()),
                    Just("name".to_owned()),
                    Just("spec".to_owned()),
                    Just("$patch".to_owned()),
                    Just("kind".to_owned()),
                    Just("op".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..4,
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn no_body_gets_a_500_or_stores_anything_on_failure(
        path in prop::sample::select(PATHS),
        method in prop::sample::select(&[Method::POST, Method::PUT, Method::PATCH, Method::DELETE][..]),
        content_type in prop::sample::select(TYPES),
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            arb_json().prop_map(|v| v.to_string().into_bytes()),
            arb_json().prop_map(|v| json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "a" }, "data": v }).to_string().into_bytes()),
        ],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let (api, r) = server().await;
            // Objects for the item paths to act on, so updates and patches reach the patch engine.
            call(&r, Method::POST, "/api/v1/namespaces/default/configmaps", Some(json!({ "metadata": { "name": "a" }, "data": { "k": "v" } }))).await;
            call(&r, Method::POST, "/apis/apps/v1/namespaces/default/deployments", Some(json!({ "metadata": { "name": "d" },
                "spec": { "selector": { "matchLabels": { "a": "b" } }, "template": { "metadata": { "labels": { "a": "b" } },
                "spec": { "containers": [{ "name": "c", "image": "i" }] } } } }))).await;
            call(&r, Method::POST, "/api/v1/namespaces/default/pods", Some(json!({ "metadata": { "name": "p" },
                "spec": { "containers": [{ "name": "c", "image": "i" }] } }))).await;
            let before = api.store.current_revision().await.expect("rev");
            let req = Request::builder().method(method.clone()).uri(path).header("content-type", content_type)
                .body(Body::from(body.clone())).expect("request");
            let resp = tokio::time::timeout(T, r.oneshot(req)).await.expect("in time").expect("infallible");
            let code = resp.status().as_u16();
            prop_assert!(code < 500, "{method} {path} {content_type} {:?} -> {code}", String::from_utf8_lossy(&body));
            if code >= 400 {
                let after = api.store.current_revision().await.expect("rev");
                prop_assert_eq!(before, after, "a refused request wrote to the store");
                let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
                let status: Value = serde_json::from_slice(&bytes).expect("errors are Status objects");
                prop_assert_eq!(&status["kind"], "Status");
                prop_assert_eq!(status["code"].as_u64(), Some(u64::from(code)));
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn yaml_bodies_are_accepted_like_json() {
    let (_api, r) = server().await;
    let req = Request::builder()
        .method(Method::POST)
        .uri("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/yaml")
        .body(Body::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  k: v\n",
        ))
        .expect("request");
    let resp = tokio::time::timeout(T, r.oneshot(req))
        .await
        .expect("in time")
        .expect("infallible");
    assert_eq!(resp.status().as_u16(), 201);
}
