//! WATCH of a collection: a chunked 200 response with one JSON watch event per line, served from the
//! watch cache (upstream's `cacher` + `watch_server`).
//!
//! resourceVersion unset or "0" starts with an ADDED event per existing object; N resumes after N.
//! A revision older than the cache's window is answered, as upstream does, with a 200 stream holding
//! one ERROR event whose Status is 410 Expired, so clients re-list.
//!
//! A client too slow to drain its events has its stream ended without an error, as upstream's cacher
//! closes an unresponsive watcher: the client watches again from the last resourceVersion it got,
//! which the cache's window usually still holds, instead of re-listing every object.
//!
//! Most watches (every controller's) select everything in the stored version: their events are
//! spliced from the stored bytes (`resourceVersion` inserted) without parsing them into a tree and
//! writing it out again, per event and per watcher.

use std::time::Duration;

use axum::{
    body::{Body, Bytes},
    http::header,
    response::Response,
};
use futures::StreamExt;
use serde_json::{Value, json};

use super::{Filter, ListQuery, Scope};
use crate::{
    server::{ApiServer, object, registry::ResourceInfo, status::ApiError, table},
    storage::{Event, EventKind},
    watch_cache::{CacheEvent, WatchError},
};

/// Upstream picks a timeout between `--min-request-timeout` (30 min) and twice that.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

/// Starts a watch of the scope's collection.
pub async fn watch(api: &ApiServer, scope: &Scope, q: &ListQuery) -> Result<Response, ApiError> {
    let prefix = scope.prefix();
    let send_initial_events = matches!(q.send_initial_events.as_deref(), Some("true" | "1"));
    let after = match q.revision()? {
        None | Some(0) => None,
        // With sendInitialEvents, a revision means "a state not older than it", then live events.
        Some(_) if send_initial_events => None,
        Some(rev) => Some(rev),
    };
    let bookmarks = matches!(q.allow_watch_bookmarks.as_deref(), Some("true" | "1"));
    if send_initial_events {
        // Upstream's rules for streaming lists: NotOlderThan, and bookmarks to carry the end marker.
        if q.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::bad_request(
                "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless resourceVersionMatch is set to NotOlderThan",
            ));
        }
        if !bookmarks {
            return Err(ApiError::bad_request(
                "allowWatchBookmarks: Required value: allowWatchBookmarks must be set to true when sendInitialEvents is true",
            ));
        }
    }
    let timeout = q.timeout_seconds.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    let info = scope.info;
    let table = q.table;
    let metadata_only = q.metadata_only;
    let filter = Filter::new(info, q)?;
    let metrics = api.metrics.clone();
    // Counts this watch as open for as long as the response stream lives.
    let open = api.metrics.watch_opened();
    let events = match api.caches[info.resource].watch(&prefix, after, bookmarks).await {
        Ok(w) => w,
        Err(e @ WatchError::Expired { .. }) => {
            let line = line(&json!({ "type": "ERROR", "object": ApiError::from_watch(e).to_status() }));
            return Ok(stream_response(Body::from(line)));
        }
        Err(e) => return Err(ApiError::from_watch(e)),
    };
    let raw = table.is_none() && filter.is_everything() && !info.converts();
    let lines = events
        // Too slow a reader: end the stream, and the client resumes from where it got to.
        .take_while(|item| std::future::ready(!matches!(item, Err(WatchError::TooSlow))))
        .map(move |item| {
            let event = match item {
                Ok(CacheEvent::Event(ev)) if raw => {
                    let _ = &open;
                    let line = raw_line(&ev, metadata_only)?;
                    metrics.watch_event();
                    return Some(Ok(Bytes::from(line)));
                }
                Ok(CacheEvent::Event(ev)) => {
                    let (kind, obj) = match select(&filter, &ev) {
                        Some(selected) => selected,
                        None => return None,
                    };
                    let obj = match table {
                        Some(include) => table::table(
                            info,
                            std::slice::from_ref(&obj),
                            json!({ "resourceVersion": obj["metadata"]["resourceVersion"] }),
                            include,
                            true,
                        ),
                        None if metadata_only => object::partial_metadata(&obj),
                        None => obj,
                    };
                    json!({ "type": kind, "object": obj })
                }
                Ok(CacheEvent::Bookmark(rev)) => json!({ "type": "BOOKMARK", "object": bookmark(info, rev) }),
                Ok(CacheEvent::InitialEventsEnd(rev)) => {
                    // Only a client that asked for sendInitialEvents is told; to others it is an
                    // ordinary bookmark, which a client that allows bookmarks accepts.
                    let mut object = bookmark(info, rev);
                    if send_initial_events {
                        object["metadata"]["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
                    }
                    json!({ "type": "BOOKMARK", "object": object })
                }
                Err(e) => json!({ "type": "ERROR", "object": ApiError::from_watch(e).to_status() }),
            };
            let _ = &open;
            metrics.watch_event();
            Some(Ok::<_, std::convert::Infallible>(Bytes::from(line(&event))))
        })
        .filter_map(std::future::ready)
        .take_until(tokio::time::sleep(timeout));
    Ok(stream_response(Body::from_stream(lines)))
}

