//! The proxy's view of the cluster: every service port and its endpoints, as plain values.
//!
//! Mirrors upstream pkg/proxy's `ServicePortMap` / `EndpointsMap` (servicechangetracker.go,
//! endpointschangetracker.go) and the endpoint choice of pkg/proxy/topology.go
//! (`CategorizeEndpoints`). The conversion functions are pure: the reflectors in `proxier` feed them the
//! objects they hold, and everything downstream (`render()` of each mode) sees only this model. IPv4
//! only, like the rest of skiff's network.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::Ipv4Addr,
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};

/// The label tying an EndpointSlice to its Service (discovery.k8s.io).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Upstream's default ClientIP affinity timeout (3 hours).
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The L4 protocol of a service port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The protocol of a Kubernetes `protocol` field (TCP when unset).
    pub fn parse(text: Option<&str>) -> Option<Self> {
        match text.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// Lower case, as iptables and nft spell it.
    pub fn lower(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }

    /// Upper case, as the Kubernetes API spells it.
    pub fn upper(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        }
    }
}

/// `namespace/name:port` plus protocol: upstream's `ServicePortName`, the key of everything.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port's name ("" for an unnamed single port).
    pub port: String,
    /// The port's protocol.
    pub protocol: Protocol,
}

impl ServicePortName {
    /// `namespace/name` of the Service.
    pub fn service_key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for ServicePortName {
    /// `ns/name:port`, upstream's String() (the `:port` only when the port is named).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port.is_empty() {
            write!(f, "{}/{}", self.namespace, self.name)
        } else {
            write!(f, "{}/{}:{}", self.namespace, self.name, self.port)
        }
    }
}

/// One port of a Service with a ClusterIP: what the rules of every mode are made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// Its key.
    pub name: ServicePortName,
    /// The virtual IP.
    pub cluster_ip: Ipv4Addr,
    /// The service port.
    pub port: u16,
    /// The node port (NodePort and LoadBalancer services).
    pub node_port: Option<u16>,
    /// ClientIP session affinity: its timeout in seconds; None = no affinity.
    pub affinity_timeout: Option<u32>,
    /// `internalTrafficPolicy: Local`: cluster traffic only to this node's endpoints.
    pub internal_local: bool,
    /// `externalTrafficPolicy: Local`: node port traffic only to this node's endpoints, unmasqueraded.
    pub external_local: bool,
}

/// One endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// The pod's IP.
    pub ip: Ipv4Addr,
    /// The target port.
    pub port: u16,
    /// Ready (`conditions.ready`, true when unset).
    pub ready: bool,
    /// Serving (`conditions.serving`, = ready when unset).
    pub serving: bool,
    /// Terminating (`conditions.terminating`, false when unset).
    pub terminating: bool,
    /// The node the endpoint runs on.
    pub node_name: Option<String>,
}

impl Endpoint {
    /// `ip:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// Everything the proxy knows: service ports and their endpoints, sorted (so renders are stable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Service ports by key.
    pub services: BTreeMap<ServicePortName, ServicePort>,
    /// Endpoints by service port (sorted, deduplicated across slices).
    pub endpoints: BTreeMap<ServicePortName, Vec<Endpoint>>,
}

/// Which endpoints each traffic path of a service port uses (upstream `CategorizeEndpoints`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Categorized<'a> {
    /// Usable endpoints anywhere (the `KUBE-SVC-*` set).
    pub all: Vec<&'a Endpoint>,
    /// Usable endpoints on this node (the `KUBE-SVL-*` set).
    pub local: Vec<&'a Endpoint>,
    /// The endpoints traffic to the ClusterIP goes to (local ones for internalTrafficPolicy Local).
    pub cluster: Vec<&'a Endpoint>,
    /// The endpoints node port traffic goes to (local ones for externalTrafficPolicy Local).
    pub external: Vec<&'a Endpoint>,
    /// Whether the service has any usable endpoint anywhere (else its traffic is rejected).
    pub any: bool,
}

/// Ready endpoints, or when there is none, the serving terminating ones (graceful termination:
/// upstream's ProxyTerminatingEndpoints).
fn usable<'a>(eps: impl Iterator<Item = &'a Endpoint> + Clone) -> Vec<&'a Endpoint> {
    let ready: Vec<_> = eps.clone().filter(|e| e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.filter(|e| e.serving && e.terminating).collect()
}

