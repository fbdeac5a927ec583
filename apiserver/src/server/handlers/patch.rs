//! PATCH: JSON patch, merge patch and strategic merge patch of an object or its `/status` and
//! `/scale` subresources (upstream's `patchResource`).
//!
//! The patch is applied to the object as stored, then written like an update guarded by the revision
//! it was applied to. A conflict with a concurrent writer re-reads and re-applies (upstream retries
//! too), unless the patch itself set `metadata.resourceVersion`: that is the client's precondition,
//! and losing it is a 409.

use axum::{body::Body, http::HeaderMap, response::Response};

use super::{Scope, WriteQuery, update};
use crate::fieldmanager;
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
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    let kind = PatchType::from_content_type(media).ok_or_else(|| ApiError::unsupported_patch(media))?;
    let bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(MAX_BODY))?;
    if kind == PatchType::Apply {
        return server_side_apply(api, scope, &bytes, wq).await;
    }
    if wq.force.as_deref().is_some_and(|f| !f.is_empty()) {
        return Err(ApiError::bad_request(
            "force: Invalid value: force may not be set for non-apply patch requests",
        ));
    }
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
            Err(e)
                if e.reason == "Conflict"
                    && precondition == Some(current.mod_revision)
                    && attempt < MAX_RETRIES =>
            {
                // The object moved under us and the client set no precondition of its own (the
                // revision in the body is the one we stamped): apply the patch to the new state.
                continue;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

/// `application/apply-patch+yaml`: server-side apply. Creates the object if absent; otherwise merges
/// the configuration in, owning its fields for the manager, and answers 409 with the conflicting
/// fields (unless `force=true`) when another manager owns one with a different value.
async fn server_side_apply(
    api: &ApiServer,
    scope: &Scope,
    bytes: &[u8],
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let manager = wq
        .field_manager
        .clone()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("fieldManager: Required value: is required for apply requests")
        })?;
    if scope.subresource.is_some() {
        return Err(ApiError::bad_request(
            "server-side apply of a subresource is not supported",
        ));
    }
    let force = matches!(wq.force.as_deref(), Some("true" | "1"));
    // YAML is a superset of JSON: one parser serves both forms kubectl and kube-rs send.
    let config = super::parse_object(bytes, true)?;
    super::create::check_type(scope.info, &config)?;
    if object::meta_str(&config, "name") != Some(scope.name()) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({})",
            object::meta_str(&config, "name").unwrap_or(""),
            scope.name()
        )));
    }
    let applied = WriteQuery {
        applied: true,
        ..wq.clone()
    };
    let now = object::now_rfc3339();
    for attempt in 0.. {
        let (current, _) = api
            .store
            .get(&scope.key(), 0)
            .await
            .map_err(|e| ApiError::from_store(e, &scope.info.qualified(), scope.name()))?;
        let live = current.as_ref().map(|kv| object::decode(scope.info, kv));
        let new = fieldmanager::apply(live.as_ref(), &config, &manager, force, scope.info.kind, &now)
            .map_err(apply_error)?;
        let result = match &current {
            None => super::create::create(api, scope, new, &applied).await,
            Some(kv) => update::write(api, scope, kv, new, kv.mod_revision, &applied).await,
        };
        match result {
            // Lost a race with another writer (or creator): apply again to what is there now.
            Err(e) if (e.reason == "Conflict" || e.reason == "AlreadyExists") && attempt < MAX_RETRIES => {
                continue;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}

fn apply_error(e: fieldmanager::ApplyError) -> ApiError {
    let status = e.to_status();
    let mut err = ApiError::patch_failed(e.code(), e.reason(), e.message());
    err.details = status.get("details").cloned();
    err
}
