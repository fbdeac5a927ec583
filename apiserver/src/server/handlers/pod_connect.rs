//! `pods/<name>/log`, `exec`, `attach` and `portforward`: upstream's "connect" subresources
//! (pkg/registry/core/pod/rest/log.go and subresources.go), which the API server proxies to the
//! kubelet of the pod's node.
//!
//! The checks upstream makes before proxying are made here, with its messages: the pod exists, the
//! container named (or the only one) is the pod's, and the pod is bound to a node (a log of an unbound
//! pod is empty, as upstream's). skiff's node agent does not serve the kubelet API (:10250) yet, so
//! what would be proxied gets a 503 that says so, rather than a hang or a misleading error.

use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Scope;
use crate::server::{ApiServer, object, status::ApiError};

/// Query parameters of these subresources that the checks read.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConnectQuery {
    /// `container`.
    pub container: Option<String>,
}

/// GET `pods/<name>/log`.
pub async fn log(api: &ApiServer, scope: &Scope, q: &ConnectQuery) -> Result<Response, ApiError> {
    let pod = read_pod(api, scope).await?;
    validate_container(&pod, q.container.as_deref())?;
    match node_of(&pod) {
        // Not scheduled: nothing has run, so the log is empty (upstream's nil location).
        None => Ok(([("content-type", "text/plain")], "").into_response()),
        Some(node) => Err(unreachable_kubelet(node)),
    }
}

/// `exec`, `attach` (GET for WebSockets, POST for SPDY) and `portforward`.
pub async fn connect(api: &ApiServer, scope: &Scope, q: &ConnectQuery) -> Result<Response, ApiError> {
    let pod = read_pod(api, scope).await?;
    if scope.subresource.as_deref() != Some("portforward") {
        validate_container(&pod, q.container.as_deref())?;
    }
    match node_of(&pod) {
        None => Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            scope.name()
        ))),
        Some(node) => Err(unreachable_kubelet(node)),
    }
}

async fn read_pod(api: &ApiServer, scope: &Scope) -> Result<Value, ApiError> {
    let (kv, _) = api
        .store
        .get(&scope.key(), 0)
        .await
        .map_err(|e| ApiError::from_store(e, "pods", scope.name()))?;
    let kv = kv.ok_or_else(|| ApiError::not_found("pods", scope.name()))?;
    Ok(object::decode(scope.info, &kv))
}

fn node_of(pod: &Value) -> Option<&str> {
    pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty())
}

fn unreachable_kubelet(node: &str) -> ApiError {
    ApiError::unavailable(format!(
        "the kubelet of node \"{node}\" cannot be reached: logs, exec, attach and port-forward are proxied to \
         the node agent's API (:10250), which this version of skiff does not serve yet"
    ))
}

/// Upstream's `validateContainer`: a named container must be the pod's; with no name the pod must
/// have exactly one container.
fn validate_container(pod: &Value, container: Option<&str>) -> Result<(), ApiError> {
    let name = object::meta_str(pod, "name").unwrap_or("");
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (containers, init, ephemeral) = (
        names("containers"),
        names("initContainers"),
        names("ephemeralContainers"),
    );
    match container.filter(|c| !c.is_empty()) {
        Some(c) if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c) => Ok(()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(()),
        None if containers.is_empty() => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}"
        ))),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(" or one of the init containers: [{}]", init.join(" ")));
            }
            if !ephemeral.is_empty() {
                message.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn containers_are_validated_as_upstream() {
        let pod = json!({ "metadata": { "name": "p" }, "spec": {
            "containers": [{ "name": "a" }, { "name": "b" }], "initContainers": [{ "name": "i" }] } });
        assert!(validate_container(&pod, Some("a")).is_ok());
        assert!(validate_container(&pod, Some("i")).is_ok());
        assert_eq!(
            validate_container(&pod, Some("x")).unwrap_err().message,
            "container x is not valid for pod p"
        );
        assert_eq!(
            validate_container(&pod, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        let single = json!({ "metadata": { "name": "p" }, "spec": { "containers": [{ "name": "a" }] } });
        assert!(validate_container(&single, None).is_ok());
    }
}
