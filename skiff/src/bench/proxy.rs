//! `skiff bench proxy`: the service proxy's full sync and endpoint-change programming at 1,000–10,000
//! services, per mode (the measurement itself is `skiff_proxy::bench`; see its header), then the
//! **network programming latency under churn** through the real proxy loop:
//!
//! an in-process API server holds N Services with an EndpointSlice of E endpoints each; the proxy
//! (`skiff_proxy::proxier::run_with_sink`, `--min-sync-period 1s`, full syncs hourly as upstream)
//! watches them and programs a scratch network namespace with the real `nft` / `iptables-restore`;
//! the bench then replaces one endpoint of a random Service `--churn-rate` times a second for
//! `--churn-seconds`, and times each change from just before its EndpointSlice write to the end of
//! the tool run whose input carries the new endpoint (upstream's network programming latency, which
//! starts at the change's trigger time; here the write, so API and watch delivery are included). The
//! proxy's own `kubeproxy_network_programming_duration_seconds` histogram, scraped from its metrics
//! address, is printed beside it.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt as _, stream};
use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_proxy::{
    Mode, RenderConfig, bench,
    metrics::Metrics,
    proxier,
    sink::{RuleSink, SinkError, SystemSink},
};

use super::api::{open_sqlite, serve_in_process};

/// Options of `skiff bench proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyBenchArgs {
    /// Service counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
    pub services: Vec<usize>,
    /// Endpoints per service.
    #[arg(long, default_value_t = 10)]
    pub endpoints: usize,
    /// Modes, comma-separated (iptables, nftables, ipvs).
    #[arg(long, value_delimiter = ',', default_value = "nftables,iptables,ipvs")]
    pub modes: Vec<Mode>,
    /// Endpoint changes timed per cell.
    #[arg(long, default_value_t = 20)]
    pub changes: usize,
    /// iptables cells above this many services are skipped (iptables-nft's restore grows faster than
    /// linearly: 5,000 services already take minutes here).
    #[arg(long, default_value_t = 5000)]
    pub iptables_max_services: usize,
    /// Seconds of churn per cell of the latency-under-churn part (0 skips it).
    #[arg(long, default_value_t = 20)]
    pub churn_seconds: u64,
    /// Endpoint changes per second during churn.
    #[arg(long, default_value_t = 5.0)]
    pub churn_rate: f64,
    /// iptables churn cells above this many services are skipped.
    #[arg(long, default_value_t = 1000)]
    pub churn_iptables_max_services: usize,
    /// Skip the per-sync cells (full sync, one change at a time) and run only the churn part.
    #[arg(long)]
    pub churn_only: bool,
}

/// Runs every cell and prints the figures.
pub async fn run(args: ProxyBenchArgs) -> anyhow::Result<()> {
    if !args.churn_only {
        let options = bench::Options {
            services: args.services.clone(),
            endpoints: args.endpoints,
            modes: args.modes.clone(),
            changes: args.changes,
            iptables_max_services: args.iptables_max_services,
        };
        tokio::task::spawn_blocking(move || bench::run(&options).map_err(|e| anyhow::anyhow!("{e}")))
            .await
            .context("the benchmark panicked")??;
    }
    if args.churn_seconds == 0 {
        return Ok(());
    }
    println!(
        "\nnetwork programming latency under churn: {} endpoint changes/s for {} s per cell, through the running proxy \
         (API write -> rule applied, incl. --min-sync-period 1s); target p99 <= 1.5 s at 10,000 services",
        args.churn_rate, args.churn_seconds
    );
    println!(
        "{:<9} {:>8} {:>8} {:>9} {:>9} {:>9} {:>7} | {:>22} {:>22} {:>8}",
        "mode",
        "services",
        "changes",
        "p50 ms",
        "p99 ms",
        "max ms",
        "target",
        "proxy metric p50",
        "proxy metric p99",
        "syncs"
    );
    for mode in &args.modes {
        for &n in &args.services {
            if *mode == Mode::Ipvs {
                continue;
            }
            if *mode == Mode::Iptables && n > args.churn_iptables_max_services {
                println!(
                    "{:<9} {:>8}  skipped (> --churn-iptables-max-services)",
                    "iptables", n
                );
                continue;
            }
            churn_cell(*mode, n, &args)
                .await
                .with_context(|| format!("{mode} churn cell of {n} services"))?;
        }
    }
    println!(
        "\nproxy metric = the proxy's own kubeproxy_network_programming_duration_seconds (from the slice \
         event seen to applied), as the bucket bound the quantile falls in"
    );
    Ok(())
}

