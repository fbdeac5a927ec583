//! The patch engine behind the PATCH verb: JSON patch (RFC 6902), JSON merge patch (RFC 7396) and
//! Kubernetes' strategic merge patch, each a pure function from (stored object, request body) to the
//! patched object, over objects held as [`serde_json::Value`].
//!
//! Upstream this is `apiserver/pkg/endpoints/handlers/patch.go` (choosing the mechanism by
//! Content-Type and mapping errors to `Status`), `evanphx/json-patch` for the two RFCs, and
//! `apimachinery/pkg/util/strategicpatch` for the strategic kind. Here:
//! - [`json`]: RFC 6902 through the `json-patch` crate, errors naming the failed operation;
//! - [`merge`]: RFC 7396 through the `json-patch` crate;
//! - [`strategic`]: strategic merge patch with its directives, written for this crate;
//! - [`schema`]: which list fields merge, and by which key, for the built-in kinds.
//!
//! Server-side apply (`application/apply-patch+yaml`) is recognised by [`PatchType`] but not
//! implemented (it needs managedFields and field ownership): [`apply_patch`] answers it with 415.
//! Every function here is total: any input bytes give a value or a [`PatchError`], never a panic.

pub mod json;
pub mod merge;
pub mod schema;
pub mod strategic;

#[cfg(test)]
mod tests;

use serde_json::Value;

pub use json::{MAX_JSON_PATCH_OPERATIONS, apply_json_patch};
pub use merge::apply_merge_patch;
pub use schema::{SchemaRef, schema_for};
pub use strategic::apply_strategic_merge_patch;

/// The four PATCH body formats, named by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`: an RFC 6902 list of operations.
    Json,
    /// `application/merge-patch+json`: an RFC 7396 merge patch (kubectl's choice for CRs).
    Merge,
    /// `application/strategic-merge-patch+json`: Kubernetes' strategic merge patch (built-ins only).
    Strategic,
    /// `application/apply-patch+yaml`: server-side apply. Recognised, not implemented.
    Apply,
}

impl PatchType {
    /// The patch type for a `Content-Type` header value; parameters (`; charset=utf-8`) and case
    /// are ignored. `None` for anything else, which the server answers with 415.
    pub fn from_content_type(content_type: &str) -> Option<PatchType> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        [Self::Json, Self::Merge, Self::Strategic, Self::Apply]
            .into_iter()
            .find(|t| t.content_type().eq_ignore_ascii_case(essence))
    }

    /// The media type of this patch format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json-patch+json",
            Self::Merge => "application/merge-patch+json",
            Self::Strategic => "application/strategic-merge-patch+json",
            Self::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a patch could not be applied. `Display` is the `message` of the `Status` the server returns;
/// [`PatchError::code`] and [`PatchError::reason`] give its `code` and `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not JSON, or not the shape its patch type needs (400 BadRequest).
    #[error("error decoding patch: {0}")]
    Decode(String),
    /// A JSON patch with more operations than the server accepts (413, like upstream's
    /// `maxJSONPatchOperations`).
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations {
        /// The limit.
        max: usize,
        /// Operations in the request.
        got: usize,
    },
    /// A JSON patch operation that does not apply to the object: a failed `test`, a path that does
    /// not exist (422 Invalid). Upstream sends the generic phrase as `message` and the jsonpatch
    /// error as a cause; here both are in the message, so kubectl shows which operation failed.
    #[error(
        "the server rejected our request due to an error in our request: \
         json patch operation {index} ({op} {path:?}) failed: {detail}"
    )]
    JsonPatchFailed {
        /// Position of the failed operation in the patch, from 0.
        index: usize,
        /// The operation's `op` ("test", "replace", …).
        op: &'static str,
        /// The operation's `path`.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// A strategic merge patch whose directives are malformed (400 BadRequest), e.g. upstream's
    /// "invalid patch format of retainKeys".
    #[error("{0}")]
    BadRequest(String),
    /// A strategic merge patch that cannot be applied to this object (422 Invalid), e.g.
    /// `map: map[image:nginx] does not contain declared merge key: name`.
    #[error("{0}")]
    Invalid(String),
    /// The patch format is not served for this resource (415 UnsupportedMediaType).
    #[error(
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
    )]
    UnsupportedMediaType,
}

impl PatchError {
    /// The HTTP status code of the `Status` for this error.
    pub fn code(&self) -> u16 {
        match self {
            Self::Decode(_) | Self::BadRequest(_) => 400,
            Self::TooManyOperations { .. } => 413,
            Self::UnsupportedMediaType => 415,
            Self::JsonPatchFailed { .. } | Self::Invalid(_) => 422,
        }
    }

    /// The `reason` of the `Status` for this error.
    pub fn reason(&self) -> &'static str {
        match self.code() {
            400 => "BadRequest",
            413 => "RequestEntityTooLarge",
            415 => "UnsupportedMediaType",
            _ => "Invalid",
        }
    }
}

/// Applies a patch body of the given type to `target`. `schema` is used only by strategic merge
/// patch (see [`schema_for`]). Server-side apply is not implemented and answers 415.
pub fn apply_patch(
    patch_type: PatchType,
    target: &Value,
    patch: &[u8],
    schema: &SchemaRef,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => apply_json_patch(target, patch),
        PatchType::Merge => apply_merge_patch(target, patch),
        PatchType::Strategic => apply_strategic_merge_patch(target, patch, schema),
        PatchType::Apply => Err(PatchError::UnsupportedMediaType),
    }
}

/// Parses a request body as JSON; the error is the 400 every patch type gives for bad JSON.
fn decode(patch: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(patch).map_err(|e| PatchError::Decode(e.to_string()))
}

/// Parses a request body that must be a JSON object (merge and strategic merge patches).
fn decode_object(patch: &[u8], what: &str) -> Result<serde_json::Map<String, Value>, PatchError> {
    match decode(patch)? {
        Value::Object(map) => Ok(map),
        other => Err(PatchError::Decode(format!(
            "{what} must be a JSON object, not {}",
            json_type(&other)
        ))),
    }
}

/// The JSON type name of a value, for error messages.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
