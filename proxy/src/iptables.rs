//! iptables mode: the snapshot rendered as kube-proxy's chain layout, and the iptables-restore input
//! that applies it (whole, or only the chains that changed).
//!
//! Mirrors upstream pkg/proxy/iptables/proxier.go: `KUBE-SERVICES` matches each ClusterIP:port and
//! jumps to `KUBE-SVC-<hash>` (or `KUBE-SVL-<hash>`, the node-local endpoints), which picks a
//! `KUBE-SEP-<hash>` with `statistic --mode random` (probability 1/n, 1/(n-1), …, so each endpoint gets
//! an equal share), and the SEP chain DNATs. NodePorts go through `KUBE-NODEPORTS` → `KUBE-EXT-<hash>`
//! (masquerade, or for externalTrafficPolicy Local, straight to the local endpoints). ClientIP affinity
//! is the `recent` match per endpoint. Masquerading is a mark (`KUBE-MARK-MASQ`, bit 0x4000) acted on
//! in `KUBE-POSTROUTING`. In the filter table, `KUBE-SERVICES` rejects services without endpoints and,
//! last, anything still addressed to the service CIDR (no rule yet: it must not leave the node).
//! Chain names hash like upstream's (sha256 of `ns/svc:port` + protocol [+ endpoint], base32, 16 chars),
//! so a Kubernetes person finds the same names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::{
    MASQ_MARK, RenderConfig,
    snapshot::{Endpoint, ServicePort, Snapshot},
};

/// Chain prefixes that belong to us (cleanup removes every chain starting with one of them).
pub const OUR_CHAIN_PREFIXES: &[&str] = &["KUBE-SVC-", "KUBE-SVL-", "KUBE-SEP-", "KUBE-EXT-"];
/// Fixed chains that belong to us.
pub const OUR_FIXED_CHAINS: &[&str] = &[
    "KUBE-SERVICES",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
    "KUBE-MARK-MASQ",
    "KUBE-EXTERNAL-SERVICES",
    "KUBE-FORWARD",
];

/// Whether a chain name is one of ours.
pub fn is_our_chain(name: &str) -> bool {
    OUR_FIXED_CHAINS.contains(&name) || OUR_CHAIN_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A jump from a built-in chain into ours (applied with `iptables -C`/`-I`, not by restore, so that
/// `--noflush` never rewrites a built-in chain that others own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jump {
    /// `nat` or `filter`.
    pub table: &'static str,
    /// The built-in chain.
    pub chain: &'static str,
    /// The rule's arguments, e.g. `["-m", "comment", "--comment", "…", "-j", "KUBE-SERVICES"]`.
    pub args: Vec<String>,
}

/// The rendered ruleset: per table, each of our chains with its rules (sorted by name), plus jumps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `filter` and `nat`: chain name → rule lines (each the text after `-A <chain> `).
    pub tables: BTreeMap<&'static str, BTreeMap<String, Vec<String>>>,
    /// The jumps from built-in chains.
    pub jumps: Vec<Jump>,
}

impl Rules {
    /// The number of rules (jumps included).
    pub fn rule_count(&self) -> usize {
        self.tables
            .values()
            .flat_map(|t| t.values())
            .map(Vec::len)
            .sum::<usize>()
            + self.jumps.len()
    }

    fn add(&mut self, table: &'static str, chain: &str, rule: String) {
        self.chain(table, chain).push(rule);
    }

    fn chain(&mut self, table: &'static str, chain: &str) -> &mut Vec<String> {
        self.tables
            .entry(table)
            .or_default()
            .entry(chain.to_owned())
            .or_default()
    }

