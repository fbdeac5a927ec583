//! The pure half of the EndpointSlice controller: given a Service, the pods its selector matches, the
//! nodes they run on and the slices it already has, which slices to create, update and delete. It
//! mirrors upstream's staging/src/k8s.io/endpointslice/reconciler.go:
//!
//! - `reconcileByAddressType`: pods are grouped by the ports the Service's ports resolve to on them
//!   (a named target port may differ from pod to pod), one group of slices per port mapping;
//! - `reconcileByPortMapping`: endpoints stay in the slice they are in (updated in place when they
//!   changed), slices left empty go, changed slices are filled up first, leftovers go into the
//!   unchanged slice closest to full, then into new slices of at most `maxEndpointsPerSlice`;
//! - `finalize`: a slice to create reuses (updates) a slice that would be deleted; a Service being
//!   deleted gets no new slices; a Service without endpoints keeps one empty placeholder slice.
//!
//! Slices are written only when their endpoints or labels differ, so a resync writes nothing.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{Node, Pod, Service},
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    jiff::Timestamp,
};

use super::utils::{self, ADDRESS_TYPE_IPV4, LAST_CHANGE_TRIGGER_TIME};

/// Upstream's default `--max-endpoints-per-slice`.
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;

/// What a plan is made from.
pub struct Input<'a> {
    /// The Service (with a selector).
    pub service: &'a Service,
    /// The pods of its namespace its selector matches, terminating and finished ones included.
    pub pods: &'a [Arc<Pod>],
    /// The slices of the Service managed by this controller.
    pub existing: &'a [Arc<EndpointSlice>],
    /// Looks a node up by name in the cache.
    pub node: &'a dyn Fn(&str) -> Option<Arc<Node>>,
    /// The most endpoints one slice holds.
    pub max_endpoints_per_slice: usize,
    /// The `last-change-trigger-time` to stamp on written slices (removed when `None`).
    pub trigger_time: Option<Timestamp>,
}

/// What to write.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// New slices (`generateName` set).
    pub create: Vec<EndpointSlice>,
    /// Changed slices, carrying the resourceVersion they were read at.
    pub update: Vec<EndpointSlice>,
    /// Slices to delete.
    pub delete: Vec<EndpointSlice>,
    /// Pods left out because their node is not known (upstream retries the Service later).
    pub pods_without_node: Vec<String>,
}