/// Endpoint IPs written and not yet seen applied, by their text in the tools' input.
#[derive(Default)]
struct Waiting {
    pending: HashMap<String, Instant>,
    done: Vec<Duration>,
    syncs: usize,
}

/// The real tools, noting when an input carrying a waited-for endpoint was applied.
struct Recording {
    inner: SystemSink,
    waiting: Arc<Mutex<Waiting>>,
}

impl Recording {
    fn applied(&self, input: &str) {
        let now = Instant::now();
        if let Ok(mut w) = self.waiting.lock() {
            w.syncs += 1;
            let hits: Vec<String> = w
                .pending
                .keys()
                .filter(|k| k.split('|').any(|pattern| input.contains(pattern)))
                .cloned()
                .collect();
            for k in hits {
                if let Some(t) = w.pending.remove(&k) {
                    w.done.push(now - t);
                }
            }
        }
    }
}

impl RuleSink for Recording {
    fn ensure_route(&self) -> Result<(), SinkError> {
        self.inner.ensure_route()
    }
    fn iptables_save(&self) -> Result<String, SinkError> {
        self.inner.iptables_save()
    }
    fn iptables_restore(&self, input: &str) -> Result<(), SinkError> {
        self.inner.iptables_restore(input)?;
        self.applied(input);
        Ok(())
    }
    fn nft(&self, input: &str) -> Result<(), SinkError> {
        self.inner.nft(input)?;
        self.applied(input);
        Ok(())
    }
    fn cleanup(&self) -> Result<(), SinkError> {
        self.inner.cleanup()
    }
}

/// Requests in flight while filling the store (not timed).
const FILL: usize = 64;

fn endpoint_ip(n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 2)) + u32::try_from(n).unwrap_or(0))
}

fn slice_endpoints(ips: &[Ipv4Addr]) -> serde_json::Value {
    ips.iter()
        .map(|ip| json!({ "addresses": [ip.to_string()], "conditions": { "ready": true }, "nodeName": "other-node" }))
        .collect()
}

