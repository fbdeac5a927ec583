//! What the control-plane components share when the binary runs them: how they reach the API server
//! (a kubeconfig, or `--server` and `--token`), the flags that shape the controllers, and one shutdown
//! signal that every component of the process watches.
//!
//! `skiff server` runs the components beside its API server, talking to it through the admin
//! kubeconfig it wrote (over loopback HTTPS, like any client: components talk to each other only
//! through the API server). `skiff controller-manager` and `skiff scheduler` run one alone against any
//! skiff API server.

use std::{future::Future, path::PathBuf, time::Duration};

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};

/// How a component finds the API server. The first that applies: `--kubeconfig`, `--server` with
/// `--token`, `KUBECONFIG`, `~/.kube/config`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// A kubeconfig file (e.g. `<data-dir>/kubeconfig.yaml` of a `skiff server`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The API server's URL, e.g. https://10.0.0.1:6443 (with `--token`).
    #[arg(long)]
    pub server: Option<String>,
    /// A bearer token for `--server`.
    #[arg(long)]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed the API server's certificate, for `--server`.
    #[arg(long)]
    pub certificate_authority: Option<PathBuf>,
}

impl ClientArgs {
    /// A kube client for the API server these flags name.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let config = if let Some(path) = &self.kubeconfig {
            kubeconfig_config(path).await?
        } else if let Some(server) = &self.server {
            let mut config = kube::Config::new(
                server
                    .parse()
                    .with_context(|| format!("--server {server:?} is not a URL"))?,
            );
            let token = self.token.clone().context("--server needs --token")?;
            config.auth_info.token = Some(token.into());
            match &self.certificate_authority {
                Some(ca) => {
                    let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
                    config.root_cert = Some(pem_certificates(&pem)?);
                }
                None => {
                    tracing::warn!(
                        "no --certificate-authority: the API server's certificate is not verified"
                    );
                    config.accept_invalid_certs = true;
                }
            }
            config
        } else {
            kube::Config::infer()
                .await
                .context("no --kubeconfig or --server given, and no kubeconfig found")?
        };
        kube::Client::try_from(config).context("cannot build the API client")
    }
}

/// A client config from a kubeconfig file.
pub async fn kubeconfig_config(path: &std::path::Path) -> anyhow::Result<kube::Config> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {} is not usable", path.display()))
}

/// The DER certificates of a PEM bundle.
fn pem_certificates(pem: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    let text = std::str::from_utf8(pem).context("the CA file is not PEM")?;
    let mut certs = Vec::new();
    let mut body = None::<String>;
    for line in text.lines() {
        match (line.trim(), &mut body) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b)) => {
                use base64::Engine;
                certs.push(
                    base64::engine::general_purpose::STANDARD
                        .decode(b.as_bytes())
                        .context("bad PEM")?,
                );
                body = None;
            }
            (l, Some(b)) => b.push_str(l),
            _ => {}
        }
    }
    anyhow::ensure!(!certs.is_empty(), "the CA file holds no certificate");
    Ok(certs)
}

/// Flags of the controller manager (`skiff server` has them too).
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// The range node pod CIDRs (/24 each) are allocated from.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// How long a node may go without renewing its Lease before it is marked Ready=Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
}

/// Durations as Kubernetes flags write them: `40s`, `5m`, `1h`, `500ms`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 40s or 5m"))?;
    let seconds = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{text:?} is not a duration like 40s or 5m")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// One shutdown signal for every component of the process.
#[derive(Clone)]
pub struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the function that fires it.
    pub fn new() -> (impl Fn(), Self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (
            move || {
                tx.send_replace(true);
            },
            Self(rx),
        )
    }

    /// Completes once shutdown is signalled.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.0.clone();
        async move {
            let _ = rx.wait_for(|down| *down).await;
        }
    }
}

