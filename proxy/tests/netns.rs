//! The proxy end to end, as root, inside network namespaces this test creates: a real API server (in
//! process) holds Services and EndpointSlices; the proxy programs a "node" namespace with the real
//! tools; clients in the node, in a pod and in an "outside" namespace connect through the rules to
//! three pod namespaces each answering with its name. Both iptables and nftables modes.
//!
//! Topology (routed, like Calico: each pod has its own /24 behind a veth, so every packet between pods
//! crosses the node's conntrack — a shared L2 bridge would need br_netfilter for replies to be
//! un-DNATed):
//!
//! ```text
//!  pod0 10.244.0.2 ─┐                       ┌─ outside 192.168.77.2
//!  pod1 10.244.1.2 ─┼─ node (vp0..2, vout) ─┘   node 192.168.77.1
//!  pod2 10.244.2.2 ─┘
//! ```
//!
//! Skipped (with a message) when not root or when `ip`/`nft`/`iptables` are missing.

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_proxy::{Mode, RenderConfig, metrics::Metrics, proxier, sink::SystemSink};
use skiff_tests::InProcess;

const T: Duration = Duration::from_secs(10);
const WEB_VIP: &str = "10.96.100.10";
const STICKY_VIP: &str = "10.96.100.11";
const EMPTY_VIP: &str = "10.96.100.12";
const NODE_PORT: u16 = 30080;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, program: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .expect("run ip netns exec");
    assert!(
        out.status.success(),
        "{program} {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn can_run() -> bool {
    let root = nix_uid_is_root();
    let tools = ["ip", "nft", "iptables-restore", "nsenter"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !(root && tools) {
        eprintln!("skipping: needs root and ip, nft, iptables-restore, nsenter");
    }
    root && tools
}

fn nix_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// The host's own rules, normalised (no timestamps or counters), to compare before and after.
fn host_rules() -> String {
    let save = Command::new("iptables-save")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    let save: String = String::from_utf8_lossy(&save)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(" [").next().unwrap_or(l).to_owned() + "\n")
        .collect();
    let nft = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    save + &String::from_utf8_lossy(&nft)
}

/// The namespaces; deleted (with their veths) on drop, after the backends stop.
struct Net {
    node: String,
    pods: Vec<String>,
    outside: String,
    stop: Arc<AtomicBool>,
    backends: Vec<std::thread::JoinHandle<()>>,
}

impl Net {
    fn create(tag: &str) -> Self {
        let base = format!("skiff-px-{}-{tag}", std::process::id());
        let mut net = Self {
            node: format!("{base}-node"),
            pods: (0..3).map(|i| format!("{base}-pod{i}")).collect(),
            outside: format!("{base}-out"),
            stop: Arc::new(AtomicBool::new(false)),
            backends: Vec::new(),
        };
        for ns in net.all() {
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        let node = net.node.clone();
        in_ns(&node, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        for (i, pod) in net.pods.clone().iter().enumerate() {
            let vp = format!("vp{i}");
            ip(&[
                "-n", &node, "link", "add", &vp, "type", "veth", "peer", "name", "eth0", "netns", pod,
            ]);
            ip(&[
                "-n",
                &node,
                "addr",
                "add",
                &format!("10.244.{i}.1/24"),
                "dev",
                &vp,
            ]);
            ip(&["-n", &node, "link", "set", &vp, "up"]);
            ip(&[
                "-n",
                pod,
                "addr",
                "add",
                &format!("10.244.{i}.2/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", pod, "link", "set", "eth0", "up"]);
            ip(&[
                "-n",
                pod,
                "route",
                "add",
                "default",
                "via",
                &format!("10.244.{i}.1"),
            ]);
            let (name, stop) = (format!("pod{i}"), net.stop.clone());
            let pod = pod.clone();
            net.backends
                .push(std::thread::spawn(move || serve(&pod, &name, &stop)));
        }
        let out = net.outside.clone();
        ip(&[
            "-n", &node, "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", &out,
        ]);
        ip(&["-n", &node, "addr", "add", "192.168.77.1/24", "dev", "vout"]);
        ip(&["-n", &node, "link", "set", "vout", "up"]);
        ip(&["-n", &out, "addr", "add", "192.168.77.2/24", "dev", "eth0"]);
        ip(&["-n", &out, "link", "set", "eth0", "up"]);
        net
    }

    fn all(&self) -> Vec<String> {
        let mut all = vec![self.node.clone(), self.outside.clone()];
        all.extend(self.pods.iter().cloned());
        all
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for b in self.backends.drain(..) {
            let _ = b.join();
        }
        for ns in self.all() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        }
    }
}

/// Moves this (fresh) thread into a named network namespace.
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// A backend: answers every connection on :8080 with its name, until `stop`.
fn serve(ns: &str, name: &str, stop: &AtomicBool) {
    enter(ns);
    let listener = TcpListener::bind("0.0.0.0:8080").expect("bind backend");
    listener.set_nonblocking(true).expect("nonblocking");
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.write_all(name.as_bytes());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// `n` connections from namespace `ns` to `addr`: each the backend's answer, or the error.
async fn fetch(ns: &str, addr: &str, n: usize) -> Vec<Result<String, std::io::ErrorKind>> {
    let (ns, addr): (String, SocketAddr) = (ns.to_owned(), addr.parse().expect("addr"));
    let handle = std::thread::spawn(move || {
        enter(&ns);
        (0..n)
            .map(|_| {
                let mut conn =
                    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.kind())?;
                conn.set_read_timeout(Some(Duration::from_secs(2)))
                    .map_err(|e| e.kind())?;
                let mut answer = String::new();
                conn.read_to_string(&mut answer).map_err(|e| e.kind())?;
                Ok(answer)
            })
            .collect()
    });
    tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || handle.join()),
    )
    .await
    .expect("requests in time")
    .expect("join")
    .expect("client thread")
}

