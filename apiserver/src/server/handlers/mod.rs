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

use super::{
    ApiServer, MAX_BODY, protobuf, registry,
    registry::ResourceInfo,
    selector::{FieldSelector, LabelSelector},
    status::ApiError,
};

pub mod binding;
pub mod create;
pub mod delete;
pub mod eviction;
pub mod get;
pub mod list;
pub mod patch;
pub mod pod_connect;
pub mod update;
pub mod watch;

/// What a resource path names: a resource, maybe a namespace, maybe one object, maybe a subresource.
#[derive(Debug)]
pub struct Scope {
    /// The resource.
    pub info: &'static ResourceInfo,
    /// The namespace in the path (None: cluster-scoped, or across all namespaces).
    pub namespace: Option<String>,
    /// The object's name (None: the collection).
    pub name: Option<String>,
    /// `status`, `scale`, … (only with a name).
    pub subresource: Option<String>,
}

impl Scope {
    /// Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths.
    pub fn parse(path: &str) -> Result<Self, ApiError> {
        let no_route = || ApiError::no_route(path);
        let (group, version, rest) = if let Some(rest) = path.strip_prefix("/api/v1/") {
            ("", "v1", rest)
        } else if let Some(rest) = path.strip_prefix("/apis/") {
            let mut parts = rest.splitn(3, '/');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(g), Some(v), Some(rest)) => (g, v, rest),
                _ => return Err(no_route()),
            }
        } else {
            return Err(no_route());
        };
        let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
        let find = |r: &str| registry::find(group, version, r);
        // `namespaces/<ns>/<resource>…` names a namespaced resource, unless <resource> is not one
        // (then it is the cluster-scoped `namespaces/<name>/<subresource>`).
        let (namespace, info, name, sub) = match segs.as_slice() {
            ["namespaces", ns, r, rest @ ..] if rest.len() <= 2 && find(r).is_some_and(|i| i.namespaced) => {
                (Some(*ns), find(r), rest.first().copied(), rest.get(1).copied())
            }
            [r, rest @ ..] if rest.len() <= 2 => (None, find(r), rest.first().copied(), rest.get(1).copied()),
            _ => return Err(no_route()),
        };
        let info = info.ok_or_else(no_route)?;
        // A namespaced object needs its namespace; a cluster-scoped resource has none.
        if info.namespaced && name.is_some() && namespace.is_none() {
            return Err(no_route());
        }
        let subresource = match sub {
            None => None,
            Some(s) => match info.subresources.iter().find(|sub| sub.name() == s) {
                Some(sub) => Some(sub.name().to_owned()),
                None => return Err(no_route()),
            },
        };
        Ok(Self {
            info,
            namespace: namespace.map(str::to_owned),
            name: name.map(str::to_owned),
            subresource,
        })
    }

    /// The storage key of the named object.
    pub fn key(&self) -> String {
        self.info.key(
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or_default(),
        )
    }

    /// The storage prefix of the collection.
    pub fn prefix(&self) -> String {
        self.info.prefix(self.namespace.as_deref())
    }

    /// The object's name ("" for a collection).
    pub fn name(&self) -> &str {
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
    /// A watch that starts with the current state, then an `initial-events-end` bookmark.
    pub send_initial_events: Option<String>,
    /// `labelSelector=app=web,tier!=db`.
    pub label_selector: Option<String>,
    /// `fieldSelector=status.phase=Running`.
    pub field_selector: Option<String>,
    /// What Table rows carry: `Object`, `Metadata` or `None`.
    pub include_object: Option<String>,
    /// Set from the Accept header (not a query parameter): render a Table, with these row objects.
    #[serde(skip)]
    pub table: Option<crate::server::table::IncludeObject>,
    /// Set from the Accept header: objects as PartialObjectMetadata (lists as PartialObjectMetadataList).
    #[serde(skip)]
    pub metadata_only: bool,
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

/// The label and field selectors of a list or watch, checked against one kind.
pub struct Filter {
    /// The kind filtered.
    pub info: &'static ResourceInfo,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    /// Parses the selectors of `q`; 400 for a malformed one or a field the kind cannot select on.
    pub fn new(info: &'static ResourceInfo, q: &ListQuery) -> Result<Self, ApiError> {
        let labels = LabelSelector::parse(q.label_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let fields = FieldSelector::parse(q.field_selector.as_deref().unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let supported = info.selectable_fields();
        if let Some(field) = fields.unsupported_field(supported) {
            // Upstream words this by kind: kinds with their own field list name the field only.
            return Err(ApiError::bad_request(if supported.len() > 2 {
                format!("field label not supported: {field}")
            } else {
                format!(
                    "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                )
            }));
        }
        Ok(Self { info, labels, fields })
    }

    /// True when no selector is set.
    pub fn is_everything(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches_object(obj) && self.fields.matches(|f| self.info.field_value(obj, f))
    }
}

/// Query parameters of writes (POST, PUT, PATCH, DELETE).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteQuery {
    /// `All`: validate and answer, store nothing.
    pub dry_run: Option<String>,
    /// `Strict`, `Warn` (default) or `Ignore` for unknown fields.
    pub field_validation: Option<String>,
    /// Who is writing (recorded in managedFields).
    pub field_manager: Option<String>,
    /// `force=true`: a server-side apply takes over conflicting fields.
    pub force: Option<String>,
    /// The client's User-Agent, the manager's name when `fieldManager` is not given.
    #[serde(skip)]
    pub user_agent: Option<String>,
    /// Set by server-side apply, which records ownership itself.
    #[serde(skip)]
    pub applied: bool,
}

impl WriteQuery {
    /// Whether this is a dry run; 400 for values other than `All`.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    /// The field manager of this write: `fieldManager`, else the User-Agent's program name (as
    /// upstream: `kubectl/v1.32.4 (linux/amd64) …` → `kubectl`), else `unknown`.
    pub fn manager(&self) -> String {
        self.field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .or_else(|| {
                self.user_agent
                    .as_deref()
                    .and_then(|ua| ua.split('/').next())
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// The field validation level.
    pub fn validation(&self) -> Result<crate::server::decode::FieldValidation, ApiError> {
        crate::server::decode::FieldValidation::parse(self.field_validation.as_deref())
    }
}

/// Adds one `Warning` header per message (RFC 7234 warn-code 299, as upstream sends them).
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            response.headers_mut().append("warning", v);
        }
    }
    response
}

/// The encodings a request body may come in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf`, which kubectl's typed commands send.
    Protobuf,
}

/// Reads a JSON, YAML or Kubernetes protobuf object body, refusing bodies over [`MAX_BODY`] with 413.
pub async fn read_object(headers: &HeaderMap, body: Body) -> Result<Value, ApiError> {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        // A missing or wildcard type is JSON (the scale client sends PUTs without one).
        "application/json" | "" | "*/*" => BodyFormat::Json,
        "application/yaml" | "application/x-yaml" | "text/yaml" => BodyFormat::Yaml,
        _ if protobuf::is_protobuf(&media) => BodyFormat::Protobuf,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        && len > MAX_BODY
    {
        return Err(ApiError::too_large(MAX_BODY));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))?;
    match format {
        BodyFormat::Protobuf => parse_protobuf(&bytes),
        _ => parse_object(&bytes, format == BodyFormat::Yaml),
    }
}

/// Decodes a Kubernetes protobuf body into the JSON object the same client would have sent: 400 for
/// a malformed body, 415 for a kind we have no protobuf schema for (as upstream answers a custom
/// resource sent as protobuf).
pub fn parse_protobuf(bytes: &[u8]) -> Result<Value, ApiError> {
    protobuf::decode_object(bytes).map_err(|e| match e {
        protobuf::DecodeError::Malformed(message) => ApiError::bad_request(message),
        protobuf::DecodeError::NoSchema { .. } => ApiError::protobuf_not_supported(),
    })
}

/// Parses a request body as a JSON object (or YAML, which upstream also accepts).
pub fn parse_object(bytes: &[u8], yaml: bool) -> Result<Value, ApiError> {
    let value: Value = if yaml {
        let text =
            std::str::from_utf8(bytes).map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
        serde_saphyr::from_str(text)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body as YAML: {e}")))?
    } else {
        serde_json::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding request body as JSON: {e}")))?
    };
    if !value.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    Ok(value)
}

type Api = State<Arc<ApiServer>>;

/// GET: one object, a list, or a watch.
pub async fn get(
    State(api): Api,
    scope: Scope,
    headers: HeaderMap,
    Query(mut q): Query<ListQuery>,
    Query(cq): Query<pod_connect::ConnectQuery>,
    connect: pod_connect::ConnectRequest,
) -> Result<Response, ApiError> {
    match scope.subresource.as_deref() {
        Some("log") => return pod_connect::log(&api, &scope, &cq, connect).await,
        Some("exec" | "attach" | "portforward") => {
            return pod_connect::connect(&api, &scope, &cq, connect).await;
        }
        Some(sub @ ("binding" | "eviction" | "finalize")) => return Err(not_allowed("get", &scope, sub)),
        _ => {}
    }
    let accept = headers.get("accept").and_then(|v| v.to_str().ok());
    if crate::server::table::wanted(accept) && scope.subresource.is_none() {
        q.table = Some(crate::server::table::IncludeObject::parse(
            q.include_object.as_deref(),
        ));
    } else if accept.is_some_and(|a| {
        a.split(',')
            .any(|t| t.contains("as=PartialObjectMetadata") && t.contains("g=meta.k8s.io"))
    }) && scope.subresource.is_none()
    {
        q.metadata_only = true;
    }
    match (&scope.name, q.is_watch()) {
        (Some(_), _) => get::get(&api, &scope, &q).await,
        (None, true) => watch::watch(&api, &scope, &q).await,
        (None, false) => list::list(&api, &scope, &q).await,
    }
}

/// POST: create in a collection, or a subresource that takes a POST (binding, eviction, exec…).
pub async fn post(
    State(api): Api,
    scope: Scope,
    Query(mut wq): Query<WriteQuery>,
    Query(cq): Query<pod_connect::ConnectQuery>,
    connect: pod_connect::ConnectRequest,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    wq.user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    match scope.subresource.as_deref() {
        Some("binding") => {
            return binding::bind(&api, &scope, &read_object(&headers, body).await?, &wq).await;
        }
        Some("eviction") => {
            return eviction::evict(&api, &scope, &read_object(&headers, body).await?, &wq).await;
        }
        Some("exec" | "attach" | "portforward") => {
            return pod_connect::connect(&api, &scope, &cq, connect).await;
        }
        Some(sub) => return Err(not_allowed("create", &scope, sub)),
        None => {}
    }
    if scope.name.is_some() {
        return Err(ApiError::method_not_allowed("create", &scope.info.qualified()));
    }
    let obj = read_object(&headers, body).await?;
    create::create(&api, &scope, obj, &wq).await
}

/// PUT: replace one object.
pub async fn put(
    State(api): Api,
    scope: Scope,
    Query(mut wq): Query<WriteQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    wq.user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if scope.name.is_none() {
        return Err(ApiError::method_not_allowed("update", &scope.info.qualified()));
    }
    if let Some(sub) = scope
        .subresource
        .as_deref()
        .filter(|s| !matches!(*s, "status" | "scale" | "finalize"))
    {
        return Err(not_allowed("update", &scope, sub));
    }
    let obj = read_object(&headers, body).await?;
    update::update(&api, &scope, obj, &wq).await
}

/// PATCH: one object or subresource.
pub async fn patch(
    State(api): Api,
    scope: Scope,
    Query(mut wq): Query<WriteQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    wq.user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if scope.name.is_none() {
        return Err(ApiError::method_not_allowed("patch", &scope.info.qualified()));
    }
    if let Some(sub) = scope
        .subresource
        .as_deref()
        .filter(|s| !matches!(*s, "status" | "scale"))
    {
        return Err(not_allowed("patch", &scope, sub));
    }
    patch::patch(&api, &scope, &headers, body, &wq).await
}

/// Query parameters DELETE can carry besides the body's DeleteOptions.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteQuery {
    /// `gracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub propagation_policy: Option<String>,
}

