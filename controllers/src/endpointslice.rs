//! The EndpointSlice controller: for every Service with a selector, EndpointSlices listing the pods
//! it selects, as upstream's pkg/controller/endpointslice/endpointslice_controller.go does, on
//! kube-runtime's `Controller`.
//!
//! Services are the controller's objects. A pod event wakes the Services whose selector matches the
//! pod and those it matched before ([`memberships`]: a pod that stopped matching must leave); a
//! slice event wakes the Service named by its `kubernetes.io/service-name` label (a slice deleted or
//! edited by hand is put back). Nodes are cached for the endpoints' zones; a pod on an unknown node
//! is left out and its Service retried later, as upstream does. Each sync is
//! [`reconciler::reconcile`] over the caches, then the writes; the [`tracker`] keeps a sync from
//! acting on a cache that has not yet seen the previous sync's writes.

pub mod memberships;
pub mod reconciler;
#[cfg(test)]
mod tests;
pub mod tracker;
pub mod trigger_time;
pub mod utils;

use std::{future::Future, sync::Arc};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::{
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, PostParams, Preconditions},
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

pub use self::reconciler::{Input, MAX_ENDPOINTS_PER_SLICE, Plan, reconcile};
use self::{memberships::Memberships, tracker::SliceTracker, trigger_time::TriggerTimeTracker};
use crate::{Error, backoff::Backoff, events::EventSink, pod_control};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "endpointslice-controller";
/// Services synced at once (upstream's `--concurrent-service-endpoint-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 5;

/// How the controller is tuned.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most endpoints in one slice (upstream's `--max-endpoints-per-slice`, default 100).
    pub max_endpoints_per_slice: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_endpoints_per_slice: MAX_ENDPOINTS_PER_SLICE,
        }
    }
}

/// What every sync shares.
struct Context {
    client: Client,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    tracker: Arc<SliceTracker>,
    triggers: TriggerTimeTracker,
    backoff: Backoff,
    events: EventSink,
    options: Options,
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The namespace/name key of a Service.
fn service_key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// Runs the EndpointSlice controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, options: Options, shutdown: impl Future<Output = ()> + Send + 'static) {
    let events = EventSink::new(client.clone(), CONTROLLER_NAME);
    let tracker = Arc::new(SliceTracker::new());

    let (nodes, node_writer) = reflector::store::<Node>();
    let node_watch = watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|n| n.managed_fields_mut().clear())
        .reflect(node_writer)
        .for_each(|_| std::future::ready(()));
    let _node_watch = AbortOnDrop(tokio::spawn(node_watch));

    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p| p.managed_fields_mut().clear())
        .reflect(pod_writer)
        .touched_objects();

    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let deletions = tracker.clone();
    let slice_events = watcher(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default().labels(&format!("{}={}", utils::LABEL_MANAGED_BY, utils::MANAGED_BY)),
    )
    .default_backoff()
    .modify(|s| s.managed_fields_mut().clear())
    .inspect_ok(move |event| {
        if let watcher::Event::Delete(slice) = event {
            deletions.observed_deletion(slice.metadata.uid.as_deref().unwrap_or_default());
        }
    })
    .reflect(slice_writer)
    .touched_objects();

    // Our own Service watch (rather than the Controller's) to see deletions: what is remembered
    // about a deleted Service is dropped (its slices go with it through their owner reference).
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (services, services_writer) = reflector::store::<Service>();
    let service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|s| s.managed_fields_mut().clear())
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(svc) = event {
                let _ = gone_tx.send(service_key(svc));
            }
        })
        .reflect(services_writer)
        .touched_objects();

    let context = Arc::new(Context {
        client,
        pods: pods.clone(),
        slices,
        nodes,
        tracker,
        triggers: TriggerTimeTracker::new(),
        backoff: Backoff::new(),
        events,
        options,
    });
    let forget = {
        let ctx = context.clone();
        async move {
            while let Some(key) = gone_rx.recv().await {
                ctx.triggers.forget(&key);
                ctx.tracker.forget(&key);
                ctx.backoff.forget(&key);
            }
        }
    };
    let _forget = AbortOnDrop(tokio::spawn(forget));
    let memberships = Memberships::new();
    let service_cache = services.clone();
    crate::runner::until_shutdown("endpointslice controller", shutdown, |stopped| {
        Controller::for_stream(service_events, services)
            .with_config(Config::default().concurrency(CONCURRENT_SYNCS))
            .watches_stream(pod_events, move |pod| {
                memberships.services_for_pod(&service_cache, &pods, &pod)
            })
            .watches_stream(slice_events, |slice| service_for_slice(&slice))
            .graceful_shutdown_on(stopped)
            .run(reconcile_service, error_policy, context)
    })
    .await;
}

