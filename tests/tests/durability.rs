//! Durability: writes go on continuously while `skiff server` is SIGKILLed; after a restart every
//! acknowledged write is there and revisions never go backwards. On SQLite and on a real etcd.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams};
use skiff_apiserver::storage::etcd_process::EtcdProcess;
use skiff_tests::Server;

const T: Duration = Duration::from_secs(60);

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(
        serde_json::json!({ "metadata": { "name": name }, "data": { "payload": "x".repeat(512) } }),
    )
    .expect("configmap")
}

async fn acknowledged_writes_survive_sigkill(server: &mut Server) {
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.expect("client"), "default");
    let acked: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let (api, acked) = (api.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}");
                match api.create(&PostParams::default(), &cm(&name)).await {
                    Ok(created) => {
                        let rv = created
                            .metadata
                            .resource_version
                            .expect("rv")
                            .parse()
                            .expect("numeric rv");
                        acked.lock().expect("lock").push((name, rv));
                    }
                    // The server is gone: stop; what was acknowledged is what counts.
                    Err(_) => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill();
    for w in writers {
        tokio::time::timeout(T, w)
            .await
            .expect("writer stops once the server is gone")
            .expect("writer");
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 50,
        "the load ran ({} writes acknowledged)",
        acked.len()
    );
    let max_acked = acked.iter().map(|(_, rv)| *rv).max().expect("some writes");

    server.restart().await.expect("restart");
    let api: Api<ConfigMap> = Api::namespaced(server.client().await.expect("client"), "default");
    let list = tokio::time::timeout(T, api.list(&ListParams::default()))
        .await
        .expect("in time")
        .expect("list");
    let list_rv: i64 = list
        .metadata
        .resource_version
        .as_deref()
        .expect("list rv")
        .parse()
        .expect("numeric");
    assert!(
        list_rv >= max_acked,
        "revision went backwards: list at {list_rv}, acknowledged {max_acked}"
    );
    let stored: std::collections::HashMap<String, i64> = list
        .items
        .iter()
        .map(|c| {
            (
                c.metadata.name.clone().expect("name"),
                c.metadata
                    .resource_version
                    .as_deref()
                    .expect("rv")
                    .parse()
                    .expect("rv"),
            )
        })
        .collect();
    for (name, rv) in &acked {
        assert_eq!(
            stored.get(name),
            Some(rv),
            "acknowledged write {name} at {rv} lost"
        );
    }
    let next = tokio::time::timeout(T, api.create(&PostParams::default(), &cm("after-restart")))
        .await
        .expect("in time")
        .expect("create");
    let next_rv: i64 = next
        .metadata
        .resource_version
        .expect("rv")
        .parse()
        .expect("numeric");
    assert!(
        next_rv > list_rv,
        "new writes continue after {list_rv}, got {next_rv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_every_acknowledged_write_across_sigkill() {
    let mut server = Server::start(&[]).await.expect("start server");
    acknowledged_writes_survive_sigkill(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_keeps_every_acknowledged_write_across_sigkill() {
    let etcd = EtcdProcess::start()
        .await
        .expect("start etcd (Debian's etcd-server)");
    let endpoint = etcd.endpoint();
    let mut server = Server::start(&["--datastore-endpoint", &endpoint])
        .await
        .expect("start server");
    acknowledged_writes_survive_sigkill(&mut server).await;
    drop(server);
    drop(etcd);
}
