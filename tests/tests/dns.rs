//! Cluster DNS against the real API server (in process): Services and EndpointSlices created
//! through kube-rs become answers over UDP and TCP on loopback (A, headless endpoints, hostnames,
//! SRV, PTR, NXDOMAIN, another namespace), changes show within about a second, and other names go
//! to a fake upstream resolver on loopback (never a real one), cached.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, Query, ResponseCode},
    rr::{Name, RData, Record, RecordType, rdata::A},
};
use k8s_openapi::api::{
    core::v1::{Namespace, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_proxy::dns::{DnsConfig, DnsHandle, Upstreams, start_dns};
use skiff_tests::{InProcess, eventually};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// The bound on any single call.
const T: Duration = Duration::from_secs(10);

fn query(name: &str, qtype: RecordType) -> Message {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    m
}

async fn udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let req = query(name, qtype);
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

async fn tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let req = query(name, qtype);
    let mut stream = tokio::time::timeout(T, TcpStream::connect(server))
        .await
        .expect("connect in time")
        .expect("connect");
    let bytes = req.to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    tokio::time::timeout(T, stream.write_all(&framed))
        .await
        .expect("write in time")
        .expect("write");
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

/// A fake upstream resolver on loopback: every A query gets 192.0.2.1 with TTL 60.
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
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let Ok(req) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::response(req.metadata.id, req.metadata.op_code);
            m.metadata.recursion_available = true;
            m.queries = req.queries.clone();
            let name = req.queries[0].name().clone();
            m.add_answer(Record::from_rdata(name, 60, RData::A(A([192, 0, 2, 1].into()))));
            let _ = socket.send_to(&m.to_vec().expect("encode"), peer).await;
        }
    });
    FakeUpstream { addr, queries, task }
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: K = serde_json::from_value(value).expect("object");
    tokio::time::timeout(T, api.create(&PostParams::default(), &obj))
        .await
        .expect("create in time")
        .expect("create")
}

fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    endpoints: serde_json::Value,
    ports: serde_json::Value,
) -> serde_json::Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns, "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": endpoints, "ports": ports,
    })
}

/// The API server, the objects of these tests, and the DNS serving them.
struct Setup {
    _server: InProcess,
    client: Client,
    dns: DnsHandle,
    upstream: FakeUpstream,
    web_ip: IpAddr,
}