/// The watch event a store event becomes for a client with selectors: an object that starts matching
/// is ADDED, one that stops matching is DELETED (upstream's filtered watch), others are skipped.
fn select(filter: &Filter, ev: &Event) -> Option<(&'static str, Value)> {
    let new = (ev.kind != EventKind::Delete).then(|| object::decode(filter.info, &ev.kv));
    // A deleted object is shown as it was, at the revision of its deletion.
    let old = ev.prev.as_ref().map(|p| {
        object::decode_at(
            filter.info,
            &p.value,
            if ev.kind == EventKind::Delete {
                ev.revision()
            } else {
                p.mod_revision
            },
        )
    });
    let everything = filter.is_everything();
    let new_matches = new.as_ref().is_some_and(|o| everything || filter.matches(o));
    let old_matches = old.as_ref().is_some_and(|o| everything || filter.matches(o));
    match (ev.kind, old_matches, new_matches) {
        (EventKind::Delete, true, _) => old.map(|o| ("DELETED", o)),
        (EventKind::Create, _, true) => new.map(|o| ("ADDED", o)),
        (EventKind::Update, true, true) => new.map(|o| ("MODIFIED", o)),
        (EventKind::Update, false, true) => new.map(|o| ("ADDED", o)),
        // It stopped matching: for this client it is gone, shown in its new state.
        (EventKind::Update, true, false) => new.map(|o| ("DELETED", o)),
        _ => None,
    }
}

/// The watch event line of a store event for a client that selects everything in the stored version,
/// built from the stored bytes (of which only `metadata` is read for a metadata-only client); `None`
/// for a delete without its previous value (nothing to show, as [`select`] decides too).
fn raw_line(ev: &Event, metadata_only: bool) -> Option<Vec<u8>> {
    let (kind, bytes, revision) = match ev.kind {
        EventKind::Create => ("ADDED", &ev.kv.value, ev.kv.mod_revision),
        EventKind::Update => ("MODIFIED", &ev.kv.value, ev.kv.mod_revision),
        // A deleted object is shown as it was, at the revision of its deletion.
        EventKind::Delete => ("DELETED", &ev.prev.as_ref()?.value, ev.revision()),
    };
    let mut out = Vec::with_capacity(bytes.len() + 64);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    if metadata_only {
        let partial = object::partial_metadata_of(bytes, revision);
        out.extend_from_slice(&serde_json::to_vec(&partial).expect("a Value always serializes"));
    } else if !object::write_with_resource_version(bytes, revision, &mut out) {
        // Not an object with metadata (never written by this server): the general path shows it.
        let obj = object::decode_raw(bytes, revision);
        out.extend_from_slice(&serde_json::to_vec(&obj).expect("a Value always serializes"));
    }
    out.extend_from_slice(b"}\n");
    Some(out)
}

fn bookmark(info: &ResourceInfo, rev: i64) -> Value {
    json!({ "kind": info.kind, "apiVersion": info.api_version(), "metadata": { "resourceVersion": rev.to_string() } })
}

fn line(event: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(event).expect("a Value always serializes");
    bytes.push(b'\n');
    bytes
}

fn stream_response(body: Body) -> Response {
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{server::registry::find, storage::KeyValue};

    fn kv(value: &Value, create_revision: i64, mod_revision: i64) -> KeyValue {
        KeyValue {
            key: "/registry/pods/default/p".into(),
            value: serde_json::to_vec(value).expect("json"),
            create_revision,
            mod_revision,
        }
    }

    /// The line spliced from stored bytes says what the decoding path says, for every event kind.
    #[test]
    fn raw_lines_equal_decoded_lines() {
        let info = find("", "v1", "pods").expect("served");
        let filter = Filter::new(info, &ListQuery::default()).expect("filter");
        let old = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "p", "labels": { "a": "b" } },
            "spec": { "containers": [{ "name": "c", "image": "i" }] } });
        let mut new = old.clone();
        new["spec"]["nodeName"] = json!("n1");
        let events = [
            Event {
                kind: EventKind::Create,
                kv: kv(&old, 5, 5),
                prev: None,
            },
            Event {
                kind: EventKind::Update,
                kv: kv(&new, 5, 7),
                prev: Some(kv(&old, 5, 5)),
            },
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    value: Vec::new(),
                    ..kv(&new, 5, 9)
                },
                prev: Some(kv(&new, 5, 7)),
            },
        ];
        for ev in &events {
            let raw = raw_line(ev, false).expect("a line");
            assert_eq!(raw.last(), Some(&b'\n'));
            assert_eq!(
                raw.iter().filter(|b| **b == b'\n').count(),
                1,
                "one line per event"
            );
            let (kind, obj) = select(&filter, ev).expect("selected");
            let decoded = json!({ "type": kind, "object": obj });
            let spliced: Value = serde_json::from_slice(&raw).expect("valid json");
            assert_eq!(spliced, decoded, "{:?}", ev.kind);
        }
        assert_eq!(
            serde_json::from_slice::<Value>(&raw_line(&events[2], false).expect("line")).expect("json")["object"]
                ["metadata"]["resourceVersion"],
            "9",
            "a deleted object is shown at the revision of its deletion"
        );
        let orphan = Event {
            kind: EventKind::Delete,
            kv: kv(&new, 5, 9),
            prev: None,
        };
        assert!(raw_line(&orphan, false).is_none() && select(&filter, &orphan).is_none());
        for ev in &events {
            let (_, obj) = select(&filter, ev).expect("selected");
            let line: Value = serde_json::from_slice(&raw_line(ev, true).expect("line")).expect("json");
            assert_eq!(line["object"], object::partial_metadata(&obj), "{:?}", ev.kind);
        }
    }
}