impl Snapshot {
    /// The endpoints of `svc` each path uses, seen from node `node_name`.
    pub fn categorize<'a>(&'a self, svc: &ServicePort, node_name: &str) -> Categorized<'a> {
        let all = self
            .endpoints
            .get(&svc.name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let everywhere = usable(all.iter());
        let local = usable(all.iter().filter(|e| e.node_name.as_deref() == Some(node_name)));
        Categorized {
            cluster: if svc.internal_local {
                local.clone()
            } else {
                everywhere.clone()
            },
            external: if svc.external_local {
                local.clone()
            } else {
                everywhere.clone()
            },
            any: !everywhere.is_empty(),
            all: everywhere,
            local,
        }
    }

    /// The number of endpoints, over all service ports.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.values().map(Vec::len).sum()
    }

    /// Builds the snapshot from the objects the reflectors hold.
    pub fn build<'a>(
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) -> Self {
        let mut snapshot = Self::default();
        for svc in services {
            for port in service_ports(svc) {
                snapshot.services.insert(port.name.clone(), port);
            }
        }
        let mut endpoints: BTreeMap<ServicePortName, BTreeSet<Endpoint>> = BTreeMap::new();
        for slice in slices {
            for (name, ep) in slice_endpoints(slice) {
                if snapshot.services.contains_key(&name) {
                    endpoints.entry(name).or_default().insert(ep);
                }
            }
        }
        snapshot.endpoints = endpoints
            .into_iter()
            .map(|(name, eps)| (name, dedup_by_addr(eps)))
            .collect();
        snapshot
    }
}

/// Services by namespace, then name: the ones a partial snapshot update rebuilds.
pub type ServiceKeys = BTreeMap<String, BTreeSet<String>>;

fn listed(keys: &ServiceKeys, namespace: &str, name: &str) -> bool {
    keys.get(namespace).is_some_and(|names| names.contains(name))
}

impl Snapshot {
    /// Rebuilds only the entries of the Services in `keys` from the current objects (all of them
    /// passed; the others are skipped without being converted): afterwards `self` equals
    /// [`Snapshot::build`] of the same objects when every Service whose Service or EndpointSlices
    /// changed since `self` was built is in `keys`. Upstream's change trackers do the same.
    pub fn refresh<'a>(
        &mut self,
        keys: &ServiceKeys,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
    ) {
        if keys.is_empty() {
            return;
        }
        self.services.retain(|k, _| !listed(keys, &k.namespace, &k.name));
        self.endpoints.retain(|k, _| !listed(keys, &k.namespace, &k.name));
        for svc in services {
            let (Some(namespace), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            if listed(keys, namespace, name) {
                for port in service_ports(svc) {
                    self.services.insert(port.name.clone(), port);
                }
            }
        }
        let mut endpoints: BTreeMap<ServicePortName, BTreeSet<Endpoint>> = BTreeMap::new();
        for slice in slices {
            let service = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_SERVICE_NAME));
            let (Some(namespace), Some(service)) = (&slice.metadata.namespace, service) else {
                continue;
            };
            if !listed(keys, namespace, service) {
                continue;
            }
            for (name, ep) in slice_endpoints(slice) {
                if self.services.contains_key(&name) {
                    endpoints.entry(name).or_default().insert(ep);
                }
            }
        }
        self.endpoints.extend(
            endpoints
                .into_iter()
                .map(|(name, eps)| (name, dedup_by_addr(eps))),
        );
    }
}

/// One endpoint per ip:port (two slices may list the same pod while it moves between them; the first,
/// sorted, wins).
fn dedup_by_addr(eps: BTreeSet<Endpoint>) -> Vec<Endpoint> {
    let mut seen = BTreeSet::new();
    eps.into_iter().filter(|e| seen.insert((e.ip, e.port))).collect()
}

/// The service ports of a Service that the proxy handles: those of a Service with an IPv4 ClusterIP
/// (headless and ExternalName services have no rules, as upstream).
pub fn service_ports(svc: &Service) -> Vec<ServicePort> {
    let (Some(namespace), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
        return Vec::new();
    };
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
    });
    let wants_node_port = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::parse(p.protocol.as_deref())?;
            Some(ServicePort {
                name: ServicePortName {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    port: p.name.clone().unwrap_or_default(),
                    protocol,
                },
                cluster_ip,
                port: u16::try_from(p.port).ok()?,
                node_port: p
                    .node_port
                    .filter(|_| wants_node_port)
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0),
                affinity_timeout,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                external_local: wants_node_port && spec.external_traffic_policy.as_deref() == Some("Local"),
            })
        })
        .collect()
}

