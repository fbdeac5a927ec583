//! PUT: replace an object. With `metadata.resourceVersion` the write is guarded by it (a stale one
//! gets 409 Conflict); without, it is an unconditional update, as upstream allows for these kinds.

use axum::response::Response;
use serde_json::Value;

use super::{Scope, create::check_type, json_response};
use crate::{
    server::{ApiServer, object, status::ApiError},
    storage::StoreError,
};

/// Replaces the named object with `obj`; 200 with the stored object.
pub async fn update(api: &ApiServer, scope: &Scope, mut obj: Value) -> Result<Response, ApiError> {
    let info = scope.info;
    let name = scope.name().to_owned();
    check_type(info, &obj)?;
    let body_name = object::meta_str(&obj, "name").unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let expected = match object::meta_str(&obj, "resourceVersion") {
        None | Some("") => None,
        Some(rv) => Some(rv.parse::<i64>().map_err(|_| {
            ApiError::invalid(info.kind, &name, vec![(
                "metadata.resourceVersion".into(),
                "FieldValueInvalid".into(),
                format!("Invalid value: {rv:?}: must be a number"),
            )])
        })?),
    };
    let key = scope.key();
    let (current, _) = api.store.get(&key, 0).await.map_err(|e| ApiError::from_store(e, info.resource, &name))?;
    let current = current.ok_or_else(|| ApiError::not_found(info.resource, &name))?;
    let old = object::decode(&current);
    let expected = expected.unwrap_or(current.mod_revision);

    // Fields the client cannot change through an update.
    let meta = object::meta_mut(&mut obj);
    for field in ["uid", "creationTimestamp", "namespace"] {
        match old["metadata"].get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    obj["kind"] = Value::String(info.kind.to_owned());
    obj["apiVersion"] = Value::String(info.api_version.to_owned());
    let errs = (info.validate)(&obj);
    if !errs.is_empty() {
        return Err(ApiError::invalid(info.kind, &name, errs));
    }
    let kv = api.store.update(&key, object::encode(&obj), expected).await.map_err(|e| match e {
        StoreError::Conflict { .. } => ApiError::conflict(info.resource, &name),
        e => ApiError::from_store(e, info.resource, &name),
    })?;
    Ok(json_response(200, &object::decode(&kv)))
}
