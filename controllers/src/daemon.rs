//! The DaemonSet controller: one pod of each DaemonSet on every node that should run it, as
//! upstream's pkg/controller/daemon does, on kube-runtime's `Controller`.
//!
//! A sync (upstream's `syncDaemonSet`) claims the DaemonSet's pods (adopting orphans its selector
//! matches, releasing pods it no longer matches), finds or writes the ControllerRevision of its
//! current template ([`history`]), and then, once earlier creates and deletes are all seen
//! ([expectations](crate::expectations)), plans over the caches ([`plan`]): a pod for each node that
//! should run one and has none, pinned to that node by node affinity so the scheduler binds it
//! there; failed, finished and extra pods deleted (failed ones with a per-node backoff, so a kubelet
//! that rejects every pod does not make the controller hot-loop); then a rolling update step
//! (`maxUnavailable` old pods at a time, or `maxSurge` new pods beside old ones). The status counts
//! (desired, current, ready, up-to-date, available, misscheduled) are what `kubectl get ds` and
//! `kubectl rollout status ds` read.
//!
//! Nodes wake every DaemonSet when they come, go, or change what placement reads (labels, taints,
//! unschedulable), not on every heartbeat.
//!
//! Not mirrored (yet): adopting orphaned ControllerRevisions, relabelling pods when duplicate
//! current revisions are merged (duplicates are deleted).

pub mod history;
pub mod plan;
#[cfg(test)]
mod tests;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus},
        core::v1::{Node, Pod},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    core::{Selector, SelectorExt},
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;

use self::plan::{Deletion, NodeView};
use crate::{
    Error,
    backoff::Backoff,
    events::EventSink,
    expectations::ControllerExpectations,
    pod_control::{self, PodControl},
    pod_util,
    slow_start::{INITIAL_BATCH_SIZE, slow_start_batch},
};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "daemonset-controller";
/// DaemonSets synced at once (upstream's `--concurrent-daemonset-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 2;
/// The most pods one sync creates or deletes (upstream's `BurstReplicas`).
pub const BURST_REPLICAS: usize = 250;
/// The first and the longest wait before a failed pod on a node is replaced again (upstream's
/// `failedPodsBackoff`: 1 s doubling to 15 min).
const FAILED_POD_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(15 * 60));

/// What every sync shares.
struct Context {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    revisions: Store<ControllerRevision>,
    expectations: Arc<ControllerExpectations>,
    pod_control: PodControl,
    events: EventSink,
    backoff: Backoff,
    /// Per DaemonSet, generation and node: when a failed pod there was last deleted, and the wait
    /// before the next may be.
    failed: Mutex<HashMap<String, (Instant, Duration)>>,
}

