//! The answer to one query, computed from a [`Snapshot`] with no I/O: CoreDNS's kubernetes plugin
//! (`handler.go`, `kubernetes.go`, `parse.go`, `reverse.go` and `plugin/backend_lookup.go`).
//!
//! Names inside the cluster domain (`<svc>.<ns>.svc.<domain>`, `<endpoint>.<svc>.<ns>.svc.<domain>`,
//! `_<port>._<proto>.<svc>.<ns>.svc.<domain>`, `<dashed-ip>.<ns>.pod.<domain>` as `pods insecure`)
//! are answered authoritatively: a name that does not exist is NXDOMAIN, one that exists without
//! records of the asked type is NODATA, both with the zone's SOA in the authority section (as
//! CoreDNS's `BackendError`). PTR queries for a ClusterIP or a ready endpoint IP are answered; every
//! other name, including reverse names we do not know (CoreDNS's default Corefile says
//! `fallthrough in-addr.arpa ip6.arpa`), is for the upstream resolvers.

use std::net::IpAddr;

use hickory_proto::{
    op::{Edns, Message, OpCode, Query, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT},
    },
};

use super::snapshot::{ServiceKind, Snapshot};

/// The version of the Kubernetes DNS schema served at `dns-version.<domain>` (CoreDNS's
/// `DNSSchemaVersion`).
const DNS_SCHEMA_VERSION: &str = "1.1.0";
/// How long a CNAME chain inside the zone may grow (CoreDNS's `maxCnameChainLength`).
const MAX_CNAME_CHAIN: usize = 7;
/// The EDNS payload size we advertise (the DNS flag day 2020 figure).
pub const EDNS_PAYLOAD: u16 = 1232;

/// What to do with a query.
#[derive(Debug)]
pub enum Outcome {
    /// Send this reply.
    Reply(Message),
    /// Send this reply after appending the upstream answer for `target`/`qtype`: an ExternalName
    /// CNAME that points outside the cluster domain (CoreDNS resolves it through its `Upstream`).
    Chase {
        /// The reply so far (the CNAME).
        reply: Message,
        /// The CNAME's target.
        target: Name,
        /// The asked type.
        qtype: RecordType,
    },
    /// Not ours: forward to the upstream resolvers.
    Forward,
}

/// The answering half of the cluster DNS: the cluster domain and the TTL of its records.
#[derive(Debug, Clone)]
pub struct Responder {
    /// The cluster domain, lowercase, without the trailing dot (`cluster.local`).
    domain: String,
    /// The number of labels of the domain.
    domain_labels: u8,
    /// The TTL of every record we answer (CoreDNS's `ttl`).
    ttl: u32,
}

/// One thing a name resolves to (CoreDNS's `msg.Service`).
#[derive(Debug)]
struct Target {
    host: Host,
    port: Option<u16>,
    /// The name an SRV record points to, relative to the domain (`web.default.svc`).
    name: String,
}

#[derive(Debug)]
enum Host {
    Ip(IpAddr),
    Cname(String),
}

/// The name does not exist (CoreDNS's `errNoItems`, `errNsNotExposed`, `errInvalidRequest`).
#[derive(Debug)]
struct NameError;

impl Responder {
    /// A responder for `domain` (e.g. `cluster.local`) answering with `ttl`.
    pub fn new(domain: &str, ttl: u32) -> Self {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        let domain_labels = domain.split('.').filter(|l| !l.is_empty()).count() as u8;
        Self {
            domain,
            domain_labels,
            ttl,
        }
    }

    /// The cluster domain.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Decides what to do with `req`.
    pub fn answer(&self, snap: &Snapshot, req: &Message) -> Outcome {
        if req.metadata.op_code != OpCode::Query {
            return Outcome::Reply(self.error(req, ResponseCode::NotImp));
        }
        let [query] = req.queries.as_slice() else {
            return Outcome::Reply(self.error(req, ResponseCode::FormErr));
        };
        let lower = query.name().to_lowercase().to_ascii();
        let lower = lower.trim_end_matches('.');
        let base = if lower == self.domain {
            Some("")
        } else {
            lower
                .strip_suffix(self.domain.as_str())
                .and_then(|b| b.strip_suffix('.'))
        };
        match base {
            Some(base) => {
                let reply = self.cluster(snap, req, query, base);
                match self.external_cname(&reply) {
                    Some(target) => Outcome::Chase {
                        reply,
                        target,
                        qtype: query.query_type(),
                    },
                    None => Outcome::Reply(reply),
                }
            }
            None if query.query_type() == RecordType::PTR => match self.reverse(snap, req, query) {
                Some(reply) => Outcome::Reply(reply),
                None => Outcome::Forward,
            },
            None => Outcome::Forward,
        }
    }

