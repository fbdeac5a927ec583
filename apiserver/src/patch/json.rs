//! JSON patch (RFC 6902, `application/json-patch+json`): a list of `add`, `remove`, `replace`,
//! `move`, `copy` and `test` operations applied in order, all or nothing.
//!
//! The operations themselves are the `json-patch` crate's (version 4, the one kube-core uses).
//! This file owns what upstream's `jsonPatcher.applyJSPatch` (apiserver `handlers/patch.go`) adds
//! around evanphx/json-patch: the operation limit, a 400 for a body that does not decode, and a 422
//! naming the operation that did not apply.

use json_patch::{Patch, PatchOperation};
use serde_json::Value;

use super::{PatchError, decode};

/// Most operations one JSON patch may carry; upstream's default `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// Applies an RFC 6902 patch body to `target`. A failed `test` or a path that does not resolve is a
/// [`PatchError::JsonPatchFailed`] naming the operation; `target` is never modified.
pub fn apply_json_patch(target: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let ops = decode_operations(patch)?;
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            got: ops.len(),
        });
    }
    // We patch a copy and drop it on failure, so the crate's undo log (whose failure path panics)
    // is not needed: `patch_unsafe` is the all-or-nothing `patch` without it.
    let mut doc = target.clone();
    json_patch::patch_unsafe(&mut doc, &ops).map_err(|e| operation_failed(&ops, &e))?;
    Ok(doc)
}

/// Decodes the body as a list of operations (400 when it is not one).
fn decode_operations(patch: &[u8]) -> Result<Vec<PatchOperation>, PatchError> {
    let value = decode(patch)?;
    // Checked first so the common mistake (sending an object) gets a plain message.
    if !value.is_array() {
        return Err(PatchError::Decode(
            "a JSON patch must be a JSON array of operations".into(),
        ));
    }
    serde_json::from_value::<Patch>(value)
        .map(|p| p.0)
        .map_err(|e| PatchError::Decode(e.to_string()))
}

/// The 422 for an operation that did not apply.
fn operation_failed(ops: &[PatchOperation], err: &json_patch::PatchError) -> PatchError {
    let op = ops.get(err.operation);
    let detail = match (op, &err.kind) {
        (Some(PatchOperation::Test(test)), json_patch::PatchErrorKind::TestFailed) => {
            format!("test failed: value is not {}", test.value)
        }
        (Some(PatchOperation::Move(m)), json_patch::PatchErrorKind::InvalidFromPointer) => {
            format!("\"from\" path {:?} does not exist", m.from.to_string())
        }
        (Some(PatchOperation::Copy(c)), json_patch::PatchErrorKind::InvalidFromPointer) => {
            format!("\"from\" path {:?} does not exist", c.from.to_string())
        }
        (_, json_patch::PatchErrorKind::InvalidPointer) => "the path does not exist in the object".into(),
        (_, kind) => kind.to_string(),
    };
    PatchError::JsonPatchFailed {
        index: err.operation,
        op: op.map_or("unknown", op_name),
        path: err.path.to_string(),
        detail,
    }
}

/// The RFC 6902 name of an operation.
fn op_name(op: &PatchOperation) -> &'static str {
    match op {
        PatchOperation::Add(_) => "add",
        PatchOperation::Remove(_) => "remove",
        PatchOperation::Replace(_) => "replace",
        PatchOperation::Move(_) => "move",
        PatchOperation::Copy(_) => "copy",
        PatchOperation::Test(_) => "test",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn apply(target: Value, patch: Value) -> Result<Value, PatchError> {
        apply_json_patch(&target, patch.to_string().as_bytes())
    }

    #[test]
    fn applies_operations_in_order() {
        let target = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "a"}]}}}});
        let patched = apply(
            target,
            json!([
                {"op": "test", "path": "/spec/replicas", "value": 1},
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/template/spec/containers/-", "value": {"name": "b"}},
                {"op": "copy", "from": "/spec/replicas", "path": "/spec/minReadySeconds"},
                {"op": "move", "from": "/spec/minReadySeconds", "path": "/spec/paused"},
                {"op": "remove", "path": "/spec/paused"},
            ]),
        )
        .unwrap();
        assert_eq!(
            patched,
            json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}}})
        );
    }

    #[test]
    fn failed_test_names_the_operation_and_leaves_nothing_half_done() {
        let target = json!({"spec": {"replicas": 1}});
        let err = apply(
            target,
            json!([
                {"op": "replace", "path": "/spec/replicas", "value": 2},
                {"op": "test", "path": "/spec/replicas", "value": 5},
            ]),
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(err.reason(), "Invalid");
        assert_eq!(
            err.to_string(),
            "the server rejected our request due to an error in our request: \
             json patch operation 1 (test \"/spec/replicas\") failed: test failed: value is not 5"
        );
    }

    #[test]
    fn bad_paths_are_422_naming_the_operation() {
        let err = apply(json!({"a": 1}), json!([{"op": "remove", "path": "/b"}])).unwrap_err();
        assert!(
            matches!(
                err,
                PatchError::JsonPatchFailed {
                    index: 0,
                    op: "remove",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("(remove \"/b\") failed: the path does not exist"),
            "{err}"
        );
        let err = apply(
            json!({"a": [1]}),
            json!([{"op": "add", "path": "/a/7", "value": 1}]),
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        let err = apply(json!({}), json!([{"op": "move", "from": "/x", "path": "/y"}])).unwrap_err();
        assert!(
            err.to_string().ends_with("\"from\" path \"/x\" does not exist"),
            "{err}"
        );
    }

    #[test]
    fn bodies_that_are_not_operation_lists_are_400() {
        for body in [
            &b"{}"[..],
            b"not json",
            b"[{\"op\":\"frobnicate\",\"path\":\"/a\"}]",
            b"[{\"op\":\"add\"}]",
        ] {
            let err = apply_json_patch(&json!({}), body).unwrap_err();
            assert_eq!(err.code(), 400, "{err}");
            assert!(err.to_string().starts_with("error decoding patch: "), "{err}");
        }
    }

    #[test]
    fn too_many_operations_is_413() {
        let ops = vec![json!({"op": "test", "path": "", "value": {}}); MAX_JSON_PATCH_OPERATIONS + 1];
        let err = apply(json!({}), Value::Array(ops)).unwrap_err();
        assert_eq!(err.code(), 413);
        assert_eq!(
            err.to_string(),
            "The allowed maximum operations in a JSON patch is 10000, got 10001"
        );
    }
}
