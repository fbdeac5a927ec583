//! Node IPAM: every Node gets a pod CIDR, a `/24` (by default) of the cluster CIDR, as upstream's
//! range allocator does (pkg/controller/nodeipam/ipam/range_allocator.go over
//! pkg/controller/nodeipam/ipam/cidrset/cidr_set.go). The kubelet builds its CNI config from it.
//!
//! One task follows the Node watch in order. After every (re)list, the CIDRs the listed nodes
//! already hold are marked used before any node without one gets one, so no CIDR is handed out
//! twice; then each node without `spec.podCIDR` gets the next free CIDR (round robin, as upstream's
//! `AllocateNext`), written with a patch of `spec.podCIDR` and `spec.podCIDRs`. A deleted node's
//! CIDR is released. When the range is full the node gets a `CIDRNotAvailable` event and waits
//! until a CIDR is released. [`CidrSet`] and [`RangeAllocator`] are the pure halves.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    fmt,
    future::Future,
    net::Ipv4Addr,
    str::FromStr,
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use crate::events::EventSink;

/// The name events are reported under (upstream's range allocator reports as `cidrAllocator`).
pub const CONTROLLER_NAME: &str = "cidrAllocator";
/// How long a node waiting for a CIDR waits before it is tried again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(5);

/// An IPv4 CIDR block, `address/prefix`, its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Cidr {
    base: u32,
    prefix: u8,
}

/// Why a CIDR or a CIDR set could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    /// Not `a.b.c.d/n` with n ≤ 32.
    #[error("invalid CIDR {0:?}")]
    Invalid(String),
    /// The node mask is not longer than the cluster's, or makes more than 2^16 blocks (upstream's
    /// limit).
    #[error("node CIDR mask size /{node} does not fit cluster CIDR {cluster}")]
    MaskSize {
        /// The cluster CIDR.
        cluster: Ipv4Cidr,
        /// The node mask size.
        node: u8,
    },
}

