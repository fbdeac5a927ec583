//! Pod routes between nodes, the way flannel's `host-gw` backend (and kube-router's route sync) does
//! it: every node's pods live in its own `spec.podCIDR` behind its CNI bridge, so for pods on
//! different nodes to reach each other each node needs, for every *other* node, one kernel route
//! `ip route replace <its podCIDR> via <its InternalIP>`. That works while the nodes share a link
//! (one L2 segment: a switch, a bridge, a veth pair), which is all host-gw asks; no tunnel, no
//! encapsulation, pod addresses seen unchanged on the wire.
//!
//! [`run`] follows the Nodes (a kube-runtime reflector) and keeps the node's routes equal to
//! [`desired_routes`]: [`plan`] diffs them against the routes the table holds that carry our protocol
//! tag ([`ROUTE_PROTOCOL`], so a restart finds its own routes and never touches anyone else's), and
//! the few `ip route` calls that result are made; a deleted Node's route goes with it. At start
//! [`RouteTable::prepare`] turns on IPv4 forwarding and installs flannel's masquerade rule: traffic
//! from pods to the cluster CIDR is left alone (pod-to-pod without NAT, as the Kubernetes network
//! model asks), traffic from pods to anything else is masqueraded (the CNI bridge's own `ipMasq`,
//! which would also rewrite cross-node pod traffic, is then off).
//!
//! The kernel sits behind [`RouteTable`]: [`SystemRoutes`] runs `ip` and `iptables` (inside the node's
//! network namespace when it is not the process's), [`FakeRoutes`] records for unit tests.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    path::PathBuf,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, reflector, watcher},
};

/// The `proto` our routes carry (`ip route … proto 213`): what marks them as ours.
pub const ROUTE_PROTOCOL: &str = "213";

/// The nat chain of the pods' masquerade rule (flannel's is `FLANNEL-POSTRTG`).
pub const MASQUERADE_CHAIN: &str = "SKIFF-POSTRTG";

/// How often the routes are compared with the table even without a Node change (someone may have
/// removed one by hand, or a gateway that was not reachable may be now).
const RESYNC: Duration = Duration::from_secs(30);

/// How long one sync (a few `ip` calls) may take.
const SYNC_TIMEOUT: Duration = Duration::from_secs(20);

/// One route to another node's pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The pod CIDR, as `ip route` prints it (`10.244.1.0/24`).
    pub dst: String,
    /// The node's InternalIP.
    pub via: Ipv4Addr,
}

/// An OS call failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

/// The node's routing table (and the little of its firewall host-gw needs). Calls block.
pub trait RouteTable: Send + Sync {
    /// Turns on forwarding and installs the pods' masquerade rule for `cluster_cidr`. Idempotent.
    fn prepare(&self, cluster_cidr: &str) -> Result<(), RouteError>;
    /// The routes carrying our protocol tag.
    fn list(&self) -> Result<Vec<Route>, RouteError>;
    /// Adds `route`, or changes the route to its destination.
    fn replace(&self, route: &Route) -> Result<(), RouteError>;
    /// Removes `route` (nothing to do when it is gone already).
    fn delete(&self, route: &Route) -> Result<(), RouteError>;
}

/// What the node wants: for every other Node with a podCIDR and an IPv4 InternalIP, a route to the
/// former through the latter. Nodes at `own_ip` are skipped (nothing to route through ourselves), and
/// when two nodes claim one CIDR the first by name wins.
pub fn desired_routes(
    nodes: &[Node],
    own_name: &str,
    own_ip: Option<Ipv4Addr>,
) -> BTreeMap<String, Ipv4Addr> {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by_key(|n| n.name_any());
    let mut routes = BTreeMap::new();
    for node in sorted {
        if node.name_any() == own_name {
            continue;
        }
        let Some(cidr) = pod_cidr(node) else {
            continue;
        };
        let Some(ip) = internal_ip(node) else {
            continue;
        };
        if Some(ip) == own_ip {
            continue;
        }
        routes.entry(cidr).or_insert(ip);
    }
    routes
}

