//! Prints the iptables-restore input of a full sync of N services x 10 endpoints (for measuring the
//! tool alone): `cargo run --release -p skiff-proxy --example iptext -- 5000 > rules.txt`.
fn main() {
    let n = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let config = skiff_proxy::RenderConfig {
        node_name: "bench-node".into(),
        cluster_cidr: Some("10.128.0.0/9".parse().expect("cidr")),
        service_cidr: "10.96.0.0/12".parse().expect("cidr"),
        node_ips: vec![std::net::Ipv4Addr::new(192, 168, 0, 1)],
    };
    let snap = skiff_proxy::bench::snapshot(n, 10);
    print!("{}", skiff_proxy::iptables::render(&snap, &config).text());
}
