//! The proxy benchmark behind `skiff bench proxy` (also `cargo run --release -p skiff-proxy --example
//! bench`): what programming the service proxy's rules costs at scale, per mode.
//!
//! For each mode and size: a scratch network namespace (created and deleted here, the host is never
//! touched), a synthetic snapshot of N services × E endpoints (every tenth service a NodePort), then
//! - **full sync**: render (the pure function) and apply (iptables-restore / nft -f, the tool's run)
//!   timed separately, into the empty namespace;
//! - **endpoint change → applied**: one endpoint of one service replaced, then the partial sync that
//!   programs it (render + diff + apply), repeated; p50 and p99. In the running proxy a change waits
//!   for this plus at most `--min-sync-period` (1 s) since the previous sync, plus watch delivery.
//!
//! ipvs mode is rendered only (this kernel has no ip_vs). Figures, no pass/fail; the targets
//! are printed beside them.

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    Mode, RenderConfig, ipvs,
    proxier::Programmer,
    sink::SystemSink,
    snapshot::{Endpoint, Protocol, ServicePort, ServicePortName, Snapshot},
};

/// A benchmark error, as text.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// What to measure.
#[derive(Debug, Clone)]
pub struct Options {
    /// Service counts.
    pub services: Vec<usize>,
    /// Endpoints per service.
    pub endpoints: usize,
    /// Modes.
    pub modes: Vec<Mode>,
    /// Endpoint changes timed per cell.
    pub changes: usize,
    /// iptables cells above this many services are skipped (iptables-nft's restore grows faster than
    /// linearly: 5,000 services already take minutes here).
    pub iptables_max_services: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            services: vec![1000, 5000, 10_000],
            endpoints: 10,
            modes: vec![Mode::Nftables, Mode::Iptables, Mode::Ipvs],
            changes: 20,
            iptables_max_services: 5000,
        }
    }
}

