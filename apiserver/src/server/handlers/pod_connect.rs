//! `pods/<name>/log`, `exec`, `attach` and `portforward`: upstream's "connect" subresources
//! (pkg/registry/core/pod/rest/log.go and subresources.go), which the API server proxies to the
//! kubelet of the pod's node.
//!
//! The checks upstream makes are made here, with its messages: the pod exists, the container named
//! (or the only one) is the pod's, the pod is bound to a node (a log of an unbound pod is empty, as
//! upstream's), and for logs the container has one (its state, as the kubelet's
//! `validateContainerLogStatus` reads it). Then the request goes to the node's kubelet API
//! (its InternalIP and `daemonEndpoints.kubeletEndpoint.Port`) with the API server's client
//! certificate ([`KubeletClient`]): a log streams back as it comes, an exec or attach upgrade is
//! answered with the kubelet's `101` and the two connections are spliced byte for byte (upstream's
//! UpgradeAwareHandler), so whatever protocol the kubelet agreed to flows through unchanged.

use axum::{
    body::Body,
    extract::FromRequestParts,
    http::{HeaderMap, Method, request::Parts},
    response::{IntoResponse, Response},
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::Scope;
use crate::server::{ApiServer, kubelet_client::KubeletClient, object, status::ApiError};

/// Query parameters of these subresources that the checks read.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConnectQuery {
    /// `container`.
    pub container: Option<String>,
    /// `previous` (logs).
    pub previous: Option<String>,
}

/// What of the request is passed on to the kubelet: its method, raw query, headers and, for an
/// upgrade, the handle that yields the client's connection once the `101` went out.
pub struct ConnectRequest {
    method: Method,
    query: Option<String>,
    headers: HeaderMap,
    upgrade: Option<OnUpgrade>,
}

impl<S: Send + Sync> FromRequestParts<S> for ConnectRequest {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // Every GET and POST passes through here: only the connect subresources pay for a copy.
        let last = parts.uri.path().rsplit('/').next().unwrap_or_default();
        if !matches!(last, "log" | "exec" | "attach" | "portforward") {
            return Ok(Self {
                method: parts.method.clone(),
                query: None,
                headers: HeaderMap::new(),
                upgrade: None,
            });
        }
        Ok(Self {
            method: parts.method.clone(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers.clone(),
            upgrade: parts.extensions.remove::<OnUpgrade>(),
        })
    }
}

/// The query parameters of a log request the kubelet reads (others, like `container`, are in the
/// kubelet's path or mean nothing to it).
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
];

/// GET `pods/<name>/log`.
pub async fn log(
    api: &ApiServer,
    scope: &Scope,
    q: &ConnectQuery,
    req: ConnectRequest,
) -> Result<Response, ApiError> {
    let pod = read_pod(api, scope).await?;
    let container = validate_container(&pod, q.container.as_deref())?;
    let Some(node) = node_of(&pod) else {
        // Not scheduled: nothing has run, so the log is empty (upstream's nil location).
        return Ok(([("content-type", "text/plain")], "").into_response());
    };
    let client = kubelet_client(api, node)?;
    let previous = q.previous.as_deref().is_some_and(|p| p == "true" || p == "1");
    validate_log_status(&pod, &container, previous)?;
    let (host, port) = kubelet_location(api, node).await?;
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            url::form_urlencoded::parse(req.query.as_deref().unwrap_or_default().as_bytes())
                .filter(|(k, _)| LOG_PARAMS.contains(&k.as_ref())),
        )
        .finish();
    let uri = format!(
        "/containerLogs/{}/{}/{container}?{query}",
        scope.namespace.as_deref().unwrap_or_default(),
        scope.name()
    );
    let request = http::Request::get(uri)
        .body(Body::empty())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let response = client
        .send(&host, port, request)
        .await
        .map_err(|e| unreachable_kubelet(node, e))?;
    if response.status() != http::StatusCode::OK {
        return Err(kubelet_error(response).await);
    }
    Ok(Response::builder()
        .header("content-type", "text/plain")
        .body(Body::new(response.into_body()))
        .unwrap_or_else(|e| ApiError::bad_request(e.to_string()).into_response()))
}

