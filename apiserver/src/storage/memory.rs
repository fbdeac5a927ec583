//! The in-memory backend: the Store contract with nothing durable underneath, for unit tests.
//!
//! It keeps every version of every key (a small MVCC map) and the event log since the last compaction,
//! behind one mutex. It is the simplest reading of the contract and the reference the other backends
//! are compared with in the conformance suite.

use std::{
    collections::{BTreeMap, VecDeque},
    ops::Bound,
    sync::Mutex,
};

use async_trait::async_trait;

use super::{
    Event, EventKind, EventStream, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreError,
    fanout::{self, Hub},
};

/// One version of a key; `value == None` is a deletion (tombstone).
#[derive(Clone, Debug)]
struct Version {
    mod_revision: Revision,
    create_revision: Revision,
    value: Option<Vec<u8>>,
}

#[derive(Default)]
struct Inner {
    revision: Revision,
    compacted: Revision,
    keys: BTreeMap<String, Vec<Version>>,
    log: VecDeque<Event>,
}

/// The memory backend.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
    hub: Hub,
}

impl MemoryStore {
    /// An empty store at revision 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every write is applied whole), so a
        // poisoned lock is safe to keep using.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn read_revision(&self, revision: Revision) -> Result<Revision> {
        if revision == 0 {
            return Ok(self.revision);
        }
        if revision < self.compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: self.compacted,
            });
        }
        if revision > self.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: self.revision,
            });
        }
        Ok(revision)
    }

    fn version_at(&self, key: &str, at: Revision) -> Option<KeyValue> {
        let versions = self.keys.get(key)?;
        let v = versions.iter().rev().find(|v| v.mod_revision <= at)?;
        v.value.as_ref().map(|value| KeyValue {
            key: key.to_owned(),
            value: value.clone(),
            create_revision: v.create_revision,
            mod_revision: v.mod_revision,
        })
    }

    fn current(&self, key: &str) -> Option<KeyValue> {
        self.version_at(key, self.revision)
    }

    /// Appends a version and returns the event describing it.
    fn write(&mut self, key: &str, value: Option<Vec<u8>>, prev: Option<KeyValue>) -> Event {
        self.revision += 1;
        let rev = self.revision;
        let kind = match (&prev, &value) {
            (None, _) => EventKind::Create,
            (Some(_), Some(_)) => EventKind::Update,
            (Some(_), None) => EventKind::Delete,
        };
        let create_revision = prev.as_ref().map_or(rev, |p| p.create_revision);
        self.keys.entry(key.to_owned()).or_default().push(Version {
            mod_revision: rev,
            create_revision,
            value: value.clone(),
        });
        let ev = Event {
            kind,
            kv: KeyValue {
                key: key.to_owned(),
                value: value.unwrap_or_default(),
                create_revision,
                mod_revision: rev,
            },
            prev,
        };
        self.log.push_back(ev.clone());
        ev
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<(Option<KeyValue>, Revision)> {
        let inner = self.lock();
        let at = inner.read_revision(revision)?;
        Ok((inner.version_at(key, at), at))
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut inner = self.lock();
        if inner.current(key).is_some() {
            return Err(StoreError::AlreadyExists { key: key.to_owned() });
        }
        let ev = inner.write(key, Some(value), None);
        self.hub.publish([ev.clone()]);
        Ok(ev.kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let mut inner = self.lock();
        let cur = inner
            .current(key)
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
        if cur.mod_revision != expected {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: cur.mod_revision,
            });
        }
        let ev = inner.write(key, Some(value), Some(cur));
        self.hub.publish([ev.clone()]);
        Ok(ev.kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let mut inner = self.lock();
        let cur = inner
            .current(key)
            .ok_or_else(|| StoreError::NotFound(key.to_owned()))?;
        if let Some(expected) = expected.filter(|e| *e != cur.mod_revision) {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                actual: cur.mod_revision,
            });
        }
        let ev = inner.write(key, None, Some(cur.clone()));
        self.hub.publish([ev.clone()]);
        Ok((cur, ev.revision()))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let inner = self.lock();
        let at = inner.read_revision(opts.revision)?;
        let start = opts.start_after.as_deref().unwrap_or(prefix);
        let mut kvs = Vec::new();
        let mut more = false;
        for key in inner
            .keys
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
            .map(|(k, _)| k)
        {
            if !key.starts_with(prefix) {
                break;
            }
            if opts.start_after.as_deref() == Some(key.as_str()) {
                continue;
            }
            if let Some(kv) = inner.version_at(key, at) {
                if opts.limit > 0 && kvs.len() == opts.limit {
                    more = true;
                    break;
                }
                kvs.push(kv);
            }
        }
        Ok(ListPage {
            kvs,
            revision: at,
            more,
        })
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let inner = self.lock();
        Ok(inner
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| inner.current(k).is_some())
            .count())
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        let inner = self.lock();
        if after < inner.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: inner.compacted,
            });
        }
        // Subscribing under the lock that writers hold while publishing: nothing slips between.
        let live = self.hub.subscribe();
        let history: Vec<Event> = inner
            .log
            .iter()
            .filter(|ev| ev.revision() > after && ev.kv.key.starts_with(prefix))
            .cloned()
            .collect();
        Ok(fanout::follow(history, live, prefix.to_owned(), inner.revision))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut inner = self.lock();
        inner.read_revision(revision)?;
        if revision <= inner.compacted {
            return Ok(());
        }
        for versions in inner.keys.values_mut() {
            // Keep the newest version at or before `revision` and everything after it.
            let keep_from = versions
                .iter()
                .rposition(|v| v.mod_revision <= revision)
                .unwrap_or(0);
            versions.drain(..keep_from);
            if versions
                .first()
                .is_some_and(|v| v.value.is_none() && v.mod_revision <= revision)
            {
                versions.remove(0);
            }
        }
        inner.keys.retain(|_, v| !v.is_empty());
        while inner.log.front().is_some_and(|ev| ev.revision() <= revision) {
            inner.log.pop_front();
        }
        inner.compacted = revision;
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