impl Plan {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// A port mapping in canonical order (upstream's `PortMapKey`): slices are grouped by it.
type PortKey = Vec<(String, i32, String, Option<String>)>;

fn port_key(ports: &[EndpointPort]) -> PortKey {
    let mut key: PortKey = ports
        .iter()
        .map(|p| {
            (
                p.name.clone().unwrap_or_default(),
                p.port.unwrap_or_default(),
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.app_protocol.clone(),
            )
        })
        .collect();
    key.sort();
    key
}

/// What identifies an endpoint across syncs (upstream's endpoint hash): its addresses, hostname and
/// pod; conditions, node and zone may change in place.
type EndpointKey = (Vec<String>, Option<String>, Option<String>, Option<String>);

fn endpoint_key(ep: &Endpoint) -> EndpointKey {
    let mut addresses = ep.addresses.clone();
    addresses.sort();
    let target = ep.target_ref.as_ref();
    (
        addresses,
        ep.hostname.clone(),
        target.and_then(|t| t.namespace.clone()),
        target.and_then(|t| t.name.clone()),
    )
}

fn endpoints_equal(a: &Endpoint, b: &Endpoint) -> bool {
    let mut a = a.clone();
    let mut b = b.clone();
    a.addresses.sort();
    b.addresses.sort();
    a == b
}

/// Plans one sync of `input.service`.
pub fn reconcile(input: &Input<'_>) -> Plan {
    let svc = input.service;
    let mut plan = Plan::default();
    let mut by_ports: BTreeMap<PortKey, Vec<EndpointSlice>> = BTreeMap::new();
    for slice in input.existing {
        // Only IPv4 is served; slices of another type, or of another Service of the same name, go.
        if slice.address_type != ADDRESS_TYPE_IPV4 || !utils::owned_by(slice, svc) {
            plan.delete.push(slice.as_ref().clone());
        } else {
            let key = port_key(slice.ports.as_deref().unwrap_or_default());
            by_ports.entry(key).or_default().push(slice.as_ref().clone());
        }
    }

    let mut desired: BTreeMap<PortKey, (Vec<EndpointPort>, BTreeMap<EndpointKey, Endpoint>)> =
        BTreeMap::new();
    for pod in input.pods {
        if !utils::should_pod_be_in_endpoints(pod, true) {
            continue;
        }
        let ports = utils::endpoint_ports(svc, pod);
        let key = port_key(&ports);
        let group = desired.entry(key).or_insert_with(|| (ports, BTreeMap::new()));
        let node = (input.node)(crate::pod_util::node_name(pod));
        if node.is_none() && !utils::publish_not_ready(svc) {
            plan.pods_without_node
                .push(pod.metadata.name.clone().unwrap_or_default());
            continue;
        }
        let endpoint = utils::pod_to_endpoint(pod, node.as_deref(), svc);
        if !endpoint.addresses.is_empty() {
            group.1.insert(endpoint_key(&endpoint), endpoint);
        }
    }

    let mut create = Vec::new();
    let mut update = Vec::new();
    let mut delete = std::mem::take(&mut plan.delete);
    for (key, (ports, endpoints)) in desired.iter_mut() {
        let existing = by_ports.remove(key).unwrap_or_default();
        let (c, u, d) = reconcile_by_port_mapping(
            svc,
            existing,
            std::mem::take(endpoints),
            ports,
            input.max_endpoints_per_slice.max(1),
        );
        create.extend(c);
        update.extend(u);
        delete.extend(d);
    }
    // Port mappings no pod has any more.
    for (_, slices) in by_ports {
        delete.extend(slices);
    }

    // A Service without endpoints keeps one empty placeholder slice.
    if input.existing.len() == delete.len() && create.is_empty() {
        let placeholder = utils::new_slice(svc, vec![]);
        if delete.len() == 1 && placeholder_equal(&delete[0], &placeholder) {
            delete.clear();
        } else {
            create.push(placeholder);
        }
    }

    finalize(
        svc,
        create,
        update,
        delete,
        input.trigger_time,
        plan.pods_without_node,
    )
}

/// `placeholderSliceCompare`: namespace, labels, owner, type, ports and endpoints.
fn placeholder_equal(a: &EndpointSlice, b: &EndpointSlice) -> bool {
    let empty = |v: Option<usize>| v.unwrap_or(0) == 0;
    a.metadata.namespace == b.metadata.namespace
        && a.metadata.labels.clone().unwrap_or_default() == b.metadata.labels.clone().unwrap_or_default()
        && a.metadata.owner_references == b.metadata.owner_references
        && a.address_type == b.address_type
        && empty(a.ports.as_ref().map(Vec::len))
        && empty(b.ports.as_ref().map(Vec::len))
        && empty(a.endpoints.as_ref().map(Vec::len))
        && empty(b.endpoints.as_ref().map(Vec::len))
}

/// `finalize`: creates become updates of slices that would be deleted; no creates for a Service
/// being deleted; the trigger time is stamped on everything written.
fn finalize(
    svc: &Service,
    mut create: Vec<EndpointSlice>,
    mut update: Vec<EndpointSlice>,
    mut delete: Vec<EndpointSlice>,
    trigger_time: Option<Timestamp>,
    pods_without_node: Vec<String>,
) -> Plan {
    let mut i = 0;
    while i < delete.len() && !create.is_empty() {
        let reusable = delete[i].address_type == ADDRESS_TYPE_IPV4 && utils::owned_by(&delete[i], svc);
        if reusable {
            let old = delete.remove(i);
            let mut slice = create.pop().expect("checked non-empty");
            slice.metadata.name = old.metadata.name;
            slice.metadata.generate_name = None;
            slice.metadata.resource_version = old.metadata.resource_version;
            slice.metadata.uid = old.metadata.uid;
            slice.metadata.annotations = old.metadata.annotations;
            update.push(slice);
        } else {
            i += 1;
        }
    }
    if svc.metadata.deletion_timestamp.is_some() {
        create.clear();
    }
    for slice in create.iter_mut().chain(update.iter_mut()) {
        let annotations = slice.metadata.annotations.get_or_insert_default();
        match trigger_time {
            Some(t) => {
                annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t));
            }
            None => {
                annotations.remove(LAST_CHANGE_TRIGGER_TIME);
            }
        }
    }
    Plan {
        create,
        update,
        delete,
        pods_without_node,
    }
}