/// The Service a slice belongs to, by its `kubernetes.io/service-name` label.
fn service_for_slice(slice: &EndpointSlice) -> Option<ObjectRef<Service>> {
    let name = slice.labels().get(utils::LABEL_SERVICE_NAME)?;
    Some(ObjectRef::new(name).within(slice.metadata.namespace.as_deref().unwrap_or_default()))
}

/// One sync (upstream's `syncService`).
async fn reconcile_service(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    for ready in [
        crate::cache_ready::cache_ready(&ctx.pods).await,
        crate::cache_ready::cache_ready(&ctx.slices).await,
        crate::cache_ready::cache_ready(&ctx.nodes).await,
    ] {
        ready.map_err(|_| Error::CacheGone)?;
    }
    let key = service_key(&svc);
    // Services without a selector get their slices from someone else; ExternalName ones have none.
    let Some(selector) = utils::service_selector(&svc) else {
        return Ok(Action::await_change());
    };
    if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Ok(Action::await_change());
    }
    let namespace = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    // Slices pending deletion are left out, so a finalizer on one cannot wedge the Service
    // (upstream's `dropEndpointSlicesPendingDeletion`).
    let slices = ctx.slices.state_filter(|s| {
        s.metadata.namespace.as_deref() == Some(namespace.as_str())
            && s.labels().get(utils::LABEL_SERVICE_NAME) == Some(&name)
            && s.metadata.deletion_timestamp.is_none()
    });
    if ctx.tracker.stale(&key, &slices) {
        return Err(Error::StaleCache(format!(
            "slices of service {key} not yet observed"
        )));
    }
    let pods = ctx.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str())
            && utils::selects(selector, p.metadata.labels.as_ref())
    });
    let trigger_time = ctx.triggers.compute(&key, &svc, pods.iter().map(AsRef::as_ref));
    let nodes = ctx.nodes.clone();
    let node = move |name: &str| nodes.get(&ObjectRef::new(name));
    let plan = reconciler::reconcile(&Input {
        service: &svc,
        pods: &pods,
        existing: &slices,
        node: &node,
        max_endpoints_per_slice: ctx.options.max_endpoints_per_slice,
        trigger_time,
    });
    if let Err(e) = write(&svc, &key, &plan, &ctx).await {
        ctx.events.warning(
            &svc.object_ref(&()),
            "FailedToUpdateEndpointSlices",
            "UpdateEndpointSlices",
            format!("Error updating Endpoint Slices for Service {key}: {e}"),
        );
        return Err(e);
    }
    if !plan.pods_without_node.is_empty() {
        return Err(Error::StaleCache(format!(
            "pods {:?} of service {key} are on nodes not (yet) known",
            plan.pods_without_node
        )));
    }
    ctx.backoff.forget(&key);
    Ok(Action::await_change())
}

/// Carries a plan out (upstream's `finalize`), recording each write in the tracker.
async fn write(svc: &Service, key: &str, plan: &Plan, ctx: &Context) -> Result<(), Error> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    for slice in &plan.create {
        match api.create(&PostParams::default(), slice).await {
            Ok(created) => ctx.tracker.written(key, &created),
            // Every create fails in a terminating namespace; nothing more to do there.
            Err(e) if pod_control::is_namespace_terminating(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    for slice in &plan.update {
        let updated = api
            .replace(&slice.name_any(), &PostParams::default(), slice)
            .await?;
        ctx.tracker.written(key, &updated);
    }
    for slice in &plan.delete {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: slice.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&slice.name_any(), &params).await {
            Ok(_) => ctx
                .tracker
                .deleted(key, slice.metadata.uid.as_deref().unwrap_or_default()),
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// After a failed sync, retry with a per-Service exponential backoff.
fn error_policy(svc: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff.next_delay(&service_key(&svc));
    tracing::debug!(service = %service_key(&svc), %error, ?delay, "endpointslice sync failed, retrying");
    Action::requeue(delay)
}
