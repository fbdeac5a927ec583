//! The etcd backend: [`Store`] on etcd v3 through etcd-client (behind the `etcd` cargo feature).
//!
//! The Store contract *is* etcd's, so this backend is mostly a translation:
//!
//! - `create` is a Txn `create_revision(key) == 0 → put`;
//! - `update` / guarded `delete` are Txns `mod_revision(key) == expected && version(key) > 0 → write`,
//!   whose failure branch reads the key in the same Txn, so Conflict / NotFound is decided atomically;
//! - `list` is a ranged get `[start, prefix_end)` with `limit` at a fixed revision (etcd's `more` flag
//!   says whether a page follows); `RangeStream` is not used, it needs etcd 3.7;
//! - `watch` is an etcd watch with `prev_kv` from `after + 1`; the returned stream owns the gRPC
//!   watch stream, so the watch lives exactly as long as the caller keeps the stream.
//!
//! etcd 3.4 has no API that reports the compact revision. [`EtcdStore::compacted_revision`] finds
//! it: a read at revision `r` fails as compacted exactly when `r` is below it, so one read at the last
//! known value confirms it and a binary search finds a newer one (set by another apiserver, or before a
//! restart).
//!
//! Errors: connection failures and timeouts are [`StoreError::Unavailable`], etcd's "required
//! revision has been compacted" / "is a future revision" become [`StoreError::Compacted`] /
//! [`StoreError::FutureRevision`], anything else is [`StoreError::Internal`] with etcd's message.

use std::{
    collections::VecDeque,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchResponse, WatchStream,
};

use super::{
    Event, EventKind, EventStream, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreError,
    prefix_end,
};

/// How long connecting (and the first status call) may take before the store counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take. Not applied through gRPC's deadline (that would also end watches).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response accepted from etcd (big lists); etcd-client's default of 4 MiB is too small.
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// A key used for revision-only reads (current and compacted revision); it never needs to exist.
const PROBE_KEY: &[u8] = b"\0skiff-probe";

