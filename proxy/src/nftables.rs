//! nftables mode: the snapshot rendered as one nft table (`ip kube-proxy`) of maps and verdict maps, and
//! the `nft -f` input that applies it (whole, or as element and chain updates).
//!
//! The semantics are upstream's pkg/proxy/nftables/proxier.go (the `service-ips` and
//! `service-nodeports` verdict maps, `no-endpoint-services` → reject, `masquerading` on mark 0x4000,
//! a drop/reject for the rest of the service CIDR), but the common case is laid out for scale: loading
//! a ruleset costs more than linearly in its number of *chains* while map elements load linearly
//! (shared/reference/measurements.md: 10,000 services took minutes as chains per endpoint, ~1 s as map
//! elements). So a plain service (Cluster traffic policies, no session affinity) owns no chain at all:
//! its VIP maps to `goto cluster-<n>`, one chain per distinct endpoint count n, which DNATs through the
//! map `cluster-endpoints-<n>` keyed by `vip . proto . port . numgen random mod n` — an exactly equal
//! share per endpoint. NodePorts use `external-<n>` / `external-endpoints-<n>` keyed by `proto . port`.
//! Services with ClientIP affinity or a Local traffic policy (few, in practice) get upstream's
//! per-service chains (`svc-`, `svl-`, `ext-`, `sep-<hash>`; affinity as a timed dynamic set per
//! endpoint). Hairpin traffic (a pod reaching itself through its service) is masqueraded by one rule
//! over the set `hairpin` of this node's endpoints.
//!
//! A partial sync is the difference between two renders: map elements deleted and added, chains
//! created, replaced (flush + rules) or deleted — all in one `nft -f` transaction.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{
    MASQ_MARK, RenderConfig,
    snapshot::{Endpoint, ServicePort, Snapshot},
};

/// Our table (family ip).
pub const TABLE: &str = "kube-proxy";

/// A set or map: its declaration body and its elements (key → value; sets have no value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// `map` or `set`.
    pub kind: &'static str,
    /// The declaration, e.g. `type ipv4_addr . inet_proto . inet_service : verdict`.
    pub decl: String,
    /// Elements.
    pub elements: BTreeMap<String, Option<String>>,
}

/// A chain: its base-chain line (hook) if any, and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// `type nat hook prerouting priority dstnat; policy accept;` for a base chain.
    pub hook: Option<String>,
    /// Rules, in order.
    pub rules: Vec<String>,
}

/// The rendered table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rules {
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
}

impl Rules {
    /// Rules plus elements: the size of the ruleset.
    pub fn rule_count(&self) -> usize {
        self.chains.values().map(|c| c.rules.len()).sum::<usize>()
            + self.sets.values().map(|s| s.elements.len()).sum::<usize>()
    }

    #[cfg(test)]
    fn map(&mut self, name: &str, decl: &str) -> &mut Set {
        self.sets.entry(name.to_owned()).or_insert_with(|| Set {
            kind: if decl.contains(':') { "map" } else { "set" },
            decl: decl.to_owned(),
            elements: BTreeMap::new(),
        })
    }

    #[cfg(test)]
    fn element(&mut self, set: &str, key: String, value: Option<String>) {
        if let Some(s) = self.sets.get_mut(set) {
            s.elements.insert(key, value);
        }
    }

    #[cfg(test)]
    fn chain(&mut self, name: &str) -> &mut Vec<String> {
        &mut self.chains.entry(name.to_owned()).or_default().rules
    }

    #[cfg(test)]
    fn base_chain(&mut self, name: &str, hook: &str, rules: &[&str]) {
        let chain = self.chains.entry(name.to_owned()).or_default();
        chain.hook = Some(hook.to_owned());
        chain.rules.extend(rules.iter().map(|r| (*r).to_owned()));
    }

