//! `skiff bench proxy`: the service proxy's full sync and endpoint-change programming at 1,000–10,000
//! services, per mode (the measurement itself is `skiff_proxy::bench`; see its header).

use anyhow::Context as _;
use skiff_proxy::{Mode, bench};

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
}

/// Runs every cell and prints the figures.
pub async fn run(args: ProxyBenchArgs) -> anyhow::Result<()> {
    let options = bench::Options {
        services: args.services,
        endpoints: args.endpoints,
        modes: args.modes,
        changes: args.changes,
        iptables_max_services: args.iptables_max_services,
    };
    tokio::task::spawn_blocking(move || bench::run(&options).map_err(|e| anyhow::anyhow!("{e}")))
        .await
        .context("the benchmark panicked")?
}
