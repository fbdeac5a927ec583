//! PUT: replace an object, its status (`/status`) or its replica count (`/scale`).
//!
//! With `metadata.resourceVersion` the write is guarded by it (a stale one gets 409 Conflict);
//! without, it is an unconditional update, as upstream allows for the built-in kinds. PATCH ends here
//! too ([`write`]) once it has computed the new object.

use axum::response::Response;
use serde_json::{Value, json};

use super::{Scope, WriteQuery, create::check_type, json_response, with_warnings};
use crate::{
    fieldmanager,
    server::{ApiServer, allocator, decode, object, registry::Subresource, status::ApiError, validation},
    storage::{KeyValue, Revision, StoreError},
};

/// Replaces the named object (or subresource) with `body`.
pub async fn update(
    api: &ApiServer,
    scope: &Scope,
    body: Value,
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let current = read_current(api, scope).await?;
    let expected = requested_revision(scope, &body)?.unwrap_or(current.mod_revision);
    write(api, scope, &current, body, expected, wq).await
}

/// The object as stored now; 404 if absent.
pub async fn read_current(api: &ApiServer, scope: &Scope) -> Result<KeyValue, ApiError> {
    let (current, _) = api
        .store
        .get(&scope.key(), 0)
        .await
        .map_err(|e| ApiError::from_store(e, &scope.info.qualified(), scope.name()))?;
    current.ok_or_else(|| ApiError::not_found(&scope.info.qualified(), scope.name()))
}

/// `metadata.resourceVersion` of a body, when set: the precondition of the write.
pub fn requested_revision(scope: &Scope, body: &Value) -> Result<Option<Revision>, ApiError> {
    match object::meta_str(body, "resourceVersion") {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse::<Revision>().map(Some).map_err(|_| {
            ApiError::invalid(
                scope.info.kind,
                scope.name(),
                vec![(
                    "metadata.resourceVersion".into(),
                    "FieldValueInvalid".into(),
                    format!("Invalid value: {rv:?}: must be a number"),
                )],
            )
        }),
    }
}

/// Stores `body` as the new state of `current` if its revision is still `expected`.
pub async fn write(
    api: &ApiServer,
    scope: &Scope,
    current: &KeyValue,
    body: Value,
    expected: Revision,
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let info = scope.info;
    let name = scope.name().to_owned();
    let dry_run = wq.dry_run()?;
    let old = object::decode(scope.info, current);
    let (body, warnings) = match scope.subresource.as_deref() {
        // A Scale body is not the kind's type; scale_update reads the one field it needs.
        Some("scale") => (body, Vec::new()),
        _ => {
            check_type(info, &body)?;
            decode::decode(info, &body, wq.validation()?)?
        }
    };
    let mut new = match scope.subresource.as_deref() {
        None => prepare_update(scope, &old, body)?,
        Some("status") => {
            let mut new = old.clone();
            new["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            new
        }
        Some("scale") => scale_update(scope, &old, &body)?,
        // The namespace controller's write: only `spec.finalizers` changes (upstream's
        // finalizeUpdateStrategy), and removing the last one lets the namespace go.
        Some("finalize") => {
            let mut new = old.clone();
            new["spec"]["finalizers"] = body["spec"]["finalizers"].clone();
            if new["spec"]["finalizers"].is_null() {
                new["spec"].as_object_mut().map(|m| m.remove("finalizers"));
            }
            new
        }
        Some(other) => return Err(ApiError::no_route(other)),
    };
    if !wq.applied {
        // Every write records who changed which fields (upstream's field manager on Update).
        new = fieldmanager::update(
            Some(&old),
            &new,
            &wq.manager(),
            scope.subresource.as_deref(),
            &object::now_rfc3339(),
        );
    }
    let errs = validation::validate_update(info.kind, &old, &new);
    if !errs.is_empty() {
        return Err(ApiError::invalid(info.kind, &name, errs));
    }
    if dry_run {
        let preview = if scope.subresource.as_deref() == Some("scale") {
            scale_of(&new)
        } else {
            new
        };
        return Ok(with_warnings(json_response(200, &preview), &warnings));
    }
    if expected == current.mod_revision && unchanged(&old, &new) {
        // Upstream skips a write that changes nothing: same object, same resourceVersion. (A stale
        // precondition is still a conflict, checked first as upstream does.)
        let view = if scope.subresource.as_deref() == Some("scale") {
            scale_of(&old)
        } else {
            old
        };
        return Ok(with_warnings(json_response(200, &view), &warnings));
    }
    if finishes_deletion(info.kind, &new) {
        // The last finalizer of an object being deleted is gone: the update completes the delete.
        let (_, revision) = api
            .store
            .delete(&scope.key(), Some(expected))
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => ApiError::conflict(&info.qualified(), &name),
                e => ApiError::from_store(e, &info.qualified(), &name),
            })?;
        if info.kind == "Service" {
            allocator::release(api.store.as_ref(), &allocator::Held::of(&old)).await;
        }
        let mut gone = new;
        object::meta_mut(&mut gone).insert("resourceVersion".into(), Value::String(revision.to_string()));
        return Ok(with_warnings(json_response(200, &gone), &warnings));
    }
    let reserved = match (info.kind, scope.subresource.as_deref()) {
        ("Service", None) => {
            allocator::allocate(api.store.as_ref(), &api.ranges, &mut new, Some(&old)).await?
        }
        _ => allocator::Held::default(),
    };
    let kv = match api
        .store
        .update(&scope.key(), object::encode(scope.info, &new), expected)
        .await
    {
        Ok(kv) => kv,
        Err(e) => {
            allocator::release(api.store.as_ref(), &reserved).await;
            return Err(match e {
                StoreError::Conflict { .. } => ApiError::conflict(&info.qualified(), &name),
                e => ApiError::from_store(e, &info.qualified(), &name),
            });
        }
    };
    if info.kind == "Service" {
        // NodePorts the new spec no longer uses go back to the pool.
        let (was, now) = (allocator::Held::of(&old), allocator::Held::of(&new));
        let dropped = allocator::Held {
            ip: was.ip.filter(|ip| now.ip != Some(*ip)),
            ports: was.ports.into_iter().filter(|p| !now.ports.contains(p)).collect(),
        };
        allocator::release(api.store.as_ref(), &dropped).await;
    }
    let stored = object::decode(scope.info, &kv);
    if scope.subresource.as_deref() == Some("scale") {
        return Ok(json_response(200, &scale_of(&stored)));
    }
    Ok(with_warnings(json_response(200, &stored), &warnings))
}