    /// The whole table as `nft -f` input that replaces whatever table of ours exists, atomically.
    pub fn full_text(&self) -> String {
        let mut out = format!("add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
        for (name, set) in &self.sets {
            let _ = writeln!(out, "\t{} {name} {{\n\t\t{}", set.kind, set.decl);
            if !set.elements.is_empty() {
                out.push_str("\t\telements = {");
                for (i, (k, v)) in set.elements.iter().enumerate() {
                    out.push_str(if i == 0 { " " } else { ",\n\t\t\t" });
                    out.push_str(k);
                    if let Some(v) = v {
                        out.push_str(" : ");
                        out.push_str(v);
                    }
                }
                out.push_str(" }\n");
            }
            out.push_str("\t}\n");
        }
        for (name, chain) in &self.chains {
            let _ = writeln!(out, "\tchain {name} {{");
            if let Some(hook) = &chain.hook {
                let _ = writeln!(out, "\t\t{hook}");
            }
            for rule in &chain.rules {
                let _ = writeln!(out, "\t\t{rule}");
            }
            out.push_str("\t}\n");
        }
        out.push_str("}\n");
        out
    }

    /// The `nft -f` input that turns `old` (what is applied) into `self`; None when only a full sync can
    /// (a set's type or a base chain's hook changed). Empty when nothing changed.
    pub fn partial_text(&self, old: &Rules) -> Option<String> {
        let mut out = String::new();
        let t = TABLE;
        for (name, set) in &self.sets {
            match old.sets.get(name) {
                Some(o) if o.decl != set.decl => return None,
                Some(_) => {}
                None => {
                    // One line: the declaration needs its closing `;` before `}`.
                    let decl = set.decl.trim_end_matches(';');
                    let _ = writeln!(out, "add {} ip {t} {name} {{ {decl}; }}", set.kind);
                }
            }
        }
        for (name, chain) in &self.chains {
            match old.chains.get(name) {
                Some(o) if o.hook != chain.hook => return None,
                Some(_) => {}
                None if chain.hook.is_some() => return None,
                None => {
                    let _ = writeln!(out, "add chain ip {t} {name}");
                }
            }
        }
        let empty = BTreeMap::new();
        for (name, set) in &self.sets {
            let old_elements = old.sets.get(name).map_or(&empty, |s| &s.elements);
            let deleted: Vec<&String> = old_elements
                .iter()
                .filter(|(k, v)| set.elements.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .collect();
            write_elements(&mut out, "delete", name, deleted.iter().map(|k| (*k, None)));
            let added = set
                .elements
                .iter()
                .filter(|(k, v)| old_elements.get(*k) != Some(*v));
            write_elements(&mut out, "add", name, added.map(|(k, v)| (k, v.as_ref())));
        }
        for (name, chain) in &self.chains {
            if old.chains.get(name) == Some(chain) {
                continue;
            }
            if old.chains.contains_key(name) {
                let _ = writeln!(out, "flush chain ip {t} {name}");
            }
            for rule in &chain.rules {
                let _ = writeln!(out, "add rule ip {t} {name} {rule}");
            }
        }
        // Gone chains may jump to each other: flush them all before deleting any.
        let gone: Vec<&String> = old
            .chains
            .keys()
            .filter(|n| !self.chains.contains_key(*n))
            .collect();
        for name in &gone {
            let _ = writeln!(out, "flush chain ip {t} {name}");
        }
        for name in &gone {
            let _ = writeln!(out, "delete chain ip {t} {name}");
        }
        for (name, set) in &old.sets {
            if !self.sets.contains_key(name) {
                let _ = writeln!(out, "delete {} ip {t} {name}", set.kind);
            }
        }
        Some(out)
    }
}

/// `add|delete element ip kube-proxy <set> { … }` in batches (one line per 1,000 elements).
fn write_elements<'a>(
    out: &mut String,
    verb: &str,
    set: &str,
    elements: impl Iterator<Item = (&'a String, Option<&'a String>)>,
) {
    let mut n = 0;
    for (k, v) in elements {
        if n % 1000 == 0 {
            if n > 0 {
                out.push_str(" }\n");
            }
            let _ = write!(out, "{verb} element ip {TABLE} {set} {{ ");
        } else {
            out.push_str(", ");
        }
        out.push_str(k);
        if let Some(v) = v {
            out.push_str(" : ");
            out.push_str(v);
        }
        n += 1;
    }
    if n > 0 {
        out.push_str(" }\n");
    }
}

/// The per-service chains' hash: upstream's, from the iptables mode.
fn hash(svc: &ServicePort) -> String {
    crate::iptables::svc_chain(svc)["KUBE-SVC-".len()..].to_owned()
}

fn sep_name(svc: &ServicePort, ep: &Endpoint) -> String {
    crate::iptables::sep_chain(svc, ep)["KUBE-SEP-".len()..].to_owned()
}

/// What one part of the table contributes: the sets it declares, the chains it owns (or shares, like
/// `cluster-<n>`), and elements in any set. The table is the base fragment plus one per service port,
/// so a partial sync re-renders only the changed service ports' fragments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fragment {
    /// Sets and maps declared (their elements come from `elements`).
    pub sets: Vec<(String, Set)>,
    /// Chains.
    pub chains: Vec<(String, Chain)>,
    /// Elements: (set, key, value).
    pub elements: Vec<(String, String, Option<String>)>,
}

