//! The service proxy and cluster DNS of skiff, the counterparts of kube-proxy and CoreDNS.
//!
//! It will take a snapshot of Services and EndpointSlices, render the whole ruleset in a pure function
//! and apply it through a RuleSink (iptables-restore, nft, ipvs), and answer `*.svc.<domain>` names
//! from the same snapshot. Nothing is implemented yet: see issue 6.
pub mod dns;
