//! The kubectl flows end to end (apply, re-apply, scale, force, pruning, several managers, the
//! client-side to server-side migration), `update` for other writes, and property tests (apply is
//! idempotent; no input panics).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const T0: &str = "2025-01-01T00:00:00Z";
const T1: &str = "2025-01-01T00:01:00Z";
const T2: &str = "2025-01-01T00:02:00Z";
const T3: &str = "2025-01-01T00:03:00Z";

/// The Deployment `kubectl apply --server-side` sends for `web`.
fn web(replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
            }
        }
    })
}

/// What the server adds before storing: server-set metadata, defaults and a status, none of which
/// anyone owns.
fn stored(mut object: Value) -> Value {
    let meta = object["metadata"].as_object_mut().unwrap();
    meta.entry("uid").or_insert(json!("0b9c0a2e"));
    meta.insert("resourceVersion".into(), json!("7"));
    meta.entry("creationTimestamp").or_insert(json!(T0));
    meta.entry("generation").or_insert(json!(1));
    object["spec"]["strategy"] =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}});
    object["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent");
    object["status"] = json!({"replicas": 1});
    object
}

fn apply_deployment(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    now: &str,
) -> Result<Value, ApplyError> {
    apply(live, config, manager, force, "Deployment", now)
}

/// The managedFields entries as (manager, operation, subresource, time).
fn entries(object: &Value) -> Vec<(String, String, String, String)> {
    let Some(list) = object["metadata"]["managedFields"].as_array() else {
        return Vec::new();
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
            (s("manager"), s("operation"), s("subresource"), s("time"))
        })
        .collect()
}

/// The fieldsV1 of one manager's entry.
fn fields(object: &Value, manager: &str, operation: &str) -> Value {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

fn without_managed_fields(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    object
}

fn conflict_fields(err: &ApplyError) -> Vec<(String, String)> {
    match err {
        ApplyError::Conflicts(list) => list
            .iter()
            .map(|c| (c.manager.clone(), c.field.clone()))
            .collect(),
        other => panic!("expected conflicts, got {other:?}"),
    }
}

#[test]
fn apply_creates_the_object_with_one_apply_entry() {
    let config = web(2, json!({"app": "web"}));
    let created = apply_deployment(None, &config, "kubectl", false, T0).unwrap();
    assert_eq!(without_managed_fields(created.clone()), config);
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {
                    "f:replicas": {}, "f:selector": {},
                    "f:template": {
                        "f:metadata": {"f:labels": {"f:app": {}}},
                        "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}
                    }
                }
            }
        }])
    );
}

