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
        kube::Client::try_from(self.config().await?).context("cannot build the API client")
    }

    /// The client configuration these flags name (its `root_cert` is the cluster CA, which the
    /// kubelet API also trusts for client certificates).
    pub async fn config(&self) -> anyhow::Result<kube::Config> {
        let config = if let Some(path) = &self.kubeconfig {
            kubeconfig_config(path).await?
        } else if let Some(server) = &self.server {
            let mut config = kube::Config::new(
                server
                    .parse()
                    .with_context(|| format!("--server {server:?} is not a URL"))?,
            );
            let token = crate::join::parse(self.token.as_deref().context("--server needs --token")?);
            config.auth_info.token = Some(token.secret.clone().into());
            match (&self.certificate_authority, &token.ca_hash) {
                (Some(ca), _) => {
                    let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
                    config.root_cert = Some(pem_certificates(&pem)?);
                }
                // A full join token pins the CA: fetch it and check it (join.rs).
                (None, Some(hash)) => {
                    let pem = crate::join::fetch_ca(&config.cluster_url, hash).await?;
                    config.root_cert = Some(pem_certificates(pem.as_bytes())?);
                }
                (None, None) => {
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
        Ok(config)
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

/// `skiff agent`: a node joining a cluster: a real node (the kubelet over runc, the pause sandbox and
/// CNI, `crate::node`), or with `--hollow-nodes N` that many nodes that run nothing.
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    node: crate::node::NodeArgs,
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
    /// Where the node keeps its state: runc's, CNI's, pod bundles and container logs under `agent/`.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Run the node inside this network namespace (`/run/netns/<name>`), as `skiff server
    /// --node-netns` does: the process moves there before anything starts, so the kubelet API, the
    /// pods' bridge, the proxy's rules and the routes to other nodes' pods are all in it, and the API
    /// server must be reachable from it (`--kubeconfig` naming an address inside, e.g. the server
    /// node's IP on a link the namespaces share).
    #[arg(long)]
    node_netns: Option<PathBuf>,
    /// The cluster's Service range (as the server's `--service-cidr`), for the proxy.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// The cluster's pod range (as the server's `--cluster-cidr`), for the proxy.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
}

impl AgentArgs {
    /// Moves the process into `--node-netns`, if given. Call it before the async runtime starts
    /// its threads (see [`crate::node::enter_netns`]).
    pub fn enter_netns(&self) -> anyhow::Result<()> {
        match &self.node_netns {
            Some(netns) => crate::node::enter_netns(netns),
            None => Ok(()),
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT (inside `--node-netns` already: see
/// [`AgentArgs::enter_netns`]).
pub async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let signals = Signals::install()?;
    let Some(count) = args.hollow_nodes else {
        let ranges = crate::node::ClusterRanges::parse(&args.service_cidr, &args.cluster_cidr)?;
        let (fire, shutdown) = Shutdown::new();
        tokio::spawn(async move {
            signals.wait().await;
            fire();
        });
        let config = args.client.config().await?;
        return crate::node::run(config, &args.node, ranges, &args.data_dir, None, shutdown).await;
    };
    let client = args.client.client().await?;
    let options = skiff_kubelet::hollow::HollowOptions {
        count,
        prefix: args.node_name_prefix,
        cpu: args.node_cpu,
        memory: args.node_memory,
        pods: args.node.max_pods,
        ..Default::default()
    };
    skiff_kubelet::hollow::run_hollow_nodes(client, options, signals.wait())
        .await
        .context("cannot register the hollow nodes")?;
    Ok(())
}
