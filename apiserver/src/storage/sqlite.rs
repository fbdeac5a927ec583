//! The embedded SQLite backend, the default store (`<data-dir>/server/db/state.db`), in kine's style.
//!
//! Layout: one append-only table `log` where the row id **is** the revision. Every write (create,
//! update, delete) appends a row naming the key, its create revision, the revision it replaces and
//! whether it is a deletion; nothing is updated in place. The value of a key at revision R is its
//! newest row with `revision <= R`, found through the `(key, revision)` index, which is what makes
//! reads at a fixed revision (paged lists, watch replay) free of locking. Compaction deletes rows that a
//! newer row at or before the compact revision supersedes, and tombstones at or before it.
//!
//! Writes: one writer thread owns the only writing connection. It takes every request waiting in its
//! queue, applies them in one transaction (each still gets its own revision and its own
//! compare-and-swap check) and commits once, with `synchronous=FULL` in WAL mode, so one fsync makes a
//! whole group durable. Callers get their reply only after that commit: an acknowledged write survives
//! a crash. Committed events are then published in-process to watchers (no polling).
//!
//! Reads use a small pool of read-only connections on blocking threads; WAL lets them run beside the
//! writer. At most [`READ_CONNECTIONS`] reads run at once, so each finds a pooled connection: with more
//! readers than pooled connections, every surplus read opened a connection (parsing the schema) and
//! closed it again, which perf showed as a tenth of the read path under 16+ concurrent gets.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use super::{
    Event, EventKind, EventStream, KeyValue, ListOptions, ListPage, Result, Revision, Store, StoreError,
    fanout::{self, Hub},
};

