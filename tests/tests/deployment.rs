//! Deployments against the real API server with everything that makes them roll out running in
//! this process: the controller manager (Deployment, ReplicaSet, garbage collector…), the scheduler,
//! and three hollow nodes that report the pods bound to them Running and Ready.
//!
//! A 10-replica Deployment becomes Available; an image change rolls out without ever going below
//! replicas − maxUnavailable ready pods or above replicas + maxSurge pods; setting the template back
//! reuses the earlier ReplicaSet; pause holds a rollout and resume finishes it; Recreate never runs old
//! and new pods together; a deleted pod is replaced; deleting the Deployment removes what it owns.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::Pod,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_kubelet::hollow::{HollowOptions, run_hollow_nodes};
use skiff_tests::{Component, InProcess};

const T: Duration = Duration::from_secs(30);

struct Cluster {
    server: InProcess,
    _components: Vec<Component>,
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
        let c = server.client.clone();
        let (c1, c2, c3) = (c.clone(), c.clone(), c.clone());
        let components = vec![
            Component::spawn(move |down| {
                skiff_controllers::ControllerManager::new(c1, Default::default()).run(down)
            }),
            Component::spawn(move |down| skiff_scheduler::run(c2, down)),
            Component::spawn(move |down| async move {
                let options = HollowOptions {
                    count: 3,
                    ..Default::default()
                };
                run_hollow_nodes(c3, options, down).await.expect("hollow nodes");
            }),
        ];
        Self {
            server,
            _components: components,
        }
    }

    fn client(&self) -> Client {
        self.server.client.clone()
    }
}

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": name } }, "strategy": strategy,
                  "template": { "metadata": { "labels": { "app": name } },
                                "spec": { "containers": [{ "name": "c", "image": image }] } } }
    }))
    .expect("a Deployment")
}

