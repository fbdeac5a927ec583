//! The StatefulSet controller's pure decisions: order, scale-down, rolling updates with a
//! partition, status.

use std::sync::Arc;

use k8s_openapi::{
    api::{
        apps::v1::StatefulSet,
        core::v1::{Pod, PodTemplateSpec},
    },
    jiff::Timestamp,
};
use serde_json::{Value, json};

use super::plan::{self, Revisions, Step};

fn set(replicas: i32, extra: Value) -> StatefulSet {
    let mut spec = json!({
        "replicas": replicas, "serviceName": "web",
        "selector": { "matchLabels": { "app": "web" } },
        "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 0 } },
        "template": { "metadata": { "labels": { "app": "web" } },
                      "spec": { "containers": [{ "name": "c", "image": "busybox" }] } }
    });
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "default", "uid": "set-uid", "generation": 1 },
        "spec": spec
    }))
    .unwrap()
}

fn revisions() -> Revisions {
    Revisions {
        current: ("web-old".into(), PodTemplateSpec::default()),
        update: ("web-new".into(), PodTemplateSpec::default()),
    }
}

/// Pod `web-<ordinal>` of `revision`, Running and Ready for long when `ready`.
fn pod(ordinal: i32, revision: &str, phase: &str, ready: bool) -> Arc<Pod> {
    let since = Timestamp::from_second(1_600_000_000).unwrap().to_string();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": { "name": format!("web-{ordinal}"), "namespace": "default", "uid": format!("uid-{ordinal}"),
                          "labels": { "app": "web", "controller-revision-hash": revision } },
            "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
            "status": { "phase": phase, "conditions": [
                { "type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": since }] }
        }))
        .unwrap(),
    )
}

fn deleted(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Step::Delete(p) => p.metadata.name.clone(),
            Step::Create { .. } => None,
        })
        .collect()
}

#[test]
fn ordinals_are_the_canonical_numbers_after_the_sets_name() {
    let s = set(1, json!({}));
    let named =
        |name: &str| -> Pod { serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap() };
    assert_eq!(plan::ordinal(&s, &named("web-1")), Some(1));
    assert_eq!(plan::ordinal(&s, &named("web-10")), Some(10));
    assert_eq!(plan::ordinal(&s, &named("web-01")), None);
    assert_eq!(plan::ordinal(&s, &named("web-a")), None);
    assert_eq!(plan::ordinal(&s, &named("webx-1")), None);
    assert_eq!(plan::ordinal(&s, &named("web-x-1")), None);
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_after_the_one_before_is_ready() {
    let s = set(3, json!({}));
    let now = Timestamp::now();
    let r = revisions();
    assert_eq!(
        plan::steps(&s, &[], &r, now),
        [Step::Create {
            ordinal: 0,
            update: true
        }]
    );
    let pending = [pod(0, "web-new", "Pending", false)];
    assert!(plan::steps(&s, &pending, &r, now).is_empty());
    let ready = [pod(0, "web-new", "Running", true)];
    assert_eq!(
        plan::steps(&s, &ready, &r, now),
        [Step::Create {
            ordinal: 1,
            update: true
        }]
    );
    // Parallel: all at once.
    let parallel = set(3, json!({ "podManagementPolicy": "Parallel" }));
    assert_eq!(
        plan::steps(&parallel, &[], &r, now),
        [0, 1, 2].map(|ordinal| Step::Create {
            ordinal,
            update: true
        })
    );
}

#[test]
fn scale_down_goes_from_the_highest_ordinal_one_at_a_time() {
    let s = set(2, json!({}));
    let now = Timestamp::now();
    let pods: Vec<_> = (0..4).map(|i| pod(i, "web-new", "Running", true)).collect();
    assert_eq!(deleted(&plan::steps(&s, &pods, &revisions(), now)), ["web-3"]);
    // A failed pod in the range is deleted to be made again.
    let mut broken = pods[..2].to_vec();
    broken[1] = pod(1, "web-new", "Failed", false);
    assert_eq!(deleted(&plan::steps(&s, &broken, &revisions(), now)), ["web-1"]);
}

#[test]
fn rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
    let now = Timestamp::now();
    let r = revisions();
    let s = set(3, json!({}));
    let old: Vec<_> = (0..3).map(|i| pod(i, "web-old", "Running", true)).collect();
    assert_eq!(deleted(&plan::steps(&s, &old, &r, now)), ["web-2"]);
    let mut mid = old.clone();
    mid[2] = pod(2, "web-new", "Running", false);
    assert!(plan::steps(&s, &mid, &r, now).is_empty(), "waits for web-2");
    mid[2] = pod(2, "web-new", "Running", true);
    assert_eq!(deleted(&plan::steps(&s, &mid, &r, now)), ["web-1"]);

    let partitioned = set(
        3,
        json!({ "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "partition": 2 } } }),
    );
    assert_eq!(deleted(&plan::steps(&partitioned, &old, &r, now)), ["web-2"]);
    assert!(
        plan::steps(&partitioned, &mid, &r, now).is_empty(),
        "web-1 is below the partition"
    );
    // Below the partition a missing pod is made from the current revision.
    assert_eq!(
        plan::steps(&partitioned, &mid[1..], &r, now),
        [Step::Create {
            ordinal: 0,
            update: false
        }]
    );
    // OnDelete: nothing is replaced by the controller.
    let on_delete = set(3, json!({ "updateStrategy": { "type": "OnDelete" } }));
    assert!(plan::steps(&on_delete, &old, &r, now).is_empty());
}

#[test]
fn status_counts_revisions_and_completes_the_rollout() {
    let now = Timestamp::now();
    let s = set(3, json!({}));
    let r = revisions();
    let pods = [
        pod(0, "web-old", "Running", true),
        pod(1, "web-new", "Running", true),
        pod(2, "web-new", "Pending", false),
    ];
    let st = plan::status(&s, &pods, &r, now);
    assert_eq!(st.replicas, 3);
    assert_eq!(st.ready_replicas, Some(2));
    assert_eq!(st.available_replicas, Some(2));
    assert_eq!(st.current_replicas, Some(1));
    assert_eq!(st.updated_replicas, Some(2));
    assert_eq!(st.current_revision.as_deref(), Some("web-old"));
    assert_eq!(st.update_revision.as_deref(), Some("web-new"));
    let done: Vec<_> = (0..3).map(|i| pod(i, "web-new", "Running", true)).collect();
    let st = plan::status(&s, &done, &r, now);
    assert_eq!(st.current_revision.as_deref(), Some("web-new"));
    assert_eq!(st.current_replicas, Some(3));
}