impl Ipv4Cidr {
    /// The block of `address/prefix` (host bits cleared).
    pub fn new(address: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        if prefix > 32 {
            return Err(CidrError::Invalid(format!("{address}/{prefix}")));
        }
        Ok(Self {
            base: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    /// The first address.
    pub fn address(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn last(&self) -> u32 {
        self.base | !mask(self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || CidrError::Invalid(s.to_owned());
        let (address, prefix) = s.trim().split_once('/').ok_or_else(invalid)?;
        let address: Ipv4Addr = address.parse().map_err(|_| invalid())?;
        let prefix: u8 = prefix.parse().map_err(|_| invalid())?;
        Self::new(address, prefix)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address(), self.prefix)
    }
}

/// The node-sized blocks of a cluster CIDR and which are in use (upstream's `CidrSet`).
#[derive(Debug, Clone)]
pub struct CidrSet {
    cluster: Ipv4Cidr,
    node_mask: u8,
    used: Vec<bool>,
    next_candidate: usize,
}

impl CidrSet {
    /// All blocks of `/node_mask` in `cluster`, none used.
    pub fn new(cluster: Ipv4Cidr, node_mask: u8) -> Result<Self, CidrError> {
        if node_mask < cluster.prefix || node_mask > 32 || node_mask - cluster.prefix > 16 {
            return Err(CidrError::MaskSize {
                cluster,
                node: node_mask,
            });
        }
        Ok(Self {
            cluster,
            node_mask,
            used: vec![false; 1 << (node_mask - cluster.prefix)],
            next_candidate: 0,
        })
    }

    fn block(&self, index: usize) -> Ipv4Cidr {
        Ipv4Cidr {
            base: self.cluster.base + ((index as u32) << (32 - u32::from(self.node_mask))),
            prefix: self.node_mask,
        }
    }

    /// The indices of the blocks `cidr` overlaps, if it overlaps the cluster CIDR at all.
    fn indices(&self, cidr: Ipv4Cidr) -> Option<std::ops::RangeInclusive<usize>> {
        let begin = cidr.base.max(self.cluster.base);
        let end = cidr.last().min(self.cluster.last());
        if begin > end {
            return None;
        }
        let shift = 32 - u32::from(self.node_mask);
        let index = |ip: u32| ((ip - self.cluster.base) >> shift) as usize;
        Some(index(begin)..=index(end))
    }

    /// `AllocateNext`: the next free block after the last one handed out (round robin), if any.
    pub fn allocate_next(&mut self) -> Option<Ipv4Cidr> {
        let n = self.used.len();
        let candidate = (0..n)
            .map(|i| (self.next_candidate + i) % n)
            .find(|&c| !self.used[c])?;
        self.used[candidate] = true;
        self.next_candidate = (candidate + 1) % n;
        Some(self.block(candidate))
    }

    /// `Occupy`: marks every block `cidr` overlaps as used. `false` when it lies outside the range.
    pub fn occupy(&mut self, cidr: Ipv4Cidr) -> bool {
        let Some(range) = self.indices(cidr) else {
            return false;
        };
        for i in range {
            self.used[i] = true;
        }
        true
    }

    /// `Release`: marks every block `cidr` overlaps as free.
    pub fn release(&mut self, cidr: Ipv4Cidr) {
        if let Some(range) = self.indices(cidr) {
            for i in range {
                self.used[i] = false;
            }
        }
    }

    /// How many blocks are in use.
    pub fn used(&self) -> usize {
        self.used.iter().filter(|u| **u).count()
    }
}

/// What to do about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It has its CIDR (or is going away).
    Nothing,
    /// Write this CIDR into its spec.
    Assign(Ipv4Cidr),
    /// No CIDR is left for it.
    RangeFull,
}

/// The IPv4 pod CIDR a node holds, if any.
pub fn node_cidr(node: &Node) -> Option<Ipv4Cidr> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find_map(|c| c.parse::<Ipv4Cidr>().ok())
}

/// The allocator's state: the set of blocks, and the block each node has or is being given.
#[derive(Debug, Clone)]
pub struct RangeAllocator {
    empty: CidrSet,
    cidrs: CidrSet,
    assigned: HashMap<String, Ipv4Cidr>,
}

impl RangeAllocator {
    /// An allocator over `set` (all free).
    pub fn new(set: CidrSet) -> Self {
        Self {
            empty: set.clone(),
            cidrs: set,
            assigned: HashMap::new(),
        }
    }

    /// After a (re)list: forget everything, mark the CIDRs of all `nodes` used, then decide for the
    /// nodes without one (in name order).
    pub fn resync(&mut self, nodes: &[Node]) -> Vec<(String, Decision)> {
        self.cidrs = self.empty.clone();
        self.assigned.clear();
        for node in nodes {
            if let Some(cidr) = node_cidr(node) {
                self.cidrs.occupy(cidr);
                self.assigned.insert(node.name_any(), cidr);
            }
        }
        let mut names: Vec<&Node> = nodes.iter().filter(|n| node_cidr(n).is_none()).collect();
        names.sort_by_key(|n| n.name_any());
        names
            .into_iter()
            .map(|n| (n.name_any(), self.observe(n)))
            .collect()
    }

    /// A node was added or changed.
    pub fn observe(&mut self, node: &Node) -> Decision {
        let name = node.name_any();
        if let Some(cidr) = node_cidr(node) {
            self.cidrs.occupy(cidr);
            if let Some(old) = self.assigned.insert(name, cidr)
                && old != cidr
            {
                // It got another CIDR than the one we picked (someone else wrote it): ours is free.
                self.cidrs.release(old);
            }
            return Decision::Nothing;
        }
        if node.metadata.deletion_timestamp.is_some() {
            return Decision::Nothing;
        }
        // Picked earlier but not yet seen written: the same one again.
        if let Some(cidr) = self.assigned.get(&name) {
            return Decision::Assign(*cidr);
        }
        match self.cidrs.allocate_next() {
            Some(cidr) => {
                self.assigned.insert(name, cidr);
                Decision::Assign(cidr)
            }
            None => Decision::RangeFull,
        }
    }

    /// Writing `cidr` to node `name` failed: it is free again.
    pub fn assign_failed(&mut self, name: &str, cidr: Ipv4Cidr) {
        if self.assigned.get(name) == Some(&cidr) {
            self.assigned.remove(name);
            self.cidrs.release(cidr);
        }
    }

    /// A node was deleted: its CIDR is free.
    pub fn forget(&mut self, node: &Node) {
        let from_spec = node_cidr(node);
        let ours = self.assigned.remove(&node.name_any());
        for cidr in from_spec.into_iter().chain(ours).collect::<BTreeSet<_>>() {
            self.cidrs.release(cidr);
        }
    }

    /// How many blocks are in use.
    pub fn used(&self) -> usize {
        self.cidrs.used()
    }
}

/// How the allocator is set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The range pod CIDRs are cut from (`--cluster-cidr`, default 10.244.0.0/16).
    pub cluster_cidr: Ipv4Cidr,
    /// The prefix length of each node's block (`--node-cidr-mask-size`, default 24).
    pub node_cidr_mask_size: u8,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cluster_cidr: Ipv4Cidr::new(Ipv4Addr::new(10, 244, 0, 0), 16).expect("valid"),
            node_cidr_mask_size: 24,
        }
    }
}

