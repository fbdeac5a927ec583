//! LIST of a collection with upstream's resourceVersion semantics and limit/continue paging.
//!
//! - resourceVersion unset: a consistent read of the latest state, from the store;
//! - "0": any state will do, served from the watch cache (no paging, as upstream);
//! - N (NotOlderThan, the default): the cache if it has reached N, else the store;
//! - N with `resourceVersionMatch=Exact`, or N with a limit: the store at exactly revision N.
//!
//! A page's continue token pins the revision of the first page, so every page of one list shows the
//! same snapshot; a token whose revision has been compacted gets 410 Expired.

use std::borrow::Borrow;

use axum::response::Response;
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{Filter, ListQuery, Scope, json_response};
use crate::{
    server::{ApiServer, object, status::ApiError, table},
    storage::{KeyValue, ListOptions, Revision, StoreError},
};

/// What a continue token carries (upstream's is the same shape: version, revision, start key).
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    v: String,
    rv: Revision,
    start: String,
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid: the continue parameter is malformed");
    let bytes = STANDARD.decode(token).map_err(|_| bad())?;
    let c: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.v != "meta.k8s.io/v1" || c.rv <= 0 || c.start.contains("..") {
        return Err(bad());
    }
    Ok((c.rv, format!("{prefix}{}", c.start)))
}

fn encode_continue(rv: Revision, last_key: &str, prefix: &str) -> String {
    let start = last_key.strip_prefix(prefix).unwrap_or(last_key).to_owned();
    STANDARD.encode(
        serde_json::to_vec(&Continue {
            v: "meta.k8s.io/v1".into(),
            rv,
            start,
        })
        .expect("serializes"),
    )
}

/// Lists the scope's collection.
pub async fn list(api: &ApiServer, scope: &Scope, q: &ListQuery) -> Result<Response, ApiError> {
    let prefix = scope.prefix();
    Filter::new(scope.info, q)?;
    let limit = q.limit.filter(|l| *l > 0).map_or(0, |l| l as usize);
    let exact = q.resource_version_match.as_deref() == Some("Exact");
    if let Some(m) = q
        .resource_version_match
        .as_deref()
        .filter(|m| !m.is_empty() && *m != "Exact" && *m != "NotOlderThan")
    {
        return Err(ApiError::bad_request(format!(
            "resourceVersionMatch: Unsupported value: {m:?}"
        )));
    }
    let rv = q.revision()?;
    if exact && rv.is_none_or(|r| r == 0) {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided and non-zero".to_string(),
        ));
    }

    if let Some(token) = q.continue_token.as_deref().filter(|t| !t.is_empty()) {
        let (rev, start_after) = decode_continue(token, &prefix)?;
        return from_store(
            api,
            scope,
            q,
            &prefix,
            ListOptions {
                start_after: Some(start_after),
                revision: rev,
                limit,
            },
            true,
        )
        .await;
    }
    let cache = &api.caches[scope.info.resource];
    match rv {
        Some(0) => {
            let (items, rev) = cache
                .list(&prefix, 0)
                .await
                .map_err(ApiError::from_watch)?
                .expect("min 0 always served");
            Ok(respond(scope, q, &items, rev, None))
        }
        Some(rev) if exact || limit > 0 => {
            from_store(
                api,
                scope,
                q,
                &prefix,
                ListOptions {
                    start_after: None,
                    revision: rev,
                    limit,
                },
                false,
            )
            .await
        }
        Some(rev) => match cache.list(&prefix, rev).await.map_err(ApiError::from_watch)? {
            Some((items, at)) => Ok(respond(scope, q, &items, at, None)),
            None => {
                let current = api
                    .store
                    .current_revision()
                    .await
                    .map_err(|e| ApiError::from_store(e, &scope.info.qualified(), ""))?;
                if rev > current {
                    return Err(ApiError::from_store(
                        StoreError::FutureRevision {
                            requested: rev,
                            current,
                        },
                        &scope.info.qualified(),
                        "",
                    ));
                }
                from_store(
                    api,
                    scope,
                    q,
                    &prefix,
                    ListOptions {
                        start_after: None,
                        revision: 0,
                        limit,
                    },
                    false,
                )
                .await
            }
        },
        None => {
            from_store(
                api,
                scope,
                q,
                &prefix,
                ListOptions {
                    start_after: None,
                    revision: 0,
                    limit,
                },
                false,
            )
            .await
        }
    }
}

