//! Serving the router over TLS with bearer-token authentication.
//!
//! Our own accept loop (tokio-rustls + hyper-util) rather than a server crate, so later work can see
//! the client certificate of each connection (crates.md: axum-server hides it).

use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::Request,
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::status::ApiError;

/// Paths anyone may read, as upstream's `system:public-info-viewer` role allows.
/// `/cacerts` is the cluster CA (public anyway: every kubeconfig carries it), which joining agents
/// fetch and check against their token's hash before they trust the server.
const PUBLIC: &[&str] = &["/healthz", "/livez", "/readyz", "/version", "/cacerts"];

/// Adds `GET /cacerts`: the cluster CA in PEM, as k3s serves it to joining agents.
pub fn with_cacerts(router: Router, ca_pem: String) -> Router {
    router.route("/cacerts", axum::routing::get(move || async move { ca_pem }))
}

/// Wraps `router` so every request but [`PUBLIC`] ones needs `Authorization: Bearer <token>`.
pub fn with_auth(router: Router, tokens: Vec<String>) -> Router {
    let tokens = Arc::new(tokens);
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let tokens = tokens.clone();
        async move { authenticate(&tokens, req, next).await }
    }))
}

async fn authenticate(tokens: &[String], req: Request, next: Next) -> Response {
    if PUBLIC.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if tokens.iter().any(|known| known == t) => next.run(req).await,
        _ => {
            let mut err = ApiError::bad_request("Unauthorized");
            err.code = StatusCode::UNAUTHORIZED.as_u16();
            err.reason = "Unauthorized";
            err.into_response()
        }
    }
}

/// Accepts TLS connections on `listener` and serves `router` on each until `shutdown` completes.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                // With upgrades: exec and attach switch protocols and are spliced to the kubelet.
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
