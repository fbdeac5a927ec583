//! The taints the node lifecycle controller keeps on a node, pure: upstream's
//! `processTaintBaseEviction` (the NoExecute `not-ready` / `unreachable` taints that drive taint
//! eviction) and `doNoScheduleTaintingPass` (a NoSchedule taint per unhealthy condition, and for an
//! unschedulable node), both in pkg/controller/nodelifecycle/node_lifecycle_controller.go.
//!
//! Taints the controller does not manage are left as they are; a NoExecute taint it adds records
//! when (`timeAdded`), for tolerations with `tolerationSeconds`.

use k8s_openapi::{
    api::core::v1::{Node, Taint},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};

/// `node.kubernetes.io/not-ready`: the Ready condition is False.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// `node.kubernetes.io/unreachable`: the Ready condition is Unknown.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `node.kubernetes.io/unschedulable`: `spec.unschedulable` is set.
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// The NoExecute effect.
pub const NO_EXECUTE: &str = "NoExecute";
/// The NoSchedule effect.
pub const NO_SCHEDULE: &str = "NoSchedule";

/// `nodeConditionToTaintKeyStatusMap`: which condition status gives which NoSchedule taint.
const CONDITION_TAINTS: [(&str, &str, &str); 6] = [
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    ("MemoryPressure", "True", "node.kubernetes.io/memory-pressure"),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

fn is_managed_no_schedule(t: &Taint) -> bool {
    t.effect == NO_SCHEDULE
        && (t.key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == t.key))
}

fn is_managed_no_execute(t: &Taint) -> bool {
    t.effect == NO_EXECUTE && (t.key == NOT_READY || t.key == UNREACHABLE)
}

/// The taints `node` should carry. `ready` is the Ready status the NoExecute taints follow (upstream
/// passes the condition as observed at the start of the pass), `None` to leave them as they are
/// (a node that never posted a Ready condition and is still in its startup grace period). The
/// NoSchedule taints follow the node's conditions as they are. `None` when nothing changes.
pub fn desired_taints(node: &Node, ready: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();

    let mut want_no_schedule: Vec<&str> = CONDITION_TAINTS
        .iter()
        .filter(|(type_, status, _)| {
            conditions
                .iter()
                .any(|c| c.type_ == *type_ && c.status == *status)
        })
        .map(|(_, _, key)| *key)
        .collect();
    if node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
        want_no_schedule.push(UNSCHEDULABLE);
    }
    let want_no_execute: Option<Vec<&str>> = ready.map(|status| match status {
        "False" => vec![NOT_READY],
        "Unknown" => vec![UNREACHABLE],
        _ => vec![],
    });

    let mut taints: Vec<Taint> = current
        .iter()
        .filter(|t| !is_managed_no_schedule(t) || want_no_schedule.contains(&t.key.as_str()))
        .filter(|t| {
            !is_managed_no_execute(t)
                || want_no_execute
                    .as_ref()
                    .is_none_or(|want| want.contains(&t.key.as_str()))
        })
        .cloned()
        .collect();
    for key in want_no_schedule {
        if !taints.iter().any(|t| t.key == key && t.effect == NO_SCHEDULE) {
            taints.push(Taint {
                key: key.into(),
                effect: NO_SCHEDULE.into(),
                ..Default::default()
            });
        }
    }
    for key in want_no_execute.into_iter().flatten() {
        if !taints.iter().any(|t| t.key == key && t.effect == NO_EXECUTE) {
            taints.push(Taint {
                key: key.into(),
                effect: NO_EXECUTE.into(),
                time_added: Some(Time(now)),
                ..Default::default()
            });
        }
    }
    (taints != current).then_some(taints)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    use super::*;

    fn node(ready: &str, taints: Vec<Taint>) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(taints),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        let mut k: Vec<_> = taints.iter().map(|t| (t.key.clone(), t.effect.clone())).collect();
        k.sort();
        k
    }

    #[test]
    fn an_unreachable_node_gets_both_unreachable_taints_and_keeps_others() {
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        let custom = taint("example.com/gpu", NO_SCHEDULE);
        let taints =
            desired_taints(&node("Unknown", vec![custom.clone()]), Some("Unknown"), now).expect("change");
        assert_eq!(
            keys(&taints),
            [
                ("example.com/gpu".into(), NO_SCHEDULE.into()),
                (UNREACHABLE.into(), NO_EXECUTE.into()),
                (UNREACHABLE.into(), NO_SCHEDULE.into()),
            ]
        );
        let no_execute = taints
            .iter()
            .find(|t| t.effect == NO_EXECUTE)
            .expect("no execute");
        assert_eq!(no_execute.time_added, Some(Time(now)));
        // Applied, nothing more changes; ready again, only the custom taint stays.
        assert_eq!(
            desired_taints(&node("Unknown", taints.clone()), Some("Unknown"), now),
            None
        );
        let back = desired_taints(&node("True", taints), Some("True"), now).expect("change");
        assert_eq!(back, [custom]);
    }

    #[test]
    fn not_ready_replaces_unreachable() {
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        let before = vec![taint(UNREACHABLE, NO_EXECUTE), taint(UNREACHABLE, NO_SCHEDULE)];
        let taints = desired_taints(&node("False", before), Some("False"), now).expect("change");
        assert_eq!(
            keys(&taints),
            [
                (NOT_READY.into(), NO_EXECUTE.into()),
                (NOT_READY.into(), NO_SCHEDULE.into())
            ]
        );
    }

    #[test]
    fn without_a_ready_verdict_no_execute_taints_are_left_alone() {
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        let mut n = node("True", vec![taint(UNREACHABLE, NO_EXECUTE)]);
        assert_eq!(desired_taints(&n, None, now), None);
        n.spec.as_mut().unwrap().unschedulable = Some(true);
        let taints = desired_taints(&n, None, now).expect("change");
        assert_eq!(
            keys(&taints),
            [
                (UNREACHABLE.into(), NO_EXECUTE.into()),
                (UNSCHEDULABLE.into(), NO_SCHEDULE.into())
            ]
        );
    }

    #[test]
    fn pressure_conditions_taint_no_schedule_while_they_hold() {
        // TaintNodesByCondition: the kubelet reports MemoryPressure (its eviction manager); the
        // taint follows the condition, on a node that is otherwise Ready.
        let now = Timestamp::from_second(1_800_000_000).expect("valid");
        let mut n = node("True", vec![]);
        let pressure = |status: &str| NodeCondition {
            type_: "MemoryPressure".into(),
            status: status.into(),
            ..Default::default()
        };
        let conditions = n.status.as_mut().unwrap().conditions.as_mut().unwrap();
        conditions.push(pressure("True"));
        let taints = desired_taints(&n, Some("True"), now).expect("change");
        assert_eq!(
            keys(&taints),
            [("node.kubernetes.io/memory-pressure".into(), NO_SCHEDULE.into())]
        );
        n.spec.as_mut().unwrap().taints = Some(taints);
        n.status.as_mut().unwrap().conditions.as_mut().unwrap()[1] = pressure("False");
        assert_eq!(desired_taints(&n, Some("True"), now), Some(vec![]));
    }
}
