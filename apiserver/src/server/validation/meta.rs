//! `metadata`, labels, annotations and label selectors, as apimachinery's
//! `pkg/api/validation/objectmeta.go` and `pkg/apis/meta/v1/validation/validation.go` check them (plus
//! core's finalizer-name rule from `pkg/apis/core/validation/validation.go`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::field::{
    Bad, Errs, Path, at, forbidden, get, go_pointer, go_quote, go_string_slice, has, int_of, invalid, list,
    map_of, required, scalar_text, str_of, text, too_long,
};
use super::names::{NameFn, label_value, qualified_name};

/// Largest total size (keys plus values) of an object's annotations.
pub const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// `must be greater than or equal to 0` (`IsNegativeErrorMsg`).
pub const NEGATIVE_MSG: &str = "must be greater than or equal to 0";

/// `field is immutable`.
pub const IMMUTABLE_MSG: &str = "field is immutable";

/// Whether a kind lives in a namespace (decides the `metadata.namespace` rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// `metadata.namespace` is required.
    Namespaced,
    /// `metadata.namespace` must be empty.
    Cluster,
    /// Not checked (a kind this module does not know).
    Unknown,
}

/// Create validates names; an update does not revalidate them (upstream's `ValidateObjectMetaUpdate`
/// checks only that they did not change, so objects named under older rules stay updatable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A create.
    Create,
    /// An update.
    Update,
}

/// `ValidateNonnegativeField`.
pub fn non_negative(v: Option<i64>, path: &Path, errs: &mut Errs) {
    if let Some(v) = v.filter(|v| *v < 0) {
        errs.push(invalid(path, v, NEGATIVE_MSG));
    }
}

/// `ValidateObjectMeta` (apimachinery's, plus core's finalizer-name rule).
pub fn object_meta(obj: &Value, scope: Scope, name_fn: NameFn, mode: Mode, errs: &mut Errs) {
    let meta = at(obj, "metadata");
    let path = Path::new("metadata");
    let generate_name = text(meta, "generateName");
    let name = text(meta, "name");
    if mode == Mode::Create && !generate_name.is_empty() {
        for msg in name_fn.check(&generate_name, true) {
            errs.push(invalid(&path.child("generateName"), generate_name.as_str(), &msg));
        }
    }
    if name.is_empty() {
        errs.push(required(&path.child("name"), "name or generateName is required"));
    } else if mode == Mode::Create {
        for msg in name_fn.check(&name, false) {
            errs.push(invalid(&path.child("name"), name.as_str(), &msg));
        }
    }
    let namespace = text(meta, "namespace");
    match scope {
        Scope::Namespaced if namespace.is_empty() => errs.push(required(&path.child("namespace"), "")),
        Scope::Namespaced => {
            for msg in NameFn::Label.check(&namespace, false) {
                errs.push(invalid(&path.child("namespace"), namespace.as_str(), &msg));
            }
        }
        Scope::Cluster if !namespace.is_empty() => {
            errs.push(forbidden(&path.child("namespace"), "not allowed on this type"));
        }
        Scope::Cluster | Scope::Unknown => {}
    }
    non_negative(int_of(meta, "generation"), &path.child("generation"), errs);
    labels(get(meta, "labels"), &path.child("labels"), errs);
    annotations(get(meta, "annotations"), &path.child("annotations"), errs);
    owner_references(
        list(meta, "ownerReferences"),
        &path.child("ownerReferences"),
        errs,
    );
    finalizers(list(meta, "finalizers"), &path.child("finalizers"), errs);
    for (i, f) in list(meta, "finalizers").iter().enumerate() {
        kube_finalizer_name(&scalar_text(f), &path.child("finalizers").index(i), errs);
    }
}

