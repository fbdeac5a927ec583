//! kube-rs, the Rust client, against skiff unchanged: typed CRUD for every served kind, aggregated
//! discovery, and kube-runtime's watcher/reflector surviving a watch that is cut off and a store
//! that was compacted meanwhile (it re-lists and carries on).

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    coordination::v1::Lease,
    core::v1::{ConfigMap, Endpoints, Namespace, Node, Pod, Secret, Service, ServiceAccount},
    discovery::v1::EndpointSlice,
    events::v1::Event,
};
use kube::{
    Api, Client, Resource,
    api::{DeleteParams, ListParams, PostParams},
    discovery::Discovery,
    runtime::{WatchStreamExt, reflector, watcher},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_tests::InProcess;

const T: Duration = Duration::from_secs(30);

/// Create, get, list, replace and delete one object of kind `K` through its typed Api.
async fn crud<K>(client: &Client, body: serde_json::Value)
where
    K: Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + Serialize
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), "default");
    crud_with(api, body).await;
}

async fn crud_with<K>(api: Api<K>, body: serde_json::Value)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + Serialize + DeserializeOwned,
{
    let kind = K::kind(&());
    let obj: K = serde_json::from_value(body).unwrap_or_else(|e| panic!("{kind}: {e}"));
    let created = tokio::time::timeout(T, api.create(&PostParams::default(), &obj))
        .await
        .expect("in time")
        .unwrap_or_else(|e| panic!("create {kind}: {e}"));
    let name = created.meta().name.clone().expect("name");
    let got = api.get(&name).await.unwrap_or_else(|e| panic!("get {kind}: {e}"));
    assert_eq!(got.meta().uid, created.meta().uid, "{kind}");
    let listed = api
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list {kind}: {e}"));
    assert!(
        listed
            .items
            .iter()
            .any(|o| o.meta().name.as_deref() == Some(name.as_str())),
        "{kind} listed"
    );
    let mut changed = got.clone();
    changed
        .meta_mut()
        .labels
        .get_or_insert_default()
        .insert("touched".into(), "yes".into());
    let replaced = api
        .replace(&name, &PostParams::default(), &changed)
        .await
        .unwrap_or_else(|e| panic!("replace {kind}: {e}"));
    assert_eq!(
        replaced
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get("touched"))
            .map(String::as_str),
        Some("yes")
    );
    api.delete(&name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete {kind}: {e}"));
}

