//! The controller-manager of skiff, the counterpart of kube-controller-manager.
//!
//! Controllers are level-triggered reconcilers built on kube-runtime's `Controller`: they watch the
//! API server (and nothing else), keep caches of what they watch, and each sync turns the current
//! object into actions through a pure `plan()` with thin side effects around it. Issue 4 lists the
//! controllers to come; so far:
//!
//! - [`replicaset`]: keeps `spec.replicas` pods per ReplicaSet (upstream's replicaset controller).
//! - [`deployment`]: rolls Deployments out through ReplicaSets (upstream's deployment controller).
//! - [`daemon`]: one pod of each DaemonSet on every node that should run it, rolled out through
//!   ControllerRevisions (upstream's daemonset controller).
//! - [`statefulset`]: pods with stable names and network identity, created, deleted and updated
//!   in order (upstream's statefulset controller).
//! - [`job`]: runs each Job's pods to completion (upstream's job controller).
//! - [`ttlafterfinished`]: deletes finished Jobs once their `ttlSecondsAfterFinished` passed
//!   (upstream's ttl-after-finished controller).
//! - [`garbagecollector`]: deletes objects whose owners are gone and carries out foreground and
//!   orphan deletions (upstream's garbage collector).
//! - [`namespace`]: empties a namespace being deleted, then lets it go (upstream's namespace
//!   controller).
//! - [`endpointslice`]: EndpointSlices listing the pods each selector Service matches (upstream's
//!   endpointslice controller).
//! - [`endpoints`]: the legacy Endpoints object of each selector Service (upstream's endpoint
//!   controller).
//! - [`nodeipam`]: a pod CIDR for every Node (upstream's node IPAM range allocator).
//! - [`nodelifecycle`]: node health from Leases, the not-ready/unreachable taints, and the taint
//!   eviction of pods that do not tolerate them (upstream's node lifecycle and taint eviction
//!   controllers).
//!
//! Shared pieces, each named after the upstream helper it mirrors: [`expectations`]
//! (`ControllerExpectations`), [`pod_informer`] (the workload controllers' pod watch),
//! [`pod_control`] (`RealPodControl` and the controllerRef patches), [`runner`] (running a
//! controller until shutdown, status writes, retries),
//! [`ranking`] (`ActivePodsWithRanks`), [`slow_start`] (`slowStartBatch`), [`scheduling`]
//! (taints, tolerations and node affinity, shared with the scheduler), [`history`]
//! (ControllerRevisions), [`backoff`] (the
//! workqueue's per-item rate limiter), [`events`] (the event recorder) and [`pod_util`].

pub mod backoff;
pub mod cache_ready;
pub mod daemon;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod events;
pub mod expectations;
pub mod garbagecollector;
pub mod history;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod pod_control;
pub mod pod_informer;
pub mod pod_util;
pub mod ranking;
pub mod replicaset;
pub mod runner;
pub mod scheduling;
pub mod slow_start;
pub mod statefulset;
pub mod ttlafterfinished;

use std::future::Future;

use kube::Client;

use crate::events::EventSink;

/// Errors of a controller sync; a failed sync is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed.
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    /// A pod template without labels could never be matched back to its controller.
    #[error("unable to create pods, no labels")]
    NoLabels,
    /// The controller's label selector cannot be parsed.
    #[error("invalid label selector: {0}")]
    InvalidSelector(String),
    /// The pod cache is gone (its watch ended).
    #[error("the pod cache is gone")]
    CacheGone,
    /// An object from the cache has no UID (it never came from the API server).
    #[error("object without a uid")]
    MissingUid,
    /// Orphans cannot be adopted: the controller is being deleted or was replaced.
    #[error("cannot adopt pods: {0}")]
    CannotAdopt(String),
    /// The cache the plan was made from turned out stale; the sync is retried.
    #[error("stale cache: {0}")]
    StaleCache(String),
    /// Creating or deleting pods failed (also reported as the `ReplicaFailure` condition).
    #[error(transparent)]
    Manage(#[from] replicaset::ManageError),
    /// A status could not be encoded.
    #[error("encoding: {0}")]
    Encode(String),
}

