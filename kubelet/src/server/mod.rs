//! The kubelet API (upstream's pkg/kubelet/server/server.go), on :10250 over HTTPS: what the API
//! server proxies `pods/log`, `pods/exec` and `pods/attach` to.
//!
//! - `GET /containerLogs/{namespace}/{pod}/{container}` ([`logs`]),
//! - `GET /exec/{namespace}/{pod}[/{uid}]/{container}?command=…&stdin&stdout&stderr&tty` and
//!   `/attach/…` as WebSocket streams of the `v5.channel.k8s.io`/`v4.channel.k8s.io` protocols
//!   ([`remotecommand`]),
//! - `POST /portForward/{namespace}/{pod}` upgraded to SPDY/3.1 `portforward.k8s.io`
//!   ([`portforward`]),
//! - `GET /healthz`.
//!
//! Callers authenticate with a client certificate signed by the cluster CA (upstream's
//! `--client-ca-file`); anyone else gets 401. Which containers exist and how to reach them is the
//! runtime's business, behind [`ContainerStreams`] ([`runc`] for the real runtime).

pub mod logs;
pub mod portforward;
pub mod remotecommand;
pub mod runc;
pub mod spdy;
pub mod tls;

use std::{future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{FromRequestParts, Path as UrlPath, RawQuery, Request, State, ws::WebSocketUpgrade},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use tokio::net::TcpListener;

use crate::runtime::RuntimeError;

/// One container as the kubelet API reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRef {
    /// The pod's UID.
    pub pod_uid: String,
    /// The runtime's id of the container.
    pub id: String,
    /// Its current run's log file (CRI format); the previous run's is [`logs::previous_log`].
    pub log: PathBuf,
}

/// What the kubelet API needs from the container runtime (the streaming half of CRI).
pub trait ContainerStreams: Send + Sync + 'static {
    /// Container `container` of pod `namespace/pod`, if the runtime has it.
    fn find(&self, namespace: &str, pod: &str, container: &str)
    -> Result<Option<ContainerRef>, RuntimeError>;
    /// Whether it runs.
    fn running(&self, container: &ContainerRef) -> bool;
    /// The command that runs `command` in it, in the foreground with the command's own stdio; with
    /// `tty`, the runtime gives the command a terminal of its own and copies between it and the
    /// command's stdio (runc's `exec --tty`), which is then a terminal too.
    fn exec_command(&self, container: &ContainerRef, command: &[String], tty: bool) -> std::process::Command;
    /// The network namespace of pod `namespace/pod` (`/proc/<pid>/ns/net` of its sandbox), for
    /// port-forward; None if it has no running sandbox here.
    fn pod_network(&self, namespace: &str, pod: &str) -> Result<Option<PathBuf>, RuntimeError>;
}

/// How the kubelet API is served.
#[derive(Clone)]
pub struct ServerOptions {
    /// Where to listen (port 0: any free port, for tests).
    pub addr: SocketAddr,
    /// The CA whose certificates clients must present (DER), from the kubelet's kubeconfig.
    pub client_ca: Vec<Vec<u8>>,
    /// The names and addresses the self-signed serving certificate is for.
    pub serving_names: Vec<String>,
    /// The runtime's containers.
    pub streams: Arc<dyn ContainerStreams>,
}

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("addr", &self.addr)
            .field("client_ca", &self.client_ca.len())
            .field("serving_names", &self.serving_names)
            .finish_non_exhaustive()
    }
}

/// Starting the kubelet API failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// A bound kubelet API, ready to serve.
pub struct BoundServer {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    streams: Arc<dyn ContainerStreams>,
}

impl BoundServer {
    /// The port it listens on (what `daemonEndpoints.kubeletEndpoint.Port` reports).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let router = router(self.streams);
        serve_tls(self.listener, self.tls, router, shutdown).await
    }
}

