//! The service proxy of skiff, the counterpart of kube-proxy (cluster DNS lives beside it in `dns`).
//!
//! The pipeline is upstream's: reflectors over Services and EndpointSlices feed a [`snapshot::Snapshot`];
//! a pure `render()` per mode turns it into the whole ruleset ([`iptables`], [`nftables`], [`ipvs`]); a
//! [`sink::RuleSink`] applies it — atomically, only when it changed, as a partial update of what changed
//! between full syncs. [`proxier`] runs that loop and keeps the [`metrics`].

pub mod bench;
pub mod dns;
pub mod iptables;
pub mod ipvs;
pub mod metrics;
pub mod nftables;
pub mod proxier;
pub mod sink;
pub mod snapshot;

use std::{fmt, net::Ipv4Addr, str::FromStr};

/// An IPv4 CIDR such as `10.96.0.0/12`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits cleared).
    pub addr: Ipv4Addr,
    /// The prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        };
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{s:?} is not an IPv4 CIDR"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?} has a bad prefix length"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        Ok(Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The proxy mode (`--proxy-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// iptables-restore, kube-proxy's classic chain layout (the default).
    #[default]
    Iptables,
    /// One nft table of maps and verdict maps.
    Nftables,
    /// IPVS virtual servers (refused where the kernel has no ip_vs).
    Ipvs,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "iptables" => Ok(Self::Iptables),
            "nftables" => Ok(Self::Nftables),
            "ipvs" => Ok(Self::Ipvs),
            _ => Err(format!("--proxy-mode {s:?}: expected iptables, nftables or ipvs")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Iptables => "iptables",
            Self::Nftables => "nftables",
            Self::Ipvs => "ipvs",
        })
    }
}

/// What every mode's `render()` needs besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderConfig {
    /// This node's name (decides which endpoints are local).
    pub node_name: String,
    /// The pod CIDR of the cluster: traffic to a ClusterIP from outside it is masqueraded. Unset = no
    /// such masquerading (upstream without `--cluster-cidr`).
    pub cluster_cidr: Option<Cidr>,
    /// The service CIDR: traffic to it that no rule translated is rejected, never forwarded.
    pub service_cidr: Cidr,
    /// The node's addresses (ipvs binds NodePorts to each; the other modes match any local address).
    pub node_ips: Vec<Ipv4Addr>,
}

/// The bit of the packet mark that asks for masquerading (upstream's 0x4000, `--masquerade-bit 14`).
pub const MASQ_MARK: u32 = 0x4000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "10.96.3.4/12".parse().expect("cidr");
        assert_eq!(c.to_string(), "10.96.0.0/12");
        assert!(c.contains("10.111.255.1".parse().expect("ip")));
        assert!(!c.contains("10.112.0.1".parse().expect("ip")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!("nftables".parse::<Mode>(), Ok(Mode::Nftables));
    }
}
