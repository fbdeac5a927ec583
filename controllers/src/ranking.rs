//! Which pods go first when a controller scales down: upstream's `getPodsToDelete`
//! (pkg/controller/replicaset/replica_set.go) over the `ActivePodsWithRanks` ordering
//! (pkg/controller/controller_utils.go), with PodDeletionCost and LogarithmicScaleDown on, as they
//! are by default. Earlier in the order means deleted first:
//!
//! 1. unassigned before assigned;
//! 2. Pending before Unknown before Running;
//! 3. not ready before ready;
//! 4. lower `controller.kubernetes.io/pod-deletion-cost` first;
//! 5. doubled up first: more active related pods on the same node;
//! 6. both ready: ready more recently first, compared in log2 buckets of the time since (same
//!    bucket: lower UID first, which spreads scale-down over pods of similar age);
//! 7. more container restarts first (regular containers, then restartable init containers);
//! 8. created more recently first, in log2 buckets of age (same bucket: lower UID first).
//!
//! The ordering is not transitive in corner cases (exactly equal times skip a rule that a same-bucket
//! comparison settles by UID), which Go's `sort.Sort` tolerates; Rust's sorts may panic on such a
//! comparator, so a small merge sort of our own applies it.

use std::{cmp::Ordering, collections::HashMap, sync::Arc};

use k8s_openapi::{api::core::v1::Pod, jiff::Timestamp};

use crate::pod_util;

/// The annotation that lets users say which pods are cheaper to delete (upstream's `PodDeletionCost`).
pub const POD_DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The `count` pods of `pods` to delete first. `related` are the pods of every ReplicaSet with the
/// same controller (upstream's `getIndirectlyRelatedPods`); their active ones on each node give a
/// pod its doubled-up rank.
pub fn pods_to_delete(
    pods: &[Arc<Pod>],
    related: &[Arc<Pod>],
    count: usize,
    now: Timestamp,
) -> Vec<Arc<Pod>> {
    // No need to sort pods when all of them go.
    if count >= pods.len() {
        return pods.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for pod in related.iter().filter(|p| pod_util::is_active(p)) {
        *on_node.entry(pod_util::node_name(pod)).or_default() += 1;
    }
    let facts: Vec<Facts<'_>> = pods
        .iter()
        .map(|pod| Facts::of(pod, on_node.get(pod_util::node_name(pod)).copied().unwrap_or(0)))
        .collect();
    let order = merge_sort((0..pods.len()).collect(), &|&i: &usize, &j: &usize| {
        less(&facts[i], &facts[j], now)
    });
    order.into_iter().take(count).map(|i| pods[i].clone()).collect()
}

/// What the ordering looks at, read once per pod.
struct Facts<'a> {
    assigned: bool,
    phase: u8,
    ready: bool,
    ready_since: Option<Timestamp>,
    cost: i32,
    rank: usize,
    restarts: (i32, i32),
    created: Option<Timestamp>,
    uid: &'a str,
}

impl<'a> Facts<'a> {
    fn of(pod: &'a Pod, rank: usize) -> Self {
        let ready = pod_util::is_ready(pod);
        Facts {
            assigned: pod_util::is_assigned(pod),
            // upstream's podPhaseToOrdinal; any other phase maps to 0 like a missing map key.
            phase: match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Unknown") => 1,
                Some("Running") => 2,
                _ => 0,
            },
            ready,
            ready_since: if ready { pod_util::ready_since(pod) } else { None },
            cost: deletion_cost(pod),
            rank,
            restarts: max_container_restarts(pod),
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
            uid: pod.metadata.uid.as_deref().unwrap_or(""),
        }
    }
}

/// `ActivePodsWithRanks.Less`: whether `a` should be deleted before `b`.
fn less(a: &Facts<'_>, b: &Facts<'_>, now: Timestamp) -> bool {
    if a.assigned != b.assigned {
        return !a.assigned;
    }
    if a.phase != b.phase {
        return a.phase < b.phase;
    }
    if a.ready != b.ready {
        return !a.ready;
    }
    if a.cost != b.cost {
        return a.cost < b.cost;
    }
    if a.rank != b.rank {
        return a.rank > b.rank;
    }
    if a.ready && b.ready && a.ready_since != b.ready_since {
        return newer_first(a.ready_since, b.ready_since, a.uid, b.uid, now);
    }
    if a.restarts != b.restarts {
        return a.restarts > b.restarts;
    }
    if a.created != b.created {
        return newer_first(a.created, b.created, a.uid, b.uid, now);
    }
    false
}

