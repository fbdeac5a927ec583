//! The proxy's loop: reflectors over Services and EndpointSlices, and syncs that render the snapshot
//! and apply it — only when it changed, at most every `min_sync_period`, as a partial update between
//! full syncs.
//!
//! Mirrors upstream's `Proxier.syncProxyRules` driven by a `BoundedFrequencyRunner`: changes mark the
//! state dirty, syncs are paced by a token bucket of one sync per `min_sync_period` with a burst of two
//! (upstream's `burstSyncs = 2`: after a quiet spell a second change is applied at once instead of a
//! period later, e.g. the last replicas of a new Deployment turning ready; a sync that wrote nothing
//! gives its token back, since the pacing is there to bound rule writes), a full sync runs
//! at start, after a failed apply, and every `full_sync_period` (upstream: an hour), and every sync in
//! between writes only what differs from what was last applied ([`Programmer`]). The network
//! programming latency is measured from when the proxy saw an EndpointSlice change to when the sync
//! that contains it was applied.

use std::{
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client, ResourceExt as _,
    runtime::{WatchStreamExt as _, reflector, watcher},
};

use crate::{
    Mode, RenderConfig, iptables,
    ipvs::{self, NoIpvs},
    metrics::Metrics,
    nftables,
    sink::{RuleSink, SinkError, SystemSink},
    snapshot::{ServiceKeys, Snapshot},
};

/// How the proxy runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The mode.
    pub mode: Mode,
    /// What render needs.
    pub render: RenderConfig,
    /// The shortest time between two syncs (`--min-sync-period`, 1 s).
    pub min_sync_period: Duration,
    /// The time between full syncs.
    pub full_sync_period: Duration,
    /// The node's network namespace (None = this process's).
    pub netns: Option<PathBuf>,
}

/// Why the proxy cannot run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// `--proxy-mode ipvs` on a kernel without ip_vs.
    #[error(transparent)]
    NoIpvs(#[from] NoIpvs),
    /// `--proxy-mode ipvs` where the kernel has it: skiff renders IPVS but does not program it yet.
    #[error(
        "--proxy-mode ipvs: this kernel has ip_vs, but skiff cannot program IPVS yet; use iptables or nftables"
    )]
    IpvsUnsupported,
    /// A tool failed during cleanup.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// What was last applied.
#[derive(Debug, Clone)]
enum Applied {
    Iptables(iptables::Rules),
    Nftables(Box<nftables::Incremental>),
    Ipvs(ipvs::Model),
}

/// What one sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// A full sync (else partial).
    pub full: bool,
    /// Whether anything was applied (a partial sync of an unchanged render applies nothing).
    pub applied: bool,
    /// Time to render.
    pub render: Duration,
    /// Time to apply (the tool's run).
    pub apply: Duration,
    /// Rules (and elements) in the ruleset.
    pub rules: usize,
    /// Bytes of input given to the tool.
    pub input_bytes: usize,
}

/// Renders snapshots and applies them through a sink, remembering what is applied.
pub struct Programmer {
    mode: Mode,
    config: RenderConfig,
    sink: Arc<dyn RuleSink>,
    applied: Option<Applied>,
}

impl Programmer {
    /// A programmer for `mode` writing to `sink`.
    pub fn new(mode: Mode, config: RenderConfig, sink: Arc<dyn RuleSink>) -> Self {
        Self {
            mode,
            config,
            sink,
            applied: None,
        }
    }

    /// The text of what is applied (the whole ruleset), for tests and debugging.
    pub fn applied_text(&self) -> Option<String> {
        Some(match self.applied.as_ref()? {
            Applied::Iptables(r) => r.text(),
            Applied::Nftables(r) => r.table.rules.full_text(),
            Applied::Ipvs(m) => m.text(),
        })
    }

