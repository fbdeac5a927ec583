//! The storage conformance suite on the embedded backends (memory, SQLite), plus SQLite's own
//! guarantees: restart keeps objects and revisions, bad data dirs give clear errors.

use std::{sync::Arc, time::Duration};

use skiff_apiserver::storage::{
    ListOptions, Store, conformance,
    memory::MemoryStore,
    sqlite::{SqliteOptions, SqliteStore},
};

fn manual_compaction() -> SqliteOptions {
    SqliteOptions {
        compact_interval: None,
        ..Default::default()
    }
}

#[tokio::test]
async fn memory_passes_conformance() {
    conformance::run_all(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_passes_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("state.db"), manual_compaction()).expect("open");
    conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_keeps_objects_revisions_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server/db/state.db");
    let (last, compacted) = {
        let store = SqliteStore::open(&path, manual_compaction()).expect("open");
        let a = store.create("/k/a", b"1".to_vec()).await.expect("create");
        store
            .update("/k/a", b"2".to_vec(), a.mod_revision)
            .await
            .expect("update");
        store.create("/k/b", b"1".to_vec()).await.expect("create");
        let (_, del) = store.delete("/k/b", None).await.expect("delete");
        store.compact(del).await.expect("compact");
        (del, del)
    };
    // The writer thread exits when the handle is dropped; give it a moment to close the file.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let store = SqliteStore::open(&path, manual_compaction()).expect("reopen");
    assert_eq!(
        store.current_revision().await.expect("rev"),
        last,
        "revision survives, even when the newest row was compacted away"
    );
    assert_eq!(store.compacted_revision().await.expect("compacted"), compacted);
    let page = store.list("/k/", ListOptions::default()).await.expect("list");
    assert_eq!(page.kvs.len(), 1);
    assert_eq!(page.kvs[0].value, b"2");
    let next = store.create("/k/c", b"1".to_vec()).await.expect("create");
    assert_eq!(
        next.mod_revision,
        last + 1,
        "revisions continue, never go backwards"
    );
}

#[test]
fn sqlite_rejects_a_corrupt_database_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x42u8; 8192]).expect("write garbage");
    let err = SqliteStore::open(&path, manual_compaction())
        .err()
        .expect("must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("state.db") && msg.contains("not a database"),
        "{msg}"
    );
}

#[test]
fn sqlite_rejects_an_unwritable_directory_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A regular file where the directory should be: cannot be fixed by retrying, must be reported.
    let blocker = dir.path().join("server");
    std::fs::write(&blocker, b"x").expect("write");
    let err = SqliteStore::open(&blocker.join("db/state.db"), manual_compaction())
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("cannot create"), "{err}");
}