/// SIGTERM and SIGINT handlers, installed before anything starts: a signal that arrives early (right
/// after the server answers) must still be a clean shutdown, not the default death.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
        })
    }

    /// Completes on SIGTERM or SIGINT.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

/// `skiff controller-manager`.
#[derive(clap::Args, Debug)]
pub struct ControllerManagerArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    controllers: ControllerArgs,
}

/// `skiff scheduler`.
#[derive(clap::Args, Debug)]
pub struct SchedulerArgs {
    #[command(flatten)]
    client: ClientArgs,
}

/// Runs the controller manager alone until SIGTERM/SIGINT.
pub async fn controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let options = args.controllers.options()?;
    let signals = Signals::install()?;
    let client = args.client.client().await?;
    let (fire, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        signals.wait().await;
        fire();
    });
    run_controllers(client, options, &shutdown).await;
    Ok(())
}

/// Runs the scheduler alone until SIGTERM/SIGINT.
pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let client = args.client.client().await?;
    let (fire, shutdown) = Shutdown::new();
    tokio::spawn(async move {
        signals.wait().await;
        fire();
    });
    run_scheduler(client, &shutdown).await;
    Ok(())
}

impl ControllerArgs {
    /// The controller manager's options; a malformed flag is an error before anything starts.
    pub fn options(&self) -> anyhow::Result<skiff_controllers::Options> {
        use skiff_controllers::{nodeipam, nodelifecycle};
        let cluster_cidr = self
            .cluster_cidr
            .parse()
            .map_err(|e| anyhow::anyhow!("--cluster-cidr {:?}: {e}", self.cluster_cidr))?;
        Ok(skiff_controllers::Options {
            nodeipam: nodeipam::Options {
                cluster_cidr,
                ..Default::default()
            },
            nodelifecycle: nodelifecycle::Options {
                node_monitor_grace_period: self.node_monitor_grace_period,
                ..Default::default()
            },
        })
    }
}

/// Every controller, until `shutdown`.
pub async fn run_controllers(client: kube::Client, options: skiff_controllers::Options, shutdown: &Shutdown) {
    skiff_controllers::ControllerManager::new(client, options)
        .run(shutdown.wait())
        .await;
}