/// Runs the DaemonSet controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, events: EventSink, shutdown: impl Future<Output = ()>) {
    let expectations = Arc::new(ControllerExpectations::new());
    let (pod_cache, pod_writer) = reflector::store::<Pod>();
    let pods = crate::pod_informer::watch(
        &client,
        "DaemonSet",
        "apps",
        pod_cache.clone(),
        pod_writer,
        Some(expectations.clone()),
    );
    let (node_cache, node_writer) = reflector::store::<Node>();
    // Only a node that comes, goes, or changes what placement reads concerns the DaemonSets; its
    // heartbeats (a status write every few seconds) do not.
    let mut seen_nodes: HashMap<String, String> = HashMap::new();
    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|n| n.managed_fields_mut().clear())
        .reflect(node_writer)
        .try_filter_map(move |event| {
            let changed = match event {
                watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                    let print = node_fingerprint(&node);
                    (seen_nodes.insert(node.name_any(), print.clone()) != Some(print)).then_some(node)
                }
                watcher::Event::Delete(node) => {
                    seen_nodes.remove(&node.name_any());
                    Some(node)
                }
                watcher::Event::Init | watcher::Event::InitDone => None,
            };
            std::future::ready(Ok(changed))
        });
    let (revision_cache, revision_writer) = reflector::store::<ControllerRevision>();
    let revisions = watcher(
        Api::<ControllerRevision>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(|r| r.managed_fields_mut().clear())
    .reflect(revision_writer)
    .touched_objects();

    let controller = Controller::new(Api::<DaemonSet>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let daemonsets = controller.store();
    let (for_pods, for_nodes) = (daemonsets.clone(), daemonsets.clone());
    let context = Arc::new(Context {
        pod_control: PodControl::new(client.clone(), events.clone()),
        events,
        client,
        pods: pod_cache,
        nodes: node_cache,
        revisions: revision_cache,
        expectations,
        backoff: Backoff::new(),
        failed: Mutex::default(),
    });
    crate::runner::until_shutdown("daemonset controller", shutdown, |stopped| {
        controller
            .watches_stream(pods, move |pod| {
                pod_util::controllers_for_pod(&for_pods, &pod, "DaemonSet", "apps", |ds| selector(ds).ok())
            })
            .watches_stream(nodes, move |_| {
                for_nodes
                    .state()
                    .iter()
                    .map(|ds| ObjectRef::from_obj(ds.as_ref()))
                    .collect::<Vec<_>>()
            })
            .watches_stream(revisions, |revision| {
                pod_util::controller_of(&revision.metadata)
                    .filter(|o| o.kind == "DaemonSet")
                    .map(|o| ObjectRef::new(&o.name).within(&revision.namespace().unwrap_or_default()))
            })
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

/// What of a node decides where daemon pods run: its labels, taints and unschedulable flag.
fn node_fingerprint(node: &Node) -> String {
    let spec = node.spec.as_ref();
    json!([
        node.metadata.labels,
        spec.and_then(|s| s.taints.as_ref()),
        spec.and_then(|s| s.unschedulable),
        node.metadata.deletion_timestamp.is_some(),
    ])
    .to_string()
}

fn selector(ds: &DaemonSet) -> Result<Selector, Error> {
    let spec = ds.spec.clone().unwrap_or_default();
    Selector::try_from(spec.selector).map_err(|e| Error::InvalidSelector(e.to_string()))
}

fn controller_ref(ds: &DaemonSet) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..ds.owner_ref(&()).unwrap_or_default()
    }
}

/// One sync (upstream's `syncDaemonSet`).
async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [
        crate::cache_ready::cache_ready(&ctx.pods).await,
        crate::cache_ready::cache_ready(&ctx.nodes).await,
        crate::cache_ready::cache_ready(&ctx.revisions).await,
    ] {
        ready.map_err(|_| Error::CacheGone)?;
    }
    // A DaemonSet being deleted: its revisions may already be gone; the garbage collector takes
    // its pods.
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = ds.metadata.uid.clone().ok_or(Error::MissingUid)?;
    let selector = match selector(&ds) {
        Ok(s) if !s.selects_all() => s,
        Ok(_) => {
            ctx.events.warning(
                &ds.object_ref(&()),
                "SelectingAll",
                "Sync",
                "This daemon set is selecting all pods. A non-empty selector is required.".into(),
            );
            return Ok(Action::await_change());
        }
        Err(e) => {
            tracing::warn!(daemonset = %ds.name_any(), error = %e, "not syncing");
            return Ok(Action::await_change());
        }
    };
    let pods = claim(&ds, &selector, &ctx).await?;
    let hash = construct_history(&ds, &ctx).await?;

    // Only while deletions are awaited: settle those the cache shows done.
    if ctx.expectations.awaits_deletions(&key) {
        let live: HashSet<&str> = pods
            .iter()
            .filter(|p| !pod_util::is_terminating(p))
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        ctx.expectations.settle_deletions(&key, |uid| live.contains(uid));
    }
    let nodes = ctx.nodes.state();
    let spec = plan::daemon_pod_spec(&ds);
    let views: Vec<NodeView<'_>> = nodes
        .iter()
        .map(|n| NodeView {
            node: n.as_ref(),
            placement: plan::placement(&spec, n),
        })
        .collect();
    let by_node = group_by_node(&pods);
    let now = Timestamp::now();
    let mut wake = Vec::new();

    let satisfied = ctx.expectations.satisfied(&key, Instant::now());
    let mut errors = Vec::new();
    if satisfied {
        let generation = ds
            .status
            .as_ref()
            .and_then(|s| s.observed_generation)
            .unwrap_or(0);
        let manage = plan::manage(&ds, &views, &by_node, &hash, now, |node| match failed_pod_may_go(
            &ctx,
            &format!("{key}/{generation}/{node}"),
        ) {
            Ok(()) => true,
            Err(wait) => {
                wake.push(wait);
                false
            }
        });
        let acted = !manage.create_on.is_empty() || !manage.delete.is_empty();
        errors.extend(sync_nodes(&ds, &key, &hash, &manage.create_on, &manage.delete, &ctx).await);
        if !acted && rolling(&ds) {
            let desired = views.iter().filter(|v| v.placement.should_run).count() as i32;
            let rollout = plan::rolling_update(&ds, desired, &by_node, &hash, now);
            let delete: Vec<_> = rollout
                .delete
                .into_iter()
                .map(|p| (p, Deletion::Excess))
                .collect();
            errors.extend(sync_nodes(&ds, &key, &hash, &rollout.create_on, &delete, &ctx).await);
        }
        cleanup_history(&ds, &pods, &ctx).await?;
    }

    // The status, from the cache as it is now (the writes above show in the next sync).
    let mut status = plan::status(&ds, &views, &by_node, &hash, now);
    if satisfied {
        status.observed_generation = ds.metadata.generation;
    }
    write_status(&ds, &status, &ctx.client).await?;
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    ctx.backoff.forget(&key);

    // Look again when unseen writes expire or a ready pod becomes available.
    wake.extend(ctx.expectations.expires_in(&key, Instant::now()));
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    if min_ready > 0 && status.number_ready != status.number_available.unwrap_or(0) {
        wake.push(Duration::from_secs(min_ready as u64));
    }
    Ok(wake
        .into_iter()
        .min()
        .map_or_else(Action::await_change, Action::requeue))
}

fn rolling(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .is_none_or(|t| t == "RollingUpdate")
}

/// The failed-pod backoff of one DaemonSet generation on one node: Ok when a failed pod may be
/// deleted now (and the next wait doubles), else how long until it may.
fn failed_pod_may_go(ctx: &Context, key: &str) -> Result<(), Duration> {
    let mut failed = ctx.failed.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let (initial, max) = FAILED_POD_BACKOFF;
    // Entries untouched for twice the longest wait are forgotten (upstream's GC of its backoff).
    failed.retain(|_, (last, _)| now.duration_since(*last) < 2 * max);
    match failed.get_mut(key) {
        Some((last, delay)) if now.duration_since(*last) < *delay => Err(*delay - now.duration_since(*last)),
        Some((last, delay)) => {
            *last = now;
            *delay = (*delay * 2).min(max);
            Ok(())
        }
        None => {
            failed.insert(key.to_owned(), (now, initial));
            Ok(())
        }
    }
}

/// The DaemonSet's pods (`getDaemonPods`): those it controls that its selector still matches, and
/// orphans it matches, adopted; those it controls but no longer matches are released.
async fn claim(ds: &DaemonSet, selector: &Selector, ctx: &Context) -> Result<Vec<Arc<Pod>>, Error> {
    let namespace = ds.namespace().unwrap_or_default();
    let candidates = ctx
        .pods
        .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()));
    let matches = |p: &Pod| selector.matches(&p.metadata.labels.clone().unwrap_or_default());
    Ok(ctx
        .pod_control
        .claim_pods(candidates, &controller_ref(ds), matches)
        .await?)
}

