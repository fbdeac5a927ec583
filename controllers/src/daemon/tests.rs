//! The DaemonSet controller's pure decisions: placement, manage, rolling updates, status, history.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, DaemonSet},
        core::v1::{Node, Pod},
    },
    jiff::Timestamp,
};
use serde_json::{Value, json};

use super::{
    history,
    plan::{self, Deletion, NodeView, Placement},
};

fn ds(strategy: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "metadata": { "name": "agent", "namespace": "default", "uid": "ds-uid", "generation": 2 },
        "spec": {
            "selector": { "matchLabels": { "app": "agent" } },
            "updateStrategy": strategy,
            "template": { "metadata": { "labels": { "app": "agent" } },
                          "spec": { "containers": [{ "name": "c", "image": "busybox" }] } }
        }
    }))
    .unwrap()
}

fn rolling(max_unavailable: Value, max_surge: Value) -> DaemonSet {
    ds(json!({ "type": "RollingUpdate",
               "rollingUpdate": { "maxUnavailable": max_unavailable, "maxSurge": max_surge } }))
}

fn node(name: &str, labels: Value, taints: Value) -> Node {
    serde_json::from_value(json!({
        "metadata": { "name": name, "labels": labels },
        "spec": { "taints": taints }
    }))
    .unwrap()
}

/// A daemon pod on `node` made from revision `hash`, created at second `age_rank`, in `phase`,
/// Ready for a long while when `ready`.
fn pod(name: &str, node: &str, hash: &str, age_rank: i64, phase: &str, ready: bool) -> Arc<Pod> {
    let created = Timestamp::from_second(1_700_000_000 + age_rank)
        .unwrap()
        .to_string();
    let since = Timestamp::from_second(1_600_000_000).unwrap().to_string();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": name, "namespace": "default", "uid": format!("uid-{name}"),
                          "creationTimestamp": created,
                          "labels": { "app": "agent", "controller-revision-hash": hash } },
            "spec": { "nodeName": node, "containers": [{ "name": "c", "image": "busybox" }] },
            "status": { "phase": phase, "conditions": [
                { "type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": since }] }
        }))
        .unwrap(),
    )
}

fn views<'a>(ds: &DaemonSet, nodes: &'a [Node]) -> Vec<NodeView<'a>> {
    let spec = plan::daemon_pod_spec(ds);
    nodes
        .iter()
        .map(|n| NodeView {
            node: n,
            placement: plan::placement(&spec, n),
        })
        .collect()
}

fn by_node(pods: &[Arc<Pod>]) -> BTreeMap<String, Vec<Arc<Pod>>> {
    let mut out: BTreeMap<String, Vec<Arc<Pod>>> = BTreeMap::new();
    for p in pods {
        out.entry(plan::target_node(p).unwrap())
            .or_default()
            .push(p.clone());
    }
    out
}

fn names(pods: &[(Arc<Pod>, Deletion)]) -> Vec<(&str, Deletion)> {
    pods.iter()
        .map(|(p, why)| (p.metadata.name.as_deref().unwrap(), *why))
        .collect()
}

#[test]
fn placement_follows_selectors_and_taints_with_the_daemon_tolerations() {
    let mut d = ds(json!({ "type": "RollingUpdate" }));
    d.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some(BTreeMap::from([("role".into(), "edge".into())]));
    let spec = plan::daemon_pod_spec(&d);
    let edge = json!({ "role": "edge" });
    let run = Placement {
        should_run: true,
        should_continue_running: true,
    };
    assert_eq!(plan::placement(&spec, &node("a", edge.clone(), json!([]))), run);
    assert_eq!(
        plan::placement(&spec, &node("b", json!({}), json!([]))),
        Placement {
            should_run: false,
            should_continue_running: false
        }
    );
    // Cordoned or under disk pressure: daemon pods go there all the same.
    let tolerated = json!([{ "key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule" },
                           { "key": "node.kubernetes.io/disk-pressure", "effect": "NoSchedule" }]);
    assert_eq!(plan::placement(&spec, &node("c", edge.clone(), tolerated)), run);
    // A NoSchedule taint of the user's keeps new pods out but lets a running one stay; a
    // NoExecute one throws it out.
    assert_eq!(
        plan::placement(
            &spec,
            &node(
                "d",
                edge.clone(),
                json!([{ "key": "gpu", "effect": "NoSchedule" }])
            )
        ),
        Placement {
            should_run: false,
            should_continue_running: true
        }
    );
    assert_eq!(
        plan::placement(
            &spec,
            &node("e", edge, json!([{ "key": "gpu", "effect": "NoExecute" }]))
        ),
        Placement {
            should_run: false,
            should_continue_running: false
        }
    );
}

