//! The DNS view of the cluster: Services, the ready endpoints of their EndpointSlices, and the
//! Namespaces that exist, indexed for lookups by name and by IP.
//!
//! It mirrors what CoreDNS's kubernetes plugin keeps in its informer indexes (`object.Service`,
//! `object.Endpoints`): a Service's ClusterIPs, ports and ExternalName; per EndpointSlice the ports
//! and the addresses of endpoints whose `ready` condition is unset or true (CoreDNS's
//! `endpointsliceReady`); and reverse indexes from a ClusterIP to its Service and from an endpoint IP
//! to the names it answers to. A snapshot is immutable: a changed object means a new snapshot.

use std::{collections::HashMap, net::IpAddr};

use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};

/// The label that ties an EndpointSlice to its Service.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// A port of a Service or EndpointSlice, as DNS matches it (`_<name>._<protocol>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// The port's name, empty when unnamed.
    pub name: String,
    /// `TCP`, `UDP` or `SCTP`.
    pub protocol: String,
    /// The port number; `None` for CoreDNS's "no ports" sentinel (an EndpointSlice without ports
    /// still gives A records, but no SRV).
    pub port: Option<u16>,
}

impl Port {
    /// CoreDNS's `matchPortAndProtocol`: an empty request part matches anything; names compare
    /// case-insensitively.
    pub fn matches(&self, port: Option<&str>, protocol: Option<&str>) -> bool {
        port.is_none_or(|p| p.eq_ignore_ascii_case(&self.name))
            && protocol.is_none_or(|p| p.eq_ignore_ascii_case(&self.protocol))
    }
}

/// What a Service answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceKind {
    /// A Service with ClusterIPs (ClusterIP, NodePort, LoadBalancer): answers its ClusterIPs.
    ClusterIp {
        /// Every ClusterIP (`spec.clusterIPs`, or `spec.clusterIP`).
        ips: Vec<IpAddr>,
        /// The Service's ports.
        ports: Vec<Port>,
    },
    /// `clusterIP: None`: answers the ready endpoints' IPs.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    ExternalName(String),
}

/// One ready endpoint address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The IP.
    pub ip: IpAddr,
    /// The label it answers to under its Service: `endpoint.hostname`, else its IP with dashes
    /// (CoreDNS's `endpointHostname`), lowercased.
    pub label: String,
}

/// The ready part of one EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSet {
    /// The slice's ports (one sentinel without a number when it has none).
    pub ports: Vec<Port>,
    /// Its ready addresses.
    pub addresses: Vec<Address>,
}

/// A Service and its ready endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    /// What it answers with.
    pub kind: ServiceKind,
    /// One set per EndpointSlice labelled with this Service's name.
    pub endpoints: Vec<EndpointSet>,
}

/// What lives in one namespace.
#[derive(Debug, Default, Clone)]
pub struct NamespaceEntry {
    /// Whether the Namespace object exists (CoreDNS answers NXDOMAIN inside one that does not).
    pub exists: bool,
    /// Services by name.
    pub services: HashMap<String, ServiceEntry>,
}

/// An immutable view of the cluster for DNS.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Namespaces by name.
    pub namespaces: HashMap<String, NamespaceEntry>,
    /// ClusterIP → `<svc>.<ns>` (the first Service found wins, as in CoreDNS's `serviceRecordForIP`).
    pub service_by_ip: HashMap<IpAddr, String>,
    /// Endpoint IP → every `<label>.<svc>.<ns>` it is a ready endpoint of.
    pub endpoints_by_ip: HashMap<IpAddr, Vec<String>>,
    /// The SOA serial: when the snapshot was built (Unix seconds), as CoreDNS's `Modified` time.
    pub serial: u32,
    /// Whether the watches behind it have listed everything once; until then, names that are not
    /// found are SERVFAIL rather than NXDOMAIN (CoreDNS's `HasSynced` check).
    pub synced: bool,
}

