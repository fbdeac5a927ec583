//! Unit tests of the answer logic on a snapshot built here, and of the listeners and forwarding on
//! loopback (a fake upstream, never a real resolver).

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hickory_proto::{
    op::{Edns, Message, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
    sync::watch,
};

use super::{
    DnsConfig, Upstreams,
    answer::{Outcome, Responder},
    parse_resolv_conf, serve,
    snapshot::Snapshot,
};

/// Every await in these tests is bounded by this.
const T: Duration = Duration::from_secs(5);

fn ns(name: &str) -> Namespace {
    serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace")
}

fn svc(ns: &str, name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}))
        .expect("service")
}

fn slice(ns: &str, svc: &str, endpoints: serde_json::Value, ports: serde_json::Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{svc}-abc"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }))
    .expect("slice")
}

/// The cluster of these tests.
fn cluster() -> Snapshot {
    let namespaces = [ns("default"), ns("other"), ns("kube-system")];
    let services = [
        svc(
            "default",
            "web",
            json!({"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                      {"name": "metrics", "port": 9090, "protocol": "TCP"}]}),
        ),
        svc(
            "default",
            "db",
            json!({"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}),
        ),
        svc(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.com"}),
        ),
        svc(
            "default",
            "alias",
            json!({"type": "ExternalName", "externalName": "web.default.svc.cluster.local"}),
        ),
        svc(
            "default",
            "dual",
            json!({"clusterIP": "10.96.0.40", "clusterIPs": ["10.96.0.40", "fd00::40"],
            "ports": [{"port": 80}]}),
        ),
        svc(
            "other",
            "api",
            json!({"clusterIP": "10.96.0.30", "ports": [{"name": "https", "port": 443}]}),
        ),
        svc(
            "kube-system",
            "kube-dns",
            json!({"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
        ),
    ];
    let slices = [
        slice(
            "default",
            "db",
            json!([
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.1.6"], "hostname": "db-1"},
                {"addresses": ["10.244.1.7"], "conditions": {"ready": true}},
                {"addresses": ["10.244.1.8"], "hostname": "db-3", "conditions": {"ready": false}},
            ]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ),
        slice(
            "default",
            "web",
            json!([{"addresses": ["10.244.2.9"], "conditions": {"ready": true}}]),
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
        ),
    ];
    let mut snap = Snapshot::build(&namespaces, &services, &slices);
    snap.synced = true;
    snap
}

fn request(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

fn responder() -> Responder {
    Responder::new("cluster.local", 30)
}

/// The reply the snapshot gives (panics if the query would go upstream).
fn ask(snap: &Snapshot, name: &str, qtype: RecordType) -> Message {
    match responder().answer(snap, &request(name, qtype)) {
        Outcome::Reply(m) => m,
        other => panic!("{name} {qtype}: expected a reply, got {other:?}"),
    }
}

fn ips(m: &Message) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    ips.sort();
    ips
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn assert_soa_authority(m: &Message) {
    let [soa] = m.authorities.as_slice() else {
        panic!("one SOA in authority: {m:?}");
    };
    let RData::SOA(data) = &soa.data else {
        panic!("SOA: {soa:?}");
    };
    assert_eq!(soa.name.to_ascii(), "cluster.local.");
    assert_eq!(data.mname.to_ascii(), "ns.dns.cluster.local.");
    assert_eq!(data.rname.to_ascii(), "hostmaster.cluster.local.");
    assert_eq!(
        (data.refresh, data.retry, data.expire, data.minimum),
        (7200, 1800, 86400, 30)
    );
}

#[test]
fn service_a_is_its_cluster_ip() {
    let m = ask(&cluster(), "web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(ips(&m), [ip("10.96.0.20")]);
    assert_eq!(m.answers[0].ttl, 30);
    assert_eq!(m.answers[0].name.to_ascii(), "web.default.svc.cluster.local.");
}

#[test]
fn names_are_case_insensitive_and_answers_keep_the_askers_case() {
    let m = ask(&cluster(), "WEB.Default.SVC.Cluster.Local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.96.0.20")]);
    assert_eq!(m.answers[0].name.to_ascii(), "WEB.Default.SVC.Cluster.Local.");
}

#[test]
fn headless_service_answers_every_ready_endpoint() {
    let m = ask(&cluster(), "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.244.1.5"), ip("10.244.1.6"), ip("10.244.1.7")]);
}

#[test]
fn endpoint_names_are_hostnames_or_dashed_ips() {
    let snap = cluster();
    let m = ask(&snap, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.244.1.5")]);
    let m = ask(&snap, "10-244-1-7.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.244.1.7")]);
    // Not ready: not there.
    let m = ask(&snap, "db-3.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    // CoreDNS answers endpoint names of ClusterIP Services too.
    let m = ask(&snap, "10-244-2-9.web.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.244.2.9")]);
}

#[test]
fn srv_of_a_named_port_points_at_the_service() {
    let m = ask(
        &cluster(),
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let [srv] = m.answers.as_slice() else {
        panic!("one SRV: {m:?}");
    };
    let RData::SRV(srv) = &srv.data else { panic!() };
    assert_eq!((srv.priority, srv.weight, srv.port), (0, 100, 80));
    assert_eq!(srv.target.to_ascii(), "web.default.svc.cluster.local.");
    assert_eq!(m.additionals.len(), 1);
    assert_eq!(m.additionals[0].name.to_ascii(), "web.default.svc.cluster.local.");
    // Every port when none is named in the query.
    let m = ask(&cluster(), "web.default.svc.cluster.local.", RecordType::SRV);
    assert_eq!(m.answers.len(), 2);
    // A port that does not exist.
    let m = ask(
        &cluster(),
        "_nope._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn srv_of_a_headless_service_has_one_record_per_endpoint() {
    let m = ask(
        &cluster(),
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    let mut targets: Vec<(String, u16, u16)> = m
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::SRV(s) => (s.target.to_ascii(), s.port, s.weight),
            other => panic!("{other:?}"),
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            ("10-244-1-7.db.default.svc.cluster.local.".to_owned(), 5432, 33),
            ("db-0.db.default.svc.cluster.local.".to_owned(), 5432, 33),
            ("db-1.db.default.svc.cluster.local.".to_owned(), 5432, 33),
        ]
    );
    assert_eq!(m.additionals.len(), 3, "the targets' addresses");
}

#[test]
fn ptr_for_cluster_ips_and_endpoint_ips() {
    let snap = cluster();
    let ptr = |name: &str| -> Vec<String> {
        let m = ask(&snap, name, RecordType::PTR);
        m.answers
            .iter()
            .map(|r| match &r.data {
                RData::PTR(p) => p.0.to_ascii(),
                other => panic!("{other:?}"),
            })
            .collect()
    };
    assert_eq!(
        ptr("20.0.96.10.in-addr.arpa."),
        ["web.default.svc.cluster.local."]
    );
    assert_eq!(ptr("30.0.96.10.in-addr.arpa."), ["api.other.svc.cluster.local."]);
    assert_eq!(
        ptr("5.1.244.10.in-addr.arpa."),
        ["db-0.db.default.svc.cluster.local."]
    );
    assert_eq!(
        ptr("7.1.244.10.in-addr.arpa."),
        ["10-244-1-7.db.default.svc.cluster.local."]
    );
    let v6 = "0.4.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    assert_eq!(ptr(v6), ["dual.default.svc.cluster.local."]);
    // Not ours: forwarded (CoreDNS's `fallthrough in-addr.arpa ip6.arpa`).
    let outcome = responder().answer(&snap, &request("1.1.168.192.in-addr.arpa.", RecordType::PTR));
    assert!(matches!(outcome, Outcome::Forward), "{outcome:?}");
}

#[test]
fn unknown_names_are_nxdomain_with_the_soa() {
    let snap = cluster();
    for name in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "nope.svc.cluster.local.",
        "foo.cluster.local.",
        "a.b.c.web.default.svc.cluster.local.",
    ] {
        let m = ask(&snap, name, RecordType::A);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(m.metadata.authoritative);
        assert!(m.answers.is_empty());
        assert_soa_authority(&m);
    }
}

#[test]
fn existing_names_without_the_type_are_nodata() {
    let snap = cluster();
    for (name, qtype) in [
        ("web.default.svc.cluster.local.", RecordType::AAAA),
        ("web.default.svc.cluster.local.", RecordType::MX),
        ("web.default.svc.cluster.local.", RecordType::TXT),
        ("default.svc.cluster.local.", RecordType::A),
        ("svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::A),
        ("ext.default.svc.cluster.local.", RecordType::SRV),
    ] {
        let m = ask(&snap, name, qtype);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name} {qtype}");
        assert!(m.answers.is_empty(), "{name} {qtype}: {m:?}");
        assert_soa_authority(&m);
    }
    // MX on a name that does not exist is NXDOMAIN, not NODATA.
    let m = ask(&snap, "nope.default.svc.cluster.local.", RecordType::MX);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn dual_stack_services_answer_both_families() {
    let snap = cluster();
    let m = ask(&snap, "dual.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(ips(&m), [ip("fd00::40")]);
    let m = ask(&snap, "dual.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.96.0.40")]);
}

#[test]
fn external_name_is_a_cname() {
    let snap = cluster();
    let outcome = responder().answer(&snap, &request("ext.default.svc.cluster.local.", RecordType::A));
    let Outcome::Chase { reply, target, qtype } = outcome else {
        panic!("an external CNAME target is chased upstream: {outcome:?}");
    };
    assert_eq!(
        (target.to_ascii().as_str(), qtype),
        ("example.com.", RecordType::A)
    );
    assert!(matches!(&reply.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "example.com."));
    let m = ask(&snap, "ext.default.svc.cluster.local.", RecordType::CNAME);
    assert!(matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "example.com."));
    // A target inside the cluster is followed right away.
    let m = ask(&snap, "alias.default.svc.cluster.local.", RecordType::A);
    assert!(matches!(&m.answers[0].data, RData::CNAME(_)));
    assert_eq!(ips(&m), [ip("10.96.0.20")]);
}

#[test]
fn pod_names_resolve_to_their_ip() {
    let m = ask(&cluster(), "10-244-1-5.default.pod.cluster.local.", RecordType::A);
    assert_eq!(ips(&m), [ip("10.244.1.5")]);
    let m = ask(&cluster(), "10-244-1-5.nope.pod.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn zone_apex_and_schema_version() {
    let snap = cluster();
    let m = ask(&snap, "cluster.local.", RecordType::SOA);
    assert!(matches!(&m.answers[0].data, RData::SOA(_)));
    let m = ask(&snap, "cluster.local.", RecordType::NS);
    assert!(matches!(&m.answers[0].data, RData::NS(n) if n.0.to_ascii() == "ns.dns.cluster.local."));
    assert_eq!(m.additionals.len(), 1, "the kube-dns ClusterIP");
    let m = ask(&snap, "dns-version.cluster.local.", RecordType::TXT);
    assert!(matches!(&m.answers[0].data, RData::TXT(t) if t.to_string() == "1.1.0"));
    let m = ask(&snap, "cluster.local.", RecordType::AXFR);
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
}

#[test]
fn names_outside_the_domain_are_forwarded() {
    let outcome = responder().answer(&cluster(), &request("example.org.", RecordType::A));
    assert!(matches!(outcome, Outcome::Forward));
    // A name that merely ends like the domain is not in it.
    let outcome = responder().answer(&cluster(), &request("notcluster.local.", RecordType::A));
    assert!(matches!(outcome, Outcome::Forward));
}

#[test]
fn before_the_first_sync_unknown_names_are_servfail() {
    let mut snap = cluster();
    snap.synced = false;
    let m = ask(&snap, "nope.default.svc.cluster.local.", RecordType::A);
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn resolv_conf_nameservers() {
    let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nnameserver fe80::1%eth0\noptions ndots:5\n";
    assert_eq!(
        parse_resolv_conf(text),
        [
            SocketAddr::from(([192, 0, 2, 53], 53)),
            "[2001:db8::53]:53".parse().expect("addr")
        ]
    );
}

// ---- listeners on loopback ----

/// A fake upstream resolver on loopback: answers every query with 192.0.2.1 (TTL 60), or NXDOMAIN
/// for names starting with `missing`; counts the queries it gets.
struct FakeUpstream {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake_upstream() -> FakeUpstream {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    let queries = Arc::new(AtomicUsize::new(0));
    let counter = queries.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let req = Message::from_vec(&buf[..n]).expect("query");
            let mut m = Responder::reply_to(&req);
            m.metadata.recursion_available = true;
            let q = &req.queries[0];
            if q.name().to_ascii().starts_with("missing") {
                m.metadata.response_code = ResponseCode::NXDomain;
            } else {
                m.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A([192, 0, 2, 1].into())),
                ));
            }
            let _ = socket.send_to(&m.to_vec().expect("encode"), peer).await;
        }
    });
    FakeUpstream { addr, queries, task }
}

