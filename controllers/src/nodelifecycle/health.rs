//! Whether a node is still heard from: upstream's `tryUpdateNodeHealth` (pkg/controller/
//! nodelifecycle/node_lifecycle_controller.go), pure.
//!
//! The controller remembers, per node, when it last saw a sign of life (`probeTimestamp`): a new
//! heartbeat on the Ready condition, or a renewed Lease in kube-node-lease. The times are the
//! controller's own clock when it noticed, not the times the kubelet wrote, so clock skew between
//! the two does not matter. When nothing was seen for the grace period (40 s; 60 s for a node that
//! never posted a Ready condition), the Ready, MemoryPressure, DiskPressure and PIDPressure
//! conditions become Unknown, to be written through `nodes/status`.

use std::time::Duration;

use k8s_openapi::{
    api::{
        coordination::v1::Lease,
        core::v1::{Node, NodeCondition},
    },
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::{SignedDuration, Timestamp},
};

/// The reason of a condition the controller set Unknown.
pub const NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
/// Its message.
pub const STOPPED_POSTING: &str = "Kubelet stopped posting node status.";
/// The reason of a condition the kubelet never posted.
pub const NODE_STATUS_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
/// Its message.
pub const NEVER_POSTED: &str = "Kubelet never posted node status.";
/// The conditions that become Unknown when the kubelet is not heard from.
pub const MONITORED_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// What the controller remembers of a node between passes (upstream's `nodeHealthData`).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeHealth {
    /// The conditions as last seen.
    pub conditions: Vec<NodeCondition>,
    /// When the controller last saw a sign of life.
    pub probe_timestamp: Timestamp,
    /// When the controller saw the Ready condition change last.
    pub ready_transition_timestamp: Timestamp,
    /// The Lease's renew time as last seen.
    pub lease_renew_time: Option<Timestamp>,
}

/// The outcome of one health check.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    /// What to remember of the node (once the new conditions, if any, are written).
    pub health: NodeHealth,
    /// The Ready condition as read (a made-up Unknown one when the node has none).
    pub observed_ready: NodeCondition,
    /// The Ready condition after the check (`None` while the node never posted one and is still
    /// within its startup grace period).
    pub current_ready: Option<NodeCondition>,
    /// The node's conditions to write through `nodes/status`, when they changed.
    pub new_conditions: Option<Vec<NodeCondition>>,
}

/// The grace periods of a health check.
#[derive(Debug, Clone, Copy)]
pub struct GracePeriods {
    /// For a node that posted a Ready condition (`--node-monitor-grace-period`).
    pub monitor: Duration,
    /// For a node that never did (`--node-startup-grace-period`).
    pub startup: Duration,
}

fn condition<'a>(conditions: &'a [NodeCondition], type_: &str) -> Option<&'a NodeCondition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn time(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// The lease's renew time.
pub fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