/// The endpoints an EndpointSlice gives each service port of its Service (IPv4 slices only).
pub fn slice_endpoints(slice: &EndpointSlice) -> Vec<(ServicePortName, Endpoint)> {
    let Some(namespace) = &slice.metadata.namespace else {
        return Vec::new();
    };
    let Some(service) = slice
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SERVICE_NAME))
    else {
        return Vec::new();
    };
    if slice.address_type != "IPv4" {
        return Vec::new();
    }
    let mut out = Vec::new();
    for port in slice.ports.iter().flatten() {
        let (Some(Some(protocol)), Some(Ok(number))) = (
            Some(Protocol::parse(port.protocol.as_deref())),
            port.port.map(u16::try_from),
        ) else {
            continue;
        };
        let name = ServicePortName {
            namespace: namespace.clone(),
            name: service.clone(),
            port: port.name.clone().unwrap_or_default(),
            protocol,
        };
        for ep in slice.endpoints.iter().flatten() {
            let conditions = ep.conditions.as_ref();
            // Upstream: a nil ready is ready, a nil serving follows ready.
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            // Each address of an endpoint is the same pod; upstream uses the first.
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse::<Ipv4Addr>().ok()) else {
                continue;
            };
            out.push((
                name.clone(),
                Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving,
                    terminating,
                    node_name: ep.node_name.clone(),
                },
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refresh_of_the_changed_services_equals_a_build() {
        let service = |name: &str, ip: &str| -> Service {
            serde_json::from_value(json!({ "metadata": { "namespace": "ns", "name": name },
                "spec": { "clusterIP": ip, "ports": [{ "name": "http", "port": 80 }] } }))
            .expect("service")
        };
        let slice = |name: &str, svc: &str, ip: &str| -> EndpointSlice {
            serde_json::from_value(json!({
                "metadata": { "namespace": "ns", "name": name, "labels": { LABEL_SERVICE_NAME: svc } },
                "addressType": "IPv4",
                "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
                "endpoints": [{ "addresses": [ip] }],
            }))
            .expect("slice")
        };
        let svcs = vec![
            service("a", "10.96.0.1"),
            service("b", "10.96.0.2"),
            service("c", "10.96.0.3"),
        ];
        let slices = vec![
            slice("a-1", "a", "10.244.0.1"),
            slice("b-1", "b", "10.244.0.2"),
            slice("c-1", "c", "10.244.0.3"),
        ];
        let mut snap = Snapshot::build(&svcs, &slices);
        // a's endpoint changes, b is deleted, d is new, and c's slice moves to d.
        let svcs2 = vec![
            service("a", "10.96.0.1"),
            service("c", "10.96.0.3"),
            service("d", "10.96.0.4"),
        ];
        let slices2 = vec![
            slice("a-1", "a", "10.244.0.9"),
            slice("b-1", "b", "10.244.0.2"),
            slice("c-1", "d", "10.244.0.3"),
        ];
        let mut keys = ServiceKeys::new();
        keys.entry("ns".into())
            .or_default()
            .extend(["a", "b", "c", "d"].map(String::from));
        snap.refresh(&keys, &svcs2, &slices2);
        assert_eq!(snap, Snapshot::build(&svcs2, &slices2));
        assert_eq!(snap.services.len(), 3);
        // Nothing listed: nothing rebuilt.
        let before = snap.clone();
        snap.refresh(&ServiceKeys::new(), &svcs, &slices);
        assert_eq!(snap, before);
    }

    fn svc(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({ "metadata": { "namespace": "ns", "name": "web" }, "spec": spec }))
            .expect("service")
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": { "namespace": "ns", "name": "web-abc",
                          "labels": { LABEL_SERVICE_NAME: "web" } },
            "addressType": "IPv4",
            "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
            "endpoints": endpoints,
        }))
        .expect("slice")
    }

    #[test]
    fn service_ports_read_every_field() {
        let s = svc(json!({
            "type": "NodePort", "clusterIP": "10.96.0.10",
            "ports": [{ "name": "http", "port": 80, "nodePort": 30080 },
                      { "name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053 }],
            "sessionAffinity": "ClientIP",
            "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 60 } },
            "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster",
        }));
        let ports = service_ports(&s);
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[0].name.to_string(), "ns/web:http");
        assert_eq!(ports[0].cluster_ip, Ipv4Addr::new(10, 96, 0, 10));
        assert_eq!(ports[0].node_port, Some(30080));
        assert_eq!(ports[0].affinity_timeout, Some(60));
        assert!(ports[0].external_local && !ports[0].internal_local);
        assert_eq!(ports[1].name.protocol, Protocol::Udp);
    }

    #[test]
    fn headless_external_name_and_cluster_ip_node_ports_are_skipped() {
        assert!(service_ports(&svc(json!({ "clusterIP": "None", "ports": [{ "port": 80 }] }))).is_empty());
        assert!(
            service_ports(&svc(
                json!({ "type": "ExternalName", "externalName": "x.example" })
            ))
            .is_empty()
        );
        // A ClusterIP service never opens its (stale) nodePort, nor honours externalTrafficPolicy.
        let p = service_ports(&svc(json!({
            "clusterIP": "10.96.0.1", "ports": [{ "port": 80, "nodePort": 30001 }],
            "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
        })));
        assert_eq!(p[0].node_port, None);
        assert!(!p[0].external_local);
        assert_eq!(p[0].affinity_timeout, Some(DEFAULT_AFFINITY_TIMEOUT));
    }

    #[test]
    fn slice_conditions_default_like_upstream() {
        let eps = slice_endpoints(&slice(json!([
            { "addresses": ["10.244.0.5"], "nodeName": "n1" },
            { "addresses": ["10.244.0.6"], "conditions": { "ready": false } },
            { "addresses": ["10.244.0.7"],
              "conditions": { "ready": false, "serving": true, "terminating": true } },
        ])));
        assert_eq!(eps.len(), 3);
        assert_eq!(eps[0].0.to_string(), "ns/web:http");
        assert!(eps[0].1.ready && eps[0].1.serving && !eps[0].1.terminating);
        assert_eq!(eps[0].1.node_name.as_deref(), Some("n1"));
        assert!(!eps[1].1.ready && !eps[1].1.serving);
        assert!(eps[2].1.serving && eps[2].1.terminating);
        assert_eq!(eps[2].1.port, 8080);
    }

    fn snapshot(endpoints: serde_json::Value, spec_extra: serde_json::Value) -> Snapshot {
        let mut spec = json!({ "type": "NodePort", "clusterIP": "10.96.0.10",
                                "ports": [{ "name": "http", "port": 80, "nodePort": 30080 }] });
        for (k, v) in spec_extra.as_object().expect("object") {
            spec[k] = v.clone();
        }
        Snapshot::build([&svc(spec)], [&slice(endpoints)])
    }

    #[test]
    fn terminating_endpoints_only_when_none_ready() {
        let s = snapshot(
            json!([
                { "addresses": ["10.244.0.5"] },
                { "addresses": ["10.244.0.7"],
                  "conditions": { "ready": false, "serving": true, "terminating": true } },
            ]),
            json!({}),
        );
        let port = s.services.values().next().expect("port");
        let c = s.categorize(port, "n1");
        assert_eq!(
            c.cluster.iter().map(|e| e.addr()).collect::<Vec<_>>(),
            ["10.244.0.5:8080"]
        );

        let s = snapshot(
            json!([
                { "addresses": ["10.244.0.6"], "conditions": { "ready": false } },
                { "addresses": ["10.244.0.7"],
                  "conditions": { "ready": false, "serving": true, "terminating": true } },
            ]),
            json!({}),
        );
        let c = s.categorize(s.services.values().next().expect("port"), "n1");
        assert_eq!(
            c.cluster.iter().map(|e| e.addr()).collect::<Vec<_>>(),
            ["10.244.0.7:8080"]
        );
        assert!(c.any);
    }

    #[test]
    fn local_policies_pick_this_nodes_endpoints() {
        let s = snapshot(
            json!([
                { "addresses": ["10.244.0.5"], "nodeName": "n1" },
                { "addresses": ["10.244.1.5"], "nodeName": "n2" },
            ]),
            json!({ "externalTrafficPolicy": "Local" }),
        );
        let port = s.services.values().next().expect("port");
        let c = s.categorize(port, "n2");
        assert_eq!(c.cluster.len(), 2);
        assert_eq!(
            c.external.iter().map(|e| e.addr()).collect::<Vec<_>>(),
            ["10.244.1.5:8080"]
        );
        assert!(s.categorize(port, "n3").external.is_empty());
        assert!(s.categorize(port, "n3").any);
    }

    #[test]
    fn slices_of_unknown_services_and_duplicates_are_dropped() {
        let s = snapshot(
            json!([{ "addresses": ["10.244.0.5"] }, { "addresses": ["10.244.0.5"] }]),
            json!({}),
        );
        assert_eq!(s.endpoint_count(), 1);
        let other = Snapshot::build(
            std::iter::empty(),
            [&slice(json!([{ "addresses": ["10.0.0.1"] }]))],
        );
        assert_eq!(other.endpoint_count(), 0);
    }
}
