//! The ReplicaSet controller: keeps `spec.replicas` active pods matching each ReplicaSet, as
//! upstream's pkg/controller/replicaset/replica_set.go does, on kube-runtime's `Controller`.
//!
//! One pod watch feeds, in order: the [expectations](crate::expectations) (what earlier writes are
//! still unseen), the pod cache the plans are made from, and the controller's triggers (a pod wakes
//! its controller, or for an orphan every ReplicaSet whose selector matches it, as upstream's
//! `addPod`/`updatePod`/`deletePod` do). Each sync is [`plan::plan`] over the cache, then the thin
//! side effects below: adopt/release, create/delete, and the status written through `/status`.

mod plan;
mod status;
#[cfg(test)]
mod tests;

use std::{
    collections::HashSet,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{apps::v1::ReplicaSet, core::v1::Pod},
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::{Action, Config},
        reflector::{self, Store},
        watcher,
    },
};

pub use self::{
    plan::{BURST_REPLICAS, Input, Manage, Plan, plan, related_pods},
    status::{ManageError, REPLICA_FAILURE, calculate_status},
};
use crate::{
    Error,
    backoff::Backoff,
    events::EventSink,
    expectations::ControllerExpectations,
    pod_control::{self, PodControl, reasons},
    pod_util,
    slow_start::{INITIAL_BATCH_SIZE, slow_start_batch},
};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "replicaset-controller";
/// ReplicaSets synced at once (upstream's `--concurrent-replicaset-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 5;

/// What every sync shares.
struct Context {
    client: Client,
    pods: Store<Pod>,
    replicasets: Store<ReplicaSet>,
    expectations: Arc<ControllerExpectations>,
    pod_control: PodControl,
    backoff: Backoff,
    /// When each ReplicaSet's last sync ended and how long it took (see [`reconcile`]).
    pacing: std::sync::Mutex<std::collections::HashMap<String, (Instant, Duration)>>,
}

