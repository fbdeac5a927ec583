//! The node agent of skiff, the counterpart of the kubelet.
//!
//! The kubelet's job is the same whatever runs the containers: register the Node and keep its status
//! and Lease fresh ([`node`], [`lease`]), follow the pods bound to the node and bring each to what
//! its spec asks ([`pod_workers`]), and report what really runs as the pod's status ([`status`]).
//! What runs them sits behind the [`runtime::ContainerRuntime`] trait (CRI's RuntimeService in
//! miniature).
//!
//! Two runtimes implement it. [`runtime::FakeRuntime`], whose containers "run" at once, lets
//! [`hollow`] run many *hollow nodes* in one process (as kubemark and kwok do), enough to measure the
//! control plane at the scale of a thousand nodes on one machine. [`runc_runtime::RuncRuntime`] runs
//! pods for real: a pause sandbox ([`pause`], [`oci`]) and app containers joining its namespaces, with
//! runc ([`runc`]), CNI bridge networking ([`cni`]) and the pod's /etc files ([`dns`]);
//! [`kubelet::run_kubelet`] is one real node's main loop over it (with a PLEG that relists the
//! runtime, so exits are noticed, and restarts by the pod's restart policy). On such a node a pod's
//! env comes from every source ([`envvars`]), its volumes are set up ([`volumes`]) and its
//! containers configured ([`container_config`]), and its probes run ([`prober`]).
//! Containers' root filesystems come from [`images`]: a content-addressed OCI store, overlay
//! mounts, tarball imports and registry pulls under the pods' pull policies. [`server`] is the
//! kubelet API (:10250) the API server proxies logs and exec to. [`hostgw`] routes the other nodes'
//! pod CIDRs through their addresses (flannel's host-gw), so pods on different nodes reach each other.
//! [`eviction`] watches memory, disk and PIDs, reports the node's pressure conditions, and evicts
//! pods while a hard threshold is crossed.

pub mod cni;
pub mod container_config;
pub mod dns;
pub mod envvars;
pub mod events;
pub mod eviction;
pub mod hollow;
pub mod hostgw;
pub mod images;
pub mod kubelet;
pub mod lease;
pub mod lifecycle;
pub mod logs;
pub mod node;
pub mod oci;
pub mod pause;
pub mod pod_workers;
pub mod prober;
pub mod runc;
pub mod runc_exec;
pub mod runc_runtime;
pub mod runtime;
pub mod server;
pub mod startup;
pub mod status;
pub mod volumes;

/// The time as Kubernetes writes `metav1.Time`: RFC 3339, seconds, UTC.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The time as Kubernetes writes `metav1.MicroTime` (Lease renew times).
pub fn now_micro() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}