fn template() -> serde_json::Value {
    json!({ "metadata": { "labels": { "app": "x" } }, "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] } })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_crud_for_every_kind() {
    let server = InProcess::start(WatchCacheOptions::default())
        .await
        .expect("server");
    let c = &server.client;
    let sel = json!({ "matchLabels": { "app": "x" } });
    crud::<ConfigMap>(c, json!({ "metadata": { "name": "cm" }, "data": { "a": "b" } })).await;
    crud::<Secret>(
        c,
        json!({ "metadata": { "name": "s" }, "stringData": { "a": "b" }, "data": { "c": "ZA==" } }),
    )
    .await;
    crud::<ServiceAccount>(c, json!({ "metadata": { "name": "sa" } })).await;
    crud::<Pod>(
        c,
        json!({ "metadata": { "name": "p" }, "spec": template()["spec"] }),
    )
    .await;
    crud::<Service>(
        c,
        json!({ "metadata": { "name": "svc" }, "spec": { "ports": [{ "port": 80 }] } }),
    )
    .await;
    crud::<Endpoints>(c, json!({ "metadata": { "name": "ep" } })).await;
    crud::<Deployment>(
        c,
        json!({ "metadata": { "name": "d" }, "spec": { "selector": sel, "template": template() } }),
    )
    .await;
    crud::<ReplicaSet>(
        c,
        json!({ "metadata": { "name": "rs" }, "spec": { "selector": sel, "template": template() } }),
    )
    .await;
    crud::<StatefulSet>(c, json!({ "metadata": { "name": "ss" }, "spec": { "selector": sel, "serviceName": "x", "template": template() } })).await;
    crud::<DaemonSet>(
        c,
        json!({ "metadata": { "name": "ds" }, "spec": { "selector": sel, "template": template() } }),
    )
    .await;
    crud::<EndpointSlice>(
        c,
        json!({ "metadata": { "name": "es" }, "addressType": "IPv4", "endpoints": [] }),
    )
    .await;
    crud::<Lease>(
        c,
        json!({ "metadata": { "name": "l" }, "spec": { "holderIdentity": "me" } }),
    )
    .await;
    crud::<Event>(c, json!({ "metadata": { "name": "e" }, "eventTime": "2026-01-01T00:00:00.000000Z",
        "reportingController": "test", "reportingInstance": "t", "action": "Test", "reason": "Tested",
        "regarding": { "kind": "Pod", "name": "p", "namespace": "default" }, "note": "hello", "type": "Normal" })).await;
    crud_with(
        Api::<Namespace>::all(c.clone()),
        json!({ "metadata": { "name": "ns1" } }),
    )
    .await;
    crud_with(
        Api::<Node>::all(c.clone()),
        json!({ "metadata": { "name": "n1" } }),
    )
    .await;

    // An events.k8s.io Event is visible as a core Event too (kubectl describe reads those).
    let events: Api<Event> = Api::namespaced(c.clone(), "default");
    events.create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": "seen" },
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "test", "reportingInstance": "t",
        "action": "Test", "reason": "Tested", "regarding": { "kind": "Pod", "name": "p" }, "note": "hi", "type": "Normal" })).expect("event")).await.expect("create");
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), "default");
    let seen = core.get("seen").await.expect("core view");
    assert_eq!(
        (seen.message.as_deref(), seen.involved_object.name.as_deref()),
        (Some("hi"), Some("p"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_discovery_finds_every_group() {
    let server = InProcess::start(WatchCacheOptions::default())
        .await
        .expect("server");
    let discovery = tokio::time::timeout(T, Discovery::new(server.client.clone()).run_aggregated())
        .await
        .expect("in time")
        .expect("aggregated discovery");
    for group in [
        "",
        "apps",
        "discovery.k8s.io",
        "coordination.k8s.io",
        "events.k8s.io",
    ] {
        assert!(discovery.has_group(group), "group {group:?}");
    }
    let apps = discovery.get("apps").expect("apps");
    assert!(
        apps.recommended_resources()
            .iter()
            .any(|(r, _)| r.plural == "deployments")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_recovers_from_a_cut_watch_and_a_compacted_store() {
    // A tiny per-watcher queue: a client that stops reading is cut off, as a slow client would be.
    let opts = WatchCacheOptions {
        watcher_queue: 2,
        window: 4,
        ..Default::default()
    };
    let server = InProcess::start(opts).await.expect("server");
    let api: Api<ConfigMap> = Api::namespaced(server.client.clone(), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default())).applied_objects();
    let mut stream = stream.boxed();
    api.create(&PostParams::default(), &cm("first", 1))
        .await
        .expect("create");
    tokio::time::timeout(T, stream.next())
        .await
        .expect("first event in time");

    // While the watcher is not polled, many large writes: its queue overflows and it is cut off; then
    // the store forgets the history it would need to resume.
    for i in 0..40 {
        api.create(&PostParams::default(), &cm(&format!("bulk-{i}"), 64 * 1024))
            .await
            .expect("create");
    }
    let now = server.store.current_revision().await.expect("rev");
    server.store.compact(now).await.expect("compact");

    // It re-lists and carries on: the cache converges on all 41 objects and sees later changes.
    let deadline = tokio::time::Instant::now() + T;
    while reader.state().len() < 41 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector has {} of 41",
            reader.state().len()
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    }
    // The recovery really was a re-list: the watcher listed more than once.
    let metrics = server.api.metrics.render();
    let lists = metrics
        .lines()
        .find(|l| l.starts_with(r#"apiserver_request_total{verb="LIST",resource="configmaps",code="200"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        lists >= 2,
        "expected a re-list after the cut, saw {lists} lists:\n{metrics}"
    );
    api.create(&PostParams::default(), &cm("after", 1))
        .await
        .expect("create");
    while reader
        .get(&reflector::ObjectRef::new("after").within("default"))
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reflector never saw the write after recovery"
        );
        let _ = tokio::time::timeout(Duration::from_millis(200), stream.next()).await;
    }
}

fn cm(name: &str, size: usize) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "payload": "x".repeat(size) } }))
        .expect("configmap")
}
