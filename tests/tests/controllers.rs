//! The controllers against the real API server (in process) through kube-rs, as they run in
//! `skiff server`: a ReplicaSet gets its pods, keeps them, scales down the least useful first,
//! adopts orphans, releases strays, and reports its status.
//!
//! No kubelet runs here, so pods stay Pending; tests that need Ready pods write pod status through
//! `/status` by hand, as a kubelet would.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use k8s_openapi::api::{apps::v1::ReplicaSet, core::v1::Pod, events::v1::Event};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_tests::{InProcess, eventually};

/// The bound on any single API call.
const T: Duration = Duration::from_secs(10);

/// An API server with the ReplicaSet controller running against it; both stop when dropped.
struct Cluster {
    server: InProcess,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    controller: tokio::task::JoinHandle<()>,
}

impl Cluster {
    async fn start() -> Self {
        let server = tokio::time::timeout(
            Duration::from_secs(60),
            InProcess::start(WatchCacheOptions::default()),
        )
        .await
        .expect("server in time")
        .expect("server");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let controller = tokio::spawn(skiff_controllers::run_replicaset(
            server.client.clone(),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            server,
            stop: Some(stop),
            controller,
        }
    }

    fn client(&self) -> Client {
        self.server.client.clone()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), "default")
    }

    fn replicasets(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.client(), "default")
    }

    /// Stops the controller and waits (bounded) for it to wind down.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = &mut self.controller;
        tokio::time::timeout(T, handle)
            .await
            .expect("controller stops in time")
            .expect("controller task");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

/// Bounds one API call.
async fn t<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("API call in time")
}

fn replicaset(name: &str, app: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": app } },
            "template": {
                "metadata": { "labels": { "app": app } },
                "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] }
            }
        }
    }))
    .expect("replicaset")
}

