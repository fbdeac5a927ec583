//! The Job controller: runs a Job's pods to completion, as upstream's pkg/controller/job does, on
//! kube-runtime's `Controller`.
//!
//! A sync (upstream's `syncJob`) takes the pods the Job controls and, once earlier creates and
//! deletes are all seen ([expectations](crate::expectations)), plans over them ([`plan`]): up to
//! `parallelism` active pods while fewer than `completions` succeeded; `FailureTarget` then `Failed`
//! once more than `backoffLimit` pods failed (`BackoffLimitExceeded`) or `activeDeadlineSeconds`
//! passed (`DeadlineExceeded`); `SuccessCriteriaMet` then `Complete` (with `completionTime`) when
//! enough succeeded — the final condition is added once no pod of the Job is left running, as
//! upstream does since 1.31; `suspend` deletes the active pods and sets `Suspended`. Pods are
//! created from the template with `generateName: <job>-` and the Job as controller.
//!
//! Indexed Jobs ([`indexed`]): each pod runs one completion index, the lowest missing ones start
//! first, a failed index is run again (its failures count toward `backoffLimit`), a succeeded one
//! never is, and the Job completes once every index succeeded (`status.completedIndexes`, and
//! `succeeded` counts indexes). Pods are named `<job>-<index>-`. With `backoffLimitPerIndex` each
//! index has its own failure budget instead (`status.failedIndexes`, `maxFailedIndexes`).
//!
//! Counting finished pods. Upstream puts the `batch.kubernetes.io/job-tracking` finalizer on every
//! pod and moves finished pods through `status.uncountedTerminatedPods` into the counters, so a
//! finished pod can be deleted at once without being lost. Here the counters are derived from the
//! pods themselves: the controller never deletes a finished pod (they go with the Job, through the
//! garbage collector), so `succeeded` and `failed` are the numbers of Succeeded and Failed pods the
//! Job controls, and a restarted controller recounts the same pods — nothing is counted twice and
//! nothing is lost across restarts. The counters never go down (the larger of the stored and the
//! recounted value), so a finished pod someone else deletes stays counted; what this scheme cannot
//! see is a pod that finished and was deleted by someone else between two syncs (undercounted,
//! never double-counted). A pod deleted before it finished counts as failed, as upstream's
//! `isPodFailed` with `podReplacementPolicy: TerminatingOrFailed` (not while suspended).
//!
//! Not mirrored (yet): pod failure and success policies, elastic Indexed Jobs (changing
//! `completions`), the exponential delay before a failed pod is replaced, restart counting for
//! `OnFailure` pods, adopting orphan pods. `ttlSecondsAfterFinished` is
//! [`crate::ttlafterfinished`]'s, as upstream.

pub mod indexed;
pub mod plan;
#[cfg(test)]
mod tests;

use std::{collections::HashSet, future::Future, sync::Arc, time::Instant};

use k8s_openapi::{
    api::{
        batch::v1::{Job, JobStatus},
        core::v1::Pod,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::{Action, Config},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

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
pub const CONTROLLER_NAME: &str = "job-controller";
/// Jobs synced at once (upstream's `--concurrent-job-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 5;
/// The most pods one sync creates or deletes (upstream's `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

/// What every sync shares.
struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<ControllerExpectations>,
    pod_control: PodControl,
    events: EventSink,
    backoff: Backoff,
}

/// Runs the Job controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, events: EventSink, shutdown: impl Future<Output = ()>) {
    let expectations = Arc::new(ControllerExpectations::new());
    let (pod_cache, pod_writer) = reflector::store::<Pod>();
    let pods = crate::pod_informer::watch(
        &client,
        "Job",
        "batch",
        pod_cache.clone(),
        pod_writer,
        Some(expectations.clone()),
    );
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default())
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let context = Arc::new(Context {
        pod_control: PodControl::new(client.clone(), events.clone()),
        events,
        client,
        pods: pod_cache,
        expectations,
        backoff: Backoff::new(),
    });
    crate::runner::until_shutdown("job controller", shutdown, |stopped| {
        controller
            .watches_stream(pods, |pod| {
                pod_util::controller_of(&pod.metadata)
                    .filter(|o| o.kind == "Job" && o.api_version.starts_with("batch/"))
                    .map(|o| ObjectRef::new(&o.name).within(&pod.namespace().unwrap_or_default()))
            })
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

fn controller_ref(job: &Job) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..job.owner_ref(&()).unwrap_or_default()
    }
}

