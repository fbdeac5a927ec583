//! As root, in scratch network namespaces this test creates: partial nftables syncs applied with the
//! real `nft` leave exactly the ruleset a full sync of the final state gives (listed and compared
//! line for line), and a full sync after them changes nothing. Skipped when not root or without `nft`.

use std::{process::Command, sync::Arc};

use skiff_proxy::{
    Mode, RenderConfig,
    bench::{Scratch, snapshot},
    proxier::Programmer,
    sink::SystemSink,
    snapshot::Snapshot,
};

fn can_run() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let nft = Command::new("sh")
        .args(["-c", "command -v nft && command -v nsenter"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(root && nft) {
        eprintln!("skipping: needs root, nft and nsenter");
    }
    root && nft
}

fn config() -> RenderConfig {
    RenderConfig {
        node_name: "node-3".into(),
        cluster_cidr: Some("10.128.0.0/9".parse().expect("cidr")),
        service_cidr: "10.96.0.0/12".parse().expect("cidr"),
        node_ips: Vec::new(),
    }
}

/// `nft list table`, its lines sorted (element order in a listing is the kernel's).
fn listing(scratch: &Scratch) -> Vec<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", scratch.path().display()))
        .args(["nft", "list", "table", "ip", "kube-proxy"])
        .output()
        .expect("nft list");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_end_matches(',').to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    lines.sort();
    lines
}

fn programmer(scratch: &Scratch) -> Programmer {
    let sink = SystemSink {
        netns: Some(scratch.path()),
        service_cidr: config().service_cidr,
    };
    Programmer::new(Mode::Nftables, config(), Arc::new(sink))
}

#[test]
fn nftables_partials_leave_what_a_full_sync_gives() {
    if !can_run() {
        return;
    }
    let mut s = snapshot(200, 3);
    let a = Scratch::create().expect("netns");
    let mut p = programmer(&a);
    assert!(p.sync(&s, true).expect("full").full);
    let names: Vec<_> = s.services.keys().cloned().collect();
    type Step<'a> = Box<dyn Fn(&mut Snapshot) + 'a>;
    let steps: Vec<Step> = vec![
        // One endpoint replaced.
        Box::new(|s| s.endpoints.get_mut(&names[7]).expect("svc")[0].ip = "10.200.0.7".parse().expect("ip")),
        // A new endpoint count (a new shared chain and map), then back (they go).
        Box::new(|s| {
            let eps = s.endpoints.get_mut(&names[8]).expect("svc");
            let mut extra = eps[0].clone();
            extra.ip = "10.200.0.8".parse().expect("ip");
            eps.push(extra);
        }),
        Box::new(|s| {
            s.endpoints.get_mut(&names[8]).expect("svc").pop();
        }),
        // A service gone, one without endpoints, one with affinity and Local policies.
        Box::new(|s| {
            s.services.remove(&names[9]);
            s.endpoints.remove(&names[9]);
            s.endpoints.insert(names[10].clone(), Vec::new());
            if let Some(svc) = s.services.get_mut(&names[20]) {
                svc.affinity_timeout = Some(60);
                svc.external_local = true;
                svc.node_port = Some(31999);
            }
        }),
        // Affinity removed again.
        Box::new(|s| {
            if let Some(svc) = s.services.get_mut(&names[20]) {
                svc.affinity_timeout = None;
            }
        }),
    ];
    for step in &steps {
        step(&mut s);
        let report = p.sync(&s, false).expect("partial");
        assert!(!report.full && report.applied);
    }
    let after_partials = listing(&a);

    let b = Scratch::create().expect("netns");
    let mut q = programmer(&b);
    q.sync(&s, true).expect("full");
    assert_eq!(after_partials, listing(&b));
    // A full sync over the partials changes nothing.
    p.sync(&s, true).expect("full again");
    assert_eq!(listing(&a), listing(&b));
}