async fn setup() -> Setup {
    let server = tokio::time::timeout(
        Duration::from_secs(60),
        InProcess::start(WatchCacheOptions::default()),
    )
    .await
    .expect("server in time")
    .expect("server");
    let client = server.client.clone();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(&namespaces, json!({"metadata": {"name": "dns-other"}})).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let web = create(
        &services,
        json!({"metadata": {"name": "web"},
               "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    )
    .await;
    let web_ip = ip(web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("allocated ClusterIP")
        .as_str());
    create(
        &services,
        json!({"metadata": {"name": "db"},
               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await;
    create(
        &services,
        json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
    )
    .await;
    let other: Api<Service> = Api::namespaced(client.clone(), "dns-other");
    create(
        &other,
        json!({"metadata": {"name": "api"}, "spec": {"ports": [{"name": "https", "port": 443}]}}),
    )
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    create(
        &slices,
        slice(
            "default",
            "db",
            "db-1",
            json!([
                {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.244.1.6"], "hostname": "db-1", "conditions": {"ready": true}},
                {"addresses": ["10.244.1.7"], "hostname": "db-2", "conditions": {"ready": false}},
            ]),
            json!([{"name": "pg", "port": 5432, "protocol": "TCP"}]),
        ),
    )
    .await;
    let upstream = fake_upstream().await;
    let cfg = DnsConfig {
        bind: vec!["127.0.0.1:0".parse().expect("addr")],
        upstreams: Upstreams::Servers(vec![upstream.addr]),
        upstream_timeout: Duration::from_secs(1),
        ..DnsConfig::default()
    };
    let dns = tokio::time::timeout(T, start_dns(client.clone(), cfg))
        .await
        .expect("DNS in time")
        .expect("DNS");
    let udp_addr = dns.udp[0];
    eventually(
        "the DNS to see the cluster",
        Duration::from_secs(10),
        || async move {
            let m = udp(udp_addr, "web.default.svc.cluster.local.", RecordType::A).await;
            (m.metadata.response_code == ResponseCode::NoError && !m.answers.is_empty()).then_some(())
        },
    )
    .await;
    Setup {
        _server: server,
        client,
        dns,
        upstream,
        web_ip,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_resolve_over_udp_and_tcp() {
    let s = setup().await;
    let (u, t) = (s.dns.udp[0], s.dns.tcp[0]);

    for m in [
        udp(u, "web.default.svc.cluster.local.", RecordType::A).await,
        tcp(t, "web.default.svc.cluster.local.", RecordType::A).await,
    ] {
        assert_eq!(ips(&m), [s.web_ip]);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers[0].ttl, 30);
    }
    let m = udp(u, "api.dns-other.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.answers.len(), 1, "another namespace: {m:?}");

    // Headless: every ready endpoint, and each by its hostname.
    let m = tcp(t, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&m), [ip("10.244.1.5"), ip("10.244.1.6")]);
    let m = udp(u, "db-1.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&m), [ip("10.244.1.6")]);

    // SRV for a named port, of a ClusterIP Service and of a headless one.
    let m = udp(u, "_http._tcp.web.default.svc.cluster.local.", RecordType::SRV).await;
    assert!(matches!(&m.answers[..], [r] if matches!(&r.data,
        RData::SRV(srv) if srv.port == 80 && srv.target.to_ascii() == "web.default.svc.cluster.local.")));
    let m = tcp(t, "_pg._tcp.db.default.svc.cluster.local.", RecordType::SRV).await;
    let mut targets: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.target.to_ascii()),
            _ => None,
        })
        .collect();
    targets.sort();
    assert_eq!(
        targets,
        [
            "db-0.db.default.svc.cluster.local.",
            "db-1.db.default.svc.cluster.local."
        ]
    );

    // PTR of the ClusterIP and of a headless endpoint.
    let IpAddr::V4(v4) = s.web_ip else {
        panic!("IPv4 service CIDR")
    };
    let [a, b, c, d] = v4.octets();
    let m = udp(u, &format!("{d}.{c}.{b}.{a}.in-addr.arpa."), RecordType::PTR).await;
    assert!(
        matches!(&m.answers[..], [r] if matches!(&r.data,
        RData::PTR(p) if p.0.to_ascii() == "web.default.svc.cluster.local.")),
        "{m:?}"
    );
    let m = udp(u, "5.1.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(
        matches!(&m.answers[..], [r] if matches!(&r.data,
        RData::PTR(p) if p.0.to_ascii() == "db-0.db.default.svc.cluster.local.")),
        "{m:?}"
    );

    // Unknown names: NXDOMAIN with the SOA; a known name with another type: NODATA.
    for name in [
        "nope.default.svc.cluster.local.",
        "web.nope.svc.cluster.local.",
        "db-2.db.default.svc.cluster.local.",
    ] {
        let m = udp(u, name, RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{name}");
        assert!(matches!(&m.authorities[..], [r] if matches!(r.data, RData::SOA(_))));
    }
    let m = udp(u, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());

    // ExternalName: a CNAME, its target resolved through the upstream.
    let m = udp(u, "ext.default.svc.cluster.local.", RecordType::A).await;
    assert!(matches!(&m.answers[0].data, RData::CNAME(c) if c.0.to_ascii() == "example.com."));
    assert_eq!(ips(&m), [ip("192.0.2.1")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_show_within_a_second() {
    let s = setup().await;
    let u = s.dns.udp[0];

    // A Service deleted.
    let other: Api<Service> = Api::namespaced(s.client.clone(), "dns-other");
    tokio::time::timeout(T, other.delete("api", &DeleteParams::default()))
        .await
        .expect("delete in time")
        .expect("delete");
    let started = Instant::now();
    eventually(
        "the deleted Service to be NXDOMAIN",
        Duration::from_secs(2),
        || async move {
            let m = udp(u, "api.dns-other.svc.cluster.local.", RecordType::A).await;
            (m.metadata.response_code == ResponseCode::NXDomain).then_some(())
        },
    )
    .await;
    let deleted = started.elapsed();

    // An endpoint added (and an unready one becoming ready).
    let slices: Api<EndpointSlice> = Api::namespaced(s.client.clone(), "default");
    let patch = json!({"endpoints": [
        {"addresses": ["10.244.1.5"], "hostname": "db-0", "conditions": {"ready": true}},
        {"addresses": ["10.244.1.6"], "hostname": "db-1", "conditions": {"ready": true}},
        {"addresses": ["10.244.1.7"], "hostname": "db-2", "conditions": {"ready": true}},
        {"addresses": ["10.244.1.8"], "hostname": "db-3", "conditions": {"ready": true}},
    ]});
    tokio::time::timeout(
        T,
        slices.patch("db-1", &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    .expect("patch in time")
    .expect("patch");
    let started = Instant::now();
    eventually(
        "the new endpoint to resolve",
        Duration::from_secs(2),
        || async move {
            let m = udp(u, "db-3.db.default.svc.cluster.local.", RecordType::A).await;
            (ips(&m) == [ip("10.244.1.8")]).then_some(())
        },
    )
    .await;
    let added = started.elapsed();
    let m = udp(u, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.answers.len(), 4);
    println!("service deletion seen after {deleted:?}, endpoint addition after {added:?}");
    assert!(deleted < Duration::from_secs(1) && added < Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_go_to_the_upstream_and_are_cached() {
    let s = setup().await;
    let before = s.upstream.queries.load(Ordering::SeqCst);
    let m = udp(s.dns.udp[0], "example.org.", RecordType::A).await;
    assert_eq!(ips(&m), [ip("192.0.2.1")]);
    let m = tcp(s.dns.tcp[0], "example.org.", RecordType::A).await;
    assert_eq!(ips(&m), [ip("192.0.2.1")]);
    assert!(m.answers[0].ttl <= 30);
    assert_eq!(
        s.upstream.queries.load(Ordering::SeqCst) - before,
        1,
        "the second answer came from the cache"
    );
}

/// Pods with `hostname` and `subdomain` behind a headless Service, through the real EndpointSlice
/// controller: the StatefulSet pattern (`web-0.nginx.default.svc.cluster.local`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_hostnames_behind_a_headless_service_through_the_endpointslice_controller() {
    use k8s_openapi::{api::core::v1::Node, jiff::Timestamp};
    use skiff_tests::Component;
    let s = setup().await;
    let client = s.client.clone();
    let _controller = Component::spawn(|shutdown| {
        skiff_controllers::endpointslice::run(client, Default::default(), shutdown)
    });
    // The controller leaves out pods of unknown nodes.
    create(
        &Api::<Node>::all(s.client.clone()),
        json!({"metadata": {"name": "n1"}}),
    )
    .await;
    let services: Api<Service> = Api::namespaced(s.client.clone(), "default");
    create(
        &services,
        json!({"metadata": {"name": "nginx"},
               "spec": {"clusterIP": "None", "selector": {"app": "nginx"},
                        "ports": [{"name": "web", "port": 80}]}}),
    )
    .await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(s.client.clone(), "default");
    for (i, ip) in ["10.244.3.10", "10.244.3.11"].iter().enumerate() {
        let name = format!("web-{i}");
        create(
            &pods,
            json!({"metadata": {"name": name, "labels": {"app": "nginx"}},
                   "spec": {"nodeName": "n1", "hostname": name, "subdomain": "nginx",
                            "containers": [{"name": "c", "image": "nginx"}]}}),
        )
        .await;
        let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True",
                            "lastTransitionTime": Timestamp::now().to_string()}]}});
        tokio::time::timeout(
            T,
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)),
        )
        .await
        .expect("status in time")
        .expect("status");
    }
    let u = s.dns.udp[0];
    eventually("web-1.nginx to resolve", Duration::from_secs(10), || async move {
        let m = udp(u, "web-1.nginx.default.svc.cluster.local.", RecordType::A).await;
        (ips(&m) == [ip("10.244.3.11")]).then_some(())
    })
    .await;
    let m = udp(u, "nginx.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(ips(&m), [ip("10.244.3.10"), ip("10.244.3.11")]);
    let m = udp(u, "10.3.244.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(
        matches!(&m.answers[..], [r] if matches!(&r.data,
        RData::PTR(p) if p.0.to_ascii() == "web-0.nginx.default.svc.cluster.local.")),
        "{m:?}"
    );
}