impl Fragment {
    fn map(&mut self, name: &str, decl: &str) {
        if self.sets.iter().any(|(n, _)| n == name) {
            return;
        }
        self.sets.push((
            name.to_owned(),
            Set {
                kind: if decl.contains(':') { "map" } else { "set" },
                decl: decl.to_owned(),
                elements: BTreeMap::new(),
            },
        ));
    }

    fn element(&mut self, set: &str, key: String, value: Option<String>) {
        self.elements.push((set.to_owned(), key, value));
    }

    fn chain(&mut self, name: &str) -> &mut Vec<String> {
        let i = match self.chains.iter().position(|(n, _)| n == name) {
            Some(i) => i,
            None => {
                self.chains.push((name.to_owned(), Chain::default()));
                self.chains.len() - 1
            }
        };
        &mut self.chains[i].1.rules
    }

    fn base_chain(&mut self, name: &str, hook: &str, rules: &[&str]) {
        self.chains.push((
            name.to_owned(),
            Chain {
                hook: Some(hook.to_owned()),
                rules: rules.iter().map(|r| (*r).to_owned()).collect(),
            },
        ));
    }
}

/// One reference-counted part of a [`Table`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Item {
    Set(String),
    Chain(String),
    Element(String, String),
}

/// The rendered table with a count of the fragments holding each set, chain and element: fragments
/// can be added and removed in any order and `rules` stays what rendering all of them at once gives
/// (a shared `cluster-<n>` chain goes when its last service does).
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The table.
    pub rules: Rules,
    refs: std::collections::HashMap<Item, usize>,
}

/// What an update touched, to cut the before and after views for the diff.
#[derive(Debug, Default)]
struct Touched {
    sets: std::collections::BTreeSet<String>,
    chains: std::collections::BTreeSet<String>,
    elements: std::collections::BTreeSet<(String, String)>,
}

impl Touched {
    fn note(&mut self, f: &Fragment) {
        self.sets.extend(f.sets.iter().map(|(n, _)| n.clone()));
        self.chains.extend(f.chains.iter().map(|(n, _)| n.clone()));
        for (set, key, _) in &f.elements {
            self.sets.insert(set.clone());
            self.elements.insert((set.clone(), key.clone()));
        }
    }
}

impl Table {
    fn add(&mut self, f: &Fragment) {
        for (name, set) in &f.sets {
            let n = self.refs.entry(Item::Set(name.clone())).or_default();
            *n += 1;
            if *n == 1 {
                self.rules.sets.insert(name.clone(), set.clone());
            }
        }
        for (name, chain) in &f.chains {
            let n = self.refs.entry(Item::Chain(name.clone())).or_default();
            *n += 1;
            if *n == 1 {
                self.rules.chains.insert(name.clone(), chain.clone());
            }
        }
        for (set, key, value) in &f.elements {
            *self
                .refs
                .entry(Item::Element(set.clone(), key.clone()))
                .or_default() += 1;
            if let Some(s) = self.rules.sets.get_mut(set) {
                s.elements.insert(key.clone(), value.clone());
            }
        }
    }