/// Tuning of the SQLite backend.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// How often history is compacted (None = never, tests compact by hand).
    pub compact_interval: Option<Duration>,
    /// How many revisions of history a periodic compaction keeps.
    pub compact_retain: Revision,
    /// Most writes committed in one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        // Kubernetes compacts every 5 minutes; kine keeps the last 1000 revisions. We keep more so a
        // client that reconnects after a short outage can still resume its watch.
        Self {
            compact_interval: Some(Duration::from_secs(300)),
            compact_retain: 10_000,
            max_batch: 1024,
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    revision        INTEGER PRIMARY KEY,
    key             TEXT    NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision   INTEGER NOT NULL,
    deleted         INTEGER NOT NULL,
    value           BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS log_key_revision ON log (key, revision);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
";

/// A write the writer thread applies.
enum WriteOp {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

struct WriteReq {
    op: WriteOp,
    reply: oneshot::Sender<Result<Option<Event>>>,
}

/// State shared by the store handle, its readers and its writer thread.
struct Shared {
    path: PathBuf,
    /// The revision of the newest committed write (what "latest" reads are served at).
    revision: AtomicI64,
    compacted: AtomicI64,
    readers: Mutex<Vec<Connection>>,
    /// One permit per read connection: reads beyond that wait rather than open connections.
    read_slots: Arc<tokio::sync::Semaphore>,
    hub: Hub,
}

/// Read connections kept open (and reads running at once). SQLite reads are CPU-bound and short;
/// more than a few per core only adds contention.
const READ_CONNECTIONS: usize = 8;

/// The SQLite backend.
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: mpsc::Sender<WriteReq>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and starts its writer thread (and, with
    /// `compact_interval` and inside a tokio runtime, its compactor task).
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<Arc<Self>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        }
        // The writer thread assumes it is the only writer (it hands out revisions from memory), so a
        // second process on the same file must be refused, not merely serialized by SQLite's locks.
        let lock_path = path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| internal(format!("cannot open {}: {e}", lock_path.display())))?;
        lock.try_lock().map_err(|_| {
            StoreError::Unavailable(format!("{} is in use by another process", path.display()))
        })?;
        let conn =
            Connection::open(path).map_err(|e| internal(format!("cannot open {}: {e}", path.display())))?;
        let describe = |e: rusqlite::Error| internal(format!("{}: {e}", path.display()));
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(describe)?;
        // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(describe)?;
        conn.execute_batch(SCHEMA).map_err(describe)?;
        // Checkpoints run on their own thread (see `checkpointer`), not inside a commit that a whole
        // group of callers is waiting on.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(describe)?;
        stable_plans(&conn).map_err(describe)?;
        let max_rev: Revision = conn
            .query_row("SELECT COALESCE(MAX(revision), 0) FROM log", [], |r| r.get(0))
            .map_err(describe)?;
        let compacted: Revision = conn
            .query_row(
                "SELECT value FROM meta WHERE name = 'compact_revision'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(describe)?
            .unwrap_or(0);
        // Compaction can delete the newest rows (tombstones), so the revision also remembers the
        // compact point: revisions never go backwards across a restart.
        let revision = max_rev.max(compacted);
        let shared = Arc::new(Shared {
            path: path.to_owned(),
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
            readers: Mutex::new(Vec::new()),
            read_slots: Arc::new(tokio::sync::Semaphore::new(READ_CONNECTIONS)),
            hub: Hub::default(),
        });
        let (tx, rx) = mpsc::channel(opts.max_batch * 4);
        let writer_shared = shared.clone();
        let max_batch = opts.max_batch;
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                Writer {
                    conn,
                    shared: writer_shared,
                    revision,
                }
                .run(rx, max_batch);
                // Released only when the writer is gone: no second writer can overlap this one.
                drop(lock);
            })
            .map_err(internal)?;
        let checkpoint_shared = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_shared))
            .map_err(internal)?;
        let store = Arc::new(Self { shared, writer: tx });
        // Periodic compaction needs a runtime; a store opened outside one compacts only on request.
        let runtime = tokio::runtime::Handle::try_current().ok();
        if let (Some(every), Some(runtime)) = (opts.compact_interval, runtime) {
            let weak = Arc::downgrade(&store);
            let retain = opts.compact_retain;
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(store) = weak.upgrade() else { return };
                    let target = store.shared.revision.load(Ordering::Acquire) - retain;
                    if target > store.shared.compacted.load(Ordering::Acquire)
                        && let Err(e) = store.compact(target).await
                    {
                        tracing::warn!(error = %e, "periodic compaction failed");
                    }
                }
            });
        }
        Ok(store)
    }

    async fn write(&self, op: WriteOp) -> Result<Option<Event>> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteReq { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the SQLite writer has stopped".into()))?
    }

    /// Runs `f` on a pooled read connection on a blocking thread.
    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection, &Shared) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        let slot = shared
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the SQLite store is closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let conn = shared.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match conn {
                Some(c) => c,
                None => {
                    let conn = Connection::open_with_flags(
                        &shared.path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .map_err(internal)?;
                    stable_plans(&conn).map_err(internal)?;
                    conn
                }
            };
            let out = f(&conn, &shared);
            let mut pool = shared.readers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < READ_CONNECTIONS {
                pool.push(conn);
            }
            out
        })
        .await
        .map_err(internal)?
    }
}

impl Shared {
    /// The revision a read asked for (0 = latest), checked against the kept history.
    fn read_revision(&self, revision: Revision) -> Result<Revision> {
        let current = self.revision.load(Ordering::Acquire);
        if revision == 0 {
            return Ok(current);
        }
        let compacted = self.compacted.load(Ordering::Acquire);
        if revision < compacted {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted,
            });
        }
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        Ok(revision)
    }
}

/// Keeps prepared statements on one query plan. The bundled SQLite is built with STAT4, under which a
/// statement is re-planned whenever a bound value changes; for our few fixed queries that re-planning
/// was a quarter of the writer's time (measured with perf), for no better plan.
fn stable_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map(|_| ())
}

