//! The etcd side of `skiff bench store`: the etcd backend and raw etcd-client on the same etcd.

use std::sync::Arc;

use anyhow::Context as _;
use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp, WatchOptions};
use futures::{StreamExt as _, stream::BoxStream};
use skiff_apiserver::storage::{etcd::EtcdStore, etcd_process::EtcdProcess};

use super::Target;

/// The etcd under test; an etcd we started is stopped when this is dropped.
pub(super) struct Etcd {
    endpoint: String,
    /// Kept alive for the run: dropping it kills the etcd it started.
    process: Option<EtcdProcess>,
    backend: Arc<EtcdStore>,
    raw: Client,
}

/// Connects to `endpoint`, or starts an etcd on loopback (in a temp dir) when there is none.
pub(super) async fn connect(endpoint: Option<&str>) -> anyhow::Result<Etcd> {
    let (endpoint, process) = match endpoint {
        Some(e) => (e.to_owned(), None),
        None => {
            let process = EtcdProcess::start()
                .await
                .context("cannot start etcd (is etcd-server installed?)")?;
            (process.endpoint(), Some(process))
        }
    };
    let endpoints = [endpoint.clone()];
    let backend = EtcdStore::connect(&endpoints)
        .await
        .with_context(|| format!("etcd backend cannot connect to {endpoint}"))?;
    let raw = Client::connect(&endpoints, None)
        .await
        .with_context(|| format!("etcd-client cannot connect to {endpoint}"))?;
    Ok(Etcd {
        endpoint,
        process,
        backend: Arc::new(backend),
        raw,
    })
}

impl Etcd {
    pub(super) fn describe(&self) -> String {
        let owner = if self.process.is_some() {
            "started by this bench, temp data dir"
        } else {
            "given"
        };
        format!(
            "etcd: {} ({owner}); raw-etcd = etcd-client on the same etcd",
            self.endpoint
        )
    }

    pub(super) fn targets(&self) -> [Target; 2] {
        [
            Target::Store {
                name: "etcd-backend",
                store: self.backend.clone(),
            },
            Target::RawEtcd(Box::new(self.raw.clone())),
        ]
    }

    /// Deletes what the run wrote (it matters only on an etcd that outlives the bench).
    pub(super) async fn cleanup(&self, root: &str) {
        if self.process.is_none() {
            let mut raw = self.raw.clone();
            if let Err(e) = raw.delete(root, Some(DeleteOptions::new().with_prefix())).await {
                eprintln!("warning: cannot delete {root} from {}: {e}", self.endpoint);
            }
        }
    }
}

/// Creates `key` only if absent, in one Txn: what the etcd backend (and Kubernetes) sends.
pub(super) async fn raw_create_if_absent(
    client: &mut Client,
    key: String,
    value: &[u8],
) -> anyhow::Result<()> {
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), value, None)]);
    anyhow::ensure!(client.txn(txn).await?.succeeded(), "{key} already exists");
    Ok(())
}

/// A raw etcd watch on `prefix` from now on, as a stream of event keys; waits until etcd confirms
/// the watch is created.
pub(super) async fn raw_watch_keys(
    client: &mut Client,
    prefix: &str,
) -> anyhow::Result<BoxStream<'static, anyhow::Result<String>>> {
    let mut stream = client
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await?;
    let created = stream
        .message()
        .await?
        .context("the watch stream closed before it started")?;
    anyhow::ensure!(
        created.created(),
        "the first watch response did not confirm the watch"
    );
    Ok(stream
        .map(|resp| -> anyhow::Result<Vec<String>> {
            let resp = resp?;
            anyhow::ensure!(
                !resp.canceled(),
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            );
            Ok(resp
                .events()
                .iter()
                .filter_map(|ev| ev.kv().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()))
                .collect())
        })
        .flat_map(|batch| {
            let items: Vec<anyhow::Result<String>> = match batch {
                Ok(keys) => keys.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(items)
        })
        .boxed())
}