#[test]
fn reapplying_the_same_configuration_changes_nothing() {
    let config = web(2, json!({"app": "web"}));
    let live = stored(apply_deployment(None, &config, "kubectl", false, T0).unwrap());
    // As upstream, a no-op apply keeps even the entry's time, so the object need not be written.
    assert_eq!(
        apply_deployment(Some(&live), &config, "kubectl", false, T1).unwrap(),
        live
    );
    // A changed value moves the time.
    let changed =
        apply_deployment(Some(&live), &web(3, json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(changed["spec"]["replicas"], 3);
    assert_eq!(
        entries(&changed),
        [("kubectl".into(), "Apply".into(), String::new(), T1.into())]
    );
    // Defaults, server-set metadata and status survive and stay unowned.
    assert_eq!(changed["spec"]["strategy"], live["spec"]["strategy"]);
    assert_eq!(changed["status"], live["status"]);
    assert_eq!(changed["metadata"]["uid"], live["metadata"]["uid"]);
}

#[test]
fn scale_then_apply_of_another_replica_count_conflicts() {
    let config = web(2, json!({"app": "web"}));
    let live = stored(apply_deployment(None, &config, "kubectl", false, T0).unwrap());
    // (writer, subresource, the manager as the conflict message prints it)
    let scalers = [
        (
            "kubectl",
            Some("scale"),
            "\"kubectl\" with subresource \"scale\" using apps/v1",
        ),
        (
            "kube-controller-manager",
            None,
            "\"kube-controller-manager\" using apps/v1",
        ),
    ];
    for (scaler, subresource, printed) in scalers {
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        let scaled = update(Some(&live), &scaled, scaler, subresource, T1);
        // The scaler took .spec.replicas from the applier.
        assert_eq!(
            fields(&scaled, scaler, "Update"),
            json!({"f:spec": {"f:replicas": {}}}),
            "{scaler}"
        );
        assert!(
            fields(&scaled, "kubectl", "Apply")["f:spec"]
                .get("f:replicas")
                .is_none()
        );
        let entry = scaled["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["operation"] == "Update")
            .cloned()
            .unwrap();
        assert_eq!(entry["subresource"], subresource.map_or(Value::Null, Value::from));
        assert_eq!(entry["apiVersion"], "apps/v1");

        let err = apply_deployment(Some(&scaled), &config, "kubectl", false, T2).unwrap_err();
        assert_eq!(
            conflict_fields(&err),
            [(scaler.to_owned(), ".spec.replicas".to_owned())]
        );
        assert_eq!(
            err.message(),
            format!("Apply failed with 1 conflict: conflict with {printed}: .spec.replicas")
        );
        assert_eq!(err.code(), 409);
        assert_eq!(
            err.causes(),
            [
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {printed}"), "field": ".spec.replicas"})
            ]
        );

        // Applying the value the scaler set is no conflict: both own the field.
        let agreed = apply_deployment(
            Some(&scaled),
            &web(5, json!({"app": "web"})),
            "kubectl",
            false,
            T2,
        )
        .unwrap();
        assert!(
            fields(&agreed, "kubectl", "Apply")["f:spec"]
                .get("f:replicas")
                .is_some()
        );
        assert_eq!(
            fields(&agreed, scaler, "Update"),
            json!({"f:spec": {"f:replicas": {}}})
        );

        // With force the field moves to the applier, and the scaler, left with nothing, goes.
        let forced = apply_deployment(Some(&scaled), &config, "kubectl", true, T2).unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        assert_eq!(
            entries(&forced),
            [("kubectl".into(), "Apply".into(), String::new(), T2.into())]
        );
        assert_eq!(
            fields(&forced, "kubectl", "Apply"),
            fields(&live, "kubectl", "Apply")
        );
    }
}

#[test]
fn conflicts_with_several_fields_and_managers_are_grouped() {
    let live =
        stored(apply_deployment(None, &web(2, json!({"app": "web", "tier": "fe"})), "a", false, T0).unwrap());
    let mut other = live.clone();
    other["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    other["spec"]["replicas"] = json!(4);
    let live = update(Some(&live), &other, "kube-controller-manager", None, T1);
    let mut config = web(3, json!({"app": "web", "tier": "be"}));
    config["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.29");
    let err = apply_deployment(Some(&live), &config, "b", false, T2).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 3 conflicts: conflicts with \"a\":\n- .metadata.labels.tier\n\
         conflicts with \"kube-controller-manager\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"web\"].image"
    );
    assert_eq!(err.causes().len(), 3);
}

#[test]
fn dropping_a_field_from_the_configuration_removes_it_unless_someone_else_owns_it() {
    let live = stored(
        apply_deployment(
            None,
            &web(2, json!({"app": "web", "tier": "fe"})),
            "kubectl",
            false,
            T0,
        )
        .unwrap(),
    );
    let dropped =
        apply_deployment(Some(&live), &web(2, json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(dropped["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(
        fields(&dropped, "kubectl", "Apply")["f:metadata"],
        json!({"f:labels": {"f:app": {}}})
    );

    // `kubectl label` (an update) co-owns the label: it stays.
    let mut labelled = live.clone();
    labelled["metadata"]["labels"]["tier"] = json!("fe");
    labelled["metadata"]["labels"]["team"] = json!("x");
    let labelled = update(Some(&live), &labelled, "kubectl-label", None, T1);
    assert_eq!(
        fields(&labelled, "kubectl-label", "Update"),
        json!({"f:metadata": {"f:labels": {"f:team": {}}}})
    );
    let kept = apply_deployment(
        Some(&labelled),
        &web(2, json!({"app": "web"})),
        "kubectl",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(kept["metadata"]["labels"], json!({"app": "web", "team": "x"}));

    // Dropping the whole label map removes the applier's labels but not `team`.
    let mut no_labels = web(2, json!({}));
    no_labels["metadata"].as_object_mut().unwrap().remove("labels");
    let cleared = apply_deployment(Some(&labelled), &no_labels, "kubectl", false, T2).unwrap();
    assert_eq!(cleared["metadata"]["labels"], json!({"team": "x"}));

    // Dropping a container removes it; the defaults inside the remaining one stay.
    let mut two = web(2, json!({"app": "web"}));
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "envoy"}));
    let with_sidecar = stored(apply_deployment(Some(&live), &two, "kubectl", false, T1).unwrap());
    assert_eq!(
        with_sidecar["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let without = apply_deployment(
        Some(&with_sidecar),
        &web(2, json!({"app": "web"})),
        "kubectl",
        false,
        T2,
    )
    .unwrap();
    assert_eq!(
        without["spec"]["template"]["spec"]["containers"],
        json!([{"name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent"}])
    );
    assert_eq!(without["spec"]["strategy"], with_sidecar["spec"]["strategy"]);
}

#[test]
fn two_appliers_keep_their_own_labels() {
    let config_map = |labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}});
    let cm = |live: Option<&Value>, labels: Value, manager: &str, force: bool| {
        apply(live, &config_map(labels), manager, force, "ConfigMap", T1)
    };
    let a = cm(None, json!({"a": "1"}), "alice", false).unwrap();
    let ab = cm(Some(&a), json!({"b": "2"}), "bob", false).unwrap();
    assert_eq!(ab["metadata"]["labels"], json!({"a": "1", "b": "2"}));
    assert_eq!(
        fields(&ab, "alice", "Apply"),
        json!({"f:metadata": {"f:labels": {"f:a": {}}}})
    );
    assert_eq!(
        fields(&ab, "bob", "Apply"),
        json!({"f:metadata": {"f:labels": {"f:b": {}}}})
    );
    // Each re-applies without the other's label: nothing is removed.
    let again = cm(Some(&ab), json!({"a": "1"}), "alice", false).unwrap();
    assert_eq!(again, ab);
    // Changing the other's label conflicts; an applier is printed without a version.
    let err = cm(Some(&ab), json!({"a": "x"}), "bob", false).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"alice\": .metadata.labels.a"
    );
    // Forced, bob takes `a` over; alice's entry, now empty, disappears; dropping it later removes it.
    let taken = cm(Some(&ab), json!({"a": "x", "b": "2"}), "bob", true).unwrap();
    assert_eq!(
        entries(&taken).iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["bob"]
    );
    let dropped = cm(Some(&taken), json!({"b": "2"}), "bob", false).unwrap();
    assert_eq!(dropped["metadata"]["labels"], json!({"b": "2"}));
}

#[test]
fn containers_merge_by_name_across_managers() {
    let live = stored(apply_deployment(None, &web(2, json!({"app": "web"})), "kubectl", false, T0).unwrap());
    let sidecar = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "envoy", "ports": [{"containerPort": 9901}]}]}}}
    });
    let both = apply_deployment(Some(&live), &sidecar, "mesh", false, T1).unwrap();
    let names: Vec<&str> = both["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "sidecar"]);
    assert_eq!(both["spec"]["replicas"], 2);
    assert_eq!(
        fields(&both, "mesh", "Apply"),
        json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"sidecar\"}": {
            ".": {}, "f:name": {}, "f:image": {},
            "f:ports": {"k:{\"containerPort\":9901,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
        }}}}}})
    );
    // The web container's image is kubectl's: changing it from the sidecar's manager conflicts.
    let mut grab = sidecar.clone();
    grab["spec"]["template"]["spec"]["containers"][0] = json!({"name": "web", "image": "other"});
    let err = apply_deployment(Some(&both), &grab, "mesh", false, T2).unwrap_err();
    assert_eq!(
        conflict_fields(&err),
        [(
            "kubectl".to_owned(),
            ".spec.template.spec.containers[name=\"web\"].image".to_owned()
        )]
    );
    // kubectl re-applying its own configuration leaves the sidecar alone; the mesh dropping it
    // removes it.
    let stable = apply_deployment(Some(&both), &web(2, json!({"app": "web"})), "kubectl", false, T2).unwrap();
    assert_eq!(stable, both);
    let mut nothing = sidecar.clone();
    nothing["spec"] = json!({});
    let gone = apply_deployment(Some(&both), &nothing, "mesh", false, T3).unwrap();
    assert_eq!(
        gone["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn first_apply_to_an_untracked_object_conflicts_with_before_first_apply() {
    let mut live = stored(web(2, json!({"app": "web"})));
    live["metadata"].as_object_mut().unwrap().remove("managedFields");
    let err = apply_deployment(Some(&live), &web(3, json!({"app": "web"})), "helm", false, T1).unwrap_err();
    assert_eq!(
        err.message(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using apps/v1: .spec.replicas"
    );
    let ok = apply_deployment(Some(&live), &web(3, json!({"app": "web"})), "helm", true, T1).unwrap();
    let managers: Vec<String> = entries(&ok).into_iter().map(|e| e.0).collect();
    assert_eq!(managers, ["helm", "before-first-apply"]);
    // before-first-apply owns what it had, defaults included, but not server-set metadata or status.
    let before = fields(&ok, "before-first-apply", "Update");
    assert!(before["f:spec"]["f:strategy"].is_object());
    assert!(before["f:metadata"].get("f:uid").is_none());
    assert!(before.get("f:status").is_none());
}

#[test]
fn client_side_apply_migrates_to_server_side_apply() {
    // `kubectl apply` (client-side) created the object: an Update by kubectl-client-side-apply
    // with the last-applied annotation.
    let mut csa = web(2, json!({"app": "web"}));
    let last = without_managed_fields(csa.clone()).to_string();
    csa["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: last});
    let live = update(None, &stored(csa), "kubectl-client-side-apply", None, T0);
    assert_eq!(
        entries(&live),
        [(
            "kubectl-client-side-apply".into(),
            "Update".into(),
            String::new(),
            T0.into()
        )]
    );

    // Another manager changing replicas conflicts, worded as in the compatibility notes.
    let err = apply_deployment(Some(&live), &web(3, json!({"app": "web"})), "other", false, T1).unwrap_err();
    assert_eq!(
        err.to_status(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Conflict","code":409,
            "message":"Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
            "details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"kubectl-client-side-apply\" using apps/v1","field":".spec.replicas"}]}})
    );

    // kubectl itself may take over what the annotation records, and keeps the annotation current.
    let ssa = apply_deployment(Some(&live), &web(3, json!({"app": "web"})), "kubectl", false, T1).unwrap();
    assert_eq!(ssa["spec"]["replicas"], 3);
    let annotation = ssa["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    assert!(annotation.ends_with('\n'));
    assert_eq!(
        serde_json::from_str::<Value>(annotation).unwrap(),
        web(3, json!({"app": "web"}))
    );

    // But not a field whose live value no longer matches the annotation.
    let mut drifted = live.clone();
    drifted["spec"]["replicas"] = json!(7);
    let drifted = update(Some(&live), &drifted, "kubectl-client-side-apply", None, T1);
    let err = apply_deployment(
        Some(&drifted),
        &web(3, json!({"app": "web"})),
        "kubectl",
        false,
        T2,
    )
    .unwrap_err();
    assert_eq!(
        conflict_fields(&err),
        [(
            "kubectl-client-side-apply".to_owned(),
            ".spec.replicas".to_owned()
        )]
    );
}

