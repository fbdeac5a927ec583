//! Helpers shared by the API tests: an in-process server on the memory store and a request helper.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    http::{Method, Request},
};
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_apiserver::{server::ApiServer, storage::memory::MemoryStore, watch_cache::WatchCacheOptions};
use tower::ServiceExt;

/// Every await in these tests is bounded by this.
pub const T: Duration = Duration::from_secs(5);

pub async fn server() -> (Arc<ApiServer>, Router) {
    let api = ApiServer::new(Arc::new(MemoryStore::new()), WatchCacheOptions::default());
    tokio::time::timeout(T, api.bootstrap(6443))
        .await
        .expect("in time")
        .expect("bootstrap");
    let router = api.router();
    (api, router)
}

pub async fn call(router: &Router, method: Method, uri: &str, body: Option<Value>) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .expect("request");
    let resp = tokio::time::timeout(T, router.clone().oneshot(req))
        .await
        .expect("in time")
        .expect("infallible");
    let code = resp.status().as_u16();
    let bytes = tokio::time::timeout(T, axum::body::to_bytes(resp.into_body(), usize::MAX))
        .await
        .expect("in time")
        .expect("body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

pub fn cm(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name }, "data": { "k": "v" } })
}

pub fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric")
}

pub async fn watch_lines(r: &Router, uri: &str, n: usize) -> Vec<Value> {
    let req = Request::builder().uri(uri).body(Body::empty()).expect("request");
    let resp = tokio::time::timeout(T, r.clone().oneshot(req))
        .await
        .expect("in time")
        .expect("infallible");
    assert_eq!(resp.status().as_u16(), 200);
    let mut body = resp.into_body().into_data_stream();
    let mut buf = Vec::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(T, body.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("chunk");
        buf.extend_from_slice(&chunk);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            events.push(serde_json::from_slice(&line).expect("one JSON event per line"));
        }
    }
    events
}