/// `ValidateObjectMetaUpdate`'s own checks (the new object's metadata is validated as on create).
pub fn object_meta_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (new, old) = (at(new, "metadata"), at(old, "metadata"));
    let path = Path::new("metadata");
    if has_deletion_timestamp(old) {
        let old_f: BTreeSet<String> = list(old, "finalizers").iter().map(scalar_text).collect();
        let extra: BTreeSet<String> = list(new, "finalizers")
            .iter()
            .map(scalar_text)
            .filter(|f| !old_f.contains(f))
            .collect();
        if !extra.is_empty() {
            let extra = Value::Array(extra.into_iter().map(Value::String).collect());
            errs.push(forbidden(
                &path.child("finalizers"),
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(Some(&extra))
                ),
            ));
        }
    }
    for field in ["name", "namespace"] {
        let (n, o) = (text(new, field), text(old, field));
        if n != o {
            errs.push(invalid(&path.child(field), n.as_str(), IMMUTABLE_MSG));
        }
    }
    // A uid the client did not send is the server's to fill; one it sent must not differ.
    if let (Some(n), Some(o)) = (str_of(new, "uid"), str_of(old, "uid"))
        && n != o
    {
        errs.push(invalid(&path.child("uid"), n, IMMUTABLE_MSG));
    }
}

fn has_deletion_timestamp(meta: &Value) -> bool {
    str_of(meta, "deletionTimestamp").is_some_and(|t| !t.is_empty())
}

/// `ValidateLabels`: keys are qualified names, values label values; errors name the map, not the key.
pub fn labels(labels: Option<&Value>, path: &Path, errs: &mut Errs) {
    let Some(map) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in map {
        label_name(k, path, errs);
        let v = scalar_text(v);
        for msg in label_value(&v) {
            errs.push(invalid(path, v.as_str(), &msg));
        }
    }
}

/// `ValidateLabelName`.
pub fn label_name(name: &str, path: &Path, errs: &mut Errs) {
    for msg in qualified_name(name) {
        errs.push(invalid(path, name, &msg));
    }
}

/// `ValidateAnnotations`: keys are qualified names (case-insensitively) and the total is at most 256 KiB.
pub fn annotations(annotations: Option<&Value>, path: &Path, errs: &mut Errs) {
    let Some(map) = annotations.and_then(Value::as_object) else {
        return;
    };
    let mut total = 0usize;
    for (k, v) in map {
        for msg in qualified_name(&k.to_lowercase()) {
            errs.push(invalid(path, k.as_str(), &msg));
        }
        total += k.len() + scalar_text(v).len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE));
    }
}

fn owner_references(refs: &[Value], path: &Path, errs: &mut Errs) {
    let mut first_controller: Option<String> = None;
    for r in refs {
        let api_version = text(r, "apiVersion");
        let kind = text(r, "kind");
        // schema.FromAPIVersionAndKind: an unparsable apiVersion leaves the version empty.
        let (group, version) = match api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => ("", *v),
            [g, v] => (*g, *v),
            _ => ("", ""),
        };
        if version.is_empty() {
            errs.push(invalid(
                &path.child("apiVersion"),
                api_version.as_str(),
                "version must not be empty",
            ));
        }
        if kind.is_empty() {
            errs.push(invalid(&path.child("kind"), kind.as_str(), "must not be empty"));
        }
        if text(r, "name").is_empty() {
            errs.push(invalid(&path.child("name"), "", "must not be empty"));
        }
        if text(r, "uid").is_empty() {
            errs.push(invalid(&path.child("uid"), "", "must not be empty"));
        }
        if group.is_empty() && version == "v1" && kind == "Event" {
            errs.push(invalid(
                path,
                Bad::Raw(go_owner_ref(r)),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{}", text(r, "name"));
            match &first_controller {
                Some(first) => errs.push(invalid(
                    path,
                    Bad::Raw(format!(
                        "[]v1.OwnerReference{{{}}}",
                        refs.iter().map(go_owner_ref).collect::<Vec<_>>().join(", ")
                    )),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                    ),
                )),
                None => first_controller = Some(current),
            }
        }
    }
}

/// `%#v` of a `metav1.OwnerReference`.
fn go_owner_ref(r: &Value) -> String {
    format!(
        "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
        go_quote(&text(r, "apiVersion")),
        go_quote(&text(r, "kind")),
        go_quote(&text(r, "name")),
        go_quote(&text(r, "uid")),
        go_pointer("bool", has(r, "controller")),
        go_pointer("bool", has(r, "blockOwnerDeletion")),
    )
}