/// The scheduler, until `shutdown`.
pub async fn run_scheduler(client: kube::Client, shutdown: &Shutdown) {
    skiff_scheduler::run(client, shutdown.wait()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_kubernetes_flags() {
        assert_eq!(parse_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}

/// `skiff agent`: a node joining a cluster. For now only hollow nodes (the kubelet's node, lease,
/// pod-worker and status code over a fake runtime); the real runtime comes with issue 5.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Run this many hollow nodes in this process (pods bound to them report Running and Ready
    /// without running anything), named `<prefix>-<i>`.
    #[arg(long)]
    hollow_nodes: Option<usize>,
    /// Name prefix of the hollow nodes.
    #[arg(long, default_value = "hollow")]
    node_name_prefix: String,
    /// CPU each hollow node offers.
    #[arg(long, default_value = "4")]
    node_cpu: String,
    /// Memory each hollow node offers.
    #[arg(long, default_value = "16Gi")]
    node_memory: String,
    /// Pods each node takes (upstream's `--max-pods`).
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// The node's name (default: the hostname). Not for hollow nodes.
    #[arg(long)]
    node_name: Option<String>,
    /// The node's InternalIP (default: the first global IPv4 address of its network namespace).
    #[arg(long)]
    node_ip: Option<String>,
    /// Where the node keeps its state: runc's, CNI's, pod bundles and container logs under `agent/`.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Run containers on plain directories instead of the image store: one directory per image
    /// (`busybox:1.36` → `busybox_1.36` or `busybox`), no image config, no pulls. Unset: images come
    /// from the store (`<data-dir>/agent/image-store`), pulled from registries or imported, and every
    /// tarball in `<data-dir>/agent/images/` is imported at start.
    #[arg(long)]
    images_dir: Option<PathBuf>,
    /// The node's network namespace (`/run/netns/<name>`) when the agent runs outside it: CNI
    /// plugins are run inside it.
    #[arg(long)]
    node_netns: Option<PathBuf>,
    /// The cluster DNS address pods with `dnsPolicy: ClusterFirst` resolve through (upstream's
    /// `--cluster-dns`); unset: they get the node's resolvers.
    #[arg(long)]
    cluster_dns: Option<String>,
    /// The cluster domain (upstream's `--cluster-domain`).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
}

/// Runs the agent until SIGTERM/SIGINT.
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let Some(count) = args.hollow_nodes else {
        return kubelet(args).await;
    };
    let signals = Signals::install()?;
    let client = args.client.client().await?;
    let options = skiff_kubelet::hollow::HollowOptions {
        count,
        prefix: args.node_name_prefix,
        cpu: args.node_cpu,
        memory: args.node_memory,
        pods: args.max_pods,
        ..Default::default()
    };
    skiff_kubelet::hollow::run_hollow_nodes(client, options, signals.wait())
        .await
        .context("cannot register the hollow nodes")?;
    Ok(())
}

/// A real node: the kubelet over runc, the pause sandbox and CNI (`skiff_kubelet::kubelet`).
async fn kubelet(args: AgentArgs) -> anyhow::Result<()> {
    use skiff_kubelet::{
        dns::ClusterDns,
        images::{airgap_dir, manager::ImageManager, store_dir},
        kubelet::{KubeletOptions, machine_capacity, run_kubelet},
        node::NodeConfig,
        runc_runtime::{RuncConfig, RuncRuntime, images_in_dir},
        runtime::ContainerRuntime as _,
    };
    let signals = Signals::install()?;
    let client = args.client.client().await?;
    let agent_dir = args.data_dir.join("agent");
    let images: skiff_kubelet::runc_runtime::RootfsResolver = match args.images_dir {
        Some(dir) => images_in_dir(dir),
        None => {
            let store = store_dir(&agent_dir);
            let manager = ImageManager::open(&store)
                .with_context(|| format!("cannot open the image store {}", store.display()))?;
            // Said at start (a warning) if containers will get copies of their layers instead.
            let _ = manager.overlay_works();
            // k3s's airgap convention: whatever tarballs are there are imported before pods start.
            let airgap = airgap_dir(&agent_dir);
            tokio::task::block_in_place(|| manager.import_dir(&airgap));
            std::sync::Arc::new(manager)
        }
    };
    let mut config = RuncConfig::new(agent_dir, images);
    config.node_netns = args.node_netns;
    config.cluster_dns = ClusterDns {
        servers: args.cluster_dns.into_iter().collect(),
        domain: args.cluster_domain,
    };
    let runtime = RuncRuntime::new(config).context("cannot start the container runtime")?;
    let name = match args.node_name {
        Some(name) => name,
        None => hostname()?,
    };
    let address = args.node_ip.unwrap_or_else(first_global_ipv4);
    let (cpu, memory) = machine_capacity();
    let node = NodeConfig {
        name,
        address,
        cpu,
        memory,
        pods: args.max_pods,
        ephemeral_storage: filesystem_size(&args.data_dir).unwrap_or_else(|| "10Gi".into()),
        runtime_version: runtime.version(),
        labels: Vec::new(),
    };
    run_kubelet(
        client,
        KubeletOptions::new(node),
        std::sync::Arc::new(runtime),
        signals.wait(),
    )
    .await
    .context("the kubelet stopped")
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

/// The node name the kubelet defaults to (upstream: the hostname, lower-cased).
fn hostname() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").context("cannot read the hostname")?;
    Ok(name.trim().to_lowercase())
}

/// The first global IPv4 address of this network namespace (`ip -4 -o addr show scope global`), or
/// 127.0.0.1 when there is none.
fn first_global_ipv4() -> String {
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