#[test]
fn status_in_a_configuration_is_neither_applied_nor_owned() {
    let live = stored(apply_deployment(None, &web(2, json!({"app": "web"})), "kubectl", false, T0).unwrap());
    let mut config = web(2, json!({"app": "web"}));
    config["status"] = json!({"replicas": 9});
    let applied = apply_deployment(Some(&live), &config, "kubectl", false, T1).unwrap();
    assert_eq!(applied, live);
    let created = apply_deployment(None, &config, "kubectl", false, T1).unwrap();
    assert!(created.get("status").is_none());
}

#[test]
fn apply_errors() {
    let dup = {
        let mut c = web(1, json!({}));
        c["spec"]["template"]["spec"]["containers"] = json!([{"name": "web"}, {"name": "web"}]);
        c
    };
    let mut with_managed_fields = web(1, json!({}));
    with_managed_fields["metadata"]["managedFields"] = json!([]);
    let cases = [
        (json!([]), 400, "the applied configuration must be a JSON object"),
        (
            json!({"apiVersion": "v1"}),
            400,
            "Object 'Kind' is missing in '{\"apiVersion\":\"v1\"}'",
        ),
        (
            json!({"kind": "Pod"}),
            400,
            "Object 'apiVersion' is missing in '{\"kind\":\"Pod\"}'",
        ),
        (with_managed_fields, 400, "metadata.managedFields must be nil"),
        (
            dup,
            500,
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name=\"web\"]",
        ),
        (
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": "x"}),
            500,
            "failed to create typed patch object (/; /v1, Kind=Pod): .metadata: expected map, got \"x\"",
        ),
    ];
    for (config, code, message) in cases {
        let err = apply_deployment(None, &config, "kubectl", false, T0).unwrap_err();
        assert_eq!((err.code(), err.message().as_str()), (code, message), "{config}");
    }
}