/// Whether `new` is `old` again (the resourceVersion aside).
fn unchanged(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        object::meta_mut(&mut v).remove("resourceVersion");
        v
    };
    strip(old) == strip(new)
}

/// An object marked for deletion whose finalizers are all gone. Pods wait for their kubelet's final
/// delete and namespaces for their own spec finalizers (the namespace controller), as upstream.
fn finishes_deletion(kind: &str, obj: &Value) -> bool {
    let marked = obj["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let finalizers = obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let waits = match kind {
        "Pod" => {
            obj["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                > 0
        }
        "Namespace" => obj["spec"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty()),
        _ => false,
    };
    marked && !finalizers && !waits
}

/// The main resource: server-owned fields come from the stored object, status too when it has its
/// own subresource, and the generation counts spec changes.
fn prepare_update(scope: &Scope, old: &Value, mut new: Value) -> Result<Value, ApiError> {
    let info = scope.info;
    let name = scope.name();
    let body_name = object::meta_str(&new, "name").unwrap_or("");
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let meta = object::meta_mut(&mut new);
    for field in [
        "uid",
        "creationTimestamp",
        "namespace",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old["metadata"].get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    new["kind"] = Value::String(info.kind.to_owned());
    new["apiVersion"] = Value::String(info.api_version());
    if info.has(Subresource::Status) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    (info.default)(&mut new);
    if info.tracks_generation() && new.get("spec") != old.get("spec") {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        object::meta_mut(&mut new).insert("generation".into(), Value::from(generation));
    }
    Ok(new)
}

/// A Scale write changes `spec.replicas` only.
fn scale_update(scope: &Scope, old: &Value, body: &Value) -> Result<Value, ApiError> {
    // A Scale to zero may leave `replicas` out (omitempty in Go, so its JSON and protobuf do).
    let replicas = body["spec"]
        .get("replicas")
        .cloned()
        .unwrap_or(Value::from(0))
        .as_i64()
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::invalid(
                "Scale",
                scope.name(),
                vec![(
                    "spec.replicas".into(),
                    "FieldValueInvalid".into(),
                    "Invalid value: must be greater than or equal to 0".into(),
                )],
            )
        })?;
    let mut new = old.clone();
    if new["spec"]["replicas"].as_i64() != Some(replicas) {
        new["spec"]["replicas"] = Value::from(replicas);
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        object::meta_mut(&mut new).insert("generation".into(), Value::from(generation));
    }
    Ok(new)
}

/// The autoscaling/v1 Scale view of a workload.
pub fn scale_of(obj: &Value) -> Value {
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"],
            "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"],
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": { "replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0) },
        "status": { "replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector },
    })
}