/// `exec`, `attach` (GET for WebSockets, POST for SPDY) and `portforward`.
pub async fn connect(
    api: &ApiServer,
    scope: &Scope,
    q: &ConnectQuery,
    req: ConnectRequest,
) -> Result<Response, ApiError> {
    let pod = read_pod(api, scope).await?;
    let sub = scope.subresource.as_deref().unwrap_or_default();
    let container = if sub == "portforward" {
        String::new()
    } else {
        validate_container(&pod, q.container.as_deref())?
    };
    let Some(node) = node_of(&pod) else {
        return Err(ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            scope.name()
        )));
    };
    let client = kubelet_client(api, node)?;
    let Some(upgrade) = req
        .upgrade
        .filter(|_| req.headers.contains_key(http::header::UPGRADE))
    else {
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    let (host, port) = kubelet_location(api, node).await?;
    let (namespace, name) = (scope.namespace.as_deref().unwrap_or_default(), scope.name());
    let query = req.query.as_deref().unwrap_or_default();
    let uri = if sub == "portforward" {
        format!("/portForward/{namespace}/{name}?{query}")
    } else {
        format!("/{sub}/{namespace}/{name}/{container}?{query}")
    };
    let mut request = http::Request::builder().method(req.method).uri(uri);
    for (name, value) in &req.headers {
        let n = name.as_str();
        // What the upgrade needs; hop-by-hop and credential headers stay here.
        if matches!(n, "connection" | "upgrade" | "x-stream-protocol-version")
            || (n.starts_with("sec-websocket-") && n != "sec-websocket-extensions")
        {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Body::empty())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut response = client
        .send(&host, port, request)
        .await
        .map_err(|e| unreachable_kubelet(node, e))?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        // Passed on as the kubelet wrote it, as upstream's UpgradeAwareHandler does: kubectl then
        // says `unable to upgrade connection: <the kubelet's words>`.
        let status = response.status();
        let body = kubelet_body(response).await;
        return Ok((status, [("content-type", "text/plain; charset=utf-8")], body).into_response());
    }
    let mut reply = Response::builder().status(http::StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        reply = reply.header(name, value);
    }
    let backend = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client_side, kubelet_side) = match tokio::join!(upgrade, backend) {
            (Ok(c), Ok(k)) => (c, k),
            (c, k) => {
                tracing::debug!(
                    client = c.is_ok(),
                    kubelet = k.is_ok(),
                    "upgrade to the kubelet failed"
                );
                return;
            }
        };
        let (mut c, mut k) = (TokioIo::new(client_side), TokioIo::new(kubelet_side));
        let _ = tokio::io::copy_bidirectional(&mut c, &mut k).await;
    });
    reply
        .body(Body::empty())
        .map_err(|e| ApiError::bad_request(e.to_string()))
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

fn kubelet_client<'a>(api: &'a ApiServer, node: &str) -> Result<&'a KubeletClient, ApiError> {
    api.kubelet_client.get().ok_or_else(|| {
        ApiError::unavailable(format!(
            "the kubelet of node \"{node}\" cannot be reached: this API server has no kubelet client \
             certificate configured"
        ))
    })
}

/// The node's InternalIP (else its first address) and its kubelet's port.
async fn kubelet_location(api: &ApiServer, node: &str) -> Result<(String, u16), ApiError> {
    let scope = Scope::parse(&format!("/api/v1/nodes/{node}"))?;
    let (kv, _) = api
        .store
        .get(&scope.key(), 0)
        .await
        .map_err(|e| ApiError::from_store(e, "nodes", node))?;
    let kv = kv.ok_or_else(|| ApiError::not_found("nodes", node))?;
    let node_obj = object::decode(scope.info, &kv);
    let status = &node_obj["status"];
    let addresses = status["addresses"].as_array().cloned().unwrap_or_default();
    let address = addresses
        .iter()
        .find(|a| a["type"] == "InternalIP")
        .or_else(|| addresses.first())
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::unavailable(format!("node \"{node}\" has no address")))?;
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .filter(|p| *p > 0 && *p <= u16::MAX as u64)
        .unwrap_or(10250) as u16;
    Ok((address.to_owned(), port))
}

fn unreachable_kubelet(node: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable(format!("the kubelet of node \"{node}\" cannot be reached: {e}"))
}