/// A [`Store`] backed by an etcd v3 cluster.
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    endpoints: Vec<String>,
    /// A lower bound of etcd's compact revision: our own compactions and what errors told us.
    compacted: Arc<AtomicI64>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd and proves it answers (a `status` call), all within [`CONNECT_TIMEOUT`].
    /// An unreachable etcd fails with [`StoreError::Unavailable`] ("cannot reach etcd at ...").
    pub async fn connect(endpoints: &[String]) -> Result<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoints given".into()));
        }
        let joined = endpoints.join(",");
        let unreachable =
            |why: String| StoreError::Unavailable(format!("cannot reach etcd at {joined}: {why}"));
        let options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            // Detects a dead etcd under a long-lived watch; etcd refuses pings more often than 5 s.
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        let check = async {
            let mut client = Client::connect(endpoints, Some(options)).await?;
            let status = client.status().await?;
            Ok::<_, etcd_client::Error>((client, status))
        };
        let (client, status) = match tokio::time::timeout(CONNECT_TIMEOUT, check).await {
            Ok(Ok(ok)) => ok,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        tracing::info!(endpoints = %joined, version = status.version(), "connected to etcd");
        Ok(EtcdStore {
            kv: client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            endpoints: endpoints.to_vec(),
            compacted: Arc::new(AtomicI64::new(0)),
        })
    }

    /// The endpoints this store was connected with.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Runs one etcd request under [`REQUEST_TIMEOUT`], mapping its error with revision awareness
    /// (`requested` is the revision the request reads at, 0 for none).
    async fn call<T>(
        &self,
        requested: Revision,
        fut: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(REQUEST_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.map_error(e, requested).await),
            Err(_) => Err(timed_out()),
        }
    }

    async fn map_error(&self, e: etcd_client::Error, requested: Revision) -> StoreError {
        match classify(&e) {
            Kind::Compacted => {
                let compacted = match self.find_compacted().await {
                    Ok(c) => c,
                    Err(_) => self.compacted.load(Ordering::Acquire),
                };
                StoreError::Compacted { requested, compacted }
            }
            Kind::Future => {
                let current = self.header_revision().await.unwrap_or(0);
                StoreError::FutureRevision { requested, current }
            }
            Kind::Unavailable => StoreError::Unavailable(format!("etcd: {e}")),
            Kind::Other => StoreError::Internal(format!("etcd: {e}")),
        }
    }

    /// The store's current revision, from the header of a cheap read (no revision-aware mapping).
    async fn header_revision(&self) -> Result<Revision> {
        let mut kv = self.kv.clone();
        let resp = timed(kv.get(PROBE_KEY, Some(GetOptions::new().with_count_only())))
            .await?
            .map_err(plain_error)?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Whether a read at `revision` is still served (false: compacted away).
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let mut kv = self.kv.clone();
        let opts = GetOptions::new().with_count_only().with_revision(revision);
        match timed(kv.get(PROBE_KEY, Some(opts))).await? {
            Ok(_) => Ok(true),
            Err(e) if classify(&e) == Kind::Compacted => Ok(false),
            Err(e) => Err(plain_error(e)),
        }
    }

    /// etcd's compact revision (0 if never compacted). See the module docs.
    async fn find_compacted(&self) -> Result<Revision> {
        let known = self.compacted.load(Ordering::Acquire);
        // A read at r fails as compacted exactly when r < C, and known <= C.
        if self.readable_at(known.max(1)).await? {
            return Ok(known);
        }
        // known < C <= current: find the smallest readable revision.
        let (mut unreadable, mut readable) = (known.max(1), self.header_revision().await?);
        while readable - unreadable > 1 {
            let mid = unreadable + (readable - unreadable) / 2;
            if self.readable_at(mid).await? {
                readable = mid;
            } else {
                unreadable = mid;
            }
        }
        self.compacted.fetch_max(readable, Ordering::AcqRel);
        Ok(readable)
    }
}

/// Validates a comma-separated endpoint list (`http://host:port[,http://host:port...]`), as given to
/// `--datastore-endpoint`, and returns the endpoints normalized (no trailing slash).
pub fn parse_endpoints(s: &str) -> std::result::Result<Vec<String>, String> {
    if s.trim().is_empty() {
        return Err("no etcd endpoints given: expected http://host:port[,http://host:port...]".into());
    }
    s.split(',')
        .map(|entry| parse_endpoint(entry.trim(), s))
        .collect()
}

