//! The storage conformance suite on a real etcd (Debian's etcd 3.4, started on loopback per test),
//! plus the etcd backend's own behavior: fast failure when etcd is unreachable, endpoint parsing, and
//! data and revisions surviving an etcd restart.
#![cfg(feature = "etcd")]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use skiff_apiserver::storage::{
    ListOptions, Store, StoreError, conformance,
    etcd::{EtcdStore, parse_endpoints},
    etcd_process::EtcdProcess,
};

async fn start_etcd() -> EtcdProcess {
    EtcdProcess::start()
        .await
        .unwrap_or_else(|e| panic!("starting etcd: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_passes_conformance() {
    // Dropped (killed, data dir removed) when the test ends, also when it panics.
    let etcd = start_etcd().await;
    let store = EtcdStore::connect(&[etcd.endpoint()]).await.expect("connect");
    assert_eq!(store.backend(), "etcd");
    tokio::time::timeout(Duration::from_secs(600), conformance::run_all(Arc::new(store)))
        .await
        .expect("conformance suite timed out");
}

#[tokio::test]
async fn connect_to_a_closed_port_fails_fast_with_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    let err = EtcdStore::connect(std::slice::from_ref(&endpoint))
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "took {:?}",
        started.elapsed()
    );
    match err {
        StoreError::Unavailable(msg) => {
            assert!(
                msg.contains("cannot reach etcd at") && msg.contains(&endpoint),
                "{msg}"
            );
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn endpoint_lists_are_validated() {
    assert_eq!(
        parse_endpoints("http://127.0.0.1:2379").unwrap(),
        ["http://127.0.0.1:2379"]
    );
    assert_eq!(
        parse_endpoints("http://10.0.0.1:2379,http://10.0.0.2:2379/").unwrap(),
        ["http://10.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(
        parse_endpoints("http://[::1]:2379").unwrap(),
        ["http://[::1]:2379"]
    );
    let cases = [
        ("", "no etcd endpoints"),
        ("http://a:2379,,http://b:2379", "empty entry"),
        ("http://a:2379,", "empty entry"),
        ("unix:///run/etcd.sock", "unsupported scheme"),
        ("127.0.0.1:2379", "no scheme"),
        ("http://127.0.0.1", "no port"),
        ("http://127.0.0.1:", "invalid port"),
        ("http://127.0.0.1:99999", "invalid port"),
        ("http://:2379", "no host"),
        ("http://a:2379/v3", "no path"),
        ("https://a:2379", "https"),
    ];
    for (input, want) in cases {
        let err = parse_endpoints(input).expect_err(input);
        assert!(err.contains(want), "{input:?}: {err:?} should mention {want:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_keys_and_revision() {
    let mut etcd = start_etcd().await;
    let endpoint = etcd.endpoint();
    let (rev, compacted) = {
        let store = EtcdStore::connect(std::slice::from_ref(&endpoint))
            .await
            .expect("connect");
        let a = store.create("/restart/a", b"1".to_vec()).await.expect("create");
        store
            .update("/restart/a", b"2".to_vec(), a.mod_revision)
            .await
            .expect("update");
        store.create("/restart/b", b"1".to_vec()).await.expect("create");
        let c = store.create("/restart/c", b"1".to_vec()).await.expect("create");
        let (_, del) = store
            .delete("/restart/c", Some(c.mod_revision))
            .await
            .expect("delete");
        store.compact(del - 1).await.expect("compact");
        assert_eq!(store.current_revision().await.expect("rev"), del);
        (del, del - 1)
    };

    etcd.stop();
    assert!(!etcd.is_running());
    let down = EtcdStore::connect(std::slice::from_ref(&endpoint))
        .await
        .expect_err("etcd is down");
    assert!(matches!(down, StoreError::Unavailable(_)), "{down:?}");

    etcd.restart().await.expect("restart");
    assert_eq!(etcd.endpoint(), endpoint, "same ports after restart");
    let store = EtcdStore::connect(std::slice::from_ref(&endpoint))
        .await
        .expect("reconnect");
    assert_eq!(
        store.current_revision().await.expect("rev"),
        rev,
        "revision survives the restart"
    );
    // A fresh client learns the compact revision from etcd itself.
    assert_eq!(store.compacted_revision().await.expect("compacted"), compacted);
    let page = store
        .list("/restart/", ListOptions::default())
        .await
        .expect("list");
    let got: Vec<(&str, &[u8])> = page
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.value.as_slice()))
        .collect();
    assert_eq!(got, [("/restart/a", &b"2"[..]), ("/restart/b", &b"1"[..])]);
    assert_eq!(page.revision, rev);
    let next = store
        .create("/restart/d", b"1".to_vec())
        .await
        .expect("create after restart");
    assert_eq!(next.mod_revision, rev + 1, "revisions continue after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_client_reports_exact_compacted_and_future_revisions() {
    let etcd = start_etcd().await;
    let endpoint = vec![etcd.endpoint()];
    let writer = EtcdStore::connect(&endpoint).await.expect("connect");
    let mut kv = writer.create("/fresh/a", b"0".to_vec()).await.expect("create");
    let first = kv.mod_revision;
    for i in 1..10 {
        kv = writer
            .update("/fresh/a", format!("{i}").into_bytes(), kv.mod_revision)
            .await
            .expect("update");
    }
    let compact_at = first + 5;
    writer.compact(compact_at).await.expect("compact");
    // Compacting again at or below the compact revision is a no-op, as in the other backends.
    writer.compact(first).await.expect("compact below");

    // Another apiserver's client never compacted anything itself: it learns everything from etcd.
    let reader = EtcdStore::connect(&endpoint).await.expect("connect");
    assert_eq!(reader.compacted_revision().await.expect("compacted"), compact_at);
    assert_eq!(
        reader.get("/fresh/a", first).await.expect_err("compacted"),
        StoreError::Compacted {
            requested: first,
            compacted: compact_at
        }
    );
    let current = reader.current_revision().await.expect("rev");
    assert_eq!(current, kv.mod_revision);
    assert_eq!(
        reader.get("/fresh/a", current + 5).await.expect_err("future"),
        StoreError::FutureRevision {
            requested: current + 5,
            current
        }
    );
    assert!(matches!(
        reader.compact(current + 5).await.expect_err("future compact"),
        StoreError::FutureRevision { .. }
    ));

    // A fresh client's watch from before the compaction fails with the revision etcd reports.
    let fresh = EtcdStore::connect(&endpoint).await.expect("connect");
    match fresh.watch("/fresh/", first).await {
        Err(e) => assert_eq!(
            e,
            StoreError::Compacted {
                requested: first,
                compacted: compact_at
            }
        ),
        Ok(mut w) => {
            let item = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("an item");
            assert_eq!(
                item,
                Some(Err(StoreError::Compacted {
                    requested: first,
                    compacted: compact_at
                }))
            );
            let end = tokio::time::timeout(Duration::from_secs(10), w.next())
                .await
                .expect("end");
            assert!(end.is_none(), "the stream ends after its error");
        }
    }
    // From the revision just before the compact revision, etcd still has every later event.
    let mut w = fresh.watch("/fresh/", compact_at - 1).await.expect("watch");
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("event")
        .expect("item");
    assert_eq!(ev.expect("event").revision(), compact_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_with_an_error_when_etcd_dies() {
    let mut etcd = start_etcd().await;
    let store = EtcdStore::connect(&[etcd.endpoint()]).await.expect("connect");
    let rev = store.current_revision().await.expect("rev");
    let mut w = store.watch("/dies/", rev).await.expect("watch");
    let kv = store.create("/dies/a", b"1".to_vec()).await.expect("create");
    let ev = tokio::time::timeout(Duration::from_secs(10), w.next())
        .await
        .expect("event")
        .expect("item");
    assert_eq!(ev.expect("event").kv, kv);
    etcd.stop();
    match tokio::time::timeout(Duration::from_secs(60), w.next())
        .await
        .expect("watch noticed")
    {
        Some(Err(StoreError::Unavailable(_))) => {}
        other => panic!("expected an Unavailable error, got {other:?}"),
    }
    let err = store.get("/dies/a", 0).await.expect_err("etcd is down");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn dropping_the_process_kills_etcd_and_removes_its_data() {
    let etcd = start_etcd().await;
    let pid = etcd.pid().expect("running");
    let data = etcd.data_dir();
    assert!(data.join("member").is_dir(), "etcd initialized its data dir");
    drop(etcd);
    assert!(!data.exists(), "data dir removed");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} killed and reaped"
    );
}
