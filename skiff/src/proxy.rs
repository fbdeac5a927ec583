//! `skiff proxy`: the service proxy alone (kube-proxy's flags, named as upstream's), and the options
//! `skiff agent`/`skiff server` can embed it with.

use std::{net::Ipv4Addr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use skiff_proxy::{Cidr, Mode, RenderConfig, metrics::Metrics, proxier};

use crate::components::{ClientArgs, Shutdown, Signals, parse_duration};

/// The proxy's own flags (shared by `skiff proxy` and the commands that embed it).
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyOptions {
    /// iptables (kube-proxy's chains), nftables (one table of maps) or ipvs (refused without ip_vs).
    #[arg(long, default_value = "iptables")]
    pub proxy_mode: Mode,
    /// The shortest time between two syncs of the rules.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub min_sync_period: Duration,
    /// This node's address (ipvs binds NodePorts to it).
    #[arg(long)]
    pub node_ip: Option<Ipv4Addr>,
    /// This node's name (which endpoints are local); default: the hostname.
    #[arg(long = "hostname-override")]
    pub hostname_override: Option<String>,
    /// The pods' CIDR: traffic to a ClusterIP from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<Cidr>,
    /// The services' CIDR (routed locally; an address of it without rules is rejected).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: Cidr,
    /// The node's network namespace (a path such as /run/netns/node1): rules go there.
    #[arg(long)]
    pub netns: Option<PathBuf>,
    /// Where `/metrics` (Prometheus text) and `/healthz` are served, as kube-proxy's
    /// `--metrics-bind-address`; `0` turns it off.
    #[arg(long, default_value = "127.0.0.1:10249", value_parser = parse_metrics_address)]
    pub metrics_bind_address: MetricsAddress,
}

/// `--metrics-bind-address`: an address, or none (`0`).
#[derive(Debug, Clone, Copy)]
pub struct MetricsAddress(pub Option<std::net::SocketAddr>);

fn parse_metrics_address(s: &str) -> Result<MetricsAddress, String> {
    if s == "0" {
        return Ok(MetricsAddress(None));
    }
    s.parse()
        .map(|a| MetricsAddress(Some(a)))
        .map_err(|e| format!("{s:?} is not an address:port ({e})"))
}

impl ProxyOptions {
    /// The proxier's config.
    pub fn config(&self) -> proxier::Config {
        let node_name = self.hostname_override.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_default()
        });
        proxier::Config {
            mode: self.proxy_mode,
            render: RenderConfig {
                node_name,
                cluster_cidr: self.cluster_cidr,
                service_cidr: self.service_cidr,
                node_ips: self.node_ip.into_iter().collect(),
            },
            min_sync_period: self.min_sync_period,
            full_sync_period: Duration::from_secs(3600),
            netns: self.netns.clone(),
        }
    }
}

/// `skiff proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    options: ProxyOptions,
    /// Remove every rule, chain, table and route the proxy (any mode) created, then exit.
    #[arg(long)]
    cleanup: bool,
}

/// Runs the proxy alone until SIGTERM/SIGINT (or cleans up and exits).
pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    if args.cleanup {
        proxier::cleanup(args.options.netns.clone(), args.options.service_cidr)
            .context("proxy cleanup failed")?;
        return Ok(());
    }
    // A mode this node cannot run fails before anything else.
    proxier::preflight(&args.options.config()).context("the service proxy cannot run")?;
    let signals = Signals::install()?;
    let client = args.client.client().await?;
    let (fire, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        signals.wait().await;
        fire();
    });
    run_proxy(client, &args.options, Arc::new(Metrics::default()), &shutdown).await
}

/// The proxy until `shutdown`: what `skiff agent` / `skiff server` call to embed it.
pub async fn run_proxy(
    client: kube::Client,
    options: &ProxyOptions,
    metrics: Arc<Metrics>,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let config = options.config();
    tracing::info!(mode = %config.mode, node = %config.render.node_name, "service proxy starting");
    if let MetricsAddress(Some(addr)) = options.metrics_bind_address {
        let (metrics, shutdown) = (metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            // The rules matter more than their figures: a port already taken is said, not fatal.
            if let Err(e) = skiff_proxy::metrics::serve(addr, metrics, shutdown.wait()).await {
                tracing::warn!("the proxy's metrics are not served on {addr}: {e}");
            }
        });
    }
    proxier::run(client, config, metrics, shutdown.wait())
        .await
        .context("the service proxy cannot run")
}