/// One sync (upstream's `syncJob`).
async fn reconcile(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::cache_ready::cache_ready(&ctx.pods)
        .await
        .map_err(|_| Error::CacheGone)?;
    // A Job being deleted: the garbage collector takes its pods.
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let key = job.metadata.uid.clone().ok_or(Error::MissingUid)?;
    let namespace = job.namespace().unwrap_or_default();
    let pods = ctx.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str())
            && pod_util::controller_of(&p.metadata).is_some_and(|c| c.uid == key)
    });
    if ctx.expectations.awaits_deletions(&key) {
        let live: HashSet<&str> = pods
            .iter()
            .filter(|p| !pod_util::is_terminating(p))
            .filter_map(|p| p.metadata.uid.as_deref())
            .collect();
        ctx.expectations.settle_deletions(&key, |uid| live.contains(uid));
    }
    // With writes unseen, only the status of what the cache shows may be written, not acted on.
    if !ctx.expectations.satisfied(&key, Instant::now()) {
        return Ok(ctx
            .expectations
            .expires_in(&key, Instant::now())
            .map_or_else(Action::await_change, Action::requeue));
    }
    let plan = plan::plan(&job, &pods, Timestamp::now());
    let owner = job.object_ref(&());
    if let Some((reason, message)) = plan.event {
        if plan::FAILURES.iter().any(|f| f.0 == reason) {
            ctx.events.warning(&owner, reason, "Sync", message.to_owned());
        } else {
            ctx.events.normal(&owner, reason, "Sync", message.to_owned());
        }
    }
    let mut errors = manage(&job, &key, &plan, &ctx).await;
    write_status(&job, &plan.status, &ctx.client).await?;
    if let Some(e) = errors.pop() {
        return Err(e);
    }
    ctx.backoff.forget(&key);
    Ok(plan.requeue.map_or_else(Action::await_change, Action::requeue))
}

/// `manageJob`'s writes: creates and deletes, at most [`MAX_POD_CREATE_DELETE_PER_SYNC`] of
/// each, with expectations recorded first. Returns the errors.
async fn manage(job: &Job, key: &str, plan: &plan::Plan, ctx: &Context) -> Vec<Error> {
    let mut errors = Vec::new();
    let owner = job.object_ref(&());
    let create = plan.create.min(MAX_POD_CREATE_DELETE_PER_SYNC);
    if create > 0 {
        ctx.expectations.expect_creations(key, create, Instant::now());
        let namespace = job.namespace().unwrap_or_default();
        let mut template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let name = job.name_any();
        let indexed = indexed::is_indexed(job);
        if indexed {
            indexed::add_env(&mut template);
        }
        let controller_ref = controller_ref(job);
        // The batch calls in order, so each call takes the next index of the plan.
        let mut indexes = plan.indexes.iter().copied();
        let (created, error) = slow_start_batch(create, INITIAL_BATCH_SIZE, || {
            let (template, prefix) = match indexes.next().filter(|_| indexed) {
                Some(i) => (
                    indexed::template_for(&name, &template, i, plan.failure_counts.get(&i).copied()),
                    indexed::generate_name(&name, i),
                ),
                None => (template.clone(), pod_control::pods_prefix(&name)),
            };
            let (namespace, owner, controller_ref) = (&namespace, &owner, controller_ref.clone());
            async move {
                match ctx
                    .pod_control
                    .create_pod(namespace, &template, &prefix, owner, controller_ref)
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(Error::Api(e)) if pod_control::is_namespace_terminating(&e) => {
                        ctx.expectations.creation_observed(key);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        })
        .await;
        for _ in created..create {
            ctx.expectations.creation_observed(key);
        }
        errors.extend(error);
    }
    let delete = &plan.delete[..plan.delete.len().min(MAX_POD_CREATE_DELETE_PER_SYNC)];
    if !delete.is_empty() {
        let uids = delete.iter().filter_map(|p| p.metadata.uid.clone());
        ctx.expectations.expect_deletions(key, uids, Instant::now());
        let owner = &owner;
        let deletes = delete.iter().map(|pod| async move {
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

/// Writes the status through `/status` when it changed.
async fn write_status(job: &Job, status: &JobStatus, client: &Client) -> Result<(), Error> {
    let old = job.status.clone().unwrap_or_default();
    if &old == status {
        return Ok(());
    }
    // A cleared start or completion time is left out of `status`: written as null.
    crate::runner::patch_status(job, status, &["startTime", "completionTime"], client).await
}

/// After a failed sync, retry with a per-Job exponential backoff.
fn error_policy(job: Arc<Job>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::runner::retry(&job, error, &ctx.backoff)
}