async fn churn_cell(mode: Mode, n: usize, args: &ProxyBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("skiff-bench-proxy-").tempdir()?;
    let store = open_sqlite(&dir.path().join("state.db"))?;
    let (_api, client, _stop) = serve_in_process(dir.path(), store).await?;
    fill(&client, n, args.endpoints).await?;

    let scratch = bench::Scratch::create().map_err(|e| anyhow::anyhow!("{e}"))?;
    let render = RenderConfig {
        node_name: "bench-node".into(),
        cluster_cidr: Some("10.128.0.0/9".parse().map_err(anyhow::Error::msg)?),
        service_cidr: "10.96.0.0/12".parse().map_err(anyhow::Error::msg)?,
        node_ips: vec![Ipv4Addr::new(192, 168, 0, 1)],
    };
    let waiting = Arc::new(Mutex::new(Waiting::default()));
    let sink = Arc::new(Recording {
        inner: SystemSink {
            netns: Some(scratch.path()),
            service_cidr: render.service_cidr,
        },
        waiting: waiting.clone(),
    });
    let config = proxier::Config {
        mode,
        render,
        min_sync_period: Duration::from_secs(1),
        full_sync_period: Duration::from_secs(3600),
        netns: Some(scratch.path()),
    };
    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let metrics_addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_metrics_tx, stop_metrics_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(skiff_proxy::metrics::serve_on(listener, metrics.clone(), async {
        let _ = stop_metrics_rx.await;
    }));
    let proxy = tokio::spawn(proxier::run_with_sink(
        client.clone(),
        config,
        sink,
        metrics,
        async {
            let _ = stop_rx.await;
        },
    ));
    // The first (full) sync.
    let start = Instant::now();
    while waiting.lock().map(|w| w.syncs).unwrap_or(0) == 0 {
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "no first sync after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first_sync = start.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Churn: one endpoint of a pseudo-random service replaced, churn_rate times a second.
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    let period = Duration::from_secs_f64(1.0 / args.churn_rate.max(0.01));
    let changes = (args.churn_seconds as f64 * args.churn_rate).round() as usize;
    let mut ticker = tokio::time::interval(period);
    let mut writes = Vec::new();
    for c in 0..changes {
        ticker.tick().await;
        let svc = (c * 7919 + 13) % n;
        let mut ips: Vec<Ipv4Addr> = (0..args.endpoints)
            .map(|e| endpoint_ip(svc * args.endpoints + e))
            .collect();
        let fresh = endpoint_ip(n * args.endpoints + c);
        ips[0] = fresh;
        let key = format!("{fresh} . 8080|{fresh}:8080");
        let patch = json!({ "endpoints": slice_endpoints(&ips) });
        if let Ok(mut w) = waiting.lock() {
            w.pending.insert(key, Instant::now());
        }
        let slices = slices.clone();
        writes.push(tokio::spawn(async move {
            slices
                .patch(
                    &format!("svc-{svc}"),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
        }));
    }
    for w in writes {
        w.await?.context("endpoint slice write")?;
    }
    let settle = Instant::now();
    while waiting.lock().map(|w| !w.pending.is_empty()).unwrap_or(false)
        && settle.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let scraped = scrape(metrics_addr).await.unwrap_or_default();
    let _ = stop_tx.send(());
    let _ = proxy.await;
    let _ = stop_metrics_tx.send(());
    drop(scratch);

    let (mut done, lost, syncs) = waiting
        .lock()
        .map(|w| (w.done.clone(), w.pending.len(), w.syncs))
        .unwrap_or_default();
    done.sort();
    let pct = |p: f64| {
        if done.is_empty() {
            return f64::NAN;
        }
        let i = ((done.len() as f64 - 1.0) * p).round() as usize;
        done[i.min(done.len() - 1)].as_secs_f64() * 1000.0
    };
    let (m50, m99) = histogram_quantiles(&scraped, "kubeproxy_network_programming_duration_seconds");
    let p99 = pct(0.99);
    println!(
        "{:<9} {:>8} {:>8} {:>9.0} {:>9.0} {:>9.0} {:>7} | {:>22} {:>22} {:>8}",
        mode.to_string(),
        n,
        format!(
            "{}{}",
            done.len(),
            if lost > 0 {
                format!("+{lost}lost")
            } else {
                String::new()
            }
        ),
        pct(0.5),
        p99,
        pct(1.0),
        if n == 10_000 && mode == Mode::Nftables {
            if p99 <= 1500.0 { "met" } else { "MISSED" }
        } else {
            "-"
        },
        m50,
        m99,
        syncs,
    );
    println!(
        "          (first full sync {:.1} s after the proxy started, over {n} services x {} endpoints)",
        first_sync.as_secs_f64(),
        args.endpoints
    );
    Ok(())
}

/// N Services (ClusterIP, port http 80 → 8080) and an EndpointSlice of `endpoints` each, in `bench`.
async fn fill(client: &Client, n: usize, endpoints: usize) -> anyhow::Result<()> {
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(json!({ "metadata": { "name": "bench" } }))?;
    let _ = namespaces.create(&PostParams::default(), &ns).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "bench");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");
    stream::iter(0..n)
        .map(|i| {
            let (services, slices) = (services.clone(), slices.clone());
            async move {
                let name = format!("svc-{i}");
                let svc: Service = serde_json::from_value(json!({
                    "metadata": { "name": name },
                    "spec": { "ports": [{ "name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP" }] }
                }))?;
                services.create(&PostParams::default(), &svc).await?;
                let ips: Vec<Ipv4Addr> = (0..endpoints).map(|e| endpoint_ip(i * endpoints + e)).collect();
                let slice: EndpointSlice = serde_json::from_value(json!({
                    "metadata": { "name": name, "labels": { "kubernetes.io/service-name": name } },
                    "addressType": "IPv4",
                    "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
                    "endpoints": slice_endpoints(&ips),
                }))?;
                slices.create(&PostParams::default(), &slice).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(FILL)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(())
}

/// GET /metrics from the proxy's metrics address.
async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out)).await??;
    Ok(out)
}

/// The bucket bounds the median and the 99th percentile of a Prometheus histogram fall in, as text
/// (`<= 1.5 s`), from its cumulative `_bucket` lines.
fn histogram_quantiles(text: &str, name: &str) -> (String, String) {
    let prefix = format!("{name}_bucket{{le=\"");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    let total = buckets.last().map_or(0.0, |b| b.1);
    let q = |p: f64| {
        if total == 0.0 {
            return "-".to_owned();
        }
        buckets
            .iter()
            .find(|(_, c)| *c >= p * total)
            .map_or("-".to_owned(), |(le, _)| format!("<= {le} s (n={total})"))
    };
    (q(0.5), q(0.99))
}