fn config(upstreams: Vec<SocketAddr>) -> DnsConfig {
    DnsConfig {
        bind: vec!["127.0.0.1:0".parse().expect("addr")],
        upstreams: Upstreams::Servers(upstreams),
        upstream_timeout: Duration::from_millis(500),
        ..DnsConfig::default()
    }
}

async fn udp(server: SocketAddr, req: &Message) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    socket.connect(server).await.expect("connect");
    socket.send(&req.to_vec().expect("encode")).await.expect("send");
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(T, socket.recv(&mut buf))
        .await
        .expect("UDP answer in time")
        .expect("recv");
    let m = Message::from_vec(&buf[..n]).expect("decode");
    assert_eq!(m.metadata.id, req.metadata.id);
    m
}

async fn tcp(server: SocketAddr, req: &Message) -> Message {
    let mut stream = tokio::time::timeout(T, TcpStream::connect(server))
        .await
        .expect("connect in time")
        .expect("connect");
    let bytes = req.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await.expect("write");
    let len = tokio::time::timeout(T, stream.read_u16())
        .await
        .expect("TCP answer in time")
        .expect("len");
    let mut body = vec![0u8; len as usize];
    tokio::time::timeout(T, stream.read_exact(&mut body))
        .await
        .expect("body in time")
        .expect("body");
    Message::from_vec(&body).expect("decode")
}

