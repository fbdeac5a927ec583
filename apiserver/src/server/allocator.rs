//! Service ClusterIP and NodePort allocation (upstream's `pkg/registry/core/service/ipallocator` and
//! `portallocator`).
//!
//! Every allocated address or port is a key of its own in the store, created with create-if-absent:
//! `/registry/ipaddresses/<ip>` (the same key upstream's IPAddress objects use) and
//! `/registry/servicenodeports/<port>`. The store's create is the lock: two services can never get the
//! same IP, also across API server restarts and with several API servers on one etcd. A reservation is
//! released when its Service is deleted, or when the write that needed it fails.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicU64, Ordering},
};

use serde_json::{Value, json};

use super::{registry::FieldError, status::ApiError};
use crate::storage::{Store, StoreError};

/// The ranges services draw from.
#[derive(Debug, Clone)]
pub struct Ranges {
    /// `--service-cidr`: network address and prefix length.
    pub service_net: Ipv4Addr,
    /// Prefix length of the service CIDR.
    pub service_prefix: u8,
    /// `--service-node-port-range`, inclusive.
    pub node_ports: (u16, u16),
}

impl Default for Ranges {
    fn default() -> Self {
        Self {
            service_net: Ipv4Addr::new(10, 96, 0, 0),
            service_prefix: 12,
            node_ports: (30000, 32767),
        }
    }
}

impl Ranges {
    /// Parses `10.96.0.0/12`.
    pub fn with_service_cidr(cidr: &str) -> Result<Self, String> {
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR (a.b.c.d/len)"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{cidr:?}: {ip:?} is not an IPv4 address"))?;
        let len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=30).contains(l))
            .ok_or_else(|| format!("{cidr:?}: prefix must be 8..30"))?;
        let mask = u32::MAX << (32 - len);
        Ok(Self {
            service_net: Ipv4Addr::from(u32::from(ip) & mask),
            service_prefix: len,
            node_ports: (30000, 32767),
        })
    }

    fn first_last(&self) -> (u32, u32) {
        let net = u32::from(self.service_net);
        let size = 1u32 << (32 - self.service_prefix);
        // Neither the network nor the broadcast address.
        (net + 1, net + size - 2)
    }

    /// The first address: the `kubernetes` Service's.
    pub fn kubernetes_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.first_last().0)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.first_last();
        (first..=last).contains(&u32::from(ip))
    }
}

fn ip_key(ip: Ipv4Addr) -> String {
    format!("/registry/ipaddresses/{ip}")
}

fn port_key(port: u16) -> String {
    format!("/registry/servicenodeports/{port}")
}

/// A cheap spread of starting points so concurrent allocations rarely collide.
fn next_seed() -> u64 {
    static SEED: AtomicU64 = AtomicU64::new(0);
    let s = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    s ^ u64::from(uuid::Uuid::new_v4().as_u128() as u32)
}

/// What one Service holds: released together.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Held {
    /// The ClusterIP, if any.
    pub ip: Option<Ipv4Addr>,
    /// NodePorts.
    pub ports: Vec<u16>,
}

impl Held {
    /// What `svc` holds according to its spec.
    pub fn of(svc: &Value) -> Self {
        let ip = svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok());
        let ports = svc["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
            .collect();
        Self { ip, ports }
    }
}

/// Releases reservations (best effort: a leftover key only wastes one address until repaired).
pub async fn release(store: &dyn Store, held: &Held) {
    let keys = held
        .ip
        .map(ip_key)
        .into_iter()
        .chain(held.ports.iter().map(|p| port_key(*p)));
    for key in keys {
        if let Err(e) = store.delete(&key, None).await
            && !matches!(e, StoreError::NotFound(_))
        {
            tracing::warn!(%key, error = %e, "could not release a service allocation");
        }
    }
}

fn invalid(name: &str, errs: Vec<FieldError>) -> ApiError {
    ApiError::invalid("Service", name, errs)
}

