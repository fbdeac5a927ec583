//! The garbage collector and the namespace controller against the real API server (in process),
//! as they run in `skiff server`: background, foreground and orphan deletion of a ReplicaSet's pods,
//! owners that never existed or live in another namespace, chains of owners (collected in the
//! background, or cascading in the foreground), dangling references beside a live owner, and a
//! namespace emptied and removed once the last finalizer of its content is gone.
//!
//! No kubelet runs: pods are never bound, so the API server deletes them at once.

use std::{future::Future, time::Duration};

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{ConfigMap, Namespace, Pod, Service},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_tests::{Component, InProcess, eventually};

/// The bound on any single API call.
const T: Duration = Duration::from_secs(10);
/// The bound on the collector reaching a state.
const WITHIN: Duration = Duration::from_secs(20);
/// A finalizer of the tests' own, holding an object in the API server until a test removes it.
const HOLD: &str = "skiff.test/hold";

/// An API server with the garbage collector (and the chosen controllers) running against it; all
/// stop when dropped.
struct Cluster {
    server: InProcess,
    _components: Vec<Component>,
}

impl Cluster {
    async fn start(replicaset: bool, namespace: bool) -> Self {
        let server = tokio::time::timeout(
            Duration::from_secs(60),
            InProcess::start(WatchCacheOptions::default()),
        )
        .await
        .expect("server in time")
        .expect("server");
        let client = server.client.clone();
        let mut components = vec![Component::spawn({
            let client = client.clone();
            move |shutdown| skiff_controllers::garbagecollector::run(client, shutdown)
        })];
        if replicaset {
            let client = client.clone();
            components.push(Component::spawn(move |shutdown| {
                skiff_controllers::run_replicaset(client, shutdown)
            }));
        }
        if namespace {
            components.push(Component::spawn(move |shutdown| {
                skiff_controllers::namespace::run(client, shutdown)
            }));
        }
        Self {
            server,
            _components: components,
        }
    }

    fn client(&self) -> Client {
        self.server.client.clone()
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client(), "default")
    }
}

/// Bounds one API call.
async fn t<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("API call in time")
}

fn replicaset(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] }
            }
        }
    }))
    .expect("replicaset")
}

fn pod(name: &str, owners: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "name": name, "ownerReferences": owners },
        "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] }
    }))
    .expect("pod")
}

fn configmap(name: &str, owners: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": { "name": name, "ownerReferences": owners },
        "data": { "k": "v" }
    }))
    .expect("configmap")
}

/// An ownerReference to `cm`.
fn owned_by_configmap(cm: &ConfigMap) -> serde_json::Value {
    json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": cm.name_any(), "uid": cm.uid().expect("uid") }])
}

/// Creates a ReplicaSet and waits for its `replicas` pods; returns it and the pods' names.
async fn replicaset_with_pods(cluster: &Cluster, name: &str, replicas: i32) -> (ReplicaSet, Vec<String>) {
    let rs = t(cluster
        .api::<ReplicaSet>()
        .create(&PostParams::default(), &replicaset(name, replicas)))
    .await
    .expect("create replicaset");
    let uid = rs.uid().expect("uid");
    let pods = cluster.api::<Pod>();
    let names = eventually(&format!("{replicas} pods of {name}"), WITHIN, || async {
        let list = t(pods.list(&ListParams::default().labels(&format!("app={name}"))))
            .await
            .ok()?;
        let owned: Vec<String> = list
            .items
            .iter()
            .filter(|p| p.owner_references().iter().any(|r| r.uid == uid))
            .map(|p| p.name_any())
            .collect();
        (owned.len() == replicas as usize).then_some(owned)
    })
    .await;
    (rs, names)
}

/// The names of the pods labelled `app=name`.
async fn pod_names(pods: &Api<Pod>, app: &str) -> Vec<String> {
    t(pods.list(&ListParams::default().labels(&format!("app={app}"))))
        .await
        .expect("list pods")
        .items
        .iter()
        .map(|p| p.name_any())
        .collect()
}

async fn gone<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    matches!(t(api.get_opt(name)).await, Ok(None))
}

/// Deletes `name` with `params`. A delete that only marks the object (Foreground, Orphan) is a
/// write guarded by what the API server read, so a concurrent write (the ReplicaSet controller's
/// status) can make it answer 409; as for any conflicting write, the client tries again.
async fn delete<K>(api: &Api<K>, name: &str, params: &DeleteParams)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    for _ in 0..5 {
        match t(api.delete(name, params)).await {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("delete {name}: {e}"),
        }
    }
    panic!("delete {name}: conflicts every time");
}