/// `RecordNodeStatusChange`: a Normal event about the node (whose uid upstream sets to its name).
fn node_event(events: &EventSink, name: &str, status: &str) {
    let regarding = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(name.into()),
        ..Default::default()
    };
    events.normal(
        &regarding,
        status,
        status,
        format!("Node {name} status is now: {status}"),
    );
}

/// Runs the allocator until `shutdown` completes. An invalid cluster CIDR or mask size is logged
/// and nothing is allocated.
pub async fn run(client: Client, options: Options, shutdown: impl Future<Output = ()> + Send + 'static) {
    tokio::pin!(shutdown);
    let set = match CidrSet::new(options.cluster_cidr, options.node_cidr_mask_size) {
        Ok(set) => set,
        Err(e) => {
            tracing::error!(error = %e, "node IPAM disabled");
            shutdown.await;
            return;
        }
    };
    let events = EventSink::new(client.clone(), CONTROLLER_NAME);
    let api: Api<Node> = Api::all(client);
    let mut allocator = RangeAllocator::new(set);
    let mut watch = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listing: Vec<Node> = Vec::new();
    // Nodes that still need a CIDR (the range was full, or the write failed).
    let mut waiting: HashMap<String, Node> = HashMap::new();
    // Nodes already told that the range is full: told once, not at every status update or retry
    // (1,000 nodes over a /16 would otherwise log and record an event each time each heartbeats).
    let mut told_full: HashSet<String> = HashSet::new();
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let decisions: Vec<(Node, Decision)> = tokio::select! {
            () = &mut shutdown => return,
            () = retry => {
                retry_at = None;
                let nodes: Vec<Node> = waiting.drain().map(|(_, n)| n).collect();
                nodes.into_iter().map(|n| { let d = allocator.observe(&n); (n, d) }).collect()
            }
            event = watch.next() => match event {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "node watch");
                    continue;
                }
                Some(Ok(watcher::Event::Init)) => {
                    listing.clear();
                    continue;
                }
                Some(Ok(watcher::Event::InitApply(node))) => {
                    listing.push(node);
                    continue;
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    waiting.clear();
                    let nodes = std::mem::take(&mut listing);
                    let decisions = allocator.resync(&nodes);
                    decisions
                        .into_iter()
                        .filter_map(|(name, d)| Some((nodes.iter().find(|n| n.name_any() == name)?.clone(), d)))
                        .collect()
                }
                Some(Ok(watcher::Event::Apply(node))) => {
                    waiting.remove(&node.name_any());
                    let d = allocator.observe(&node);
                    vec![(node, d)]
                }
                Some(Ok(watcher::Event::Delete(node))) => {
                    waiting.remove(&node.name_any());
                    told_full.remove(&node.name_any());
                    allocator.forget(&node);
                    // A CIDR came free: nodes waiting for one need not wait longer.
                    if !waiting.is_empty() {
                        retry_at = Some(tokio::time::Instant::now());
                    }
                    continue;
                }
            }
        };
        for (node, decision) in decisions {
            let name = node.name_any();
            match decision {
                Decision::Nothing => {}
                Decision::Assign(cidr) => {
                    let patch =
                        json!({ "spec": { "podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()] } });
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        Ok(_) => {
                            told_full.remove(&name);
                            tracing::info!(node = %name, %cidr, "pod CIDR assigned");
                        }
                        // Deleted meanwhile: the delete event releases the CIDR.
                        Err(kube::Error::Api(s)) if s.is_not_found() => allocator.assign_failed(&name, cidr),
                        Err(e) => {
                            tracing::warn!(node = %name, %cidr, error = %e, "cannot write pod CIDR");
                            allocator.assign_failed(&name, cidr);
                            node_event(&events, &name, "CIDRAssignmentFailed");
                            waiting.insert(name, node);
                        }
                    }
                }
                Decision::RangeFull => {
                    if told_full.insert(name.clone()) {
                        tracing::warn!(node = %name, "no pod CIDR left");
                        node_event(&events, &name, "CIDRNotAvailable");
                    }
                    waiting.insert(name, node);
                }
            }
        }
        if !waiting.is_empty() && retry_at.is_none() {
            retry_at = Some(tokio::time::Instant::now() + RETRY_INTERVAL);
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{api::core::v1::NodeSpec, apimachinery::pkg::apis::meta::v1::ObjectMeta};

    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("cidr")
    }

    fn node(name: &str, pod_cidr: Option<&str>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: pod_cidr.map(Into::into),
                pod_cidrs: pod_cidr.map(|c| vec![c.into()]),
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn cidrs_parse_and_print_with_host_bits_cleared() {
        assert_eq!(cidr("10.244.3.7/16").to_string(), "10.244.0.0/16");
        assert!("10.244.0.0".parse::<Ipv4Cidr>().is_err());
        assert!("10.244.0.0/33".parse::<Ipv4Cidr>().is_err());
        assert!(CidrSet::new(cidr("10.244.0.0/16"), 8).is_err());
        assert!(CidrSet::new(cidr("10.0.0.0/8"), 28).is_err());
    }

    #[test]
    fn blocks_are_handed_out_round_robin_and_reused_after_wrapping() {
        let mut set = CidrSet::new(cidr("10.244.0.0/22"), 24).expect("set");
        let got: Vec<String> = (0..4)
            .map(|_| set.allocate_next().expect("free").to_string())
            .collect();
        assert_eq!(
            got,
            ["10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"]
        );
        assert_eq!(set.allocate_next(), None);
        set.release(cidr("10.244.1.0/24"));
        assert_eq!(set.allocate_next(), Some(cidr("10.244.1.0/24")));
        // A bigger block occupies every block it covers; one outside the range nothing.
        let mut set = CidrSet::new(cidr("10.244.0.0/22"), 24).expect("set");
        assert!(set.occupy(cidr("10.244.0.0/23")));
        assert!(!set.occupy(cidr("192.168.0.0/24")));
        assert_eq!(set.allocate_next(), Some(cidr("10.244.2.0/24")));
    }

    #[test]
    fn existing_cidrs_are_marked_before_any_is_handed_out() {
        let set = CidrSet::new(cidr("10.244.0.0/16"), 24).expect("set");
        let mut a = RangeAllocator::new(set);
        let decisions = a.resync(&[
            node("new", None),
            node("old-1", Some("10.244.0.0/24")),
            node("old-2", Some("10.244.1.0/24")),
        ]);
        assert_eq!(
            decisions,
            [("new".to_string(), Decision::Assign(cidr("10.244.2.0/24")))]
        );
        // The same node seen again before the write shows: the same CIDR, not a second one.
        assert_eq!(
            a.observe(&node("new", None)),
            Decision::Assign(cidr("10.244.2.0/24"))
        );
        assert_eq!(a.observe(&node("new", Some("10.244.2.0/24"))), Decision::Nothing);
        assert_eq!(a.used(), 3);
    }

    #[test]
    fn a_full_range_waits_for_a_deleted_node() {
        let set = CidrSet::new(cidr("10.244.0.0/23"), 24).expect("set");
        let mut a = RangeAllocator::new(set);
        assert_eq!(
            a.observe(&node("a", None)),
            Decision::Assign(cidr("10.244.0.0/24"))
        );
        assert_eq!(
            a.observe(&node("b", None)),
            Decision::Assign(cidr("10.244.1.0/24"))
        );
        assert_eq!(a.observe(&node("c", None)), Decision::RangeFull);
        a.forget(&node("a", Some("10.244.0.0/24")));
        assert_eq!(
            a.observe(&node("c", None)),
            Decision::Assign(cidr("10.244.0.0/24"))
        );
        // A failed write frees the block for the next node.
        a.assign_failed("c", cidr("10.244.0.0/24"));
        assert_eq!(
            a.observe(&node("d", None)),
            Decision::Assign(cidr("10.244.0.0/24"))
        );
    }
}
