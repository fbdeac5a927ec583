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
}
