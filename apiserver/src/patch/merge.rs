//! JSON merge patch (RFC 7396, `application/merge-patch+json`): objects merge key by key, `null`
//! deletes a key, anything else (lists included) replaces. kubectl uses it for custom resources,
//! and `kubectl patch --type merge` for anything.
//!
//! The merge is the `json-patch` crate's `merge` (version 4, the one kube-core uses); upstream's
//! counterpart is `jsonpatch.MergePatch` in apiserver `handlers/patch.go`, which likewise takes
//! only an object as the patch.

use serde_json::Value;

use super::{PatchError, decode_object};

/// Applies an RFC 7396 merge patch body to `target`. The body must be a JSON object (a bare value
/// would replace the whole object, which no client means).
pub fn apply_merge_patch(target: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch = Value::Object(decode_object(patch, "a merge patch")?);
    let mut doc = target.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merges_objects_deletes_nulls_and_replaces_lists() {
        let target = json!({
            "metadata": {"labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}},
        });
        let patch = json!({
            "metadata": {"labels": {"tier": null, "env": "prod"}, "finalizers": ["c"]},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "b", "image": "x"}]}}},
        });
        let patched = apply_merge_patch(&target, patch.to_string().as_bytes()).unwrap();
        assert_eq!(
            patched,
            json!({
                "metadata": {"labels": {"app": "web", "env": "prod"}, "finalizers": ["c"]},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "b", "image": "x"}]}}},
            })
        );
    }

    #[test]
    fn the_patch_must_be_an_object() {
        for body in [&b"[]"[..], b"3", b"null", b"{"] {
            let err = apply_merge_patch(&json!({"a": 1}), body).unwrap_err();
            assert_eq!(err.code(), 400, "{err}");
        }
        let err = apply_merge_patch(&json!({}), b"[1]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error decoding patch: a merge patch must be a JSON object, not an array"
        );
    }
}