async fn set_finalizers<K>(api: &Api<K>, name: &str, finalizers: &[&str])
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    t(api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": finalizers } })),
    ))
    .await
    .expect("set finalizers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_replicaset_removes_its_pods_in_the_background() {
    let cluster = Cluster::start(true, false).await;
    let (rs, _) = replicaset_with_pods(&cluster, "web", 2).await;
    let (pods, replicasets) = (cluster.api::<Pod>(), cluster.api::<ReplicaSet>());

    delete(&replicasets, &rs.name_any(), &DeleteParams::background()).await;
    // Background: the owner goes at once, its pods after it.
    assert!(gone(&replicasets, "web").await);
    eventually("the pods collected", WITHIN, || async {
        pod_names(&pods, "web").await.is_empty().then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_keeps_the_owner_until_its_pods_are_gone() {
    let cluster = Cluster::start(true, false).await;
    let (rs, names) = replicaset_with_pods(&cluster, "fg", 2).await;
    let (pods, replicasets) = (cluster.api::<Pod>(), cluster.api::<ReplicaSet>());
    // One pod is held by a finalizer, so the ReplicaSet must wait for it.
    let held = names[0].clone();
    set_finalizers(&pods, &held, &[HOLD]).await;

    delete(&replicasets, &rs.name_any(), &DeleteParams::foreground()).await;
    // The free pod goes; the held one is deleted (deletionTimestamp) but stays.
    eventually(
        "the unheld pod collected and the held one deleted",
        WITHIN,
        || async {
            let list = t(pods.list(&ListParams::default().labels("app=fg"))).await.ok()?;
            (list.items.len() == 1
                && list.items[0].name_any() == held
                && list.items[0].metadata.deletion_timestamp.is_some())
            .then_some(())
        },
    )
    .await;
    // Meanwhile the owner waits, being deleted, with its foregroundDeletion finalizer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = t(replicasets.get("fg")).await.expect("owner still there");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(waiting.finalizers(), ["foregroundDeletion"]);

    // The last pod goes, then the owner.
    set_finalizers(&pods, &held, &[]).await;
    eventually("the owner removed after its pods", WITHIN, || async {
        (gone(&replicasets, "fg").await && pod_names(&pods, "fg").await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphan_deletion_leaves_the_pods_without_their_owner_reference() {
    let cluster = Cluster::start(true, false).await;
    let (rs, names) = replicaset_with_pods(&cluster, "orphans", 2).await;
    let (pods, replicasets) = (cluster.api::<Pod>(), cluster.api::<ReplicaSet>());

    let orphan = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Orphan),
        ..DeleteParams::default()
    };
    delete(&replicasets, &rs.name_any(), &orphan).await;
    eventually("the owner removed", WITHIN, || async {
        gone(&replicasets, "orphans").await.then_some(())
    })
    .await;
    // The pods survive, no longer owned.
    let mut left = pod_names(&pods, "orphans").await;
    left.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(left, want);
    for name in &names {
        let pod = t(pods.get(name)).await.expect("pod");
        assert!(
            pod.owner_references().is_empty(),
            "{name} still owned: {:?}",
            pod.owner_references()
        );
        assert!(pod.metadata.deletion_timestamp.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_owner_never_existed_is_collected() {
    let cluster = Cluster::start(false, false).await;
    let (pods, configmaps) = (cluster.api::<Pod>(), cluster.api::<ConfigMap>());
    let owner = t(configmaps.create(&PostParams::default(), &configmap("owner", json!(null))))
        .await
        .expect("owner");
    // A pod owned by a ConfigMap that exists stays; one owned by a UID that never existed goes.
    t(pods.create(&PostParams::default(), &pod("kept", owned_by_configmap(&owner))))
        .await
        .expect("kept pod");
    let ghost = json!([{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ghost",
                         "uid": "6d1c3a52-0000-4000-8000-000000000000", "controller": true }]);
    t(pods.create(&PostParams::default(), &pod("orphaned", ghost)))
        .await
        .expect("orphaned pod");

    eventually("the pod with a missing owner collected", WITHIN, || async {
        gone(&pods, "orphaned").await.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !gone(&pods, "kept").await,
        "a pod with a live owner was collected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_to_an_owner_in_another_namespace_is_reported_and_collected() {
    let cluster = Cluster::start(false, false).await;
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    t(namespaces.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "elsewhere" } })).expect("ns"),
    ))
    .await
    .expect("create namespace");
    let owner = t(Api::<ConfigMap>::namespaced(client.clone(), "elsewhere")
        .create(&PostParams::default(), &configmap("owner", json!(null))))
    .await
    .expect("owner");
    // Owners live in their dependents' namespace: this reference can never be satisfied.
    let pods = cluster.api::<Pod>();
    t(pods.create(&PostParams::default(), &pod("misled", owned_by_configmap(&owner))))
        .await
        .expect("pod");
    eventually("the pod collected", WITHIN, || async {
        gone(&pods, "misled").await.then_some(())
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = cluster.api();
    let event = eventually("the OwnerRefInvalidNamespace warning", WITHIN, || async {
        t(events.list(&ListParams::default()))
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("OwnerRefInvalidNamespace")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("misled")
            })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert_eq!(
        event.note.as_deref(),
        Some(
            format!(
                "ownerRef [v1/ConfigMap, namespace: default, name: owner, uid: {}] does not exist in namespace \"default\"",
                owner.uid().expect("uid")
            )
            .as_str()
        )
    );
    // The owner itself is untouched.
    assert!(
        !gone(
            &Api::<ConfigMap>::namespaced(client.clone(), "elsewhere"),
            "owner"
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_configmaps_is_collected() {
    let cluster = Cluster::start(false, false).await;
    let configmaps = cluster.api::<ConfigMap>();
    let a = t(configmaps.create(&PostParams::default(), &configmap("a", json!(null))))
        .await
        .expect("a");
    let b = t(configmaps.create(&PostParams::default(), &configmap("b", owned_by_configmap(&a))))
        .await
        .expect("b");
    t(configmaps.create(&PostParams::default(), &configmap("c", owned_by_configmap(&b))))
        .await
        .expect("c");
    // Nothing is collected while the root lives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["a", "b", "c"] {
        assert!(!gone(&configmaps, name).await, "{name} collected too early");
    }

    t(configmaps.delete("a", &DeleteParams::background()))
        .await
        .expect("delete a");
    eventually("b and c collected", WITHIN, || async {
        (gone(&configmaps, "b").await && gone(&configmaps, "c").await).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreground_deletion_cascades_down_a_chain_of_blocking_owners() {
    let cluster = Cluster::start(false, false).await;
    let configmaps = cluster.api::<ConfigMap>();
    let blocking = |cm: &ConfigMap| {
        json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": cm.name_any(), "uid": cm.uid(),
                 "blockOwnerDeletion": true }])
    };
    let top = t(configmaps.create(&PostParams::default(), &configmap("top", json!(null))))
        .await
        .expect("top");
    let middle = t(configmaps.create(&PostParams::default(), &configmap("middle", blocking(&top))))
        .await
        .expect("middle");
    let mut bottom = configmap("bottom", blocking(&middle));
    bottom.metadata.finalizers = Some(vec![HOLD.to_owned()]);
    t(configmaps.create(&PostParams::default(), &bottom))
        .await
        .expect("bottom");

    delete(&configmaps, "top", &DeleteParams::foreground()).await;
    // The middle owner has a blocking dependent of its own: it is deleted in the foreground too,
    // and the held bottom object keeps both waiting.
    eventually("the chain waiting on the held object", WITHIN, || async {
        let middle = t(configmaps.get("middle")).await.ok()?;
        let bottom = t(configmaps.get("bottom")).await.ok()?;
        (middle.metadata.deletion_timestamp.is_some()
            && middle.finalizers() == ["foregroundDeletion"]
            && bottom.metadata.deletion_timestamp.is_some())
        .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let top = t(configmaps.get("top")).await.expect("top still there");
    assert!(top.metadata.deletion_timestamp.is_some());
    assert_eq!(top.finalizers(), ["foregroundDeletion"]);

    set_finalizers(&configmaps, "bottom", &[]).await;
    eventually("the whole chain removed", WITHIN, || async {
        let list = t(configmaps.list(&ListParams::default())).await.ok()?;
        let left: Vec<String> = list.items.iter().map(|c| c.name_any()).collect();
        (!["top", "middle", "bottom"]
            .iter()
            .any(|n| left.iter().any(|l| l == n)))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dangling_references_are_removed_when_another_owner_lives() {
    let cluster = Cluster::start(false, false).await;
    let configmaps = cluster.api::<ConfigMap>();
    let live = t(configmaps.create(&PostParams::default(), &configmap("live", json!(null))))
        .await
        .expect("live");
    let doomed = t(configmaps.create(&PostParams::default(), &configmap("doomed", json!(null))))
        .await
        .expect("doomed");
    let owners = json!([
        { "apiVersion": "v1", "kind": "ConfigMap", "name": "live", "uid": live.uid() },
        { "apiVersion": "v1", "kind": "ConfigMap", "name": "doomed", "uid": doomed.uid() },
    ]);
    t(configmaps.create(&PostParams::default(), &configmap("shared", owners)))
        .await
        .expect("shared");

    t(configmaps.delete("doomed", &DeleteParams::background()))
        .await
        .expect("delete doomed");
    let shared = eventually("the dangling reference removed", WITHIN, || async {
        let cm = t(configmaps.get("shared")).await.ok()?;
        (cm.owner_references().len() == 1).then_some(cm)
    })
    .await;
    assert_eq!(shared.owner_references()[0].uid, live.uid().expect("uid"));
    assert!(shared.metadata.deletion_timestamp.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_it_then_removes_it() {
    let cluster = Cluster::start(true, true).await;
    let client = cluster.client();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    t(namespaces.create(
        &PostParams::default(),
        &serde_json::from_value(json!({ "metadata": { "name": "doomed" } })).expect("ns"),
    ))
    .await
    .expect("create namespace");
    let (pods, configmaps, services, replicasets) = (
        Api::<Pod>::namespaced(client.clone(), "doomed"),
        Api::<ConfigMap>::namespaced(client.clone(), "doomed"),
        Api::<Service>::namespaced(client.clone(), "doomed"),
        Api::<ReplicaSet>::namespaced(client.clone(), "doomed"),
    );
    t(replicasets.create(&PostParams::default(), &replicaset("app", 2)))
        .await
        .expect("replicaset");
    t(pods.create(&PostParams::default(), &pod("loose", json!(null))))
        .await
        .expect("pod");
    t(configmaps.create(&PostParams::default(), &configmap("plain", json!(null))))
        .await
        .expect("configmap");
    let mut held = configmap("held", json!(null));
    held.metadata.finalizers = Some(vec![HOLD.to_owned()]);
    t(configmaps.create(&PostParams::default(), &held))
        .await
        .expect("held configmap");
    t(services.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": "svc" },
            "spec": { "ports": [{ "port": 80 }], "selector": { "app": "app" } }
        }))
        .expect("service"),
    ))
    .await
    .expect("service");
    eventually("the replicaset's pods", WITHIN, || async {
        (t(pods.list(&ListParams::default())).await.ok()?.items.len() == 3).then_some(())
    })
    .await;

    t(namespaces.delete("doomed", &DeleteParams::default()))
        .await
        .expect("delete namespace");
    // Everything but the held object goes; the namespace reports what remains and why.
    let ns = eventually(
        "the namespace emptied but for the held object",
        Duration::from_secs(40),
        || async {
            let ns = t(namespaces.get("doomed")).await.ok()?;
            let conditions = ns.status.as_ref()?.conditions.clone()?;
            let finalizers_remaining = conditions.iter().any(|c| {
                c.type_ == "NamespaceFinalizersRemaining"
                    && c.status == "True"
                    && c.message
                        .as_deref()
                        .is_some_and(|m| m.contains(&format!("{HOLD} in 1 resource instances")))
            });
            let left_pods = t(pods.list(&ListParams::default())).await.ok()?.items.len();
            let left_services = t(services.list(&ListParams::default())).await.ok()?.items.len();
            let left_rs = t(replicasets.list(&ListParams::default()))
                .await
                .ok()?
                .items
                .len();
            let left_cms: Vec<String> = t(configmaps.list(&ListParams::default()))
                .await
                .ok()?
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            (finalizers_remaining
                && left_pods == 0
                && left_services == 0
                && left_rs == 0
                && left_cms == ["held"])
            .then_some(ns)
        },
    )
    .await;
    assert_eq!(
        ns.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Terminating")
    );
    let conditions = ns.status.and_then(|s| s.conditions).unwrap_or_default();
    let remaining = conditions
        .iter()
        .find(|c| c.type_ == "NamespaceContentRemaining")
        .expect("NamespaceContentRemaining");
    assert_eq!(remaining.status, "True");
    assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
    assert_eq!(
        remaining.message.as_deref(),
        Some("Some resources are remaining: configmaps. has 1 resource instances")
    );
    // Still there, still finalized by the namespace controller.
    assert_eq!(
        t(namespaces.get("doomed"))
            .await
            .expect("namespace")
            .spec
            .and_then(|s| s.finalizers),
        Some(vec!["kubernetes".to_owned()])
    );

    // The test's own finalizer goes: the content, then the namespace.
    set_finalizers(&configmaps, "held", &[]).await;
    eventually("the namespace removed", Duration::from_secs(40), || async {
        gone(&namespaces, "doomed").await.then_some(())
    })
    .await;
}