/// `ValidateFinalizers`: qualified names, and not both `orphan` and `foregroundDeletion`.
pub fn finalizers(finalizers: &[Value], path: &Path, errs: &mut Errs) {
    let names: Vec<String> = finalizers.iter().map(scalar_text).collect();
    for f in &names {
        for msg in qualified_name(f) {
            errs.push(invalid(path, f.as_str(), &msg));
        }
    }
    if names.iter().any(|f| f == "orphan") && names.iter().any(|f| f == "foregroundDeletion") {
        errs.push(invalid(
            path,
            Bad::Raw(go_string_slice(Some(&Value::Array(finalizers.to_vec())))),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
}

/// Core's `validateKubeFinalizerName`: a name without `/` must be a standard one.
pub fn kube_finalizer_name(name: &str, path: &Path, errs: &mut Errs) {
    if !name.contains('/') && !matches!(name, "kubernetes" | "orphan" | "foregroundDeletion") {
        errs.push(invalid(
            path,
            name,
            "name is neither a standard finalizer name nor is it fully qualified",
        ));
    }
}

/// `ValidateLabelSelector` (values of `In`/`NotIn` must be label values too).
pub fn label_selector(sel: &Value, path: &Path, errs: &mut Errs) {
    labels(get(sel, "matchLabels"), &path.child("matchLabels"), errs);
    for (i, req) in list(sel, "matchExpressions").iter().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = list(req, "values");
        match text(req, "operator").as_str() {
            "In" | "NotIn" if values.is_empty() => {
                errs.push(required(
                    &p.child("values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
            "In" | "NotIn" => {}
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(forbidden(
                &p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "Exists" | "DoesNotExist" => {}
            other => errs.push(invalid(
                &p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        label_name(&text(req, "key"), &p.child("key"), errs);
        for (j, v) in values.iter().enumerate() {
            let v = scalar_text(v);
            for msg in label_value(&v) {
                errs.push(invalid(&p.child("values").index(j), v.as_str(), &msg));
            }
        }
    }
}

/// A parsed label selector (`metav1.LabelSelectorAsSelector`).
#[derive(Debug)]
pub enum Selector {
    /// An absent selector: matches nothing.
    Nothing,
    /// Requirements that must all hold (none: matches everything).
    All(Vec<Requirement>),
}

/// One requirement of a selector.
#[derive(Debug)]
pub struct Requirement {
    key: String,
    op: Op,
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    /// `LabelSelectorAsSelector`: `Err` where upstream fails to build the selector.
    pub fn parse(sel: Option<&Value>) -> Result<Selector, ()> {
        let Some(sel) = sel.filter(|s| !s.is_null()) else {
            return Ok(Selector::Nothing);
        };
        let mut reqs = Vec::new();
        let valid_key = |k: &str| qualified_name(k).is_empty();
        let valid_value = |v: &str| label_value(v).is_empty();
        if let Some(m) = map_of(sel, "matchLabels") {
            for (k, v) in m {
                let v = scalar_text(v);
                if !valid_key(k) || !valid_value(&v) {
                    return Err(());
                }
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::In,
                    values: vec![v],
                });
            }
        }
        for req in list(sel, "matchExpressions") {
            let key = text(req, "key");
            let values: Vec<String> = list(req, "values").iter().map(scalar_text).collect();
            let op = match text(req, "operator").as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                _ => return Err(()),
            };
            let values_ok = match op {
                Op::In | Op::NotIn => !values.is_empty(),
                Op::Exists | Op::DoesNotExist => values.is_empty(),
            };
            if !valid_key(&key) || !values_ok || !values.iter().all(|v| valid_value(v)) {
                return Err(());
            }
            reqs.push(Requirement { key, op, values });
        }
        Ok(Selector::All(reqs))
    }

    /// Whether the selector selects everything (`labels.Selector.Empty()`).
    pub fn is_empty(&self) -> bool {
        matches!(self, Selector::All(reqs) if reqs.is_empty())
    }

    /// Whether `labels` (a label map, or absent) is selected.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        let Selector::All(reqs) = self else { return false };
        let get = |k: &str| labels.and_then(|l| l.get(k)).map(scalar_text);
        reqs.iter().all(|r| match r.op {
            Op::In => get(&r.key).is_some_and(|v| r.values.contains(&v)),
            Op::NotIn => get(&r.key).is_none_or(|v| !r.values.contains(&v)),
            Op::Exists => get(&r.key).is_some(),
            Op::DoesNotExist => get(&r.key).is_none(),
        })
    }
}