// ---- update ---------------------------------------------------------------------------------------

#[test]
fn create_records_every_field_but_server_set_ones() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u", "labels": {"app": "x"}, "resourceVersion": "1"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}]},
        "status": {"phase": "Pending"}
    });
    let created = update(None, &pod, "kubectl-create", None, T0);
    assert_eq!(
        created["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
            "fieldsV1": {
                // The labels map was added ("."), spec was not (it is a struct upstream).
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:image": {}, "f:name": {}, "f:resources": {}}}}
            }
        }])
    );
    assert_eq!(without_managed_fields(created), pod);
}

#[test]
fn update_table() {
    let base = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u"}, "data": data});
    let created = update(None, &base(json!({"a": "1", "b": "2"})), "creator", None, T0);
    let with = |object: &Value, data: Value| {
        let mut o = object.clone();
        o["data"] = data;
        o
    };
    // (new data, manager, expected entries as (manager, time, fieldsV1))
    type Entries = Vec<(&'static str, &'static str, Value)>;
    let cases: [(Value, &str, Entries); 4] = [
        // Nothing changed: nothing recorded, no time moves.
        (
            json!({"a": "1", "b": "2"}),
            "editor",
            vec![("creator", T0, json!({"f:data": {".": {}, "f:a": {}, "f:b": {}}}))],
        ),
        // A changed value moves to the writer.
        (
            json!({"a": "x", "b": "2"}),
            "editor",
            vec![
                ("creator", T0, json!({"f:data": {".": {}, "f:b": {}}})),
                ("editor", T1, json!({"f:data": {"f:a": {}}})),
            ],
        ),
        // A removed field leaves every set.
        (
            json!({"a": "1"}),
            "editor",
            vec![("creator", T0, json!({"f:data": {".": {}, "f:a": {}}}))],
        ),
        // The same manager accumulates; a manager left with nothing disappears.
        (
            json!({"c": "3"}),
            "creator",
            vec![("creator", T1, json!({"f:data": {".": {}, "f:c": {}}}))],
        ),
    ];
    for (data, manager, want) in cases {
        let updated = update(Some(&created), &with(&created, data.clone()), manager, None, T1);
        let got: Vec<(String, String, Value)> = updated["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["manager"].as_str().unwrap().to_owned(),
                    e["time"].as_str().unwrap().to_owned(),
                    e["fieldsV1"].clone(),
                )
            })
            .collect();
        let want: Vec<(String, String, Value)> = want
            .into_iter()
            .map(|(m, t, f)| (m.to_owned(), t.to_owned(), f))
            .collect();
        assert_eq!(got, want, "{data}");
    }
}