/// A kubelet's error answer (plain text with a status) as a Status with the same code, as
/// upstream's `GenericHttpResponseChecker` makes it.
async fn kubelet_error(response: http::Response<hyper::body::Incoming>) -> ApiError {
    let code = response.status().as_u16();
    let message = kubelet_body(response).await;
    let mut err = ApiError::bad_request(message);
    err.code = code;
    err.reason = match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        _ => "InternalError",
    };
    err
}

/// The text of a kubelet's (short) error answer.
async fn kubelet_body(response: http::Response<hyper::body::Incoming>) -> String {
    use http_body_util::BodyExt;
    let body = http_body_util::Limited::new(response.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    String::from_utf8_lossy(&body).trim().to_owned()
}

/// The kubelet's `validateContainerLogStatus`, on the pod's stored status: whether `container`
/// has a log to show (or, `previous`, a previous run).
fn validate_log_status(pod: &Value, container: &str, previous: bool) -> Result<(), ApiError> {
    let pod_name = object::meta_str(pod, "name").unwrap_or("");
    let err = |m: String| Err(ApiError::bad_request(m));
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|f| pod["status"][f].as_array())
    .flatten()
    .find(|s| s["name"] == container);
    let Some(status) = status else {
        // The kubelet has not reported it yet: it is being created.
        return err(format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: ContainerCreating"
        ));
    };
    // skiff's runtime keeps a container's id across its runs, so a run that ended is enough (upstream
    // also wants its containerID, which skiff's lastState does not carry).
    let (last, state) = (&status["lastState"]["terminated"], &status["state"]);
    if previous {
        if last.is_object() {
            return Ok(());
        }
        return err(format!(
            "previous terminated container {container:?} in pod {pod_name:?} not found"
        ));
    }
    if state["running"].is_object() || state["terminated"].is_object() || last.is_object() {
        return Ok(());
    }
    if let Some(reason) = state["waiting"]["reason"].as_str() {
        return err(match reason {
            "ErrImagePull" => format!(
                "container {container:?} in pod {pod_name:?} is waiting to start: image can't be pulled"
            ),
            "ImagePullBackOff" => format!(
                "container {container:?} in pod {pod_name:?} is waiting to start: trying and failing to pull image"
            ),
            other => format!("container {container:?} in pod {pod_name:?} is waiting to start: {other}"),
        });
    }
    err(format!(
        "container {container:?} in pod {pod_name:?} is waiting to start - no logs yet"
    ))
}

/// Upstream's `validateContainer`: a named container must be the pod's; with no name the pod must
/// have exactly one container. Returns the container's name.
fn validate_container(pod: &Value, container: Option<&str>) -> Result<String, ApiError> {
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
        Some(c) if containers.iter().chain(&init).chain(&ephemeral).any(|n| n == c) => Ok(c.to_owned()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
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
        assert_eq!(validate_container(&single, None).unwrap(), "a");
    }

    #[test]
    fn log_status_is_checked_as_the_kubelet_does() {
        let pod = |status: Value| json!({ "metadata": { "name": "p" }, "status": { "containerStatuses": [status] } });
        let message = |pod: &Value, previous| validate_log_status(pod, "c", previous).unwrap_err().message;
        let creating = json!({ "metadata": { "name": "p" }, "status": {} });
        assert_eq!(
            message(&creating, false),
            "container \"c\" in pod \"p\" is waiting to start: ContainerCreating"
        );
        let backoff = pod(json!({ "name": "c", "state": { "waiting": { "reason": "ImagePullBackOff" } } }));
        assert_eq!(
            message(&backoff, false),
            "container \"c\" in pod \"p\" is waiting to start: trying and failing to pull image"
        );
        let running = pod(json!({ "name": "c", "state": { "running": {} }, "lastState": {} }));
        assert!(validate_log_status(&running, "c", false).is_ok());
        assert_eq!(
            message(&running, true),
            "previous terminated container \"c\" in pod \"p\" not found"
        );
        let crashed = pod(
            json!({ "name": "c", "state": { "waiting": { "reason": "CrashLoopBackOff" } },
                                  "lastState": { "terminated": { "exitCode": 1 } } }),
        );
        assert!(validate_log_status(&crashed, "c", false).is_ok());
        assert!(validate_log_status(&crashed, "c", true).is_ok());
    }
}