async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + T;
    while !tokio::time::timeout(T, check()).await.expect("check in time") {
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {T:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether the Deployment has rolled out as `kubectl rollout status` decides it.
async fn rolled_out(api: &Api<Deployment>, name: &str) -> bool {
    let Ok(d) = api.get(name).await else { return false };
    let (Some(spec), Some(status)) = (d.spec, d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation >= d.metadata.generation
        && status.updated_replicas == Some(want)
        && status.replicas == Some(want)
        && status.available_replicas == Some(want)
}

/// (non-terminating pods, of which Ready) of an app.
async fn pod_counts(api: &Api<Pod>, app: &str) -> (usize, usize) {
    let Ok(list) = api
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
    else {
        return (0, 0);
    };
    let live: Vec<&Pod> = list
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let ready = live
        .iter()
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    (live.len(), ready)
}

async fn set_image(api: &Api<Deployment>, name: &str, image: &str) {
    let patch =
        json!({ "spec": { "template": { "spec": { "containers": [{ "name": "c", "image": image }] } } } });
    tokio::time::timeout(
        T,
        api.patch(name, &PatchParams::default(), &Patch::Strategic(patch)),
    )
    .await
    .expect("in time")
    .expect("patched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_rollback_pause_and_replacement() {
    let cluster = Cluster::start().await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "default");
    let replicasets: Api<ReplicaSet> = Api::namespaced(cluster.client(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let strategy =
        json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 2, "maxUnavailable": 1 } });
    tokio::time::timeout(
        T,
        deployments.create(
            &PostParams::default(),
            &deployment("web", 10, "busybox:1.36", strategy),
        ),
    )
    .await
    .expect("in time")
    .expect("created");
    wait_for("10 replicas available", || rolled_out(&deployments, "web")).await;
    let d = deployments.get("web").await.expect("deployment");
    let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
    let reason = |t: &str| {
        conditions
            .iter()
            .find(|c| c.type_ == t)
            .and_then(|c| c.reason.clone())
    };
    assert_eq!(reason("Available").as_deref(), Some("MinimumReplicasAvailable"));
    assert_eq!(reason("Progressing").as_deref(), Some("NewReplicaSetAvailable"));
    let first_rs = replicasets
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("rs")
        .items;
    assert_eq!(first_rs.len(), 1);
    let first_rs_name = first_rs[0].name_any();
    assert!(first_rs_name.starts_with("web-"));

    // The image changes: sample the pods throughout the rollout.
    let violated = Arc::new(AtomicBool::new(false));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pods, violated, sampling) = (pods.clone(), violated.clone(), sampling.clone());
        tokio::spawn(async move {
            let mut worst = (usize::MAX, 0usize);
            while sampling.load(Ordering::SeqCst) {
                let (live, ready) = pod_counts(&pods, "web").await;
                worst = (worst.0.min(ready), worst.1.max(live));
                if ready < 9 || live > 12 {
                    violated.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            worst
        })
    };
    set_image(&deployments, "web", "busybox:1.37").await;
    wait_for("the rollout to busybox:1.37", || async {
        rolled_out(&deployments, "web").await
            && deployments
                .get("web")
                .await
                .is_ok_and(|d| d.status.and_then(|s| s.observed_generation) == Some(2))
    })
    .await;
    sampling.store(false, Ordering::SeqCst);
    let worst = tokio::time::timeout(T, sampler)
        .await
        .expect("sampler in time")
        .expect("sampler");
    assert!(
        !violated.load(Ordering::SeqCst),
        "bounds broken: fewest ready {}, most pods {}",
        worst.0,
        worst.1
    );
    let rs = replicasets
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("rs")
        .items;
    assert_eq!(rs.len(), 2);
    let old = rs
        .iter()
        .find(|r| r.name_any() == first_rs_name)
        .expect("the first ReplicaSet stays as history");
    assert_eq!(old.spec.as_ref().and_then(|s| s.replicas), Some(0));
    // Each step of the rollout is its own event, as `kubectl describe deployment` lists them (a
    // recorder that folded them by reason kept only the first note).
    let new_rs_name = rs
        .iter()
        .map(|r| r.name_any())
        .find(|n| *n != first_rs_name)
        .expect("the new ReplicaSet");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(cluster.client(), "default");
    let (down, up) = (
        format!("Scaled down replica set {first_rs_name} from "),
        format!("Scaled up replica set {new_rs_name} from "),
    );
    wait_for("one event per scaling step", || async {
        let Ok(list) = events
            .list(&ListParams::default().fields("involvedObject.name=web,reason=ScalingReplicaSet"))
            .await
        else {
            return false;
        };
        let notes: std::collections::BTreeSet<&str> =
            list.items.iter().filter_map(|e| e.message.as_deref()).collect();
        notes.iter().filter(|n| n.starts_with(&up)).count() >= 2
            && notes.iter().any(|n| n.starts_with(&down) && n.ends_with(" to 0"))
            && notes.iter().any(|n| n.starts_with(&up) && n.ends_with(" to 10"))
    })
    .await;

    // Back to the first template: the first ReplicaSet is reused, as revision 3.
    set_image(&deployments, "web", "busybox:1.36").await;
    wait_for("the rollback", || async {
        rolled_out(&deployments, "web").await
            && replicasets
                .get(&first_rs_name)
                .await
                .is_ok_and(|rs| rs.spec.and_then(|s| s.replicas) == Some(10))
    })
    .await;
    let reused = replicasets.get(&first_rs_name).await.expect("rs");
    assert_eq!(
        reused
            .annotations()
            .get("deployment.kubernetes.io/revision")
            .map(String::as_str),
        Some("3")
    );
    assert_eq!(
        reused
            .annotations()
            .get("deployment.kubernetes.io/revision-history")
            .map(String::as_str),
        Some("1")
    );

    // Paused: a template change waits for resume.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "paused": true } })),
        )
        .await
        .expect("pause");
    set_image(&deployments, "web", "busybox:1.38").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        replicasets
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("rs")
            .items
            .len(),
        2,
        "no new ReplicaSet while paused"
    );
    let progressing = deployments
        .get("web")
        .await
        .expect("d")
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert!(
        progressing
            .iter()
            .any(|c| c.type_ == "Progressing" && c.reason.as_deref() == Some("DeploymentPaused"))
    );
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "paused": false } })),
        )
        .await
        .expect("resume");
    wait_for("the resumed rollout", || async {
        rolled_out(&deployments, "web").await
            && replicasets
                .list(&ListParams::default().labels("app=web"))
                .await
                .is_ok_and(|l| l.items.len() == 3)
    })
    .await;

    // A deleted pod is replaced.
    let victim = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("pods")
        .items[0]
        .name_any();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("a replacement", || async {
        pod_counts(&pods, "web").await == (10, 10) && pods.get_opt(&victim).await.is_ok_and(|p| p.is_none())
    })
    .await;

    // Scaling mid-rollout: up to 20 while a rollout runs ends with 20 updated.
    set_image(&deployments, "web", "busybox:1.39").await;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 20 } })),
        )
        .await
        .expect("scaled");
    wait_for("20 updated replicas", || async {
        rolled_out(&deployments, "web").await
            && deployments
                .get("web")
                .await
                .is_ok_and(|d| d.status.and_then(|s| s.updated_replicas) == Some(20))
    })
    .await;
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": { "replicas": 4 } })),
        )
        .await
        .expect("scaled");
    wait_for("4 replicas", || async {
        rolled_out(&deployments, "web").await && pod_counts(&pods, "web").await == (4, 4)
    })
    .await;

    // Deleting the Deployment (foreground) takes its ReplicaSets and pods with it.
    deployments
        .delete("web", &DeleteParams::foreground())
        .await
        .expect("deleted");
    wait_for("everything gone", || async {
        deployments.get_opt("web").await.is_ok_and(|d| d.is_none())
            && replicasets
                .list(&ListParams::default().labels("app=web"))
                .await
                .is_ok_and(|l| l.items.is_empty())
            && pod_counts(&pods, "web").await.0 == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_overlaps_old_and_new_pods() {
    let cluster = Cluster::start().await;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client(), "default");
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    tokio::time::timeout(
        T,
        deployments.create(
            &PostParams::default(),
            &deployment("rec", 3, "busybox:1.36", json!({ "type": "Recreate" })),
        ),
    )
    .await
    .expect("in time")
    .expect("created");
    wait_for("3 replicas", || rolled_out(&deployments, "rec")).await;
    let mixed = Arc::new(AtomicBool::new(false));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (pods, mixed, sampling) = (pods.clone(), mixed.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::SeqCst) {
                if let Ok(list) = pods.list(&ListParams::default().labels("app=rec")).await {
                    let images: std::collections::HashSet<String> = list
                        .items
                        .iter()
                        .filter_map(|p| p.spec.as_ref().and_then(|s| s.containers[0].image.clone()))
                        .collect();
                    if images.len() > 1 {
                        mixed.store(true, Ordering::SeqCst);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    set_image(&deployments, "rec", "busybox:1.37").await;
    wait_for("the recreate", || async {
        rolled_out(&deployments, "rec").await
            && deployments
                .get("rec")
                .await
                .is_ok_and(|d| d.status.and_then(|s| s.observed_generation) == Some(2))
    })
    .await;
    sampling.store(false, Ordering::SeqCst);
    tokio::time::timeout(T, sampler)
        .await
        .expect("in time")
        .expect("sampler");
    assert!(!mixed.load(Ordering::SeqCst), "old and new pods existed together");
}

/// A group of hollow nodes stops heartbeating: node lifecycle (with a short grace period) marks them
/// Ready=Unknown and taints them unreachable, their pods (tolerating that for 1 s) are evicted, and
/// the ReplicaSet replaces them on the nodes still alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_move_off_nodes_that_stop_heartbeating() {
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server");
    let c = server.client.clone();
    let options = skiff_controllers::Options {
        nodelifecycle: skiff_controllers::nodelifecycle::Options {
            node_monitor_grace_period: Duration::from_secs(2),
            node_monitor_period: Duration::from_millis(500),
            ..Default::default()
        },
        ..Default::default()
    };
    let hollow = |prefix: &str| {
        let (c, prefix) = (c.clone(), prefix.to_owned());
        Component::spawn(move |down| async move {
            let options = HollowOptions {
                count: 2,
                prefix,
                lease_interval: Duration::from_millis(300),
                ..Default::default()
            };
            run_hollow_nodes(c, options, down).await.expect("hollow nodes");
        })
    };
    let (c1, c2) = (c.clone(), c.clone());
    let _components = [
        Component::spawn(move |down| skiff_controllers::ControllerManager::new(c1, options).run(down)),
        Component::spawn(move |down| skiff_scheduler::run(c2, down)),
    ];
    let doomed = hollow("doomed");
    let _alive = hollow("alive");
    let deployments: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let mut d = deployment("mover", 8, "busybox:1.36", json!({ "type": "RollingUpdate" }));
    // Tolerate an unreachable node for 1 s instead of the default 300 s.
    d.spec.as_mut().unwrap().template.spec.as_mut().unwrap().tolerations = Some(vec![serde_json::from_value(json!({
        "key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1
    }))
    .unwrap()]);
    tokio::time::timeout(T, deployments.create(&PostParams::default(), &d))
        .await
        .expect("in time")
        .expect("created");
    wait_for("8 replicas", || rolled_out(&deployments, "mover")).await;
    let on_doomed = |list: &[Pod]| {
        list.iter()
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| n.starts_with("doomed-"))
            })
            .count()
    };
    let before = pods
        .list(&ListParams::default().labels("app=mover"))
        .await
        .expect("pods")
        .items;
    assert!(on_doomed(&before) > 0, "the spread put pods on both groups");

    doomed.stop().await;
    wait_for("every pod on a live node, all ready", || async {
        let Ok(list) = pods.list(&ListParams::default().labels("app=mover")).await else {
            return false;
        };
        let live: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        on_doomed(&live) == 0 && pod_counts(&pods, "mover").await == (8, 8)
    })
    .await;
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(c.clone());
    let node = nodes.get("doomed-0").await.expect("node");
    let ready = node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "Unknown");
    let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
    assert!(
        taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/unreachable" && t.effect == "NoExecute"),
        "{taints:?}"
    );
}