fn parse_endpoint(entry: &str, all: &str) -> std::result::Result<String, String> {
    if entry.is_empty() {
        return Err(format!(
            "empty entry in etcd endpoint list {all:?}: expected http://host:port[,...]"
        ));
    }
    let Some((scheme, rest)) = entry.split_once("://") else {
        return Err(format!(
            "etcd endpoint {entry:?} has no scheme: expected http://host:port"
        ));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "http" => {}
        "https" => {
            return Err(format!(
                "etcd endpoint {entry:?}: https is not supported yet (this build has no etcd TLS); use http://"
            ));
        }
        other => {
            return Err(format!(
                "etcd endpoint {entry:?}: unsupported scheme {other:?}, expected http://"
            ));
        }
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "etcd endpoint {entry:?}: expected http://host:port with no path, query or user"
        ));
    }
    let Some((host, port)) = authority.rsplit_once(':') else {
        return Err(format!(
            "etcd endpoint {entry:?} has no port: expected http://host:port (etcd uses 2379)"
        ));
    };
    if host.is_empty() {
        return Err(format!("etcd endpoint {entry:?} has no host"));
    }
    if host.starts_with('[') != host.ends_with(']') || (!host.starts_with('[') && host.contains(':')) {
        return Err(format!(
            "etcd endpoint {entry:?}: an IPv6 host must be in brackets, e.g. http://[::1]:2379"
        ));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(format!("http://{host}:{p}")),
        _ => Err(format!("etcd endpoint {entry:?} has an invalid port {port:?}")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Compacted,
    Future,
    Unavailable,
    Other,
}

fn classify(e: &etcd_client::Error) -> Kind {
    use etcd_client::Error as E;
    match e {
        E::GRpcStatus(status) => {
            let msg = status.message();
            if msg.contains("required revision has been compacted") {
                Kind::Compacted
            } else if msg.contains("required revision is a future revision") {
                Kind::Future
            } else {
                // Cancelled, DeadlineExceeded, Unavailable (tonic also reports failed connects so).
                match status.code() as i32 {
                    1 | 4 | 14 => Kind::Unavailable,
                    _ if msg.contains("transport error") || msg.contains("connect") => Kind::Unavailable,
                    _ => Kind::Other,
                }
            }
        }
        E::TransportError(_) | E::IoError(_) | E::EndpointError(_) => Kind::Unavailable,
        _ => Kind::Other,
    }
}

/// Maps an error without looking anything up (used by the lookups themselves).
fn plain_error(e: etcd_client::Error) -> StoreError {
    match classify(&e) {
        Kind::Unavailable => StoreError::Unavailable(format!("etcd: {e}")),
        _ => StoreError::Internal(format!("etcd: {e}")),
    }
}

fn timed_out() -> StoreError {
    StoreError::Unavailable(format!("etcd did not answer within {REQUEST_TIMEOUT:?}"))
}

async fn timed<T>(fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| timed_out())
}

