//! Table tests of the pure parts, with cases from upstream's deployment_util_test.go and sync_test.go.

use k8s_openapi::{
    api::apps::v1::{Deployment, ReplicaSet},
    apimachinery::pkg::util::intstr::IntOrString,
    jiff::Timestamp,
};
use serde_json::json;

use super::{status, util::*};

fn deployment(replicas: i32, surge: serde_json::Value, unavailable: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": "web", "generation": 1 },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "web" } },
                  "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": surge, "maxUnavailable": unavailable } },
                  "template": { "metadata": { "labels": { "app": "web" } }, "spec": { "containers": [{ "name": "c", "image": "a" }] } } }
    }))
    .unwrap()
}

fn rs(name: &str, replicas: i32, available: i32, max_replicas: Option<i32>) -> ReplicaSet {
    let mut annotations = serde_json::Map::new();
    if let Some(m) = max_replicas {
        annotations.insert(MAX_REPLICAS.into(), json!(m.to_string()));
    }
    serde_json::from_value(json!({
        "metadata": { "name": name, "annotations": annotations },
        "spec": { "replicas": replicas, "selector": { "matchLabels": { "app": "web" } } },
        "status": { "replicas": replicas, "availableReplicas": available, "readyReplicas": available }
    }))
    .unwrap()
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    // TestResolveFenceposts (its malformed values are refused by validation before they get here).
    for (surge, unavailable, desired, want) in [
        (json!("0%"), json!("0%"), 0, (0, 1)),
        (json!("39%"), json!("39%"), 10, (4, 3)),
        (json!(3), json!(0), 10, (3, 0)),
        (json!("25%"), json!("25%"), 4, (1, 1)),
        (json!("25%"), json!("25%"), 3, (1, 0)),
    ] {
        let d = deployment(desired, surge.clone(), unavailable.clone());
        assert_eq!(
            resolve_fenceposts(&d, desired),
            want,
            "surge {surge} unavailable {unavailable} of {desired}"
        );
    }
    assert_eq!(scaled_value(&IntOrString::String("50%".into()), 5, true), 3);
    assert_eq!(scaled_value(&IntOrString::String("50%".into()), 5, false), 2);
}

#[test]
fn new_rs_grows_within_max_surge() {
    // TestNewRSNewReplicas: 10 replicas, surge 2.
    let d = deployment(10, json!(2), json!(0));
    let old = rs("old", 10, 10, None);
    let new = rs("new", 0, 0, None);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 2);
    let new = rs("new", 2, 0, None);
    assert_eq!(
        new_rs_new_replicas(&d, &[&old, &new], &new),
        2,
        "at the surge limit: no more"
    );
    let old = rs("old", 8, 8, None);
    assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), 4);
    let mut recreate = deployment(10, json!(2), json!(0));
    recreate.spec.as_mut().unwrap().strategy.as_mut().unwrap().type_ = Some("Recreate".into());
    assert_eq!(new_rs_new_replicas(&recreate, &[&old, &new], &new), 10);
}

#[test]
fn proportions_follow_each_replicasets_share() {
    // 10 → 20 replicas mid-rollout (max-replicas 13 with surge 3): 6 and 4 grow by their share.
    let d = deployment(20, json!(3), json!(0));
    let a = rs("a", 6, 6, Some(13));
    let b = rs("b", 4, 0, Some(13));
    let to_add = 20 + 3 - 10;
    let pa = proportion(&a, &d, to_add, 0);
    let pb = proportion(&b, &d, to_add, pa);
    assert_eq!((pa, pb), (5, 3));
    assert_eq!(proportion(&rs("zero", 0, 0, Some(13)), &d, to_add, 0), 0);
    // Scaling down takes from each in proportion too.
    let small = deployment(5, json!(1), json!(0));
    assert!(proportion(&a, &small, 6 - 10, 0) < 0);
}

#[test]
fn hashes_are_stable_and_templates_compare_without_them() {
    let d = deployment(1, json!(1), json!(0));
    let t = d.spec.as_ref().unwrap().template.clone();
    assert_eq!(compute_hash(&t, None), compute_hash(&t, None));
    assert_ne!(
        compute_hash(&t, None),
        compute_hash(&t, Some(1)),
        "a collision count changes the hash"
    );
    assert!(
        compute_hash(&t, None)
            .bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b))
    );
    let mut labelled = t.clone();
    labelled
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH.into(), "abc".into());
    assert!(equal_ignore_hash(&t, &labelled));
    let mut changed = t.clone();
    changed.spec.as_mut().unwrap().containers[0].image = Some("b".into());
    assert!(!equal_ignore_hash(&t, &changed));
}

#[test]
fn status_counts_and_conditions() {
    let mut d = deployment(3, json!(1), json!(0));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(600);
    let old = rs("old", 1, 1, None);
    let new = rs("new", 3, 2, None);
    let now = Timestamp::now();
    let s = status::calculate_status(&d, &[&old, &new], Some(&new), now);
    assert_eq!(
        (
            s.replicas,
            s.updated_replicas,
            s.available_replicas,
            s.unavailable_replicas
        ),
        (Some(4), Some(3), Some(3), Some(1))
    );
    assert_eq!(
        status::condition(Some(&s), "Available").unwrap().status,
        "True",
        "3 available ≥ 3 − 0"
    );
    assert!(!status::complete(&d, &s));
    let done = rs("new", 3, 3, None);
    let mut s = status::calculate_status(&d, &[&done], Some(&done), now);
    status::update_progressing(&d, &mut s, Some(&done), now);
    assert!(status::complete(&d, &s));
    let p = status::condition(Some(&s), "Progressing").unwrap();
    assert_eq!(p.reason.as_deref(), Some("NewReplicaSetAvailable"));
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"new\" has successfully progressed.")
    );
}
