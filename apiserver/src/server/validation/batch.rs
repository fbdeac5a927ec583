//! Jobs, as upstream's `pkg/apis/batch/validation/validation.go` checks them (`ValidateJob`,
//! `ValidateJobSpec`, the generated-selector check, and the update rules of `ValidateJobUpdate`
//! that matter here: the selector, completions of a NonIndexed Job, and the pod template of a Job
//! that is not suspended cannot change). Pod failure and success policies and the per-index
//! backoff are checked only for their basic shape.

use serde_json::Value;

use super::field::{
    Bad, Errs, Path, at, get, go_label_selector, go_quote, go_string_map, int_of, invalid, map_of,
    not_supported, or_default, required, semantic_eq, str_of,
};
use super::meta::{self, IMMUTABLE_MSG, Mode, Scope, Selector, non_negative};
use super::names::NameFn;
use super::pod;

const MISMATCH: &str = "`selector` does not match template `labels`";
/// The labels upstream's Job strategy generates (`batch.kubernetes.io/…` and the legacy ones).
const CONTROLLER_UID_LABELS: [&str; 2] = ["controller-uid", "batch.kubernetes.io/controller-uid"];
const JOB_NAME_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];

/// `ValidateJob`.
pub fn job(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    if spec.get("manualSelector") != Some(&Value::Bool(true)) {
        generated_selector(obj, errs);
    }
    job_spec(spec, &Path::new("spec"), errs);
}

/// `validateGeneratedSelector`: a selector the server generated must still select this Job's uid
/// and its template must carry the uid and the Job's name.
fn generated_selector(obj: &Value, errs: &mut Errs) {
    let uid = str_of(at(obj, "metadata"), "uid").unwrap_or("");
    let name = str_of(at(obj, "metadata"), "name").unwrap_or("");
    let spec = at(obj, "spec");
    let labels = at(at(at(spec, "template"), "metadata"), "labels");
    let lp = Path::new("spec")
        .child("template")
        .child("metadata")
        .child("labels");
    for key in CONTROLLER_UID_LABELS {
        if labels.get(key).and_then(Value::as_str) != Some(uid) {
            errs.push(invalid(
                &lp,
                Bad::Raw(go_string_map(Some(labels))),
                &format!("`selector` not auto-generated: must be {key}={uid}"),
            ));
        }
    }
    for key in JOB_NAME_LABELS {
        if let Some(v) = labels.get(key).and_then(Value::as_str)
            && v != name
        {
            errs.push(invalid(
                &lp,
                Bad::Raw(go_string_map(Some(labels))),
                &format!("`selector` not auto-generated: must be {key}={name}"),
            ));
        }
    }
    let selected = map_of(at(spec, "selector"), "matchLabels")
        .and_then(|m| m.get("batch.kubernetes.io/controller-uid"))
        .and_then(Value::as_str);
    if selected != Some(uid) {
        errs.push(invalid(
            &Path::new("spec").child("selector"),
            Bad::Raw(go_label_selector(at(spec, "selector"))),
            "`selector` not auto-generated",
        ));
    }
}

/// `ValidateJobSpec`.
fn job_spec(spec: &Value, p: &Path, errs: &mut Errs) {
    for field in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        non_negative(int_of(spec, field), &p.child(field), errs);
    }
    let mode = or_default(spec, "completionMode", "NonIndexed");
    match mode {
        "NonIndexed" => {
            for field in ["backoffLimitPerIndex", "maxFailedIndexes"] {
                if let Some(v) = int_of(spec, field) {
                    errs.push(invalid(&p.child(field), v, "requires indexed completion mode"));
                }
            }
        }
        "Indexed" => {
            if get(spec, "completions").is_none() {
                errs.push(required(
                    &p.child("completions"),
                    "when completion mode is Indexed",
                ));
            }
        }
        other => errs.push(not_supported(
            &p.child("completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        )),
    }
    if let Some(policy) = str_of(spec, "podReplacementPolicy") {
        let allowed: &[&str] = if get(spec, "podFailurePolicy").is_some() {
            &["Failed"]
        } else {
            &["Failed", "TerminatingOrFailed"]
        };
        if !allowed.contains(&policy) {
            errs.push(not_supported(&p.child("podReplacementPolicy"), policy, allowed));
        }
    }
    let template = at(spec, "template");
    let tp = p.child("template");
    pod::pod_template(template, &tp, errs);
    let rp = tp.child("spec").child("restartPolicy");
    match or_default(at(template, "spec"), "restartPolicy", "") {
        "" | "Always" => errs.push(required(
            &rp,
            &format!("valid values: {}, {}", go_quote("OnFailure"), go_quote("Never")),
        )),
        "OnFailure" if get(spec, "podFailurePolicy").is_some() => errs.push(invalid(
            &rp,
            "OnFailure",
            &format!(
                "only {} is supported when podFailurePolicy is specified",
                go_quote("Never")
            ),
        )),
        "OnFailure" | "Never" => {}
        other => errs.push(not_supported(&rp, other, &["OnFailure", "Never"])),
    }
    let sp = p.child("selector");
    match get(spec, "selector") {
        None => errs.push(required(&sp, "")),
        Some(sel) => meta::label_selector(sel, &sp, errs),
    }
    if let Some(sel) = get(spec, "selector")
        && let Ok(sel) = Selector::parse(Some(sel))
    {
        let labels = get(at(template, "metadata"), "labels");
        if !sel.matches(labels.and_then(Value::as_object)) {
            errs.push(invalid(
                &tp.child("metadata").child("labels"),
                Bad::Raw(go_string_map(labels)),
                MISMATCH,
            ));
        }
    }
}

/// The immutable parts of `ValidateJobSpecUpdate`.
pub fn update(new: &Value, old: &Value, errs: &mut Errs) {
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    let p = Path::new("spec");
    if !semantic_eq(at(ns, "selector"), at(os, "selector")) {
        errs.push(invalid(
            &p.child("selector"),
            Bad::Raw(go_label_selector(at(ns, "selector"))),
            IMMUTABLE_MSG,
        ));
    }
    if or_default(ns, "completionMode", "NonIndexed") == "NonIndexed"
        && int_of(ns, "completions") != int_of(os, "completions")
        && let Some(c) = int_of(ns, "completions")
    {
        errs.push(invalid(&p.child("completions"), c, IMMUTABLE_MSG));
    }
    if or_default(ns, "completionMode", "NonIndexed") != or_default(os, "completionMode", "NonIndexed") {
        errs.push(invalid(
            &p.child("completionMode"),
            or_default(ns, "completionMode", "NonIndexed"),
            IMMUTABLE_MSG,
        ));
    }
    // The template may change only while the Job is suspended (upstream allows scheduling
    // directives then; we allow the whole template, a superset).
    let suspended = os.get("suspend") == Some(&Value::Bool(true));
    if !suspended && !semantic_eq(at(ns, "template"), at(os, "template")) {
        errs.push(invalid(
            &p.child("template"),
            Bad::Raw("core.PodTemplateSpec{...}".into()),
            IMMUTABLE_MSG,
        ));
    }
}
