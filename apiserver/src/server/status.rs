//! Every error the API server returns, as a Kubernetes `Status` object: the one place errors are
//! mapped (upstream's `apimachinery/pkg/api/errors`). kubectl prints `message`; clients branch on
//! `reason` and `code`, so both follow upstream exactly.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::{storage::StoreError, watch_cache::WatchError};

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Upstream's `StatusReason` ("NotFound", "Conflict", "Expired", …).
    pub reason: &'static str,
    /// The human-readable message kubectl prints.
    pub message: String,
    /// `details`: name, group, kind, causes.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, resource: &str, name: &str) -> Self {
        self.details = Some(json!({ "name": name, "kind": resource }));
        self
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 404 NotFound for `resource` "name".
    pub fn not_found(resource: &str, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{resource} \"{name}\" not found")).with_details(resource, name)
    }

    /// 404 for a path that names no resource we serve.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(verb: &str, resource: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("{verb} is not supported on resources of kind \"{resource}\""),
        )
    }

    /// 409 AlreadyExists.
    pub fn already_exists(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{resource} \"{name}\" already exists"),
        )
        .with_details(resource, name)
    }

    /// 409 Conflict on a stale resourceVersion (the message kubectl users know).
    pub fn conflict(resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again"
            ),
        )
        .with_details(resource, name)
    }

    /// 409 Conflict with upstream's message for a write that cannot be done in the object's state.
    pub fn conflict_with(resource: &str, name: &str, message: impl Into<String>) -> Self {
        Self::new(409, "Conflict", message).with_details(resource, name)
    }

    /// 503 ServiceUnavailable: what the request needs is not there (yet).
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 410 Expired: a resourceVersion or continue token older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type:?})"
            ),
        )
    }

    /// 415 for a protobuf body of a kind there is no protobuf schema for: upstream's answer to a custom
    /// resource sent as protobuf, whose only encodings are JSON and YAML.
    pub fn protobuf_not_supported() -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
        )
    }

    /// 415 for a PATCH whose Content-Type is not a patch type we apply.
    pub fn unsupported_patch(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json \
                 (got {content_type:?})"
            ),
        )
    }

    /// A patch that could not be decoded (400), is too large (413) or cannot be applied (422).
    pub fn patch_failed(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(code, reason, message)
    }

    /// 422 Invalid with one cause per field, formatted as upstream's field errors.
    pub fn invalid(kind: &str, name: &str, causes: Vec<(String, String, String)>) -> Self {
        let summary: Vec<String> = causes
            .iter()
            .map(|(field, _, msg)| format!("{field}: {msg}"))
            .collect();
        let message = if summary.len() == 1 {
            format!("{kind} \"{name}\" is invalid: {}", summary[0])
        } else {
            format!("{kind} \"{name}\" is invalid: [{}]", summary.join(", "))
        };
        let causes: Vec<Value> = causes
            .into_iter()
            .map(|(field, reason, message)| json!({ "reason": reason, "message": message, "field": field }))
            .collect();
        let mut err = Self::new(422, "Invalid", message);
        err.details = Some(json!({ "name": name, "kind": kind, "causes": causes }));
        err
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// Maps a store failure on `resource` "name" to the error upstream returns for it.
    pub fn from_store(err: StoreError, resource: &str, name: &str) -> Self {
        match err {
            StoreError::NotFound(_) => Self::not_found(resource, name),
            StoreError::AlreadyExists { .. } => Self::already_exists(resource, name),
            StoreError::Conflict { .. } => Self::conflict(resource, name),
            StoreError::Compacted { requested, compacted } => Self::expired(format!(
                "The resourceVersion for the provided list is too old (requested {requested}, oldest available {compacted})."
            )),
            StoreError::FutureRevision { requested, current } => {
                let mut e = Self::new(
                    504,
                    "Timeout",
                    format!("Too large resource version: {requested}, current: {current}"),
                );
                e.details = Some(
                    json!({ "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }], "retryAfterSeconds": 1 }),
                );
                e
            }
            // A watch that fell behind the store is over, as one the watch cache closes: the client re-lists.
            StoreError::WatchLagged => Self::expired(err.to_string()),
            StoreError::Unavailable(msg) => Self::new(503, "ServiceUnavailable", msg),
            StoreError::Internal(msg) => Self::internal(msg),
        }
    }

    /// Maps a watch cache failure.
    pub fn from_watch(err: WatchError) -> Self {
        match err {
            WatchError::Expired { requested, oldest } => {
                Self::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            WatchError::NotReady(msg) => Self::new(
                503,
                "ServiceUnavailable",
                format!("storage is (re)initializing: {msg}"),
            ),
            WatchError::TooSlow | WatchError::Reinitialized(_) => Self::expired(err.to_string()),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(self.to_status())).into_response()
    }
}

/// The `Status` a successful delete of a kind without `ReturnDeletedObject` returns.
pub fn deleted(resource: &str, name: &str, uid: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": name, "kind": resource, "uid": uid },
    })
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.reason)
    }
}

impl std::error::Error for ApiError {}