async fn from_store(
    api: &ApiServer,
    scope: &Scope,
    q: &ListQuery,
    prefix: &str,
    mut opts: ListOptions,
    continuing: bool,
) -> Result<Response, ApiError> {
    let filter = Filter::new(scope.info, q)?;
    let limit = opts.limit;
    let mut kvs = Vec::new();
    // With selectors a page of the store may hold fewer matches than the limit: keep reading (at the
    // same revision) until the page is full or the prefix is exhausted, as upstream does.
    let (revision, more) = loop {
        let page = api.store.list(prefix, opts.clone()).await.map_err(|e| match e {
            StoreError::Compacted { .. } if continuing => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list \
                 without the continue parameter, or use the continue token in this response to retrieve the remainder of \
                 the results. Continuing with the provided token results in an inconsistent list - objects that were \
                 created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            ),
            e => ApiError::from_store(e, &scope.info.qualified(), ""),
        })?;
        opts.revision = page.revision;
        opts.start_after = page.kvs.last().map(|kv| kv.key.clone());
        let mut stopped_early = false;
        let count = page.kvs.len();
        for (i, kv) in page.kvs.into_iter().enumerate() {
            if filter.is_everything() || filter.matches(&object::decode(scope.info, &kv)) {
                kvs.push(kv);
            }
            if limit > 0 && kvs.len() == limit {
                stopped_early = i + 1 < count;
                break;
            }
        }
        let full = limit > 0 && kvs.len() == limit;
        if full || !page.more {
            break (page.revision, stopped_early || page.more);
        }
    };
    let token = match (more, kvs.last()) {
        (true, Some(last)) => Some(encode_continue(revision, &last.key, prefix)),
        _ => None,
    };
    Ok(respond(scope, q, &kvs, revision, token))
}

/// The list response; `items` are the store's or the watch cache's (shared) key-values.
fn respond<K: Borrow<KeyValue>>(
    scope: &Scope,
    q: &ListQuery,
    items: &[K],
    revision: Revision,
    token: Option<String>,
) -> Response {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(token) = token {
        metadata["continue"] = Value::String(token);
    }
    let filter = Filter::new(scope.info, q).ok();
    if q.table.is_none()
        && !q.metadata_only
        && filter.as_ref().is_none_or(Filter::is_everything)
        && !scope.info.converts()
    {
        return raw_list(scope, items, metadata);
    }
    let items: Vec<Value> = items
        .iter()
        .map(|kv| object::decode(scope.info, kv.borrow()))
        .filter(|obj| filter.as_ref().is_none_or(|f| f.matches(obj)))
        .collect();
    if let Some(include) = q.table {
        return json_response(200, &table::table(scope.info, &items, metadata, include, true));
    }
    if q.metadata_only {
        let items: Vec<Value> = items.iter().map(object::partial_metadata).collect();
        return json_response(
            200,
            &json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items }),
        );
    }
    let mut list = json!({ "kind": scope.info.list_kind(), "apiVersion": scope.info.api_version(), "metadata": metadata });
    list["items"] = Value::Array(items);
    json_response(200, &list)
}

/// The common case, a plain list: the stored bytes go out as they are, with the resourceVersion
/// spliced in, instead of a JSON tree per object built, copied, printed and freed (for 10,000 pods that
/// is the difference between milliseconds and seconds).
fn raw_list<K: Borrow<KeyValue>>(scope: &Scope, items: &[K], metadata: Value) -> Response {
    let mut body =
        Vec::with_capacity(items.iter().map(|kv| kv.borrow().value.len() + 32).sum::<usize>() + 256);
    body.extend_from_slice(
        format!(
            "{{\"kind\":{},\"apiVersion\":{},\"metadata\":{},\"items\":[",
            Value::from(scope.info.list_kind()),
            Value::from(scope.info.api_version()),
            metadata
        )
        .as_bytes(),
    );
    for (i, kv) in items.iter().enumerate() {
        let kv = kv.borrow();
        if i > 0 {
            body.push(b',');
        }
        if !object::write_with_resource_version(&kv.value, kv.mod_revision, &mut body) {
            // Not the shape the server writes (never expected): take the slow, sure path.
            body.extend_from_slice(&serde_json::to_vec(&object::decode(scope.info, kv)).unwrap_or_default());
        }
    }
    body.extend_from_slice(b"]}");
    axum::response::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .expect("static headers are valid")
}