/// RFC 3339 with nanoseconds, in UTC, as Go's `time.RFC3339Nano` prints it.
pub fn format_time(t: Timestamp) -> String {
    t.to_string()
}

#[derive(PartialEq)]
enum SliceState {
    Unchanged,
    Update,
    Delete,
}

/// `reconcileByPortMapping` for one group of slices sharing a port mapping.
fn reconcile_by_port_mapping(
    svc: &Service,
    existing: Vec<EndpointSlice>,
    mut desired: BTreeMap<EndpointKey, Endpoint>,
    ports: &[EndpointPort],
    max: usize,
) -> (Vec<EndpointSlice>, Vec<EndpointSlice>, Vec<EndpointSlice>) {
    // 1. Keep the desired endpoints where they are, updated; drop the others.
    let mut slices: Vec<(EndpointSlice, SliceState)> = Vec::new();
    for slice in existing {
        let old = slice.endpoints.clone().unwrap_or_default();
        let mut kept = Vec::new();
        let mut changed = false;
        for ep in &old {
            if let Some(want) = desired.remove(&endpoint_key(ep)) {
                changed |= !endpoints_equal(&want, ep);
                kept.push(want);
            }
        }
        let (labels, labels_changed) = utils::slice_labels(&slice, svc);
        let mut slice = slice;
        let state = if changed || kept.len() != old.len() {
            if kept.is_empty() {
                SliceState::Delete
            } else {
                slice.endpoints = Some(kept);
                slice.metadata.labels = Some(labels);
                SliceState::Update
            }
        } else if labels_changed {
            slice.metadata.labels = Some(labels);
            SliceState::Update
        } else {
            SliceState::Unchanged
        };
        slices.push((slice, state));
    }

    let pop = |desired: &mut BTreeMap<EndpointKey, Endpoint>| desired.pop_first().map(|(_, ep)| ep);

    // 2. Fill the slices being updated anyway, fullest first.
    if !desired.is_empty() {
        let mut updating: Vec<usize> = (0..slices.len())
            .filter(|&i| slices[i].1 == SliceState::Update)
            .collect();
        updating.sort_by_key(|&i| std::cmp::Reverse(len(&slices[i].0)));
        for i in updating {
            let endpoints = slices[i].0.endpoints.get_or_insert_default();
            while endpoints.len() < max {
                let Some(ep) = pop(&mut desired) else { break };
                endpoints.push(ep);
            }
        }
    }

    // 3. Leftovers: into the unchanged slice that ends closest to full, else new slices.
    let mut create = Vec::new();
    while !desired.is_empty() {
        let mut target = None;
        if desired.len() < max {
            let mut closest = max;
            for (i, (slice, state)) in slices.iter().enumerate() {
                if *state != SliceState::Unchanged {
                    continue;
                }
                let fill = desired.len() + len(slice);
                if fill <= max && max - fill < closest {
                    closest = max - fill;
                    target = Some(i);
                }
            }
        }
        match target {
            Some(i) => {
                let endpoints = slices[i].0.endpoints.get_or_insert_default();
                while endpoints.len() < max {
                    let Some(ep) = pop(&mut desired) else { break };
                    endpoints.push(ep);
                }
                slices[i].1 = SliceState::Update;
            }
            None => {
                let mut slice = utils::new_slice(svc, ports.to_vec());
                let endpoints = slice.endpoints.get_or_insert_default();
                while endpoints.len() < max {
                    let Some(ep) = pop(&mut desired) else { break };
                    endpoints.push(ep);
                }
                create.push(slice);
            }
        }
    }

    let mut update = Vec::new();
    let mut delete = Vec::new();
    for (slice, state) in slices {
        match state {
            SliceState::Update => update.push(slice),
            SliceState::Delete => delete.push(slice),
            SliceState::Unchanged => {}
        }
    }
    (create, update, delete)
}

fn len(slice: &EndpointSlice) -> usize {
    slice.endpoints.as_ref().map_or(0, Vec::len)
}
