//! POST `pods/<name>/binding`: the scheduler's write that assigns a pod to a node (upstream's
//! `BindingREST` in pkg/registry/core/pod/storage/storage.go).
//!
//! A pod is bound once: binding a pod that already has `spec.nodeName`, or that is being deleted, is a
//! 409 Conflict, so two schedulers (or a stale cache) can never move a pod. The binding sets
//! `spec.nodeName`, merges the binding's annotations into the pod and turns the `PodScheduled`
//! condition True. Concurrent writes to the pod (its status, labels) are retried on, since they do not
//! change the answer.

use axum::response::Response;
use serde_json::{Value, json};

use super::{Scope, WriteQuery, json_response};
use crate::{
    server::{ApiServer, object, status::ApiError},
    storage::StoreError,
};

/// Attempts before a pod that keeps changing under us is reported as a conflict.
const RETRIES: usize = 5;

/// Binds the scope's pod to the node `binding.target.name`; 201 with a Success status.
pub async fn bind(
    api: &ApiServer,
    scope: &Scope,
    binding: &Value,
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let name = scope.name();
    let info = scope.info;
    if object::meta_str(binding, "name").unwrap_or(name) != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Binding object",
        ));
    }
    if let (Some(ns), Some(body_ns)) = (
        &scope.namespace,
        object::meta_str(binding, "namespace").filter(|n| !n.is_empty()),
    ) && ns != body_ns
    {
        return Err(ApiError::bad_request(
            "namespace in URL does not match namespace in Binding object",
        ));
    }
    let node = binding["target"]["name"].as_str().unwrap_or("");
    let mut errs = Vec::new();
    if !matches!(binding["target"]["kind"].as_str().unwrap_or(""), "" | "Node") {
        errs.push((
            "target.kind".into(),
            "FieldValueNotSupported".into(),
            "Unsupported value: must be empty or 'Node'".into(),
        ));
    }
    if node.is_empty() {
        errs.push((
            "target.name".into(),
            "FieldValueRequired".into(),
            "Required value".into(),
        ));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid("Binding", name, errs));
    }
    let dry_run = wq.dry_run()?;
    for _ in 0..RETRIES {
        let (current, _) = api
            .store
            .get(&scope.key(), 0)
            .await
            .map_err(|e| ApiError::from_store(e, &info.qualified(), name))?;
        let current = current.ok_or_else(|| ApiError::not_found(&info.qualified(), name))?;
        let mut pod = object::decode(info, &current);
        check_preconditions(binding, &pod, name)?;
        assign(&mut pod, node, binding, name)?;
        if dry_run {
            break;
        }
        match api
            .store
            .update(&scope.key(), object::encode(info, &pod), current.mod_revision)
            .await
        {
            Ok(_) => break,
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::from_store(e, &info.qualified(), name)),
        }
    }
    Ok(json_response(
        201,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    ))
}

/// The binding's own preconditions (`metadata.uid`, `metadata.resourceVersion`) against the pod.
fn check_preconditions(binding: &Value, pod: &Value, name: &str) -> Result<(), ApiError> {
    let mismatch = |field: &str| {
        object::meta_str(binding, field)
            .filter(|want| !want.is_empty())
            .is_some_and(|want| Some(want) != object::meta_str(pod, field))
    };
    if mismatch("uid") || mismatch("resourceVersion") {
        return Err(ApiError::conflict("pods", name));
    }
    Ok(())
}

