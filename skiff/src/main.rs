//! The `skiff` binary: `skiff server` runs the control plane, `skiff agent` a node, `skiff apply|get|…`
//! are the client verbs (kubectl's, see `ctl/`); `skiff bench` prints figures.
//! Errors leave as one line naming the problem, with a non-zero exit status.

mod bench;
mod components;
mod ctl;
mod dns;
mod images;
mod join;
mod node;
mod proxy;
mod server;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the API server's request path allocates many small, short-lived
/// values (JSON trees, field sets), and under glibc `malloc`/`free` were a fifth of its CPU (profiled
/// with `perf record` on `skiff bench api`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long an idle thread of the blocking pool lives (tokio's default: 10 s). A node starting 30 pods
/// at once runs ~50 of them (runc, CNI, file work); each holds heap pages of its own while it lives,
/// and only once it ends are they free for [`nudge_purges`] to return.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(1);

/// mimalloc (v3) gives freed memory back to the OS only when a later page free finds the purge delay
/// (1 s) over, and after a burst a quiet process frees no page for a long time: a node that started
/// 30 pods kept ~10 MB it no longer used, for good (`bench node`, `MIMALLOC_PURGE_DELAY=0` showed
/// it). A block above mimalloc's 512 KiB large-object limit is a page of its own, so allocating and
/// freeing one frees a page, which purges whatever is due; it is never written, so it costs address
/// space only, for a moment.
async fn nudge_purges() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        drop(std::hint::black_box(Vec::<u8>::with_capacity(1 << 20)));
    }
}

/// skiff: a Kubernetes-style control plane in miniature.
#[derive(Parser, Debug)]
#[command(name = "skiff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the control plane: API server over the embedded SQLite store (or etcd).
    Server(server::ServerArgs),
    /// Run the API server alone (`skiff server` without controllers, scheduler or agent).
    Apiserver(server::ServerArgs),
    /// Join a cluster as a node (or, with `--hollow-nodes N`, as that many nodes without containers).
    Agent(components::AgentArgs),
    /// Run the controller manager alone against an API server.
    ControllerManager(components::ControllerManagerArgs),
    /// Run the scheduler alone against an API server.
    Scheduler(components::SchedulerArgs),
    /// Run the service proxy alone (kube-proxy): Services and EndpointSlices to iptables/nft rules.
    Proxy(proxy::ProxyArgs),
    /// Run the cluster DNS alone against an API server (what CoreDNS is in Kubernetes).
    Dns(dns::DnsArgs),
    /// The node's image store: import tarballs, list images.
    #[command(subcommand)]
    Images(images::ImagesCommand),
    /// Benchmarks that print figures (side by side with what they sit on).
    #[command(subcommand)]
    Bench(BenchCommand),
    #[command(flatten)]
    Ctl(ctl::CtlCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Store writes, reads and watch latency: SQLite and the etcd backend beside raw etcd.
    Store(bench::StoreBenchArgs),
    /// API server creates, gets, lists and watch fan-out beside the raw Store; `skiff server` start-up and memory.
    Api(bench::api::ApiBenchArgs),
    /// The control plane at scale with hollow nodes: scheduler throughput, a big Deployment's rollout, pod replacement.
    Cluster(bench::cluster::ClusterBenchArgs),
    /// The service proxy: full sync and endpoint-change programming at 1,000-10,000 services, per mode.
    Proxy(bench::proxy::ProxyBenchArgs),
    /// Cluster DNS queries per second and latency on loopback.
    Dns(bench::dns::DnsBenchArgs),
    /// A real single-node cluster (root): start to Node Ready, memory, the demo's apply, pod startup latency.
    Node(bench::node::NodeBenchArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    // A server whose node side lives in a network namespace moves there before the runtime starts
    // its threads (they inherit the namespace), keeping one listener in the starting namespace.
    let host_listener = match &cli.command {
        Command::Server(args) | Command::Apiserver(args) => server::listen_then_enter_netns(args),
        Command::Agent(args) => args.enter_netns().map(|()| None),
        _ => Ok(None),
    };
    let result = host_listener.and_then(|host_listener| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_keep_alive(BLOCKING_KEEP_ALIVE)
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.spawn(nudge_purges());
                rt.block_on(async {
                    match cli.command {
                        Command::Server(args) => server::run(args, host_listener).await,
                        Command::Apiserver(mut args) => {
                            args.disable_controller_manager = true;
                            args.disable_scheduler = true;
                            args.disable_agent = true;
                            server::run(args, host_listener).await
                        }
                        Command::Agent(args) => components::agent(args).await,
                        Command::ControllerManager(args) => components::controller_manager(args).await,
                        Command::Scheduler(args) => components::scheduler(args).await,
                        Command::Proxy(args) => proxy::run(args).await,
                        Command::Dns(args) => dns::run(args).await,
                        Command::Images(command) => images::run(command),
                        Command::Bench(BenchCommand::Store(args)) => bench::store(args).await,
                        Command::Bench(BenchCommand::Api(args)) => bench::api::run(args).await,
                        Command::Bench(BenchCommand::Cluster(args)) => bench::cluster::run(args).await,
                        Command::Bench(BenchCommand::Proxy(args)) => bench::proxy::run(args).await,
                        Command::Bench(BenchCommand::Dns(args)) => bench::dns::run(args).await,
                        Command::Bench(BenchCommand::Node(args)) => bench::node::run(args).await,
                        Command::Ctl(command) => std::process::exit(ctl::main(command).await),
                    }
                })
            })
    });
    if let Err(e) = result {
        // `{:#}` prints the whole context chain on one line: "cannot listen on …: Address in use".
        eprintln!("skiff: {e:#}");
        std::process::exit(1);
    }
}
