//! DELETE of one object, honouring DeleteOptions preconditions (uid, resourceVersion).

use axum::response::Response;
use serde_json::Value;

use super::{Scope, json_response};
use crate::{
    server::{ApiServer, object, status::{self, ApiError}},
    storage::StoreError,
};

/// Deletes the named object; 200 with a Success status.
pub async fn delete(api: &ApiServer, scope: &Scope, options: &Value, dry_run: bool) -> Result<Response, ApiError> {
    let info = scope.info;
    let name = scope.name().to_owned();
    let key = scope.key();
    let pre = &options["preconditions"];
    let want_rv = pre.get("resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
    let want_uid = pre.get("uid").and_then(Value::as_str).filter(|s| !s.is_empty());
    let (current, _) = api.store.get(&key, 0).await.map_err(|e| ApiError::from_store(e, &info.qualified(), &name))?;
    let current = current.ok_or_else(|| ApiError::not_found(&info.qualified(), &name))?;
    let obj = object::decode(&current);
    let uid = object::meta_str(&obj, "uid").unwrap_or("").to_owned();
    if let Some(want) = want_uid.filter(|w| *w != uid) {
        return Err(precondition_failed(&info.qualified(), &name, &format!("UID in precondition: {want}, UID in object meta: {uid}")));
    }
    let expected = match want_rv {
        Some(rv) => {
            let rv: i64 = rv.parse().map_err(|_| ApiError::bad_request(format!("invalid resourceVersion precondition {rv:?}")))?;
            if rv != current.mod_revision {
                return Err(precondition_failed(
                    &info.qualified(),
                    &name,
                    &format!("ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}", current.mod_revision),
                ));
            }
            rv
        }
        // Guard on what we just read so a concurrent update is not silently deleted over.
        None => current.mod_revision,
    };
    if dry_run {
        return Ok(json_response(200, &status::deleted(&info.qualified(), &name, &uid)));
    }
    api.store.delete(&key, Some(expected)).await.map_err(|e| match e {
        StoreError::Conflict { .. } => ApiError::conflict(&info.qualified(), &name),
        e => ApiError::from_store(e, &info.qualified(), &name),
    })?;
    Ok(json_response(200, &status::deleted(&info.qualified(), &name, &uid)))
}

fn precondition_failed(resource: &str, name: &str, detail: &str) -> ApiError {
    let mut e = ApiError::conflict(resource, name);
    e.message = format!("Precondition failed: {detail}");
    e
}
