//! Table tests of the ReplicaSet controller's pure half: `plan()` (claims, creates, victims,
//! expectations) and the status it reports.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::{ReplicaSet, ReplicaSetSpec},
        core::v1::{Pod, PodCondition, PodSpec, PodStatus, PodTemplateSpec},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference, Time},
    jiff::{SignedDuration, Timestamp},
};

use super::{
    plan::{BURST_REPLICAS, Input, Manage, Plan, plan},
    status::{ManageError, REPLICA_FAILURE, calculate_status, needs_update, next_availability_check},
};

const RS_UID: &str = "rs-uid";

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A ReplicaSet `web` in `ns` selecting app=web, with the template also labelled tier=front.
fn rs(replicas: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some(RS_UID.into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels(&[("app", "web")])),
                ..Default::default()
            },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&[("app", "web"), ("tier", "front")])),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// A pod builder: `pod("a").owned().on("n1").running().ready_for(60)`.
#[derive(Clone)]
struct P(Pod);

fn pod(name: &str) -> P {
    P(Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some(labels(&[("app", "web"), ("tier", "front")])),
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

impl P {
    fn owned(self) -> Self {
        self.owned_by(RS_UID)
    }
    fn owned_by(mut self, uid: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "owner".into(),
            uid: uid.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        self
    }
    fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.0.metadata.labels = Some(labels(pairs));
        self
    }
    fn namespace(mut self, ns: &str) -> Self {
        self.0.metadata.namespace = Some(ns.into());
        self
    }
    fn on(mut self, node: &str) -> Self {
        self.0.spec.get_or_insert_default().node_name = Some(node.into());
        self
    }
    fn phase(mut self, phase: &str) -> Self {
        self.0.status.get_or_insert_default().phase = Some(phase.into());
        self
    }
    fn running(self) -> Self {
        self.phase("Running")
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
    fn terminating(mut self) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(now()));
        self
    }
}

fn arcs(pods: &[P]) -> Vec<Arc<Pod>> {
    pods.iter().map(|p| Arc::new(p.0.clone())).collect()
}

fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
    pods.iter()
        .map(|p| p.metadata.name.as_deref().unwrap_or_default())
        .collect()
}

fn plan_for(rs: &ReplicaSet, pods: &[P], satisfied: bool) -> Plan {
    let pods = arcs(pods);
    plan(&Input {
        rs,
        pods: &pods,
        siblings: &[],
        expectations_satisfied: satisfied,
        now: now(),
    })
    .expect("plan")
}

/// What a plan does, in names: (adopt, release, claimed, manage).
type Summary<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>, String);

fn summary(plan: &Plan) -> Summary<'_> {
    let manage = match &plan.manage {
        Manage::Nothing => "nothing".to_owned(),
        Manage::AwaitExpectations => "await".to_owned(),
        Manage::Create(n) => format!("create {n}"),
        Manage::Delete(victims) => format!("delete {}", names(victims).join(",")),
    };
    (
        names(&plan.adopt),
        names(&plan.release),
        names(&plan.claimed),
        manage,
    )
}

#[test]
fn plan_table() {
    let cases: Vec<(&str, ReplicaSet, Vec<P>, bool, Summary<'static>)> = vec![
        (
            "scale up from nothing",
            rs(3),
            vec![],
            true,
            (vec![], vec![], vec![], "create 3".into()),
        ),
        (
            "scale up the shortfall",
            rs(3),
            vec![pod("a").owned()],
            true,
            (vec![], vec![], vec!["a"], "create 2".into()),
        ),
        (
            "in sync",
            rs(1),
            vec![pod("a").owned()],
            true,
            (vec![], vec![], vec!["a"], "nothing".into()),
        ),
        (
            "scale down: pending and not-ready pods go first",
            rs(1),
            vec![
                pod("ready").owned().on("n1").running().ready_for(600),
                pod("pending").owned(),
                pod("unready").owned().on("n2").running(),
            ],
            true,
            (
                vec![],
                vec![],
                vec!["ready", "pending", "unready"],
                "delete pending,unready".into(),
            ),
        ),
        (
            "scale to zero deletes all",
            rs(0),
            vec![pod("a").owned(), pod("b").owned()],
            true,
            (vec![], vec![], vec!["a", "b"], "delete a,b".into()),
        ),
        (
            "expectations pending: claim but do not create or delete",
            rs(3),
            vec![pod("a").owned(), pod("orphan")],
            false,
            (vec!["orphan"], vec![], vec!["a", "orphan"], "await".into()),
        ),
        (
            "matching orphans are adopted and counted",
            rs(2),
            vec![
                pod("a").owned(),
                pod("orphan"),
                pod("stranger").labels(&[("app", "db")]),
            ],
            true,
            (vec!["orphan"], vec![], vec!["a", "orphan"], "nothing".into()),
        ),
        (
            "another controller's pods are left alone",
            rs(1),
            vec![pod("theirs").owned_by("other-uid")],
            true,
            (vec![], vec![], vec![], "create 1".into()),
        ),
        (
            "owned pods that stop matching are released and replaced",
            rs(1),
            vec![pod("moved").owned().labels(&[("app", "debug")])],
            true,
            (vec![], vec!["moved"], vec![], "create 1".into()),
        ),
        (
            "finished and terminating pods do not count, nor pods of other namespaces",
            rs(1),
            vec![
                pod("done").owned().phase("Succeeded"),
                pod("failed").owned().phase("Failed"),
                pod("going").owned().terminating(),
                pod("elsewhere").namespace("other"),
            ],
            true,
            (vec![], vec![], vec![], "create 1".into()),
        ),
    ];
    for (name, rs, pods, satisfied, want) in cases {
        let plan = plan_for(&rs, &pods, satisfied);
        let got = summary(&plan);
        assert_eq!((got.0, got.1, got.2, got.3), want, "{name}");
    }
}

