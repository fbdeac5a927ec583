//! POST: create an object (upstream's `rest.BeforeCreate` then a create-if-absent in the store).

use axum::response::Response;
use serde_json::Value;

use super::{Scope, json_response};
use crate::{
    server::{ApiServer, object, status::ApiError},
    storage::StoreError,
};

/// Creates `obj` in the scope's collection; 201 with the stored object.
pub async fn create(api: &ApiServer, scope: &Scope, mut obj: Value) -> Result<Response, ApiError> {
    let info = scope.info;
    check_type(info, &obj)?;
    let meta = object::meta_mut(&mut obj);
    // The path decides the namespace; a body that names another one is an error (as upstream).
    if let Some(ns) = &scope.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )));
            }
            _ => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
    if name.is_empty() {
        if let Some(prefix) = meta.get("generateName").and_then(Value::as_str).filter(|p| !p.is_empty()) {
            let generated = object::generate_name(prefix);
            meta.insert("name".into(), Value::String(generated));
        }
    }
    // Fields only the server sets.
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(object::now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    (info.prepare_for_create)(&mut obj);
    obj["kind"] = Value::String(info.kind.to_owned());
    obj["apiVersion"] = Value::String(info.api_version.to_owned());

    let name = object::meta_str(&obj, "name").unwrap_or("").to_owned();
    let errs = (info.validate)(&obj);
    if !errs.is_empty() {
        return Err(ApiError::invalid(info.kind, &name, errs));
    }
    if let Some(ns) = &scope.namespace {
        ensure_namespace(api, ns).await?;
    }
    let key = info.key(scope.namespace.as_deref(), &name);
    let kv = api.store.create(&key, object::encode(&obj)).await.map_err(|e| match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(info.resource, &name),
        e => ApiError::from_store(e, info.resource, &name),
    })?;
    Ok(json_response(201, &object::decode(&kv)))
}

/// A body's kind/apiVersion, when given, must be the resource's.
pub fn check_type(info: &crate::server::registry::ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or(info.kind);
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or(info.api_version);
    if kind != info.kind || api_version != info.api_version {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind {kind} is not {}",
            info.api_version, info.kind
        )));
    }
    Ok(())
}

/// Objects can only be created in a namespace that exists (upstream's NamespaceLifecycle admission).
async fn ensure_namespace(api: &ApiServer, ns: &str) -> Result<(), ApiError> {
    let key = format!("/registry/namespaces/{ns}");
    match api.store.get(&key, 0).await {
        Ok((Some(_), _)) => Ok(()),
        Ok((None, _)) => Err(ApiError::not_found("namespaces", ns)),
        Err(e) => Err(ApiError::from_store(e, "namespaces", ns)),
    }
}
