//! The bridge from client-side to server-side apply, for the manager `kubectl` only.
//!
//! Mirrors `apimachinery/pkg/util/managedfields/internal/lastappliedmanager.go` (a first
//! `kubectl apply --server-side` on an object managed by client-side apply may take over the fields
//! recorded in the `last-applied-configuration` annotation that still hold their recorded values,
//! without conflicts) and `lastappliedupdater.go` (a server-side apply by `kubectl` keeps an
//! existing annotation in step with what it applied, so a later client-side apply still works).

use serde_json::Value;

use super::fieldpath::{FieldSet, go_json};
use super::typed::{compare, field_set, validate};
use super::typeinfo::Ty;

/// kubectl's client-side apply annotation.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager whose applies the bridge applies to (other managers opt out by their name).
pub(crate) const KUBECTL: &str = "kubectl";

fn annotation(object: &Value) -> Option<&str> {
    object
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields a conflicting apply by `kubectl` may take over: those of the live object's
/// last-applied configuration whose values the live object still has. `None` when there is no
/// usable annotation (absent, not JSON, another API version, bad list keys).
pub(crate) fn allowed_conflicts(live: &Value, api_version: &str, ty: &Ty) -> Option<FieldSet> {
    let last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(api_version) {
        return None;
    }
    validate(&last, ty, false).ok()?;
    let cmp = compare(&last, live, ty).ok()?;
    Some(
        field_set(&last, ty)
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// If `object` carries a last-applied annotation, rewrites it to `config` (without the
/// annotation), encoded as Go's `encoding/json` does, with its trailing newline.
pub(crate) fn sync_annotation(object: &mut Value, config: &Value) {
    if annotation(object).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let encoded = format!("{}\n", go_json(&applied));
    if let Some(annotations) = object
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
    {
        annotations.insert(LAST_APPLIED_ANNOTATION.to_owned(), Value::String(encoded));
    }
}
