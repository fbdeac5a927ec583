//! The components as the binary runs them: `skiff server` runs the controllers (and scheduler) beside
//! its API server, `--disable-controller-manager` leaves them out, `skiff controller-manager` runs them
//! alone against a server, and SIGTERM stops everything cleanly.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
};
use serde_json::json;
use skiff_tests::{Server, skiff_bin};

const T: Duration = Duration::from_secs(10);

async fn create_replicaset(client: &Client, name: &str, replicas: i32) {
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } },
                  "template": { "metadata": { "labels": { "app": name } },
                                "spec": { "containers": [{ "name": "c", "image": "busybox" }] } } }
    }))
    .expect("a ReplicaSet");
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    tokio::time::timeout(T, api.create(&PostParams::default(), &rs))
        .await
        .expect("in time")
        .expect("created");
}

async fn pod_count(client: &Client, app: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("app={app}"));
    tokio::time::timeout(T, pods.list(&lp))
        .await
        .expect("in time")
        .expect("list")
        .items
        .len()
}

async fn wait_for_pods(client: &Client, app: &str, want: usize) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let n = pod_count(client, app).await;
        if n == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{app}: {n} pods, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process killed (by its PID) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_server_runs_the_controllers_and_stops_cleanly() {
    let mut server = Server::start(&["--disable-agent"]).await.expect("server");
    let client = server.client().await.expect("client");
    create_replicaset(&client, "web", 3).await;
    wait_for_pods(&client, "web", 3).await;
    let status = server.terminate().expect("exited");
    assert!(
        status.success(),
        "SIGTERM is a clean exit: {status}; log:\n{}",
        server.log()
    );
}

#[tokio::test]
async fn the_controller_manager_runs_alone() {
    let server = Server::start(&["--disable-agent", "--disable-controller-manager"])
        .await
        .expect("server");
    let client = server.client().await.expect("client");
    create_replicaset(&client, "alone", 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        pod_count(&client, "alone").await,
        0,
        "no controller runs in the server"
    );

    let log = std::fs::File::create(server.data_dir.path().join("cm.log")).expect("log file");
    let _cm = Process(
        Command::new(skiff_bin())
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff controller-manager"),
    );
    wait_for_pods(&client, "alone", 2).await;
}
