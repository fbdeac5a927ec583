//! `skiff dns`: the cluster DNS alone against an API server (what CoreDNS is in a Kubernetes
//! cluster), with flags named like the kubelet's and CoreDNS's settings.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;
use skiff_proxy::dns::{DEFAULT_TTL, DnsConfig, Upstreams, run_dns};

use crate::components::{ClientArgs, Signals, parse_duration};

/// Flags of `skiff dns`.
#[derive(clap::Args, Debug)]
pub struct DnsArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Addresses to serve on, UDP and TCP (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0.0.0.0:53")]
    bind: Vec<SocketAddr>,
    /// The cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Upstream resolvers for names outside the cluster (comma-separated `ip` or `ip:port`);
    /// unset = the nameservers of `--resolv-conf`.
    #[arg(long, value_delimiter = ',')]
    upstream: Vec<String>,
    /// The resolv.conf whose nameservers are the upstreams.
    #[arg(long, default_value = "/etc/resolv.conf")]
    resolv_conf: PathBuf,
    /// TTL of cluster records, in seconds.
    #[arg(long, default_value_t = DEFAULT_TTL)]
    ttl: u32,
    /// How long to wait for one upstream before trying the next.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    upstream_timeout: Duration,
}

/// Runs the cluster DNS until SIGTERM or SIGINT.
pub async fn run(args: DnsArgs) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let client = args.client.client().await?;
    let upstreams = if args.upstream.is_empty() {
        Upstreams::ResolvConf(args.resolv_conf)
    } else {
        Upstreams::Servers(
            args.upstream
                .iter()
                .map(|u| {
                    u.parse::<SocketAddr>()
                        .or_else(|_| u.parse().map(|ip| SocketAddr::new(ip, 53)))
                        .with_context(|| format!("--upstream {u:?} is not an address"))
                })
                .collect::<anyhow::Result<_>>()?,
        )
    };
    let cfg = DnsConfig {
        bind: args.bind,
        domain: args.cluster_domain,
        upstreams,
        ttl: args.ttl,
        upstream_timeout: args.upstream_timeout,
        ..DnsConfig::default()
    };
    run_dns(client, cfg, signals.wait()).await?;
    Ok(())
}