/// The active pods (not terminating) labelled `app`.
async fn active_pods(api: &Api<Pod>, app: &str) -> Vec<Pod> {
    let list = t(api.list(&ListParams::default().labels(&format!("app={app}"))))
        .await
        .expect("list pods");
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// The UID of `pod`'s controller, if any.
fn controller_uid(pod: &Pod) -> Option<String> {
    pod.owner_references()
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// Waits until exactly `n` active pods labelled `app` are controlled by `rs_uid`; returns them.
async fn owned_pods(api: &Api<Pod>, app: &str, rs_uid: &str, n: usize, within: Duration) -> Vec<Pod> {
    eventually(
        &format!("{n} pods of app={app} owned by the ReplicaSet"),
        within,
        || async {
            let pods = active_pods(api, app).await;
            let owned = pods
                .iter()
                .filter(|p| controller_uid(p).as_deref() == Some(rs_uid))
                .count();
            (pods.len() == n && owned == n).then_some(pods)
        },
    )
    .await
}

/// Waits until the ReplicaSet reports `replicas` (and `ready`) for its current generation.
async fn status_settles(api: &Api<ReplicaSet>, name: &str, replicas: i32, ready: i32) -> ReplicaSet {
    eventually(
        &format!("status of {name}: {replicas} replicas, {ready} ready"),
        Duration::from_secs(10),
        || async {
            let rs = t(api.get(name)).await.ok()?;
            let status = rs.status.clone()?;
            (status.replicas == replicas
                && status.ready_replicas.unwrap_or(0) == ready
                && status.observed_generation == rs.metadata.generation)
                .then_some(rs)
        },
    )
    .await
}

/// Writes a pod's status as a kubelet would: Running, and Ready or not.
async fn set_running(api: &Api<Pod>, name: &str, ready: bool) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = if ready { "True" } else { "False" };
    let patch = json!({ "status": { "phase": "Running", "conditions": [
        { "type": "Ready", "status": status, "lastTransitionTime": now }
    ] } });
    t(api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)))
        .await
        .expect("pod status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_creates_replaces_and_scales_down_its_pods() {
    let cluster = Cluster::start().await;
    let (pods, replicasets) = (cluster.pods(), cluster.replicasets());

    // Create → three pods owned by the ReplicaSet, named after it.
    let rs = t(replicasets.create(&PostParams::default(), &replicaset("web", "web", 3)))
        .await
        .expect("create rs");
    let uid = rs.uid().expect("uid");
    let first = owned_pods(&pods, "web", &uid, 3, Duration::from_secs(10)).await;
    for pod in &first {
        assert!(pod.name_any().starts_with("web-"), "{}", pod.name_any());
        let owner = &pod.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.block_owner_deletion
            ),
            ("ReplicaSet", "web", Some(true))
        );
    }
    let rs = status_settles(&replicasets, "web", 3, 0).await;
    let status = rs.status.expect("status");
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.available_replicas, Some(0));

    // Delete one → replaced within a couple of seconds.
    let victim = first[0].name_any();
    let deleted_at = Instant::now();
    t(pods.delete(&victim, &DeleteParams::default()))
        .await
        .expect("delete pod");
    let replaced = owned_pods(&pods, "web", &uid, 3, Duration::from_secs(2)).await;
    assert!(
        replaced.iter().all(|p| p.name_any() != victim),
        "the deleted pod is gone"
    );
    eprintln!("pod replaced in {:?}", deleted_at.elapsed());

    // One pod Running and Ready, one Running but not ready, one left Pending.
    let names: Vec<String> = replaced.iter().map(ResourceExt::name_any).collect();
    set_running(&pods, &names[0], true).await;
    set_running(&pods, &names[1], false).await;
    status_settles(&replicasets, "web", 3, 1).await;

    // Scale to 1 → the pending and the unready pod go, the ready one stays.
    let scale = json!({ "spec": { "replicas": 1 } });
    t(replicasets.patch("web", &PatchParams::default(), &Patch::Merge(scale)))
        .await
        .expect("scale");
    let left = owned_pods(&pods, "web", &uid, 1, Duration::from_secs(10)).await;
    assert_eq!(
        left[0].name_any(),
        names[0],
        "the ready pod survives the scale-down"
    );
    let rs = status_settles(&replicasets, "web", 1, 1).await;
    assert!(
        rs.metadata.generation > Some(1),
        "scaling bumped the generation, and it was observed"
    );

    // The story is told in events on the ReplicaSet.
    let events: Api<Event> = Api::namespaced(cluster.client(), "default");
    eventually(
        "SuccessfulCreate and SuccessfulDelete events",
        Duration::from_secs(10),
        || async {
            let list = t(events.list(&ListParams::default())).await.ok()?;
            let reasons: Vec<&str> = list
                .items
                .iter()
                .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web"))
                .filter_map(|e| e.reason.as_deref())
                .collect();
            (reasons.contains(&"SuccessfulCreate") && reasons.contains(&"SuccessfulDelete")).then_some(())
        },
    )
    .await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_never_creates_more_than_it_needs() {
    // Thirty creates go out in slow-start batches (1, 2, 4, 8, 15) while every new pod's watch
    // event triggers another sync: expectations keep those syncs from creating from a stale cache.
    let cluster = Cluster::start().await;
    let (pods, replicasets) = (cluster.pods(), cluster.replicasets());
    let rs = t(replicasets.create(&PostParams::default(), &replicaset("wide", "wide", 30)))
        .await
        .expect("create");
    owned_pods(
        &pods,
        "wide",
        &rs.uid().expect("uid"),
        30,
        Duration::from_secs(20),
    )
    .await;
    status_settles(&replicasets, "wide", 30, 0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = t(pods.list(&ListParams::default().labels("app=wide")))
        .await
        .expect("list");
    assert_eq!(
        all.items.len(),
        30,
        "no pod was created (and deleted again) beyond the 30 asked for"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicaset_adopts_orphans_and_releases_strays() {
    let cluster = Cluster::start().await;
    let (pods, replicasets) = (cluster.pods(), cluster.replicasets());

    // An orphan that matches the selector is adopted, and counts towards the replicas.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": { "name": "orphan", "labels": { "app": "api" } },
        "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] }
    }))
    .expect("pod");
    t(pods.create(&PostParams::default(), &orphan))
        .await
        .expect("create orphan");
    let rs = t(replicasets.create(&PostParams::default(), &replicaset("api", "api", 2)))
        .await
        .expect("create rs");
    let uid = rs.uid().expect("uid");
    let owned = owned_pods(&pods, "api", &uid, 2, Duration::from_secs(10)).await;
    assert!(
        owned.iter().any(|p| p.name_any() == "orphan"),
        "the orphan was adopted"
    );
    status_settles(&replicasets, "api", 2, 0).await;

    // A pod relabelled out of the selector is released (its owner reference removed) and replaced.
    let relabel = json!({ "metadata": { "labels": { "app": "debug" } } });
    t(pods.patch("orphan", &PatchParams::default(), &Patch::Merge(relabel)))
        .await
        .expect("relabel");
    eventually("the relabelled pod released", Duration::from_secs(10), || async {
        let pod = t(pods.get("orphan")).await.ok()?;
        controller_uid(&pod).is_none().then_some(())
    })
    .await;
    owned_pods(&pods, "api", &uid, 2, Duration::from_secs(10)).await;
    status_settles(&replicasets, "api", 2, 0).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_replicas_honour_min_ready_seconds() {
    let cluster = Cluster::start().await;
    let (pods, replicasets) = (cluster.pods(), cluster.replicasets());
    let mut rs = replicaset("slow", "slow", 1);
    rs.spec.as_mut().expect("spec").min_ready_seconds = Some(2);
    let rs = t(replicasets.create(&PostParams::default(), &rs))
        .await
        .expect("create rs");
    let pod = owned_pods(&pods, "slow", &rs.uid().expect("uid"), 1, Duration::from_secs(10))
        .await
        .remove(0);

    set_running(&pods, &pod.name_any(), true).await;
    let ready = status_settles(&replicasets, "slow", 1, 1).await;
    assert_eq!(
        ready.status.and_then(|s| s.available_replicas),
        Some(0),
        "ready, but not for 2 s yet"
    );
    // Nothing changes in the API after that: the controller looks again by itself.
    eventually(
        "the pod to count as available",
        Duration::from_secs(10),
        || async {
            let rs = t(replicasets.get("slow")).await.ok()?;
            (rs.status?.available_replicas == Some(1)).then_some(())
        },
    )
    .await;
    cluster.shutdown().await;
}
