//! Deployments, ReplicaSets, StatefulSets, DaemonSets and ControllerRevisions, as upstream's
//! `pkg/apis/apps/validation/validation.go` checks them (plus the `apps/v1` selector immutability
//! from their registry strategies).

use serde_json::Value;

use super::field::{
    Bad, Errs, Path, at, forbidden, get, go_int_or_string, go_label_selector, go_pointer, go_quote,
    go_string_map, has, int_of, invalid, list, map_of, not_supported, or_default, required, semantic_eq,
};
use super::meta::{self, IMMUTABLE_MSG, Mode, Scope, Selector, non_negative};
use super::names::{NameFn, percent};
use super::pod;

/// The workloads' shared name for the selector/template-labels mismatch.
const MISMATCH: &str = "`selector` does not match template `labels`";

/// `ValidateDeployment`.
pub fn deployment(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    let p = Path::new("spec");
    non_negative(int_of(spec, "replicas"), &p.child("replicas"), errs);
    selector_for(spec, &p, "deployment", errs);
    if let Ok(sel) = Selector::parse(get(spec, "selector")) {
        template_for_replica_set(spec, &sel, &p.child("template"), errs);
    }
    strategy(at(spec, "strategy"), &p.child("strategy"), errs);
    let min_ready = int_of(spec, "minReadySeconds").unwrap_or(0);
    non_negative(Some(min_ready), &p.child("minReadySeconds"), errs);
    non_negative(
        int_of(spec, "revisionHistoryLimit"),
        &p.child("revisionHistoryLimit"),
        errs,
    );
    if let Some(pds) = int_of(spec, "progressDeadlineSeconds") {
        non_negative(Some(pds), &p.child("progressDeadlineSeconds"), errs);
        if pds <= min_ready {
            errs.push(invalid(
                &p.child("progressDeadlineSeconds"),
                pds,
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// `ValidateReplicaSet`.
pub fn replica_set(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    let p = Path::new("spec");
    non_negative(int_of(spec, "replicas"), &p.child("replicas"), errs);
    non_negative(int_of(spec, "minReadySeconds"), &p.child("minReadySeconds"), errs);
    // Upstream's ReplicaSet message says "deployment" too.
    selector_for(spec, &p, "deployment", errs);
    if let Ok(sel) = Selector::parse(get(spec, "selector")) {
        template_for_replica_set(spec, &sel, &p.child("template"), errs);
    }
}

/// The selector rules Deployments and ReplicaSets share: required, valid, non-empty, parsable.
fn selector_for(spec: &Value, p: &Path, what: &str, errs: &mut Errs) {
    let sp = p.child("selector");
    match get(spec, "selector") {
        None => errs.push(required(&sp, "")),
        Some(sel) => {
            meta::label_selector(sel, &sp, errs);
            if selector_is_empty(sel) {
                errs.push(invalid(
                    &sp,
                    Bad::Raw(go_label_selector(sel)),
                    &format!("empty selector is invalid for {what}"),
                ));
            }
        }
    }
    if let Some(sel) = get(spec, "selector")
        && Selector::parse(Some(sel)).is_err()
    {
        errs.push(invalid(
            &sp,
            Bad::Raw(go_label_selector(sel)),
            "invalid label selector",
        ));
    }
}

fn selector_is_empty(sel: &Value) -> bool {
    map_of(sel, "matchLabels").is_none_or(|m| m.is_empty()) && list(sel, "matchExpressions").is_empty()
}

/// The template labels must be selected (unless the selector selects everything).
fn check_template_labels(sel: &Selector, template: &Value, p: &Path, errs: &mut Errs) {
    let labels = get(at(template, "metadata"), "labels");
    if !sel.is_empty() && !sel.matches(labels.and_then(Value::as_object)) {
        errs.push(invalid(
            &p.child("metadata").child("labels"),
            Bad::Raw(go_string_map(labels)),
            MISMATCH,
        ));
    }
}

/// `ValidatePodTemplateSpecForReplicaSet` (Deployments and ReplicaSets).
fn template_for_replica_set(spec: &Value, sel: &Selector, p: &Path, errs: &mut Errs) {
    let template = at(spec, "template");
    check_template_labels(sel, template, p, errs);
    pod::pod_template(template, p, errs);
    restart_always_and_no_deadline(template, p, "ReplicaSet", errs);
}

/// Workload pods restart always and have no active deadline.
fn restart_always_and_no_deadline(template: &Value, p: &Path, kind: &str, errs: &mut Errs) {
    let tspec = at(template, "spec");
    let restart = or_default(tspec, "restartPolicy", "Always");
    if restart != "Always" {
        errs.push(not_supported(
            &p.child("spec").child("restartPolicy"),
            restart,
            &["Always"],
        ));
    }
    if has(tspec, "activeDeadlineSeconds") {
        errs.push(forbidden(
            &p.child("spec").child("activeDeadlineSeconds"),
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
}

/// `ValidateDeploymentStrategy`.
fn strategy(s: &Value, p: &Path, errs: &mut Errs) {
    let ru = get(s, "rollingUpdate");
    match or_default(s, "type", "RollingUpdate") {
        "Recreate" => {
            if ru.is_some() {
                errs.push(forbidden(
                    &p.child("rollingUpdate"),
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        "RollingUpdate" => match ru {
            None => errs.push(required(
                &p.child("rollingUpdate"),
                "this should be defaulted and never be nil",
            )),
            Some(ru) => {
                let rp = p.child("rollingUpdate");
                let (unavailable, surge) = (at(ru, "maxUnavailable"), at(ru, "maxSurge"));
                positive_int_or_percent(unavailable, &rp.child("maxUnavailable"), errs);
                positive_int_or_percent(surge, &rp.child("maxSurge"), errs);
                if int_or_percent_value(unavailable) == 0 && int_or_percent_value(surge) == 0 {
                    errs.push(invalid(
                        &rp.child("maxUnavailable"),
                        Bad::Raw(go_int_or_string(unavailable)),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
                not_more_than_100_percent(unavailable, &rp.child("maxUnavailable"), errs);
            }
        },
        other => {
            let value = format!(
                "apps.DeploymentStrategy{{Type:{}, RollingUpdate:{}}}",
                go_quote(other),
                go_pointer("apps.RollingUpdateDeployment", ru.is_some())
            );
            errs.push(not_supported(p, Bad::Raw(value), &["Recreate", "RollingUpdate"]));
        }
    }
}

/// `ValidatePositiveIntOrPercent`.
fn positive_int_or_percent(v: &Value, p: &Path, errs: &mut Errs) {
    match v {
        Value::String(s) => {
            for msg in percent(s) {
                errs.push(invalid(p, Bad::Raw(go_int_or_string(v)), &msg));
            }
        }
        other => non_negative(Some(other.as_i64().unwrap_or(0)), p, errs),
    }
}

/// `getIntOrPercentValue`: a percentage's number, an int's value (an unparsable string counts as its
/// integer value, usually 0).
fn int_or_percent_value(v: &Value) -> i64 {
    match v {
        Value::String(s) => match s.strip_suffix('%') {
            Some(n) if percent(s).is_empty() => n.parse().unwrap_or(0),
            _ => s.parse().unwrap_or(0),
        },
        other => other.as_i64().unwrap_or(0),
    }
}

fn not_more_than_100_percent(v: &Value, p: &Path, errs: &mut Errs) {
    if let Value::String(s) = v
        && percent(s).is_empty()
        && int_or_percent_value(v) > 100
    {
        errs.push(invalid(
            p,
            Bad::Raw(go_int_or_string(v)),
            "must not be greater than 100%",
        ));
    }
}

/// `ValidateStatefulSet`.
pub fn stateful_set(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Label, mode, errs);
    let spec = at(obj, "spec");
    let p = Path::new("spec");
    match or_default(spec, "podManagementPolicy", "OrderedReady") {
        "OrderedReady" | "Parallel" => {}
        other => errs.push(invalid(
            &p.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let us = at(spec, "updateStrategy");
    let up = p.child("updateStrategy");
    let ru = get(us, "rollingUpdate");
    let go_ru = |ru: &Value| {
        format!(
            "apps.RollingUpdateStatefulSetStrategy{{Partition:{}, MaxUnavailable:{}}}",
            int_of(ru, "partition").unwrap_or(0),
            go_pointer("intstr.IntOrString", has(ru, "maxUnavailable"))
        )
    };
    match or_default(us, "type", "RollingUpdate") {
        "OnDelete" => {
            if let Some(ru) = ru {
                errs.push(invalid(
                    &up.child("rollingUpdate"),
                    Bad::Raw(go_ru(ru)),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = ru {
                let rp = up.child("rollingUpdate");
                non_negative(int_of(ru, "partition"), &rp.child("partition"), errs);
                if let Some(mu) = get(ru, "maxUnavailable") {
                    let mp = rp.child("maxUnavailable");
                    positive_int_or_percent(mu, &mp, errs);
                    if int_or_percent_value(mu) == 0 {
                        errs.push(invalid(&mp, Bad::Raw(go_int_or_string(mu)), "cannot be 0"));
                    }
                    not_more_than_100_percent(mu, &mp, errs);
                }
            }
        }
        other => errs.push(invalid(
            &up,
            Bad::Raw(format!(
                "apps.StatefulSetUpdateStrategy{{Type:{}, RollingUpdate:{}}}",
                go_quote(other),
                go_pointer("apps.RollingUpdateStatefulSetStrategy", ru.is_some())
            )),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = get(spec, "persistentVolumeClaimRetentionPolicy") {
        for field in ["whenDeleted", "whenScaled"] {
            let v = or_default(policy, field, "Retain");
            if !["Retain", "Delete"].contains(&v) {
                errs.push(not_supported(
                    &p.child("persistentVolumeClaimRetentionPolicy").child(field),
                    v,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    non_negative(int_of(spec, "replicas"), &p.child("replicas"), errs);
    non_negative(int_of(spec, "minReadySeconds"), &p.child("minReadySeconds"), errs);
    if let Some(ordinals) = get(spec, "ordinals") {
        non_negative(int_of(ordinals, "start"), &p.child("ordinals.start"), errs);
    }
    let sp = p.child("selector");
    match get(spec, "selector") {
        None => errs.push(required(&sp, "")),
        Some(sel) => {
            meta::label_selector(sel, &sp, errs);
            if selector_is_empty(sel) {
                errs.push(invalid(
                    &sp,
                    Bad::Raw(go_label_selector(sel)),
                    "empty selector is invalid for statefulset",
                ));
            }
        }
    }
    let template = at(spec, "template");
    let tp = p.child("template");
    match Selector::parse(get(spec, "selector")) {
        Err(()) => errs.push(invalid(
            &sp,
            Bad::Raw(go_label_selector(at(spec, "selector"))),
            "",
        )),
        Ok(sel) => {
            // Upstream checks only the template's labels and annotations here, not its pod spec.
            check_template_labels(&sel, template, &tp, errs);
            let tmeta = at(template, "metadata");
            meta::labels(get(tmeta, "labels"), &tp.child("labels"), errs);
            meta::annotations(get(tmeta, "annotations"), &tp.child("annotations"), errs);
        }
    }
    restart_always_and_no_deadline(template, &tp, "StatefulSet", errs);
}

/// `ValidateDaemonSet`.
pub fn daemon_set(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    let p = Path::new("spec");
    let sp = p.child("selector");
    let selector = get(spec, "selector");
    if let Some(sel) = selector {
        meta::label_selector(sel, &sp, errs);
    }
    let template = at(spec, "template");
    let tp = p.child("template");
    if let Ok(sel) = Selector::parse(selector) {
        let labels = get(at(template, "metadata"), "labels");
        if !sel.matches(labels.and_then(Value::as_object)) {
            errs.push(invalid(
                &tp.child("metadata").child("labels"),
                Bad::Raw(go_string_map(labels)),
                MISMATCH,
            ));
        }
    }
    if let Some(sel) = selector.filter(|s| selector_is_empty(s)) {
        errs.push(invalid(
            &sp,
            Bad::Raw(go_label_selector(sel)),
            "empty selector is invalid for daemonset",
        ));
    }
    pod::pod_template(template, &tp, errs);
    restart_always_and_no_deadline(template, &tp, "DaemonSet", errs);
    non_negative(int_of(spec, "minReadySeconds"), &p.child("minReadySeconds"), errs);
    let us = at(spec, "updateStrategy");
    let up = p.child("updateStrategy");
    let ru = get(us, "rollingUpdate");
    match or_default(us, "type", "RollingUpdate") {
        "OnDelete" => {}
        "RollingUpdate" => match ru {
            None => errs.push(required(&up.child("rollingUpdate"), "")),
            Some(ru) => {
                let rp = up.child("rollingUpdate");
                let (unavailable, surge) = (at(ru, "maxUnavailable"), at(ru, "maxSurge"));
                positive_int_or_percent(unavailable, &rp.child("maxUnavailable"), errs);
                positive_int_or_percent(surge, &rp.child("maxSurge"), errs);
                not_more_than_100_percent(unavailable, &rp.child("maxUnavailable"), errs);
                not_more_than_100_percent(surge, &rp.child("maxSurge"), errs);
                match (
                    int_or_percent_value(unavailable) != 0,
                    int_or_percent_value(surge) != 0,
                ) {
                    (true, true) => errs.push(invalid(
                        &rp.child("maxSurge"),
                        Bad::Raw(go_int_or_string(surge)),
                        "may not be set when maxUnavailable is non-zero",
                    )),
                    (false, false) => {
                        errs.push(required(
                            &rp.child("maxUnavailable"),
                            "cannot be 0 when maxSurge is 0",
                        ));
                    }
                    _ => {}
                }
            }
        },
        other => errs.push(not_supported(
            &up,
            Bad::Raw(format!(
                "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:{}}}",
                go_quote(other),
                go_pointer("apps.RollingUpdateDaemonSet", ru.is_some())
            )),
            &["RollingUpdate", "OnDelete"],
        )),
    }
    non_negative(
        int_of(spec, "revisionHistoryLimit"),
        &p.child("revisionHistoryLimit"),
        errs,
    );
}

/// `ValidateControllerRevision`.
pub fn controller_revision(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    if !has(obj, "data") {
        errs.push(required(&Path::new("data"), "data is mandatory"));
    }
    non_negative(int_of(obj, "revision"), &Path::new("revision"), errs);
}

/// The update rules of the apps kinds: Deployment, ReplicaSet and DaemonSet selectors are immutable
/// in `apps/v1`; a StatefulSet may change only some of its spec; a ControllerRevision's data is fixed.
pub fn update(kind: &str, new: &Value, old: &Value, errs: &mut Errs) {
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    match kind {
        "Deployment" | "ReplicaSet" | "DaemonSet" => {
            let (n, o) = (at(ns, "selector"), at(os, "selector"));
            if !semantic_eq(n, o) {
                errs.push(invalid(
                    &Path::new("spec").child("selector"),
                    Bad::Raw(go_label_selector(n)),
                    IMMUTABLE_MSG,
                ));
            }
        }
        "StatefulSet" => {
            let strip = |s: &Value| {
                let mut s = s.clone();
                if let Some(m) = s.as_object_mut() {
                    for f in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        m.remove(f);
                    }
                }
                s
            };
            if !semantic_eq(&strip(ns), &strip(os)) {
                errs.push(forbidden(
                    &Path::new("spec"),
                    "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
                ));
            }
        }
        "ControllerRevision" => {
            let (n, o) = (at(new, "data"), at(old, "data"));
            if !semantic_eq(n, o) {
                errs.push(invalid(
                    &Path::new("data"),
                    Bad::Raw(format!("runtime.RawExtension{{Raw:{}}}", n)),
                    IMMUTABLE_MSG,
                ));
            }
        }
        _ => {}
    }
}
