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

    fn map(&mut self, name: &str, decl: &str) -> &mut Set {
        self.sets.entry(name.to_owned()).or_insert_with(|| Set {
            kind: if decl.contains(':') { "map" } else { "set" },
            decl: decl.to_owned(),
            elements: BTreeMap::new(),
        })
    }

    fn element(&mut self, set: &str, key: String, value: Option<String>) {
        if let Some(s) = self.sets.get_mut(set) {
            s.elements.insert(key, value);
        }
    }

    fn chain(&mut self, name: &str) -> &mut Vec<String> {
        &mut self.chains.entry(name.to_owned()).or_default().rules
    }

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
                    let _ = writeln!(out, "add {} ip {t} {name} {{ {} }}", set.kind, set.decl);
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

/// Renders the whole table. Pure.
pub fn render(snapshot: &Snapshot, config: &RenderConfig) -> Rules {
    let mut r = Rules::default();
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

    for svc in snapshot.services.values() {
        render_service(&mut r, snapshot, config, svc);
    }
    // Hairpin: this node's endpoints (an endpoint without a node name may be here too).
    for eps in snapshot.endpoints.values() {
        for ep in eps {
            if ep.node_name.as_deref().is_none_or(|n| n == config.node_name) {
                r.element("hairpin", format!("{} . {}", ep.ip, ep.ip), None);
            }
        }
    }
    r
}

fn render_service(r: &mut Rules, snapshot: &Snapshot, config: &RenderConfig, svc: &ServicePort) {
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
fn ensure_shared(r: &mut Rules, n: usize) {
    if r.chains.contains_key(&format!("cluster-{n}")) {
        return;
    }
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
fn choice_chain(r: &mut Rules, chain: &str, svc: &ServicePort, eps: &[&Endpoint]) {
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