    /// Renders `snapshot` and applies it: whole when `full` or nothing is applied yet, else only
    /// the difference. A failed apply forgets what is applied, so the next sync is full.
    pub fn sync(&mut self, snapshot: &Snapshot, full: bool) -> Result<SyncReport, SinkError> {
        let full = full || self.applied.is_none();
        let start = Instant::now();
        let mut report = SyncReport {
            full,
            ..Default::default()
        };
        let previous = if full { None } else { self.applied.take() };
        let result = match self.mode {
            Mode::Iptables => {
                let rules = iptables::render(snapshot, &self.config);
                report.render = start.elapsed();
                report.rules = rules.rule_count();
                let old = match &previous {
                    Some(Applied::Iptables(old)) => Some(old),
                    _ => None,
                };
                let apply = Instant::now();
                let result = (|| {
                    let existing = match old {
                        None => Some(iptables::Existing::parse(&self.sink.iptables_save()?)),
                        Some(_) => None,
                    };
                    let text = rules.restore_text(old, existing.as_ref());
                    report.input_bytes = text.len();
                    if !text.is_empty() {
                        self.sink.iptables_restore(&text)?;
                    }
                    if old.is_none() {
                        self.sink.ensure_route()?;
                    }
                    Ok(())
                })();
                report.apply = apply.elapsed();
                result.map(|()| Applied::Iptables(rules))
            }
            Mode::Nftables => {
                // A partial sync re-renders only the changed service ports and diffs their parts.
                let mut partial = None;
                let inc = match previous {
                    Some(Applied::Nftables(mut inc)) => match inc.update(snapshot, &self.config) {
                        Some(update) => {
                            partial = Some(update.text);
                            inc
                        }
                        None => Box::new(nftables::Incremental::full(snapshot, &self.config)),
                    },
                    _ => Box::new(nftables::Incremental::full(snapshot, &self.config)),
                };
                report.render = start.elapsed();
                report.rules = inc.table.rules.rule_count();
                report.full = partial.is_none();
                let apply = Instant::now();
                let result = match &partial {
                    Some(text) if text.is_empty() => Ok(()),
                    Some(text) => {
                        report.input_bytes = text.len();
                        self.sink.nft(text)
                    }
                    None => {
                        let text = inc.table.rules.full_text();
                        report.input_bytes = text.len();
                        self.sink.nft(&text).and_then(|()| self.sink.ensure_route())
                    }
                };
                report.apply = apply.elapsed();
                result.map(|()| Applied::Nftables(inc))
            }
            Mode::Ipvs => {
                let model = ipvs::render(snapshot, &self.config);
                report.render = start.elapsed();
                report.rules = model.rule_count();
                Ok(Applied::Ipvs(model))
            }
        };
        report.applied = report.input_bytes > 0;
        self.applied = Some(result?);
        Ok(report)
    }
}

/// When the proxy saw endpoint changes that are not applied yet.
#[derive(Default)]
struct Pending {
    dirty: bool,
    /// Per Service (`namespace/name`), when the proxy first saw an EndpointSlice of it change since
    /// the last sync: upstream observes the network programming latency once per changed service
    /// (from its trigger time), not once per sync.
    endpoint_changes: std::collections::HashMap<String, Instant>,
    /// Services whose Service or EndpointSlices changed since the last sync: the snapshot rebuilds
    /// only their entries.
    changed: ServiceKeys,
    /// A watch (re)listed: the next snapshot is built from scratch.
    relist: bool,
    /// The Service each EndpointSlice (`namespace/name`) belonged to, to catch a slice moving.
    slice_owner: std::collections::HashMap<String, String>,
}

impl Pending {
    fn mark(&mut self, namespace: &str, name: &str) {
        self.changed
            .entry(namespace.to_owned())
            .or_default()
            .insert(name.to_owned());
    }

    fn service_event(&mut self, event: &watcher::Result<watcher::Event<Service>>) {
        self.dirty = true;
        match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => {
                self.mark(&s.namespace().unwrap_or_default(), &s.name_any());
            }
            Ok(_) => self.relist = true,
            Err(_) => {}
        }
    }

    fn slice_event(&mut self, event: &watcher::Result<watcher::Event<EndpointSlice>>) {
        self.dirty = true;
        let (slice, deleted) = match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => (s, false),
            Ok(watcher::Event::Delete(s)) => (s, true),
            Ok(_) => {
                self.relist = true;
                return;
            }
            Err(_) => return,
        };
        let namespace = slice.namespace().unwrap_or_default();
        let key = format!("{namespace}/{}", slice.name_any());
        let owner = slice.labels().get(crate::snapshot::LABEL_SERVICE_NAME).cloned();
        let previous = if deleted {
            self.slice_owner.remove(&key)
        } else {
            match &owner {
                Some(o) => self.slice_owner.insert(key, o.clone()),
                None => self.slice_owner.remove(&key),
            }
        };
        if let Some(previous) = previous.filter(|p| Some(p) != owner.as_ref()) {
            self.mark(&namespace, &previous);
        }
        if let Some(owner) = owner {
            self.mark(&namespace, &owner);
        }
        if let Some(service) = slice_service(event) {
            self.endpoint_changes.entry(service).or_insert_with(Instant::now);
        }
    }
}