    /// The target of an address answer that ends in a CNAME leaving the cluster domain.
    fn external_cname(&self, reply: &Message) -> Option<Name> {
        let qtype = reply.queries.first()?.query_type();
        if !matches!(qtype, RecordType::A | RecordType::AAAA) {
            return None;
        }
        match &reply.answers.last()?.data {
            RData::CNAME(CNAME(target)) => {
                let lower = target.to_lowercase().to_ascii();
                let lower = lower.trim_end_matches('.');
                let inside = lower == self.domain
                    || lower
                        .strip_suffix(self.domain.as_str())
                        .is_some_and(|b| b.ends_with('.'));
                (!inside).then(|| target.clone())
            }
            _ => None,
        }
    }

    /// A reply skeleton: the request's id, opcode, RD and CD, its question, and EDNS if it used EDNS.
    pub fn reply_to(req: &Message) -> Message {
        let mut m = Message::response(req.metadata.id, req.metadata.op_code);
        m.metadata.recursion_desired = req.metadata.recursion_desired;
        m.metadata.checking_disabled = req.metadata.checking_disabled;
        m.queries = req.queries.clone();
        if req.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            m.set_edns(edns);
        }
        m
    }

    /// A reply with `code` and nothing else.
    pub fn error(&self, req: &Message, code: ResponseCode) -> Message {
        let mut m = Self::reply_to(req);
        m.metadata.response_code = code;
        m
    }

    /// A query inside the cluster domain; `base` is the name without the domain ("" at the apex).
    fn cluster(&self, snap: &Snapshot, req: &Message, query: &Query, base: &str) -> Message {
        let mut m = Self::reply_to(req);
        m.metadata.authoritative = true;
        let qname = query.name();
        let qtype = query.query_type();
        let ttl = self.ttl;
        let answers: Result<Vec<Record>, NameError> = match qtype {
            RecordType::AXFR | RecordType::IXFR => {
                m.metadata.authoritative = false;
                m.metadata.response_code = ResponseCode::Refused;
                return m;
            }
            RecordType::SOA if base.is_empty() => Ok(vec![self.soa(snap, qname)]),
            RecordType::NS if base.is_empty() => {
                let ns = self.name("ns.dns");
                m.additionals = kube_dns_ips(snap)
                    .into_iter()
                    .map(|ip| address_record(ns.clone(), ip, ttl))
                    .collect();
                Ok(vec![Record::from_rdata(qname.clone(), ttl, RData::NS(NS(ns)))])
            }
            RecordType::TXT if base == "dns-version" => Ok(vec![Record::from_rdata(
                qname.clone(),
                28800,
                RData::TXT(TXT::new(vec![DNS_SCHEMA_VERSION.to_owned()])),
            )]),
            _ if base == "ns.dns" => Ok(kube_dns_ips(snap)
                .into_iter()
                .filter(|ip| family_matches(ip, qtype))
                .map(|ip| address_record(qname.clone(), ip, ttl))
                .collect()),
            RecordType::A | RecordType::AAAA => self.addresses(snap, qname, base, qtype, 0),
            RecordType::SRV => self.lookup(snap, base).map(|targets| {
                let (answers, extra) = self.srv(qname, &targets);
                m.additionals = extra;
                answers
            }),
            RecordType::CNAME => self.lookup(snap, base).map(|targets| {
                targets
                    .iter()
                    .filter_map(|t| match &t.host {
                        Host::Cname(c) => Some(cname_record(qname.clone(), c, ttl)?),
                        Host::Ip(_) => None,
                    })
                    .collect()
            }),
            // Any other type: the name exists or it does not (CoreDNS's "fake A lookup").
            _ => self.lookup(snap, base).map(|_| Vec::new()),
        };
        match answers {
            Ok(answers) if !answers.is_empty() => m.answers = answers,
            Ok(_) => m.authorities = vec![self.soa(snap, qname)],
            Err(NameError) => {
                m.metadata.response_code = if snap.synced {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::ServFail
                };
                m.authorities = vec![self.soa(snap, qname)];
            }
        }
        m
    }

    /// A/AAAA answers for `base`, following ExternalName CNAMEs that stay inside the zone; a CNAME
    /// that leaves it turns the reply into a [`Outcome::Chase`] later (its record is kept).
    fn addresses(
        &self,
        snap: &Snapshot,
        qname: &Name,
        base: &str,
        qtype: RecordType,
        depth: usize,
    ) -> Result<Vec<Record>, NameError> {
        let targets = self.lookup(snap, base)?;
        let mut records: Vec<Record> = Vec::new();
        let mut seen: Vec<IpAddr> = Vec::new();
        for t in &targets {
            match &t.host {
                Host::Ip(ip) if family_matches(ip, qtype) && !seen.contains(ip) => {
                    seen.push(*ip);
                    records.push(address_record(qname.clone(), *ip, self.ttl));
                }
                Host::Ip(_) => {}
                Host::Cname(target) => {
                    let Some(cname) = cname_record(qname.clone(), target, self.ttl) else {
                        continue;
                    };
                    if target == base || depth >= MAX_CNAME_CHAIN {
                        continue;
                    }
                    let inner = if target == &self.domain {
                        Some("")
                    } else {
                        target
                            .strip_suffix(self.domain.as_str())
                            .and_then(|b| b.strip_suffix('.'))
                    };
                    match inner {
                        Some(inner) => {
                            let RData::CNAME(CNAME(next)) = &cname.data else {
                                continue;
                            };
                            let next = next.clone();
                            if let Ok(more) = self.addresses(snap, &next, inner, qtype, depth + 1)
                                && !more.is_empty()
                            {
                                records.push(cname);
                                records.extend(more);
                            }
                        }
                        // Outside the zone: the server asks upstream and appends (see `Outcome`).
                        None => records.push(cname),
                    }
                }
            }
        }
        Ok(records)
    }

    /// SRV records and their additional addresses (CoreDNS's `plugin.SRV`): priority 0, the
    /// weight split evenly (at least 1), one record per distinct target and port.
    fn srv(&self, qname: &Name, targets: &[Target]) -> (Vec<Record>, Vec<Record>) {
        let internal: Vec<&Target> = targets.iter().filter(|t| matches!(t.host, Host::Ip(_))).collect();
        let weight = if internal.is_empty() {
            100
        } else {
            (100 / internal.len()).max(1) as u16
        };
        let mut answers = Vec::new();
        let mut extra = Vec::new();
        let mut seen_srv: Vec<(&str, u16)> = Vec::new();
        let mut seen_addr: Vec<(&str, IpAddr)> = Vec::new();
        for t in internal {
            let (Some(port), Host::Ip(ip)) = (t.port, &t.host) else {
                continue;
            };
            let target = self.name(&t.name);
            if !seen_srv.contains(&(t.name.as_str(), port)) {
                seen_srv.push((t.name.as_str(), port));
                answers.push(Record::from_rdata(
                    qname.clone(),
                    self.ttl,
                    RData::SRV(SRV::new(0, weight, port, target.clone())),
                ));
            }
            if !seen_addr.contains(&(t.name.as_str(), *ip)) {
                seen_addr.push((t.name.as_str(), *ip));
                extra.push(address_record(target, *ip, self.ttl));
            }
        }
        (answers, extra)
    }

    /// What `base` (a name under the domain, without it) resolves to (CoreDNS's `parseRequest`
    /// then `findServices`/`findPods`).
    fn lookup(&self, snap: &Snapshot, base: &str) -> Result<Vec<Target>, NameError> {
        if base.is_empty() || base == "svc" || base == "pod" {
            return Ok(Vec::new());
        }
        let segs: Vec<&str> = base.split('.').collect();
        let (kind, rest) = segs.split_last().ok_or(NameError)?;
        if *kind != "svc" && *kind != "pod" {
            return Err(NameError);
        }
        let (namespace, rest) = rest.split_last().ok_or(NameError)?;
        if !snap.namespace_exists(namespace) {
            return Err(NameError);
        }
        let Some((service, rest)) = rest.split_last() else {
            return Ok(Vec::new());
        };
        let (endpoint, port, protocol) = match rest {
            [] => (None, None, None),
            [endpoint] => (Some(*endpoint), None, None),
            [port, protocol] => (
                None,
                Some(port.strip_prefix('_').unwrap_or(port)),
                Some(protocol.strip_prefix('_').unwrap_or(protocol)),
            ),
            _ => return Err(NameError),
        };
        if *kind == "pod" {
            return pod_ip(service)
                .map(|ip| {
                    vec![Target {
                        host: Host::Ip(ip),
                        port: None,
                        name: base.to_owned(),
                    }]
                })
                .ok_or(NameError);
        }
        let svc = snap.service(namespace, service).ok_or(NameError)?;
        let svc_name = format!("{service}.{namespace}.svc");
        let mut targets = Vec::new();
        match &svc.kind {
            ServiceKind::ExternalName(name) => {
                if endpoint.is_none() && port.is_none() && name.parse::<IpAddr>().is_err() {
                    targets.push(Target {
                        host: Host::Cname(name.clone()),
                        port: None,
                        name: svc_name,
                    });
                }
            }
            kind if matches!(kind, ServiceKind::Headless) || endpoint.is_some() => {
                for set in &svc.endpoints {
                    for addr in &set.addresses {
                        if endpoint.is_some_and(|e| e != addr.label) {
                            continue;
                        }
                        for p in set.ports.iter().filter(|p| p.matches(port, protocol)) {
                            targets.push(Target {
                                host: Host::Ip(addr.ip),
                                port: p.port,
                                name: format!("{}.{svc_name}", addr.label),
                            });
                        }
                    }
                }
            }
            ServiceKind::ClusterIp { ips, ports } => {
                for p in ports.iter().filter(|p| p.matches(port, protocol)) {
                    for ip in ips {
                        targets.push(Target {
                            host: Host::Ip(*ip),
                            port: p.port,
                            name: svc_name.clone(),
                        });
                    }
                }
            }
            ServiceKind::Headless => {}
        }
        if targets.is_empty() {
            return Err(NameError);
        }
        Ok(targets)
    }

    /// A PTR answer for a ClusterIP (`<svc>.<ns>.svc.<domain>`) or else for a ready endpoint IP
    /// (`<hostname or dashed IP>.<svc>.<ns>.svc.<domain>`), as CoreDNS's `serviceRecordForIP`;
    /// `None` when the IP is not ours.
    fn reverse(&self, snap: &Snapshot, req: &Message, query: &Query) -> Option<Message> {
        let net = query.name().parse_arpa_name().ok()?;
        if net.prefix_len() != net.max_prefix_len() {
            return None;
        }
        let ip = net.addr();
        let names: Vec<&str> = match snap.service_by_ip.get(&ip) {
            Some(svc) => vec![svc.as_str()],
            None => {
                let mut names: Vec<&str> = Vec::new();
                for n in snap.endpoints_by_ip.get(&ip)? {
                    if !names.contains(&n.as_str()) {
                        names.push(n);
                    }
                }
                names
            }
        };
        let mut m = Self::reply_to(req);
        m.metadata.authoritative = true;
        m.answers = names
            .into_iter()
            .map(|n| {
                let target = self.name(&format!("{}.svc", n));
                Record::from_rdata(query.name().clone(), self.ttl, RData::PTR(PTR(target)))
            })
            .collect();
        Some(m)
    }

    /// The zone's SOA (CoreDNS's `plugin.SOA`), owned by the zone as the query spelled it.
    fn soa(&self, snap: &Snapshot, qname: &Name) -> Record {
        let zone = qname.trim_to(self.domain_labels as usize);
        let soa = SOA::new(
            self.name("ns.dns"),
            self.name("hostmaster"),
            snap.serial,
            7200,
            1800,
            86400,
            self.ttl,
        );
        Record::from_rdata(zone, self.ttl.min(300), RData::SOA(soa))
    }

    /// `<relative>.<domain>.` as a name.
    fn name(&self, relative: &str) -> Name {
        let text = if relative.is_empty() {
            format!("{}.", self.domain)
        } else {
            format!("{relative}.{}.", self.domain)
        };
        Name::from_ascii(&text).unwrap_or_else(|_| Name::root())
    }
}