    fn release(&mut self, item: Item) -> bool {
        match self.refs.get_mut(&item) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.refs.remove(&item);
                true
            }
            None => false,
        }
    }

    fn remove(&mut self, f: &Fragment) {
        for (set, key, _) in &f.elements {
            if self.release(Item::Element(set.clone(), key.clone()))
                && let Some(s) = self.rules.sets.get_mut(set)
            {
                s.elements.remove(key);
            }
        }
        for (name, _) in &f.chains {
            if self.release(Item::Chain(name.clone())) {
                self.rules.chains.remove(name);
            }
        }
        for (name, _) in &f.sets {
            if self.release(Item::Set(name.clone())) {
                self.rules.sets.remove(name);
            }
        }
    }

    /// The part of the table `touched` names.
    fn view(&self, touched: &Touched) -> Rules {
        let mut r = Rules::default();
        for name in &touched.sets {
            if let Some(s) = self.rules.sets.get(name) {
                r.sets.insert(
                    name.clone(),
                    Set {
                        kind: s.kind,
                        decl: s.decl.clone(),
                        elements: BTreeMap::new(),
                    },
                );
            }
        }
        for (set, key) in &touched.elements {
            let value = self.rules.sets.get(set).and_then(|s| s.elements.get(key));
            if let (Some(value), Some(s)) = (value, r.sets.get_mut(set)) {
                s.elements.insert(key.clone(), value.clone());
            }
        }
        for name in &touched.chains {
            if let Some(c) = self.rules.chains.get(name) {
                r.chains.insert(name.clone(), c.clone());
            }
        }
        r
    }
}

/// The inputs of one service port's fragment, and the fragment.
#[derive(Debug, Clone)]
struct Rendered {
    svc: ServicePort,
    endpoints: Vec<Endpoint>,
    fragment: Fragment,
}

/// The table as last rendered, per service port: a partial sync compares each service port's inputs
/// with the last ones, re-renders only those that differ, and diffs only their fragments — what
/// upstream's nftables proxier does with its per-service chains and elements.
#[derive(Debug, Clone, Default)]
pub struct Incremental {
    /// The whole table.
    pub table: Table,
    services: BTreeMap<crate::snapshot::ServicePortName, Rendered>,
}

/// What [`Incremental::update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// The `nft -f` input (empty when nothing changed).
    pub text: String,
    /// Service ports re-rendered (added, changed or removed).
    pub changed: usize,
}

fn endpoints_of<'a>(snapshot: &'a Snapshot, svc: &ServicePort) -> &'a [Endpoint] {
    snapshot
        .endpoints
        .get(&svc.name)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

impl Incremental {
    /// Renders the whole table.
    pub fn full(snapshot: &Snapshot, config: &RenderConfig) -> Self {
        let mut inc = Self::default();
        inc.table.add(&base(config));
        for (name, svc) in &snapshot.services {
            let fragment = service_fragment(snapshot, config, svc);
            inc.table.add(&fragment);
            inc.services.insert(
                name.clone(),
                Rendered {
                    svc: svc.clone(),
                    endpoints: endpoints_of(snapshot, svc).to_vec(),
                    fragment,
                },
            );
        }
        inc
    }

    /// Brings the table to `snapshot`, re-rendering only the service ports whose service or endpoints
    /// differ from the last render, and returns the `nft -f` input that applies the difference. None
    /// when only a full sync can (a set changed type); `self` is then unusable.
    pub fn update(&mut self, snapshot: &Snapshot, config: &RenderConfig) -> Option<Update> {
        let mut touched = Touched::default();
        let mut changes: Vec<(crate::snapshot::ServicePortName, Option<Rendered>)> = Vec::new();
        for (name, svc) in &snapshot.services {
            let eps = endpoints_of(snapshot, svc);
            if let Some(old) = self.services.get(name) {
                if old.svc == *svc && old.endpoints == eps {
                    continue;
                }
                touched.note(&old.fragment);
            }
            let fragment = service_fragment(snapshot, config, svc);
            touched.note(&fragment);
            changes.push((
                name.clone(),
                Some(Rendered {
                    svc: svc.clone(),
                    endpoints: eps.to_vec(),
                    fragment,
                }),
            ));
        }
        for (name, old) in &self.services {
            if !snapshot.services.contains_key(name) {
                touched.note(&old.fragment);
                changes.push((name.clone(), None));
            }
        }
        if changes.is_empty() {
            return Some(Update {
                text: String::new(),
                changed: 0,
            });
        }
        let before = self.table.view(&touched);
        let changed = changes.len();
        for (name, new) in changes {
            if let Some(old) = self.services.remove(&name) {
                self.table.remove(&old.fragment);
            }
            if let Some(new) = new {
                self.table.add(&new.fragment);
                self.services.insert(name, new);
            }
        }
        let after = self.table.view(&touched);
        let text = after.partial_text(&before)?;
        Some(Update { text, changed })
    }
}

