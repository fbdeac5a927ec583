//! What every controller's run loop and sync share: running a kube-runtime `Controller` until
//! shutdown (then letting syncs in progress finish), writing an object's status, and retrying a
//! failed sync with the object's backoff.

use std::{
    fmt::Display,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures::{Stream, StreamExt};
use k8s_openapi::serde::{Serialize, de::DeserializeOwned};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::controller::Action,
};
use serde_json::json;

use crate::{Error, backoff::Backoff};

/// Completes when the controller is to stop taking new work (for `Controller::graceful_shutdown_on`).
pub struct Stopped(tokio::sync::oneshot::Receiver<()>);

impl Future for Stopped {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(drop)
    }
}

/// Runs the stream `start` builds until it ends or `shutdown` completes; then the [`Stopped`]
/// `start` was given completes, and syncs in progress finish. Failed syncs are logged under `name`.
pub async fn until_shutdown<S, T, E>(
    name: &'static str,
    shutdown: impl Future<Output = ()>,
    start: impl FnOnce(Stopped) -> S,
) where
    S: Stream<Item = Result<T, E>>,
    E: Display,
{
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = start(Stopped(stopped)).for_each(|result| {
        if let Err(e) = result {
            tracing::debug!(error = %e, "{name}");
        }
        std::future::ready(())
    });
    tokio::pin!(running);
    tokio::select! {
        () = &mut running => return,
        () = shutdown => {}
    }
    let _ = stop.send(());
    running.await;
}

/// Writes `status` through the object's `/status` subresource as a JSON merge patch. A merge patch
/// leaves out what is absent, so the fields of `nulls` that `status` leaves out are written as
/// null (cleared). An object deleted meanwhile has no status left to write.
pub async fn patch_status<K, S>(obj: &K, status: &S, nulls: &[&str], client: &Client) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let mut body = serde_json::to_value(status).map_err(|e| Error::Encode(e.to_string()))?;
    for field in nulls {
        if body.get(*field).is_none() {
            body[*field] = serde_json::Value::Null;
        }
    }
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    match api
        .patch_status(
            &obj.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": body })),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// After a failed sync of `obj`, retry with its exponential backoff (upstream's rate-limited
/// requeue).
pub fn retry<K: Resource>(obj: &Arc<K>, error: &Error, backoff: &Backoff) -> Action {
    let delay = backoff.next_delay(obj.meta().uid.as_deref().unwrap_or_default());
    tracing::debug!(object = %obj.name_any(), %error, ?delay, "sync failed, retrying");
    Action::requeue(delay)
}
