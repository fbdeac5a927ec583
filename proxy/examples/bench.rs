//! `skiff bench proxy` without the rest of skiff, for a quick release build:
//! `cargo run --release -p skiff-proxy --example bench -- [SERVICES,…] [MODES,…]`
//! (e.g. `1000,5000,10000 nftables,iptables`). Needs root (it creates scratch network namespaces).

fn main() -> Result<(), skiff_proxy::bench::Error> {
    let mut options = skiff_proxy::bench::Options::default();
    let mut args = std::env::args().skip(1);
    if let Some(services) = args.next() {
        options.services = services.split(',').map(str::parse).collect::<Result<_, _>>()?;
    }
    if let Some(modes) = args.next() {
        options.modes = modes.split(',').map(str::parse).collect::<Result<_, _>>()?;
    }
    skiff_proxy::bench::run(&options)
}