/// Renders the whole table. Pure.
pub fn render(snapshot: &Snapshot, config: &RenderConfig) -> Rules {
    Incremental::full(snapshot, config).table.rules
}

/// What every table has, whatever the services.
fn base(config: &RenderConfig) -> Fragment {
    let mut r = Fragment::default();
    let m = MASQ_MARK;
    r.map(
        "service-ips",
        "type ipv4_addr . inet_proto . inet_service : verdict",
    );
    r.map("service-nodeports", "type inet_proto . inet_service : verdict");
    r.map(
        "no-endpoint-services",
        "type ipv4_addr . inet_proto . inet_service : verdict",
    );
    r.map(
        "no-endpoint-nodeports",
        "type inet_proto . inet_service : verdict",
    );
    r.map("hairpin", "type ipv4_addr . ipv4_addr");

    r.base_chain(
        "nat-prerouting",
        "type nat hook prerouting priority dstnat; policy accept;",
        &["jump services"],
    );
    r.base_chain(
        "nat-output",
        "type nat hook output priority -100; policy accept;",
        &["jump services"],
    );
    r.base_chain(
        "nat-postrouting",
        "type nat hook postrouting priority srcnat; policy accept;",
        &[
            "jump masquerading",
            "ct status dnat ip saddr . ip daddr @hairpin masquerade",
        ],
    );
    // The filter checks run after DNAT (priority filter > dstnat): a new connection still addressed
    // to the service CIDR found no endpoint.
    let reject_rest = format!(
        "ct state new ip daddr {} goto reject-chain comment \"service CIDR address without rules\"",
        config.service_cidr
    );
    let no_endpoints = "ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services";
    r.base_chain(
        "filter-input",
        "type filter hook input priority filter; policy accept;",
        &[
            "ct state new meta l4proto . th dport vmap @no-endpoint-nodeports",
            no_endpoints,
        ],
    );
    for (chain, hook) in [("filter-forward", "forward"), ("filter-output", "output")] {
        r.base_chain(
            chain,
            &format!("type filter hook {hook} priority filter; policy accept;"),
            &[no_endpoints, &reject_rest],
        );
    }
    // A TCP reset first: an ICMP error for a locally generated packet routed to `lo` (the service
    // CIDR route, see sink) never reaches the socket; a reset does.
    r.chain("reject-chain").extend([
        "meta l4proto tcp reject with tcp reset".to_owned(),
        "reject".to_owned(),
    ]);
    r.chain("mark-for-masquerade")
        .push(format!("meta mark set meta mark | {m:#x}"));
    r.chain("masquerading").extend([
        format!("meta mark & {m:#x} == 0 return"),
        format!("meta mark set meta mark ^ {m:#x}"),
        "masquerade fully-random".to_owned(),
    ]);
    let services = r.chain("services");
    if let Some(cidr) = config.cluster_cidr {
        services.push(format!(
            "ip daddr {} ip saddr != {cidr} jump mark-for-masquerade",
            config.service_cidr
        ));
    }
    services.push("ip daddr . meta l4proto . th dport vmap @service-ips".into());
    services.push("fib daddr type local meta l4proto . th dport vmap @service-nodeports".into());
    r
}

/// One service port's part of the table. Pure.
pub fn service_fragment(snapshot: &Snapshot, config: &RenderConfig, svc: &ServicePort) -> Fragment {
    let mut r = Fragment::default();
    // Hairpin: this service port's endpoints on this node (an endpoint without a node name may be
    // here too).
    for ep in endpoints_of(snapshot, svc) {
        if ep.node_name.as_deref().is_none_or(|n| n == config.node_name) {
            r.element("hairpin", format!("{} . {}", ep.ip, ep.ip), None);
        }
    }
    render_service(&mut r, snapshot, config, svc);
    r
}

