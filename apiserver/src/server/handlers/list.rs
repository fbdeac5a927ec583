//! LIST of a collection with upstream's resourceVersion semantics and limit/continue paging.
//!
//! - resourceVersion unset: a consistent read of the latest state, from the store;
//! - "0": any state will do, served from the watch cache (no paging, as upstream);
//! - N (NotOlderThan, the default): the cache if it has reached N, else the store;
//! - N with `resourceVersionMatch=Exact`, or N with a limit: the store at exactly revision N.
//!
//! A page's continue token pins the revision of the first page, so every page of one list shows the
//! same snapshot; a token whose revision has been compacted gets 410 Expired.

use axum::response::Response;
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

use super::{ListQuery, Scope, json_response};
use crate::{
    server::{ApiServer, object, status::ApiError},
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
    STANDARD.encode(serde_json::to_vec(&Continue { v: "meta.k8s.io/v1".into(), rv, start }).expect("serializes"))
}

/// Lists the scope's collection.
pub async fn list(api: &ApiServer, scope: &Scope, q: &ListQuery) -> Result<Response, ApiError> {
    let prefix = scope.prefix();
    let limit = q.limit.filter(|l| *l > 0).map_or(0, |l| l as usize);
    let exact = q.resource_version_match.as_deref() == Some("Exact");
    if let Some(m) = q.resource_version_match.as_deref().filter(|m| !m.is_empty() && *m != "Exact" && *m != "NotOlderThan") {
        return Err(ApiError::bad_request(format!("resourceVersionMatch: Unsupported value: {m:?}")));
    }
    let rv = q.revision()?;
    if exact && rv.is_none_or(|r| r == 0) {
        return Err(ApiError::bad_request("resourceVersionMatch is forbidden unless resourceVersion is provided and non-zero".to_string()));
    }

    if let Some(token) = q.continue_token.as_deref().filter(|t| !t.is_empty()) {
        let (rev, start_after) = decode_continue(token, &prefix)?;
        return from_store(api, scope, &prefix, ListOptions { start_after: Some(start_after), revision: rev, limit }, true).await;
    }
    let cache = &api.caches[scope.info.resource];
    match rv {
        Some(0) => {
            let (items, rev) = cache.list(&prefix, 0).await.map_err(ApiError::from_watch)?.expect("min 0 always served");
            Ok(respond(scope, &items, rev, None))
        }
        Some(rev) if exact || limit > 0 => {
            from_store(api, scope, &prefix, ListOptions { start_after: None, revision: rev, limit }, false).await
        }
        Some(rev) => match cache.list(&prefix, rev).await.map_err(ApiError::from_watch)? {
            Some((items, at)) => Ok(respond(scope, &items, at, None)),
            None => {
                let current = api.store.current_revision().await.map_err(|e| ApiError::from_store(e, scope.info.resource, ""))?;
                if rev > current {
                    return Err(ApiError::from_store(StoreError::FutureRevision { requested: rev, current }, scope.info.resource, ""));
                }
                from_store(api, scope, &prefix, ListOptions { start_after: None, revision: 0, limit }, false).await
            }
        },
        None => from_store(api, scope, &prefix, ListOptions { start_after: None, revision: 0, limit }, false).await,
    }
}

async fn from_store(
    api: &ApiServer,
    scope: &Scope,
    prefix: &str,
    opts: ListOptions,
    continuing: bool,
) -> Result<Response, ApiError> {
    let page = api.store.list(prefix, opts).await.map_err(|e| match e {
        StoreError::Compacted { .. } if continuing => ApiError::expired(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list \
             without the continue parameter, or use the continue token in this response to retrieve the remainder of \
             the results. Continuing with the provided token results in an inconsistent list - objects that were \
             created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        ),
        e => ApiError::from_store(e, scope.info.resource, ""),
    })?;
    let token = match (page.more, page.kvs.last()) {
        (true, Some(last)) => Some(encode_continue(page.revision, &last.key, prefix)),
        _ => None,
    };
    Ok(respond(scope, &page.kvs, page.revision, token))
}

fn respond(scope: &Scope, items: &[KeyValue], revision: Revision, token: Option<String>) -> Response {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if let Some(token) = token {
        metadata["continue"] = Value::String(token);
    }
    let items: Vec<Value> = items.iter().map(object::decode).collect();
    json_response(
        200,
        &json!({
            "kind": scope.info.list_kind(),
            "apiVersion": scope.info.api_version,
            "metadata": metadata,
            "items": items,
        }),
    )
}
