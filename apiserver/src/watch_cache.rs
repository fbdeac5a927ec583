//! The watch cache: one store watch per resource, fanned out to every client watch (upstream's
//! `storage/cacher`).
//!
//! For a resource prefix (e.g. `/registry/configmaps/`) the cache lists the store once, then follows a
//! single store watch. It keeps:
//! - the current objects, so lists at resourceVersion "0" ("any") are served from memory;
//! - a window of recent events, so a client that reconnects with its last resourceVersion resumes
//!   without loss. Older than the window (e.g. a revision from before an API server restart), the
//!   client gets its own store watch from that revision instead, which still works as long as the
//!   store has not compacted it away; compacted: [`WatchError::Expired`], i.e. 410 Gone. (Upstream
//!   answers 410 as soon as the revision is outside the window; serving it from the store spares the
//!   client a full re-list after every restart.)
//! - one bounded queue per client watch. Dispatch never waits: a client too slow to drain its queue is
//!   closed with [`WatchError::TooSlow`], so it never blocks the others or grows memory (the HTTP
//!   watch then ends quietly and the client watches again from the last resourceVersion it got).
//!
//! Periodic bookmarks tell idle watchers the revision the cache has reached.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    ops::Bound,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::storage::{Event, EventKind, KeyValue, ListOptions, Revision, Store, StoreError};

/// Tuning of a [`WatchCache`].
#[derive(Clone, Debug)]
pub struct WatchCacheOptions {
    /// How many recent events the resume window holds.
    pub window: usize,
    /// The queue length of one client watch before it counts as too slow.
    pub watcher_queue: usize,
    /// How often watchers that asked for bookmarks get one.
    pub bookmark_interval: Duration,
}

