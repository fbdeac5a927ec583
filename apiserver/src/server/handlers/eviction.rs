//! POST `pods/<name>/eviction`: a delete that disruption budgets may refuse (upstream's `EvictionREST`
//! in pkg/registry/core/pod/storage/eviction.go). skiff serves no PodDisruptionBudgets yet, so every
//! eviction is allowed and becomes a delete with the Eviction's `deleteOptions` (its grace period and
//! preconditions), answered as upstream answers an allowed eviction: 201 with a Success status.

use axum::response::Response;
use serde_json::{Value, json};

use super::{
    Scope, WriteQuery,
    delete::{self, DeleteOptions},
    json_response,
};
use crate::server::{ApiServer, object, status::ApiError};

/// Evicts the scope's pod.
pub async fn evict(
    api: &ApiServer,
    scope: &Scope,
    eviction: &Value,
    wq: &WriteQuery,
) -> Result<Response, ApiError> {
    let kind = eviction["kind"].as_str().unwrap_or("Eviction");
    let api_version = eviction["apiVersion"].as_str().unwrap_or("policy/v1");
    if kind != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version (policy/v1) or kind {kind} is not Eviction"
        )));
    }
    if object::meta_str(eviction, "name").unwrap_or(scope.name()) != scope.name() {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let opts = DeleteOptions::parse(&eviction["deleteOptions"], None, None, wq.dry_run()?)?;
    delete::delete(api, scope, &opts).await?;
    Ok(json_response(
        201,
        &json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201 }),
    ))
}
