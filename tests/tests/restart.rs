//! Restart: objects and revisions survive a restart of `skiff server` on both backends, and a client
//! watch that reconnects with its last resourceVersion continues without losing an event, even one
//! written while it was not reading.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use skiff_apiserver::storage::etcd_process::EtcdProcess;
use skiff_tests::Server;

const T: Duration = Duration::from_secs(30);

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(serde_json::json!({ "metadata": { "name": name }, "data": { "k": name } }))
        .expect("configmap")
}

fn rv_of(c: &ConfigMap) -> String {
    c.metadata.resource_version.clone().expect("resourceVersion")
}

/// Reads the next ADDED event's object name from a watch.
async fn next_added(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> ConfigMap {
    loop {
        match tokio::time::timeout(T, stream.try_next())
            .await
            .expect("event in time")
            .expect("watch ok")
        {
            Some(WatchEvent::Added(c)) => return c,
            Some(WatchEvent::Bookmark(_)) => continue,
            other => panic!("unexpected watch item {other:?}"),
        }
    }
}

async fn survives_restart(server: &mut Server) {
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.expect("client"), "default");
    let a = api
        .create(&PostParams::default(), &cm("a"))
        .await
        .expect("create a");
    let mut w = api
        .watch(&WatchParams::default(), &rv_of(&a))
        .await
        .expect("watch")
        .boxed();
    let b = api
        .create(&PostParams::default(), &cm("b"))
        .await
        .expect("create b");
    let seen = next_added(&mut w).await;
    assert_eq!(seen.metadata.name.as_deref(), Some("b"));
    let last_seen = rv_of(&seen);
    // Written after the client's last event, just before the crash: it must not be lost.
    api.create(&PostParams::default(), &cm("unseen"))
        .await
        .expect("create unseen");
    drop(w);

    server.restart().await.expect("restart");
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.expect("client"), "default");
    let got_a = api.get("a").await.expect("a survives");
    assert_eq!(
        (rv_of(&got_a), got_a.data),
        (rv_of(&a), a.data.clone()),
        "object and its revision unchanged"
    );
    assert_eq!(rv_of(&api.get("b").await.expect("b survives")), rv_of(&b));

    let mut w = api
        .watch(&WatchParams::default(), &last_seen)
        .await
        .expect("watch resumes")
        .boxed();
    api.create(&PostParams::default(), &cm("c"))
        .await
        .expect("create c");
    let names: Vec<String> = vec![next_added(&mut w).await, next_added(&mut w).await]
        .into_iter()
        .map(|c| c.metadata.name.expect("name"))
        .collect();
    assert_eq!(
        names,
        ["unseen", "c"],
        "resumed watch continues without loss or duplicate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_keeps_objects_and_resumes_watches() {
    let mut server = Server::start(&[]).await.expect("start server");
    survives_restart(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_keeps_objects_and_resumes_watches() {
    let etcd = EtcdProcess::start()
        .await
        .expect("start etcd (Debian's etcd-server)");
    let endpoint = etcd.endpoint();
    let mut server = Server::start(&["--datastore-endpoint", &endpoint])
        .await
        .expect("start server");
    survives_restart(&mut server).await;
    drop(server);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly() {
    let mut server = Server::start(&[]).await.expect("start server");
    let status = server.terminate().expect("was running");
    assert!(
        status.success(),
        "clean exit on SIGTERM, got {status}; log:\n{}",
        server.log()
    );
}