/// The LogarithmicScaleDown comparison of two different times: the one in the more recent log2
/// bucket of time-before-now first, ties by UID; a missing time counts as the newest
/// (upstream's `afterOrZero`).
fn newer_first(a: Option<Timestamp>, b: Option<Timestamp>, a_uid: &str, b_uid: &str, now: Timestamp) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return a.is_none();
    };
    match log2_age(a, now).cmp(&log2_age(b, now)) {
        Ordering::Equal => a_uid < b_uid,
        order => order == Ordering::Less,
    }
}

/// `int64(math.Log2(float64(now - t)))` over nanoseconds, -1 when `t` is not before `now`.
fn log2_age(t: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.duration_since(t).as_nanos();
    if nanos <= 0 {
        -1
    } else {
        (nanos as f64).log2() as i64
    }
}

/// Upstream's `GetDeletionCostFromPodAnnotations`: an int32 without a plus sign or leading zeros;
/// anything else counts as 0.
pub fn deletion_cost(pod: &Pod) -> i32 {
    let Some(value) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
    else {
        return 0;
    };
    let valid_first = match value.as_bytes().first() {
        Some(b'-') | Some(b'1'..=b'9') => true,
        Some(b'0') => value == "0",
        _ => false,
    };
    if valid_first {
        value.parse().unwrap_or(0)
    } else {
        0
    }
}

/// The most restarts of any regular container, then of any restartable init container (sidecar).
fn max_container_restarts(pod: &Pod) -> (i32, i32) {
    let Some(status) = pod.status.as_ref() else {
        return (0, 0);
    };
    let regular = status
        .container_statuses
        .iter()
        .flatten()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    let sidecars: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .map(|c| c.name.as_str())
        .collect();
    let sidecar = status
        .init_container_statuses
        .iter()
        .flatten()
        .filter(|c| sidecars.contains(&c.name.as_str()))
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0);
    (regular.max(0), sidecar.max(0))
}