#[test]
fn update_takes_managed_fields_from_the_request_and_tracks_subresources_apart() {
    let live = update(
        None,
        &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "uid": "u"}, "spec": {"nodeName": "a"}}),
        "creator",
        None,
        T0,
    );
    // `[]` clears them; an untracked object then stays untracked.
    let mut reset = live.clone();
    reset["metadata"]["managedFields"] = json!([]);
    let cleared = update(Some(&live), &reset, "x", None, T1);
    assert!(cleared["metadata"].get("managedFields").is_none());
    let mut changed = cleared.clone();
    changed["spec"]["nodeName"] = json!("b");
    assert!(
        update(Some(&cleared), &changed, "x", None, T1)["metadata"]
            .get("managedFields")
            .is_none()
    );
    // Entries sent with the update replace the stored ones (kubectl's migration patch).
    let mut rewritten = live.clone();
    rewritten["metadata"]["managedFields"][0]["manager"] = json!("renamed");
    let taken = update(Some(&live), &rewritten, "x", None, T1);
    assert_eq!(
        entries(&taken),
        [("renamed".into(), "Update".into(), String::new(), T0.into())]
    );
    // Through /status only status is recorded, and entries are kept apart by subresource.
    let mut status = live.clone();
    status["status"] = json!({"phase": "Running"});
    status["spec"]["nodeName"] = json!("ignored-here");
    let kubelet = update(Some(&live), &status, "kubelet", Some("status"), T1);
    assert_eq!(
        fields(&kubelet, "kubelet", "Update"),
        json!({"f:status": {"f:phase": {}}})
    );
    assert_eq!(
        fields(&kubelet, "creator", "Update"),
        json!({"f:spec": {"f:nodeName": {}}})
    );
    // Through the main resource, status is not recorded.
    let main = update(Some(&live), &status, "kubelet", None, T1);
    assert_eq!(
        fields(&main, "kubelet", "Update"),
        json!({"f:spec": {"f:nodeName": {}}})
    );
}

