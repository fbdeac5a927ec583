//! Joins a watch's replayed history to the live event stream of an in-process backend.
//!
//! The embedded backends (SQLite, memory) publish every committed event on a broadcast channel. A watch
//! from revision N subscribes to that channel *first*, then reads history up to the revision committed
//! at that moment, then follows the channel while skipping what the history already delivered. That
//! order is what guarantees "no gap, no duplicate": an event is either committed before the history
//! read (and so in it) or published after the subscription (and so on the channel).

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};

use super::{Event, EventStream, Revision, StoreError};

/// How many committed events the live channel holds for a slow subscriber before it lags. A store
/// watcher is usually one per resource (the watch cache), so this bounds memory, not fan-out.
pub const LIVE_CAPACITY: usize = 16 * 1024;

/// The sending side: backends call [`Hub::publish`] after each commit, in revision order.
#[derive(Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<Event>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(LIVE_CAPACITY).0,
        }
    }
}

impl Hub {
    /// Subscribes to events published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.tx.subscribe()
    }

    /// Publishes committed events (a send with no subscriber is not an error).
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        for ev in events {
            let _ = self.tx.send(Arc::new(ev));
        }
    }
}

/// The stream of a watch under `prefix`: `history` (events with revision in `(after, read_at]`, in
/// order), then live events from `live` newer than the last one delivered. A subscriber that lags
/// behind the live channel gets [`StoreError::WatchLagged`] and the stream ends.
pub fn follow(
    history: Vec<Event>,
    live: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    read_at: Revision,
) -> EventStream {
    let mut delivered = read_at;
    let live = BroadcastStream::new(live)
        .map(move |item| match item {
            Ok(ev) if ev.revision() > delivered && ev.kv.key.starts_with(&prefix) => {
                delivered = ev.revision();
                Some(Ok(Event::clone(&ev)))
            }
            Ok(_) => None,
            Err(BroadcastStreamRecvError::Lagged(_)) => Some(Err(StoreError::WatchLagged)),
        })
        .filter_map(std::future::ready)
        // Stop after the first error: a lagged watch cannot go on without a gap.
        .scan(false, |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            *failed = item.is_err();
            std::future::ready(Some(item))
        });
    Box::pin(futures::stream::iter(history.into_iter().map(Ok)).chain(live))
}