#[test]
fn created_pods_are_pinned_to_their_node_and_labelled_with_the_revision() {
    let d = ds(json!({ "type": "RollingUpdate" }));
    let mut template = plan::pod_template(&d, "abc");
    let labels = template.metadata.as_ref().unwrap().labels.clone().unwrap();
    assert_eq!(labels["controller-revision-hash"], "abc");
    assert_eq!(labels["pod-template-generation"], "2");
    let spec = template.spec.as_mut().unwrap();
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 6);
    plan::pin_to_node(spec, "n7");
    let pod = Pod {
        spec: Some(spec.clone()),
        ..Default::default()
    };
    assert_eq!(plan::target_node(&pod).as_deref(), Some("n7"));
}

#[test]
fn manage_creates_where_missing_and_deletes_extra_failed_and_misplaced_pods() {
    let mut d = ds(json!({ "type": "RollingUpdate" }));
    d.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .node_selector = Some(BTreeMap::from([("role".into(), "edge".into())]));
    let edge = json!({ "role": "edge" });
    let nodes = [
        node("a", edge.clone(), json!([])),
        node("b", edge.clone(), json!([])),
        node("c", edge.clone(), json!([])),
        node("d", json!({}), json!([])),
    ];
    let pods = [
        // b: two running pods, the newer goes.
        pod("b-old", "b", "h1", 1, "Running", true),
        pod("b-new", "b", "h1", 2, "Running", true),
        // c: a failed pod goes (when the backoff lets it).
        pod("c-failed", "c", "h1", 1, "Failed", false),
        // d: should not run there.
        pod("d-1", "d", "h1", 1, "Running", true),
    ];
    let now = Timestamp::now();
    let manage = plan::manage(&d, &views(&d, &nodes), &by_node(&pods), "h1", now, |_| true);
    assert_eq!(manage.create_on, ["a"]);
    assert_eq!(
        names(&manage.delete),
        [
            ("b-new", Deletion::Excess),
            ("c-failed", Deletion::Failed),
            ("d-1", Deletion::Excess)
        ]
    );
    // In backoff the failed pod stays (and nothing replaces it until it is gone).
    let manage = plan::manage(&d, &views(&d, &nodes), &by_node(&pods), "h1", now, |_| false);
    assert_eq!(
        names(&manage.delete),
        [("b-new", Deletion::Excess), ("d-1", Deletion::Excess)]
    );
}

#[test]
fn rolling_update_replaces_at_most_max_unavailable_at_a_time() {
    let d = rolling(json!(1), json!(0));
    let now = Timestamp::now();
    let old = [
        pod("a-1", "a", "old", 1, "Running", true),
        pod("b-1", "b", "old", 1, "Running", true),
        pod("c-1", "c", "old", 1, "Running", true),
    ];
    let step = plan::rolling_update(&d, 3, &by_node(&old), "new", now);
    assert_eq!(step.delete.len(), 1);
    assert!(step.create_on.is_empty());
    // While a new pod is not yet available no other old pod goes...
    let mid = [
        pod("a-2", "a", "new", 2, "Running", false),
        pod("b-1", "b", "old", 1, "Running", true),
        pod("c-1", "c", "old", 1, "Running", true),
    ];
    assert!(
        plan::rolling_update(&d, 3, &by_node(&mid), "new", now)
            .delete
            .is_empty()
    );
    // ...except an old pod that is unavailable anyway.
    let broken = [
        pod("a-2", "a", "new", 2, "Running", false),
        pod("b-1", "b", "old", 1, "Running", false),
        pod("c-1", "c", "old", 1, "Running", true),
    ];
    let step = plan::rolling_update(&d, 3, &by_node(&broken), "new", now);
    assert_eq!(step.delete.len(), 1);
    assert_eq!(step.delete[0].metadata.name.as_deref(), Some("b-1"));
    // Percentages round up: 34% of 3 nodes is 2.
    assert_eq!(plan::update_limits(&rolling(json!("34%"), json!(0)), 3), (2, 0));
    assert_eq!(plan::update_limits(&rolling(json!(0), json!(0)), 3), (1, 0));
}

