//! The pod startup latency tracker, in the role of upstream's `pod_startup_latency_tracker.go`: for
//! each pod the kubelet starts, how long its first start took and where the time went, logged once as
//! one `observed pod startup` line when the kubelet first writes the pod's status as Running (upstream
//! logs "Observed pod startup duration" at the same moment).
//!
//! The phases are timed where they happen, by the real runtime ([`crate::runc_runtime`]), only until
//! the pod is first reported Running (restarts later do not count):
//!
//! - `sandbox_ms`: the pause sandbox: its bundle, `runc run -d` of the pause process;
//! - `network_ms`: CNI ADD into the sandbox's network namespace (bridge, veth, IPAM) and the pod's
//!   /etc/hosts, hostname and resolv.conf;
//! - `container_create_ms`: every container's preparation: its root filesystem (an overlay of the
//!   image's layers), the image config applied, its OCI spec written;
//! - `container_start_ms`: every container's start: the shim spawned, `runc run` until runc reports
//!   the container running (runc's create and start are one `runc run` here);
//! - `kubelet_ms`: the pod worker's first sync of the pod → its Running status acknowledged by the API
//!   server (the phases above, volumes, the image check and the status write).
//!
//! It costs a few map operations per sync of a pod that is not yet Running, and one log line per pod.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// A phase of a pod's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The pause sandbox.
    Sandbox,
    /// CNI and the pod's /etc files.
    Network,
    /// A container's root filesystem and spec.
    ContainerCreate,
    /// A container's shim and `runc run`, until it runs.
    ContainerStart,
}

/// What one pod's start took so far.
#[derive(Debug, Clone)]
struct PodStartup {
    first_seen: Instant,
    sandbox: Duration,
    network: Duration,
    container_create: Duration,
    container_start: Duration,
    /// Logged already: later phases (restarts) are not added.
    reported: bool,
}

/// The starts of a node's pods, by pod UID.
#[derive(Default)]
pub struct StartupTracker {
    pods: Mutex<HashMap<String, PodStartup>>,
}

impl StartupTracker {
    fn pods(&self) -> std::sync::MutexGuard<'_, HashMap<String, PodStartup>> {
        self.pods.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A sync of pod `uid` begins: the first one starts its clock.
    pub fn seen(&self, uid: &str) {
        self.pods().entry(uid.to_owned()).or_insert_with(|| PodStartup {
            first_seen: Instant::now(),
            sandbox: Duration::ZERO,
            network: Duration::ZERO,
            container_create: Duration::ZERO,
            container_start: Duration::ZERO,
            reported: false,
        });
    }

    /// Adds `took` to `phase` of pod `uid`, unless its start was reported already (or never began).
    pub fn add(&self, uid: &str, phase: Phase, took: Duration) {
        if let Some(p) = self.pods().get_mut(uid).filter(|p| !p.reported) {
            let slot = match phase {
                Phase::Sandbox => &mut p.sandbox,
                Phase::Network => &mut p.network,
                Phase::ContainerCreate => &mut p.container_create,
                Phase::ContainerStart => &mut p.container_start,
            };
            *slot += took;
        }
    }

    /// The kubelet wrote pod `uid` (`pod` = namespace/name) as Running: logs its start, once.
    pub fn running(&self, uid: &str, pod: &str) {
        let mut pods = self.pods();
        let Some(p) = pods.get_mut(uid).filter(|p| !p.reported) else {
            return;
        };
        p.reported = true;
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        tracing::info!(
            pod = %pod,
            kubelet_ms = ms(p.first_seen.elapsed()),
            sandbox_ms = ms(p.sandbox),
            network_ms = ms(p.network),
            container_create_ms = ms(p.container_create),
            container_start_ms = ms(p.container_start),
            "observed pod startup"
        );
    }

    /// Pod `uid` is gone.
    pub fn forget(&self, uid: &str) {
        self.pods().remove(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_until_the_start_is_reported() {
        let t = StartupTracker::default();
        t.add("u", Phase::Sandbox, Duration::from_millis(5));
        assert!(t.pods().is_empty(), "nothing is recorded for a pod never seen");
        t.seen("u");
        t.add("u", Phase::Sandbox, Duration::from_millis(5));
        t.add("u", Phase::ContainerStart, Duration::from_millis(7));
        t.add("u", Phase::ContainerStart, Duration::from_millis(3));
        let p = t.pods()["u"].clone();
        assert_eq!(
            (p.sandbox, p.container_start),
            (Duration::from_millis(5), Duration::from_millis(10))
        );
        t.running("u", "default/p");
        t.add("u", Phase::ContainerStart, Duration::from_millis(3));
        assert_eq!(t.pods()["u"].container_start, Duration::from_millis(10));
        assert!(t.pods()["u"].reported);
        t.forget("u");
        assert!(t.pods().is_empty());
    }
}
