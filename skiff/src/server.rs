//! `skiff server`: the control plane in one process: the API server over its store, and beside it the
//! controller manager and the scheduler, which reach it as any client does (HTTPS, admin kubeconfig).
//!
//! Start-up order, each step failing with a one-line error that names what is wrong: data dir →
//! store (embedded SQLite, or etcd with `--datastore-endpoint`) → PKI and admin kubeconfig → listen →
//! bootstrap namespaces → serve, start the controllers and the scheduler → on SIGTERM/SIGINT stop them
//! all, letting work in progress finish.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::Context;
use skiff_apiserver::{
    server::{ApiServer, allocator, bootstrap, serve, tls},
    storage::{
        Store,
        sqlite::{SqliteOptions, SqliteStore},
    },
    watch_cache::WatchCacheOptions,
};
use tokio::net::TcpListener;

use crate::components::{self, ControllerArgs, Shutdown};

/// How long shutdown waits for components, then for open requests, before it stops them.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Flags of `skiff server`, named like k3s's.
#[derive(clap::Args, Debug)]
pub struct ServerArgs {
    /// Where the server keeps its state: the SQLite store, TLS material, the admin kubeconfig.
    #[arg(long, default_value = "/var/lib/skiff")]
    pub data_dir: PathBuf,
    /// etcd endpoints (`http://host:2379[,http://host2:2379]`); unset = embedded SQLite.
    #[arg(long)]
    pub datastore_endpoint: Option<String>,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Port of the API server's HTTPS listener.
    #[arg(long, default_value_t = 6443)]
    pub https_listen_port: u16,
    /// The join token's secret agents present (`skiff agent --server URL --token T`); unset: one is
    /// generated once and kept in `<data-dir>/server/token`. The full token is written to
    /// `<data-dir>/server/node-token`.
    #[arg(long, env = "SKIFF_TOKEN")]
    pub token: Option<String>,
    /// Also write the admin kubeconfig to this path.
    #[arg(long)]
    pub write_kubeconfig: Option<PathBuf>,
    /// The range Service ClusterIPs are allocated from (the first address is the `kubernetes` Service's).
    #[arg(long, default_value = "10.96.0.0/12")]
    pub service_cidr: String,
    /// The range NodePorts are allocated from.
    #[arg(long, default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// Run the control plane only, without the embedded agent (the kubelet of this machine's node).
    #[arg(long)]
    pub disable_agent: bool,
    /// Run the node side of this server (the embedded agent and every listener in-cluster clients
    /// use) inside this network namespace (`/run/netns/<name>`), as the quickstart does: the API also
    /// answers on `--bind-address` in the namespace the server started in, and nothing else of the
    /// host's network is touched.
    #[arg(long)]
    pub node_netns: Option<PathBuf>,
    #[command(flatten)]
    pub node: crate::node::NodeArgs,
    /// Do not run the controller manager in this process.
    #[arg(long)]
    pub disable_controller_manager: bool,
    /// Do not run the scheduler in this process.
    #[arg(long)]
    pub disable_scheduler: bool,
    #[command(flatten)]
    pub controllers: ControllerArgs,
    /// Extra names and addresses for the serving certificate.
    #[arg(long = "tls-san", value_delimiter = ',')]
    pub tls_san: Vec<String>,
}

/// The API listener in the namespace the server starts in, when the node side moves to
/// `--node-netns`. Called before the async runtime starts (see [`crate::node::enter_netns`]): it binds
/// the listener here, then moves the process into the node's namespace.
pub fn listen_then_enter_netns(args: &ServerArgs) -> anyhow::Result<Option<std::net::TcpListener>> {
    let Some(netns) = &args.node_netns else {
        return Ok(None);
    };
    let addr = SocketAddr::new(bind_address(args)?, args.https_listen_port);
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    crate::node::enter_netns(netns)?;
    Ok(Some(listener))
}

fn bind_address(args: &ServerArgs) -> anyhow::Result<std::net::IpAddr> {
    args.bind_address
        .parse()
        .with_context(|| format!("--bind-address {:?} is not an IP address", args.bind_address))
}