/// `getNodesToDaemonPods`: the pods by the node they run on or are pinned to (finished pods that
/// are being deleted left out).
fn group_by_node(pods: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut by_node: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in pods {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() && matches!(phase, "Failed" | "Succeeded") {
            continue;
        }
        if let Some(node) = plan::target_node(pod) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    by_node
}

/// `constructHistory`: the hash of the revision holding the current template, written if there is
/// none, renumbered to be the newest if an older number came back (a rollback).
async fn construct_history(ds: &DaemonSet, ctx: &Context) -> Result<String, Error> {
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let namespace = ds.namespace().unwrap_or_default();
    let owned = ctx.revisions.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(namespace.as_str())
            && pod_util::controller_of(&r.metadata).is_some_and(|c| c.uid == uid)
    });
    let (mut current, old) = history::split(ds, &owned);
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    let next = history::next_revision(&old);
    current.sort_by_key(|r| std::cmp::Reverse(r.revision));
    let Some(cur) = current.first() else {
        let revision = history::snapshot(ds, next);
        return match api.create(&PostParams::default(), &revision).await {
            Ok(created) => Ok(history::hash_of(&created)),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let name = revision.metadata.name.clone().unwrap_or_default();
                let existing = api.get(&name).await?;
                let ours = pod_util::controller_of(&existing.metadata).is_some_and(|c| c.uid == uid);
                if ours && history::matches(ds, &existing) {
                    return Ok(history::hash_of(&existing));
                }
                // A hash collision: count it, so the next name differs.
                let collisions = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0) + 1;
                Api::<DaemonSet>::namespaced(ctx.client.clone(), &namespace)
                    .patch_status(
                        &ds.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "status": { "collisionCount": collisions } })),
                    )
                    .await?;
                Err(Error::StaleCache(format!(
                    "revision {name} exists with another template"
                )))
            }
            Err(e) => Err(e.into()),
        };
    };
    // Duplicates of the current revision (two syncs raced) go; the newest stays.
    for duplicate in &current[1..] {
        match api.delete(&duplicate.name_any(), &DeleteParams::default()).await {
            Err(e) if !pod_control::is_gone(&e) => return Err(e.into()),
            _ => {}
        }
    }
    if cur.revision < next {
        api.patch(
            &cur.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "revision": next })),
        )
        .await?;
    }
    Ok(history::hash_of(cur))
}

