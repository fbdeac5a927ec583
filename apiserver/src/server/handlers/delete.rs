//! DELETE of one object (and of a collection), with upstream's deletion semantics:
//!
//! - DeleteOptions preconditions (uid, resourceVersion) guard the delete;
//! - an object with finalizers is not removed: it gets `deletionTimestamp` and stays until the last
//!   finalizer is gone (an update that removes it completes the delete, see `update.rs`);
//! - `propagationPolicy` Foreground and Orphan are recorded as the `foregroundDeletion` and `orphan`
//!   finalizers, which the garbage collector acts on; Background (the default) removes the object now
//!   and leaves its dependents to the collector;
//! - a pod bound to a node is deleted gracefully: `deletionTimestamp` and `deletionGracePeriodSeconds`
//!   are set and the kubelet, once the containers are stopped, deletes it with a grace period of 0. An
//!   unbound pod goes at once;
//! - a namespace turns Terminating (the namespace controller empties it, then removes it);
//! - a Service's ClusterIP and NodePorts are released.

use axum::response::Response;
use serde_json::{Value, json};

use super::{Filter, ListQuery, Scope, json_response};
use crate::{
    server::{
        ApiServer, allocator, object,
        status::{self, ApiError},
    },
    storage::{KeyValue, ListOptions, StoreError},
};

/// The parts of DeleteOptions (body or query) that decide what a delete does.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace_period: Option<i64>,
    /// `propagationPolicy`: Orphan, Background or Foreground.
    pub propagation: Option<String>,
    /// `dryRun: ["All"]`.
    pub dry_run: bool,
}

