//! `/metrics` in Prometheus text, and the admission of requests (upstream's `apiserver_*` metrics
//! and max-in-flight filter).
//!
//! - requests by verb, resource and code, with a latency histogram by verb and resource;
//! - open watches and watch events sent;
//! - store operation latency by operation, measured by [`InstrumentedStore`], a decorator any backend
//!   is wrapped in;
//! - a cap on requests in flight: past it, a request gets 429 with `Retry-After: 1` instead of
//!   queueing without bound. Watches are long-running and are not counted, as upstream.

use std::{
    sync::{Arc, atomic::AtomicI64},
    time::Instant,
};

use async_trait::async_trait;
use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::Semaphore;

use super::status::ApiError;
use crate::storage::{EventStream, KeyValue, ListOptions, ListPage, Result, Revision, Store};

/// Requests served at once (not counting watches) before new ones get 429.
pub const MAX_IN_FLIGHT: usize = 800;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: String,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
    .into_iter()
}

/// Every metric of the API server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    store: Family<StoreLabels, Histogram>,
    watches: Gauge<i64, AtomicI64>,
    watch_events: Counter,
    in_flight: Semaphore,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("apiserver");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<LatencyLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        let store =
            Family::<StoreLabels, Histogram>::new_with_constructor(|| Histogram::new(latency_buckets()));
        let watches = Gauge::<i64, AtomicI64>::default();
        let watch_events = Counter::default();
        registry.register(
            "request",
            "Requests by verb, resource and HTTP code",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Request latency by verb and resource",
            latency.clone(),
        );
        registry.register(
            "storage_operation_duration_seconds",
            "Store operation latency",
            store.clone(),
        );
        registry.register("registered_watchers", "Watches open now", watches.clone());
        registry.register(
            "watch_events",
            "Watch events sent to clients",
            watch_events.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            store,
            watches,
            watch_events,
            in_flight: Semaphore::new(MAX_IN_FLIGHT),
        }
    }
}

impl Metrics {
    /// The Prometheus text of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Counts one watch event sent.
    pub fn watch_event(&self) {
        self.watch_events.inc();
    }

    /// Counts an open watch until the returned guard is dropped.
    pub fn watch_opened(self: &Arc<Self>) -> WatchGuard {
        self.watches.inc();
        WatchGuard(self.clone())
    }
}

/// Decrements the open-watch gauge when the watch ends.
pub struct WatchGuard(Arc<Metrics>);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.watches.dec();
    }
}

/// The verb upstream would log for a request (watch and list are GETs told apart by the query).
fn verb_of(req: &Request) -> &'static str {
    let query = req.uri().query().unwrap_or("");
    let watch = query.split('&').any(|kv| kv == "watch=true" || kv == "watch=1");
    let segments = req.uri().path().trim_matches('/').split('/').count();
    match req.method().as_str() {
        "GET" if watch => "WATCH",
        // /api/v1/<r>, /api/v1/namespaces/<ns>/<r>, /apis/<g>/<v>/<r>…: odd counts are collections.
        "GET" if segments % 2 == 1 => "LIST",
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

/// The resource a path names, for labels ("" for non-resource paths such as /healthz).
fn resource_of(path: &str) -> String {
    super::handlers::Scope::parse(path)
        .map(|s| s.info.resource.to_owned())
        .unwrap_or_default()
}

/// Middleware: in-flight cap, then request counting and timing.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let verb = verb_of(&req);
    let resource = resource_of(req.uri().path());
    let _permit = if verb == "WATCH" {
        None
    } else {
        match metrics.in_flight.try_acquire() {
            Ok(p) => Some(p),
            Err(_) => {
                let mut err = ApiError::bad_request("Too many requests, please try again later.");
                err.code = StatusCode::TOO_MANY_REQUESTS.as_u16();
                err.reason = "TooManyRequests";
                let mut resp = err.into_response();
                resp.headers_mut()
                    .insert("retry-after", HeaderValue::from_static("1"));
                return resp;
            }
        }
    };
    let start = Instant::now();
    let resp = next.run(req).await;
    let labels = LatencyLabels {
        verb: verb.to_owned(),
        resource: resource.clone(),
    };
    // A watch's latency is the time to start streaming, as upstream measures it.
    metrics
        .latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            verb: verb.to_owned(),
            resource,
            code: resp.status().as_u16().to_string(),
        })
        .inc();
    resp
}

/// A [`Store`] that times every operation into the metrics.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(&self, op: &str, f: impl Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.metrics
            .store
            .get_or_create(&StoreLabels {
                operation: op.to_owned(),
            })
            .observe(start.elapsed().as_secs_f64());
        out
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }
    async fn get(&self, key: &str, revision: Revision) -> Result<(Option<KeyValue>, Revision)> {
        self.timed("get", self.inner.get(key, revision)).await
    }
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.timed("create", self.inner.create(key, value)).await
    }
    async fn update(&self, key: &str, value: Vec<u8>, expected: Revision) -> Result<KeyValue> {
        self.timed("update", self.inner.update(key, value, expected))
            .await
    }
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<(KeyValue, Revision)> {
        self.timed("delete", self.inner.delete(key, expected)).await
    }
    async fn list(&self, prefix: &str, opts: ListOptions) -> Result<ListPage> {
        self.timed("list", self.inner.list(prefix, opts)).await
    }
    async fn count(&self, prefix: &str) -> Result<usize> {
        self.timed("count", self.inner.count(prefix)).await
    }
    async fn watch(&self, prefix: &str, after: Revision) -> Result<EventStream> {
        self.inner.watch(prefix, after).await
    }
    async fn compact(&self, revision: Revision) -> Result<()> {
        self.timed("compact", self.inner.compact(revision)).await
    }
    async fn compacted_revision(&self) -> Result<Revision> {
        self.inner.compacted_revision().await
    }
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// `GET /metrics`.
pub async fn serve(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.render(),
    )
        .into_response()
}