fn render_service(r: &mut Fragment, snapshot: &Snapshot, config: &RenderConfig, svc: &ServicePort) {
    let cat = snapshot.categorize(svc, &config.node_name);
    let proto = svc.name.protocol.lower();
    let vip_key = format!("{} . {proto} . {}", svc.cluster_ip, svc.port);
    let np_key = svc.node_port.map(|np| format!("{proto} . {np}"));
    if !cat.any {
        r.element("no-endpoint-services", vip_key, Some("goto reject-chain".into()));
        if let Some(k) = np_key {
            r.element("no-endpoint-nodeports", k, Some("goto reject-chain".into()));
        }
        return;
    }
    let special = svc.affinity_timeout.is_some() || svc.internal_local || svc.external_local;
    if !special {
        // The scalable layout: elements only.
        let n = cat.all.len();
        ensure_shared(r, n);
        r.element("service-ips", vip_key.clone(), Some(format!("goto cluster-{n}")));
        for (i, ep) in cat.all.iter().enumerate() {
            r.element(
                &format!("cluster-endpoints-{n}"),
                format!("{vip_key} . {i}"),
                Some(format!("{} . {}", ep.ip, ep.port)),
            );
        }
        if let Some(k) = np_key {
            r.element("service-nodeports", k.clone(), Some(format!("goto external-{n}")));
            for (i, ep) in cat.all.iter().enumerate() {
                r.element(
                    &format!("external-endpoints-{n}"),
                    format!("{k} . {i}"),
                    Some(format!("{} . {}", ep.ip, ep.port)),
                );
            }
        }
        return;
    }

    // Upstream's per-service chains.
    let h = hash(svc);
    let (svc_chain, svl_chain, ext_chain) = (format!("svc-{h}"), format!("svl-{h}"), format!("ext-{h}"));
    let wants_svc = !svc.internal_local || svc.external_local;
    let wants_svl = (svc.internal_local || svc.external_local) && !cat.local.is_empty();
    let mut used: Vec<&Endpoint> = if wants_svc { cat.all.clone() } else { Vec::new() };
    if wants_svl {
        for ep in &cat.local {
            if !used.contains(ep) {
                used.push(ep);
            }
        }
    }
    for ep in &used {
        let sep = sep_name(svc, ep);
        let chain = format!("sep-{sep}");
        if let Some(timeout) = svc.affinity_timeout {
            r.map(
                &format!("affinity-{sep}"),
                &format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"),
            );
            r.chain(&chain)
                .push(format!("update @affinity-{sep} {{ ip saddr }}"));
        }
        r.chain(&chain)
            .push(format!("meta l4proto {proto} dnat ip to {}", ep.addr()));
    }
    if wants_svc {
        choice_chain(r, &svc_chain, svc, &cat.all);
    }
    if wants_svl {
        choice_chain(r, &svl_chain, svc, &cat.local);
    }
    let cluster_chain = if svc.internal_local {
        &svl_chain
    } else {
        &svc_chain
    };
    if cat.cluster.is_empty() {
        r.element("no-endpoint-services", vip_key, Some("drop".into()));
    } else {
        r.element("service-ips", vip_key, Some(format!("goto {cluster_chain}")));
    }
    let Some(k) = np_key else { return };
    let ext = r.chain(&ext_chain);
    if svc.external_local {
        if let Some(cidr) = config.cluster_cidr {
            ext.push(format!("ip saddr {cidr} goto {svc_chain}"));
        }
        ext.push("fib saddr type local jump mark-for-masquerade".into());
        ext.push(format!("fib saddr type local goto {svc_chain}"));
        if cat.local.is_empty() {
            ext.push("drop".into());
        } else {
            ext.push(format!("goto {svl_chain}"));
        }
    } else {
        ext.push("jump mark-for-masquerade".into());
        ext.push(format!("goto {svc_chain}"));
    }
    r.element("service-nodeports", k, Some(format!("goto {ext_chain}")));
}

