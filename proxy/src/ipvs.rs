//! ipvs mode: the snapshot rendered as IPVS virtual servers, and the check that refuses the mode where
//! the kernel has no ip_vs.
//!
//! Mirrors upstream pkg/proxy/ipvs/proxier.go: a virtual server per ClusterIP:port and per node
//! address:NodePort, scheduler `rr`, real servers = the endpoints the path uses (masquerading
//! forwarding, `-m`), ClientIP affinity as persistence (`-p <timeout>`), and every ClusterIP bound to the
//! dummy interface `kube-ipvs0` so the node accepts the traffic. The model prints as
//! `ipvsadm-restore` input (plus the addresses to bind) — what the golden files hold. This machine
//! kind has no ip_vs, so only the rendering is exercised here; [`check_kernel`] makes `--proxy-mode
//! ipvs` fail at start with a clear message instead of programming nothing.

use std::{fmt::Write as _, net::Ipv4Addr, path::Path};

use crate::{RenderConfig, snapshot::Snapshot};

/// The dummy interface holding the ClusterIPs.
pub const DUMMY_INTERFACE: &str = "kube-ipvs0";

/// One virtual server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: &'static str,
    /// The address.
    pub addr: Ipv4Addr,
    /// The port.
    pub port: u16,
    /// The scheduler (`rr`).
    pub scheduler: &'static str,
    /// Persistence timeout (ClientIP affinity).
    pub persistence: Option<u32>,
    /// Real servers, `ip:port`.
    pub real_servers: Vec<(Ipv4Addr, u16)>,
    /// The service port it serves (for the reader).
    pub service: String,
}

/// The rendered model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Addresses bound to `kube-ipvs0`.
    pub bound: Vec<Ipv4Addr>,
    /// Virtual servers, sorted.
    pub servers: Vec<VirtualServer>,
}

impl Model {
    /// `ipvsadm-restore` input, preceded by the bound addresses as comments.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for ip in &self.bound {
            let _ = writeln!(out, "# ip addr add {ip}/32 dev {DUMMY_INTERFACE}");
        }
        for vs in &self.servers {
            let flag = match vs.protocol {
                "udp" => "-u",
                "sctp" => "--sctp-service",
                _ => "-t",
            };
            let persistence = vs.persistence.map(|p| format!(" -p {p}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "-A {flag} {}:{} -s {}{persistence} # {}",
                vs.addr, vs.port, vs.scheduler, vs.service
            );
            for (ip, port) in &vs.real_servers {
                let _ = writeln!(out, "-a {flag} {}:{} -r {ip}:{port} -m -w 1", vs.addr, vs.port);
            }
        }
        out
    }

    /// Virtual plus real servers.
    pub fn rule_count(&self) -> usize {
        self.servers.iter().map(|v| 1 + v.real_servers.len()).sum()
    }
}

/// Renders the virtual servers. Pure.
pub fn render(snapshot: &Snapshot, config: &RenderConfig) -> Model {
    let mut model = Model::default();
    for svc in snapshot.services.values() {
        let cat = snapshot.categorize(svc, &config.node_name);
        let protocol = svc.name.protocol.lower();
        let real =
            |eps: &[&crate::snapshot::Endpoint]| eps.iter().map(|e| (e.ip, e.port)).collect::<Vec<_>>();
        model.bound.push(svc.cluster_ip);
        model.servers.push(VirtualServer {
            protocol,
            addr: svc.cluster_ip,
            port: svc.port,
            scheduler: "rr",
            persistence: svc.affinity_timeout,
            real_servers: real(&cat.cluster),
            service: svc.name.to_string(),
        });
        if let Some(np) = svc.node_port {
            for ip in &config.node_ips {
                model.servers.push(VirtualServer {
                    protocol,
                    addr: *ip,
                    port: np,
                    scheduler: "rr",
                    persistence: svc.affinity_timeout,
                    real_servers: real(&cat.external),
                    service: format!("{} node port", svc.name),
                });
            }
        }
    }
    model.bound.sort_unstable();
    model.bound.dedup();
    model
        .servers
        .sort_by(|a, b| (a.addr, a.port, a.protocol).cmp(&(b.addr, b.port, b.protocol)));
    model
}

/// The kernel has no IPVS.
#[derive(Debug, thiserror::Error)]
#[error(
    "--proxy-mode ipvs needs the kernel's ip_vs module, and this kernel has none ({0} is missing, \
     and no ip_vs module is listed in /proc/modules or /sys/module); use --proxy-mode iptables or nftables"
)]
pub struct NoIpvs(pub String);

/// Refuses the mode unless the kernel has IPVS (`/proc/net/ip_vs` exists, as upstream's
/// `CanUseIPVSProxier` checks for the module). `proc_net` is the `/proc/net` of the node's namespace.
pub fn check_kernel(proc_net: &Path) -> Result<(), NoIpvs> {
    let table = proc_net.join("ip_vs");
    if table.exists() || Path::new("/sys/module/ip_vs").exists() {
        return Ok(());
    }
    Err(NoIpvs(table.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_ip_vs_is_refused_clearly() {
        let dir = std::env::temp_dir().join(format!("skiff-ipvs-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        if !Path::new("/sys/module/ip_vs").exists() {
            let err = check_kernel(&dir).expect_err("refused").to_string();
            assert!(err.contains("ip_vs"), "{err}");
        }
        std::fs::write(dir.join("ip_vs"), "").expect("write");
        assert!(check_kernel(&dir).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