fn key_string(key: &[u8]) -> Result<String> {
    String::from_utf8(key.to_vec()).map_err(|_| {
        StoreError::Internal(format!(
            "etcd holds a non-UTF-8 key {:?}",
            String::from_utf8_lossy(key)
        ))
    })
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: key_string(kv.key())?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

/// etcd rejects an empty key; the range starting at "\0" holds every key there can be.
fn range_start(key: Vec<u8>) -> Vec<u8> {
    if key.is_empty() { vec![0] } else { key }
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    h.map(|h| h.revision())
        .ok_or_else(|| StoreError::Internal("etcd response without a header".into()))
}

/// Reads the key returned by a Txn's failure branch (a single get).
fn failure_get(resp: &etcd_client::TxnResponse) -> Result<Option<KeyValue>> {
    match resp.op_responses().first() {
        Some(TxnOpResponse::Get(get)) => get.kvs().first().map(to_kv).transpose(),
        _ => Err(StoreError::Internal(
            "etcd txn failure branch returned no read".into(),
        )),
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.header_revision().await
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<(Option<KeyValue>, Revision)> {
        let mut kv = self.kv.clone();
        let opts = GetOptions::new().with_revision(revision.max(0));
        let resp = self.call(revision, kv.get(key, Some(opts))).await?;
        let at = if revision > 0 {
            revision
        } else {
            header_rev(resp.header())?
        };
        Ok((resp.kvs().first().map(to_kv).transpose()?, at))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut kv = self.kv.clone();
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)]);
        let resp = self.call(0, kv.txn(txn)).await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.to_owned() });
        }
        let rev = header_rev(resp.header())?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let mut kv = self.kv.clone();
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key, CompareOp::Equal, expected),
                Compare::version(key, CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.call(0, kv.txn(txn)).await?;
        if !resp.succeeded() {
            return match failure_get(&resp)? {
                Some(cur) => Err(StoreError::Conflict {
                    key: key.to_owned(),
                    expected,
                    actual: cur.mod_revision,
                }),
                None => Err(StoreError::NotFound(key.to_owned())),
            };
        }
        let rev = header_rev(resp.header())?;
        // The key existed (version > 0), so the put kept its create revision: the previous one.
        let create_revision = match resp.op_responses().first() {
            Some(TxnOpResponse::Put(put)) => put.prev_key().map(|p| p.create_revision()),
            _ => None,
        }
        .ok_or_else(|| StoreError::Internal("etcd put returned no previous value".into()))?;
        Ok(KeyValue {
            key: key.to_owned(),
            value,
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let mut kv = self.kv.clone();
        let del_opts = DeleteOptions::new().with_prev_key();
        let (rev, prev) = match expected {
            Some(expected) => {
                let txn = Txn::new()
                    .when([
                        Compare::mod_revision(key, CompareOp::Equal, expected),
                        Compare::version(key, CompareOp::Greater, 0),
                    ])
                    .and_then([TxnOp::delete(key, Some(del_opts))])
                    .or_else([TxnOp::get(key, None)]);
                let resp = self.call(0, kv.txn(txn)).await?;
                if !resp.succeeded() {
                    return match failure_get(&resp)? {
                        Some(cur) => Err(StoreError::Conflict {
                            key: key.to_owned(),
                            expected,
                            actual: cur.mod_revision,
                        }),
                        None => Err(StoreError::NotFound(key.to_owned())),
                    };
                }
                let prev = match resp.op_responses().first() {
                    Some(TxnOpResponse::Delete(del)) => del.prev_kvs().first().map(to_kv).transpose()?,
                    _ => None,
                };
                (header_rev(resp.header())?, prev)
            }
            None => {
                let resp = self.call(0, kv.delete(key, Some(del_opts))).await?;
                (
                    header_rev(resp.header())?,
                    resp.prev_kvs().first().map(to_kv).transpose()?,
                )
            }
        };
        match prev {
            Some(prev) => Ok((prev, rev)),
            None => Err(StoreError::NotFound(key.to_owned())),
        }
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let mut kv = self.kv.clone();
        let start = match &opts.start_after {
            // The first key after `start_after`, but never before the prefix.
            Some(after) if after.as_str() >= prefix => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ => prefix.as_bytes().to_vec(),
        };
        let mut get = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_revision(opts.revision.max(0));
        if opts.limit > 0 {
            get = get.with_limit(i64::try_from(opts.limit).unwrap_or(i64::MAX));
        }
        let resp = self
            .call(opts.revision, kv.get(range_start(start), Some(get)))
            .await?;
        let revision = if opts.revision > 0 {
            opts.revision
        } else {
            header_rev(resp.header())?
        };
        let kvs = resp.kvs().iter().map(to_kv).collect::<Result<Vec<_>>>()?;
        Ok(ListPage {
            kvs,
            revision,
            more: resp.more(),
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let mut kv = self.kv.clone();
        let opts = GetOptions::new().with_range(prefix_end(prefix)).with_count_only();
        let resp = self
            .call(0, kv.get(range_start(prefix.as_bytes().to_vec()), Some(opts)))
            .await?;
        Ok(usize::try_from(resp.count()).unwrap_or(0))
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        let after = after.max(0);
        let known = self.compacted.load(Ordering::Acquire);
        // etcd serves events from the compact revision on: from after + 1 >= C.
        if after + 1 < known {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: known,
            });
        }
        let mut client = self.watch.clone();
        let opts = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(after + 1)
            .with_prev_key();
        let mut stream = self
            .call(
                0,
                client.watch(range_start(prefix.as_bytes().to_vec()), Some(opts)),
            )
            .await?;
        // Wait for etcd to confirm the watch: from then on nothing after `after` can be missed.
        loop {
            let resp = match timed(stream.message()).await? {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    return Err(StoreError::Unavailable(
                        "etcd closed the watch before creating it".into(),
                    ));
                }
                Err(e) => return Err(plain_error(e)),
            };
            if resp.compact_revision() > 0 {
                self.compacted
                    .fetch_max(resp.compact_revision(), Ordering::AcqRel);
                return Err(StoreError::Compacted {
                    requested: after,
                    compacted: resp.compact_revision(),
                });
            }
            if resp.canceled() {
                return Err(StoreError::Internal(format!(
                    "etcd refused the watch: {}",
                    resp.cancel_reason()
                )));
            }
            if resp.created() {
                break;
            }
        }
        let state = WatchState {
            stream: Some(stream),
            pending: VecDeque::new(),
            after,
            compacted: self.compacted.clone(),
        };
        Ok(Box::pin(futures::stream::unfold(state, WatchState::next)))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        if revision <= 0 {
            return Ok(());
        }
        let mut kv = self.kv.clone();
        let opts = CompactionOptions::new().with_physical();
        match tokio::time::timeout(REQUEST_TIMEOUT, kv.compact(revision, Some(opts))).await {
            Err(_) => Err(timed_out()),
            Ok(Ok(_)) => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            // Already compacted at or past `revision`: nothing to do (as in the other backends).
            Ok(Err(e)) if classify(&e) == Kind::Compacted => {
                self.compacted.fetch_max(revision, Ordering::AcqRel);
                Ok(())
            }
            Ok(Err(e)) => Err(self.map_error(e, revision).await),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        self.find_compacted().await
    }

    fn backend(&self) -> &'static str {
        "etcd"
    }
}