#[test]
fn a_replicaset_being_deleted_neither_adopts_releases_nor_manages() {
    let mut deleting = rs(3);
    deleting.metadata.deletion_timestamp = Some(Time(now()));
    let pods = [
        pod("a").owned(),
        pod("orphan"),
        pod("moved").owned().labels(&[("app", "x")]),
    ];
    let plan = plan_for(&deleting, &pods, true);
    assert_eq!(summary(&plan), (vec![], vec![], vec!["a"], "nothing".into()));
}

#[test]
fn creates_and_deletes_are_capped_at_burst_replicas() {
    assert_eq!(
        plan_for(&rs(2_000), &[], true).manage,
        Manage::Create(BURST_REPLICAS)
    );
    let many: Vec<P> = (0..600).map(|i| pod(&format!("p{i}")).owned()).collect();
    let Manage::Delete(victims) = plan_for(&rs(0), &many, true).manage else {
        panic!("expected deletes")
    };
    assert_eq!(victims.len(), BURST_REPLICAS);
}

#[test]
fn doubled_up_pods_of_sibling_replicasets_go_first() {
    // Two ReplicaSets of one Deployment: the old one's pod shares node n1 with ours.
    let deployment = OwnerReference {
        uid: "deploy-uid".into(),
        controller: Some(true),
        ..Default::default()
    };
    let mut ours = rs(1);
    ours.metadata.owner_references = Some(vec![deployment.clone()]);
    let mut old = rs(1);
    old.metadata.uid = Some("old-uid".into());
    old.metadata.owner_references = Some(vec![deployment]);
    old.spec.as_mut().expect("spec").selector.match_labels = Some(labels(&[("app", "web-old")]));
    let pods = arcs(&[
        pod("alone").owned().on("n2").running(),
        pod("crowded").owned().on("n1").running(),
        pod("old")
            .owned_by("old-uid")
            .labels(&[("app", "web-old")])
            .on("n1")
            .running(),
    ]);
    let siblings = [Arc::new(ours.clone()), Arc::new(old)];
    let input = Input {
        rs: &ours,
        pods: &pods,
        siblings: &siblings,
        expectations_satisfied: true,
        now: now(),
    };
    let plan = plan(&input).expect("plan");
    assert_eq!(summary(&plan).3, "delete crowded");
}

#[test]
fn an_unparseable_selector_is_an_error() {
    let mut bad = rs(1);
    bad.spec.as_mut().expect("spec").selector.match_expressions = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement {
            key: "app".into(),
            operator: "Near".into(),
            values: None,
        },
    ]);
    let pods = arcs(&[pod("a")]);
    assert!(
        plan(&Input {
            rs: &bad,
            pods: &pods,
            siblings: &[],
            expectations_satisfied: true,
            now: now()
        })
        .is_err()
    );
}

#[test]
fn status_counts_labeled_ready_and_available_replicas() {
    let mut rs = rs(4);
    rs.spec.as_mut().expect("spec").min_ready_seconds = Some(30);
    let claimed = arcs(&[
        pod("available").running().ready_for(60),
        pod("warming").running().ready_for(10),
        pod("pending"),
        pod("partial").labels(&[("app", "web")]),
    ]);
    let status = calculate_status(&rs, &claimed, None, now());
    assert_eq!(status.replicas, 4);
    assert_eq!(status.fully_labeled_replicas, Some(3));
    assert_eq!(status.ready_replicas, Some(2));
    assert_eq!(status.available_replicas, Some(1));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.conditions, None);
    assert!(needs_update(&rs, &status));
    // The warming pod becomes available 20 s from now; look again a second after.
    assert_eq!(
        next_availability_check(&rs, &claimed, now()),
        Some(std::time::Duration::from_secs(21))
    );

    let mut written = rs.clone();
    written.status = Some(status.clone());
    assert!(
        !needs_update(&written, &status),
        "an unchanged status is not written again"
    );
}

#[test]
fn replica_failure_condition_is_set_kept_and_cleared() {
    let failure = ManageError {
        reason: "FailedCreate",
        message: "pods is forbidden: exceeded quota".into(),
    };
    let mut rs = rs(2);
    let failed = calculate_status(&rs, &[], Some(&failure), now());
    let conditions = failed.conditions.clone().expect("conditions");
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].type_, REPLICA_FAILURE);
    assert_eq!(conditions[0].status, "True");
    assert_eq!(conditions[0].reason.as_deref(), Some("FailedCreate"));
    assert_eq!(
        conditions[0].message.as_deref(),
        Some("pods is forbidden: exceeded quota")
    );

    // Still failing later: the condition (and its transition time) stays as it was.
    rs.status = Some(failed.clone());
    let later = now() + SignedDuration::from_secs(60);
    assert_eq!(
        calculate_status(&rs, &[], Some(&failure), later).conditions,
        failed.conditions
    );

    // Creates work again: the condition goes.
    let healed = calculate_status(&rs, &[], None, later);
    assert_eq!(healed.conditions, None);
    assert!(needs_update(&rs, &healed));
}
