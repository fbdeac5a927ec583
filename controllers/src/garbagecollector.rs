//! The garbage collector: deletes objects whose owners are gone, and carries out foreground and
//! orphan deletions, as upstream's pkg/controller/garbagecollector (garbagecollector.go,
//! graph_builder.go).
//!
//! - [`monitors`] discovers every resource that supports list, watch and delete and watches each
//!   (metadata only), rediscovering every [`RESYNC_PERIOD`] so new resources join;
//! - one task applies the monitors' events to the [`graph`] (a pure ownerReference graph by UID)
//!   and queues the work they cause;
//! - attemptToDelete workers judge an object against the *live* state of its owners (the cache can
//!   lag) and delete it, remove its dangling references, or finish its owner's foreground deletion;
//! - attemptToOrphan workers remove an orphaning owner from its dependents' references, then its
//!   `orphan` finalizer.
//!
//! Failed items are retried with the per-item backoff of [`crate::backoff`].

pub mod graph;
pub mod monitors;
pub mod operations;
pub mod queue;

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::ObjectReference,
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{Client, api::PropagationPolicy};
use tokio::{sync::mpsc, task::JoinSet};

use self::{
    graph::{FOREGROUND_FINALIZER, Graph, GraphEvent, Identity, NodeView, ORPHAN_FINALIZER, Work},
    monitors::{Resource, RestMapper},
    operations::is_not_found,
    queue::WorkQueue,
};
use crate::{backoff::Backoff, events::EventSink};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "garbage-collector-controller";
/// The warning about a reference to an owner in another namespace.
pub const OWNER_REF_INVALID_NAMESPACE: &str = "OwnerRefInvalidNamespace";
/// How often discovery runs again to watch new resources (upstream's 30 s GC resync period).
pub const RESYNC_PERIOD: Duration = Duration::from_secs(30);
/// attemptToDelete workers (upstream's `--concurrent-gc-syncs` default, 20).
pub const DELETE_WORKERS: usize = 20;
/// attemptToOrphan workers.
pub const ORPHAN_WORKERS: usize = 5;

/// Why an item could not be processed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// An API request failed.
    #[error(transparent)]
    Api(#[from] kube::Error),
    /// An ownerReference names a kind the server does not serve (yet).
    #[error("unable to get REST mapping for {kind}.{api_version}")]
    RestMapping {
        /// The reference's apiVersion.
        api_version: String,
        /// The reference's kind.
        kind: String,
    },
    /// A cluster-scoped object names a namespaced owner: never valid, not retried.
    #[error("cluster-scoped objects cannot refer to namespaced owners")]
    NamespacedOwnerOfClusterScoped,
}

/// What a worker does with an item after processing it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Done: forget its failures.
    Forget,
    /// Retry after its backoff delay.
    Requeue,
}

/// The collector's shared state.
struct GarbageCollector {
    client: Client,
    graph: Mutex<Graph>,
    mapper: RwLock<RestMapper>,
    attempt_to_delete: WorkQueue,
    attempt_to_orphan: WorkQueue,
    delete_backoff: Backoff,
    orphan_backoff: Backoff,
    /// Virtual delete events go through the same channel as the monitors' events.
    graph_changes: mpsc::UnboundedSender<GraphEvent>,
    events: EventSink,
}

/// Runs the garbage collector until `shutdown` completes.
pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    let (events, mut changes) = mpsc::unbounded_channel();
    let gc = Arc::new(GarbageCollector {
        graph: Mutex::new(Graph::new()),
        mapper: RwLock::new(RestMapper::default()),
        attempt_to_delete: WorkQueue::new(),
        attempt_to_orphan: WorkQueue::new(),
        delete_backoff: Backoff::new(),
        orphan_backoff: Backoff::new(),
        graph_changes: events.clone(),
        events: EventSink::new(client.clone(), CONTROLLER_NAME),
        client,
    });

    let graph_changes = {
        let gc = gc.clone();
        async move {
            while let Some(event) = changes.recv().await {
                let work = gc.lock_graph().apply(event);
                gc.enqueue(work);
            }
        }
    };
    let delete_workers = futures::future::join_all((0..DELETE_WORKERS).map(|_| {
        let gc = gc.clone();
        async move {
            loop {
                let uid = gc.attempt_to_delete.get().await;
                let outcome = gc.attempt_to_delete_worker(&uid).await;
                gc.attempt_to_delete.done(&uid);
                match outcome {
                    Outcome::Forget => gc.delete_backoff.forget(&uid),
                    Outcome::Requeue => gc
                        .attempt_to_delete
                        .add_after(&uid, gc.delete_backoff.next_delay(&uid)),
                }
            }
        }
    }));
    let orphan_workers = futures::future::join_all((0..ORPHAN_WORKERS).map(|_| {
        let gc = gc.clone();
        async move {
            loop {
                let uid = gc.attempt_to_orphan.get().await;
                let outcome = gc.attempt_to_orphan_worker(&uid).await;
                gc.attempt_to_orphan.done(&uid);
                match outcome {
                    Outcome::Forget => gc.orphan_backoff.forget(&uid),
                    Outcome::Requeue => gc
                        .attempt_to_orphan
                        .add_after(&uid, gc.orphan_backoff.next_delay(&uid)),
                }
            }
        }
    }));
    let resync = resync_monitors(gc.clone(), events);

    tokio::select! {
        () = shutdown => {}
        _ = graph_changes => {}
        _ = delete_workers => {}
        _ = orphan_workers => {}
        () = resync => {}
    }
    // Dropping the futures stops the workers; the monitors' JoinSet aborts them.
}