/// The ClusterIPs of `kube-system/kube-dns`: the addresses of the zone's name server.
fn kube_dns_ips(snap: &Snapshot) -> Vec<IpAddr> {
    match snap.service("kube-system", "kube-dns").map(|s| &s.kind) {
        Some(ServiceKind::ClusterIp { ips, .. }) => ips.clone(),
        _ => Vec::new(),
    }
}

/// The IP of a `pods insecure` name: `1-2-3-4` or an IPv6 address with dashes.
fn pod_ip(label: &str) -> Option<IpAddr> {
    let text = if label.matches('-').count() == 3 && !label.contains("--") {
        label.replace('-', ".")
    } else {
        label.replace('-', ":")
    };
    text.parse().ok()
}

fn family_matches(ip: &IpAddr, qtype: RecordType) -> bool {
    matches!(
        (ip, qtype),
        (IpAddr::V4(_), RecordType::A) | (IpAddr::V6(_), RecordType::AAAA)
    )
}

fn address_record(name: Name, ip: IpAddr, ttl: u32) -> Record {
    match ip {
        IpAddr::V4(v4) => Record::from_rdata(name, ttl, RData::A(A(v4))),
        IpAddr::V6(v6) => Record::from_rdata(name, ttl, RData::AAAA(AAAA(v6))),
    }
}

fn cname_record(name: Name, target: &str, ttl: u32) -> Option<Record> {
    let target = Name::from_ascii(format!("{target}.")).ok()?;
    Some(Record::from_rdata(name, ttl, RData::CNAME(CNAME(target))))
}