    /// iptables-restore input (for `--noflush`): every chain when `old` is None, otherwise only the
    /// chains that differ from `old`; chains of `old` that are gone, and on a full sync our chains
    /// found in the kernel (`existing`) that are not wanted, are flushed and deleted. A full sync also
    /// inserts the jumps from built-in chains that `existing` lacks (all of them without `existing`):
    /// `-I` into a built-in chain that is never declared, so nobody else's rules are rewritten.
    pub fn restore_text(&self, old: Option<&Rules>, existing: Option<&Existing>) -> String {
        let mut out = String::new();
        for table in ["filter", "nat"] {
            let empty = BTreeMap::new();
            let new = self.tables.get(table).unwrap_or(&empty);
            let prev = old.and_then(|o| o.tables.get(table));
            let changed: Vec<(&String, &Vec<String>)> = new
                .iter()
                .filter(|(name, rules)| prev.and_then(|p| p.get(*name)) != Some(*rules))
                .collect();
            let mut gone: Vec<&str> = prev
                .into_iter()
                .flat_map(|p| p.keys())
                .filter(|name| !new.contains_key(*name))
                .map(String::as_str)
                .collect();
            let mut jumps = Vec::new();
            if old.is_none() {
                if let Some(existing) = existing {
                    gone.extend(
                        existing
                            .chains
                            .iter()
                            .filter(|(t, name)| t == table && !new.contains_key(name))
                            .map(|(_, name)| name.as_str()),
                    );
                }
                for j in self.jumps.iter().filter(|j| j.table == table) {
                    if existing.is_none_or(|e| !e.has_jump(j)) {
                        jumps.push(j);
                    }
                }
            }
            gone.sort_unstable();
            gone.dedup();
            if changed.is_empty() && gone.is_empty() && jumps.is_empty() {
                continue;
            }
            let _ = writeln!(out, "*{table}");
            // Declaring a chain with --noflush creates it or flushes it: the rules below replace it.
            for (name, _) in &changed {
                let _ = writeln!(out, ":{name} - [0:0]");
            }
            for name in &gone {
                let _ = writeln!(out, ":{name} - [0:0]");
            }
            for j in jumps {
                let _ = writeln!(out, "-I {} 1 {}", j.chain, j.quoted_args());
            }
            for (name, rules) in &changed {
                for rule in *rules {
                    let _ = writeln!(out, "-A {name} {rule}");
                }
            }
            for name in &gone {
                let _ = writeln!(out, "-X {name}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }

    /// The whole ruleset as restore input into a namespace where nothing of ours exists yet.
    pub fn text(&self) -> String {
        self.restore_text(None, None)
    }
}

/// What of ours is in the kernel now, read from `iptables-save`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Existing {
    /// Our chains, as (table, chain).
    pub chains: Vec<(String, String)>,
    /// Rules of built-in chains jumping to our chains, as (table, chain, target, the rule as saved
    /// after `-A `), once per rule.
    pub jumps: Vec<(String, String, String, String)>,
}

impl Existing {
    /// Parses `iptables-save` output (the filter and nat tables matter).
    pub fn parse(save: &str) -> Self {
        let mut existing = Self::default();
        let mut table = String::new();
        for line in save.lines() {
            if let Some(t) = line.strip_prefix('*') {
                table = t.trim().to_owned();
            } else if let Some(name) = line.strip_prefix(':').and_then(|l| l.split_whitespace().next()) {
                if is_our_chain(name) {
                    existing.chains.push((table.clone(), name.to_owned()));
                }
            } else if let Some(rule) = line.strip_prefix("-A ") {
                let chain = rule.split_whitespace().next().unwrap_or_default();
                let target = rule
                    .rsplit_once(" -j ")
                    .map(|(_, t)| t.split_whitespace().next().unwrap_or_default());
                if let Some(target) = target.filter(|t| is_our_chain(t) && !is_our_chain(chain)) {
                    existing.jumps.push((
                        table.clone(),
                        chain.to_owned(),
                        target.to_owned(),
                        rule.to_owned(),
                    ));
                }
            }
        }
        existing
    }

    fn has_jump(&self, j: &Jump) -> bool {
        self.jumps.iter().any(|(t, c, target, _)| {
            t == j.table && c == j.chain && Some(target.as_str()) == j.args.last().map(String::as_str)
        })
    }

    /// Restore input removing all of it: our jumps (`-D`, once per rule found), then our chains.
    pub fn cleanup_text(&self) -> String {
        let mut out = String::new();
        for table in ["filter", "nat"] {
            let chains: Vec<&String> = self
                .chains
                .iter()
                .filter(|(t, _)| t == table)
                .map(|(_, c)| c)
                .collect();
            // Deleted by the rule exactly as saved (iptables-nft matches a rule spec in its own order).
            let deletes: Vec<&String> = self
                .jumps
                .iter()
                .filter(|(t, ..)| t == table)
                .map(|(.., rule)| rule)
                .collect();
            if chains.is_empty() && deletes.is_empty() {
                continue;
            }
            let _ = writeln!(out, "*{table}");
            for c in &chains {
                let _ = writeln!(out, ":{c} - [0:0]");
            }
            for rule in deletes {
                let _ = writeln!(out, "-D {rule}");
            }
            for c in &chains {
                let _ = writeln!(out, "-X {c}");
            }
            out.push_str("COMMIT\n");
        }
        out
    }
}

impl Jump {
    /// The arguments, quoted for restore input.
    fn quoted_args(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("{a:?}")
                } else {
                    a.clone()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// upstream's portProtoHash: sha256, base32, the first 16 characters.
fn hash(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    data_encoding::BASE32.encode(digest.as_ref())[..16].to_owned()
}

/// `KUBE-SVC-<hash>`, the chain of a service port's endpoints.
pub fn svc_chain(svc: &ServicePort) -> String {
    format!(
        "KUBE-SVC-{}",
        hash(&format!("{}{}", svc.name, svc.name.protocol.lower()))
    )
}

/// `KUBE-SVL-<hash>`, the chain of a service port's local endpoints.
pub fn svl_chain(svc: &ServicePort) -> String {
    format!(
        "KUBE-SVL-{}",
        hash(&format!("{}{}", svc.name, svc.name.protocol.lower()))
    )
}

/// `KUBE-EXT-<hash>`, the chain of a service port's external (node port) traffic.
pub fn ext_chain(svc: &ServicePort) -> String {
    format!(
        "KUBE-EXT-{}",
        hash(&format!("{}{}", svc.name, svc.name.protocol.lower()))
    )
}

/// `KUBE-SEP-<hash>`, the chain of one endpoint of a service port.
pub fn sep_chain(svc: &ServicePort, ep: &Endpoint) -> String {
    format!(
        "KUBE-SEP-{}",
        hash(&format!("{}{}{}", svc.name, svc.name.protocol.lower(), ep.addr()))
    )
}

fn jump(table: &'static str, chain: &'static str, comment: &str, target: &str, new_only: bool) -> Jump {
    let mut args = Vec::new();
    if new_only {
        args.extend(["-m", "conntrack", "--ctstate", "NEW"].map(String::from));
    }
    args.extend(["-m", "comment", "--comment", comment, "-j", target].map(String::from));
    Jump { table, chain, args }
}

/// The jumps from the built-in chains into ours (upstream's iptablesJumpChains).
pub fn jumps() -> Vec<Jump> {
    vec![
        jump(
            "nat",
            "PREROUTING",
            "kubernetes service portals",
            "KUBE-SERVICES",
            false,
        ),
        jump(
            "nat",
            "OUTPUT",
            "kubernetes service portals",
            "KUBE-SERVICES",
            false,
        ),
        jump(
            "nat",
            "POSTROUTING",
            "kubernetes postrouting rules",
            "KUBE-POSTROUTING",
            false,
        ),
        jump(
            "filter",
            "INPUT",
            "kubernetes externally-visible service portals",
            "KUBE-EXTERNAL-SERVICES",
            true,
        ),
        jump(
            "filter",
            "FORWARD",
            "kubernetes externally-visible service portals",
            "KUBE-EXTERNAL-SERVICES",
            true,
        ),
        jump(
            "filter",
            "FORWARD",
            "kubernetes service portals",
            "KUBE-SERVICES",
            true,
        ),
        jump(
            "filter",
            "OUTPUT",
            "kubernetes service portals",
            "KUBE-SERVICES",
            true,
        ),
        jump(
            "filter",
            "FORWARD",
            "kubernetes forwarding rules",
            "KUBE-FORWARD",
            false,
        ),
    ]
}

/// Renders the whole ruleset. Pure: the same snapshot and config give the same rules.
pub fn render(snapshot: &Snapshot, config: &RenderConfig) -> Rules {
    let mut r = Rules {
        jumps: jumps(),
        ..Default::default()
    };
    // The fixed chains exist even when empty (the jumps point at them).
    for chain in [
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-POSTROUTING",
        "KUBE-MARK-MASQ",
    ] {
        r.chain("nat", chain);
    }
    for chain in ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD"] {
        r.chain("filter", chain);
    }
    r.add(
        "nat",
        "KUBE-MARK-MASQ",
        format!("-j MARK --or-mark {MASQ_MARK:#x}"),
    );
    r.add(
        "nat",
        "KUBE-POSTROUTING",
        format!("-m mark ! --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j RETURN"),
    );
    r.add(
        "nat",
        "KUBE-POSTROUTING",
        format!("-j MARK --xor-mark {MASQ_MARK:#x}"),
    );
    r.add(
        "nat",
        "KUBE-POSTROUTING",
        "-m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully"
            .into(),
    );
    // Upstream's KUBE-FORWARD: marked and established service traffic passes a DROP forward policy.
    r.add(
        "filter",
        "KUBE-FORWARD",
        format!("-m comment --comment \"kubernetes forwarding rules\" -m mark --mark {MASQ_MARK:#x}/{MASQ_MARK:#x} -j ACCEPT"),
    );
    r.add(
        "filter",
        "KUBE-FORWARD",
        "-m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT".into(),
    );

    for svc in snapshot.services.values() {
        render_service(&mut r, snapshot, config, svc);
    }

    r.add(
        "nat",
        "KUBE-SERVICES",
        "-m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS".into(),
    );
    for (proto, with) in [("-p tcp ", "tcp-reset"), ("", "icmp-port-unreachable")] {
        r.add(
            "filter",
            "KUBE-SERVICES",
            format!(
                "-m comment --comment \"service CIDR address without rules\" {proto}-d {} -j REJECT --reject-with {with}",
                config.service_cidr
            ),
        );
    }
    r
}

fn render_service(r: &mut Rules, snapshot: &Snapshot, config: &RenderConfig, svc: &ServicePort) {
    let cat = snapshot.categorize(svc, &config.node_name);
    let name = &svc.name;
    let proto = svc.name.protocol.lower();
    let vip = format!(
        "-m {proto} -p {proto} -d {}/32 --dport {}",
        svc.cluster_ip, svc.port
    );
    let svc_chain = svc_chain(svc);
    let svl_chain = svl_chain(svc);

    if !cat.any {
        let comment = format!("-m comment --comment \"{name} has no endpoints\"");
        // A TCP reset, not upstream's ICMP: an ICMP error for a locally generated packet routed to
        // `lo` (the service CIDR route, see sink) never reaches the socket; a reset does.
        let with = if proto == "tcp" {
            "tcp-reset"
        } else {
            "icmp-port-unreachable"
        };
        r.add(
            "filter",
            "KUBE-SERVICES",
            format!("{comment} {vip} -j REJECT --reject-with {with}"),
        );
        if let Some(np) = svc.node_port {
            r.add(
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                format!("{comment} -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {np} -j REJECT --reject-with {with}"),
            );
        }
        return;
    }

    // KUBE-SVC (every endpoint) is needed by the cluster path unless it is Local, and by the
    // short-circuit of pod and node traffic of an external Local path; KUBE-SVL by the Local paths.
    let wants_svc = !svc.internal_local || svc.external_local;
    let wants_svl = (svc.internal_local || svc.external_local) && !cat.local.is_empty();
    // The endpoint chains: one per endpoint a chosen chain uses.
    let mut used: Vec<&Endpoint> = if wants_svc { cat.all.clone() } else { Vec::new() };
    if wants_svl {
        for ep in &cat.local {
            if !used.contains(ep) {
                used.push(ep);
            }
        }
    }
    for ep in &used {
        let sep = sep_chain(svc, ep);
        r.add(
            "nat",
            &sep,
            format!("-m comment --comment {name} -s {}/32 -j KUBE-MARK-MASQ", ep.ip),
        );
        let recent = match svc.affinity_timeout {
            Some(_) => format!(" -m recent --name {sep} --mask 255.255.255.255 --rsource --set"),
            None => String::new(),
        };
        r.add(
            "nat",
            &sep,
            format!(
                "-m comment --comment {name}{recent} -m {proto} -p {proto} -j DNAT --to-destination {}",
                ep.addr()
            ),
        );
    }

    // The cluster path.
    let cluster_chain = if svc.internal_local {
        &svl_chain
    } else {
        &svc_chain
    };
    if cat.cluster.is_empty() {
        r.add(
            "filter",
            "KUBE-SERVICES",
            format!("-m comment --comment \"{name} has no local endpoints\" {vip} -j DROP"),
        );
    } else {
        r.add(
            "nat",
            "KUBE-SERVICES",
            format!("-m comment --comment \"{name} cluster IP\" {vip} -j {cluster_chain}"),
        );
        if let Some(cidr) = config.cluster_cidr {
            r.add(
                "nat",
                cluster_chain,
                format!("-m comment --comment \"{name} cluster IP\" {vip} ! -s {cidr} -j KUBE-MARK-MASQ"),
            );
        }
    }
    if wants_svc {
        endpoint_choice(r, &svc_chain, svc, &cat.all);
    }
    if wants_svl {
        endpoint_choice(r, &svl_chain, svc, &cat.local);
    }

    // The external (node port) path.
    let Some(np) = svc.node_port else { return };
    let ext = ext_chain(svc);
    r.add(
        "nat",
        "KUBE-NODEPORTS",
        format!("-m comment --comment {name} -m {proto} -p {proto} --dport {np} -j {ext}"),
    );
    if svc.external_local {
        if let Some(cidr) = config.cluster_cidr {
            r.add(
                "nat",
                &ext,
                format!("-m comment --comment \"pod traffic for {name} external destinations\" -s {cidr} -j {svc_chain}"),
            );
        }
        r.add(
            "nat",
            &ext,
            format!("-m comment --comment \"masquerade LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ"),
        );
        r.add(
            "nat",
            &ext,
            format!("-m comment --comment \"route LOCAL traffic for {name} external destinations\" -m addrtype --src-type LOCAL -j {svc_chain}"),
        );
        if cat.local.is_empty() {
            r.add(
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                format!("-m comment --comment \"{name} has no local endpoints\" -m addrtype --dst-type LOCAL -m {proto} -p {proto} --dport {np} -j DROP"),
            );
        } else {
            r.add("nat", &ext, format!("-j {svl_chain}"));
        }
    } else {
        r.add(
            "nat",
            &ext,
            format!("-m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ"),
        );
        r.add("nat", &ext, format!("-j {svc_chain}"));
    }
}

/// The rules of a KUBE-SVC/KUBE-SVL chain: affinity first (a client seen recently goes back to its
/// endpoint), then the random choice with probabilities 1/n, 1/(n-1), … 1 (the last has no match).
fn endpoint_choice(r: &mut Rules, chain: &str, svc: &ServicePort, eps: &[&Endpoint]) {
    let name = &svc.name;
    if let Some(timeout) = svc.affinity_timeout {
        for ep in eps {
            let sep = sep_chain(svc, ep);
            r.add(
                "nat",
                chain,
                format!(
                    "-m comment --comment \"{name} -> {}\" -m recent --name {sep} --mask 255.255.255.255 --rsource --rcheck --seconds {timeout} --reap -j {sep}",
                    ep.addr()
                ),
            );
        }
    }
    let n = eps.len();
    for (i, ep) in eps.iter().enumerate() {
        let sep = sep_chain(svc, ep);
        let statistic = if i + 1 < n {
            format!(
                " -m statistic --mode random --probability {:.10}",
                1.0 / (n - i) as f64
            )
        } else {
            String::new()
        };
        r.add(
            "nat",
            chain,
            format!(
                "-m comment --comment \"{name} -> {}\"{statistic} -j {sep}",
                ep.addr()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_match_upstream() {
        // upstream's proxier_test.go: servicePortChainName("ns1/svc1:p80", "tcp").
        assert_eq!(hash("ns1/svc1:p80tcp"), "XPGD46QRK7WJZT7O");
    }

    #[test]
    fn restore_text_writes_only_changed_chains_and_deletes_gone_ones() {
        let mut old = Rules::default();
        old.add("nat", "KUBE-SERVICES", "-j KUBE-SVC-A".into());
        old.add("nat", "KUBE-SVC-A", "-j KUBE-SEP-A".into());
        old.add("nat", "KUBE-SEP-A", "-j DNAT --to-destination 10.0.0.1:80".into());
        let mut new = old.clone();
        new.tables.get_mut("nat").expect("nat").remove("KUBE-SEP-A");
        new.tables
            .get_mut("nat")
            .expect("nat")
            .insert("KUBE-SVC-A".into(), vec!["-j KUBE-SEP-B".into()]);
        new.add("nat", "KUBE-SEP-B", "-j DNAT --to-destination 10.0.0.2:80".into());
        let text = new.restore_text(Some(&old), None);
        assert_eq!(
            text,
            "*nat\n:KUBE-SEP-B - [0:0]\n:KUBE-SVC-A - [0:0]\n:KUBE-SEP-A - [0:0]\n\
             -A KUBE-SEP-B -j DNAT --to-destination 10.0.0.2:80\n-A KUBE-SVC-A -j KUBE-SEP-B\n\
             -X KUBE-SEP-A\nCOMMIT\n"
        );
        assert_eq!(new.restore_text(Some(&new), None), "");
    }

    #[test]
    fn existing_rules_are_read_from_iptables_save() {
        let save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-OLD - [0:0]\n:CNI-X - [0:0]\n\
                    -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
                    -A KUBE-SERVICES -j KUBE-SVC-OLD\n-A PREROUTING -j CNI-X\nCOMMIT\n";
        let e = Existing::parse(save);
        assert_eq!(
            e.chains,
            [
                ("nat".to_owned(), "KUBE-SERVICES".to_owned()),
                ("nat".into(), "KUBE-SVC-OLD".into())
            ]
        );
        assert_eq!(e.jumps.len(), 1);
        assert_eq!(
            (e.jumps[0].1.as_str(), e.jumps[0].2.as_str()),
            ("PREROUTING", "KUBE-SERVICES")
        );
        let mut rules = Rules {
            jumps: jumps(),
            ..Default::default()
        };
        rules.add("nat", "KUBE-SERVICES", "-j RETURN".into());
        let text = rules.restore_text(None, Some(&e));
        // The PREROUTING jump exists; OUTPUT's and POSTROUTING's are inserted; the old chain goes.
        assert!(!text.contains("-I PREROUTING"), "{text}");
        assert!(
            text.contains("-I OUTPUT 1 -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
            "{text}"
        );
        assert!(text.contains("-X KUBE-SVC-OLD"), "{text}");
        let cleanup = e.cleanup_text();
        assert!(
            cleanup.contains(
                "-D PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n"
            ),
            "{cleanup}"
        );
        assert!(!cleanup.contains("CNI-X"), "{cleanup}");
    }
}