/// A snapshot with a headless Service of `n` ready endpoints.
fn big_headless(n: usize) -> Snapshot {
    let endpoints: Vec<_> = (0..n)
        .map(|i| json!({"addresses": [format!("10.244.{}.{}", i / 250, i % 250 + 1)]}))
        .collect();
    let mut snap = Snapshot::build(
        &[ns("default")],
        &[svc("default", "big", json!({"clusterIP": "None"}))],
        &[slice(
            "default",
            "big",
            json!(endpoints),
            json!([{"name": "p", "port": 1}]),
        )],
    );
    snap.synced = true;
    snap
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_truncated_over_udp_and_whole_over_tcp() {
    let (_tx, rx) = watch::channel(Arc::new(big_headless(100)));
    let dns = tokio::time::timeout(T, serve(config(vec![]), rx))
        .await
        .expect("in time")
        .expect("serve");
    let req = request("big.default.svc.cluster.local.", RecordType::A);
    let m = udp(dns.udp[0], &req).await;
    assert!(m.metadata.truncation, "100 A records do not fit 512 bytes");
    assert!(m.answers.is_empty());
    let m = tcp(dns.tcp[0], &req).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
    // With EDNS and a 4096-byte buffer, the answer (~1.6 kB) fits in UDP.
    let mut req = request("big.default.svc.cluster.local.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    req.set_edns(edns);
    let m = udp(dns.udp[0], &req).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_uses_the_upstream_once_per_ttl() {
    let upstream = fake_upstream().await;
    let (_tx, rx) = watch::channel(Arc::new(cluster()));
    let dns = tokio::time::timeout(T, serve(config(vec![upstream.addr]), rx))
        .await
        .expect("in time")
        .expect("serve");
    let m = udp(dns.udp[0], &request("example.org.", RecordType::A)).await;
    assert_eq!(ips(&m), [ip("192.0.2.1")]);
    assert_eq!(m.answers[0].ttl, 60, "the upstream's TTL, first time");
    let m = tcp(dns.tcp[0], &request("EXAMPLE.org.", RecordType::A)).await;
    assert_eq!(ips(&m), [ip("192.0.2.1")]);
    assert_eq!(
        m.queries[0].name().to_ascii(),
        "EXAMPLE.org.",
        "the asker's question back"
    );
    assert!(
        m.answers[0].ttl <= 30,
        "cached answers live at most 30 s (`cache 30`)"
    );
    assert_eq!(
        upstream.queries.load(Ordering::SeqCst),
        1,
        "the second came from the cache"
    );
    // An NXDOMAIN without SOA is passed on but not cached.
    for _ in 0..2 {
        let m = udp(dns.udp[0], &request("missing.example.org.", RecordType::A)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(upstream.queries.load(Ordering::SeqCst), 3);
    // The ExternalName target is resolved upstream and appended to the CNAME.
    let m = udp(
        dns.udp[0],
        &request("ext.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert!(matches!(&m.answers[0].data, RData::CNAME(_)));
    assert_eq!(ips(&m), [ip("192.0.2.1")]);
    // Cluster names never go upstream.
    let before = upstream.queries.load(Ordering::SeqCst);
    let m = udp(
        dns.udp[0],
        &request("web.default.svc.cluster.local.", RecordType::A),
    )
    .await;
    assert_eq!(ips(&m), [ip("10.96.0.20")]);
    assert_eq!(upstream.queries.load(Ordering::SeqCst), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_upstreams_outside_names_are_refused_and_a_dead_upstream_is_servfail() {
    let (_tx, rx) = watch::channel(Arc::new(cluster()));
    let dns = tokio::time::timeout(T, serve(config(vec![]), rx.clone()))
        .await
        .expect("in time")
        .expect("serve");
    let m = udp(dns.udp[0], &request("example.org.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    // An upstream that never answers (a bound socket nobody reads).
    let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let dns = tokio::time::timeout(T, serve(config(vec![silent.local_addr().expect("addr")]), rx))
        .await
        .expect("in time")
        .expect("serve");
    let m = udp(dns.udp[0], &request("example.org.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}