/// Sets the node, the binding's annotations and `PodScheduled=True` on `pod` (upstream's
/// `setPodNodeAndMetadata`); a pod already bound, being deleted or still gated cannot be bound.
fn assign(pod: &mut Value, node: &str, binding: &Value, name: &str) -> Result<(), ApiError> {
    let ns = object::meta_str(pod, "namespace").unwrap_or("").to_owned();
    if pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        return Err(ApiError::conflict_with(
            "pods",
            name,
            format!("pod {name} is being deleted, cannot be assigned to a host"),
        ));
    }
    if let Some(bound) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Err(ApiError::conflict_with(
            "pods",
            name,
            format!("pod {ns}/{name} is already assigned to node \"{bound}\""),
        ));
    }
    if pod["spec"]["schedulingGates"]
        .as_array()
        .is_some_and(|g| !g.is_empty())
    {
        return Err(ApiError::conflict_with(
            "pods",
            name,
            format!("pod {ns}/{name} has non-empty .spec.schedulingGates"),
        ));
    }
    pod["spec"]["nodeName"] = json!(node);
    if let Some(annotations) = binding["metadata"]["annotations"]
        .as_object()
        .filter(|a| !a.is_empty())
    {
        let meta = object::meta_mut(pod);
        let target = meta.entry("annotations").or_insert_with(|| json!({}));
        if !target.is_object() {
            *target = json!({});
        }
        for (k, v) in annotations {
            target[k] = v.clone();
        }
    }
    set_scheduled(pod);
    Ok(())
}

/// `PodScheduled=True`, updating the condition in place (its transition time only when it flips).
fn set_scheduled(pod: &mut Value) {
    let now = object::now_rfc3339();
    if !pod["status"].is_object() {
        pod["status"] = json!({});
    }
    if !pod["status"]["conditions"].is_array() {
        pod["status"]["conditions"] = json!([]);
    }
    let conditions = pod["status"]["conditions"].as_array_mut().expect("set above");
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) => {
            if c["status"] != "True" {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!("True");
            if let Some(m) = c.as_object_mut() {
                m.remove("reason");
                m.remove("message");
            }
        }
        None => conditions.push(json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({ "metadata": { "name": "p", "namespace": "default", "uid": "u1", "resourceVersion": "7" },
                "spec": { "containers": [{ "name": "c", "image": "i" }] },
                "status": { "phase": "Pending", "conditions": [{ "type": "PodScheduled", "status": "False",
                            "reason": "Unschedulable", "message": "0/1 nodes are available" }] } })
    }

    #[test]
    fn assigns_node_annotations_and_condition() {
        let mut p = pod();
        let binding =
            json!({ "metadata": { "name": "p", "annotations": { "a": "b" } }, "target": { "name": "n1" } });
        assign(&mut p, "n1", &binding, "p").unwrap();
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["metadata"]["annotations"]["a"], "b");
        let c = &p["status"]["conditions"][0];
        assert_eq!(
            (c["type"].as_str(), c["status"].as_str()),
            (Some("PodScheduled"), Some("True"))
        );
        assert!(
            c.get("reason").is_none(),
            "the Unschedulable reason goes with the False status"
        );
    }

    #[test]
    fn a_bound_or_deleted_pod_cannot_be_bound() {
        let mut p = pod();
        p["spec"]["nodeName"] = json!("n0");
        let err = assign(&mut p, "n1", &json!({}), "p").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (409, "pod default/p is already assigned to node \"n0\"")
        );
        let mut p = pod();
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(assign(&mut p, "n1", &json!({}), "p").unwrap_err().code, 409);
        let mut p = pod();
        p["spec"]["schedulingGates"] = json!([{ "name": "g" }]);
        assert_eq!(assign(&mut p, "n1", &json!({}), "p").unwrap_err().code, 409);
    }

    #[test]
    fn preconditions_guard_the_binding() {
        let p = pod();
        assert!(check_preconditions(&json!({ "metadata": { "uid": "u1" } }), &p, "p").is_ok());
        assert_eq!(
            check_preconditions(&json!({ "metadata": { "uid": "other" } }), &p, "p")
                .unwrap_err()
                .code,
            409
        );
        assert_eq!(
            check_preconditions(&json!({ "metadata": { "resourceVersion": "6" } }), &p, "p")
                .unwrap_err()
                .code,
            409
        );
    }
}
