//! The HTTP surface of the API server: health, version, and the Kubernetes REST paths of the kinds in
//! [`registry`], on top of the [`Store`](crate::storage::Store) and one
//! [`WatchCache`](crate::watch_cache::WatchCache) per resource.
//!
//! A request goes: router → [`handlers`] (one verb per file) → registry strategy (defaults,
//! validation) → store; every error leaves through [`status::ApiError`] as a Kubernetes `Status`.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    response::IntoResponse,
    routing::get,
};
use serde_json::json;

use crate::{
    storage::Store,
    watch_cache::{WatchCache, WatchCacheOptions},
};

pub mod admission;
pub mod allocator;
pub mod bootstrap;
pub mod conversion;
pub mod decode;
pub mod defaults;
pub mod discovery;
pub mod handlers;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod openapi_v2;
pub mod protobuf;
pub mod registry;
pub mod selector;
pub mod serve;
pub mod status;
pub mod table;
pub mod tls;
pub mod validation;

/// The Kubernetes minor whose API we serve (k8s-openapi's `v1_36` types; reported by `/version`).
pub const KUBERNETES_MINOR: &str = "36";

/// Largest request body accepted (upstream's limit is 3 MiB too); larger gets 413.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What every handler shares.
pub struct ApiServer {
    /// The store under everything.
    pub store: Arc<dyn Store>,
    /// One watch cache per resource, keyed by plural name.
    pub caches: HashMap<&'static str, Arc<WatchCache>>,
    /// Where Service ClusterIPs and NodePorts come from.
    pub ranges: allocator::Ranges,
    /// `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
    /// Namespaces deleted through this server lately, and when: creates in them look the namespace up
    /// in the store rather than trust the watch cache, which may not have seen the delete yet
    /// (upstream's NamespaceLifecycle `forceLiveLookupCache`).
    pub(crate) deleted_namespaces: std::sync::Mutex<HashMap<String, std::time::Instant>>,
}

impl ApiServer {
    /// Builds the server state, starting a watch cache for every served resource.
    pub fn new(store: Arc<dyn Store>, cache_opts: WatchCacheOptions) -> Arc<Self> {
        Self::with_ranges(store, cache_opts, allocator::Ranges::default())
    }

    /// As [`ApiServer::new`], with the service CIDR and NodePort range to allocate from.
    pub fn with_ranges(
        store: Arc<dyn Store>,
        cache_opts: WatchCacheOptions,
        ranges: allocator::Ranges,
    ) -> Arc<Self> {
        let metrics = Arc::new(metrics::Metrics::default());
        let store: Arc<dyn Store> = metrics::InstrumentedStore::new(store, metrics.clone());
        // One cache per storage prefix: a kind served in two groups (events) shares it.
        let mut caches = HashMap::new();
        for r in registry::RESOURCES {
            caches
                .entry(r.resource)
                .or_insert_with(|| WatchCache::start(store.clone(), &r.prefix(None), cache_opts.clone()));
        }
        Arc::new(Self {
            store,
            caches,
            ranges,
            metrics,
            deleted_namespaces: Default::default(),
        })
    }

    /// How long a deleted namespace is looked up live (upstream's forceLiveLookupTTL).
    const LIVE_LOOKUP: std::time::Duration = std::time::Duration::from_secs(30);

    /// Notes that namespace `name` is being deleted.
    pub(crate) fn namespace_deleted(&self, name: &str) {
        let mut deleted = self.deleted_namespaces.lock().unwrap_or_else(|e| e.into_inner());
        deleted.retain(|_, at| at.elapsed() < Self::LIVE_LOOKUP);
        deleted.insert(name.to_owned(), std::time::Instant::now());
    }

    /// Whether namespace `name` was deleted through this server lately.
    pub(crate) fn recently_deleted_namespace(&self, name: &str) -> bool {
        let deleted = self.deleted_namespaces.lock().unwrap_or_else(|e| e.into_inner());
        deleted
            .get(name)
            .is_some_and(|at| at.elapsed() < Self::LIVE_LOOKUP)
    }

    /// The router serving every path.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/livez", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/version", get(version))
            .route("/metrics", get(metrics::serve).with_state(self.metrics.clone()))
            .route("/api", get(discovery::core))
            .route("/apis", get(discovery::groups))
            .route("/api/v1", get(discovery::core_resources))
            .route("/apis/{group}", get(discovery::group_resources))
            .route("/apis/{group}/{version}", get(discovery::group_resources))
            .route(
                "/api/v1/{*path}",
                get(handlers::get)
                    .post(handlers::post)
                    .put(handlers::put)
                    .patch(handlers::patch)
                    .delete(handlers::delete),
            )
            .route(
                "/apis/{group}/{version}/{*path}",
                get(handlers::get)
                    .post(handlers::post)
                    .put(handlers::put)
                    .patch(handlers::patch)
                    .delete(handlers::delete),
            )
            .route("/openapi/v2", get(openapi_v2::document))
            .route("/openapi/v3", get(openapi::index))
            .route("/openapi/v3/{*gv}", get(openapi::group_version))
            .fallback(|uri: axum::http::Uri| async move { status::ApiError::no_route(uri.path()) })
            // Bodies are read with our own limit so an oversized one gets a 413 Status, not plain text.
            .layer(DefaultBodyLimit::disable())
            .layer(axum::middleware::from_fn_with_state(
                self.metrics.clone(),
                metrics::track,
            ))
            .with_state(self.clone())
    }
}

/// Ready once the store answers and every watch cache has synced.
async fn readyz(State(api): State<Arc<ApiServer>>) -> impl IntoResponse {
    if let Err(e) = api.store.current_revision().await {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("store: {e}\n"),
        );
    }
    for (resource, cache) in &api.caches {
        if let Err(e) = cache.wait_ready(std::time::Duration::ZERO).await {
            return (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                format!("watch cache {resource}: {e}\n"),
            );
        }
    }
    (axum::http::StatusCode::OK, "ok".to_owned())
}

async fn version() -> impl IntoResponse {
    Json(json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-skiff.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    }))
}
