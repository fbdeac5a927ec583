//! The storage conformance suite: the same cases run against every [`Store`] backend.
//!
//! It pins down the etcd contract described in [`crate::storage`]: compare-and-swap conflicts,
//! pagination at a fixed revision while writes continue, watch resume from any revision in the window
//! without gap or duplicate, compaction errors, and many concurrent guarded writers losing nothing.
//! Each case works under its own key prefix, so all cases can share one store (starting a real etcd
//! per case would dominate the run time). Cases panic with a message naming what broke.

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, future::BoxFuture};

use super::{Event, EventKind, EventStream, ListOptions, Revision, Store, StoreError};

/// A conformance case: a name and the function that checks it.
pub type Case = (&'static str, fn(Arc<dyn Store>) -> BoxFuture<'static, ()>);

/// Every case, in the order [`run_all`] runs them.
pub const CASES: &[Case] = &[
    ("create_get_update_delete", |s| {
        Box::pin(create_get_update_delete(s))
    }),
    ("revisions_are_global_and_increasing", |s| {
        Box::pin(revisions_are_global_and_increasing(s))
    }),
    ("cas_conflicts", |s| Box::pin(cas_conflicts(s))),
    ("get_at_old_revision", |s| Box::pin(get_at_old_revision(s))),
    ("list_prefix_is_exact", |s| Box::pin(list_prefix_is_exact(s))),
    ("pagination_at_fixed_revision", |s| {
        Box::pin(pagination_at_fixed_revision(s))
    }),
    ("watch_from_revision_replays_then_follows", |s| {
        Box::pin(watch_from_revision_replays_then_follows(s))
    }),
    ("watch_resume_from_every_revision", |s| {
        Box::pin(watch_resume_from_every_revision(s))
    }),
    ("concurrent_guarded_writers_lose_nothing", |s| {
        Box::pin(concurrent_guarded_writers_lose_nothing(s))
    }),
    ("future_revision_is_rejected", |s| {
        Box::pin(future_revision_is_rejected(s))
    }),
    // Compaction affects the whole store, so it runs last.
    ("compaction", |s| Box::pin(compaction(s))),
];

/// Runs every case against `store`, printing each name so a failure is easy to place.
pub async fn run_all(store: Arc<dyn Store>) {
    for (name, case) in CASES {
        eprintln!("conformance[{}]: {name}", store.backend());
        tokio::time::timeout(Duration::from_secs(60), case(store.clone()))
            .await
            .unwrap_or_else(|_| panic!("conformance case {name} timed out"));
    }
}

const STEP: Duration = Duration::from_secs(10);

async fn next_event(w: &mut EventStream) -> Event {
    match tokio::time::timeout(STEP, w.next()).await {
        Ok(Some(Ok(ev))) => ev,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {STEP:?}"),
    }
}

async fn assert_no_event(w: &mut EventStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), w.next()).await {
        panic!("unexpected watch item {item:?}");
    }
}

async fn create_get_update_delete(s: Arc<dyn Store>) {
    let k = "/conformance/crud/a";
    let created = s.create(k, b"one".to_vec()).await.expect("create");
    assert_eq!(created.create_revision, created.mod_revision);
    assert_eq!(created.value, b"one");
    assert!(matches!(
        s.create(k, b"again".to_vec()).await,
        Err(StoreError::AlreadyExists { .. })
    ));

    let (got, at) = s.get(k, 0).await.expect("get");
    assert_eq!(got.as_ref(), Some(&created));
    assert!(at >= created.mod_revision);

    let updated = s
        .update(k, b"two".to_vec(), created.mod_revision)
        .await
        .expect("update");
    assert!(updated.mod_revision > created.mod_revision);
    assert_eq!(updated.create_revision, created.create_revision);

    let (deleted, del_rev) = s.delete(k, Some(updated.mod_revision)).await.expect("delete");
    assert_eq!(deleted.value, b"two");
    assert!(del_rev > updated.mod_revision);
    assert_eq!(s.get(k, 0).await.expect("get").0, None);
    assert!(matches!(s.delete(k, None).await, Err(StoreError::NotFound(_))));
    assert!(matches!(
        s.update(k, b"x".to_vec(), del_rev).await,
        Err(StoreError::NotFound(_))
    ));

    // Re-creating a deleted key starts a new life: a new create revision.
    let again = s.create(k, b"three".to_vec()).await.expect("re-create");
    assert!(again.create_revision > del_rev);
    assert_eq!(again.create_revision, again.mod_revision);
    s.delete(k, None).await.expect("unguarded delete");
}

