//! The cluster DNS's own watches: Services, EndpointSlices and Namespaces (kube-runtime reflectors,
//! as CoreDNS's `dnsController` runs client-go informers), turned into a new [`Snapshot`] shortly
//! after anything changes.
//!
//! Events are coalesced: after a change the snapshot is rebuilt once for everything that arrived in
//! the next few milliseconds, and never more often than a rebuild takes, so a burst of thousands of
//! events costs a handful of rebuilds while a single change shows up within ~10 ms.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource, ResourceExt as _,
    runtime::{
        WatchStreamExt as _,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use super::snapshot::Snapshot;

/// How long to wait after a change for more changes before rebuilding.
const COALESCE: Duration = Duration::from_millis(10);

/// Watches the cluster and publishes snapshots on `tx` until the task is aborted.
pub async fn watch_cluster(client: Client, tx: watch::Sender<Arc<Snapshot>>) {
    let changed = Arc::new(Notify::new());
    let (namespaces, ns_task) = reflect::<Namespace>(client.clone(), changed.clone());
    let (services, svc_task) = reflect::<Service>(client.clone(), changed.clone());
    let (slices, slice_task) = reflect::<EndpointSlice>(client, changed.clone());
    let _tasks = [ns_task, svc_task, slice_task].map(AbortOnDrop);
    let mut synced = false;
    loop {
        changed.notified().await;
        tokio::time::sleep(COALESCE).await;
        if !synced {
            synced = namespaces.wait_until_ready().now_or_never_ready()
                && services.wait_until_ready().now_or_never_ready()
                && slices.wait_until_ready().now_or_never_ready();
        }
        let started = std::time::Instant::now();
        let (ns, svc, eps) = (namespaces.state(), services.state(), slices.state());
        let mut snap = Snapshot::build(
            ns.iter().map(Arc::as_ref),
            svc.iter().map(Arc::as_ref),
            eps.iter().map(Arc::as_ref),
        );
        snap.synced = synced;
        tx.send_replace(Arc::new(snap));
        // Never rebuild more often than a rebuild takes: at most half of a core.
        tokio::time::sleep(started.elapsed()).await;
    }
}

/// Whether a readiness future is already complete (the store has listed once).
trait NowOrNeverReady {
    fn now_or_never_ready(self) -> bool;
}

impl<F: std::future::Future<Output = Result<(), reflector::store::WriterDropped>>> NowOrNeverReady for F {
    fn now_or_never_ready(self) -> bool {
        matches!(futures::FutureExt::now_or_never(self), Some(Ok(())))
    }
}

/// A reflector of every `K`, poking `changed` on each event.
fn reflect<K>(client: Client, changed: Arc<Notify>) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let stream = watcher(Api::<K>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|o| o.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_err(|e| tracing::debug!(error = %e, "cluster DNS watch"))
        .for_each(move |_| {
            changed.notify_one();
            std::future::ready(())
        });
    (store, tokio::spawn(stream))
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