/// DELETE: one object, or every object of a collection that the selectors match.
pub async fn delete(
    State(api): Api,
    scope: Scope,
    Query(wq): Query<WriteQuery>,
    Query(dq): Query<DeleteQuery>,
    Query(lq): Query<ListQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(sub) = &scope.subresource {
        return Err(ApiError::method_not_allowed(
            "delete",
            &format!("{}/{sub}", scope.info.qualified()),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))?;
    let protobuf_body = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(protobuf::is_protobuf);
    let body: Value = if bytes.is_empty() {
        Value::Null
    } else if protobuf_body {
        // client-go's typed Delete sends its DeleteOptions in the client's content type.
        parse_protobuf(&bytes)?
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding DeleteOptions: {e}")))?
    };
    let opts = delete::DeleteOptions::parse(
        &body,
        dq.grace_period_seconds,
        dq.propagation_policy,
        wq.dry_run()?,
    )?;
    match scope.name {
        Some(_) => delete::delete(&api, &scope, &opts).await,
        None => delete::delete_collection(&api, &scope, &lq, &opts).await,
    }
}

/// 405 for a verb a subresource does not take.
fn not_allowed(verb: &str, scope: &Scope, sub: &str) -> ApiError {
    ApiError::method_not_allowed(verb, &format!("{}/{sub}", scope.info.qualified()))
}

/// A JSON response with a status code.
pub fn json_response(code: u16, body: &Value) -> Response {
    let code = axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK);
    (code, axum::Json(body)).into_response()
}