impl Default for WatchCacheOptions {
    fn default() -> Self {
        Self {
            window: 4096,
            watcher_queue: 1024,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// What a client watch receives.
#[derive(Clone, Debug, PartialEq)]
pub enum CacheEvent {
    /// A change to an object under the watched prefix.
    Event(Arc<Event>),
    /// "Nothing under your prefix changed up to this revision."
    Bookmark(Revision),
    /// The synthetic events of the current state are over (the `sendInitialEvents` bookmark).
    InitialEventsEnd(Revision),
}

/// Why a client watch cannot start or cannot go on.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum WatchError {
    /// The revision is older than the window (or compacted): the client must re-list.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision the client can resume after.
        oldest: Revision,
    },
    /// The client did not keep up with the events and was dropped.
    #[error("the watch was closed because the client did not keep up with its events")]
    TooSlow,
    /// The cache lost its store watch and rebuilt itself; the client must re-list.
    #[error("the watch cache was re-initialized: {0}")]
    Reinitialized(String),
    /// The cache is not (yet) synced with the store.
    #[error("the watch cache is not ready: {0}")]
    NotReady(String),
}

/// A client watch: a stream of events that ends with an `Err` when it cannot go on.
pub type CacheWatch = std::pin::Pin<Box<dyn Stream<Item = Result<CacheEvent, WatchError>> + Send>>;

struct Watcher {
    prefix: String,
    bookmarks: bool,
    tx: mpsc::Sender<CacheEvent>,
    /// Set before the sender is dropped, so the stream can end with the reason.
    closed: Arc<OnceLock<WatchError>>,
}

#[derive(Default)]
struct State {
    /// Shared, so a list hands out references instead of copying every value under the lock.
    objects: BTreeMap<String, Arc<KeyValue>>,
    /// The revision the cache reflects.
    revision: Revision,
    /// Events with revision > `floor` are all in `window`.
    floor: Revision,
    window: VecDeque<Arc<Event>>,
    watchers: HashMap<u64, Watcher>,
    next_id: u64,
}

impl State {
    fn close_all(&mut self, reason: &WatchError) {
        for (_, w) in self.watchers.drain() {
            let _ = w.closed.set(reason.clone());
        }
    }
}

/// The watch cache of one resource prefix.
pub struct WatchCache {
    prefix: String,
    store: Arc<dyn Store>,
    opts: WatchCacheOptions,
    state: Mutex<State>,
    /// Ok(()) once synced; Err(reason) while (re)initializing.
    ready: watch::Sender<Result<(), String>>,
}

impl WatchCache {
    /// Starts caching `prefix` of `store`; the returned cache syncs in the background and re-syncs
    /// by itself if its store watch breaks. The tasks stop when the cache is dropped.
    pub fn start(store: Arc<dyn Store>, prefix: &str, opts: WatchCacheOptions) -> Arc<Self> {
        let cache = Arc::new(Self {
            prefix: prefix.to_owned(),
            store: store.clone(),
            opts,
            state: Mutex::new(State::default()),
            ready: watch::channel(Err("initializing".to_owned())).0,
        });
        tokio::spawn(Self::run(Arc::downgrade(&cache), store));
        tokio::spawn(Self::bookmarks(Arc::downgrade(&cache)));
        cache
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the cache is synced, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), WatchError> {
        let mut rx = self.ready.subscribe();
        let synced = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|r| r.is_ok())).await,
            Ok(Ok(_))
        );
        if synced {
            return Ok(());
        }
        Err(WatchError::NotReady(
            rx.borrow().clone().err().unwrap_or_default(),
        ))
    }

    /// The revision the cache has reached.
    pub fn revision(&self) -> Revision {
        self.lock().revision
    }

    /// The cached objects under `prefix` (which must lie under the cache's prefix) and the revision
    /// they are at, provided the cache is at least at `min_revision`; `None` when it is not, in which
    /// case the caller reads the store.
    pub async fn list(
        &self,
        prefix: &str,
        min_revision: Revision,
    ) -> Result<Option<(Vec<Arc<KeyValue>>, Revision)>, WatchError> {
        self.wait_ready(Duration::from_secs(5)).await?;
        let state = self.lock();
        if state.revision < min_revision {
            return Ok(None);
        }
        let items = state
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok(Some((items, state.revision)))
    }

    /// The cached object at `key`, if the cache has it (it may trail the store by a moment).
    pub fn get_cached(&self, key: &str) -> Option<Arc<KeyValue>> {
        self.lock().objects.get(key).cloned()
    }

    /// A watch of `prefix` from revision `after`: every change after it, then live changes. With
    /// `after == None` the watch starts with a synthetic Create for every current object (what a
    /// watch without resourceVersion, or at "0", gets in Kubernetes).
    pub async fn watch(
        &self,
        prefix: &str,
        after: Option<Revision>,
        bookmarks: bool,
    ) -> Result<CacheWatch, WatchError> {
        self.wait_ready(Duration::from_secs(5)).await?;
        // The lock is taken in a plain function so no guard can live across an await.
        let (replay, start, rx, closed) = match self.register(prefix, after, bookmarks) {
            Some(registered) => registered,
            None => return self.watch_store(prefix, after.unwrap_or_default()).await,
        };
        let live = tokio_stream::wrappers::ReceiverStream::new(rx)
            .filter(move |ev| {
                // Events already covered by `after` can still be in flight for a future `after`.
                std::future::ready(match ev {
                    CacheEvent::Event(e) => e.revision() > start,
                    CacheEvent::Bookmark(_) | CacheEvent::InitialEventsEnd(_) => true,
                })
            })
            .map(Ok);
        let end = futures::stream::once(async move { closed.get().cloned() })
            .filter_map(|e| async move { e.map(Err) });
        Ok(Box::pin(
            futures::stream::iter(replay.into_iter().map(Ok))
                .chain(live)
                .chain(end),
        ))
    }

    /// Registers a watcher and returns what it must replay first; `None` when `after` is older than
    /// the window.
    #[allow(clippy::type_complexity)]
    fn register(
        &self,
        prefix: &str,
        after: Option<Revision>,
        bookmarks: bool,
    ) -> Option<(
        Vec<CacheEvent>,
        Revision,
        mpsc::Receiver<CacheEvent>,
        Arc<OnceLock<WatchError>>,
    )> {
        let mut state = self.lock();
        let (replay, start): (Vec<CacheEvent>, Revision) = match after {
            None => {
                let mut initial: Vec<CacheEvent> = state
                    .objects
                    .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .map(|(_, kv)| {
                        CacheEvent::Event(Arc::new(Event {
                            kind: EventKind::Create,
                            kv: KeyValue::clone(kv),
                            prev: None,
                        }))
                    })
                    .collect();
                // Watchers that take bookmarks learn where the initial state ends.
                if bookmarks {
                    initial.push(CacheEvent::InitialEventsEnd(state.revision));
                }
                (initial, state.revision)
            }
            Some(after) if after < state.floor => return None,
            // A revision newer than the cache (written under another resource) is fine: everything
            // after it will arrive through the store watch; nothing at or before it is sent.
            Some(after) => (
                state
                    .window
                    .iter()
                    .filter(|ev| ev.revision() > after && ev.kv.key.starts_with(prefix))
                    .map(|ev| CacheEvent::Event(ev.clone()))
                    .collect(),
                after,
            ),
        };
        let (tx, rx) = mpsc::channel(self.opts.watcher_queue);
        let closed = Arc::new(OnceLock::new());
        let id = state.next_id;
        state.next_id += 1;
        state.watchers.insert(
            id,
            Watcher {
                prefix: prefix.to_owned(),
                bookmarks,
                tx,
                closed: closed.clone(),
            },
        );
        Some((replay, start, rx, closed))
    }

    /// A watch served by a store watch of its own, for revisions older than the window.
    async fn watch_store(&self, prefix: &str, after: Revision) -> Result<CacheWatch, WatchError> {
        let events = self.store.watch(prefix, after).await.map_err(|e| match e {
            StoreError::Compacted { compacted, .. } => WatchError::Expired {
                requested: after,
                oldest: compacted,
            },
            e => WatchError::NotReady(e.to_string()),
        })?;
        Ok(Box::pin(events.map(move |item| match item {
            Ok(ev) => Ok(CacheEvent::Event(Arc::new(ev))),
            Err(StoreError::Compacted { compacted, .. }) => Err(WatchError::Expired {
                requested: after,
                oldest: compacted,
            }),
            Err(StoreError::WatchLagged) => Err(WatchError::TooSlow),
            Err(e) => Err(WatchError::Reinitialized(e.to_string())),
        })))
    }

    /// Applies one store event and hands it to every interested watcher.
    fn apply(&self, ev: Event) {
        let ev = Arc::new(ev);
        // Copied before the lock is taken: lists and watches wait on it.
        let current = (ev.kind != EventKind::Delete).then(|| Arc::new(ev.kv.clone()));
        let mut state = self.lock();
        match current {
            None => state.objects.remove(&ev.kv.key),
            Some(kv) => state.objects.insert(ev.kv.key.clone(), kv),
        };
        state.revision = ev.revision();
        state.window.push_back(ev.clone());
        if state.window.len() > self.opts.window
            && let Some(old) = state.window.pop_front()
        {
            state.floor = old.revision();
        }
        state.watchers.retain(|_, w| {
            if !ev.kv.key.starts_with(&w.prefix) {
                return true;
            }
            match w.tx.try_send(CacheEvent::Event(ev.clone())) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let _ = w.closed.set(WatchError::TooSlow);
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }

    /// Lists the store and follows its watch; on any break, closes the client watches and starts over.
    async fn run(this: std::sync::Weak<Self>, store: Arc<dyn Store>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(cache) = this.upgrade() else { return };
            let prefix = cache.prefix.clone();
            drop(cache);
            let reason = match sync(&store, &prefix).await {
                Ok((objects, revision, mut events)) => {
                    let Some(cache) = this.upgrade() else { return };
                    {
                        let mut state = cache.lock();
                        state.close_all(&WatchError::Reinitialized("the cache re-listed the store".into()));
                        state.objects = objects;
                        state.revision = revision;
                        state.floor = revision;
                        state.window.clear();
                    }
                    // send_replace, not send: send drops the value when nobody is waiting right now.
                    let _previous = cache.ready.send_replace(Ok(()));
                    backoff = Duration::from_millis(100);
                    drop(cache);
                    loop {
                        let item = events.next().await;
                        let Some(cache) = this.upgrade() else { return };
                        match item {
                            Some(Ok(ev)) => cache.apply(ev),
                            Some(Err(e)) => break e.to_string(),
                            None => break "the store watch ended".to_owned(),
                        }
                    }
                }
                Err(e) => e.to_string(),
            };
            let Some(cache) = this.upgrade() else { return };
            tracing::warn!(prefix = %cache.prefix, %reason, "watch cache re-syncing");
            let _previous = cache.ready.send_replace(Err(reason.clone()));
            cache.lock().close_all(&WatchError::Reinitialized(reason));
            drop(cache);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn bookmarks(this: std::sync::Weak<Self>) {
        let Some(interval) = this.upgrade().map(|c| c.opts.bookmark_interval) else {
            return;
        };
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(cache) = this.upgrade() else { return };
            let mut state = cache.lock();
            let rev = state.revision;
            // A bookmark is advisory: a full queue just skips it.
            state.watchers.retain(|_, w| {
                !w.bookmarks
                    || !matches!(
                        w.tx.try_send(CacheEvent::Bookmark(rev)),
                        Err(mpsc::error::TrySendError::Closed(_))
                    )
            });
        }
    }
}

type Synced = (
    BTreeMap<String, Arc<KeyValue>>,
    Revision,
    crate::storage::EventStream,
);

/// Lists `prefix` page by page at one revision, then opens the store watch right after it.
async fn sync(store: &Arc<dyn Store>, prefix: &str) -> Result<Synced, StoreError> {
    let mut objects = BTreeMap::new();
    let mut opts = ListOptions {
        limit: 1000,
        ..Default::default()
    };
    loop {
        let page = store.list(prefix, opts.clone()).await?;
        opts.revision = page.revision;
        opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
        objects.extend(page.kvs.into_iter().map(|kv| (kv.key.clone(), Arc::new(kv))));
        if !page.more {
            break;
        }
    }
    let events = store.watch(prefix, opts.revision).await?;
    Ok((objects, opts.revision, events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;

    const T: Duration = Duration::from_secs(5);

    async fn next(w: &mut CacheWatch) -> Result<CacheEvent, WatchError> {
        tokio::time::timeout(T, w.next())
            .await
            .expect("event in time")
            .expect("stream open")
    }

    fn rev_of(item: Result<CacheEvent, WatchError>) -> Revision {
        match item {
            Ok(CacheEvent::Event(ev)) => ev.revision(),
            other => panic!("expected an event, got {other:?}"),
        }
    }

    async fn cache_with(opts: WatchCacheOptions) -> (Arc<MemoryStore>, Arc<WatchCache>) {
        let store = Arc::new(MemoryStore::new());
        store.create("/r/cm/a/x", b"1".to_vec()).await.expect("create");
        let cache = WatchCache::start(store.clone(), "/r/cm/", opts);
        cache.wait_ready(T).await.expect("ready");
        (store, cache)
    }

    #[tokio::test]
    async fn lists_from_memory_and_resumes_from_any_revision_in_window() {
        let (store, cache) = cache_with(WatchCacheOptions::default()).await;
        let (items, rev) = cache.list("/r/cm/", 0).await.expect("list").expect("fresh");
        assert_eq!(items.len(), 1);
        let mut revs = Vec::new();
        for i in 0..10 {
            revs.push(
                store
                    .create(&format!("/r/cm/a/{i}"), b"v".to_vec())
                    .await
                    .expect("create")
                    .mod_revision,
            );
            store
                .create(&format!("/r/other/{i}"), b"v".to_vec())
                .await
                .expect("noise");
        }
        for (n, from) in std::iter::once(rev).chain(revs.iter().copied()).enumerate() {
            let mut w = cache.watch("/r/cm/", Some(from), false).await.expect("watch");
            for expected in &revs[n..] {
                assert_eq!(rev_of(next(&mut w).await), *expected);
            }
        }
        // A list that needs a newer revision than the cache has is left to the store.
        assert!(cache.list("/r/cm/", rev + 1000).await.expect("list").is_none());
    }

    #[tokio::test]
    async fn initial_state_then_live_and_subprefix_filtering() {
        let (store, cache) = cache_with(WatchCacheOptions::default()).await;
        let mut w = cache.watch("/r/cm/a/", None, false).await.expect("watch");
        let first = next(&mut w).await.expect("initial");
        assert!(
            matches!(first, CacheEvent::Event(ref e) if e.kv.key == "/r/cm/a/x" && e.kind == EventKind::Create)
        );
        store
            .create("/r/cm/b/y", b"1".to_vec())
            .await
            .expect("other namespace");
        let upd = store.create("/r/cm/a/z", b"1".to_vec()).await.expect("create");
        assert_eq!(
            rev_of(next(&mut w).await),
            upd.mod_revision,
            "only the watched sub-prefix"
        );
    }

    #[tokio::test]
    async fn resume_older_than_window_reads_the_store_until_compacted() {
        let opts = WatchCacheOptions {
            window: 3,
            ..Default::default()
        };
        let (store, cache) = cache_with(opts).await;
        let start = cache.revision();
        let mut revs = Vec::new();
        for i in 0..5 {
            revs.push(
                store
                    .create(&format!("/r/cm/a/{i}"), b"v".to_vec())
                    .await
                    .expect("create")
                    .mod_revision,
            );
        }
        tokio::time::timeout(T, async {
            while cache.revision() < start + 5 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("cache caught up");
        // Outside the window but not compacted: served from the store, complete.
        let mut w = cache
            .watch("/r/cm/", Some(start), false)
            .await
            .expect("watch from the store");
        for r in &revs {
            assert_eq!(rev_of(next(&mut w).await), *r);
        }
        store.compact(start + 2).await.expect("compact");
        let err = cache
            .watch("/r/cm/", Some(start), false)
            .await
            .err()
            .expect("expired");
        assert!(matches!(err, WatchError::Expired { .. }), "got {err:?}");
        assert!(
            cache.watch("/r/cm/", Some(start + 2), false).await.is_ok(),
            "inside the window"
        );
    }

    #[tokio::test]
    async fn a_slow_watcher_is_closed_without_blocking_others() {
        let opts = WatchCacheOptions {
            watcher_queue: 4,
            ..Default::default()
        };
        let (store, cache) = cache_with(opts).await;
        let rev = cache.revision();
        let mut slow = cache.watch("/r/cm/", Some(rev), false).await.expect("watch");
        let mut fast = cache.watch("/r/cm/", Some(rev), false).await.expect("watch");
        let mut last = 0;
        for i in 0..20 {
            last = store
                .create(&format!("/r/cm/a/{i}"), b"v".to_vec())
                .await
                .expect("create")
                .mod_revision;
            // The fast watcher drains as events come.
            assert_eq!(rev_of(next(&mut fast).await), last);
        }
        let mut got = Vec::new();
        let end = loop {
            match next(&mut slow).await {
                Ok(CacheEvent::Event(e)) => got.push(e.revision()),
                Ok(CacheEvent::Bookmark(_) | CacheEvent::InitialEventsEnd(_)) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(end, WatchError::TooSlow);
        assert_eq!(
            got.len(),
            4,
            "the slow watcher got what its queue held, then the error"
        );
        assert!(last > 0);
    }

    #[tokio::test]
    async fn bookmarks_reach_watchers_that_ask() {
        let opts = WatchCacheOptions {
            bookmark_interval: Duration::from_millis(50),
            ..Default::default()
        };
        let (_store, cache) = cache_with(opts).await;
        let rev = cache.revision();
        let mut w = cache.watch("/r/cm/", Some(rev), true).await.expect("watch");
        assert_eq!(next(&mut w).await, Ok(CacheEvent::Bookmark(rev)));
    }

    #[tokio::test]
    async fn compaction_behind_the_cache_expires_old_resumes() {
        let (store, cache) = cache_with(WatchCacheOptions::default()).await;
        let r1 = store
            .create("/r/cm/a/1", b"v".to_vec())
            .await
            .expect("create")
            .mod_revision;
        let r2 = store
            .create("/r/cm/a/2", b"v".to_vec())
            .await
            .expect("create")
            .mod_revision;
        store.compact(r2).await.expect("compact");
        // The cache still holds the window, so resuming from r1 works from memory.
        let mut w = cache.watch("/r/cm/", Some(r1), false).await.expect("watch");
        assert_eq!(rev_of(next(&mut w).await), r2);
    }
}
