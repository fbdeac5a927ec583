//! The Store: the only source of truth of a skiff cluster, with etcd's key-value semantics.
//!
//! Every backend (embedded SQLite, etcd, memory) implements [`Store`] with exactly the same contract,
//! which is etcd v3's (and so the one the Kubernetes apiserver's `storage.Interface` is built on):
//!
//! - one global **revision** that increases by one with every successful write, across all keys;
//! - **create** succeeds only if the key is absent; **update** and **delete** are guarded by the
//!   `mod_revision` the caller last saw (compare-and-swap), so two writers never both win;
//! - **reads at a fixed revision**: a paged `list` pins the revision of its first page and every later
//!   page is read at that same revision, so a client paging through a prefix sees one snapshot even
//!   while writes continue;
//! - **watch** from a revision delivers every change after it, in revision order, with the previous
//!   value, without gaps or duplicates;
//! - **compaction** forgets history before a revision; a read or watch at an older revision then fails
//!   with [`StoreError::Compacted`], which the API server turns into `410 Gone` ("Expired").
//!
//! resourceVersion in the Kubernetes API is this revision, printed as a decimal string.
//! The conformance suite in [`conformance`] checks all of this on every backend.

use std::{fmt, pin::Pin};

use async_trait::async_trait;
use futures::Stream;

pub mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod etcd_process;
pub mod fanout;
pub mod memory;
pub mod sqlite;

/// A store revision (etcd's `int64` revision). 0 means "no revision" / "latest" where documented.
pub type Revision = i64;

/// One stored value and the revisions that describe its history.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The full key, e.g. `/registry/configmaps/default/app`.
    pub key: String,
    /// The value bytes (JSON for Kubernetes objects).
    pub value: Vec<u8>,
    /// The revision at which this key was last created.
    pub create_revision: Revision,
    /// The revision of the write that produced this value.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value", &String::from_utf8_lossy(&self.value))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// What a write did to a key, as seen by a watcher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// The key did not exist before this write.
    Create,
    /// The key existed and got a new value.
    Update,
    /// The key was deleted.
    Delete,
}

/// One change, delivered by [`Store::watch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Create, update or delete.
    pub kind: EventKind,
    /// The key after the change. For a delete, `value` is empty and `mod_revision` is the revision of
    /// the delete itself; `create_revision` is the one the deleted key had.
    pub kv: KeyValue,
    /// The value before the change (`None` for a create).
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the write that produced this event.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// One page of a [`Store::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// Matching live keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the page was read at. Later pages must be requested at this revision.
    pub revision: Revision,
    /// True when more keys follow the last one returned.
    pub more: bool,
}

/// Options of a [`Store::list`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Only return keys strictly greater than this one (the continuation of a previous page).
    pub start_after: Option<String>,
    /// Read at this revision; 0 reads the latest.
    pub revision: Revision,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

/// Errors every backend maps its own failures onto.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The key does not exist (update or delete of an absent key).
    #[error("key {0:?} not found")]
    NotFound(String),
    /// Create of a key that exists.
    #[error("key {key:?} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The guarded write lost: the key's mod revision is no longer the one the caller gave.
    #[error("key {key:?} was modified: expected mod revision {expected}, found {actual}")]
    Conflict {
        /// The key.
        key: String,
        /// The mod revision the caller expected.
        expected: Revision,
        /// The key's mod revision now (0 if it has been deleted).
        actual: Revision,
    },
    /// The requested revision is older than the oldest one kept.
    #[error("required revision {requested} has been compacted (compacted up to {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The store's compact revision.
        compacted: Revision,
    },
    /// The requested revision has not been written yet.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's current revision.
        current: Revision,
    },
    /// A watcher fell too far behind the live stream and was dropped; it must re-list or resume.
    #[error("watch fell behind the store and was closed")]
    WatchLagged,
    /// The backend cannot be reached or refused the operation.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend failed in a way the caller cannot fix (corrupt data, I/O error).
    #[error("store error: {0}")]
    Internal(String),
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The stream a [`Store::watch`] returns. It ends with an `Err` item when the watch cannot go on.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event>> + Send>>;

/// etcd's key-value contract, implemented by every backend. See the module docs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The revision of the latest committed write (0 for an empty store that never saw a write).
    async fn current_revision(&self) -> Result<Revision>;

    /// The value of `key` at `revision` (0 = latest), and the revision the read was served at.
    async fn get(&self, key: &str, revision: Revision) -> Result<(Option<KeyValue>, Revision)>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it is present.
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;

    /// Replaces the value of `key` if its mod revision is still `expected`.
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue>;

    /// Deletes `key`, if `expected` is given only when its mod revision is still that. Returns the
    /// deleted value and the revision of the delete.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)>;

    /// Live keys under `prefix`, in key order, read at one revision (see [`ListOptions`]).
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage>;

    /// Counts live keys under `prefix` at the latest revision.
    async fn count(&self, prefix: &str) -> Result<usize>;

    /// Every change to keys under `prefix` with a revision greater than `after`, in revision order,
    /// followed by changes as they happen. Fails with [`StoreError::Compacted`] when `after` is older
    /// than the compacted history.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream>;

    /// Forgets the history before `revision`: only the newest version of each key at or before it
    /// remains. Reads and watches before it then fail with [`StoreError::Compacted`].
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision up to which history has been compacted (0 = never).
    async fn compacted_revision(&self) -> Result<Revision>;

    /// A short name for logs and benchmarks ("sqlite", "etcd", "memory").
    fn backend(&self) -> &'static str;
}

/// The first key after every key that starts with `prefix` (etcd's "range end" of a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff (or the prefix was empty): the range is open-ended; etcd spells that "\0".
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(""), vec![0]);
    }
}
