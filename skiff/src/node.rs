//! What makes a machine a node: the kubelet over the real runtime (pause sandboxes, runc, CNI), the
//! service proxy (Service VIPs as iptables/nft rules) and the routes to the other nodes' pods
//! (`skiff_kubelet::hostgw`, flannel's host-gw). One piece of code serves `skiff agent` (a node joining a cluster) and the agent embedded in
//! `skiff server` (k3s's single-node default), so the two cannot drift apart.
//!
//! A node can live in a network namespace of its own (`--node-netns`), the way kind puts a node in a
//! container: [`enter_netns`] moves the whole process there before anything starts, so the kubelet's
//! probes, the CNI bridge, the proxy's rules and every listener of the node side are inside it and the
//! host's network is never touched.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context;

/// Flags of the node side, shared by `skiff agent` and `skiff server`.
#[derive(clap::Args, Debug, Clone)]
pub struct NodeArgs {
    /// The node's name (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// The node's InternalIP (default: the first global IPv4 address of its network namespace).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Run containers on plain directories instead of the image store: one directory per image
    /// (`busybox:1.36` → `busybox_1.36` or `busybox`), no image config, no pulls. Unset: images come
    /// from the store (`<data-dir>/agent/image-store`), pulled from registries or imported, and every
    /// tarball in `<data-dir>/agent/images/` is imported at start (k3s's airgap convention).
    #[arg(long)]
    pub images_dir: Option<PathBuf>,
    /// The cluster DNS address pods with `dnsPolicy: ClusterFirst` resolve through (upstream's
    /// `--cluster-dns`; `skiff server` gives the `kube-dns` Service this ClusterIP).
    #[arg(long, default_value = "10.96.0.10")]
    pub cluster_dns: String,
    /// The cluster domain (upstream's `--cluster-domain`).
    #[arg(long, default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Pods the node takes (upstream's `--max-pods`).
    #[arg(long, default_value_t = 110)]
    pub max_pods: u32,
    /// The port of the kubelet API (logs, exec, attach) on the node's InternalIP (upstream's
    /// `--port`); 0 picks a free one.
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// How the node's service proxy programs Service VIPs: iptables (kube-proxy's chains), nftables
    /// (one table of maps) or ipvs (refused where the kernel has no ip_vs).
    #[arg(long, default_value = "iptables")]
    pub proxy_mode: skiff_proxy::Mode,
    /// Do not run the service proxy on this node.
    #[arg(long)]
    pub disable_proxy: bool,
    /// Hard eviction thresholds (upstream's `--eviction-hard`): `signal<value` pairs, comma
    /// separated, values as quantities or percentages of capacity, signals `memory.available`,
    /// `nodefs.available`, `nodefs.inodesFree`, `pid.available`. While one is crossed the node
    /// reports MemoryPressure, DiskPressure or PIDPressure and evicts a pod every 10 s. Empty: none.
    #[arg(long, default_value = skiff_kubelet::eviction::DEFAULT_EVICTION_HARD, value_parser = parse_eviction_hard)]
    pub eviction_hard: EvictionThresholds,
    /// How long a pressure condition stays True after its threshold was last crossed (upstream's
    /// `--eviction-pressure-transition-period`).
    #[arg(long, default_value = "5m", value_parser = crate::components::parse_duration)]
    pub eviction_pressure_transition_period: std::time::Duration,
}

/// Parsed `--eviction-hard` thresholds.
#[derive(Clone, Debug)]
pub struct EvictionThresholds(pub Vec<skiff_kubelet::eviction::Threshold>);

fn parse_eviction_hard(text: &str) -> Result<EvictionThresholds, String> {
    skiff_kubelet::eviction::parse_thresholds(text).map(EvictionThresholds)
}

/// The cluster's address ranges, which the node's proxy needs (`skiff server` has them as its own
/// flags; `skiff agent` takes them as the same flags).
#[derive(Clone, Copy, Debug)]
pub struct ClusterRanges {
    /// `--service-cidr`.
    pub service_cidr: skiff_proxy::Cidr,
    /// `--cluster-cidr`.
    pub cluster_cidr: skiff_proxy::Cidr,
}