/// Fills `spec.clusterIP(s)` and NodePorts of a Service being created or updated, reserving what it
/// takes. `old` is what the Service held before (update): kept addresses are not reserved again.
/// Returns what was newly reserved, for release if the write fails.
pub async fn allocate(
    store: &dyn Store,
    ranges: &Ranges,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<Held, ApiError> {
    let name = svc["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let mut reserved = Held::default();
    let result = allocate_inner(store, ranges, svc, old, &name, &mut reserved).await;
    if result.is_err() {
        release(store, &reserved).await;
    }
    result.map(|()| reserved)
}

async fn allocate_inner(
    store: &dyn Store,
    ranges: &Ranges,
    svc: &mut Value,
    old: Option<&Value>,
    name: &str,
    reserved: &mut Held,
) -> Result<(), ApiError> {
    let ty = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_owned();
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .map(str::to_owned);
    let requested = svc["spec"]["clusterIP"]
        .as_str()
        .map(str::to_owned)
        .filter(|s| !s.is_empty());
    let ip_value = match (&old_ip, &requested) {
        // The ClusterIP is immutable once set.
        (Some(old), Some(new)) if old != new => {
            return Err(invalid(
                name,
                vec![(
                    "spec.clusterIPs[0]".into(),
                    "FieldValueInvalid".into(),
                    format!("Invalid value: []string{{\"{new}\"}}: may not change once set"),
                )],
            ));
        }
        (Some(old), _) => Some(old.clone()),
        (None, _) if ty == "ExternalName" => None,
        (None, Some(none)) if none == "None" => Some("None".to_owned()),
        (None, Some(ip)) => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                invalid(name, vec![("spec.clusterIPs[0]".into(), "FieldValueInvalid".into(),
                    format!("Invalid value: \"{ip}\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))])
            })?;
            if !ranges.contains(parsed) {
                return Err(invalid(
                    name,
                    vec![(
                        "spec.clusterIPs".into(),
                        "FieldValueInvalid".into(),
                        format!(
                            "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                            ranges.service_net, ranges.service_prefix
                        ),
                    )],
                ));
            }
            reserve_ip(store, parsed, svc).await.map_err(|e| match e {
                Some(e) => e,
                None => invalid(name, vec![("spec.clusterIPs".into(), "FieldValueInvalid".into(), format!(
                    "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: provided IP is already allocated"))]),
            })?;
            reserved.ip = Some(parsed);
            Some(ip.clone())
        }
        (None, None) => {
            let ip = allocate_any_ip(store, ranges, svc).await?;
            reserved.ip = Some(ip);
            Some(ip.to_string())
        }
    };
    if let Some(ip) = ip_value {
        svc["spec"]["clusterIP"] = json!(ip);
        svc["spec"]["clusterIPs"] = json!([ip]);
        if ip != "None" || svc["spec"].get("ipFamilies").is_none() {
            svc["spec"]["ipFamilies"] = json!(["IPv4"]);
            svc["spec"]["ipFamilyPolicy"] = json!("SingleStack");
        }
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        allocate_node_ports(store, ranges, svc, old, name, reserved).await?;
    } else if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
        for p in ports {
            p.as_object_mut().map(|m| m.remove("nodePort"));
        }
    }
    Ok(())
}

/// Ok: reserved. Err(None): already taken. Err(Some): the store failed.
async fn reserve_ip(store: &dyn Store, ip: Ipv4Addr, svc: &Value) -> Result<(), Option<ApiError>> {
    let owner = json!({ "apiVersion": "networking.k8s.io/v1", "kind": "IPAddress", "metadata": { "name": ip.to_string() },
        "spec": { "parentRef": { "group": "", "resource": "services",
            "namespace": svc["metadata"]["namespace"], "name": svc["metadata"]["name"] } } });
    match store.create(&ip_key(ip), owner.to_string().into_bytes()).await {
        Ok(_) => Ok(()),
        Err(StoreError::AlreadyExists { .. }) => Err(None),
        Err(e) => Err(Some(ApiError::from_store(e, "ipaddresses", &ip.to_string()))),
    }
}

async fn allocate_any_ip(store: &dyn Store, ranges: &Ranges, svc: &Value) -> Result<Ipv4Addr, ApiError> {
    let (first, last) = ranges.first_last();
    // The first address belongs to the `kubernetes` Service; others start at a random point and walk.
    let span = u64::from(last - first);
    let start = next_seed() % span.max(1);
    for i in 0..span {
        let ip = Ipv4Addr::from(first + 1 + ((start + i) % span) as u32);
        match reserve_ip(store, ip, svc).await {
            Ok(()) => return Ok(ip),
            Err(None) => continue,
            Err(Some(e)) => return Err(e),
        }
    }
    Err(ApiError::internal(
        "failed to allocate a service IP: range is full",
    ))
}

async fn allocate_node_ports(
    store: &dyn Store,
    ranges: &Ranges,
    svc: &mut Value,
    old: Option<&Value>,
    name: &str,
    reserved: &mut Held,
) -> Result<(), ApiError> {
    let old_ports: Vec<(i64, u16)> = old
        .and_then(|o| o["spec"]["ports"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p["port"].as_i64()?, u16::try_from(p["nodePort"].as_u64()?).ok()?)))
        .collect();
    let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
    for i in 0..count {
        let port = &svc["spec"]["ports"][i];
        let service_port = port["port"].as_i64().unwrap_or(0);
        let kept = old_ports
            .iter()
            .find(|(p, _)| *p == service_port)
            .map(|(_, n)| *n);
        let node_port = match port["nodePort"].as_u64().map(|n| u16::try_from(n).unwrap_or(0)) {
            Some(n) if Some(n) == kept => n,
            Some(n) => {
                if !(ranges.node_ports.0..=ranges.node_ports.1).contains(&n) {
                    return Err(invalid(
                        name,
                        vec![(
                            format!("spec.ports[{i}].nodePort"),
                            "FieldValueInvalid".into(),
                            format!(
                                "Invalid value: {n}: provided port is not in the valid range. The range of valid ports is {}-{}",
                                ranges.node_ports.0, ranges.node_ports.1
                            ),
                        )],
                    ));
                }
                if !reserve_port(store, n).await? {
                    return Err(invalid(
                        name,
                        vec![(
                            format!("spec.ports[{i}].nodePort"),
                            "FieldValueInvalid".into(),
                            format!("Invalid value: {n}: provided port is already allocated"),
                        )],
                    ));
                }
                reserved.ports.push(n);
                n
            }
            None if kept.is_some() => kept.unwrap_or_default(),
            None => {
                let n = allocate_any_port(store, ranges).await?;
                reserved.ports.push(n);
                n
            }
        };
        svc["spec"]["ports"][i]["nodePort"] = json!(node_port);
    }
    Ok(())
}

async fn reserve_port(store: &dyn Store, port: u16) -> Result<bool, ApiError> {
    match store.create(&port_key(port), b"{}".to_vec()).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(ApiError::from_store(e, "servicenodeports", &port.to_string())),
    }
}