fn counts(answers: &[Result<String, std::io::ErrorKind>]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        *counts
            .entry(a.clone().unwrap_or_else(|e| format!("error: {e:?}")))
            .or_insert(0) += 1;
    }
    counts
}

/// 300 requests reach each of the 3 backends 100 ± 20 times. Balancing is random (like upstream's), so
/// one run lands outside ±20% about 5% of the time: a second run of 300 decides.
async fn assert_balanced(ns: &str, addr: &str) {
    let mut last = BTreeMap::new();
    for _ in 0..2 {
        last = counts(&fetch(ns, addr, 300).await);
        let ok = last.len() == 3
            && ["pod0", "pod1", "pod2"]
                .iter()
                .all(|p| last.get(*p).is_some_and(|c| (80..=120).contains(c)));
        if ok {
            return;
        }
    }
    panic!("from {ns} to {addr}: not balanced within ±20% over 300 requests: {last:?}");
}

fn service(name: &str, vip: &str, extra: Value) -> Service {
    let mut spec = json!({ "clusterIP": vip, "ports": [{ "name": "http", "port": 80, "targetPort": 8080 }] });
    for (k, v) in extra.as_object().expect("object") {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({ "metadata": { "name": name, "namespace": "default" }, "spec": spec }))
        .expect("service")
}