async fn revisions_are_global_and_increasing(s: Arc<dyn Store>) {
    let before = s.current_revision().await.expect("rev");
    let a = s
        .create("/conformance/rev/a", b"1".to_vec())
        .await
        .expect("create a");
    let b = s
        .create("/conformance/rev/b", b"1".to_vec())
        .await
        .expect("create b");
    assert!(a.mod_revision > before);
    assert_eq!(
        b.mod_revision,
        a.mod_revision + 1,
        "one global revision, +1 per write"
    );
    assert_eq!(s.current_revision().await.expect("rev"), b.mod_revision);
    // A failed write does not consume a revision.
    let _ = s.create("/conformance/rev/a", b"dup".to_vec()).await;
    assert_eq!(s.current_revision().await.expect("rev"), b.mod_revision);
}

async fn cas_conflicts(s: Arc<dyn Store>) {
    let k = "/conformance/cas/a";
    let v1 = s.create(k, b"1".to_vec()).await.expect("create");
    let v2 = s.update(k, b"2".to_vec(), v1.mod_revision).await.expect("update");
    match s.update(k, b"stale".to_vec(), v1.mod_revision).await {
        Err(StoreError::Conflict { expected, actual, .. }) => {
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(actual, v2.mod_revision);
        }
        other => panic!("stale update must conflict, got {other:?}"),
    }
    assert!(matches!(
        s.delete(k, Some(v1.mod_revision)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(
        s.get(k, 0).await.expect("get").0.expect("still there").value,
        b"2"
    );
}

async fn get_at_old_revision(s: Arc<dyn Store>) {
    let k = "/conformance/oldget/a";
    let v1 = s.create(k, b"1".to_vec()).await.expect("create");
    let v2 = s.update(k, b"2".to_vec(), v1.mod_revision).await.expect("update");
    let (_, del) = s.delete(k, None).await.expect("delete");
    assert_eq!(
        s.get(k, v1.mod_revision).await.expect("get").0.expect("v1").value,
        b"1"
    );
    assert_eq!(
        s.get(k, v2.mod_revision).await.expect("get").0.expect("v2").value,
        b"2"
    );
    assert_eq!(s.get(k, del).await.expect("get").0, None);
    assert_eq!(s.get(k, v1.mod_revision - 1).await.expect("get").0, None);
}

async fn list_prefix_is_exact(s: Arc<dyn Store>) {
    for k in [
        "/conformance/prefix/a/1",
        "/conformance/prefix/a/2",
        "/conformance/prefix/ab/1",
    ] {
        s.create(k, k.as_bytes().to_vec()).await.expect("create");
    }
    let page = s
        .list("/conformance/prefix/a/", ListOptions::default())
        .await
        .expect("list");
    let keys: Vec<_> = page.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/conformance/prefix/a/1", "/conformance/prefix/a/2"]);
    assert!(!page.more);
    assert_eq!(s.count("/conformance/prefix/").await.expect("count"), 3);
    s.delete("/conformance/prefix/a/1", None).await.expect("delete");
    let page = s
        .list("/conformance/prefix/", ListOptions::default())
        .await
        .expect("list");
    assert_eq!(page.kvs.len(), 2, "deleted keys are not listed");
}

async fn pagination_at_fixed_revision(s: Arc<dyn Store>) {
    let prefix = "/conformance/pages/";
    for i in 0..25 {
        s.create(&format!("{prefix}{i:03}"), format!("v{i}").into_bytes())
            .await
            .expect("create");
    }
    let first = s
        .list(
            prefix,
            ListOptions {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("page 1");
    assert_eq!(first.kvs.len(), 10);
    assert!(first.more);
    let pinned = first.revision;

    // Writes continue between pages: new keys, updates and deletes must not show in later pages.
    s.create(&format!("{prefix}005a"), b"new".to_vec())
        .await
        .expect("create mid-list");
    s.create(&format!("{prefix}999"), b"new".to_vec())
        .await
        .expect("create mid-list");
    let (k15, _) = s.get(&format!("{prefix}015"), 0).await.expect("get");
    let k15 = k15.expect("015 exists");
    s.update(&k15.key, b"changed".to_vec(), k15.mod_revision)
        .await
        .expect("update mid-list");
    s.delete(&format!("{prefix}020"), None)
        .await
        .expect("delete mid-list");

    let mut all = first.kvs.clone();
    let mut last = first.kvs.last().expect("non-empty").key.clone();
    loop {
        let page = s
            .list(
                prefix,
                ListOptions {
                    start_after: Some(last.clone()),
                    revision: pinned,
                    limit: 10,
                },
            )
            .await
            .expect("next page");
        assert_eq!(
            page.revision, pinned,
            "later pages are served at the first page's revision"
        );
        all.extend(page.kvs.iter().cloned());
        match (page.more, page.kvs.last()) {
            (true, Some(kv)) => last = kv.key.clone(),
            _ => break,
        }
    }
    let keys: Vec<String> = all.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<String> = (0..25).map(|i| format!("{prefix}{i:03}")).collect();
    assert_eq!(keys, expected, "exactly the snapshot at the pinned revision");
    assert_eq!(all[15].value, b"v15", "values as of the pinned revision");
    // A limit that lands exactly on the end reports no more pages at the latest revision too.
    let now = s
        .list(
            prefix,
            ListOptions {
                limit: 26,
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(now.kvs.len(), 26);
    assert!(!now.more);
}

async fn watch_from_revision_replays_then_follows(s: Arc<dyn Store>) {
    let prefix = "/conformance/watch/";
    let start = s.current_revision().await.expect("rev");
    let a = s
        .create(&format!("{prefix}a"), b"1".to_vec())
        .await
        .expect("create");
    s.create("/conformance/other/a", b"x".to_vec())
        .await
        .expect("create elsewhere");
    let mut w = s.watch(prefix, start).await.expect("watch");
    let ev = next_event(&mut w).await;
    assert_eq!(
        (ev.kind, ev.kv.key.as_str(), ev.revision()),
        (EventKind::Create, a.key.as_str(), a.mod_revision)
    );
    assert_eq!(ev.prev, None);

    let b = s
        .update(&a.key, b"2".to_vec(), a.mod_revision)
        .await
        .expect("update");
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.revision()), (EventKind::Update, b.mod_revision));
    assert_eq!(ev.kv.value, b"2");
    assert_eq!(
        ev.prev.as_ref().map(|p| p.value.as_slice()),
        Some(&b"1"[..]),
        "previous value"
    );

    let (_, del) = s.delete(&a.key, None).await.expect("delete");
    let ev = next_event(&mut w).await;
    assert_eq!((ev.kind, ev.revision()), (EventKind::Delete, del));
    assert_eq!(ev.prev.expect("prev of delete").value, b"2");
    assert_no_event(&mut w).await;
}

async fn watch_resume_from_every_revision(s: Arc<dyn Store>) {
    let prefix = "/conformance/resume/";
    let start = s.current_revision().await.expect("rev");
    let mut revs = Vec::new();
    let mut kv = s
        .create(&format!("{prefix}k"), b"0".to_vec())
        .await
        .expect("create");
    revs.push(kv.mod_revision);
    for i in 1..20 {
        kv = s
            .update(&kv.key, format!("{i}").into_bytes(), kv.mod_revision)
            .await
            .expect("update");
        revs.push(kv.mod_revision);
        // Interleave writes elsewhere so revisions under the prefix are not contiguous.
        s.create(&format!("/conformance/noise/{i}"), b"n".to_vec())
            .await
            .expect("noise");
    }
    // Resuming from any revision yields exactly the later events: no gap, no duplicate.
    let froms: Vec<Revision> = std::iter::once(start).chain(revs.iter().copied()).collect();
    for from in froms {
        let mut w = s.watch(prefix, from).await.expect("watch");
        let expected: Vec<Revision> = revs.iter().copied().filter(|r| *r > from).collect();
        let mut got = Vec::new();
        for _ in 0..expected.len() {
            got.push(next_event(&mut w).await.revision());
        }
        assert_eq!(got, expected, "resume after {from}");
        // And the live tail continues in order after the replay.
        if from == start {
            let next = s
                .update(&kv.key, b"live".to_vec(), kv.mod_revision)
                .await
                .expect("update");
            assert_eq!(next_event(&mut w).await.revision(), next.mod_revision);
            revs.push(next.mod_revision);
            kv = next;
        }
        assert_no_event(&mut w).await;
    }
}

async fn concurrent_guarded_writers_lose_nothing(s: Arc<dyn Store>) {
    // 100 writers each add their id to a set held in one key, retrying on conflict. The final value
    // must hold all 100 ids exactly once: no lost update, no update applied twice.
    let k = "/conformance/contended/counter";
    let initial = s.create(k, b"".to_vec()).await.expect("create");
    let mut w = s.watch(k, initial.mod_revision).await.expect("watch");
    let mut tasks = Vec::new();
    for id in 0..100u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            loop {
                let (cur, _) = s.get(k, 0).await.expect("get");
                let cur = cur.expect("exists");
                let mut text = String::from_utf8(cur.value.clone()).expect("utf8");
                text.push_str(&format!("{id},"));
                match s.update(k, text.into_bytes(), cur.mod_revision).await {
                    Ok(_) => return conflicts,
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("writer {id}: {e}"),
                }
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(50), t)
            .await
            .expect("writer timed out")
            .expect("writer");
    }
    let (fin, _) = s.get(k, 0).await.expect("get");
    let text = String::from_utf8(fin.expect("exists").value).expect("utf8");
    let mut ids: Vec<u32> = text
        .split(',')
        .filter(|x| !x.is_empty())
        .map(|x| x.parse().expect("id"))
        .collect();
    assert_eq!(ids.len(), 100, "every writer's update applied once");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 100, "no update applied twice");
    // The watch saw exactly 100 updates, each extending the previous value.
    let mut prev = Vec::new();
    for _ in 0..100 {
        let ev = next_event(&mut w).await;
        assert_eq!(ev.kind, EventKind::Update);
        assert_eq!(ev.prev.expect("prev").value, prev);
        prev = ev.kv.value;
    }
}

async fn future_revision_is_rejected(s: Arc<dyn Store>) {
    let cur = s.current_revision().await.expect("rev");
    let err = s
        .list(
            "/conformance/",
            ListOptions {
                revision: cur + 1000,
                ..Default::default()
            },
        )
        .await
        .expect_err("future revision");
    assert!(matches!(err, StoreError::FutureRevision { .. }), "got {err:?}");
}

async fn compaction(s: Arc<dyn Store>) {
    let prefix = "/conformance/compact/";
    let v1 = s
        .create(&format!("{prefix}a"), b"1".to_vec())
        .await
        .expect("create");
    let v2 = s
        .update(&v1.key, b"2".to_vec(), v1.mod_revision)
        .await
        .expect("update");
    let gone = s
        .create(&format!("{prefix}gone"), b"x".to_vec())
        .await
        .expect("create");
    s.delete(&gone.key, None).await.expect("delete");
    let v3 = s
        .update(&v1.key, b"3".to_vec(), v2.mod_revision)
        .await
        .expect("update");
    s.compact(v2.mod_revision + 1).await.expect("compact");
    assert!(s.compacted_revision().await.expect("compacted") > v2.mod_revision);

    // Reads and watches before the compacted revision fail with the distinct error.
    let err = s
        .get(&v1.key, v1.mod_revision)
        .await
        .expect_err("read of compacted revision");
    assert!(matches!(err, StoreError::Compacted { .. }), "got {err:?}");
    let err = s
        .list(
            prefix,
            ListOptions {
                revision: v1.mod_revision,
                ..Default::default()
            },
        )
        .await
        .expect_err("list of compacted revision");
    assert!(matches!(err, StoreError::Compacted { .. }), "got {err:?}");
    match s.watch(prefix, v1.mod_revision).await {
        Err(StoreError::Compacted { .. }) => {}
        Ok(mut w) => match tokio::time::timeout(STEP, w.next()).await {
            Ok(Some(Err(StoreError::Compacted { .. }))) => {}
            other => panic!("watch from a compacted revision must fail, got {other:?}"),
        },
        Err(e) => panic!("watch from a compacted revision: wrong error {e}"),
    }

    // What is at or after the compacted revision is intact, and watching from there still works.
    let (cur, _) = s.get(&v1.key, 0).await.expect("get");
    assert_eq!(cur.expect("a").value, b"3");
    let (at, _) = s
        .get(&v1.key, v2.mod_revision + 1)
        .await
        .expect("read at the compact revision");
    assert_eq!(at.expect("a").value, b"2");
    let mut w = s
        .watch(prefix, v2.mod_revision + 1)
        .await
        .expect("watch from compact revision");
    let mut last = 0;
    loop {
        let ev = next_event(&mut w).await;
        assert!(ev.revision() > v2.mod_revision + 1);
        last = last.max(ev.revision());
        if ev.revision() == v3.mod_revision {
            break;
        }
    }
    let page = s.list(prefix, ListOptions::default()).await.expect("list");
    assert_eq!(
        page.kvs.len(),
        1,
        "the deleted key stays deleted after compaction"
    );
    // Writes go on after compaction with increasing revisions.
    let v4 = s
        .update(&v1.key, b"4".to_vec(), v3.mod_revision)
        .await
        .expect("update after compaction");
    assert!(v4.mod_revision > last);
}
