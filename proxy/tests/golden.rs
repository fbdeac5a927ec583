//! Golden files of each mode's rendered rules for one snapshot that holds every case: plain ClusterIP,
//! NodePort, ClientIP affinity, no endpoints, externalTrafficPolicy Local, internalTrafficPolicy Local
//! without a local endpoint, terminating-only endpoints, unready endpoints, UDP.
//!
//! `SKIFF_UPDATE_GOLDEN=1 cargo test -p skiff-proxy --test golden` rewrites the files; review the diff.

use std::path::PathBuf;

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use serde_json::{Value, json};
use skiff_proxy::{RenderConfig, iptables, ipvs, nftables, snapshot::Snapshot};

fn service(name: &str, spec: Value) -> Service {
    serde_json::from_value(json!({ "metadata": { "namespace": "ns1", "name": name }, "spec": spec }))
        .expect("service")
}

fn slice(service: &str, port: u16, protocol: &str, endpoints: Value) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": { "namespace": "ns1", "name": format!("{service}-x"),
                      "labels": { "kubernetes.io/service-name": service } },
        "addressType": "IPv4",
        "ports": [{ "name": "p", "port": port, "protocol": protocol }],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

fn ep(ip: &str, node: &str) -> Value {
    json!({ "addresses": [ip], "nodeName": node })
}

/// The snapshot every golden file renders (this node is n1).
pub fn fixture() -> Snapshot {
    let port = |n: u16| json!([{ "name": "p", "port": n, "targetPort": 8080 }]);
    let services = vec![
        service("web", json!({ "clusterIP": "10.96.0.10", "ports": port(80) })),
        service(
            "np",
            json!({ "type": "NodePort", "clusterIP": "10.96.0.11",
                              "ports": [{ "name": "p", "port": 80, "nodePort": 30080 }] }),
        ),
        service(
            "sticky",
            json!({ "clusterIP": "10.96.0.12", "ports": port(80),
                                  "sessionAffinity": "ClientIP",
                                  "sessionAffinityConfig": { "clientIP": { "timeoutSeconds": 60 } } }),
        ),
        service(
            "empty",
            json!({ "type": "NodePort", "clusterIP": "10.96.0.13",
                                 "ports": [{ "name": "p", "port": 80, "nodePort": 30081 }] }),
        ),
        service(
            "local",
            json!({ "type": "NodePort", "clusterIP": "10.96.0.14",
                                 "externalTrafficPolicy": "Local",
                                 "ports": [{ "name": "p", "port": 80, "nodePort": 30082 }] }),
        ),
        service(
            "dns",
            json!({ "clusterIP": "10.96.0.15",
                               "ports": [{ "name": "p", "port": 53, "protocol": "UDP" }] }),
        ),
        service(
            "intlocal",
            json!({ "clusterIP": "10.96.0.16", "internalTrafficPolicy": "Local",
                                    "ports": port(80) }),
        ),
    ];
    let slices = vec![
        slice(
            "web",
            8080,
            "TCP",
            json!([
                ep("10.244.1.2", "n1"), ep("10.244.2.2", "n2"), ep("10.244.1.3", "n1"),
                { "addresses": ["10.244.2.9"], "nodeName": "n2", "conditions": { "ready": false } },
            ]),
        ),
        slice(
            "np",
            8080,
            "TCP",
            json!([ep("10.244.1.4", "n1"), ep("10.244.2.4", "n2")]),
        ),
        slice(
            "sticky",
            8080,
            "TCP",
            json!([ep("10.244.1.5", "n1"), ep("10.244.2.5", "n2")]),
        ),
        slice(
            "local",
            8080,
            "TCP",
            json!([ep("10.244.1.6", "n1"), ep("10.244.2.6", "n2")]),
        ),
        slice(
            "dns",
            5353,
            "UDP",
            json!([
                { "addresses": ["10.244.2.7"], "nodeName": "n2",
                  "conditions": { "ready": false, "serving": true, "terminating": true } },
            ]),
        ),
        slice("intlocal", 8080, "TCP", json!([ep("10.244.2.8", "n2")])),
    ];
    Snapshot::build(&services, &slices)
}

/// The render config of the golden files.
pub fn config() -> RenderConfig {
    RenderConfig {
        node_name: "n1".into(),
        cluster_cidr: Some("10.244.0.0/16".parse().expect("cidr")),
        service_cidr: "10.96.0.0/12".parse().expect("cidr"),
        node_ips: vec!["192.168.0.11".parse().expect("ip")],
    }
}

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("SKIFF_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (SKIFF_UPDATE_GOLDEN=1 writes it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the render at line {} (SKIFF_UPDATE_GOLDEN=1 rewrites it):\nexpected: {:?}\nactual:   {:?}",
            path.display(),
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn iptables_golden() {
    check("iptables.txt", &iptables::render(&fixture(), &config()).text());
}

#[test]
fn nftables_golden() {
    check(
        "nftables.nft",
        &nftables::render(&fixture(), &config()).full_text(),
    );
}

#[test]
fn ipvs_golden() {
    check("ipvs.txt", &ipvs::render(&fixture(), &config()).text());
}

#[test]
fn renders_are_deterministic_and_partial_syncs_touch_only_the_change() {
    let a = fixture();
    assert_eq!(iptables::render(&a, &config()), iptables::render(&a, &config()));
    // One endpoint of web goes unready: iptables rewrites KUBE-SVC of web and drops one KUBE-SEP;
    // nftables changes map elements only.
    let mut b = a.clone();
    let web = b
        .endpoints
        .iter_mut()
        .find(|(k, _)| k.name == "web")
        .expect("web")
        .1;
    web[0].ready = false;
    let (old, new) = (iptables::render(&a, &config()), iptables::render(&b, &config()));
    let text = new.restore_text(Some(&old), None);
    assert!(text.contains("-X KUBE-SEP-"), "{text}");
    assert!(!text.contains("sticky"), "{text}");
    assert_eq!(text.matches("*nat").count(), 1, "{text}");
    let (old, new) = (nftables::render(&a, &config()), nftables::render(&b, &config()));
    let text = new.partial_text(&old).expect("partial");
    assert!(
        text.lines()
            .all(|l| ["element", "chain", "rule", "map"].iter().any(|w| l.contains(w))),
        "{text}"
    );
    // web moves from the 3-endpoint map to the 2-endpoint one; nothing else has 3 endpoints.
    assert!(
        text.contains("delete map ip kube-proxy cluster-endpoints-3"),
        "{text}"
    );
    assert!(
        text.contains("add element ip kube-proxy cluster-endpoints-2"),
        "{text}"
    );
}

/// The golden files are real input: they load into a scratch namespace with the real tools (root only).
#[test]
fn golden_files_load_with_the_real_tools() {
    use std::process::{Command, Stdio};
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    });
    if !root || Command::new("nft").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and nft");
        return;
    }
    let ns = format!("skiff-px-golden-{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip")
            .success()
    );
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (tool, args, file) in [
        ("iptables-restore", vec!["--noflush"], "iptables.txt"),
        ("nft", vec!["-f", "-"], "nftables.nft"),
    ] {
        let input = std::fs::File::open(dir.join(file)).expect("golden file");
        let out = Command::new("ip")
            .args(["netns", "exec", &ns, tool])
            .args(&args)
            .stdin(Stdio::from(input))
            .output()
            .expect("run tool");
        assert!(
            out.status.success(),
            "{tool} < {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