/// Copies the WAL back into the database about once a second, beside the writer. A PASSIVE
/// checkpoint never blocks the writer or readers; once it has caught up, the writer's next
/// transaction starts the WAL file over, so it does not grow without bound. Stops with the store.
fn checkpointer(shared: std::sync::Weak<Shared>) {
    let Some(path) = shared.upgrade().map(|s| s.path.clone()) else {
        return;
    };
    let Ok(conn) = Connection::open(&path) else {
        tracing::error!(path = %path.display(), "cannot open a checkpoint connection; the WAL will grow");
        return;
    };
    loop {
        std::thread::sleep(Duration::from_secs(1));
        if shared.strong_count() == 0 {
            return;
        }
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// The upper bound of a prefix range as text (see [`super::prefix_end`]).
fn text_end(prefix: &str) -> String {
    String::from_utf8(super::prefix_end(prefix)).unwrap_or_else(|_| format!("{prefix}\u{10FFFF}"))
}

/// The newest version of `key` at or before `at`, including tombstones: (row, is_deleted).
fn latest_row(conn: &Connection, key: &str, at: Revision) -> rusqlite::Result<Option<(KeyValue, bool)>> {
    conn.prepare_cached(
        "SELECT revision, create_revision, deleted, value FROM log
         WHERE key = ?1 AND revision <= ?2 ORDER BY revision DESC LIMIT 1",
    )?
    .query_row(params![key, at], |r| {
        Ok((
            KeyValue {
                key: key.to_owned(),
                mod_revision: r.get(0)?,
                create_revision: r.get(1)?,
                value: r.get(3)?,
            },
            r.get::<_, bool>(2)?,
        ))
    })
    .optional()
}

fn live_at(conn: &Connection, key: &str, at: Revision) -> rusqlite::Result<Option<KeyValue>> {
    Ok(latest_row(conn, key, at)?.and_then(|(kv, deleted)| (!deleted).then_some(kv)))
}

/// Events under `prefix` with revisions in `(after, upto]`, in order, each with its previous value.
fn history(conn: &Connection, prefix: &str, after: Revision, upto: Revision) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.revision, l.key, l.create_revision, l.deleted, l.value,
                p.revision, p.create_revision, p.value
         FROM log l LEFT JOIN log p ON p.revision = l.prev_revision
         WHERE l.revision > ?1 AND l.revision <= ?2 AND l.key >= ?3 AND l.key < ?4
         ORDER BY l.revision",
    )?;
    let rows = stmt.query_map(params![after, upto, prefix, text_end(prefix)], |r| {
        let key: String = r.get(1)?;
        let prev = match r.get::<_, Option<Revision>>(5)? {
            Some(mod_revision) => Some(KeyValue {
                key: key.clone(),
                mod_revision,
                create_revision: r.get(6)?,
                value: r.get(7)?,
            }),
            None => None,
        };
        let deleted: bool = r.get(3)?;
        let kind = match (deleted, &prev) {
            (true, _) => EventKind::Delete,
            (false, None) => EventKind::Create,
            (false, Some(_)) => EventKind::Update,
        };
        Ok(Event {
            kind,
            kv: KeyValue {
                key,
                mod_revision: r.get(0)?,
                create_revision: r.get(2)?,
                value: r.get(4)?,
            },
            prev,
        })
    })?;
    rows.filter(|ev| ev.as_ref().map_or(true, |ev| ev.kv.key.starts_with(prefix)))
        .collect()
}