/// Runs the ReplicaSet controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, events: EventSink, shutdown: impl Future<Output = ()>) {
    let expectations = Arc::new(ControllerExpectations::new());
    let (pod_cache, pod_writer) = reflector::store::<Pod>();
    let pods = crate::pod_informer::watch(
        &client,
        "ReplicaSet",
        "apps",
        pod_cache.clone(),
        pod_writer,
        Some(expectations.clone()),
    );

    let controller = Controller::new(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let replicasets = controller.store();
    let mapper_cache = replicasets.clone();
    let context = Arc::new(Context {
        pod_control: PodControl::new(client.clone(), events),
        client,
        pods: pod_cache,
        replicasets,
        expectations,
        backoff: Backoff::new(),
        pacing: Default::default(),
    });
    crate::runner::until_shutdown("replicaset controller", shutdown, |stopped| {
        controller
            .watches_stream(pods, move |pod| {
                pod_util::controllers_for_pod(&mapper_cache, &pod, "ReplicaSet", "apps", |rs| {
                    plan::selector(rs).ok().flatten()
                })
            })
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

/// One sync (upstream's `syncReplicaSet`): plan over the cache, claim, manage, write the status.
/// Paces [`sync`]: a ReplicaSet's next sync starts no sooner after its last one ended than that one
/// spent walking the cache (its API writes not counted). A ReplicaSet of 10,000 pods is woken by every one of their events and each sync walks all
/// of them; back to back, its syncs took a core. Paced, it syncs at most half the time and each sync
/// takes in the batch of changes that arrived meanwhile (a few milliseconds' delay; upstream's
/// workqueue coalesces the same way while a sync runs).
async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = rs.metadata.uid.clone().unwrap_or_default();
    let last = ctx
        .pacing
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        .copied();
    if let Some((ended, took)) = last {
        let wait = took.min(MAX_PACING).saturating_sub(ended.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
    let mut busy = Duration::ZERO;
    let result = sync(rs, ctx.clone(), &mut busy).await;
    let mut pacing = ctx.pacing.lock().unwrap_or_else(|e| e.into_inner());
    if pacing.len() >= 256 {
        // Only syncs that ended within the longest pacing still matter.
        pacing.retain(|_, (ended, _)| ended.elapsed() < MAX_PACING);
    }
    pacing.insert(key, (Instant::now(), busy));
    drop(pacing);
    result
}

/// The longest a sync is held back by [`reconcile`]'s pacing.
const MAX_PACING: Duration = Duration::from_millis(500);

/// `busy` gets the time spent walking the cache (planning and counting), which is what pacing
/// bounds; the writes in between are waits, not work: counted, a sync creating 500 pods held the
/// next one back by the longest pacing, at every burst of a large scale-up.
async fn sync(rs: Arc<ReplicaSet>, ctx: Arc<Context>, busy: &mut Duration) -> Result<Action, Error> {
    crate::cache_ready::cache_ready(&ctx.pods)
        .await
        .map_err(|_| Error::CacheGone)?;
    let planning = Instant::now();
    let key = rs.metadata.uid.clone().ok_or(Error::MissingUid)?;
    let namespace = rs.namespace().unwrap_or_default();
    let pods = ctx
        .pods
        .state_filter(|p| p.metadata.namespace.as_deref() == Some(namespace.as_str()));
    // Only while deletions are awaited: a set of every pod's UID is costly with 10,000 pods.
    if ctx.expectations.awaits_deletions(&key) {
        let live: HashSet<&str> = pods
            .iter()
            .filter(|p| !pod_util::is_terminating(p))
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        ctx.expectations.settle_deletions(&key, |uid| live.contains(uid));
    }
    let satisfied = ctx.expectations.satisfied(&key, Instant::now());
    let siblings = siblings(&rs, &ctx.replicasets);
    let now = Timestamp::now();
    let input = Input {
        rs: &rs,
        pods: &pods,
        siblings: &siblings,
        expectations_satisfied: satisfied,
        now,
    };
    let plan = match plan::plan(&input) {
        Ok(plan) => plan,
        Err(e) => {
            // As upstream: a ReplicaSet whose selector cannot be parsed is left alone until it changes.
            tracing::warn!(replicaset = %rs.name_any(), error = %e, "not syncing");
            return Ok(Action::await_change());
        }
    };

    *busy = planning.elapsed();
    claim(&rs, &plan, &ctx).await?;
    let manage_error = manage(&rs, &key, &plan.manage, &ctx).await;
    let counting = Instant::now();
    let new_status = status::calculate_status(&rs, &plan.claimed, manage_error.as_ref(), now);
    *busy += counting.elapsed();
    if status::needs_update(&rs, &new_status) {
        update_status(&rs, &new_status, &ctx.client).await?;
    }
    if let Some(e) = manage_error {
        return Err(Error::Manage(e));
    }
    ctx.backoff.forget(&key);

    // Look again when unseen writes expire or a ready pod becomes available, whichever is first.
    let wake = [
        ctx.expectations.expires_in(&key, Instant::now()),
        status::next_availability_check(&rs, &plan.claimed, now),
    ];
    Ok(wake
        .into_iter()
        .flatten()
        .min()
        .map_or_else(Action::await_change, Action::requeue))
}

/// After a failed sync, retry with a per-ReplicaSet exponential backoff (upstream's rate-limited
/// requeue).
fn error_policy(rs: Arc<ReplicaSet>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::runner::retry(&rs, error, &ctx.backoff)
}

/// The ReplicaSets with the same controller as `rs` (none when it has no controller, as upstream).
fn siblings(rs: &ReplicaSet, replicasets: &Store<ReplicaSet>) -> Vec<Arc<ReplicaSet>> {
    let Some(controller) = pod_util::controller_of(&rs.metadata) else {
        return vec![];
    };
    replicasets.state_filter(|other| {
        other.metadata.namespace == rs.metadata.namespace
            && pod_util::controller_of(&other.metadata).is_some_and(|c| c.uid == controller.uid)
    })
}

/// The owner reference the ReplicaSet's pods carry.
fn controller_ref(rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..rs.owner_ref(&()).unwrap_or_default()
    }
}

/// Adopts and releases as planned. An adoption first re-reads the ReplicaSet from the API server
/// (upstream's `RecheckDeletionTimestamp`): a cached ReplicaSet may already be deleted or replaced.
/// A pod that vanished meanwhile makes the plan stale, so the sync is retried from a fresh cache.
async fn claim(rs: &ReplicaSet, plan: &Plan, ctx: &Context) -> Result<(), Error> {
    if !plan.adopt.is_empty() {
        let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &rs.namespace().unwrap_or_default());
        let fresh = api.get(&rs.name_any()).await?;
        if fresh.metadata.uid != rs.metadata.uid || fresh.metadata.deletion_timestamp.is_some() {
            return Err(Error::CannotAdopt(format!(
                "replicaset {} is gone or being deleted",
                rs.name_any()
            )));
        }
    }
    let owner = controller_ref(rs);
    let adoptions = plan
        .adopt
        .iter()
        .map(|pod| ctx.pod_control.adopt_pod(pod, &owner));
    for result in futures::future::join_all(adoptions).await {
        match result {
            Err(e) if pod_control::is_gone(&e) => {
                return Err(Error::StaleCache("an adopted pod is gone".into()));
            }
            other => other?,
        }
    }
    let releases = plan
        .release
        .iter()
        .map(|pod| ctx.pod_control.release_pod(pod, &owner.uid));
    for result in futures::future::join_all(releases).await {
        match result {
            // Gone, or no longer ours (422): either way not ours to count.
            Err(kube::Error::Api(s)) if s.is_not_found() || s.code == 422 => {}
            other => other?,
        }
    }
    Ok(())
}

/// Creates or deletes as planned (upstream's `manageReplicas`), recording expectations first so
/// that syncs triggered by the resulting events wait until all of them are seen.
async fn manage(rs: &ReplicaSet, key: &str, manage: &Manage, ctx: &Context) -> Option<ManageError> {
    let owner = rs.object_ref(&());
    match manage {
        Manage::Nothing | Manage::AwaitExpectations => None,
        Manage::Create(count) => {
            tracing::debug!(replicaset = %rs.name_any(), count, "too few replicas, creating");
            ctx.expectations.expect_creations(key, *count, Instant::now());
            let namespace = rs.namespace().unwrap_or_default();
            let template = rs
                .spec
                .as_ref()
                .and_then(|s| s.template.clone())
                .unwrap_or_default();
            let prefix = pod_control::pods_prefix(&rs.name_any());
            let controller_ref = controller_ref(rs);
            let (created, error) = slow_start_batch(*count, INITIAL_BATCH_SIZE, || async {
                match ctx
                    .pod_control
                    .create_pod(&namespace, &template, &prefix, &owner, controller_ref.clone())
                    .await
                {
                    Ok(_) => Ok(()),
                    // Every create fails in a terminating namespace; that is not the ReplicaSet's failure.
                    Err(Error::Api(e)) if pod_control::is_namespace_terminating(&e) => {
                        ctx.expectations.creation_observed(key);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
            .await;
            // Creates that failed or were never tried will not be observed.
            for _ in created..*count {
                ctx.expectations.creation_observed(key);
            }
            error.map(|e| ManageError {
                reason: reasons::FAILED_CREATE,
                message: create_error_message(&e),
            })
        }
        Manage::Delete(victims) => {
            tracing::debug!(replicaset = %rs.name_any(), count = victims.len(), "too many replicas, deleting");
            let uids = victims.iter().filter_map(|p| p.metadata.uid.clone());
            ctx.expectations.expect_deletions(key, uids, Instant::now());
            let deletes = victims.iter().map(|pod| async {
                let result = ctx.pod_control.delete_pod(pod, &owner).await;
                if result.is_err() {
                    // A failed delete will not be observed.
                    ctx.expectations
                        .deletion_observed(key, pod.metadata.uid.as_deref().unwrap_or_default());
                }
                result
            });
            let results = futures::future::join_all(deletes).await;
            results
                .into_iter()
                .filter_map(Result::err)
                .find(|e| !pod_control::is_gone(e))
                .map(|e| ManageError {
                    reason: reasons::FAILED_DELETE,
                    message: pod_control::error_message(&e),
                })
        }
    }
}

fn create_error_message(e: &Error) -> String {
    match e {
        Error::Api(e) => pod_control::error_message(e),
        other => other.to_string(),
    }
}

/// Writes the status through the `/status` subresource. A JSON merge patch carries no
/// resourceVersion, so a concurrent spec change cannot make it conflict; `observedGeneration` says
/// which generation the counts were computed for.
async fn update_status(
    rs: &ReplicaSet,
    status: &k8s_openapi::api::apps::v1::ReplicaSetStatus,
    client: &Client,
) -> Result<(), Error> {
    // A merge patch only removes the conditions list when told to with null.
    crate::runner::patch_status(rs, status, &["conditions"], client).await
}
