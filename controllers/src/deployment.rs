//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, as upstream's
//! pkg/controller/deployment does (sync.go, rolling.go, recreate.go, progress.go), on kube-runtime.
//!
//! Each sync reads the Deployment and the ReplicaSets it controls (from a reflector; orphans whose
//! labels match are adopted), then:
//! - paused, or only `spec.replicas` changed: scale the ReplicaSets in proportion ([`scale`]);
//! - RollingUpdate: grow the new ReplicaSet within maxSurge, shrink old ones within maxUnavailable;
//! - Recreate: shrink old ones to zero, wait for their pods to be gone, then grow the new one;
//! - and always: the status `kubectl rollout status` reads, with the Progressing and Available
//!   conditions, and old ReplicaSets beyond `revisionHistoryLimit` deleted once a rollout completes.
//!
//! The decisions are the pure functions of [`util`] and [`status`]; this file only carries them out.
//! The ReplicaSet controller then makes each ReplicaSet's pods.

pub mod status;
#[cfg(test)]
mod tests;
pub mod util;

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentStatus, ReplicaSet},
        core::v1::Pod,
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions},
    core::SelectorExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config},
        reflector::{self, Store},
        watcher,
    },
};
use serde_json::json;

use self::{
    status::{calculate_status, condition, new_condition, reasons, set_condition, update_progressing},
    util::*,
};
use crate::{Error, backoff::Backoff, events::EventSink, pod_util};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "deployment-controller";
/// Deployments synced at once (upstream's `--concurrent-deployment-syncs`).
pub const CONCURRENT_SYNCS: u16 = 5;

struct Context {
    client: Client,
    replicasets: Store<ReplicaSet>,
    events: EventSink,
    backoff: Backoff,
}

/// Runs the Deployment controller until `shutdown` completes.
pub async fn run(client: Client, events: EventSink, shutdown: impl Future<Output = ()>) {
    let (rs_cache, rs_writer) = reflector::store::<ReplicaSet>();
    let rs_stream = reflector::reflector(
        rs_writer,
        watcher(Api::<ReplicaSet>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let controller = Controller::new(Api::<Deployment>::all(client.clone()), watcher::Config::default())
        .owns_stream(rs_stream)
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS));
    let context = Arc::new(Context {
        client,
        replicasets: rs_cache,
        events,
        backoff: Backoff::new(),
    });
    crate::runner::until_shutdown("deployment controller", shutdown, |stopped| {
        controller
            .graceful_shutdown_on(stopped)
            .run(reconcile, error_policy, context)
    })
    .await;
}

fn error_policy(d: Arc<Deployment>, error: &Error, ctx: Arc<Context>) -> Action {
    crate::runner::retry(&d, error, &ctx.backoff)
}

/// One sync of a Deployment, working on copies of it and its ReplicaSets.
struct Sync<'a> {
    ctx: &'a Context,
    d: Deployment,
    /// Every ReplicaSet the Deployment controls, oldest first, as last written.
    rss: Vec<ReplicaSet>,
    status: DeploymentStatus,
    now: Timestamp,
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::cache_ready::cache_ready(&ctx.replicasets)
        .await
        .map_err(|_| Error::CacheGone)?;
    let d = (*d).clone();
    if d.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    if selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    {
        ctx.events.warning(
            &d.object_ref(&()),
            "SelectingAll",
            "Sync",
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        );
        return Ok(Action::await_change());
    }
    let mut sync = Sync {
        rss: owned_replicasets(&ctx, &d).await?,
        status: d.status.clone().unwrap_or_default(),
        ctx: &ctx,
        d,
        now: Timestamp::now(),
    };
    sync.check_paused_conditions();
    let paused = sync.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
    if paused || sync.is_scaling_event() {
        sync.sync_scale().await?;
    } else if is_rolling(&sync.d) {
        sync.rollout_rolling().await?;
    } else {
        sync.rollout_recreate().await?;
    }
    ctx.backoff
        .forget(sync.d.metadata.uid.as_deref().unwrap_or_default());
    // A rollout with a deadline is looked at again when the deadline could pass.
    let in_progress = !status::complete(&sync.d, &sync.status);
    Ok(match status::progress_deadline(&sync.d) {
        Some(secs) if in_progress && !paused => Action::requeue(Duration::from_secs(secs as u64 + 1)),
        _ => Action::await_change(),
    })
}

fn controller_ref(d: &Deployment) -> OwnerReference {
    OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..d.controller_owner_ref(&()).unwrap_or_default()
    }
}