/// A stable merge sort that only asks `less`, and tolerates one that is not a strict weak order.
fn merge_sort<T: Copy>(items: Vec<T>, less: &impl Fn(&T, &T) -> bool) -> Vec<T> {
    if items.len() <= 1 {
        return items;
    }
    let mut left = items;
    let right = left.split_off(left.len() / 2);
    let (left, right) = (merge_sort(left, less), merge_sort(right, less));
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut i, mut j) = (0, 0);
    while i < left.len() && j < right.len() {
        // Take from the right only when strictly less, which keeps equal items in order.
        if less(&right[j], &left[i]) {
            out.push(right[j]);
            j += 1;
        } else {
            out.push(left[i]);
            i += 1;
        }
    }
    out.extend_from_slice(&left[i..]);
    out.extend_from_slice(&right[j..]);
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus},
        apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
        jiff::SignedDuration,
    };

    use super::*;

    /// A pod builder: `pod("a").on("n1").phase("Running").ready_for(60)`.
    #[derive(Clone)]
    struct P(Pod);

    fn pod(name: &str) -> P {
        P(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(now() - SignedDuration::from_hours(1))),
                ..Default::default()
            },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                ..Default::default()
            }),
        })
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).expect("valid")
    }

    impl P {
        fn on(mut self, node: &str) -> Self {
            self.0.spec.get_or_insert_default().node_name = Some(node.into());
            self
        }
        fn phase(mut self, phase: &str) -> Self {
            self.0.status.get_or_insert_default().phase = Some(phase.into());
            self
        }
        fn ready_for(mut self, secs: i64) -> Self {
            self.0.status.get_or_insert_default().conditions = Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                last_transition_time: Some(Time(now() - SignedDuration::from_secs(secs))),
                ..Default::default()
            }]);
            self
        }
        fn restarts(mut self, n: i32) -> Self {
            self.0.status.get_or_insert_default().container_statuses = Some(vec![ContainerStatus {
                name: "c".into(),
                restart_count: n,
                ..Default::default()
            }]);
            self
        }
        fn age(mut self, secs: i64) -> Self {
            self.0.metadata.creation_timestamp = Some(Time(now() - SignedDuration::from_secs(secs)));
            self
        }
        fn cost(mut self, cost: &str) -> Self {
            self.0
                .metadata
                .annotations
                .get_or_insert_default()
                .insert(POD_DELETION_COST.into(), cost.into());
            self
        }
        fn arc(self) -> Arc<Pod> {
            Arc::new(self.0)
        }
    }

    fn order(pods: Vec<P>) -> Vec<String> {
        let pods: Vec<Arc<Pod>> = pods.into_iter().map(P::arc).collect();
        pods_to_delete(&pods, &pods, pods.len() - 1, now())
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn victims_follow_upstream_ranking() {
        let cases: Vec<(&str, Vec<P>, Vec<&str>)> = vec![
            (
                "unassigned before assigned",
                vec![pod("a").on("n1"), pod("b"), pod("c").on("n2")],
                vec!["b", "a"],
            ),
            (
                "pending before unknown before running",
                vec![
                    pod("run").on("n").phase("Running"),
                    pod("unk").on("n").phase("Unknown"),
                    pod("pend").on("n"),
                ],
                vec!["pend", "unk"],
            ),
            (
                "not ready before ready",
                vec![
                    pod("ready").on("n1").phase("Running").ready_for(100),
                    pod("unready").on("n2").phase("Running"),
                    pod("ready2").on("n3").phase("Running").ready_for(100),
                ],
                vec!["unready", "ready"],
            ),
            (
                "lower deletion cost first",
                vec![
                    pod("x").on("n1").cost("10"),
                    pod("y").on("n2").cost("-5"),
                    pod("z").on("n3").cost("+1"),
                ],
                vec!["y", "z"],
            ),
            (
                "doubled up first",
                vec![
                    pod("alone").on("n1"),
                    pod("pair1").on("n2"),
                    pod("pair2").on("n2"),
                ],
                vec!["pair1", "pair2"],
            ),
            (
                "ready more recently first, in log buckets",
                vec![
                    pod("old").on("n1").phase("Running").ready_for(10_000),
                    pod("new").on("n2").phase("Running").ready_for(10),
                    pod("mid").on("n3").phase("Running").ready_for(1_000),
                ],
                vec!["new", "mid"],
            ),
            (
                "more restarts first",
                vec![
                    pod("r0").on("n1").restarts(0),
                    pod("r5").on("n2").restarts(5),
                    pod("r2").on("n3").restarts(2),
                ],
                vec!["r5", "r2"],
            ),
            (
                "newer first",
                vec![
                    pod("old").on("n1").age(100_000),
                    pod("young").on("n2").age(10),
                    pod("mid").on("n3").age(1_000),
                ],
                vec!["young", "mid"],
            ),
        ];
        for (name, pods, want) in cases {
            assert_eq!(order(pods), want, "{name}");
        }
    }

    #[test]
    fn same_log_bucket_is_settled_by_uid() {
        // 1000 s and 1001 s ago are in the same log2 bucket of nanoseconds.
        let pods = vec![
            pod("b").on("n1").age(1_000),
            pod("a").on("n2").age(1_001),
            pod("c").on("n3").age(1),
        ];
        assert_eq!(order(pods), vec!["c", "a"]);
    }

    #[test]
    fn deleting_everything_needs_no_ranking() {
        let pods: Vec<Arc<Pod>> = vec![pod("a").arc(), pod("b").arc()];
        assert_eq!(pods_to_delete(&pods, &[], 5, now()).len(), 2);
    }

    #[test]
    fn deletion_cost_parsing_follows_upstream() {
        for (value, want) in [
            ("5", 5),
            ("-7", -7),
            ("0", 0),
            ("007", 0),
            ("+3", 0),
            ("", 0),
            ("x", 0),
            ("99999999999", 0),
        ] {
            assert_eq!(deletion_cost(&pod("p").cost(value).0), want, "{value:?}");
        }
    }
}