/// `cleanupHistory`: old revisions beyond the limit that no live pod came from.
async fn cleanup_history(ds: &DaemonSet, pods: &[Arc<Pod>], ctx: &Context) -> Result<(), Error> {
    let uid = ds.metadata.uid.as_deref().unwrap_or_default();
    let namespace = ds.namespace().unwrap_or_default();
    let owned = ctx.revisions.state_filter(|r| {
        r.metadata.namespace.as_deref() == Some(namespace.as_str())
            && pod_util::controller_of(&r.metadata).is_some_and(|c| c.uid == uid)
    });
    let (_, old) = history::split(ds, &owned);
    let live: HashSet<String> = pods
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get(plan::REVISION_HASH_LABEL)
                .cloned()
        })
        .collect();
    let api: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &namespace);
    for revision in history::to_clean_up(ds, &old, &live) {
        match api.delete(&revision.name_any(), &DeleteParams::default()).await {
            Err(e) if !pod_control::is_gone(&e) => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// `syncNodes`: creates a pod pinned to each of `create_on` and deletes `delete`, at most
/// [`BURST_REPLICAS`] of each, with expectations recorded first. Returns the errors.
async fn sync_nodes(
    ds: &DaemonSet,
    key: &str,
    hash: &str,
    create_on: &[String],
    delete: &[(Arc<Pod>, Deletion)],
    ctx: &Context,
) -> Vec<Error> {
    let mut errors = Vec::new();
    let owner = ds.object_ref(&());
    let create_on = &create_on[..create_on.len().min(BURST_REPLICAS)];
    let delete = &delete[..delete.len().min(BURST_REPLICAS)];
    if !create_on.is_empty() {
        tracing::debug!(daemonset = %ds.name_any(), nodes = ?create_on, "creating daemon pods");
        ctx.expectations
            .expect_creations(key, create_on.len(), Instant::now());
        let namespace = ds.namespace().unwrap_or_default();
        let template = plan::pod_template(ds, hash);
        let prefix = pod_control::pods_prefix(&ds.name_any());
        let controller_ref = controller_ref(ds);
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (created, error) = slow_start_batch(create_on.len(), INITIAL_BATCH_SIZE, || async {
            let node = &create_on[next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)];
            let mut template = template.clone();
            plan::pin_to_node(template.spec.get_or_insert_with(Default::default), node);
            match ctx
                .pod_control
                .create_pod(&namespace, &template, &prefix, &owner, controller_ref.clone())
                .await
            {
                Ok(_) => Ok(()),
                Err(Error::Api(e)) if pod_control::is_namespace_terminating(&e) => {
                    ctx.expectations.creation_observed(key);
                    Ok(())
                }
                Err(e) => Err(e),
            }
        })
        .await;
        for _ in created..create_on.len() {
            ctx.expectations.creation_observed(key);
        }
        errors.extend(error);
    }
    if !delete.is_empty() {
        let uids = delete.iter().filter_map(|(p, _)| p.metadata.uid.clone());
        ctx.expectations.expect_deletions(key, uids, Instant::now());
        let owner = &owner;
        let deletes = delete.iter().map(|(pod, why)| async move {
            let (ns, name, node) = (
                pod.metadata.namespace.as_deref().unwrap_or_default(),
                pod.metadata.name.as_deref().unwrap_or_default(),
                pod_util::node_name(pod),
            );
            match why {
                Deletion::Failed => ctx.events.warning(
                    owner,
                    "FailedDaemonPod",
                    "Delete",
                    format!("Found failed daemon pod {ns}/{name} on node {node}, will try to kill it"),
                ),
                Deletion::Succeeded => ctx.events.normal(
                    owner,
                    "SucceededDaemonPod",
                    "Delete",
                    format!("Found succeeded daemon pod {ns}/{name} on node {node}, will try to delete it"),
                ),
                Deletion::Excess => {}
            }
            let result = ctx.pod_control.delete_pod(pod, owner).await;
            if result.is_err() {
                ctx.expectations
                    .deletion_observed(key, pod.metadata.uid.as_deref().unwrap_or_default());
            }
            result
        });
        for result in futures::future::join_all(deletes).await {
            match result {
                Err(e) if !pod_control::is_gone(&e) => errors.push(e.into()),
                _ => {}
            }
        }
    }
    errors
}

/// Writes the status through `/status` when a count or the observed generation changed.
async fn write_status(ds: &DaemonSet, status: &DaemonSetStatus, client: &Client) -> Result<(), Error> {
    let old = ds.status.clone().unwrap_or_default();
    let same = old.desired_number_scheduled == status.desired_number_scheduled
        && old.current_number_scheduled == status.current_number_scheduled
        && old.number_misscheduled == status.number_misscheduled
        && old.number_ready == status.number_ready
        && old.updated_number_scheduled.unwrap_or(0) == status.updated_number_scheduled.unwrap_or(0)
        && old.number_available.unwrap_or(0) == status.number_available.unwrap_or(0)
        && old.number_unavailable.unwrap_or(0) == status.number_unavailable.unwrap_or(0)
        && old.observed_generation >= status.observed_generation;
    if same {
        return Ok(());
    }
    // Zeroed optional counts are left out of `status`: written as null.
    let nulls = ["updatedNumberScheduled", "numberAvailable", "numberUnavailable"];
    crate::runner::patch_status(ds, status, &nulls, client).await
}

/// After a failed sync, retry with a per-DaemonSet exponential backoff.
fn error_policy(ds: Arc<DaemonSet>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::runner::retry(&ds, error, &ctx.backoff)
}