impl DeleteOptions {
    /// From a DeleteOptions body (may be null) and the query parameters that can also carry them.
    pub fn parse(
        body: &Value,
        query_grace: Option<i64>,
        query_policy: Option<String>,
        dry_run: bool,
    ) -> Result<Self, ApiError> {
        let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        let policy = text(&body["propagationPolicy"]).or(query_policy);
        if let Some(p) = policy
            .as_deref()
            .filter(|p| !matches!(*p, "Orphan" | "Background" | "Foreground"))
        {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        let grace = body["gracePeriodSeconds"].as_i64().or(query_grace);
        if grace.is_some_and(|g| g < 0) {
            return Err(ApiError::bad_request(
                "gracePeriodSeconds: Invalid value: must be non-negative",
            ));
        }
        // The deprecated orphanDependents maps onto the policy, as upstream.
        let policy = match (policy, body["orphanDependents"].as_bool()) {
            (None, Some(true)) => Some("Orphan".to_owned()),
            (p, _) => p,
        };
        Ok(Self {
            uid: text(&body["preconditions"]["uid"]),
            resource_version: text(&body["preconditions"]["resourceVersion"]),
            grace_period: grace,
            propagation: policy,
            dry_run: dry_run
                || body["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|v| v == "All")),
        })
    }
}

/// Deletes the named object.
pub async fn delete(api: &ApiServer, scope: &Scope, opts: &DeleteOptions) -> Result<Response, ApiError> {
    let info = scope.info;
    let name = scope.name().to_owned();
    let (current, _) = api
        .store
        .get(&scope.key(), 0)
        .await
        .map_err(|e| ApiError::from_store(e, &info.qualified(), &name))?;
    let current = current.ok_or_else(|| ApiError::not_found(&info.qualified(), &name))?;
    let (code, body) = delete_retrying(api, scope, current, opts).await?;
    Ok(json_response(code, &body))
}

/// Times a delete re-reads an object that others keep changing before it answers 409.
const DELETE_ATTEMPTS: usize = 10;

/// [`delete_one`], again on the fresh object while others write it in between (a controller's status
/// update must not fail a user's delete): upstream's GuaranteedUpdate, which re-checks the
/// preconditions on each attempt, so only they give a 409.
async fn delete_retrying(
    api: &ApiServer,
    scope: &Scope,
    mut current: KeyValue,
    opts: &DeleteOptions,
) -> Result<(u16, Value), ApiError> {
    let (resource, name) = (scope.info.qualified(), scope.name());
    for _ in 0..DELETE_ATTEMPTS {
        if let Some(done) = delete_one(api, scope, &current, opts).await? {
            return Ok(done);
        }
        let (fresh, _) = api
            .store
            .get(&scope.key(), 0)
            .await
            .map_err(|e| ApiError::from_store(e, &resource, name))?;
        current = fresh.ok_or_else(|| ApiError::not_found(&resource, name))?;
    }
    Err(ApiError::conflict(&resource, name))
}

/// DELETE on a collection: every object the selectors match, each deleted as above; returns them.
pub async fn delete_collection(
    api: &ApiServer,
    scope: &Scope,
    q: &ListQuery,
    opts: &DeleteOptions,
) -> Result<Response, ApiError> {
    let filter = Filter::new(scope.info, q)?;
    let page = api
        .store
        .list(&scope.prefix(), ListOptions::default())
        .await
        .map_err(|e| ApiError::from_store(e, &scope.info.qualified(), ""))?;
    let mut items = Vec::new();
    for kv in page.kvs {
        let obj = object::decode(scope.info, &kv);
        if !filter.matches(&obj) {
            continue;
        }
        let one = Scope {
            info: scope.info,
            namespace: object::meta_str(&obj, "namespace").map(str::to_owned),
            name: object::meta_str(&obj, "name").map(str::to_owned),
            subresource: None,
        };
        match delete_retrying(api, &one, kv, opts).await {
            Ok(_) => items.push(obj),
            // Gone or changed meanwhile: someone else dealt with it.
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({ "kind": scope.info.list_kind(), "apiVersion": scope.info.api_version(),
                 "metadata": { "resourceVersion": page.revision.to_string() }, "items": items }),
    ))
}

/// Deletes (or marks) the object as read in `current`; `Ok(None)` when it changed since (the write was
/// guarded by its revision), for the caller to read it again.
async fn delete_one(
    api: &ApiServer,
    scope: &Scope,
    current: &KeyValue,
    opts: &DeleteOptions,
) -> Result<Option<(u16, Value)>, ApiError> {
    let info = scope.info;
    let name = scope.name().to_owned();
    let mut obj = object::decode(scope.info, current);
    let uid = object::meta_str(&obj, "uid").unwrap_or("").to_owned();
    if info.kind == "Namespace" && !opts.dry_run {
        // Before the write: from now on creates in it check the store, not the cache.
        api.namespace_deleted(&name);
    }
    if let Some(want) = opts.uid.as_deref().filter(|w| *w != uid) {
        return Err(precondition_failed(
            &info.qualified(),
            &name,
            &format!("UID in precondition: {want}, UID in object meta: {uid}"),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && rv.parse::<i64>().ok() != Some(current.mod_revision)
    {
        return Err(precondition_failed(
            &info.qualified(),
            &name,
            &format!(
                "ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                current.mod_revision
            ),
        ));
    }

    if let Some(pending) = mark_for_deletion(info.kind, &mut obj, opts) {
        if opts.dry_run || !pending {
            return Ok(Some((200, obj)));
        }
        // Guarded on what we read: a concurrent change sends the caller back to read it again.
        let kv = match api
            .store
            .update(
                &scope.key(),
                object::encode(scope.info, &obj),
                current.mod_revision,
            )
            .await
        {
            Ok(kv) => kv,
            Err(StoreError::Conflict { .. }) => return Ok(None),
            Err(e) => return Err(ApiError::from_store(e, &info.qualified(), &name)),
        };
        return Ok(Some((200, object::decode(scope.info, &kv))));
    }
    if opts.dry_run {
        return Ok(Some((200, status::deleted(&info.qualified(), &name, &uid))));
    }
    let (deleted, revision) = match api.store.delete(&scope.key(), Some(current.mod_revision)).await {
        Ok(done) => done,
        Err(StoreError::Conflict { .. }) => return Ok(None),
        Err(e) => return Err(ApiError::from_store(e, &info.qualified(), &name)),
    };
    if info.kind == "Service" {
        allocator::release(api.store.as_ref(), &allocator::Held::of(&obj)).await;
    }
    // Pods answer with the object as it was deleted (upstream's ReturnDeletedObject); others with a
    // Success status.
    if info.kind == "Pod" {
        return Ok(Some((
            200,
            object::decode_at(scope.info, &deleted.value, revision),
        )));
    }
    Ok(Some((200, status::deleted(&info.qualified(), &name, &uid))))
}

/// Decides whether the delete only marks the object. `None`: remove it now. `Some(true)`: store the
/// marked object. `Some(false)`: already marked, nothing changes.
fn mark_for_deletion(kind: &str, obj: &mut Value, opts: &DeleteOptions) -> Option<bool> {
    let already = obj["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null());
    let mut finalizers: Vec<String> = obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect();
    let before = finalizers.clone();
    match opts.propagation.as_deref() {
        Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
            finalizers.push("foregroundDeletion".into())
        }
        Some("Orphan") if !finalizers.iter().any(|f| f == "orphan") => finalizers.push("orphan".into()),
        _ => {}
    }
    let namespace_finalizing = kind == "Namespace";
    let pod_grace = match kind {
        "Pod" if obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty()) => {
            let grace = opts
                .grace_period
                .or(obj["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            // Already terminating with a shorter (or equal) grace period: only a shorter one changes it.
            let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
            match (grace, current) {
                (0, _) if finalizers.is_empty() => None,
                (g, Some(c)) if already && g >= c => Some(c),
                (g, _) => Some(g),
            }
        }
        _ => None,
    };
    if finalizers.is_empty() && !namespace_finalizing && pod_grace.is_none() {
        return None;
    }
    let meta = object::meta_mut(obj);
    let mut changed = false;
    if !already {
        meta.insert("deletionTimestamp".into(), json!(object::now_rfc3339()));
        changed = true;
    }
    let grace = pod_grace.unwrap_or(0);
    if meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64) != Some(grace) {
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        changed = true;
    }
    if finalizers != before {
        meta.insert("finalizers".into(), json!(finalizers));
        changed = true;
    }
    if namespace_finalizing && obj["status"]["phase"] != "Terminating" {
        obj["status"]["phase"] = json!("Terminating");
        changed = true;
    }
    Some(changed)
}

fn precondition_failed(resource: &str, name: &str, detail: &str) -> ApiError {
    let mut e = ApiError::conflict(resource, name);
    e.message = format!("Precondition failed: {detail}");
    e
}