impl ClusterRanges {
    /// Parses the two flags' values.
    pub fn parse(service_cidr: &str, cluster_cidr: &str) -> anyhow::Result<Self> {
        Ok(Self {
            service_cidr: service_cidr
                .parse()
                .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?,
            cluster_cidr: cluster_cidr
                .parse()
                .map_err(|e| anyhow::anyhow!("--cluster-cidr: {e}"))?,
        })
    }
}

impl NodeArgs {
    /// The node's name: `--node-name`, else the hostname (lower-cased, as upstream).
    pub fn name(&self) -> anyhow::Result<String> {
        match &self.node_name {
            Some(name) => Ok(name.clone()),
            None => {
                let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .context("cannot read the hostname")?;
                Ok(name.trim().to_lowercase())
            }
        }
    }

    /// The node's InternalIP: `--node-ip`, else the first global IPv4 address of this namespace.
    pub fn address(&self) -> String {
        self.node_ip.clone().unwrap_or_else(first_global_ipv4)
    }
}

/// Runs a real node until `shutdown`: its service proxy (unless `--disable-proxy`) and its kubelet,
/// reaching the API server as `client_config` says (whose CA is also the one the kubelet API trusts
/// for client certificates). `node_netns` is the node's namespace when the process itself is not
/// inside it (`skiff agent --node-netns`): CNI plugins and the proxy's rule tools run in there.
pub async fn run(
    client_config: kube::Config,
    args: &NodeArgs,
    ranges: ClusterRanges,
    data_dir: &std::path::Path,
    node_netns: Option<PathBuf>,
    shutdown: crate::components::Shutdown,
) -> anyhow::Result<()> {
    let proxy = if args.disable_proxy {
        None
    } else {
        let options = crate::proxy::ProxyOptions {
            proxy_mode: args.proxy_mode,
            min_sync_period: std::time::Duration::from_secs(1),
            node_ip: args.address().parse().ok(),
            hostname_override: Some(args.name()?),
            cluster_cidr: Some(ranges.cluster_cidr),
            service_cidr: ranges.service_cidr,
            netns: node_netns.clone(),
            metrics_bind_address: crate::proxy::MetricsAddress(Some(([127, 0, 0, 1], 10249).into())),
        };
        let client = kube::Client::try_from(client_config.clone()).context("cannot build the API client")?;
        let shutdown = shutdown.clone();
        Some(tokio::spawn(async move {
            let metrics = Arc::new(skiff_proxy::metrics::Metrics::default());
            if let Err(e) = crate::proxy::run_proxy(client, &options, metrics, &shutdown).await {
                tracing::error!("the service proxy stopped: {e:#}");
            }
        }))
    };
    // Routes to the other nodes' pods (flannel's host-gw) and the pods' masquerade rule.
    let routes = {
        use skiff_kubelet::hostgw::{self, HostGwOptions, SystemRoutes};
        let options = HostGwOptions {
            node_name: args.name()?,
            node_ip: args.address().parse().ok(),
            cluster_cidr: ranges.cluster_cidr.to_string(),
        };
        let table = Arc::new(SystemRoutes {
            netns: node_netns.clone(),
        });
        let client = kube::Client::try_from(client_config.clone()).context("cannot build the API client")?;
        tokio::spawn(hostgw::run(client, options, table, shutdown.wait()))
    };
    let kubelet = kubelet(client_config, args, data_dir, node_netns, shutdown.wait()).await;
    for task in proxy.into_iter().chain([routes]) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
    }
    kubelet
}