async fn allocate_any_port(store: &dyn Store, ranges: &Ranges) -> Result<u16, ApiError> {
    let (lo, hi) = ranges.node_ports;
    let span = u64::from(hi - lo) + 1;
    let start = next_seed() % span;
    for i in 0..span {
        let port = lo + ((start + i) % span) as u16;
        if reserve_port(store, port).await? {
            return Ok(port);
        }
    }
    Err(ApiError::internal(
        "failed to allocate a node port: range is full",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryStore;

    fn svc(name: &str, spec: Value) -> Value {
        json!({ "metadata": { "name": name, "namespace": "default" }, "spec": spec })
    }

    #[tokio::test]
    async fn never_hands_out_an_address_twice_and_reuses_released_ones() {
        let store = MemoryStore::new();
        let ranges = Ranges::with_service_cidr("10.96.0.0/29").expect("cidr"); // 6 usable, 1 for kubernetes
        let mut seen = std::collections::HashSet::new();
        let mut services = Vec::new();
        for i in 0..5 {
            let mut s = svc(&format!("s{i}"), json!({ "ports": [{ "port": 80 }] }));
            allocate(&store, &ranges, &mut s, None).await.expect("allocates");
            let ip: Ipv4Addr = s["spec"]["clusterIP"]
                .as_str()
                .expect("ip")
                .parse()
                .expect("ipv4");
            assert!(
                ip != ranges.kubernetes_ip() && seen.insert(ip),
                "unique, not the kubernetes IP: {ip}"
            );
            services.push(s);
        }
        let mut full = svc("full", json!({}));
        assert!(
            allocate(&store, &ranges, &mut full, None).await.is_err(),
            "range exhausted"
        );
        release(&store, &Held::of(&services[0])).await;
        allocate(&store, &ranges, &mut full, None)
            .await
            .expect("a released address is free again");
        assert_eq!(full["spec"]["clusterIP"], services[0]["spec"]["clusterIP"]);
    }

    #[tokio::test]
    async fn requested_addresses_and_ports_are_honoured_once() {
        let store = MemoryStore::new();
        let ranges = Ranges::default();
        let mut a = svc(
            "a",
            json!({ "type": "NodePort", "clusterIP": "10.96.0.50", "ports": [{ "port": 80, "nodePort": 30080 }, { "port": 81 }] }),
        );
        let held = allocate(&store, &ranges, &mut a, None).await.expect("allocates");
        assert_eq!(held.ports.len(), 2);
        assert_eq!(a["spec"]["ports"][0]["nodePort"], 30080);
        let mut b = svc("b", json!({ "clusterIP": "10.96.0.50" }));
        let err = allocate(&store, &ranges, &mut b, None).await.expect_err("taken");
        assert!(
            err.message.contains("provided IP is already allocated"),
            "{}",
            err.message
        );
        let mut c = svc(
            "c",
            json!({ "type": "NodePort", "ports": [{ "port": 80, "nodePort": 30080 }] }),
        );
        let err = allocate(&store, &ranges, &mut c, None)
            .await
            .expect_err("port taken");
        assert!(
            err.message.contains("provided port is already allocated"),
            "{}",
            err.message
        );
        // c's failed attempt reserved its ClusterIP first; it must have been released.
        let page = store
            .list("/registry/ipaddresses/", Default::default())
            .await
            .expect("list");
        assert_eq!(page.kvs.len(), 1, "only a's address is held");
        let mut headless = svc("h", json!({ "clusterIP": "None" }));
        assert_eq!(
            allocate(&store, &ranges, &mut headless, None)
                .await
                .expect("headless"),
            Held::default()
        );
        let mut out = svc("o", json!({ "clusterIP": "192.168.1.1" }));
        assert!(
            allocate(&store, &ranges, &mut out, None).await.is_err(),
            "outside the range"
        );
    }

    #[tokio::test]
    async fn cluster_ip_is_immutable_and_kept_on_update() {
        let store = MemoryStore::new();
        let ranges = Ranges::default();
        let mut a = svc("a", json!({ "ports": [{ "port": 80 }] }));
        allocate(&store, &ranges, &mut a, None).await.expect("allocates");
        let mut same = svc("a", json!({ "ports": [{ "port": 80 }] }));
        let held = allocate(&store, &ranges, &mut same, Some(&a))
            .await
            .expect("update without an IP keeps it");
        assert_eq!(held, Held::default(), "nothing new reserved");
        assert_eq!(same["spec"]["clusterIP"], a["spec"]["clusterIP"]);
        let mut changed = svc("a", json!({ "clusterIP": "10.96.0.77" }));
        assert!(allocate(&store, &ranges, &mut changed, Some(&a)).await.is_err());
    }
}