#[async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn get(&self, key: &str, revision: Revision) -> Result<(Option<KeyValue>, Revision)> {
        let key = key.to_owned();
        self.read(move |conn, shared| {
            let at = shared.read_revision(revision)?;
            Ok((live_at(conn, &key, at).map_err(internal)?, at))
        })
        .await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let ev = self
            .write(WriteOp::Create {
                key: key.to_owned(),
                value,
            })
            .await?;
        Ok(ev.ok_or_else(|| internal("create produced no event"))?.kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        let ev = self
            .write(WriteOp::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?;
        Ok(ev.ok_or_else(|| internal("update produced no event"))?.kv)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        let ev = self
            .write(WriteOp::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?;
        let ev = ev.ok_or_else(|| internal("delete produced no event"))?;
        Ok((
            ev.prev.ok_or_else(|| internal("delete without previous value"))?,
            ev.kv.mod_revision,
        ))
    }

    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        let prefix = prefix.to_owned();
        self.read(move |conn, shared| {
            let at = shared.read_revision(opts.revision)?;
            // Walk keys in order through the (key, revision) index; for each candidate row check that it
            // is the key's newest at `at`. LIMIT stops the walk, so a page costs O(limit), not O(prefix).
            let (lower_op, lower) = match &opts.start_after {
                Some(k) => (">", k.clone()),
                None => (">=", prefix.clone()),
            };
            let sql = format!(
                "SELECT key, revision, create_revision, value FROM log l
                 WHERE key {lower_op} ?1 AND key < ?2 AND revision <= ?3 AND deleted = 0
                   AND revision = (SELECT MAX(revision) FROM log l2 WHERE l2.key = l.key AND l2.revision <= ?3)
                 ORDER BY key LIMIT ?4"
            );
            let fetch = if opts.limit == 0 { -1 } else { opts.limit as i64 + 1 };
            let mut stmt = conn.prepare_cached(&sql).map_err(internal)?;
            let mut kvs = stmt
                .query_map(params![lower, text_end(&prefix), at, fetch], |r| {
                    Ok(KeyValue {
                        key: r.get(0)?,
                        mod_revision: r.get(1)?,
                        create_revision: r.get(2)?,
                        value: r.get(3)?,
                    })
                })
                .map_err(internal)?
                .filter(|kv| kv.as_ref().map_or(true, |kv| kv.key.starts_with(&prefix)))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            let more = opts.limit > 0 && kvs.len() > opts.limit;
            kvs.truncate(if opts.limit > 0 { opts.limit } else { kvs.len() });
            Ok(ListPage { kvs, revision: at, more })
        })
        .await
    }

    async fn count(&self, prefix: &str) -> Result<usize> {
        let prefix = prefix.to_owned();
        self.read(move |conn, shared| {
            let at = shared.read_revision(0)?;
            let n: i64 = conn
                .prepare_cached(
                    "SELECT COUNT(*) FROM log l WHERE key >= ?1 AND key < ?2 AND deleted = 0 AND revision <= ?3
                       AND revision = (SELECT MAX(revision) FROM log l2 WHERE l2.key = l.key AND l2.revision <= ?3)",
                )
                .and_then(|mut s| s.query_row(params![prefix, text_end(&prefix), at], |r| r.get(0)))
                .map_err(internal)?;
            Ok(n as usize)
        })
        .await
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        // Subscribe first, then read history up to the revision committed now (see fanout).
        let live = self.shared.hub.subscribe();
        let prefix_owned = prefix.to_owned();
        let (events, read_at) = self
            .read(move |conn, shared| {
                let compacted = shared.compacted.load(Ordering::Acquire);
                if after < compacted {
                    return Err(StoreError::Compacted {
                        requested: after,
                        compacted,
                    });
                }
                let read_at = shared.revision.load(Ordering::Acquire);
                Ok((
                    history(conn, &prefix_owned, after, read_at).map_err(internal)?,
                    read_at,
                ))
            })
            .await?;
        Ok(fanout::follow(events, live, prefix.to_owned(), read_at))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.shared.read_revision(revision)?;
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

/// The writer thread: the only connection that writes.
struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    /// The last revision assigned (committed or inside the open transaction).
    revision: Revision,
}

/// What a batch's transaction gives: each write's event (or its error), and the last revision.
type BatchOutcome = (Vec<Result<Option<Event>>>, Option<Revision>);

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteReq>, max_batch: usize) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
    }

    /// Applies a group of writes in one transaction; replies only after the commit is durable.
    fn commit_batch(&mut self, batch: Vec<WriteReq>) {
        let start_revision = self.revision;
        let outcome = (|| -> rusqlite::Result<BatchOutcome> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut results = Vec::with_capacity(batch.len());
            let mut compacted = None;
            for req in &batch {
                let res = match &req.op {
                    WriteOp::Compact { revision } => {
                        compact(&tx, *revision)?;
                        compacted = Some(*revision);
                        Ok(None)
                    }
                    op => apply(&tx, &mut self.revision, op)?.map(Some),
                };
                results.push(res);
            }
            tx.commit()?;
            Ok((results, compacted))
        })();
        match outcome {
            Ok((results, compacted)) => {
                if let Some(c) = compacted {
                    self.shared.compacted.fetch_max(c, Ordering::AcqRel);
                }
                // Visible to readers first, then to watchers, then acknowledged.
                self.shared.revision.store(self.revision, Ordering::Release);
                self.shared
                    .hub
                    .publish(results.iter().filter_map(|r| r.as_ref().ok().cloned().flatten()));
                for (req, res) in batch.into_iter().zip(results) {
                    let _ = req.reply.send(res);
                }
            }
            Err(e) => {
                // Nothing in the group was committed: every caller gets the error, and revisions
                // handed out inside the rolled-back transaction are reused.
                self.revision = start_revision;
                let err = StoreError::Internal(format!("{}: commit failed: {e}", self.shared.path.display()));
                tracing::error!(error = %err, "SQLite write failed");
                for req in batch {
                    let _ = req.reply.send(Err(err.clone()));
                }
            }
        }
    }
}