/// What the controller manager's flags set (`skiff server` and `skiff controller-manager` share them).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Node IPAM: `--cluster-cidr` and the node mask size.
    pub nodeipam: nodeipam::Options,
    /// Node lifecycle: `--node-monitor-grace-period` and its companions.
    pub nodelifecycle: nodelifecycle::Options,
}

/// Runs every controller of skiff until shutdown, each as its own task (as kube-controller-manager
/// runs each controller in its own goroutines), all talking to the API server through one client.
#[derive(Clone)]
pub struct ControllerManager {
    client: Client,
    options: Options,
}

impl ControllerManager {
    /// A controller manager talking to the API server through `client`.
    pub fn new(client: Client, options: Options) -> Self {
        Self { client, options }
    }

    /// Runs all controllers until `shutdown` completes; syncs in progress then finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (fire, down) = tokio::sync::watch::channel(false);
        // Every controller gets its own view of the one signal.
        let signal = move || {
            let mut down = down.clone();
            async move {
                let _ = down.wait_for(|d| *d).await;
            }
        };
        let (client, options) = (self.client, self.options);
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(run_replicaset(client.clone(), signal()));
        tasks.spawn(run_deployment(client.clone(), signal()));
        tasks.spawn(run_daemonset(client.clone(), signal()));
        tasks.spawn(run_statefulset(client.clone(), signal()));
        tasks.spawn(run_job(client.clone(), signal()));
        tasks.spawn(ttlafterfinished::run(client.clone(), signal()));
        tasks.spawn(garbagecollector::run(client.clone(), signal()));
        tasks.spawn(namespace::run(client.clone(), signal()));
        tasks.spawn(endpointslice::run(
            client.clone(),
            endpointslice::Options::default(),
            signal(),
        ));
        tasks.spawn(endpoints::run(
            client.clone(),
            endpoints::Options::default(),
            signal(),
        ));
        tasks.spawn(nodeipam::run(client.clone(), options.nodeipam, signal()));
        tasks.spawn(nodelifecycle::run(
            client.clone(),
            options.nodelifecycle,
            signal(),
        ));
        tokio::select! {
            () = shutdown => {}
            // A controller that ends by itself (it should not) leaves the others running.
            () = async { while tasks.join_next().await.is_some() {} std::future::pending::<()>().await } => {}
        }
        fire.send_replace(true);
        // Syncs in progress finish; a controller that does not stop in time is aborted.
        let drained = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(std::time::Duration::from_secs(2), drained)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}

/// Runs the Deployment controller until `shutdown` completes.
pub async fn run_deployment(client: Client, shutdown: impl Future<Output = ()>) {
    let events = EventSink::new(client.clone(), deployment::CONTROLLER_NAME);
    deployment::run(client, events, shutdown).await;
}

/// Runs the DaemonSet controller until `shutdown` completes.
pub async fn run_daemonset(client: Client, shutdown: impl Future<Output = ()>) {
    let events = EventSink::new(client.clone(), daemon::CONTROLLER_NAME);
    daemon::run(client, events, shutdown).await;
}

/// Runs the StatefulSet controller until `shutdown` completes.
pub async fn run_statefulset(client: Client, shutdown: impl Future<Output = ()>) {
    let events = EventSink::new(client.clone(), statefulset::CONTROLLER_NAME);
    statefulset::run(client, events, shutdown).await;
}

/// Runs the Job controller until `shutdown` completes.
pub async fn run_job(client: Client, shutdown: impl Future<Output = ()>) {
    let events = EventSink::new(client.clone(), job::CONTROLLER_NAME);
    job::run(client, events, shutdown).await;
}

/// Runs the ReplicaSet controller until `shutdown` completes.
pub async fn run_replicaset(client: Client, shutdown: impl Future<Output = ()>) {
    let events = EventSink::new(client.clone(), replicaset::CONTROLLER_NAME);
    replicaset::run(client, events, shutdown).await;
}