/// The state of a running watch: it owns the gRPC watch stream (request and response halves), so
/// etcd keeps the watch until the caller drops the [`EventStream`].
struct WatchState {
    stream: Option<WatchStream>,
    pending: VecDeque<Event>,
    after: Revision,
    compacted: Arc<AtomicI64>,
}

impl WatchState {
    async fn next(mut self) -> Option<(Result<Event>, WatchState)> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some((Ok(ev), self));
            }
            let stream = self.stream.as_mut()?;
            let err = match stream.message().await {
                Ok(Some(resp)) => match self.absorb(&resp) {
                    Ok(()) => continue,
                    Err(e) => e,
                },
                Ok(None) => StoreError::Unavailable("etcd closed the watch".into()),
                Err(e) => plain_error(e),
            };
            // The watch cannot go on: end the stream with this error.
            self.stream = None;
            return Some((Err(err), self));
        }
    }

    fn absorb(&mut self, resp: &WatchResponse) -> Result<()> {
        if resp.compact_revision() > 0 {
            self.compacted
                .fetch_max(resp.compact_revision(), Ordering::AcqRel);
            return Err(StoreError::Compacted {
                requested: self.after,
                compacted: resp.compact_revision(),
            });
        }
        if resp.canceled() {
            return Err(StoreError::Unavailable(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason()
            )));
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let prev = ev.prev_kv().map(to_kv).transpose()?;
            let event = match ev.event_type() {
                EventType::Put => {
                    let kv = to_kv(kv)?;
                    if kv.create_revision == kv.mod_revision {
                        Event {
                            kind: EventKind::Create,
                            kv,
                            prev: None,
                        }
                    } else {
                        Event {
                            kind: EventKind::Update,
                            kv,
                            prev,
                        }
                    }
                }
                EventType::Delete => Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key: key_string(kv.key())?,
                        value: Vec::new(),
                        create_revision: prev.as_ref().map(|p| p.create_revision).unwrap_or(0),
                        mod_revision: kv.mod_revision(),
                    },
                    prev,
                },
            };
            self.after = event.kv.mod_revision;
            self.pending.push_back(event);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            parse_endpoints("http://127.0.0.1:2379").unwrap(),
            ["http://127.0.0.1:2379"]
        );
        assert_eq!(
            parse_endpoints(" http://a:1/ , http://[::1]:2379").unwrap(),
            ["http://a:1", "http://[::1]:2379"]
        );
        for bad in [
            "",
            "http://a:1,",
            "ftp://a:1",
            "a:2379",
            "http://a",
            "http://a:x",
            "http://:1",
            "http://a:1/p",
        ] {
            assert!(parse_endpoints(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