/// Discovers resources every [`RESYNC_PERIOD`], starting a monitor for each new deletable resource
/// and stopping those no longer served (upstream's `Sync` → `resyncMonitors`).
async fn resync_monitors(gc: Arc<GarbageCollector>, events: mpsc::UnboundedSender<GraphEvent>) {
    let mut monitors = JoinSet::new();
    let mut running: HashMap<String, tokio::task::AbortHandle> = HashMap::new();
    loop {
        match monitors::discover(&gc.client).await {
            Ok(discovery) => {
                let found = monitors::deletable_resources(&discovery);
                *gc.mapper
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = found.mapper;
                let keys: Vec<String> = found.deletable.iter().map(Resource::key).collect();
                running.retain(|key, handle| {
                    let keep = keys.contains(key);
                    if !keep {
                        tracing::debug!(resource = %key, "garbage collector stops watching");
                        handle.abort();
                    }
                    keep
                });
                for resource in found.deletable {
                    let key = resource.key();
                    if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(key) {
                        tracing::debug!(resource = %slot.key(), "garbage collector watches");
                        slot.insert(monitors.spawn(monitors::monitor(
                            gc.client.clone(),
                            resource,
                            events.clone(),
                        )));
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
        }
        // Reap finished monitors without waiting for them.
        while monitors.try_join_next().is_some() {}
        tokio::time::sleep(RESYNC_PERIOD).await;
    }
}

impl GarbageCollector {
    fn lock_graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn enqueue(&self, work: Work) {
        for uid in &work.attempt_to_delete {
            self.attempt_to_delete.add(uid);
        }
        for uid in &work.attempt_to_delete_later {
            self.attempt_to_delete
                .add_after(uid, self.delete_backoff.next_delay(uid));
        }
        for uid in &work.attempt_to_orphan {
            self.attempt_to_orphan.add(uid);
        }
        for (dependent, owner) in &work.invalid_namespace {
            let regarding = ObjectReference {
                api_version: Some(dependent.api_version.clone()),
                kind: Some(dependent.kind.clone()),
                namespace: Some(dependent.namespace.clone()).filter(|n| !n.is_empty()),
                name: Some(dependent.name.clone()),
                uid: Some(dependent.uid.clone()),
                ..ObjectReference::default()
            };
            let invalid = Identity::of_owner(owner, &dependent.namespace);
            self.events.warning(
                &regarding,
                OWNER_REF_INVALID_NAMESPACE,
                "OwnerRefInvalidNamespace",
                format!(
                    "ownerRef {invalid} does not exist in namespace {:?}",
                    dependent.namespace
                ),
            );
        }
    }

    fn resolve(&self, api_version: &str, kind: &str) -> Result<Resource, GcError> {
        self.mapper
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .resolve(api_version, kind)
            .cloned()
            .ok_or_else(|| GcError::RestMapping {
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
            })
    }

    fn virtual_delete(&self, identity: &Identity) {
        let _ = self
            .graph_changes
            .send(GraphEvent::VirtualDelete(identity.clone()));
    }

    /// One attemptToDelete item (upstream's `attemptToDeleteWorker`).
    async fn attempt_to_delete_worker(&self, uid: &str) -> Outcome {
        // The queue holds UIDs: the node is whatever the graph has now. Gone means a delete was
        // observed meanwhile (or a virtual node was verified absent); nothing is left to do.
        let Some(item) = self.lock_graph().view(uid) else {
            return Outcome::Forget;
        };
        match self.attempt_to_delete_item(&item).await {
            Ok(Handled::VirtualDeleteQueued) => Outcome::Forget,
            Ok(Handled::Done) if item.virtual_ => {
                // Not observed by a monitor yet: look again until it is, or an object added and
                // removed while a watch was down could stay in the graph (kubernetes#56121).
                Outcome::Requeue
            }
            Ok(Handled::Done) => Outcome::Forget,
            Err(GcError::NamespacedOwnerOfClusterScoped) => Outcome::Forget,
            Err(e) => {
                tracing::debug!(item = %item.identity, error = %e, "garbage collector: error syncing item");
                Outcome::Requeue
            }
        }
    }

    /// Looks up the live object and deletes it if all its owners are gone, removes references to
    /// owners that are gone when others remain, or finishes a foreground deletion (upstream's
    /// `attemptToDeleteItem`).
    async fn attempt_to_delete_item(&self, item: &NodeView) -> Result<Handled, GcError> {
        // Being deleted is a one-way trip: wait for the final deletion, then its dependents follow.
        if item.being_deleted && !item.deleting_dependents {
            return Ok(Handled::Done);
        }
        let resource = self.resolve(&item.identity.api_version, &item.identity.kind)?;
        let latest = match operations::get_metadata(&self.client, &resource, &item.identity).await? {
            Some(latest) if latest.uid.as_deref() == Some(item.identity.uid.as_str()) => latest,
            // Absent (or replaced by another object of that name): a virtual delete event removes
            // the node, and its dependents are looked at then.
            _ => {
                self.virtual_delete(&item.identity);
                return Ok(Handled::VirtualDeleteQueued);
            }
        };
        if item.deleting_dependents {
            self.process_deleting_dependents_item(item, &resource).await?;
            return Ok(Handled::Done);
        }
        let owners = latest.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(Handled::Done);
        }
        let refs = self.classify_references(item, &owners).await?;
        tracing::trace!(item = %item.identity, ?refs, "classified references");

        if !refs.solid.is_empty() {
            if refs.dangling.is_empty() && refs.waiting.is_empty() {
                return Ok(Handled::Done);
            }
            // References to owners waiting for their dependents must go too, or those owners would
            // wait for this object forever.
            let gone: Vec<String> = refs
                .dangling
                .iter()
                .chain(&refs.waiting)
                .map(|r| r.uid.clone())
                .collect();
            tracing::debug!(item = %item.identity, owners = ?gone, "removing dangling references");
            operations::delete_owner_refs(&self.client, &resource, &item.identity, &gone).await?;
            return Ok(Handled::Done);
        }

        let policy = if !refs.waiting.is_empty() && !item.dependents.is_empty() {
            if item.dependents.iter().any(|(_, deleting)| *deleting) {
                // An owner and a dependent both delete in the foreground: a possible cycle. Make
                // this object's references non-blocking before deleting it in the foreground.
                tracing::debug!(item = %item.identity, "unblocking references to avoid a foreground cycle");
                operations::unblock_owner_refs(&self.client, &resource, &item.identity).await?;
            }
            PropagationPolicy::Foreground
        } else {
            // No solid owner: collect it, honouring a propagation it already asked for.
            policy_from_finalizers(&latest)
        };
        tracing::debug!(item = %item.identity, ?policy, "garbage collector deletes");
        match operations::delete_object(
            &self.client,
            &resource,
            &item.identity,
            latest.resource_version.as_deref(),
            &owners,
            policy,
        )
        .await
        {
            Ok(()) => Ok(Handled::Done),
            Err(e) if is_not_found(&e) => {
                self.virtual_delete(&item.identity);
                Ok(Handled::VirtualDeleteQueued)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An owner in foreground deletion: once no dependent blocks it, its finalizer goes; until
    /// then its blocking dependents are deleted (upstream's `processDeletingDependentsItem`).
    async fn process_deleting_dependents_item(
        &self,
        item: &NodeView,
        resource: &Resource,
    ) -> Result<(), GcError> {
        let blocking = self.lock_graph().blocking_dependents(&item.identity.uid);
        if blocking.is_empty() {
            tracing::debug!(item = %item.identity, "removing the foregroundDeletion finalizer");
            operations::remove_finalizer(&self.client, resource, &item.identity, FOREGROUND_FINALIZER)
                .await?;
            return Ok(());
        }
        for (uid, deleting) in &item.dependents {
            if !deleting && blocking.contains(uid) {
                self.attempt_to_delete.add(uid);
            }
        }
        Ok(())
    }

    /// Sorts an object's references into solid owners, dangling ones, and owners waiting for their
    /// dependents, each verified against the API server (upstream's `classifyReferences`).
    async fn classify_references(
        &self,
        item: &NodeView,
        owners: &[OwnerReference],
    ) -> Result<References, GcError> {
        let mut refs = References::default();
        for reference in owners {
            match self.is_dangling(reference, item).await? {
                None => refs.dangling.push(reference.clone()),
                Some(owner) => {
                    let waiting = owner.deletion_timestamp.is_some()
                        && owner
                            .finalizers
                            .iter()
                            .flatten()
                            .any(|f| f == FOREGROUND_FINALIZER);
                    if waiting {
                        refs.waiting.push(reference.clone());
                    } else {
                        refs.solid.push(reference.clone());
                    }
                }
            }
        }
        Ok(refs)
    }

    /// The live owner `reference` points at, or `None` if it does not exist (absent, or another
    /// object with that name); owners found absent are remembered (upstream's `isDangling`).
    async fn is_dangling(
        &self,
        reference: &OwnerReference,
        item: &NodeView,
    ) -> Result<Option<ObjectMeta>, GcError> {
        let mut key = Identity {
            api_version: reference.api_version.clone(),
            kind: reference.kind.clone(),
            namespace: String::new(),
            name: reference.name.clone(),
            uid: reference.uid.clone(),
        };
        {
            let graph = self.lock_graph();
            if graph.absent.has(&key) {
                return Ok(None);
            }
            key.namespace = item.identity.namespace.clone();
            if graph.absent.has(&key) {
                return Ok(None);
            }
        }
        let resource = self.resolve(&reference.api_version, &reference.kind)?;
        if !resource.namespaced {
            key.namespace.clear();
        }
        if item.identity.namespace.is_empty() && resource.namespaced {
            return Err(GcError::NamespacedOwnerOfClusterScoped);
        }
        match operations::get_metadata(&self.client, &resource, &key).await? {
            Some(owner) if owner.uid.as_deref() == Some(reference.uid.as_str()) => Ok(Some(owner)),
            _ => {
                self.lock_graph().absent.add(key);
                Ok(None)
            }
        }
    }

    /// One attemptToOrphan item: remove the owner from its dependents' references, then its
    /// `orphan` finalizer (upstream's `attemptToOrphanWorker`).
    async fn attempt_to_orphan_worker(&self, uid: &str) -> Outcome {
        let Some(owner) = self.lock_graph().view(uid) else {
            return Outcome::Forget;
        };
        match self.orphan_dependents(&owner).await {
            Ok(()) => Outcome::Forget,
            Err(e) => {
                tracing::debug!(owner = %owner.identity, error = %e, "garbage collector: orphaning failed");
                Outcome::Requeue
            }
        }
    }

    async fn orphan_dependents(&self, owner: &NodeView) -> Result<(), GcError> {
        let dependents: Vec<Identity> = {
            let graph = self.lock_graph();
            owner
                .dependents
                .iter()
                .filter_map(|(uid, _)| graph.node(uid).map(|n| n.identity.clone()))
                .collect()
        };
        let owner_uid = [owner.identity.uid.clone()];
        let patches = dependents.iter().map(|dep| async {
            let resource = self.resolve(&dep.api_version, &dep.kind)?;
            operations::delete_owner_refs(&self.client, &resource, dep, &owner_uid).await?;
            Ok::<(), GcError>(())
        });
        for result in futures::future::join_all(patches).await {
            result?;
        }
        let resource = self.resolve(&owner.identity.api_version, &owner.identity.kind)?;
        operations::remove_finalizer(&self.client, &resource, &owner.identity, ORPHAN_FINALIZER).await?;
        Ok(())
    }
}

/// How an attemptToDelete item ended without error.
#[derive(Debug)]
enum Handled {
    /// Processed.
    Done,
    /// The object is gone: a virtual delete event will update the graph.
    VirtualDeleteQueued,
}

/// An object's references, by the state of the owner they point at.
#[derive(Debug, Default)]
struct References {
    /// The owner exists and is not waiting for its dependents.
    solid: Vec<OwnerReference>,
    /// The owner does not exist.
    dangling: Vec<OwnerReference>,
    /// The owner is being deleted in the foreground.
    waiting: Vec<OwnerReference>,
}

/// The propagation for collecting an object: what its own finalizers already ask for, else
/// Background.
fn policy_from_finalizers(meta: &ObjectMeta) -> PropagationPolicy {
    let has = |f: &str| meta.finalizers.iter().flatten().any(|x| x == f);
    if has(ORPHAN_FINALIZER) {
        PropagationPolicy::Orphan
    } else if has(FOREGROUND_FINALIZER) {
        PropagationPolicy::Foreground
    } else {
        PropagationPolicy::Background
    }
}
