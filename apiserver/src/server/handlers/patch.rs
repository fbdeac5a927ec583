//! PATCH: JSON patch, merge patch and strategic merge patch of an object or its `/status` and
//! `/scale` subresources (upstream's `patchResource`).
//!
//! The patch is applied to the object as stored, then written like an update guarded by the revision
//! it was applied to. A conflict with a concurrent writer re-reads and re-applies (upstream retries
//! too), unless the patch itself set `metadata.resourceVersion`: that is the client's precondition,
//! and losing it is a 409.

use axum::{body::Body, http::HeaderMap, response::Response};

use super::{Scope, WriteQuery, update};
use crate::{
    patch::{self, PatchType},
    server::{ApiServer, MAX_BODY, object, status::ApiError},
};

/// How often a patch is re-applied after losing a race to another writer.
const MAX_RETRIES: usize = 5;

/// Applies the request's patch to the named object.
pub async fn patch(
    api: &ApiServer,
    scope: &Scope,
    headers: &HeaderMap,
    body: Body,
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let kind = match PatchType::from_content_type(media) {
        Some(PatchType::Apply) | None => {
            return Err(ApiError::unsupported_patch(media));
        }
        Some(kind) => kind,
    };
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::too_large(MAX_BODY))?;
    for attempt in 0.. {
        let current = update::read_current(api, scope).await?;
        let mut target = object::decode(scope.info, &current);
        if scope.subresource.as_deref() == Some("scale") {
            target = update::scale_of(&target);
        }
        let patched = match kind {
            PatchType::Json => patch::apply_json_patch(&target, &bytes),
            PatchType::Merge => patch::apply_merge_patch(&target, &bytes),
            PatchType::Strategic => {
                patch::apply_strategic_merge_patch(&target, &bytes, &patch::schema_for(scope.info.kind))
            }
            PatchType::Apply => unreachable!("refused above"),
        }
        .map_err(|e| ApiError::patch_failed(e.code(), e.reason(), e.to_string()))?;
        let precondition = update::requested_revision(scope, &patched)?;
        let expected = precondition.unwrap_or(current.mod_revision);
        match update::write(api, scope, &current, patched, expected, wq).await {
            Err(e) if e.reason == "Conflict" && precondition == Some(current.mod_revision) && attempt < MAX_RETRIES => {
                // The object moved under us and the client set no precondition of its own (the
                // revision in the body is the one we stamped): apply the patch to the new state.
                continue;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}