/// The Service (`namespace/name`) an EndpointSlice event is about; None for the initial list.
fn slice_service(event: &watcher::Result<watcher::Event<EndpointSlice>>) -> Option<String> {
    let slice = match event {
        Ok(watcher::Event::Apply(s) | watcher::Event::Delete(s)) => s,
        _ => return None,
    };
    let service = slice.labels().get(crate::snapshot::LABEL_SERVICE_NAME)?;
    Some(format!("{}/{service}", slice.namespace().unwrap_or_default()))
}

/// Whether this node can run `config`'s mode (ipvs: refused without ip_vs, and not programmed yet).
pub fn preflight(config: &Config) -> Result<(), ProxyError> {
    if config.mode == Mode::Ipvs {
        // ip_vs is a kernel module: the host's /proc/net answers for every namespace.
        ipvs::check_kernel(std::path::Path::new("/proc/net"))?;
        return Err(ProxyError::IpvsUnsupported);
    }
    Ok(())
}

/// Runs the proxy with the real tools until `shutdown`. Fails at once for a mode this node cannot run.
pub async fn run(
    client: Client,
    config: Config,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ProxyError> {
    preflight(&config)?;
    let sink = Arc::new(SystemSink {
        netns: config.netns.clone(),
        service_cidr: config.render.service_cidr,
    });
    run_with_sink(client, config, sink, metrics, shutdown).await;
    Ok(())
}

/// Removes every rule, chain, table and interface any mode of the proxy created (`--cleanup`).
pub fn cleanup(netns: Option<PathBuf>, service_cidr: crate::Cidr) -> Result<(), ProxyError> {
    SystemSink { netns, service_cidr }.cleanup()?;
    Ok(())
}

/// Runs the proxy's loop against any sink until `shutdown`.
pub async fn run_with_sink(
    client: Client,
    config: Config,
    sink: Arc<dyn RuleSink>,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let pending = Arc::new(Mutex::new(Pending::default()));
    let wake = Arc::new(tokio::sync::Notify::new());

    let (services, svc_writer) = reflector::store::<Service>();
    let (p, w) = (pending.clone(), wake.clone());
    let svc_watch = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|s| s.managed_fields_mut().clear())
        .reflect(svc_writer)
        .for_each(move |event| {
            if let Ok(mut p) = p.lock() {
                p.service_event(&event);
            }
            w.notify_one();
            std::future::ready(())
        });
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let (p, w) = (pending.clone(), wake.clone());
    let slice_watch = watcher(Api::<EndpointSlice>::all(client), watcher::Config::default())
        .default_backoff()
        .modify(|s| s.managed_fields_mut().clear())
        .reflect(slice_writer)
        .for_each(move |event| {
            if let Ok(mut p) = p.lock() {
                p.slice_event(&event);
            }
            w.notify_one();
            std::future::ready(())
        });
    let watches = tokio::spawn(async move {
        futures::join!(svc_watch, slice_watch);
    });

    let sync_loop = async {
        // The first sync waits for both initial lists: an empty snapshot would reject every service.
        let _ = services.wait_until_ready().await;
        let _ = slices.wait_until_ready().await;
        let mut programmer = Some(Programmer::new(config.mode, config.render.clone(), sink));
        let mut pacing = Pacing::new(config.min_sync_period, Instant::now());
        let mut last_full = Instant::now();
        let mut force_full = true;
        // The last snapshot: between full syncs only the changed Services' entries are rebuilt.
        let mut last_snapshot: Option<Snapshot> = None;
        loop {
            if !force_full {
                let dirty = pending.lock().map(|p| p.dirty).unwrap_or(true);
                if !dirty {
                    let until_full = config.full_sync_period.saturating_sub(last_full.elapsed());
                    let _ = tokio::time::timeout(until_full, wake.notified()).await;
                }
            }
            // One sync per min_sync_period on average, two at most back to back.
            tokio::time::sleep(pacing.wait(Instant::now())).await;
            pacing.take(Instant::now());
            let full = force_full || last_full.elapsed() >= config.full_sync_period;
            let (seen, changed, relist) = match pending.lock() {
                Ok(mut p) => {
                    p.dirty = false;
                    (
                        std::mem::take(&mut p.endpoint_changes),
                        std::mem::take(&mut p.changed),
                        std::mem::take(&mut p.relist),
                    )
                }
                Err(_) => (Default::default(), Default::default(), true),
            };
            let previous = last_snapshot.take().filter(|_| !(full || relist));
            let svcs = services.state();
            let eps = slices.state();
            let Some(mut prog) = programmer.take() else { return };
            let started = Instant::now();
            let joined = tokio::task::spawn_blocking(move || {
                let build = Instant::now();
                let (all_svcs, all_eps) = (svcs.iter().map(|s| &**s), eps.iter().map(|s| &**s));
                let snapshot = match previous {
                    Some(mut snapshot) => {
                        snapshot.refresh(&changed, all_svcs, all_eps);
                        snapshot
                    }
                    None => Snapshot::build(all_svcs, all_eps),
                };
                let build = build.elapsed();
                let result = prog.sync(&snapshot, full);
                (prog, snapshot, result.map(|r| (r, build)))
            })
            .await;
            let Ok((prog, snapshot, result)) = joined else {
                tracing::error!("a proxy sync panicked; stopping the proxy");
                return;
            };
            programmer = Some(prog);
            let snapshot = &*last_snapshot.insert(snapshot);
            match result {
                Ok((report, build)) => {
                    force_full = false;
                    if !report.applied {
                        // Nothing reached the kernel (e.g. a slice of not-yet-ready endpoints): the
                        // pacing bounds how often rules are written, so this sync costs no token.
                        pacing.refund();
                    }
                    if report.full {
                        last_full = started;
                    }
                    metrics.synced(
                        report.full,
                        started.elapsed().as_secs_f64(),
                        report.rules,
                        snapshot.services.len(),
                        snapshot.endpoint_count(),
                    );
                    for seen in seen.values() {
                        metrics.programmed(seen.elapsed().as_secs_f64());
                    }
                    tracing::debug!(
                        full = report.full,
                        snapshot_ms = build.as_millis() as u64,
                        render_ms = report.render.as_millis() as u64,
                        apply_ms = report.apply.as_millis() as u64,
                        rules = report.rules,
                        "proxy rules synced"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "applying proxy rules failed; the next sync is full");
                    metrics.sync_failed();
                    force_full = true;
                    // The changes are not applied yet: keep them pending.
                    if let Ok(mut p) = pending.lock() {
                        p.dirty = true;
                        for (service, seen) in seen {
                            let first = p.endpoint_changes.entry(service).or_insert(seen);
                            *first = (*first).min(seen);
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        () = sync_loop => {}
        () = shutdown => {}
    }
    watches.abort();
}

/// Upstream's BoundedFrequencyRunner pacing: a token bucket refilled at one token per `period`,
/// holding at most [`BURST_SYNCS`]; a sync takes one.
struct Pacing {
    period: Duration,
    tokens: f64,
    at: Instant,
}

/// kube-proxy's `burstSyncs`.
const BURST_SYNCS: f64 = 2.0;

impl Pacing {
    fn new(period: Duration, now: Instant) -> Pacing {
        Pacing {
            period,
            tokens: BURST_SYNCS,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.period.is_zero() {
            self.tokens = BURST_SYNCS;
        } else {
            let earned = now.saturating_duration_since(self.at).as_secs_f64() / self.period.as_secs_f64();
            self.tokens = (self.tokens + earned).min(BURST_SYNCS);
        }
        self.at = now;
    }

    /// How long until a sync may run.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            self.period.mul_f64(1.0 - self.tokens)
        }
    }

    /// A sync runs now.
    fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }

    /// The last sync wrote nothing: its token comes back.
    fn refund(&mut self) {
        self.tokens = (self.tokens + 1.0).min(BURST_SYNCS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_are_paced_one_per_period_with_a_burst_of_two() {
        let second = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut p = Pacing::new(second, t0);
        // After a quiet spell two syncs run back to back...
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.take(t0);
        assert_eq!(p.wait(t0), Duration::ZERO);
        p.take(t0);
        // ...then one per period.
        assert_eq!(p.wait(t0), second);
        let t1 = t0 + Duration::from_millis(400);
        assert_eq!(p.wait(t1), Duration::from_millis(600));
        let t2 = t0 + second;
        assert_eq!(p.wait(t2), Duration::ZERO);
        p.take(t2);
        assert_eq!(p.wait(t2), second);
        // A long quiet spell earns no more than the burst.
        let t3 = t2 + Duration::from_secs(60);
        p.take(t3);
        p.take(t3);
        assert_eq!(p.wait(t3), second);
        // A sync that wrote nothing gives its token back.
        p.refund();
        assert_eq!(p.wait(t3), Duration::ZERO);
        // No period: never waits.
        let mut free = Pacing::new(Duration::ZERO, t0);
        for _ in 0..5 {
            free.take(t0);
            assert_eq!(free.wait(t0), Duration::ZERO);
        }
    }
    use crate::{
        sink::{Call, FakeSink},
        snapshot::{Endpoint, Protocol, ServicePort, ServicePortName},
    };

    fn config() -> RenderConfig {
        RenderConfig {
            node_name: "n1".into(),
            cluster_cidr: None,
            service_cidr: "10.96.0.0/12".parse().expect("cidr"),
            node_ips: Vec::new(),
        }
    }

    fn snapshot(endpoints: &[&str]) -> Snapshot {
        let name = ServicePortName {
            namespace: "ns".into(),
            name: "web".into(),
            port: String::new(),
            protocol: Protocol::Tcp,
        };
        let mut s = Snapshot::default();
        s.services.insert(
            name.clone(),
            ServicePort {
                name: name.clone(),
                cluster_ip: "10.96.0.10".parse().expect("ip"),
                port: 80,
                node_port: None,
                affinity_timeout: None,
                internal_local: false,
                external_local: false,
            },
        );
        let eps = endpoints
            .iter()
            .map(|ip| Endpoint {
                ip: ip.parse().expect("ip"),
                port: 8080,
                ready: true,
                serving: true,
                terminating: false,
                node_name: None,
            })
            .collect();
        s.endpoints.insert(name, eps);
        s
    }

    #[test]
    fn nftables_syncs_whole_then_partial_then_nothing() {
        let sink = FakeSink::default();
        let mut p = Programmer::new(Mode::Nftables, config(), Arc::new(sink.clone()));
        let first = p.sync(&snapshot(&["10.244.0.2"]), false).expect("sync");
        assert!(first.full && first.applied);
        let second = p.sync(&snapshot(&["10.244.0.3"]), false).expect("sync");
        assert!(!second.full && second.applied);
        let third = p.sync(&snapshot(&["10.244.0.3"]), false).expect("sync");
        assert!(!third.applied, "an unchanged render applies nothing");
        let calls = sink.calls();
        assert!(matches!(&calls[0], Call::Nft(t) if t.starts_with("add table ip kube-proxy\ndelete table")));
        assert_eq!(calls[1], Call::EnsureRoute);
        let Call::Nft(partial) = &calls[2] else {
            panic!("{calls:?}")
        };
        assert!(
            partial.contains("delete element ip kube-proxy cluster-endpoints-1"),
            "{partial}"
        );
        assert!(partial.contains("10.244.0.3"), "{partial}");
        assert_eq!(calls.len(), 3);
    }

    #[test]
    fn a_failed_apply_makes_the_next_sync_full() {
        let sink = FakeSink::default();
        let mut p = Programmer::new(Mode::Iptables, config(), Arc::new(sink.clone()));
        p.sync(&snapshot(&["10.244.0.2"]), false).expect("first sync");
        if let Ok(mut f) = sink.fail_next.lock() {
            *f = true;
        }
        assert!(p.sync(&snapshot(&["10.244.0.3"]), false).is_err());
        let next = p.sync(&snapshot(&["10.244.0.3"]), false).expect("retry");
        assert!(next.full, "after a failure the whole ruleset is rewritten");
        let Some(Call::IptablesRestore(text)) = sink.calls().into_iter().rev().nth(1) else {
            panic!("{:?}", sink.calls())
        };
        assert!(
            text.contains("-I PREROUTING 1"),
            "a full sync re-checks the jumps: {text}"
        );
    }
}
