//! POST: create an object (upstream's `rest.BeforeCreate` then a create-if-absent in the store).

use axum::response::Response;
use serde_json::Value;

use super::{Scope, WriteQuery, json_response, with_warnings};
use crate::{
    fieldmanager,
    server::{
        ApiServer, admission, allocator, decode, defaults, object, registry::Subresource, status::ApiError,
        validation,
    },
    storage::StoreError,
};

/// Creates `obj` in the scope's collection; 201 with the stored object.
pub async fn create(
    api: &ApiServer,
    scope: &Scope,
    obj: Value,
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let info = scope.info;
    check_type(info, &obj)?;
    let dry_run = wq.dry_run()?;
    let (mut obj, warnings) = decode::decode(info, &obj, wq.validation()?)?;
    let meta = object::meta_mut(&mut obj);
    // The path decides the namespace; a body that names another one is an error (as upstream).
    if let Some(ns) = &scope.namespace {
        match meta.get("namespace").and_then(Value::as_str) {
            Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                        .to_string(),
                ));
            }
            _ => {
                meta.insert("namespace".into(), Value::String(ns.clone()));
            }
        }
    } else {
        meta.remove("namespace");
    }
    let name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut generated_prefix = None;
    if name.is_empty()
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let generated = object::generate_name(prefix);
        generated_prefix = Some(prefix.to_owned());
        meta.insert("name".into(), Value::String(generated));
    }
    // Fields only the server sets.
    meta.insert("uid".into(), Value::String(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), Value::String(object::now_rfc3339()));
    meta.remove("resourceVersion");
    meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    if info.has(Subresource::Status) {
        // Status is written through /status only; what a create may carry is reset, as upstream's
        // PrepareForCreate does (the defaults below fill its initial value where there is one).
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
    }
    if info.tracks_generation() {
        object::meta_mut(&mut obj).insert("generation".into(), Value::from(1));
    }
    (info.default)(&mut obj);
    if info.kind == "Job" {
        defaults::job_prepare_for_create(&mut obj);
    }
    admission::admit_create(info.kind, &mut obj);
    obj["kind"] = Value::String(info.kind.to_owned());
    obj["apiVersion"] = Value::String(info.api_version());

    if !wq.applied {
        obj = fieldmanager::update(None, &obj, &wq.manager(), None, &object::now_rfc3339());
    }
    let mut name = object::meta_str(&obj, "name").unwrap_or("").to_owned();
    let errs = validation::validate_create(info.kind, &obj);
    if !errs.is_empty() {
        return Err(ApiError::invalid(info.kind, &name, errs));
    }
    if let Some(ns) = &scope.namespace {
        ensure_namespace(api, ns).await?;
    }
    if dry_run {
        return Ok(with_warnings(json_response(201, &obj), &warnings));
    }
    // A generated name that is taken is generated again, as upstream's RetryGenerateName does: with
    // 27^5 suffixes, 10,000 pods of one ReplicaSet already make a collision likely.
    let mut attempt = 1;
    let kv = loop {
        let key = info.key(scope.namespace.as_deref(), &name);
        let taken = || ApiError::already_exists(&info.qualified(), &name);
        let retry = generated_prefix.is_some() && attempt < GENERATE_NAME_ATTEMPTS;
        let allocates = info.kind == "Service";
        // Checked before allocating, so a duplicate create does not touch the allocators (other
        // kinds learn it from the create itself: one store read fewer).
        let exists = allocates
            && api
                .store
                .get(&key, 0)
                .await
                .map_err(|e| ApiError::from_store(e, &info.qualified(), &name))?
                .0
                .is_some();
        if exists && !retry {
            return Err(taken());
        }
        if !exists {
            let held = match allocates {
                true => allocator::allocate(api.store.as_ref(), &api.ranges, &mut obj, None).await?,
                false => allocator::Held::default(),
            };
            match api.store.create(&key, object::encode(scope.info, &obj)).await {
                Ok(kv) => break kv,
                Err(e) => {
                    allocator::release(api.store.as_ref(), &held).await;
                    match e {
                        StoreError::AlreadyExists { .. } if retry => {}
                        StoreError::AlreadyExists { .. } => return Err(taken()),
                        e => return Err(ApiError::from_store(e, &info.qualified(), &name)),
                    }
                }
            }
        }
        attempt += 1;
        name = object::generate_name(generated_prefix.as_deref().unwrap_or_default());
        object::meta_mut(&mut obj).insert("name".into(), Value::String(name.clone()));
    };
    Ok(with_warnings(
        json_response(201, &object::decode(scope.info, &kv)),
        &warnings,
    ))
}

/// Names tried for one create with `generateName` (upstream's maxNameGenerationCreateAttempts).
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// A body's kind/apiVersion, when given, must be the resource's.
pub fn check_type(info: &crate::server::registry::ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let expected = info.api_version();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or(info.kind);
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or(&expected);
    if kind != info.kind || api_version != expected {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expected}) or kind {kind} is not {}",
            info.kind
        )));
    }
    Ok(())
}

/// Objects can only be created in a namespace that exists (upstream's NamespaceLifecycle admission).
async fn ensure_namespace(api: &ApiServer, ns: &str) -> Result<(), ApiError> {
    let key = format!("/registry/namespaces/{ns}");
    let terminating = |kv: &crate::storage::KeyValue| {
        let obj = object::decode_raw(&kv.value, kv.mod_revision);
        obj["metadata"]
            .get("deletionTimestamp")
            .is_some_and(|t| !t.is_null())
    };
    // The namespaces' watch cache answers the common case without a store read; a namespace it does
    // not have (yet) or has as terminating is looked up in the store, which decides (as upstream's
    // NamespaceLifecycle falls back to a live lookup).
    if !api.recently_deleted_namespace(ns)
        && api.caches["namespaces"]
            .get_cached(&key)
            .is_some_and(|kv| !terminating(&kv))
    {
        return Ok(());
    }
    match api.store.get(&key, 0).await {
        Ok((Some(kv), _)) if terminating(&kv) => Err(ApiError::forbidden(format!(
            "unable to create new content in namespace {ns} because it is being terminated"
        ))),
        Ok((Some(_), _)) => Ok(()),
        Ok((None, _)) => Err(ApiError::not_found("namespaces", ns)),
        Err(e) => Err(ApiError::from_store(e, "namespaces", ns)),
    }
}