// ---- properties -----------------------------------------------------------------------------------

/// JSON values over a small vocabulary of field names, so that list-maps, sets and metadata are
/// hit often.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..3).prop_map(Value::from),
        prop::sample::select(vec!["a", "b", "web", "TCP", ""]).prop_map(Value::from),
    ];
    let names = prop::sample::select(vec![
        "metadata",
        "labels",
        "finalizers",
        "spec",
        "template",
        "containers",
        "name",
        "image",
        "ports",
        "containerPort",
        "protocol",
        "replicas",
        "selector",
        "status",
        "a",
        "b",
    ]);
    leaf.prop_recursive(5, 48, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(names.clone(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

/// An applied configuration: apiVersion, kind and name, plus arbitrary fields.
fn configuration() -> impl Strategy<Value = Value> {
    (
        json_value(),
        prop::sample::select(vec!["Deployment", "Pod", "Widget"]),
    )
        .prop_map(|(body, kind)| {
            let mut config = match body {
                Value::Object(map) => Value::Object(map),
                other => json!({"spec": other}),
            };
            config["apiVersion"] = json!(if kind == "Deployment" { "apps/v1" } else { "v1" });
            config["kind"] = json!(kind);
            if config["metadata"].is_object() {
                config["metadata"]["name"] = json!("x");
                config["metadata"]
                    .as_object_mut()
                    .unwrap()
                    .remove("managedFields");
            }
            config
        })
}

/// A Deployment configuration drawn from a few labels, a replica count and two containers, so
/// that managers overlap, conflict and drop fields often.
fn deployment_config() -> impl Strategy<Value = Value> {
    let label = prop::option::of(prop::sample::select(vec!["1", "x"]));
    let container = prop::option::of((
        prop::option::of(prop::sample::select(vec!["i1", "i2"])),
        prop::option::of(prop::sample::select(vec![80, 443])),
    ));
    (
        [label.clone(), label.clone(), label],
        prop::option::of(1i64..3),
        [container.clone(), container],
        prop::option::of(prop::sample::select(vec!["a", "b"])),
    )
        .prop_map(|(labels, replicas, containers, finalizer)| {
            let mut config =
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}});
            let labels: serde_json::Map<String, Value> = ["a", "b", "c"]
                .into_iter()
                .zip(labels)
                .filter_map(|(k, v)| Some((k.to_owned(), json!(v?))))
                .collect();
            if !labels.is_empty() {
                config["metadata"]["labels"] = Value::Object(labels);
            }
            if let Some(f) = finalizer {
                config["metadata"]["finalizers"] = json!([f]);
            }
            if let Some(r) = replicas {
                config["spec"]["replicas"] = json!(r);
            }
            let containers: Vec<Value> = ["web", "side"]
                .into_iter()
                .zip(containers)
                .filter_map(|(name, c)| {
                    let (image, port) = c?;
                    let mut c = json!({"name": name});
                    if let Some(image) = image {
                        c["image"] = json!(image);
                    }
                    if let Some(port) = port {
                        c["ports"] = json!([{"containerPort": port}]);
                    }
                    Some(c)
                })
                .collect();
            if !containers.is_empty() {
                config["spec"]["template"] = json!({"spec": {"containers": containers}});
            }
            config
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Applies by several managers, forced or not: a successful apply leaves every configured
    /// field in the object, records exactly the configuration's fields for its manager, and is
    /// idempotent; a refused one was not forced.
    #[test]
    fn applies_by_several_managers(
        steps in prop::collection::vec(
            (prop::sample::select(vec!["kubectl", "alice", "bob"]), deployment_config(), any::<bool>()),
            1..6,
        )
    ) {
        let mut live: Option<Value> = None;
        for (manager, config, force) in steps {
            match apply(live.as_ref(), &config, manager, force, "Deployment", T1) {
                Ok(object) => {
                    let configured = field_set(&config, "Deployment").unwrap();
                    let present = field_set(&without_managed_fields(object.clone()), "Deployment").unwrap();
                    prop_assert!(configured.difference(&present).is_empty(), "{}", configured.difference(&present));
                    let server = FieldSet::from_paths([
                        &[PathElement::Field("apiVersion".into())][..],
                        &[PathElement::Field("kind".into())],
                        &[PathElement::Field("metadata".into()), PathElement::Field("name".into())],
                    ]);
                    let owned = configured.difference(&server);
                    let want = if owned.is_empty() { Value::Null } else { owned.to_fields_v1() };
                    prop_assert_eq!(fields(&object, manager, "Apply"), want);
                    let again = apply(Some(&object), &config, manager, false, "Deployment", T2).unwrap();
                    prop_assert_eq!(&again, &object);
                    live = Some(object);
                }
                Err(ApplyError::Conflicts(conflicts)) => prop_assert!(!force && !conflicts.is_empty()),
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
    }

    #[test]
    fn apply_is_idempotent(config in configuration(), manager in prop::sample::select(vec!["kubectl", "m"])) {
        let kind = config["kind"].as_str().unwrap().to_owned();
        let Ok(first) = apply(None, &config, manager, false, &kind, T0) else { return Ok(()) };
        let second = apply(Some(&first), &config, manager, false, &kind, T1).unwrap();
        // An object whose applier owns nothing is untracked, so the second apply may add a
        // before-first-apply entry; from then on nothing changes.
        if first["metadata"]["managedFields"].is_array() {
            prop_assert_eq!(&second, &first);
        }
        let third = apply(Some(&second), &config, manager, false, &kind, T2).unwrap();
        prop_assert_eq!(third, second);
    }

    #[test]
    fn field_sets_round_trip_through_fields_v1(config in configuration()) {
        let kind = config["kind"].as_str().unwrap().to_owned();
        if let Ok(set) = field_set(&config, &kind) {
            prop_assert_eq!(FieldSet::from_fields_v1(&set.to_fields_v1()).unwrap(), set);
        }
    }

    #[test]
    fn nothing_panics_on_arbitrary_objects(
        live in json_value(),
        config in json_value(),
        other in configuration(),
        force in any::<bool>(),
        kind in prop::sample::select(vec!["Deployment", "Pod", "Widget"]),
    ) {
        let _ = apply(Some(&live), &config, "m", force, kind, T0);
        let _ = apply(Some(&live), &other, "kubectl", force, kind, T0);
        if let Ok(applied) = apply(Some(&live), &other, "m", force, kind, T0) {
            let _ = update(Some(&applied), &live, "u", None, T1);
            let _ = apply(Some(&applied), &other, "n", force, kind, T1);
        }
        let _ = update(Some(&live), &config, "u", Some("status"), T1);
        let _ = update(None, &live, "u", None, T1);
        let _ = FieldSet::from_fields_v1(&live);
    }
}