/// The node's kubelet until `shutdown`.
async fn kubelet(
    client_config: kube::Config,
    args: &NodeArgs,
    data_dir: &std::path::Path,
    cni_netns: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use skiff_kubelet::{
        dns::ClusterDns,
        images::{airgap_dir, manager::ImageManager, store_dir},
        kubelet::{KubeletOptions, machine_capacity, run_kubelet},
        node::NodeConfig,
        runc_runtime::{RootfsResolver, RuncConfig, RuncRuntime, images_in_dir},
        runtime::ContainerRuntime as _,
    };
    let agent_dir = data_dir.join("agent");
    let images: RootfsResolver = match &args.images_dir {
        Some(dir) => images_in_dir(dir.clone()),
        None => {
            let store = store_dir(&agent_dir);
            let manager = ImageManager::open(&store)
                .with_context(|| format!("cannot open the image store {}", store.display()))?;
            // k3s's airgap convention: whatever tarballs are there are imported before pods start.
            let airgap = airgap_dir(&agent_dir);
            // Said at start (a warning) if containers will get copies of their layers instead.
            let _ = manager.overlay_works();
            tokio::task::block_in_place(|| manager.import_dir(&airgap));
            Arc::new(manager)
        }
    };
    let mut config = RuncConfig::new(agent_dir, images);
    config.node_netns = cni_netns;
    // The node's host-gw side masquerades pods' traffic leaving the cluster CIDR (see `run`).
    config.ip_masq = false;
    config.cluster_dns = ClusterDns {
        servers: vec![args.cluster_dns.clone()],
        domain: args.cluster_domain.clone(),
    };
    let stats = Arc::new(skiff_kubelet::eviction::SystemStats::for_runc(&config));
    let runtime = Arc::new(RuncRuntime::new(config).context("cannot start the container runtime")?);
    let (cpu, memory) = machine_capacity();
    let node = NodeConfig {
        name: args.name()?,
        address: args.address(),
        cpu,
        memory,
        pods: args.max_pods,
        ephemeral_storage: filesystem_size(data_dir).unwrap_or_else(|| "10Gi".into()),
        runtime_version: runtime.version(),
        labels: Vec::new(),
    };
    // The kubelet API trusts client certificates of the CA that signed the API server's.
    let client_ca = client_config.root_cert.clone().unwrap_or_default();
    if client_ca.is_empty() {
        tracing::warn!("no cluster CA known: the kubelet API will refuse every client");
    }
    let server = skiff_kubelet::server::ServerOptions {
        // On the node's InternalIP, the one address the API server uses (upstream listens on all).
        addr: std::net::SocketAddr::new(
            node.address
                .parse()
                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            args.kubelet_port,
        ),
        client_ca,
        serving_names: vec![node.address.clone(), node.name.clone()],
        streams: runtime.clone(),
    };
    let eviction = skiff_kubelet::eviction::EvictionConfig {
        thresholds: args.eviction_hard.0.clone(),
        pressure_transition_period: args.eviction_pressure_transition_period,
        ..skiff_kubelet::eviction::EvictionConfig::new(stats)
    };
    let options = KubeletOptions {
        server: Some(server),
        eviction: Some(eviction),
        ..KubeletOptions::new(node)
    };
    let client = kube::Client::try_from(client_config).context("cannot build the API client")?;
    run_kubelet(client, options, runtime, shutdown)
        .await
        .context("the kubelet stopped")
}

/// Moves this process's calling thread, and every thread it starts afterwards, into the network
/// namespace at `path` (`/run/netns/<name>`). Call it before the async runtime starts its threads:
/// a namespace is a per-thread attribute that new threads inherit. Sockets opened before keep their
/// namespace, which is how `skiff server --node-netns` still serves the host's loopback.
pub fn enter_netns(path: &std::path::Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open network namespace {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("cannot enter network namespace {}", path.display()))?;
    Ok(())
}

/// `capacity.ephemeral-storage`: the size of the filesystem holding `dir` (upstream reads the
/// kubelet's root directory's filesystem), from `df -Pk`.
fn filesystem_size(dir: &std::path::Path) -> Option<String> {
    let output = std::process::Command::new("df")
        .arg("-Pk")
        .arg(dir)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let kib: u64 = text.lines().nth(1)?.split_whitespace().nth(1)?.parse().ok()?;
    Some(format!("{kib}Ki"))
}

/// The first global IPv4 address of this network namespace (`ip -4 -o addr show scope global`), or
/// 127.0.0.1 when there is none.
pub fn first_global_ipv4() -> String {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output();
    let text = output
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            Some(words.next()?.split('/').next()?.to_owned())
        })
        .unwrap_or_else(|| "127.0.0.1".into())
}
