//! Cluster DNS: the counterpart of CoreDNS with its kubernetes plugin, as a Kubernetes cluster runs
//! it behind the `kube-dns` Service.
//!
//! It owns the names of the Kubernetes DNS specification (kubernetes/dns `docs/specification.md`):
//! `<svc>.<ns>.svc.<domain>` (A/AAAA: the ClusterIPs, or every ready endpoint IP of a headless
//! Service; CNAME for an ExternalName), `<hostname>.<svc>.<ns>.svc.<domain>` for endpoints,
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>` SRV, PTR for ClusterIPs and endpoint IPs, and
//! forwards everything else to the node's resolvers (CoreDNS's default Corefile: `forward .
//! /etc/resolv.conf`, `cache 30`). Parts:
//!
//! - [`snapshot`]: the DNS view of Services, EndpointSlices and Namespaces;
//! - [`answer`]: the answer to a query from a snapshot, pure;
//! - [`reflect`]: the watches that keep the snapshot current;
//! - [`forward`]: upstream forwarding and its cache;
//! - [`server`]: the UDP and TCP listeners.

pub mod answer;
pub mod forward;
pub mod reflect;
pub mod server;
pub mod snapshot;

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use tokio::sync::watch;

pub use answer::{Outcome, Responder};
pub use forward::{Forwarder, parse_resolv_conf, upstreams_from_resolv_conf};
pub use snapshot::Snapshot;

/// The TTL of cluster records. CoreDNS's kubernetes plugin defaults to 5 s, but the Corefile that
/// kubeadm (and so most clusters) deploys says `ttl 30`; we follow the deployed default.
pub const DEFAULT_TTL: u32 = 30;

/// Where the upstream resolvers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstreams {
    /// The `nameserver` lines of this resolv.conf (normally `/etc/resolv.conf`).
    ResolvConf(PathBuf),
    /// These servers.
    Servers(Vec<SocketAddr>),
}

/// How the cluster DNS runs.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Addresses to serve on, UDP and TCP each (port 0: any free port, different for each).
    pub bind: Vec<SocketAddr>,
    /// The cluster domain (`--cluster-domain`, `cluster.local`).
    pub domain: String,
    /// Where names outside the cluster go.
    pub upstreams: Upstreams,
    /// The TTL of cluster records.
    pub ttl: u32,
    /// How long to wait for one upstream before trying the next.
    pub upstream_timeout: Duration,
    /// How many forwarded answers the cache keeps.
    pub cache_capacity: usize,
    /// The longest a forwarded answer is cached, in seconds (CoreDNS's `cache 30`).
    pub cache_max_ttl: u32,
    /// UDP listener tasks per address (they share the socket; one per core is plenty).
    pub udp_workers: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            bind: vec![SocketAddr::from(([0, 0, 0, 0], 53))],
            domain: "cluster.local".to_owned(),
            upstreams: Upstreams::ResolvConf("/etc/resolv.conf".into()),
            ttl: DEFAULT_TTL,
            upstream_timeout: Duration::from_secs(2),
            cache_capacity: 10_000,
            cache_max_ttl: 30,
            udp_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Why the cluster DNS could not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// A listener could not be bound.
    #[error("cannot listen for DNS on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The resolv.conf could not be read.
    #[error("cannot read the upstream resolvers from {path}: {source}")]
    ResolvConf {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running cluster DNS; it stops when dropped.
#[derive(Debug)]
pub struct DnsHandle {
    /// The UDP addresses actually bound, in the order of [`DnsConfig::bind`].
    pub udp: Vec<SocketAddr>,
    /// The TCP addresses actually bound.
    pub tcp: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DnsHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Starts the cluster DNS: its watches through `client`, and its listeners.
pub async fn start_dns(client: kube::Client, cfg: DnsConfig) -> Result<DnsHandle, DnsError> {
    let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
    let mut handle = serve(cfg, rx).await?;
    handle
        .tasks
        .push(tokio::spawn(reflect::watch_cluster(client, tx)));
    Ok(handle)
}

/// Runs the cluster DNS until `shutdown` completes (the entry point `skiff server` and `skiff dns`
/// use).
pub async fn run_dns(
    client: kube::Client,
    cfg: DnsConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), DnsError> {
    let handle = start_dns(client, cfg).await?;
    tracing::info!(udp = ?handle.udp, tcp = ?handle.tcp, "cluster DNS serving");
    shutdown.await;
    drop(handle);
    Ok(())
}

/// Serves the snapshots that arrive on `snapshots` (no watches of its own: tests and benchmarks
/// feed it directly).
pub async fn serve(cfg: DnsConfig, snapshots: watch::Receiver<Arc<Snapshot>>) -> Result<DnsHandle, DnsError> {
    let upstreams = match &cfg.upstreams {
        Upstreams::Servers(s) => s.clone(),
        Upstreams::ResolvConf(path) => {
            upstreams_from_resolv_conf(path).map_err(|source| DnsError::ResolvConf {
                path: path.clone(),
                source,
            })?
        }
    };
    if upstreams.is_empty() {
        tracing::warn!("no upstream resolvers: names outside the cluster will be refused");
    }
    let shared = Arc::new(server::Shared {
        responder: Responder::new(&cfg.domain, cfg.ttl),
        snapshot: snapshots,
        forwarder: Forwarder::new(
            upstreams,
            cfg.upstream_timeout,
            cfg.cache_capacity,
            cfg.cache_max_ttl,
        ),
    });
    let mut handle = DnsHandle {
        udp: Vec::new(),
        tcp: Vec::new(),
        tasks: Vec::new(),
    };
    for addr in &cfg.bind {
        let bind_err = |source| DnsError::Bind { addr: *addr, source };
        let (udp, tcp) = server::bind(*addr).await.map_err(bind_err)?;
        handle.udp.push(udp.local_addr().map_err(bind_err)?);
        handle.tcp.push(tcp.local_addr().map_err(bind_err)?);
        for _ in 0..cfg.udp_workers.max(1) {
            handle
                .tasks
                .push(tokio::spawn(server::serve_udp(shared.clone(), udp.clone())));
        }
        handle
            .tasks
            .push(tokio::spawn(server::serve_tcp(shared.clone(), tcp)));
    }
    Ok(handle)
}

#[cfg(test)]
mod tests;