#[test]
fn surge_starts_new_pods_beside_old_ones_and_retires_the_old_once_available() {
    let d = rolling(json!(0), json!(1));
    let now = Timestamp::now();
    let old = [
        pod("a-1", "a", "old", 1, "Running", true),
        pod("b-1", "b", "old", 1, "Running", true),
    ];
    let step = plan::rolling_update(&d, 2, &by_node(&old), "new", now);
    assert_eq!(step.create_on, ["a"]);
    assert!(step.delete.is_empty());
    let surged = [
        pod("a-1", "a", "old", 1, "Running", true),
        pod("a-2", "a", "new", 2, "Running", true),
        pod("b-1", "b", "old", 1, "Running", true),
    ];
    let step = plan::rolling_update(&d, 2, &by_node(&surged), "new", now);
    assert_eq!(step.delete.len(), 1);
    assert_eq!(step.delete[0].metadata.name.as_deref(), Some("a-1"));
    // While the node's new pod is not ready both stay (manage keeps two pods when surging).
    let nodes = [node("a", json!({}), json!([])), node("b", json!({}), json!([]))];
    let waiting = [
        pod("a-1", "a", "old", 1, "Running", true),
        pod("a-2", "a", "new", 2, "Running", false),
        pod("b-1", "b", "old", 1, "Running", true),
    ];
    let manage = plan::manage(&d, &views(&d, &nodes), &by_node(&waiting), "new", now, |_| true);
    assert!(
        manage.delete.is_empty() && manage.create_on.is_empty(),
        "{manage:?}"
    );
}

#[test]
fn status_counts_what_rollout_status_reads() {
    let d = ds(json!({ "type": "RollingUpdate" }));
    let nodes = [
        node("a", json!({}), json!([])),
        node("b", json!({}), json!([])),
        node("c", json!({}), json!([{ "key": "gpu", "effect": "NoSchedule" }])),
    ];
    let pods = [
        pod("a-1", "a", "new", 1, "Running", true),
        pod("b-1", "b", "old", 1, "Running", false),
        pod("c-1", "c", "new", 1, "Running", true),
    ];
    let st = plan::status(&d, &views(&d, &nodes), &by_node(&pods), "new", Timestamp::now());
    assert_eq!(st.desired_number_scheduled, 2);
    assert_eq!(st.current_number_scheduled, 2);
    assert_eq!(st.number_misscheduled, 1);
    assert_eq!(st.number_ready, 1);
    assert_eq!(st.number_available, Some(1));
    assert_eq!(st.updated_number_scheduled, Some(1));
    assert_eq!(st.number_unavailable, Some(1));
}

#[test]
fn history_is_the_template_patch_and_old_revisions_beyond_the_limit_go() {
    let d = ds(json!({ "type": "RollingUpdate" }));
    let patch = history::patch(&d);
    assert_eq!(patch["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        patch["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox"
    );
    let rev = history::snapshot(&d, 3);
    let hash = history::hash_of(&rev);
    assert_eq!(rev.metadata.name, Some(format!("agent-{hash}")));
    assert_eq!(rev.metadata.labels.as_ref().unwrap()["app"], "agent");
    assert_eq!(rev.revision, 3);
    assert!(history::matches(&d, &rev));

    let mut limited = d.clone();
    limited.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let old: Vec<Arc<ControllerRevision>> = (1..=3)
        .map(|n| {
            let mut r = history::snapshot(&d, n);
            r.metadata
                .labels
                .as_mut()
                .unwrap()
                .insert("controller-revision-hash".into(), format!("h{n}"));
            r.data = Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                json!({ "n": n }),
            ));
            Arc::new(r)
        })
        .collect();
    assert!(!history::matches(&d, &old[0]));
    assert_eq!(history::next_revision(&old), 4);
    // Two of three must go; h1 still has a live pod, so h2 and h3 go.
    let live = HashSet::from(["h1".to_string()]);
    let gone: Vec<i64> = history::to_clean_up(&limited, &old, &live)
        .iter()
        .map(|r| r.revision)
        .collect();
    assert_eq!(gone, [2, 3]);
}