/// The node's IPv4 pod CIDR (`spec.podCIDR`, else the first IPv4 one of `spec.podCIDRs`), in the
/// form `ip route` prints.
fn pod_cidr(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    let candidates = spec.pod_cidr.iter().chain(spec.pod_cidrs.iter().flatten());
    candidates.filter_map(|c| canonical_cidr(c)).next()
}

/// `a.b.c.d/n` with the host bits cleared (`/32` printed bare, as `ip route` does), or None.
fn canonical_cidr(text: &str) -> Option<String> {
    let (addr, prefix) = text.split_once('/').unwrap_or((text, "32"));
    let addr: Ipv4Addr = addr.trim().parse().ok()?;
    let prefix: u32 = prefix.trim().parse().ok().filter(|p| *p <= 32)?;
    let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
    let net = Ipv4Addr::from(u32::from(addr) & mask);
    Some(if prefix == 32 {
        net.to_string()
    } else {
        format!("{net}/{prefix}")
    })
}

/// The node's first IPv4 `InternalIP`.
fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// What to change so that the table's routes (`current`) become `desired`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Routes to add or point elsewhere.
    pub replace: Vec<Route>,
    /// Routes of ours nobody wants any more (their node is gone or moved to another CIDR).
    pub delete: Vec<Route>,
}

/// The diff: a wanted route missing or going elsewhere is replaced, a route of ours to a destination
/// nobody wants is deleted (as are duplicates of one destination, keeping none of them stale).
pub fn plan(desired: &BTreeMap<String, Ipv4Addr>, current: &[Route]) -> Plan {
    let mut out = Plan::default();
    for (dst, via) in desired {
        let present = current.iter().any(|r| &r.dst == dst && r.via == *via);
        if !present {
            out.replace.push(Route {
                dst: dst.clone(),
                via: *via,
            });
        }
    }
    for route in current {
        if desired.get(&route.dst) != Some(&route.via) && !out.replace.iter().any(|r| r.dst == route.dst) {
            out.delete.push(route.clone());
        }
    }
    out
}

/// Brings `table` to `desired`; each failing call is reported, the others still made.
pub fn sync(table: &dyn RouteTable, desired: &BTreeMap<String, Ipv4Addr>) -> Result<Plan, Vec<RouteError>> {
    let current = table.list().map_err(|e| vec![e])?;
    let plan = plan(desired, &current);
    let mut errors = Vec::new();
    for route in &plan.delete {
        if let Err(e) = table.delete(route) {
            errors.push(e);
        }
    }
    for route in &plan.replace {
        if let Err(e) = table.replace(route) {
            errors.push(e);
        }
    }
    if errors.is_empty() { Ok(plan) } else { Err(errors) }
}

/// Who this node is, and the cluster's pod range.
#[derive(Clone, Debug)]
pub struct HostGwOptions {
    /// The node's name (its own Node needs no route).
    pub node_name: String,
    /// The node's InternalIP.
    pub node_ip: Option<Ipv4Addr>,
    /// The cluster's pod range (`--cluster-cidr`): pod traffic inside it is not masqueraded.
    pub cluster_cidr: String,
}

