//! ControllerRevisions, the history DaemonSets and StatefulSets keep of their pod templates, as
//! upstream's pkg/controller/history shapes them: each revision's `data` is the patch that puts its
//! template back (`{"spec":{"template":{…,"$patch":"replace"}}}`, what `kubectl rollout undo`
//! applies to the owner), its `revision` orders them, and its `controller-revision-hash` label is
//! the hash its name ends with.

use k8s_openapi::api::{apps::v1::ControllerRevision, core::v1::PodTemplateSpec};
use serde_json::{Value, json};

/// The label holding a revision's hash (on DaemonSet pods too; StatefulSet pods hold the
/// revision's whole name in it).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// `getPatch`: the patch that restores `template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or(Value::Null);
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({ "spec": { "template": template } })
}

/// The template a revision holds (`ApplyRevision`, for the template: the patch replaces it whole).
pub fn template_of(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// Whether `revision` holds `template` (upstream compares the patches).
pub fn holds(revision: &ControllerRevision, template: &PodTemplateSpec) -> bool {
    revision
        .data
        .as_ref()
        .is_some_and(|d| d.0 == template_patch(template))
}

/// The number a new revision gets: one more than any there is.
pub fn next_revision<'a>(revisions: impl IntoIterator<Item = &'a ControllerRevision>) -> i64 {
    revisions.into_iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_gives_back_the_template_it_holds() {
        let template: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": { "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c", "image": "busybox:1.36" }] }
        }))
        .unwrap();
        let revision = ControllerRevision {
            data: Some(k8s_openapi::apimachinery::pkg::runtime::RawExtension(
                template_patch(&template),
            )),
            revision: 1,
            ..Default::default()
        };
        assert_eq!(
            revision.data.as_ref().unwrap().0["spec"]["template"]["$patch"],
            "replace"
        );
        assert!(holds(&revision, &template));
        assert_eq!(template_of(&revision), Some(template));
        assert_eq!(next_revision([&revision]), 2);
    }
}