/// `tryUpdateNodeHealth` for `node` (as cached) with its `lease`, given what was remembered.
pub fn check(
    node: &Node,
    lease: Option<&Lease>,
    saved: Option<&NodeHealth>,
    now: Timestamp,
    grace: GracePeriods,
) -> HealthCheck {
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let created = time(&node.metadata.creation_timestamp).unwrap_or(now);
    let current = condition(&conditions, "Ready").cloned();
    let saved_ready = saved.and_then(|h| condition(&h.conditions, "Ready")).cloned();

    let (observed_ready, grace_period) = match &current {
        Some(c) => (c.clone(), grace.monitor),
        // Never posted: as if it were Unknown since the node was created.
        None => (
            NodeCondition {
                type_: "Ready".into(),
                status: "Unknown".into(),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(created)),
                ..Default::default()
            },
            grace.startup,
        ),
    };

    let mut health = match (saved, &current) {
        (None, None) => NodeHealth {
            conditions: conditions.clone(),
            probe_timestamp: created,
            ready_transition_timestamp: created,
            lease_renew_time: None,
        },
        (None, Some(_)) => NodeHealth {
            conditions: conditions.clone(),
            probe_timestamp: now,
            ready_transition_timestamp: now,
            lease_renew_time: None,
        },
        (Some(saved), _) => {
            let mut health = saved.clone();
            match (&saved_ready, &current) {
                // The controller restarted with the node's status already there, or the kubelet
                // posted its first Ready condition.
                (None, Some(_)) => {
                    health.probe_timestamp = now;
                    health.ready_transition_timestamp = now;
                }
                // The Ready condition disappeared: an error, but a sign of activity.
                (Some(_), None) => health.probe_timestamp = now,
                (Some(saved_ready), Some(current))
                    if saved_ready.last_heartbeat_time != current.last_heartbeat_time =>
                {
                    health.probe_timestamp = now;
                    if saved_ready.last_transition_time != current.last_transition_time {
                        health.ready_transition_timestamp = now;
                    }
                }
                _ => {}
            }
            health.conditions = conditions.clone();
            health
        }
    };
    // A renewed Lease is a sign of life too.
    let renewed = lease.and_then(renew_time);
    if let Some(renewed) = renewed
        && health.lease_renew_time.is_none_or(|saved| saved < renewed)
    {
        health.lease_renew_time = Some(renewed);
        health.probe_timestamp = now;
    }

    let mut result = HealthCheck {
        health,
        observed_ready,
        current_ready: current,
        new_conditions: None,
    };
    let grace = SignedDuration::try_from(grace_period).unwrap_or(SignedDuration::MAX);
    if now
        <= result
            .health
            .probe_timestamp
            .saturating_add(grace)
            .unwrap_or(Timestamp::MAX)
    {
        return result;
    }

    // Not heard from within the grace period: every monitored condition becomes Unknown.
    let mut updated = conditions;
    for type_ in MONITORED_CONDITIONS {
        match updated.iter_mut().find(|c| c.type_ == type_) {
            None => updated.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some(NODE_STATUS_NEVER_UPDATED.into()),
                message: Some(NEVER_POSTED.into()),
                last_heartbeat_time: Some(Time(created)),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some(NODE_STATUS_UNKNOWN.into());
                c.message = Some(STOPPED_POSTING.into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
    let current_ready = condition(&updated, "Ready").cloned();
    if current_ready.as_ref() != Some(&result.observed_ready) {
        result.health.conditions = updated.clone();
        result.health.ready_transition_timestamp = now;
        result.current_ready = current_ready;
        result.new_conditions = Some(updated);
    }
    result
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::{coordination::v1::LeaseSpec, core::v1::NodeStatus},
        apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    };

    use super::*;

    const GRACE: GracePeriods = GracePeriods {
        monitor: Duration::from_secs(40),
        startup: Duration::from_secs(60),
    };

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(at(0))),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: ready.map(|(status, heartbeat)| {
                    vec![
                        NodeCondition {
                            type_: "Ready".into(),
                            status: status.into(),
                            reason: Some("KubeletReady".into()),
                            last_heartbeat_time: Some(Time(at(heartbeat))),
                            last_transition_time: Some(Time(at(0))),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "MemoryPressure".into(),
                            status: "False".into(),
                            last_heartbeat_time: Some(Time(at(heartbeat))),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn lease(renewed: i64) -> Lease {
        Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(at(renewed))),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_renewed_lease_keeps_the_node_healthy() {
        let n = node(Some(("True", 1)));
        let first = check(&n, Some(&lease(1)), None, at(1), GRACE);
        assert!(first.new_conditions.is_none());
        // The status is never posted again, but the lease keeps being renewed.
        let mut health = first.health;
        for t in [30, 60, 90] {
            let c = check(&n, Some(&lease(t)), Some(&health), at(t), GRACE);
            assert!(c.new_conditions.is_none(), "unknown at {t}");
            health = c.health;
        }
        assert_eq!(health.probe_timestamp, at(90));
    }

    #[test]
    fn silence_beyond_the_grace_period_makes_the_conditions_unknown() {
        let n = node(Some(("True", 1)));
        let health = check(&n, Some(&lease(1)), None, at(1), GRACE).health;
        assert!(
            check(&n, Some(&lease(1)), Some(&health), at(41), GRACE)
                .new_conditions
                .is_none()
        );
        let c = check(&n, Some(&lease(1)), Some(&health), at(42), GRACE);
        let conditions = c.new_conditions.expect("conditions to write");
        let ready = condition(&conditions, "Ready").expect("ready");
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_deref(),
                ready.message.as_deref()
            ),
            ("Unknown", Some(NODE_STATUS_UNKNOWN), Some(STOPPED_POSTING))
        );
        assert_eq!(ready.last_transition_time, Some(Time(at(42))));
        assert_eq!(
            ready.last_heartbeat_time,
            Some(Time(at(1))),
            "the heartbeat is the kubelet's"
        );
        assert_eq!(
            condition(&conditions, "MemoryPressure").expect("memory").status,
            "Unknown"
        );
        let disk = condition(&conditions, "DiskPressure").expect("disk");
        assert_eq!(
            (disk.status.as_str(), disk.reason.as_deref()),
            ("Unknown", Some(NODE_STATUS_NEVER_UPDATED))
        );
        assert_eq!(c.observed_ready.status, "True");
        assert_eq!(c.current_ready.expect("current").status, "Unknown");

        // Once written, the next pass has nothing more to write.
        let mut written = n.clone();
        written.status.as_mut().unwrap().conditions = Some(conditions);
        let again = check(&written, Some(&lease(1)), Some(&c.health), at(47), GRACE);
        assert!(again.new_conditions.is_none());
        assert_eq!(again.observed_ready.status, "Unknown");
    }

    #[test]
    fn a_new_heartbeat_counts_as_a_sign_of_life() {
        let health = check(&node(Some(("True", 1))), None, None, at(1), GRACE).health;
        let beat = check(&node(Some(("True", 30))), None, Some(&health), at(30), GRACE);
        assert_eq!(beat.health.probe_timestamp, at(30));
        assert!(
            check(&node(Some(("True", 30))), None, Some(&beat.health), at(69), GRACE)
                .new_conditions
                .is_none()
        );
        assert!(
            check(&node(Some(("True", 30))), None, Some(&beat.health), at(71), GRACE)
                .new_conditions
                .is_some()
        );
    }

    #[test]
    fn a_node_that_never_posted_gets_the_startup_grace_period() {
        let n = node(None);
        let c = check(&n, None, None, at(59), GRACE);
        assert!(c.new_conditions.is_none() && c.current_ready.is_none());
        let c = check(&n, None, Some(&c.health), at(61), GRACE);
        let conditions = c.new_conditions.expect("conditions");
        assert_eq!(conditions.len(), 4);
        assert!(
            conditions
                .iter()
                .all(|c| c.reason.as_deref() == Some(NODE_STATUS_NEVER_UPDATED))
        );
    }
}