/// Applies one write inside the open transaction. The outer error is SQLite failing (the whole group
/// fails); the inner one is the write's own outcome (e.g. a CAS conflict) that leaves the group alone.
fn apply(conn: &Connection, revision: &mut Revision, op: &WriteOp) -> rusqlite::Result<Result<Event>> {
    let (key, value, expected) = match op {
        WriteOp::Create { key, value } => (key, Some(value), None),
        WriteOp::Update { key, value, expected } => (key, Some(value), Some(*expected)),
        WriteOp::Delete { key, expected } => (key, None, *expected),
        WriteOp::Compact { .. } => unreachable!("compaction is applied by the caller"),
    };
    let current = live_at(conn, key, *revision)?;
    let is_create = matches!(op, WriteOp::Create { .. });
    match (&current, is_create) {
        (Some(_), true) => return Ok(Err(StoreError::AlreadyExists { key: key.clone() })),
        (None, false) => return Ok(Err(StoreError::NotFound(key.clone()))),
        _ => {}
    }
    if let (Some(cur), Some(expected)) = (&current, expected)
        && cur.mod_revision != expected
    {
        return Ok(Err(StoreError::Conflict {
            key: key.clone(),
            expected,
            actual: cur.mod_revision,
        }));
    }
    let rev = *revision + 1;
    let create_revision = current.as_ref().map_or(rev, |c| c.create_revision);
    let prev_revision = current.as_ref().map_or(0, |c| c.mod_revision);
    let stored: &[u8] = value.map_or(&[], |v| v.as_slice());
    conn.prepare_cached(
        "INSERT INTO log (revision, key, create_revision, prev_revision, deleted, value)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        rev,
        key,
        create_revision,
        prev_revision,
        value.is_none(),
        stored
    ])?;
    *revision = rev;
    let kind = match (&current, value) {
        (None, _) => EventKind::Create,
        (Some(_), Some(_)) => EventKind::Update,
        (Some(_), None) => EventKind::Delete,
    };
    Ok(Ok(Event {
        kind,
        kv: KeyValue {
            key: key.clone(),
            value: stored.to_vec(),
            create_revision,
            mod_revision: rev,
        },
        prev: current,
    }))
}

/// Deletes history superseded at or before `revision`, and tombstones at or before it.
fn compact(conn: &Connection, revision: Revision) -> rusqlite::Result<()> {
    conn.execute(
        "DELETE FROM log WHERE revision <= ?1 AND (deleted = 1 OR EXISTS (
             SELECT 1 FROM log newer WHERE newer.key = log.key AND newer.revision > log.revision
               AND newer.revision <= ?1))",
        params![revision],
    )?;
    conn.execute(
        "INSERT INTO meta (name, value) VALUES ('compact_revision', ?1)
         ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)",
        params![revision],
    )?;
    Ok(())
}