/// Keeps the node's routes to the other nodes' pods until `shutdown`. The routes stay when it stops
/// (as flannel's do): pods keep talking across nodes while the agent restarts, and the next start
/// reconciles them.
pub async fn run(
    client: Client,
    options: HostGwOptions,
    table: Arc<dyn RouteTable>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let prepared = {
        let (table, cidr) = (table.clone(), options.cluster_cidr.clone());
        blocking(move || table.prepare(&cidr)).await
    };
    if let Err(e) = prepared {
        tracing::error!("cannot prepare the node's network for pod routes: {e}");
    }
    let (reader, writer) = reflector::store::<Node>();
    let events = reflector(
        writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()),
    )
    .default_backoff();
    let mut events = std::pin::pin!(events);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut ready, mut dirty) = (false, true);
    let mut last_sync = tokio::time::Instant::now();
    let mut last_errors = String::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            event = events.next() => match event {
                Some(Ok(watcher::Event::InitDone)) => {
                    ready = true;
                    dirty = true;
                }
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => dirty = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => tracing::warn!("watching Nodes for pod routes: {e}"),
                None => break,
            },
            _ = ticker.tick() => {
                if !ready || !(dirty || last_sync.elapsed() >= RESYNC) {
                    continue;
                }
                dirty = false;
                last_sync = tokio::time::Instant::now();
                let nodes: Vec<Node> = reader.state().iter().map(|n| (**n).clone()).collect();
                let desired = desired_routes(&nodes, &options.node_name, options.node_ip);
                let table = table.clone();
                let result = blocking(move || {
                    sync(table.as_ref(), &desired).map_err(|errors| {
                        RouteError(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
                    })
                })
                .await;
                match result {
                    Ok(plan) => {
                        for r in &plan.replace {
                            tracing::info!(dst = %r.dst, via = %r.via, "pod route set");
                        }
                        for r in &plan.delete {
                            tracing::info!(dst = %r.dst, via = %r.via, "pod route removed");
                        }
                        last_errors.clear();
                    }
                    Err(e) => {
                        // Said once per new failure: a node whose address is not on our link (a
                        // hollow node) fails at every resync.
                        let text = e.to_string();
                        if text != last_errors {
                            tracing::warn!("pod routes: {text}");
                            last_errors = text;
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f` off the async runtime, bounded by [`SYNC_TIMEOUT`].
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, RouteError> + Send + 'static,
) -> Result<T, RouteError> {
    match tokio::time::timeout(SYNC_TIMEOUT, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(RouteError(format!("the route task failed: {e}"))),
        Err(_) => Err(RouteError(format!("no answer within {SYNC_TIMEOUT:?}"))),
    }
}

/// The real table: `ip`, `sysctl` and `iptables-restore`, inside `netns` (`nsenter --net=<path>`)
/// when set, else in the process's own namespace.
#[derive(Clone, Debug, Default)]
pub struct SystemRoutes {
    /// The node's network namespace, when the process is not in it.
    pub netns: Option<PathBuf>,
}

impl SystemRoutes {
    fn run(&self, program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, RouteError> {
        use std::io::Write as _;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let what = format!("{program} {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| RouteError(format!("cannot run {what}: {e}")))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| RouteError(format!("{what}: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| RouteError(format!("{what}: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(RouteError(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

/// The masquerade rules (`iptables-restore --noflush` input; declaring our chain flushes only it).
pub fn masquerade_rules(cluster_cidr: &str) -> String {
    format!(
        "*nat\n:{MASQUERADE_CHAIN} - [0:0]\n\
         -A {MASQUERADE_CHAIN} -s {cluster_cidr} -d {cluster_cidr} -m comment --comment \"pod to pod: no NAT\" -j RETURN\n\
         -A {MASQUERADE_CHAIN} -s {cluster_cidr} ! -d 224.0.0.0/4 -m comment --comment \"pods leaving the cluster network\" -j MASQUERADE\n\
         COMMIT\n"
    )
}

/// `ip -4 route show proto N` output → routes (`10.244.1.0/24 via 10.201.0.2 dev eth1`).
pub fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let dst = words.next()?;
            let dst = canonical_cidr(dst)?;
            words.find(|w| *w == "via")?;
            let via = words.next()?.parse().ok()?;
            Some(Route { dst, via })
        })
        .collect()
}

impl RouteTable for SystemRoutes {
    fn prepare(&self, cluster_cidr: &str) -> Result<(), RouteError> {
        self.run("sysctl", &["-q", "-w", "net.ipv4.ip_forward=1"], None)?;
        self.run(
            "iptables-restore",
            &["-w", "5", "--noflush"],
            Some(&masquerade_rules(cluster_cidr)),
        )?;
        let jump = [
            "-t",
            "nat",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "skiff pod masquerade",
            "-j",
            MASQUERADE_CHAIN,
        ];
        let with = |verb: &'static str| {
            let mut args = vec!["-w", "5", jump[0], jump[1], verb];
            args.extend(&jump[2..]);
            args
        };
        if self.run("iptables", &with("-C"), None).is_err() {
            self.run("iptables", &with("-A"), None)?;
        }
        Ok(())
    }

    fn list(&self) -> Result<Vec<Route>, RouteError> {
        let text = self.run("ip", &["-4", "route", "show", "proto", ROUTE_PROTOCOL], None)?;
        Ok(parse_routes(&text))
    }

    fn replace(&self, route: &Route) -> Result<(), RouteError> {
        let via = route.via.to_string();
        self.run(
            "ip",
            &[
                "route",
                "replace",
                &route.dst,
                "via",
                &via,
                "proto",
                ROUTE_PROTOCOL,
            ],
            None,
        )
        .map(drop)
    }

    fn delete(&self, route: &Route) -> Result<(), RouteError> {
        let via = route.via.to_string();
        match self.run(
            "ip",
            &["route", "del", &route.dst, "via", &via, "proto", ROUTE_PROTOCOL],
            None,
        ) {
            Err(e) if e.0.contains("No such process") => Ok(()),
            other => other.map(drop),
        }
    }
}

/// A table in memory, recording every call; `unreachable` gateways fail as the kernel's would.
#[derive(Debug, Default)]
pub struct FakeRoutes {
    /// The routes it holds.
    pub routes: Mutex<Vec<Route>>,
    /// Calls made, as `replace <dst> <via>` / `delete <dst> <via>` / `prepare <cidr>`.
    pub calls: Mutex<Vec<String>>,
    /// Gateways not on the link.
    pub unreachable: Vec<Ipv4Addr>,
}

impl RouteTable for FakeRoutes {
    fn prepare(&self, cluster_cidr: &str) -> Result<(), RouteError> {
        self.calls.lock().unwrap().push(format!("prepare {cluster_cidr}"));
        Ok(())
    }

    fn list(&self) -> Result<Vec<Route>, RouteError> {
        Ok(self.routes.lock().unwrap().clone())
    }

    fn replace(&self, route: &Route) -> Result<(), RouteError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("replace {} {}", route.dst, route.via));
        if self.unreachable.contains(&route.via) {
            return Err(RouteError("Nexthop has invalid gateway.".into()));
        }
        let mut routes = self.routes.lock().unwrap();
        routes.retain(|r| r.dst != route.dst);
        routes.push(route.clone());
        Ok(())
    }

    fn delete(&self, route: &Route) -> Result<(), RouteError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("delete {} {}", route.dst, route.via));
        self.routes.lock().unwrap().retain(|r| r != route);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeAddress, NodeSpec, NodeStatus};

    use super::*;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        Node {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: cidr.map(Into::into),
                pod_cidrs: cidr.map(|c| vec![c.into()]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: ip.map(|ip| {
                    vec![
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: name.into(),
                        },
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: ip.into(),
                        },
                    ]
                }),
                ..Default::default()
            }),
        }
    }

    fn route(dst: &str, via: &str) -> Route {
        Route {
            dst: dst.into(),
            via: via.parse().unwrap(),
        }
    }

    #[test]
    fn every_other_node_with_a_cidr_and_an_address_gets_a_route() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), Some("10.201.0.1")),
            node("b", Some("10.244.1.0/24"), Some("10.201.0.2")),
            node("c", Some("10.244.2.0/24"), Some("10.201.0.3")),
            node("no-cidr-yet", None, Some("10.201.0.4")),
            node("no-address-yet", Some("10.244.4.0/24"), None),
        ];
        let desired = desired_routes(&nodes, "a", Some("10.201.0.1".parse().unwrap()));
        assert_eq!(
            desired,
            BTreeMap::from([
                ("10.244.1.0/24".to_owned(), "10.201.0.2".parse().unwrap()),
                ("10.244.2.0/24".to_owned(), "10.201.0.3".parse().unwrap()),
            ])
        );
    }

    #[test]
    fn nodes_at_our_own_address_and_duplicate_cidrs_are_skipped() {
        let nodes = [
            node("z-dup", Some("10.244.1.0/24"), Some("10.201.0.9")),
            node("b", Some("10.244.1.7/24"), Some("10.201.0.2")),
            node("me-again", Some("10.244.5.0/24"), Some("10.201.0.1")),
        ];
        let desired = desired_routes(&nodes, "a", Some("10.201.0.1".parse().unwrap()));
        assert_eq!(
            desired,
            BTreeMap::from([("10.244.1.0/24".to_owned(), "10.201.0.2".parse().unwrap())])
        );
    }

    #[test]
    fn the_plan_adds_what_is_missing_moves_what_changed_and_drops_what_is_gone() {
        let desired = BTreeMap::from([
            ("10.244.1.0/24".to_owned(), "10.201.0.2".parse().unwrap()),
            ("10.244.2.0/24".to_owned(), "10.201.0.3".parse().unwrap()),
            ("10.244.3.0/24".to_owned(), "10.201.0.4".parse().unwrap()),
        ]);
        let current = [
            route("10.244.1.0/24", "10.201.0.2"),
            route("10.244.2.0/24", "10.201.0.99"),
            route("10.244.9.0/24", "10.201.0.9"),
        ];
        assert_eq!(
            plan(&desired, &current),
            Plan {
                replace: vec![
                    route("10.244.2.0/24", "10.201.0.3"),
                    route("10.244.3.0/24", "10.201.0.4")
                ],
                delete: vec![route("10.244.9.0/24", "10.201.0.9")],
            }
        );
        assert_eq!(
            plan(&BTreeMap::new(), &current).delete.len(),
            3,
            "with no other node every route of ours goes"
        );
    }

    #[test]
    fn syncing_twice_changes_nothing_the_second_time_and_a_deleted_node_loses_its_route() {
        let table = FakeRoutes::default();
        let mut nodes = vec![
            node("a", Some("10.244.0.0/24"), Some("10.201.0.1")),
            node("b", Some("10.244.1.0/24"), Some("10.201.0.2")),
            node("c", Some("10.244.2.0/24"), Some("10.201.0.3")),
        ];
        let own = Some("10.201.0.1".parse().unwrap());
        sync(&table, &desired_routes(&nodes, "a", own)).unwrap();
        let again = sync(&table, &desired_routes(&nodes, "a", own)).unwrap();
        assert_eq!(again, Plan::default());
        nodes.retain(|n| n.name_any() != "c");
        sync(&table, &desired_routes(&nodes, "a", own)).unwrap();
        assert_eq!(
            *table.routes.lock().unwrap(),
            vec![route("10.244.1.0/24", "10.201.0.2")]
        );
        assert_eq!(
            *table.calls.lock().unwrap(),
            [
                "replace 10.244.1.0/24 10.201.0.2",
                "replace 10.244.2.0/24 10.201.0.3",
                "delete 10.244.2.0/24 10.201.0.3"
            ]
        );
    }

    #[test]
    fn an_unreachable_gateway_fails_alone() {
        let table = FakeRoutes {
            unreachable: vec!["192.0.2.1".parse().unwrap()],
            ..Default::default()
        };
        let nodes = [
            node("b", Some("10.244.1.0/24"), Some("10.201.0.2")),
            node("hollow-0", Some("10.244.2.0/24"), Some("192.0.2.1")),
        ];
        let errors = sync(&table, &desired_routes(&nodes, "a", None)).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(
            *table.routes.lock().unwrap(),
            vec![route("10.244.1.0/24", "10.201.0.2")]
        );
    }

    #[test]
    fn ip_route_output_parses() {
        let text = "10.244.1.0/24 via 10.201.0.2 dev eth1 \n10.244.7.3 via 10.201.0.7 dev eth1 onlink\nblackhole 10.9.0.0/16\n";
        assert_eq!(
            parse_routes(text),
            vec![
                route("10.244.1.0/24", "10.201.0.2"),
                route("10.244.7.3", "10.201.0.7")
            ]
        );
    }

    #[test]
    fn pod_to_pod_traffic_returns_before_the_masquerade() {
        let rules = masquerade_rules("10.244.0.0/16");
        let ret = rules.find("-d 10.244.0.0/16").unwrap();
        let masq = rules.find("-j MASQUERADE").unwrap();
        assert!(ret < masq, "{rules}");
        assert!(rules.contains(":SKIFF-POSTRTG - [0:0]"));
    }
}