fn slice(service: &str, ready: [bool; 3]) -> EndpointSlice {
    let endpoints: Vec<Value> = (0..3)
        .map(|i| {
            json!({ "addresses": [format!("10.244.{i}.2")], "nodeName": "node1",
                          "conditions": { "ready": ready[i] } })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": { "name": format!("{service}-1"), "namespace": "default",
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

async fn t<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("in time")
}

async fn end_to_end(mode: Mode) {
    if !can_run() {
        return;
    }
    let host_before = host_rules();
    let net = Net::create(&mode.to_string()[..3]);
    let server = t(InProcess::start(WatchCacheOptions::default()))
        .await
        .expect("API server");
    let client = server.client.clone();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    t(services.create(&pp, &service("web", WEB_VIP, json!({ "type": "NodePort" }))))
        .await
        .expect("web");
    // The NodePort the server allocated (a fixed one may collide with its allocator's choice).
    let web = t(services.get("web")).await.expect("get web");
    let node_port = web
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|p| p[0].node_port)
        .unwrap_or(i32::from(NODE_PORT));
    t(services.create(
        &pp,
        &service("sticky", STICKY_VIP, json!({ "sessionAffinity": "ClientIP" })),
    ))
    .await
    .expect("sticky");
    t(services.create(&pp, &service("empty", EMPTY_VIP, json!({}))))
        .await
        .expect("empty");
    t(slices.create(&pp, &slice("web", [true; 3])))
        .await
        .expect("web slice");
    t(slices.create(&pp, &slice("sticky", [true; 3])))
        .await
        .expect("sticky slice");

    let node_ns = format!("/run/netns/{}", net.node);
    let config = proxier::Config {
        mode,
        render: RenderConfig {
            node_name: "node1".into(),
            cluster_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
            service_cidr: "10.96.0.0/12".parse().expect("cidr"),
            node_ips: vec!["192.168.77.1".parse().expect("ip")],
        },
        min_sync_period: Duration::from_secs(1),
        full_sync_period: Duration::from_secs(3600),
        netns: Some(node_ns.clone().into()),
    };
    let sink = Arc::new(SystemSink {
        netns: Some(node_ns.clone().into()),
        service_cidr: config.render.service_cidr,
    });
    let metrics = Arc::new(Metrics::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(proxier::run_with_sink(
        client,
        config,
        sink,
        metrics.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let web_addr = format!("{WEB_VIP}:80");
    // The first sync lands.
    let start = Instant::now();
    loop {
        let r = fetch(&net.node, &web_addr, 1).await;
        if r[0].is_ok() {
            break;
        }
        assert!(
            start.elapsed() < T,
            "the first sync did not make {web_addr} answer: {r:?}\n{}\n{}\n{}",
            in_ns(&net.node, "iptables-save", &[]),
            in_ns(&net.node, "nft", &["list", "ruleset"]),
            in_ns(&net.node, "ip", &["route"]),
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // ClusterIP from the node and from a pod (pod0 reaching itself too: hairpin).
    assert_balanced(&net.node, &web_addr).await;
    assert_balanced(&net.pods[0], &web_addr).await;

    // NodePort from another namespace, through the node's address.
    let answers = fetch(&net.outside, &format!("192.168.77.1:{node_port}"), 30).await;
    assert!(
        answers.iter().all(Result::is_ok),
        "node port: {:?}",
        counts(&answers)
    );
    assert!(
        counts(&answers).len() > 1,
        "node port reaches one backend only: {:?}",
        counts(&answers)
    );

    // ClientIP affinity sticks.
    let answers = counts(&fetch(&net.pods[1], &format!("{STICKY_VIP}:80"), 30).await);
    assert_eq!(answers.len(), 1, "affinity did not stick: {answers:?}");
    assert!(
        !answers.keys().next().expect("one").starts_with("error"),
        "{answers:?}"
    );

    // A service without endpoints fails at once, from the node and from a pod.
    for ns in [&net.node, &net.pods[2]] {
        let start = Instant::now();
        let r = fetch(ns, &format!("{EMPTY_VIP}:80"), 1).await;
        assert_eq!(r[0], Err(std::io::ErrorKind::ConnectionRefused), "from {ns}");
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "took {:?}",
            start.elapsed()
        );
    }
    // So does an address of the service CIDR no Service has.
    let r = fetch(&net.pods[2], "10.96.200.200:80", 1).await;
    assert_eq!(r[0], Err(std::io::ErrorKind::ConnectionRefused));

    // An endpoint going unready leaves the rules within about a second.
    let changed = Instant::now();
    let patch = Patch::Merge(json!({ "endpoints": slice("web", [true, true, false]).endpoints }));
    t(slices.patch("web-1", &PatchParams::default(), &patch))
        .await
        .expect("patch slice");
    let gone_after = loop {
        let answers = counts(&fetch(&net.node, &web_addr, 20).await);
        if !answers.contains_key("pod2") {
            break changed.elapsed();
        }
        assert!(changed.elapsed() < T, "pod2 still answers: {answers:?}");
    };
    let answers = counts(&fetch(&net.node, &web_addr, 60).await);
    assert!(!answers.contains_key("pod2") && answers.len() == 2, "{answers:?}");
    eprintln!("{mode}: unready endpoint left the rules after {gone_after:?}");
    assert!(gone_after < Duration::from_millis(2500), "took {gone_after:?}");

    // Deleted: the slice goes, the service has no endpoints, connections are refused.
    t(slices.delete("web-1", &Default::default()))
        .await
        .expect("delete slice");
    let start = Instant::now();
    loop {
        if fetch(&net.node, &web_addr, 1).await[0] == Err(std::io::ErrorKind::ConnectionRefused) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_millis(2500),
            "deleted endpoints still answer"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let text = metrics.render();
    assert!(
        text.contains("kubeproxy_network_programming_duration_seconds_count"),
        "{text}"
    );

    let _ = stop.send(());
    t(proxy).await.expect("proxy task");
    // Cleanup leaves the node namespace without anything of ours.
    proxier::cleanup(Some(node_ns.into()), "10.96.0.0/12".parse().expect("cidr")).expect("cleanup");
    let save = in_ns(&net.node, "iptables-save", &[]);
    assert!(!save.contains("KUBE-"), "{save}");
    let nft = in_ns(&net.node, "nft", &["list", "ruleset"]);
    assert!(!nft.contains("kube-proxy"), "{nft}");
    let routes = in_ns(&net.node, "ip", &["route"]);
    assert!(!routes.contains("10.96.0.0/12"), "{routes}");

    drop(net);
    assert_eq!(host_before, host_rules(), "the host's rules changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iptables_mode_end_to_end() {
    end_to_end(Mode::Iptables).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nftables_mode_end_to_end() {
    end_to_end(Mode::Nftables).await;
}
