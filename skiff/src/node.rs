//! What makes a machine a node: the kubelet over the real runtime (pause sandboxes, runc, CNI). One
//! piece of code serves `skiff agent` (a node joining a cluster) and the agent embedded in
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

/// Runs the kubelet of a real node until `shutdown`. `cni_netns` is the namespace CNI plugins run in
/// when the process itself is not inside the node's namespace (`skiff agent --node-netns`).
pub async fn run(
    client: kube::Client,
    args: &NodeArgs,
    data_dir: &std::path::Path,
    cni_netns: Option<PathBuf>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use skiff_kubelet::{
        dns::ClusterDns,
        kubelet::{KubeletOptions, machine_capacity, run_kubelet},
        node::NodeConfig,
        runc_runtime::{RootfsResolver, RuncConfig, RuncRuntime, images_in_dir},
        runtime::ContainerRuntime as _,
    };
    let agent_dir = data_dir.join("agent");
    let images: RootfsResolver = match &args.images_dir {
        Some(dir) => images_in_dir(dir.clone()),
        None => {
            use skiff_kubelet::images::{airgap_dir, manager::ImageManager, store_dir};
            let store = store_dir(&agent_dir);
            let manager = ImageManager::open(&store)
                .with_context(|| format!("cannot open the image store {}", store.display()))?;
            // Said at start (a warning) if containers will get copies of their layers instead.
            let _ = manager.overlay_works();
            // k3s's airgap convention: whatever tarballs are there are imported before pods start.
            tokio::task::block_in_place(|| manager.import_dir(&airgap_dir(&agent_dir)));
            Arc::new(manager)
        }
    };
    let mut config = RuncConfig::new(agent_dir, images);
    config.node_netns = cni_netns;
    config.cluster_dns = ClusterDns {
        servers: vec![args.cluster_dns.clone()],
        domain: args.cluster_domain.clone(),
    };
    let runtime = RuncRuntime::new(config).context("cannot start the container runtime")?;
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
    run_kubelet(client, KubeletOptions::new(node), Arc::new(runtime), shutdown)
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