/// The ReplicaSets the Deployment controls, adopting orphans its selector matches (upstream's
/// `getReplicaSetsForDeployment` with a ControllerRefManager), oldest first.
async fn owned_replicasets(ctx: &Context, d: &Deployment) -> Result<Vec<ReplicaSet>, Error> {
    let uid = d.metadata.uid.clone().ok_or(Error::MissingUid)?;
    let ns = d.metadata.namespace.clone().unwrap_or_default();
    let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    let selector: kube::core::Selector = selector
        .try_into()
        .map_err(|e: kube::core::ParseExpressionError| Error::InvalidSelector(e.to_string()))?;
    let mut owned = Vec::new();
    let api: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), &ns);
    for rs in ctx
        .replicasets
        .state()
        .into_iter()
        .filter(|rs| rs.metadata.namespace.as_deref() == Some(ns.as_str()))
    {
        match pod_util::controller_of(&rs.metadata) {
            Some(owner) if owner.uid == uid => owned.push((*rs).clone()),
            None if rs.metadata.deletion_timestamp.is_none() && selector.matches(&rs.labels().clone()) => {
                let patch =
                    json!({ "metadata": { "ownerReferences": [controller_ref(d)], "uid": rs.metadata.uid } });
                match api
                    .patch(&rs.name_any(), &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(adopted) => owned.push(adopted),
                    Err(e) if pod_util_gone(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            _ => {}
        }
    }
    owned.sort_by_key(created);
    Ok(owned)
}

fn pod_util_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

impl Sync<'_> {
    fn replicas(&self) -> i32 {
        replicas(&self.d)
    }

    /// The ReplicaSet whose template is the Deployment's (the oldest, if several).
    fn new_index(&self) -> Option<usize> {
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        self.rss.iter().position(|rs| {
            rs.spec
                .as_ref()
                .and_then(|s| s.template.as_ref())
                .is_some_and(|t| equal_ignore_hash(t, &template))
        })
    }

    fn old_indices(&self, new: Option<usize>) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != new).collect()
    }

    /// Any ReplicaSet with pods whose desired-replicas annotation is not the Deployment's replicas
    /// (upstream's `isScalingEvent`).
    fn is_scaling_event(&self) -> bool {
        let want = self.replicas().to_string();
        self.rss.iter().filter(|rs| rs_replicas(rs) > 0).any(|rs| {
            rs.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                .is_some_and(|v| *v != want)
        })
    }

    /// Progressing=Unknown with DeploymentPaused/DeploymentResumed as the Deployment pauses and resumes.
    fn check_paused_conditions(&mut self) {
        if status::progress_deadline(&self.d).is_none() {
            return;
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let paused_cond = condition(Some(&self.status), "Progressing").and_then(|c| c.reason.as_deref())
            == Some(reasons::PAUSED);
        if paused && !paused_cond {
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    reasons::PAUSED,
                    "Deployment is paused".into(),
                    self.now,
                ),
            );
        } else if !paused && paused_cond {
            set_condition(
                &mut self.status,
                new_condition(
                    "Progressing",
                    "Unknown",
                    reasons::RESUMED,
                    "Deployment is resumed".into(),
                    self.now,
                ),
            );
        }
    }

    /// Finds (and brings up to date) or creates the new ReplicaSet (upstream's `getNewReplicaSet`);
    /// returns its index.
    async fn new_replicaset(&mut self, create: bool) -> Result<Option<usize>, Error> {
        let new = self.new_index();
        let max_old = self
            .old_indices(new)
            .iter()
            .map(|i| revision(&self.rss[*i]))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        if let Some(i) = new {
            let rs = &self.rss[i];
            let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
            let changed = self.new_rs_annotations(&mut annotations, new_revision, true);
            let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            if changed || rs.spec.as_ref().and_then(|s| s.min_ready_seconds) != min_ready {
                let patch = json!({ "metadata": { "annotations": annotations }, "spec": { "minReadySeconds": min_ready } });
                self.rss[i] = self
                    .rs_api()
                    .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            }
            let rev = revision(&self.rss[i]).to_string();
            self.set_deployment_revision(&rev).await?;
            if status::progress_deadline(&self.d).is_some()
                && condition(Some(&self.status), "Progressing").is_none()
            {
                let msg = format!("Found new replica set \"{}\"", self.rss[i].name_any());
                set_condition(
                    &mut self.status,
                    new_condition("Progressing", "True", reasons::FOUND_NEW_RS, msg, self.now),
                );
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let spec = self.d.spec.clone().unwrap_or_default();
        let hash = compute_hash(&spec.template, self.status.collision_count);
        let mut template = spec.template.clone();
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", self.d.name_any());
        let mut annotations = BTreeMap::new();
        self.new_rs_annotations(&mut annotations, new_revision, false);
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": self.d.namespace(), "ownerReferences": [controller_ref(&self.d)],
                          "labels": template.metadata.as_ref().and_then(|m| m.labels.clone()), "annotations": annotations },
            "spec": { "replicas": 0, "minReadySeconds": spec.min_ready_seconds, "selector": selector, "template": template },
        }))
        .map_err(|e| Error::Encode(e.to_string()))?;
        let all: Vec<&ReplicaSet> = self.rss.iter().chain(std::iter::once(&rs)).collect();
        let count = new_rs_new_replicas(&self.d, &all, &rs);
        rs.spec.as_mut().expect("set above").replicas = Some(count);
        let created = match self.rs_api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if count > 0 {
                    self.event_scaled(&created, 0, count);
                }
                let msg = format!("Created new replica set \"{name}\"");
                if status::progress_deadline(&self.d).is_some() {
                    set_condition(
                        &mut self.status,
                        new_condition("Progressing", "True", reasons::NEW_RS_CREATED, msg, self.now),
                    );
                }
                created
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours already (a stale cache)? Then it is the new one. Otherwise the hash collides
                // with another template's ReplicaSet: count the collision, and the next sync hashes
                // differently.
                let existing = self.rs_api().get(&name).await?;
                let ours = pod_util::controller_of(&existing.metadata).map(|o| o.uid.as_str())
                    == self.d.metadata.uid.as_deref();
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &spec.template));
                if !(ours && same) {
                    self.status.collision_count = Some(self.status.collision_count.unwrap_or(0) + 1);
                    self.write_status().await?;
                    return Err(Error::StaleCache(format!(
                        "hash collision for replica set {name}"
                    )));
                }
                existing
            }
            Err(e) => return Err(e.into()),
        };
        self.set_deployment_revision(&new_revision.to_string()).await?;
        self.rss.push(created);
        Ok(Some(self.rss.len() - 1))
    }

    /// Upstream's `SetNewReplicaSetAnnotations`: the Deployment's annotations, the new revision
    /// (remembering the one it replaces), and for a new ReplicaSet the replica annotations.
    fn new_rs_annotations(
        &self,
        annotations: &mut BTreeMap<String, String>,
        new_revision: i64,
        exists: bool,
    ) -> bool {
        let mut changed = false;
        for (k, v) in copied_annotations(&self.d) {
            if annotations.get(&k) != Some(&v) {
                annotations.insert(k, v);
                changed = true;
            }
        }
        let old: i64 = annotations
            .get(REVISION)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if old < new_revision {
            if old > 0 {
                let history = match annotations.get(REVISION_HISTORY) {
                    Some(h) if !h.is_empty() => format!("{h},{old}"),
                    _ => old.to_string(),
                };
                annotations.insert(REVISION_HISTORY.into(), history);
            }
            annotations.insert(REVISION.into(), new_revision.to_string());
            changed = true;
        }
        if !exists {
            changed |=
                set_replicas_annotations(annotations, self.replicas(), self.replicas() + max_surge(&self.d));
        }
        changed
    }

    async fn set_deployment_revision(&mut self, rev: &str) -> Result<(), Error> {
        if self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .map(String::as_str)
            == Some(rev)
        {
            return Ok(());
        }
        let patch = json!({ "metadata": { "annotations": { REVISION: rev } } });
        let api: Api<Deployment> =
            Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let updated = api
            .patch(&self.d.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        self.d.metadata.annotations = updated.metadata.annotations;
        Ok(())
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default())
    }

    fn event_scaled(&self, rs: &ReplicaSet, from: i32, to: i32) {
        let direction = if to > from { "up" } else { "down" };
        self.ctx.events.normal(
            &self.d.object_ref(&()),
            "ScalingReplicaSet",
            "Scaling",
            format!(
                "Scaled {direction} replica set {} from {from} to {to}",
                rs.name_any()
            ),
        );
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`: the size, and the replica annotations, written
    /// only when they change; true when the size changed.
    async fn scale_rs(&mut self, i: usize, to: i32) -> Result<bool, Error> {
        let rs = &self.rss[i];
        let from = rs_replicas(rs);
        let mut annotations = rs.metadata.annotations.clone().unwrap_or_default();
        let annotations_changed = set_replicas_annotations(
            &mut annotations,
            self.replicas(),
            self.replicas() + max_surge(&self.d),
        );
        if from == to && !annotations_changed {
            return Ok(false);
        }
        let patch = json!({ "metadata": { "annotations": annotations }, "spec": { "replicas": to } });
        self.rss[i] = self
            .rs_api()
            .patch(&rs.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        if from != to {
            self.event_scaled(&self.rss[i].clone(), from, to);
        }
        Ok(from != to)
    }

    /// Paused or scaled: share the replicas out (upstream's `sync` and `scale`).
    async fn sync_scale(&mut self) -> Result<(), Error> {
        let new = self.new_replicaset(false).await?;
        self.scale(new).await?;
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        if paused {
            self.cleanup(new).await?;
        }
        self.sync_status(new).await
    }

    async fn scale(&mut self, new: Option<usize>) -> Result<(), Error> {
        let olds = self.old_indices(new);
        let active: Vec<usize> = new
            .into_iter()
            .chain(olds.iter().copied())
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        // One active ReplicaSet (or none): it takes all the replicas.
        let only = match active.len() {
            0 => new.or_else(|| olds.iter().copied().max_by_key(|i| created(&self.rss[*i]))),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            self.scale_rs(i, self.replicas()).await?;
            return Ok(());
        }
        // The new ReplicaSet is saturated: the old ones go.
        if let Some(n) = new {
            let rs = &self.rss[n];
            let want = self.replicas().to_string();
            let saturated = rs
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DESIRED_REPLICAS))
                == Some(&want)
                && rs_replicas(rs) == self.replicas()
                && rs_status(rs).2 == self.replicas();
            if saturated {
                for i in olds {
                    if rs_replicas(&self.rss[i]) > 0 {
                        self.scale_rs(i, 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !is_rolling(&self.d) {
            return Ok(());
        }
        // Mid-rollout: each active ReplicaSet grows or shrinks in proportion to its size.
        let total: i32 = active.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        let allowed = if self.replicas() > 0 {
            self.replicas() + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        let mut order = active.clone();
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            let by_size = rs_replicas(rb).cmp(&rs_replicas(ra));
            // Larger first; on a tie newer first when growing, older first when shrinking.
            by_size.then_with(|| {
                if to_add > 0 {
                    created(rb).cmp(&created(ra))
                } else {
                    created(ra).cmp(&created(rb))
                }
            })
        });
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        let mut added = 0;
        for i in &order {
            let rs = &self.rss[*i];
            let p = if to_add != 0 {
                proportion(rs, &self.d, to_add, added)
            } else {
                0
            };
            added += p;
            sizes.push((*i, rs_replicas(rs) + p));
        }
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale_rs(i, size).await?;
        }
        Ok(())
    }

    async fn rollout_rolling(&mut self) -> Result<(), Error> {
        let new = self.new_replicaset(true).await?.expect("created when missing");
        // Grow the new ReplicaSet within maxSurge (upstream's reconcileNewReplicaSet).
        let want = self.replicas();
        let current = rs_replicas(&self.rss[new]);
        let scaled_up = if current > want {
            self.scale_rs(new, want).await?
        } else if current < want {
            let all: Vec<&ReplicaSet> = self.rss.iter().collect();
            let count = new_rs_new_replicas(&self.d, &all, &self.rss[new]);
            self.scale_rs(new, count).await?
        } else {
            false
        };
        if !scaled_up
            && !self.reconcile_old(new).await?
            && status::complete(&self.d, &self.preview_status(Some(new)))
        {
            self.cleanup(Some(new)).await?;
        }
        self.sync_status(Some(new)).await
    }

    /// Shrinks old ReplicaSets as far as maxUnavailable allows (upstream's `reconcileOldReplicaSets`).
    async fn reconcile_old(&mut self, new: usize) -> Result<bool, Error> {
        let olds = self.old_indices(Some(new));
        let old_count: i32 = olds.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        if old_count == 0 {
            return Ok(false);
        }
        let all_count: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = self.replicas() - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(&self.rss[new]) - rs_status(&self.rss[new]).2;
        let max_scaled_down = all_count - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // First the old ReplicaSets' unavailable pods: removing them costs no availability.
        let mut cleaned = 0;
        for i in olds.clone() {
            if cleaned >= max_scaled_down {
                break;
            }
            let (spec, available) = (rs_replicas(&self.rss[i]), rs_status(&self.rss[i]).2);
            // A status written before the last scale-down can count more available pods than the
            // spec now asks for: nothing unhealthy to clean up there (upstream refuses the same
            // "scale down" to a larger size with an error), and taking the difference would grow it.
            if spec == 0 || spec <= available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(spec - available);
            self.scale_rs(i, spec - down).await?;
            cleaned += down;
        }
        // Then available ones, oldest first, keeping minAvailable. A ReplicaSet's available pods
        // beyond its spec are about to be deleted (its status predates the last scale-down), so
        // they are not counted on: upstream's sum of statuses alone let a rollout dip below
        // minAvailable when the Deployment synced before the ReplicaSet controller did.
        let available: i32 = self
            .rss
            .iter()
            .map(|rs| rs_status(rs).2.min(rs_replicas(rs)))
            .sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for i in olds {
                if scaled >= total {
                    break;
                }
                let spec = rs_replicas(&self.rss[i]);
                if spec == 0 {
                    continue;
                }
                let down = spec.min(total - scaled);
                self.scale_rs(i, spec - down).await?;
                scaled += down;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&mut self) -> Result<(), Error> {
        let new = self.new_replicaset(false).await?;
        let mut scaled_down = false;
        for i in self.old_indices(new) {
            if rs_replicas(&self.rss[i]) > 0 {
                scaled_down |= self.scale_rs(i, 0).await?;
            }
        }
        if scaled_down || self.old_pods_running(new).await? {
            return self.sync_status(new).await;
        }
        let new = match new {
            Some(i) => i,
            None => self.new_replicaset(true).await?.expect("created when missing"),
        };
        self.scale_rs(new, self.replicas()).await?;
        if status::complete(&self.d, &self.preview_status(Some(new))) {
            self.cleanup(Some(new)).await?;
        }
        self.sync_status(Some(new)).await
    }

    /// Whether any pod of an old ReplicaSet has not finished (Recreate waits for them all).
    async fn old_pods_running(&self, new: Option<usize>) -> Result<bool, Error> {
        let old_uids: Vec<String> = self
            .old_indices(new)
            .iter()
            .filter_map(|i| self.rss[*i].metadata.uid.clone())
            .collect();
        if old_uids.is_empty() {
            return Ok(false);
        }
        let pods: Api<Pod> =
            Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let selector = self
            .d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        let selector: kube::core::Selector = selector
            .try_into()
            .map_err(|e: kube::core::ParseExpressionError| Error::InvalidSelector(e.to_string()))?;
        let list = pods.list(&ListParams::default().labels_from(&selector)).await?;
        Ok(list.items.iter().any(|p| {
            let owned = pod_util::controller_of(&p.metadata).is_some_and(|o| old_uids.contains(&o.uid));
            let finished = matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
            owned && !finished
        }))
    }

    /// Deletes the oldest scaled-down ReplicaSets beyond `revisionHistoryLimit` (upstream's
    /// `cleanupDeployment`).
    async fn cleanup(&mut self, new: Option<usize>) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = self
            .old_indices(new)
            .into_iter()
            .map(|i| &self.rss[i])
            .filter(|rs| {
                rs.metadata.deletion_timestamp.is_none() && rs_replicas(rs) == 0 && rs_status(rs).0 == 0
            })
            .collect();
        let excess = cleanable.len() as i64 - limit as i64;
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| (revision(rs), created(rs)));
        let doomed: Vec<(String, Option<String>)> = cleanable
            .iter()
            .take(excess as usize)
            .map(|rs| (rs.name_any(), rs.metadata.uid.clone()))
            .collect();
        for (name, uid) in doomed {
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid,
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.rs_api().delete(&name, &params).await {
                Ok(_) => self.rss.retain(|rs| rs.name_any() != name),
                Err(e) if pod_util_gone(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn preview_status(&self, new: Option<usize>) -> DeploymentStatus {
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        calculate_status(&self.d, &all, new.map(|i| &self.rss[i]), self.now)
    }

    /// Writes the status, with Available and Progressing, when it changed (upstream's
    /// `syncRolloutStatus`).
    async fn sync_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let mut d = self.d.clone();
        d.status = Some(self.status.clone());
        let all: Vec<&ReplicaSet> = self.rss.iter().collect();
        let new_rs = new.map(|i| &self.rss[i]);
        let mut status = calculate_status(&d, &all, new_rs, self.now);
        update_progressing(&d, &mut status, new_rs, self.now);
        self.status = status;
        self.write_status().await
    }

    async fn write_status(&mut self) -> Result<(), Error> {
        if self.d.status.as_ref() == Some(&self.status) {
            return Ok(());
        }
        let api: Api<Deployment> =
            Api::namespaced(self.ctx.client.clone(), &self.d.namespace().unwrap_or_default());
        let body = serde_json::to_value(&self.status).map_err(|e| Error::Encode(e.to_string()))?;
        api.patch_status(
            &self.d.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": body })),
        )
        .await?;
        self.d.status = Some(self.status.clone());
        Ok(())
    }
}