/// Binds the kubelet API and sets up its TLS.
pub async fn bind(opts: &ServerOptions) -> Result<BoundServer, ServerError> {
    let tls = tls::server_config(&opts.serving_names, &opts.client_ca)?;
    let listener = TcpListener::bind(opts.addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: opts.addr,
            source,
        })?;
    Ok(BoundServer {
        listener,
        tls,
        streams: opts.streams.clone(),
    })
}

type Streams = State<Arc<dyn ContainerStreams>>;

/// The routes of the kubelet API (all behind authentication, see [`serve_tls`]).
pub fn router(streams: Arc<dyn ContainerStreams>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route("/exec/{*path}", get(exec).post(exec))
        .route("/attach/{*path}", get(attach).post(attach))
        .route("/portForward/{*path}", get(port_forward).post(port_forward))
        .route("/portforward/{*path}", get(port_forward).post(port_forward))
        .with_state(streams)
}

/// An error as the kubelet writes one: plain text with a status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

async fn find(
    streams: &Arc<dyn ContainerStreams>,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<ContainerRef, Response> {
    let (s, ns, p, c) = (
        streams.clone(),
        namespace.to_owned(),
        pod.to_owned(),
        container.to_owned(),
    );
    match tokio::task::spawn_blocking(move || s.find(&ns, &p, &c)).await {
        Ok(Ok(Some(found))) => Ok(found),
        Ok(Ok(None)) => Err(error(
            StatusCode::NOT_FOUND,
            format!("container {container:?} not found in pod {pod:?}"),
        )),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

fn query_pairs(query: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn container_logs(
    State(streams): Streams,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let pairs = query_pairs(&query);
    let opts = match logs::LogOptions::parse(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        chrono::Utc::now(),
    ) {
        Ok(opts) => opts,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let found = match find(&streams, &namespace, &pod, &container).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    // The previous run of a running container is the log moved aside when it started; one that
    // ended and waits to be started again (CrashLoopBackOff) has its last run in its own log still.
    let previous_run = opts.previous && {
        let (s, f) = (streams.clone(), found.clone());
        tokio::task::spawn_blocking(move || s.running(&f))
            .await
            .unwrap_or(true)
    };
    let path = if previous_run {
        logs::previous_log(&found.log)
    } else {
        found.log.clone()
    };
    if !path.exists() {
        if opts.previous {
            return error(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container {container:?} in pod {pod:?} not found"),
            );
        }
        // Created but nothing written yet.
        return ([("content-type", "text/plain")], "").into_response();
    }
    let running: Box<dyn Fn() -> bool + Send> = if opts.previous {
        Box::new(|| false)
    } else {
        Box::new(move || streams.running(&found))
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let source = logs::LogSource { path, running };
    tokio::task::spawn_blocking(move || {
        if let Err(e) = logs::stream(source, opts, tx) {
            tracing::debug!(error = %e, "reading a container log");
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, std::io::Error>(chunk), rx))
    });
    Response::builder()
        .header("content-type", "text/plain")
        .body(Body::from_stream(body))
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `{namespace}/{pod}/{container}` or `{namespace}/{pod}/{uid}/{container}`.
fn split_target(path: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [ns, pod, container] | [ns, pod, _, container] => {
            Some((ns.to_string(), pod.to_string(), container.to_string()))
        }
        _ => None,
    }
}

async fn exec(State(streams): Streams, request: Request) -> Response {
    connect(streams, request, false).await
}

async fn attach(State(streams): Streams, request: Request) -> Response {
    connect(streams, request, true).await
}

/// exec and attach: checks, then the WebSocket upgrade.
async fn connect(streams: Arc<dyn ContainerStreams>, request: Request, attach: bool) -> Response {
    let (mut parts, _body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let rest = path
        .strip_prefix(if attach { "/attach/" } else { "/exec/" })
        .unwrap_or_default();
    let Some((namespace, pod, container)) = split_target(rest) else {
        return error(StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    let pairs = query_pairs(&parts.uri.query().map(str::to_owned));
    let opts = match remotecommand::StreamOptions::parse(&pairs, attach) {
        Ok(opts) => opts,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let found = match find(&streams, &namespace, &pod, &container).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let alive = {
        let (s, f) = (streams.clone(), found.clone());
        tokio::task::spawn_blocking(move || s.running(&f))
            .await
            .unwrap_or(false)
    };
    if !alive {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container not found ({container:?})"),
        );
    }
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Upgrade request required: skiff's kubelet speaks WebSocket (v5.channel.k8s.io, \
                 v4.channel.k8s.io), not SPDY",
            );
        }
    };
    let upgrade = upgrade.protocols([remotecommand::V5, remotecommand::V4]);
    let Some(protocol) = upgrade
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "unsupported remote command protocol: offer v5.channel.k8s.io or v4.channel.k8s.io",
        );
    };
    let v5 = protocol == remotecommand::V5;
    upgrade.on_upgrade(move |socket| async move {
        let session = remotecommand::Session::new(socket, v5, opts);
        if attach {
            session.attach(streams, found).await
        } else {
            session.exec(streams, found).await
        }
    })
}

/// The SPDY protocol port-forward speaks, and its stream protocol.
const SPDY: &str = "SPDY/3.1";
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// port-forward: the pod's network namespace, then the SPDY upgrade. (kubectl first asks for SPDY
/// tunnelled through a WebSocket; the refusal makes it fall back to plain SPDY.)
async fn port_forward(State(streams): Streams, mut request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let rest = path.splitn(3, '/').nth(2).unwrap_or_default();
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let [namespace, pod, ..] = parts.as_slice() else {
        return error(StatusCode::NOT_FOUND, format!("no route {path}"));
    };
    let upgrade = request
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !upgrade.eq_ignore_ascii_case(SPDY) {
        return error(
            StatusCode::BAD_REQUEST,
            "Upgrade request required: port-forward is served over SPDY/3.1",
        );
    }
    let offered = request
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == PORT_FORWARD_PROTOCOL);
    if !offered {
        return error(
            StatusCode::FORBIDDEN,
            format!("port-forward needs the {PORT_FORWARD_PROTOCOL} protocol"),
        );
    }
    let netns = {
        let (s, ns, p) = (streams.clone(), namespace.to_string(), pod.to_string());
        tokio::task::spawn_blocking(move || s.pod_network(&ns, &p)).await
    };
    let netns = match netns {
        Ok(Ok(Some(netns))) => netns,
        Ok(Ok(None)) => return error(StatusCode::NOT_FOUND, format!("pod {pod:?} does not exist")),
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let Some(busybox) = which("busybox") else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "port-forward needs busybox (its nc) on the node",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let connect: portforward::Connector = Arc::new(move |port: u16| {
        let mut command = tokio::process::Command::new("nsenter");
        command
            .arg(format!("--net={}", netns.display()))
            .arg(&busybox)
            .args(["nc", "127.0.0.1", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command.spawn()
    });
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => portforward::serve(hyper_util::rt::TokioIo::new(upgraded), connect).await,
            Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, SPDY)
        .header("X-Stream-Protocol-Version", PORT_FORWARD_PROTOCOL)
        .body(Body::empty())
        .unwrap_or_else(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Accepts TLS connections and serves `router` to clients whose certificate the CA signed, 401 to
/// the others, until `shutdown`.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let unauthorized = Router::new().fallback(|| async { error(StatusCode::UNAUTHORIZED, "Unauthorized") });
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "kubelet API: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let (router, unauthorized) = (router.clone(), unauthorized.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "kubelet API: TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            // The verifier checked any certificate offered; what is left is whether there was one.
            let authenticated = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let service = TowerToHyperService::new(if authenticated { router } else { unauthorized });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "kubelet API: connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_paths_name_the_container_with_or_without_the_uid() {
        let t = |ns: &str, p: &str, c: &str| Some((ns.to_owned(), p.to_owned(), c.to_owned()));
        assert_eq!(split_target("default/web/app"), t("default", "web", "app"));
        assert_eq!(split_target("default/web/1234/app"), t("default", "web", "app"));
        assert_eq!(split_target("default/web"), None);
    }
}