/// CPU seconds (user + system) of this process's waited-for children so far (/proc/self/stat
/// cutime + cstime): what the rule tools themselves burned, apart from this machine's load.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" that ends the command name; cutime and cstime are fields 16 and 17.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [13, 14]
        .iter()
        .filter_map(|i| fields.get(*i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// A scratch network namespace, deleted on drop.
pub struct Scratch(String);

impl Scratch {
    /// A new namespace with `lo` up (root needed).
    pub fn create() -> Result<Self, Error> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("skiff-bench-proxy-{}-{n}", std::process::id());
        let status = Command::new("ip").args(["netns", "add", &name]).status()?;
        if !status.success() {
            return Err(format!("ip netns add {name} failed (root needed)").into());
        }
        let scratch = Self(name);
        let _ = Command::new("ip")
            .args(["-n", &scratch.0, "link", "set", "lo", "up"])
            .status();
        Ok(scratch)
    }

    /// Its path, for `nsenter --net=`.
    pub fn path(&self) -> std::path::PathBuf {
        format!("/run/netns/{}", self.0).into()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(n: usize, base: u32) -> Ipv4Addr {
    Ipv4Addr::from(base + u32::try_from(n).unwrap_or(0))
}

/// N services with E endpoints each, on other nodes.
pub fn snapshot(services: usize, endpoints: usize) -> Snapshot {
    let mut s = Snapshot::default();
    for i in 0..services {
        let name = ServicePortName {
            namespace: "bench".into(),
            name: format!("svc-{i}"),
            port: "http".into(),
            protocol: Protocol::Tcp,
        };
        s.services.insert(
            name.clone(),
            ServicePort {
                name: name.clone(),
                cluster_ip: ip(i, u32::from(Ipv4Addr::new(10, 96, 0, 10))),
                port: 80,
                node_port: (i % 10 == 0).then(|| 30000 + u16::try_from(i / 10).unwrap_or(0)),
                affinity_timeout: None,
                internal_local: false,
                external_local: false,
            },
        );
        let eps = (0..endpoints).map(|e| endpoint(i * endpoints + e)).collect();
        s.endpoints.insert(name, eps);
    }
    s
}

fn endpoint(n: usize) -> Endpoint {
    Endpoint {
        ip: ip(n, u32::from(Ipv4Addr::new(10, 128, 0, 2))),
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        node_name: Some(format!("node-{}", n % 100)),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs every cell and prints the figures (blocking: it runs the tools).
pub fn run(args: &Options) -> Result<(), Error> {
    println!(
        "skiff bench proxy: N services x {} endpoints (every tenth a NodePort), each cell in a fresh netns",
        args.endpoints
    );
    println!(
        "targets: nftables full sync of 10,000 services <= 2 s; endpoint change -> applied p99 <= 1.5 s incl. the 1 s min sync period\n"
    );
    println!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<9} {:>8} {:>9} {:>9} {:>10} {:>10} {:>13} {:>10} | {:>11} {:>11} {:>15}",
        "mode",
        "services",
        "rules",
        "input MB",
        "render ms",
        "apply ms",
        "apply cpu ms",
        "full ms",
        "change p50",
        "change p99",
        "change apply p50"
    );
    let config = RenderConfig {
        node_name: "bench-node".into(),
        cluster_cidr: Some("10.128.0.0/9".parse()?),
        service_cidr: "10.96.0.0/12".parse()?,
        node_ips: vec![Ipv4Addr::new(192, 168, 0, 1)],
    };
    for mode in &args.modes {
        for &n in &args.services {
            let mut snap = snapshot(n, args.endpoints);
            if *mode == Mode::Ipvs {
                let start = Instant::now();
                let model = ipvs::render(&snap, &config);
                let render = start.elapsed();
                println!(
                    "{:<9} {:>8} {:>9} {:>9} {:>10.1} {:>10} {:>13} {:>10} | {:>11} {:>11} {:>15}",
                    "ipvs",
                    n,
                    model.rule_count(),
                    "-",
                    ms(render),
                    "n/a",
                    "n/a",
                    "n/a",
                    "-",
                    "-",
                    "-"
                );
                continue;
            }
            if *mode == Mode::Iptables && n > args.iptables_max_services {
                println!("{:<9} {:>8}  skipped (> --iptables-max-services)", "iptables", n);
                continue;
            }
            let scratch = Scratch::create()?;
            let sink = Arc::new(SystemSink {
                netns: Some(scratch.path()),
                service_cidr: config.service_cidr,
            });
            let mut programmer = Programmer::new(*mode, config.clone(), sink);
            let (start, cpu) = (Instant::now(), children_cpu());
            let full = programmer
                .sync(&snap, true)
                .map_err(|e| format!("{mode} full sync of {n}: {e}"))?;
            let full_total = start.elapsed();
            let full_cpu = children_cpu() - cpu;
            // Endpoint changes: replace the first endpoint of service i with a new address.
            let (mut times, mut applies) = (Vec::new(), Vec::new());
            for c in 0..args.changes {
                let key = snap
                    .services
                    .keys()
                    .nth((c * 7919) % n)
                    .cloned()
                    .ok_or("no service")?;
                if let Some(eps) = snap.endpoints.get_mut(&key) {
                    eps[0] = endpoint(n * args.endpoints + c);
                }
                let start = Instant::now();
                let report = programmer
                    .sync(&snap, false)
                    .map_err(|e| format!("{mode} partial sync: {e}"))?;
                times.push(start.elapsed());
                applies.push(report.apply);
            }
            times.sort();
            applies.sort();
            println!(
                "{:<9} {:>8} {:>9} {:>9.1} {:>10.1} {:>10.1} {:>13.0} {:>10.1} | {:>11.1} {:>11.1} {:>15.1}",
                mode.to_string(),
                n,
                full.rules,
                full.input_bytes as f64 / 1e6,
                ms(full.render),
                ms(full.apply),
                full_cpu * 1000.0,
                ms(full_total),
                ms(percentile(&times, 0.5)),
                ms(percentile(&times, 0.99)),
                ms(percentile(&applies, 0.5)),
            );
            drop(scratch);
        }
    }
    println!("\napply cpu = CPU time of the tool (iptables-restore / nft), apart from this machine's load;");
    println!(
        "change = one endpoint replaced, then the partial sync (render + diff + apply) that programs it, in ms;"
    );
    println!("in the running proxy add watch delivery and up to --min-sync-period since the previous sync.");
    Ok(())
}