/// Runs the server until a shutdown signal. `host_listener` is the listener
/// [`listen_then_enter_netns`] made, if any.
pub async fn run(args: ServerArgs, host_listener: Option<std::net::TcpListener>) -> anyhow::Result<()> {
    let bind = bind_address(&args)?;
    let mut ranges = allocator::Ranges::with_service_cidr(&args.service_cidr)
        .map_err(|e| anyhow::anyhow!("--service-cidr: {e}"))?;
    ranges.node_ports = args
        .service_node_port_range
        .split_once('-')
        .and_then(|(lo, hi)| Some((lo.parse().ok()?, hi.parse().ok()?)))
        .filter(|(lo, hi): &(u16, u16)| lo < hi)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--service-node-port-range {:?} is not a range like 30000-32767",
                args.service_node_port_range
            )
        })?;
    let controller_options = args.controllers.options()?;
    let signals = components::Signals::install()?;
    let server_dir = args.data_dir.join("server");
    std::fs::create_dir_all(&server_dir)
        .with_context(|| format!("cannot create data dir {}", server_dir.display()))?;

    let store = open_store(&args).await?;
    tracing::info!(backend = store.backend(), "store ready");

    let mut sans: Vec<String> = [
        "localhost",
        "127.0.0.1",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(str::to_owned)
    .into();
    sans.push(ranges.kubernetes_ip().to_string());
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        sans.push(host.trim().to_owned());
    }
    if !bind.is_unspecified() {
        sans.push(bind.to_string());
    }
    // The node's address: where other nodes' agents and the pods reach this server.
    if !args.disable_agent || args.node_netns.is_some() {
        sans.push(args.node.address());
    }
    sans.extend(args.tls_san.iter().cloned());
    let pki = tls::load_or_create(&server_dir.join("tls"), &sans).context("cannot set up TLS")?;

    // With a node namespace, the host's listener was bound before the process moved; in the node's
    // namespace the API answers on every address (the node's own, for pods through the `kubernetes`
    // Service), on the same port so the one kubeconfig serves both sides.
    let (listener, host_listener) = match host_listener {
        Some(host) => {
            let host = TcpListener::from_std(host)?;
            let port = host.local_addr()?.port();
            let inner = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), port);
            let listener = TcpListener::bind(inner)
                .await
                .with_context(|| format!("cannot listen on {inner} in the node's network namespace"))?;
            (listener, Some(host))
        }
        None => {
            let addr = SocketAddr::new(bind, args.https_listen_port);
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            (listener, None)
        }
    };
    let port = listener.local_addr()?.port();
    let host = if bind.is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        bind.to_string()
    };
    let url = if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    let kubeconfig = args.data_dir.join("kubeconfig.yaml");
    for path in std::iter::once(&kubeconfig).chain(args.write_kubeconfig.as_ref()) {
        tls::write_kubeconfig(path, &url, &pki.ca_pem, &pki.admin_token)
            .with_context(|| format!("cannot write kubeconfig {}", path.display()))?;
    }

    let api = ApiServer::with_ranges(store, WatchCacheOptions::default(), ranges);
    api.set_kubelet_client(
        skiff_apiserver::server::kubelet_client::KubeletClient::new(&pki.kubelet_client)
            .context("cannot set up the kubelet client")?,
    );
    api.bootstrap(port)
        .await
        .context("cannot create the bootstrap objects")?;
    // Where in-cluster clients reach this server (upstream's --advertise-address): the node's address
    // when the server runs a node or binds all addresses, else the address it binds.
    let advertise = if host_listener.is_some() || (bind.is_unspecified() && !args.disable_agent) {
        args.node.address()
    } else if bind.is_unspecified() {
        crate::node::first_global_ipv4()
    } else {
        bind.to_string()
    };
    let https = [bootstrap::EndpointPort {
        name: "https",
        port,
        protocol: "TCP",
    }];
    // A loopback address is no endpoint (validation refuses it): a server bound to 127.0.0.1 without
    // a node is not reachable from pods, and its `kubernetes` Service has no endpoints.
    let reachable = advertise
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| !ip.is_loopback());
    if reachable
        && let Err(e) = api
            .publish_endpoints("default", "kubernetes", &advertise, &https)
            .await
    {
        tracing::warn!(%advertise, "cannot publish the kubernetes Service's endpoints: {e}");
    }
    let join_secret = crate::join::server_secret(&server_dir, args.token.as_deref(), &pki.ca_pem)
        .context("cannot set up the join token")?;
    let router = serve::with_auth(
        serve::with_cacerts(api.router(), pki.ca_pem.clone()),
        vec![pki.admin_token.clone(), join_secret],
    );
    println!("skiff server listening on {url} (store: {})", api.store.backend());
    println!("  kubeconfig: {}", kubeconfig.display());
    println!(
        "  try:        KUBECONFIG={} kubectl get --raw /version",
        kubeconfig.display()
    );
    println!(
        "  join:       skiff agent --server {url} --token $(cat {})",
        server_dir.join("node-token").display()
    );
    let (fire, shutdown) = Shutdown::new();
    let serving = tokio::spawn(serve::serve_tls(
        listener,
        pki.server_config.clone(),
        router.clone(),
        shutdown.wait(),
    ));
    let host_serving = host_listener
        .map(|host| tokio::spawn(serve::serve_tls(host, pki.server_config, router, shutdown.wait())));
    let client_config = components::kubeconfig_config(&kubeconfig).await?;
    let client = kube::Client::try_from(client_config.clone())?;
    let mut running = Vec::new();
    if !args.disable_controller_manager {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        running.push(tokio::spawn(async move {
            components::run_controllers(client, controller_options, &shutdown).await
        }));
    }
    if !args.disable_scheduler {
        let (client, shutdown) = (client.clone(), shutdown.clone());
        running.push(tokio::spawn(async move {
            components::run_scheduler(client, &shutdown).await
        }));
    }
    if !args.disable_agent {
        // The node's network: its proxy (inside `crate::node`) and, on its address, the cluster
        // DNS behind the `kube-dns` Service.
        let node_ranges =
            crate::node::ClusterRanges::parse(&args.service_cidr, &args.controllers.cluster_cidr)?;
        start_cluster_dns(&api, &args, client.clone(), &shutdown).await?;
        let (config, shutdown, node, data_dir) = (
            client_config.clone(),
            shutdown.clone(),
            args.node.clone(),
            args.data_dir.clone(),
        );
        running.push(tokio::spawn(async move {
            if let Err(e) = crate::node::run(config, &node, node_ranges, &data_dir, None, shutdown).await {
                tracing::error!("the embedded agent stopped: {e:#}");
            }
        }));
    }
    signals.wait().await;
    tracing::info!("shutting down");
    fire();
    // Components finish their syncs in progress while the API server still answers them, within a
    // bound: a shutdown must not wait on a component stuck in a request (what is left is aborted).
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    for mut task in running {
        if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
            task.abort();
        }
    }
    // Graceful serving ends with the last request; watches (from clients elsewhere) may never end,
    // so they get the same bound. Every write acknowledged is already committed.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, serving).await;
    if let Some(host_serving) = host_serving {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, host_serving).await;
    }
    Ok(())
}