impl Snapshot {
    /// Builds a snapshot from the objects (the namespaces, services and slices the watches hold).
    pub fn build<'a>(
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut snap = Self::default();
        for ns in namespaces {
            if let Some(name) = ns.metadata.name.as_deref() {
                snap.namespaces.entry(name.to_owned()).or_default().exists = true;
            }
        }
        for svc in services {
            let (Some(name), Some(ns)) = (svc.metadata.name.as_deref(), svc.metadata.namespace.as_deref())
            else {
                continue;
            };
            let Some(kind) = service_kind(svc) else {
                continue;
            };
            if let ServiceKind::ClusterIp { ips, .. } = &kind {
                for ip in ips {
                    snap.service_by_ip
                        .entry(*ip)
                        .or_insert_with(|| format!("{name}.{ns}"));
                }
            }
            let entry = ServiceEntry {
                kind,
                endpoints: Vec::new(),
            };
            snap.namespaces
                .entry(ns.to_owned())
                .or_default()
                .services
                .insert(name.to_owned(), entry);
        }
        for slice in slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(svc_name) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME))
            else {
                continue;
            };
            let set = endpoint_set(slice);
            for addr in &set.addresses {
                snap.endpoints_by_ip
                    .entry(addr.ip)
                    .or_default()
                    .push(format!("{}.{svc_name}.{ns}", addr.label));
            }
            // Like CoreDNS, endpoints of a Service that does not exist are indexed for PTR but
            // answer no forward name.
            if let Some(entry) = snap
                .namespaces
                .get_mut(ns)
                .and_then(|n| n.services.get_mut(svc_name.as_str()))
            {
                entry.endpoints.push(set);
            }
        }
        snap.serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or_default();
        snap
    }

    /// The Service `name` in namespace `ns`, if the namespace exists and holds it.
    pub fn service(&self, ns: &str, name: &str) -> Option<&ServiceEntry> {
        self.namespaces
            .get(ns)
            .filter(|n| n.exists)
            .and_then(|n| n.services.get(name))
    }

    /// Whether the Namespace `ns` exists.
    pub fn namespace_exists(&self, ns: &str) -> bool {
        self.namespaces.get(ns).is_some_and(|n| n.exists)
    }
}

/// What a Service answers with, or `None` when it answers nothing (no ClusterIP yet).
fn service_kind(svc: &Service) -> Option<ServiceKind> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return spec
            .external_name
            .as_ref()
            .filter(|n| !n.is_empty())
            .map(|n| ServiceKind::ExternalName(n.trim_end_matches('.').to_ascii_lowercase()));
    }
    if spec.cluster_ip.as_deref() == Some("None") {
        return Some(ServiceKind::Headless);
    }
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    if ips.is_empty() {
        ips.extend(
            spec.cluster_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        );
    }
    if ips.is_empty() {
        return None;
    }
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: p.name.clone().unwrap_or_default(),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            port: u16::try_from(p.port).ok(),
        })
        .collect();
    Some(ServiceKind::ClusterIp { ips, ports })
}

/// The ready addresses and the ports of one slice (CoreDNS's `endpointSliceToEndpoints`).
fn endpoint_set(slice: &EndpointSlice) -> EndpointSet {
    let mut ports: Vec<Port> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: p.name.clone().unwrap_or_default(),
            protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
            port: p.port.and_then(|n| u16::try_from(n).ok()),
        })
        .collect();
    if ports.is_empty() {
        ports.push(Port {
            name: String::new(),
            protocol: String::new(),
            port: None,
        });
    }
    let mut addresses = Vec::new();
    if slice.address_type == "FQDN" {
        return EndpointSet { ports, addresses };
    }
    for ep in slice.endpoints.iter().flatten() {
        let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
        if !ready {
            continue;
        }
        for a in &ep.addresses {
            let Ok(ip) = a.parse::<IpAddr>() else {
                continue;
            };
            let label = match ep.hostname.as_deref() {
                Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                _ => dashed_ip(&ip),
            };
            addresses.push(Address { ip, label });
        }
    }
    EndpointSet { ports, addresses }
}

/// An IP written as one DNS label: dots (IPv4) or colons (IPv6) become dashes, and an IPv6 label
/// that would end in a dash gets a `0` (CoreDNS's `endpointHostname`).
pub fn dashed_ip(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace(':', "-");
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
    }
}