/// The chain and map shared by every plain service with `n` endpoints.
fn ensure_shared(r: &mut Fragment, n: usize) {
    r.map(
        &format!("cluster-endpoints-{n}"),
        &format!("typeof ip daddr . meta l4proto . th dport . numgen random mod {n} : ip daddr . th dport"),
    );
    r.map(
        &format!("external-endpoints-{n}"),
        &format!("typeof meta l4proto . th dport . numgen random mod {n} : ip daddr . th dport"),
    );
    r.chain(&format!("cluster-{n}")).push(format!(
        "dnat ip to ip daddr . meta l4proto . th dport . numgen random mod {n} map @cluster-endpoints-{n}"
    ));
    r.chain(&format!("external-{n}")).extend([
        "jump mark-for-masquerade".to_owned(),
        format!("dnat ip to meta l4proto . th dport . numgen random mod {n} map @external-endpoints-{n}"),
    ]);
}

/// A per-service chain choosing an endpoint: affinity first, then numgen over the endpoints.
fn choice_chain(r: &mut Fragment, chain: &str, svc: &ServicePort, eps: &[&Endpoint]) {
    let mut rules = Vec::new();
    if svc.affinity_timeout.is_some() {
        for ep in eps {
            let sep = sep_name(svc, ep);
            rules.push(format!("ip saddr @affinity-{sep} goto sep-{sep}"));
        }
    }
    let arms: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, ep)| format!("{i} : goto sep-{}", sep_name(svc, ep)))
        .collect();
    rules.push(format!(
        "numgen random mod {} vmap {{ {} }}",
        eps.len(),
        arms.join(", ")
    ));
    r.chain(chain).extend(rules);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::snapshot::{Protocol, ServicePortName};

    fn config() -> RenderConfig {
        RenderConfig {
            node_name: "n1".into(),
            cluster_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
            service_cidr: "10.96.0.0/12".parse().expect("cidr"),
            node_ips: Vec::new(),
        }
    }

    fn name(i: usize) -> ServicePortName {
        ServicePortName {
            namespace: "ns".into(),
            name: format!("svc-{i}"),
            port: String::new(),
            protocol: Protocol::Tcp,
        }
    }

    fn ep(ip: u32, node: &str) -> Endpoint {
        Endpoint {
            ip: std::net::Ipv4Addr::from(0x0af4_0000 + ip),
            port: 8080,
            ready: true,
            serving: true,
            terminating: false,
            node_name: Some(node.into()),
        }
    }

    /// Service i with `n` endpoints (ids from `first`); every third a NodePort.
    fn put(s: &mut Snapshot, i: usize, first: u32, n: u32) {
        let svc = ServicePort {
            name: name(i),
            cluster_ip: std::net::Ipv4Addr::from(0x0a60_0100 + i as u32),
            port: 80,
            node_port: i.is_multiple_of(3).then_some(30000 + i as u16),
            affinity_timeout: None,
            internal_local: false,
            external_local: false,
        };
        s.services.insert(name(i), svc);
        let node = |e: u32| if e.is_multiple_of(4) { "n1" } else { "n2" };
        s.endpoints
            .insert(name(i), (first..first + n).map(|e| ep(e, node(e))).collect());
    }

    fn many(n: usize) -> Snapshot {
        let mut s = Snapshot::default();
        for i in 0..n {
            put(&mut s, i, 100 * i as u32, 3);
        }
        s
    }

    #[test]
    fn a_partial_sync_touches_only_the_changed_service() {
        let mut s = many(50);
        let mut inc = Incremental::full(&s, &config());
        // svc-7's first endpoint is replaced.
        s.endpoints.get_mut(&name(7)).expect("svc-7")[0] = ep(9999, "n2");
        let update = inc.update(&s, &config()).expect("partial");
        assert_eq!(update.changed, 1);
        let vip7 = "10.96.1.7 ";
        for line in update.text.lines() {
            assert!(line.contains(vip7) || line.contains("hairpin"), "{line}");
        }
        assert!(update.text.contains("10.244.39.15 . 8080"), "{}", update.text);
        // Nothing changed: nothing to apply.
        let again = inc.update(&s, &config()).expect("partial");
        assert_eq!((again.text.as_str(), again.changed), ("", 0));
        assert_eq!(inc.table.rules, render(&s, &config()));
    }

    #[test]
    fn partials_then_full_equal_full_alone() {
        let c = config();
        let mut s = many(20);
        let mut inc = Incremental::full(&s, &c);
        let mut texts = Vec::new();
        type Step = Box<dyn Fn(&mut Snapshot)>;
        let steps: Vec<Step> = vec![
            // An endpoint count no other service has: a new shared chain and map.
            Box::new(|s| put(s, 3, 300, 7)),
            // ... and back: the shared chain and map go.
            Box::new(|s| put(s, 3, 300, 3)),
            // A new service and a removed one.
            Box::new(|s| put(s, 40, 4000, 2)),
            Box::new(|s| {
                s.services.remove(&name(5));
                s.endpoints.remove(&name(5));
            }),
            // No endpoints: reject.
            Box::new(|s| {
                s.endpoints.insert(name(6), Vec::new());
            }),
            // Session affinity and Local policies: per-service chains.
            Box::new(|s| {
                if let Some(svc) = s.services.get_mut(&name(9)) {
                    svc.affinity_timeout = Some(60);
                    svc.external_local = true;
                }
            }),
            Box::new(|s| {
                if let Some(svc) = s.services.get_mut(&name(10)) {
                    svc.internal_local = true;
                }
            }),
            Box::new(|s| put(s, 9, 900, 2)),
            // Many at once.
            Box::new(|s| {
                for i in 11..18 {
                    put(s, i, 5000 + 10 * i as u32, (i % 4) as u32 + 1);
                }
            }),
        ];
        for step in &steps {
            step(&mut s);
            let update = inc.update(&s, &c).expect("partial");
            assert!(update.changed > 0);
            texts.push(update.text);
            // The model after each partial is exactly the full render.
            assert_eq!(inc.table.rules, render(&s, &c));
            assert_eq!(inc.table.rules.full_text(), render(&s, &c).full_text());
        }
        // The partial texts are what diffing whole renders gives, line for line (as sets).
        let mut prev = many(20);
        for (step, text) in steps.iter().zip(&texts) {
            let mut next = prev.clone();
            step(&mut next);
            let whole = render(&next, &c).partial_text(&render(&prev, &c)).expect("diff");
            let sorted = |t: &str| {
                let mut l: Vec<String> = t.lines().map(str::to_owned).collect();
                l.sort();
                l
            };
            assert_eq!(sorted(text), sorted(&whole));
            prev = next;
        }
    }

    fn rules(elements: &[(&str, &str)], chains: &[(&str, &[&str])]) -> Rules {
        let mut r = Rules::default();
        r.map("m", "type ipv4_addr : verdict");
        for (k, v) in elements {
            r.element("m", (*k).into(), Some((*v).into()));
        }
        for (name, rules) in chains {
            r.chain(name).extend(rules.iter().map(|s| (*s).to_owned()));
        }
        r
    }

    #[test]
    fn partial_updates_elements_and_chains() {
        let old = rules(
            &[("1.1.1.1", "goto a"), ("2.2.2.2", "goto a")],
            &[("a", &["accept"]), ("b", &["drop"])],
        );
        let new = rules(
            &[("1.1.1.1", "goto c"), ("3.3.3.3", "goto a")],
            &[("a", &["accept"]), ("c", &["drop"])],
        );
        let text = new.partial_text(&old).expect("partial");
        assert_eq!(
            text,
            "add chain ip kube-proxy c\n\
             delete element ip kube-proxy m { 1.1.1.1, 2.2.2.2 }\n\
             add element ip kube-proxy m { 1.1.1.1 : goto c, 3.3.3.3 : goto a }\n\
             add rule ip kube-proxy c drop\n\
             flush chain ip kube-proxy b\ndelete chain ip kube-proxy b\n"
        );
        assert_eq!(new.partial_text(&new).as_deref(), Some(""));
    }

    #[test]
    fn a_new_base_chain_needs_a_full_sync() {
        let old = Rules::default();
        let mut new = Rules::default();
        new.base_chain("x", "type nat hook output priority dstnat;", &[]);
        assert_eq!(new.partial_text(&old), None);
    }
}