/// The cluster DNS on this server's node (port 53 of the node's address, UDP and TCP), behind the
/// `kube-dns` Service on `--cluster-dns`, whose endpoints the server publishes (as it does the
/// `kubernetes` Service's). Names outside the cluster go to the resolvers of /etc/resolv.conf; a
/// node in a namespace of its own (`--node-netns`) has no way out, so it refuses them at once.
async fn start_cluster_dns(
    api: &ApiServer,
    args: &ServerArgs,
    client: kube::Client,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    use skiff_proxy::dns::{DnsConfig, Upstreams, start_dns};
    let address = args.node.address();
    let ip: std::net::IpAddr = address
        .parse()
        .with_context(|| format!("the node's address {address:?} is not an IP address"))?;
    api.bootstrap_cluster_dns(&args.node.cluster_dns)
        .await
        .with_context(|| format!("cannot create the kube-dns Service on {}", args.node.cluster_dns))?;
    let upstreams = match args.node_netns {
        Some(_) => Upstreams::Servers(Vec::new()),
        None => Upstreams::ResolvConf("/etc/resolv.conf".into()),
    };
    let cfg = DnsConfig {
        bind: vec![SocketAddr::new(ip, 53)],
        domain: args.node.cluster_domain.clone(),
        upstreams,
        ..DnsConfig::default()
    };
    let handle = start_dns(client, cfg)
        .await
        .with_context(|| format!("cannot serve cluster DNS on {ip}:53"))?;
    let dns = [
        bootstrap::EndpointPort {
            name: "dns",
            port: 53,
            protocol: "UDP",
        },
        bootstrap::EndpointPort {
            name: "dns-tcp",
            port: 53,
            protocol: "TCP",
        },
    ];
    if ip.is_loopback() {
        tracing::warn!("the node's address is a loopback address: pods cannot reach the cluster DNS");
    } else {
        api.publish_endpoints("kube-system", "kube-dns", &address, &dns)
            .await
            .context("cannot publish the kube-dns Service's endpoints")?;
    }
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        shutdown.wait().await;
        drop(handle);
    });
    Ok(())
}

async fn open_store(args: &ServerArgs) -> anyhow::Result<Arc<dyn Store>> {
    match &args.datastore_endpoint {
        None => {
            let path = args.data_dir.join("server/db/state.db");
            let store = SqliteStore::open(&path, SqliteOptions::default())
                .with_context(|| format!("cannot open the embedded store {}", path.display()))?;
            Ok(store)
        }
        Some(endpoint) => open_etcd(endpoint).await,
    }
}

#[cfg(feature = "etcd")]
async fn open_etcd(endpoint: &str) -> anyhow::Result<Arc<dyn Store>> {
    use skiff_apiserver::storage::etcd::{EtcdStore, parse_endpoints};
    let endpoints =
        parse_endpoints(endpoint).map_err(|e| anyhow::anyhow!("--datastore-endpoint {endpoint:?}: {e}"))?;
    let store = EtcdStore::connect(&endpoints)
        .await
        .with_context(|| format!("cannot use etcd at {endpoint}"))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(_endpoint: &str) -> anyhow::Result<Arc<dyn Store>> {
    anyhow::bail!("this skiff was built without the etcd feature; rebuild with `--features etcd`")
}
