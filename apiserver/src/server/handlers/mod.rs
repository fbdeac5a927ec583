//! Request handlers, one verb per file, and what they share: the [`Scope`] a path names, query
//! parameters, and body decoding.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{FromRequestParts, Query, State},
    http::{HeaderMap, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiServer, MAX_BODY, registry, registry::ResourceInfo, status::ApiError};

pub mod create;
pub mod delete;
pub mod get;
pub mod list;
pub mod update;
pub mod watch;

/// What a `/api/v1/...` path names: a resource, maybe a namespace, maybe one object.
#[derive(Debug)]
pub struct Scope {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// The namespace in the path (None: cluster-scoped, or across all namespaces).
    pub namespace: Option<String>,
    /// The object's name (None: the collection).
    pub name: Option<String>,
}

impl Scope {
    /// Parses the segments after `/api/v1/`.
    pub fn parse(path: &str) -> Result<Self, ApiError> {
        let rest = path.strip_prefix("/api/v1/").unwrap_or(path);
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let (namespace, resource, name) = match segs.as_slice() {
            [r] => (None, *r, None),
            ["namespaces", ns, r] => (Some(*ns), *r, None),
            ["namespaces", ns, r, name] => (Some(*ns), *r, Some(*name)),
            [r, name] => (None, *r, Some(*name)),
            _ => return Err(ApiError::no_route(path)),
        };
        let info = registry::find(resource).ok_or_else(|| ApiError::no_route(path))?;
        // A namespaced object needs its namespace; a cluster-scoped resource has none.
        if (info.namespaced && name.is_some() && namespace.is_none()) || (!info.namespaced && namespace.is_some()) {
            return Err(ApiError::no_route(path));
        }
        Ok(Self { info, namespace: namespace.map(str::to_owned), name: name.map(str::to_owned) })
    }

    /// The storage key of the named object.
    pub fn key(&self) -> String {
        self.info.key(self.namespace.as_deref(), self.name.as_deref().unwrap_or_default())
    }

    /// The storage prefix of the collection.
    pub fn prefix(&self) -> String {
        self.info.prefix(self.namespace.as_deref())
    }

    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Scope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Scope::parse(parts.uri.path())
    }
}

/// Query parameters of list and watch (upstream's `ListOptions`), and of writes (`dryRun`, …).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// `watch=true|1`.
    pub watch: Option<String>,
    /// resourceVersion: "" (most recent), "0" (any), or a revision.
    pub resource_version: Option<String>,
    /// `Exact` or `NotOlderThan`.
    pub resource_version_match: Option<String>,
    /// Page size.
    pub limit: Option<i64>,
    /// Continue token of the previous page.
    #[serde(rename = "continue")]
    pub continue_token: Option<String>,
    /// Whether the watcher wants BOOKMARK events.
    pub allow_watch_bookmarks: Option<String>,
    /// Server-side watch timeout.
    pub timeout_seconds: Option<u64>,
}

impl ListQuery {
    /// True for `watch=true` / `watch=1`.
    pub fn is_watch(&self) -> bool {
        matches!(self.watch.as_deref(), Some("true" | "1"))
    }

    /// The resourceVersion as a revision (None if unset or empty); 400 if it is not a number.
    pub fn revision(&self) -> Result<Option<i64>, ApiError> {
        match self.resource_version.as_deref() {
            None | Some("") => Ok(None),
            Some(rv) => rv
                .parse::<i64>()
                .ok()
                .filter(|r| *r >= 0)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("invalid resource version {rv:?}"))),
        }
    }
}

/// Reads a JSON object body, refusing bodies over [`MAX_BODY`] with 413.
pub async fn read_object(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if !content_type.starts_with("application/json") && !content_type.starts_with("*/*") {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    if let Some(len) = headers.get("content-length").and_then(|v| v.to_str().ok()?.parse::<usize>().ok()) {
        if len > MAX_BODY {
            return Err(ApiError::too_large(MAX_BODY));
        }
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::too_large(MAX_BODY))?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding request body as JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    Ok(value)
}

type Api = State<Arc<ApiServer>>;

/// GET: one object, a list, or a watch.
pub async fn get(State(api): Api, scope: Scope, Query(q): Query<ListQuery>) -> Result<Response, ApiError> {
    match (&scope.name, q.is_watch()) {
        (Some(_), _) => get::get(&api, &scope, &q).await,
        (None, true) => watch::watch(&api, &scope, &q).await,
        (None, false) => list::list(&api, &scope, &q).await,
    }
}

/// POST: create in a collection.
pub async fn post(State(api): Api, scope: Scope, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    if scope.name.is_some() {
        return Err(ApiError::method_not_allowed("create", scope.info.resource));
    }
    let obj = read_object(&headers, body).await?;
    create::create(&api, &scope, obj).await
}

/// PUT: replace one object.
pub async fn put(State(api): Api, scope: Scope, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    if scope.name.is_none() {
        return Err(ApiError::method_not_allowed("update", scope.info.resource));
    }
    let obj = read_object(&headers, body).await?;
    update::update(&api, &scope, obj).await
}

/// DELETE: one object (with optional DeleteOptions body).
pub async fn delete(State(api): Api, scope: Scope, body: Body) -> Result<Response, ApiError> {
    if scope.name.is_none() {
        return Err(ApiError::method_not_allowed("deletecollection", scope.info.resource));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::too_large(MAX_BODY))?;
    let options = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    delete::delete(&api, &scope, &options).await
}

/// A JSON response with a status code.
pub fn json_response(code: u16, body: &Value) -> Response {
    let code = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
    (code, axum::Json(body)).into_response()
}
