//! The proxy's Prometheus metrics, named as upstream kube-proxy's (pkg/proxy/metrics): sync duration,
//! last sync time, network programming latency, and the size of what is programmed.

use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SyncLabels {
    /// `full` or `partial`.
    kind: String,
}

/// Every metric of the proxy.
pub struct Metrics {
    registry: Registry,
    sync_duration: Family<SyncLabels, Histogram>,
    last_sync: Gauge<f64, AtomicU64>,
    programming_latency: Histogram,
    rules: Gauge,
    services: Gauge,
    endpoints: Gauge,
    sync_errors: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("kubeproxy");
        let sync_duration = Family::<SyncLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        let programming_latency =
            Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0]);
        let last_sync = Gauge::<f64, AtomicU64>::default();
        let (rules, services, endpoints) = (Gauge::default(), Gauge::default(), Gauge::default());
        let sync_errors = Counter::default();
        registry.register(
            "sync_proxy_rules_duration_seconds",
            "Render plus apply time of a sync, by kind (full or partial)",
            sync_duration.clone(),
        );
        registry.register(
            "sync_proxy_rules_last_timestamp_seconds",
            "Unix time of the last successful sync",
            last_sync.clone(),
        );
        registry.register(
            "network_programming_duration_seconds",
            "From an endpoint change seen by the proxy to its rules applied",
            programming_latency.clone(),
        );
        registry.register(
            "sync_proxy_rules_total",
            "Rules (and map elements) programmed",
            rules.clone(),
        );
        registry.register(
            "sync_proxy_rules_services",
            "Service ports programmed",
            services.clone(),
        );
        registry.register("sync_proxy_rules_endpoints", "Endpoints known", endpoints.clone());
        registry.register("sync_proxy_rules_errors", "Failed applies", sync_errors.clone());
        Self {
            registry,
            sync_duration,
            last_sync,
            programming_latency,
            rules,
            services,
            endpoints,
            sync_errors,
        }
    }
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A successful sync.
    pub fn synced(&self, full: bool, seconds: f64, rules: usize, services: usize, endpoints: usize) {
        let kind = if full { "full" } else { "partial" };
        self.sync_duration
            .get_or_create(&SyncLabels { kind: kind.into() })
            .observe(seconds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.last_sync.set(now);
        self.rules.set(as_i64(rules));
        self.services.set(as_i64(services));
        self.endpoints.set(as_i64(endpoints));
    }

    /// An endpoint change applied `seconds` after it was seen.
    pub fn programmed(&self, seconds: f64) {
        self.programming_latency.observe(seconds);
    }

    /// A failed apply.
    pub fn sync_failed(&self) {
        self.sync_errors.inc();
    }
}

/// Serves `metrics` as Prometheus text on `addr` (`GET /metrics`; `/healthz` answers `ok`), as
/// kube-proxy does on its `--metrics-bind-address`, until `shutdown`. A plain HTTP/1.1 responder:
/// one request per connection, nothing else is needed by a scraper or `curl`.
pub async fn serve(
    addr: std::net::SocketAddr,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_on(listener, metrics, shutdown).await;
    Ok(())
}

/// [`serve`] on a listener already bound.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: std::sync::Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let accept = async {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut len = 0;
                // The request line and headers; the body (there is none for GET) is not read.
                let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                    while len < buf.len() {
                        match stream.read(&mut buf[len..]).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => len += n,
                        }
                        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                })
                .await;
                if read.is_err() {
                    return;
                }
                let head = String::from_utf8_lossy(&buf[..len]);
                let mut parts = head.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let (status, content_type, body) = match (method, path.split('?').next().unwrap_or("")) {
                    ("GET", "/metrics") => (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(),
                    ),
                    ("GET", "/healthz") => ("200 OK", "text/plain; charset=utf-8", "ok".to_owned()),
                    ("GET", _) => (
                        "404 Not Found",
                        "text/plain; charset=utf-8",
                        "404 page not found\n".to_owned(),
                    ),
                    _ => (
                        "405 Method Not Allowed",
                        "text/plain; charset=utf-8",
                        String::new(),
                    ),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric() {
        let m = Metrics::default();
        m.synced(true, 0.2, 10, 2, 3);
        m.programmed(0.5);
        let text = m.render();
        for name in [
            "kubeproxy_sync_proxy_rules_duration_seconds_bucket{le=\"0.25\",kind=\"full\"} 1",
            "kubeproxy_network_programming_duration_seconds_count 1",
            "kubeproxy_sync_proxy_rules_total 10",
            "kubeproxy_sync_proxy_rules_services 2",
            "kubeproxy_sync_proxy_rules_endpoints 3",
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }

    #[tokio::test]
    async fn serves_metrics_and_health_over_http() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let metrics = std::sync::Arc::new(Metrics::default());
        metrics.synced(true, 0.25, 42, 3, 7);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_on(listener, metrics, async {
            let _ = stopped.await;
        }));
        let get = |path: &'static str| async move {
            let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.expect("write");
            let mut out = String::new();
            stream.read_to_string(&mut out).await.expect("read");
            out
        };
        let t = std::time::Duration::from_secs(5);
        let body = tokio::time::timeout(t, get("/metrics")).await.expect("in time");
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains("kubeproxy_sync_proxy_rules_total 42"), "{body}");
        assert!(body.contains("kubeproxy_sync_proxy_rules_endpoints 7"), "{body}");
        let health = tokio::time::timeout(t, get("/healthz")).await.expect("in time");
        assert!(
            health.starts_with("HTTP/1.1 200 OK") && health.ends_with("ok"),
            "{health}"
        );
        let missing = tokio::time::timeout(t, get("/nope")).await.expect("in time");
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let _ = stop.send(());
        tokio::time::timeout(t, server)
            .await
            .expect("stops")
            .expect("joins");
    }
}
