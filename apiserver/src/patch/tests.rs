//! Behaviour tests of the patch engine as a whole: strategic merge patch cases restated from
//! upstream's `strategicpatch/patch_test.go` (against a schema shaped like its `MergeItem` fixture),
//! the same rules on real kinds, the exact requests of a client-side `kubectl apply`, and property
//! tests (strategic merge equals merge patch where no list is involved; no input panics).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{
    schema::{Field, SchemaRef, TypeDesc},
    *,
};

/// Upstream's test fixture type `MergeItem`: merging and non-merging lists of itself and of ints,
/// a `replace` field and `retainKeys` fields.
static MERGE_ITEM: TypeDesc = TypeDesc {
    name: "mergeItem",
    fields: &[
        Field::merge_by("mergingList", "name", SchemaRef::of(&MERGE_ITEM)),
        Field::merge_set("mergingIntList"),
        Field::replace("replacingItem"),
        Field::object("retainKeysMap", SchemaRef::of(&RETAIN_KEYS_MERGE_ITEM)).retain_keys(),
        Field::merge_by("retainKeysMergingList", "name", SchemaRef::of(&MERGE_ITEM)).retain_keys(),
    ],
};

static RETAIN_KEYS_MERGE_ITEM: TypeDesc = TypeDesc {
    name: "retainKeysMergeItem",
    fields: &[
        Field::merge_set("mergingIntList"),
        Field::merge_by("mergingList", "name", SchemaRef::of(&MERGE_ITEM)),
    ],
};

fn merge_item() -> SchemaRef {
    SchemaRef::of(&MERGE_ITEM)
}

fn smp(original: &Value, patch: &Value, schema: SchemaRef) -> Result<Value, PatchError> {
    apply_strategic_merge_patch(original, patch.to_string().as_bytes(), &schema)
}

/// Runs (description, original, patch, expected) cases, reporting every failure at once.
fn check(schema: SchemaRef, cases: &[(&str, Value, Value, Value)]) {
    let failures: Vec<String> = cases
        .iter()
        .filter_map(
            |(description, original, patch, expected)| match smp(original, patch, schema) {
                Ok(got) if got == *expected => None,
                got => Some(format!(
                    "{description}:\n  expected {expected}\n  got      {got:?}"
                )),
            },
        )
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---- upstream's cases, restated ------------------------------------------------------------------

#[test]
fn maps_and_map_directives() {
    check(
        merge_item(),
        &[
            (
                "add and change fields",
                json!({"name": 1, "value": 1}),
                json!({"value": 2, "other": "a"}),
                json!({"name": 1, "value": 2, "other": "a"}),
            ),
            (
                "null deletes a field",
                json!({"name": 1, "value": 1}),
                json!({"value": null}),
                json!({"name": 1}),
            ),
            (
                "null for an absent field is dropped",
                json!({"name": 1}),
                json!({"value": null}),
                json!({"name": 1}),
            ),
            (
                "delete map from nested map",
                json!({"simpleMap": {"key1": 1, "key2": 1}}),
                json!({"simpleMap": {"$patch": "delete"}}),
                json!({"simpleMap": {}}),
            ),
            (
                "delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"$patch": "replace"}),
                json!({}),
            ),
            (
                "add key and delete all keys from map",
                json!({"name": 1, "value": 1}),
                json!({"other": "a", "$patch": "replace"}),
                json!({"other": "a"}),
            ),
            (
                "$patch: merge is the default merge",
                json!({"simpleMap": {"a": 1}}),
                json!({"simpleMap": {"$patch": "merge", "b": 2}}),
                json!({"simpleMap": {"a": 1, "b": 2}}),
            ),
            (
                "a value of another type replaces",
                json!({"simpleMap": {"a": 1}}),
                json!({"simpleMap": "x"}),
                json!({"simpleMap": "x"}),
            ),
            (
                "replace strategy replaces a map",
                json!({"replacingItem": {"a": 1, "b": 2}}),
                json!({"replacingItem": {"c": 3}}),
                json!({"replacingItem": {"c": 3}}),
            ),
            // TestUnknownField: nulls inside a new value are discarded, the value is kept.
            (
                "discard nulls in nested and adds not nulls",
                json!({"name": "foo"}),
                json!({"complex": {"key": {"keynotnull": "value", "keynull": null}}}),
                json!({"name": "foo", "complex": {"key": {"keynotnull": "value"}}}),
            ),
            (
                "discard if modified all nulls",
                json!({}),
                json!({"complex": {"nested": null}}),
                json!({"complex": {}}),
            ),
        ],
    );
}

#[test]
fn merging_lists_of_maps() {
    check(
        merge_item(),
        &[
            (
                "merge by key, add new elements",
                json!({"mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2}]}),
                json!({"mergingList": [{"name": 2, "other": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 1, "value": 1}, {"name": 2, "value": 2, "other": "b"}, {"name": 3}]}),
            ),
            (
                "delete all items from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"$patch": "replace"}]}),
                json!({"mergingList": []}),
            ),
            (
                "replace the list with the other elements",
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"name": 3, "x": null}, {"$patch": "replace"}]}),
                json!({"mergingList": [{"name": 3}]}),
            ),
            (
                "merge empty merging lists",
                json!({"mergingList": []}),
                json!({"mergingList": []}),
                json!({"mergingList": []}),
            ),
            (
                "delete all duplicate entries in a merging list",
                json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
                json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2, "value": "a"}]}),
            ),
            (
                "delete missing map from merging list",
                json!({"mergingList": [{"name": 1}]}),
                json!({"mergingList": [{"name": 2, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 1}]}),
            ),
            (
                "delete field from map in merging list",
                json!({"mergingList": [{"name": 1, "value": 1}, {"name": 2}]}),
                json!({"mergingList": [{"name": 1, "value": null}]}),
                json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            ),
            (
                "non-merging list nested in merging list is replaced",
                json!({"mergingList": [{"name": 1, "nonMergingList": [{"name": 1}, {"name": 2}]}]}),
                json!({"mergingList": [{"name": 1, "nonMergingList": [{"name": 3}]}]}),
                json!({"mergingList": [{"name": 1, "nonMergingList": [{"name": 3}]}]}),
            ),
            (
                "merging list nested in merging list merges",
                json!({"mergingList": [{"name": 1, "mergingList": [{"name": 1, "value": 1}]}]}),
                json!({"mergingList": [{"name": 1, "mergingList": [{"name": 1, "other": 2}, {"name": 2}]}]}),
                json!({"mergingList": [{"name": 1, "mergingList": [{"name": 1, "value": 1, "other": 2}, {"name": 2}]}]}),
            ),
            (
                "preserve the order from the patch",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"},
                    {"name": 2, "value": "b", "other": "x"}]}),
            ),
            (
                "server-only elements keep their place before later patch elements",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
                json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
                json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]}),
            ),
            (
                "a non-merging list is replaced",
                json!({"nonMergingList": [{"name": 1, "value": "a"}]}),
                json!({"nonMergingList": [{"name": 2}]}),
                json!({"nonMergingList": [{"name": 2}]}),
            ),
        ],
    );
}

#[test]
fn merging_lists_of_scalars() {
    check(
        merge_item(),
        &[
            (
                "unique scalars when merging lists",
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [2, 3]}),
                json!({"mergingIntList": [1, 2, 3]}),
            ),
            (
                "preserve the order from the patch in a merging int list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"mergingIntList": [3, 1]}),
                json!({"mergingIntList": [2, 3, 1]}),
            ),
            (
                "1.0 and 1 are one element",
                json!({"mergingIntList": [1]}),
                json!({"mergingIntList": [1.0, 2]}),
                json!({"mergingIntList": [1, 2]}),
            ),
            (
                "a non-merging int list is replaced",
                json!({"nonMergingIntList": [1, 2]}),
                json!({"nonMergingIntList": [3]}),
                json!({"nonMergingIntList": [3]}),
            ),
            (
                "$deleteFromPrimitiveList deletes from a merging list",
                json!({"mergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [2]}),
                json!({"mergingIntList": [1, 3]}),
            ),
            (
                "$deleteFromPrimitiveList deletes from a non-merging list too",
                json!({"nonMergingIntList": [1, 2, 3]}),
                json!({"$deleteFromPrimitiveList/nonMergingIntList": [2]}),
                json!({"nonMergingIntList": [1, 3]}),
            ),
            (
                "$deleteFromPrimitiveList of a nonexistent item",
                json!({"mergingIntList": [1, 2]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": [1, 2]}),
            ),
            (
                "$deleteFromPrimitiveList on a null list",
                json!({"mergingIntList": null}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"mergingIntList": null}),
            ),
            (
                "$deleteFromPrimitiveList on a nonexistent list adds no list",
                json!({"foo": ["bar"]}),
                json!({"$deleteFromPrimitiveList/mergingIntList": [3]}),
                json!({"foo": ["bar"]}),
            ),
            (
                "add and delete in one patch",
                json!({"mergingIntList": [1, 2]}),
                json!({"mergingIntList": [3], "$deleteFromPrimitiveList/mergingIntList": [1]}),
                json!({"mergingIntList": [3, 2]}),
            ),
        ],
    );
}

#[test]
fn set_element_order() {
    check(
        merge_item(),
        &[
            (
                "add an item in a list and preserve order",
                json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 3}, {"name": 1}, {"name": 2}],
                    "mergingList": [{"name": 3, "value": 3}]}),
                json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "other": "a"},
                    {"name": 2, "value": 2, "other": "b"}]}),
            ),
            (
                "reorder without changing contents",
                json!({"mergingList": [{"name": 1}, {"name": 2}, {"name": 3}]}),
                json!({"$setElementOrder/mergingList": [{"name": 3}, {"name": 1}, {"name": 2}]}),
                json!({"mergingList": [{"name": 3}, {"name": 1}, {"name": 2}]}),
            ),
            (
                "items named in the order but absent are ignored",
                json!({"mergingList": [{"name": 1}, {"name": 3}]}),
                json!({"$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
                json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]}),
            ),
            (
                "int list",
                json!({"mergingIntList": [1, 3]}),
                json!({"$setElementOrder/mergingIntList": [3, 2, 1]}),
                json!({"mergingIntList": [3, 1]}),
            ),
            (
                "duplicates sort together",
                json!({"mergingList": [{"name": 1}, {"name": 2, "value": "dup1"}, {"name": 3},
                    {"name": 2, "value": "dup2"}, {"name": 4}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}, {"name": 4}, {"name": 3}, {"name": 2}]}),
                json!({"mergingList": [{"name": 2, "value": "dup1"}, {"name": 2, "value": "dup2"}, {"name": 1},
                    {"name": 4}, {"name": 3}]}),
            ),
            (
                "delete and reorder in one list, reorder in another",
                json!({"mergingList": [{"name": "a", "value": "a"}, {"name": "b", "value": "b"}],
                    "retainKeysMergingList": [{"name": "c", "value": "c"}, {"name": "d", "value": "d"}]}),
                json!({"$setElementOrder/mergingList": [{"name": "b"}],
                    "$setElementOrder/retainKeysMergingList": [{"name": "d"}, {"name": "c"}],
                    "mergingList": [{"$patch": "delete", "name": "a"}]}),
                json!({"mergingList": [{"name": "b", "value": "b"}],
                    "retainKeysMergingList": [{"name": "d", "value": "d"}, {"name": "c", "value": "c"}]}),
            ),
            // Upstream places the added element after the server-only one here (its live-order view
            // shows appended elements in the slots deleted ones left).
            (
                "add map and delete map from merging list",
                json!({"mergingList": [{"name": 1}, {"name": 2, "other": "b"}, {"name": 4, "other": "c"}]}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 3}],
                    "mergingList": [{"name": 3}, {"name": 1, "$patch": "delete"}]}),
                json!({"mergingList": [{"name": 2, "other": "b"}, {"name": 4, "other": "c"}, {"name": 3}]}),
            ),
            (
                "a list created by the patch",
                json!({}),
                json!({"$setElementOrder/mergingList": [{"name": 2}, {"name": 1}],
                    "mergingList": [{"name": 2}, {"name": 1}]}),
                json!({"mergingList": [{"name": 2}, {"name": 1}]}),
            ),
        ],
    );
}

#[test]
fn retain_keys() {
    check(
        merge_item(),
        &[
            (
                "retainKeys map clears unlisted fields",
                json!({"retainKeysMap": {"name": "foo", "value": "a", "other": "b"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "c"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "c"}}),
            ),
            (
                "retainKeys map can delete a listed field",
                json!({"retainKeysMap": {"name": "foo", "value": "a"}}),
                json!({"retainKeysMap": {"$retainKeys": ["name"], "value": null}}),
                json!({"retainKeysMap": {"name": "foo"}}),
            ),
            (
                "without the directive a retainKeys map merges",
                json!({"retainKeysMap": {"name": "foo"}}),
                json!({"retainKeysMap": {"value": "bar"}}),
                json!({"retainKeysMap": {"name": "foo", "value": "bar"}}),
            ),
            (
                "retainKeys in merging list elements",
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a", "other": "b"}]}),
                json!({"retainKeysMergingList": [{"name": "foo", "$retainKeys": ["name", "value"], "value": "a"}]}),
                json!({"retainKeysMergingList": [{"name": "bar"}, {"name": "foo", "value": "a"}]}),
            ),
            (
                "parallel lists do not need to be listed",
                json!({"retainKeysMap": {"mergingIntList": [1, 2], "other": "x"}}),
                json!({"retainKeysMap": {"$retainKeys": ["mergingIntList"],
                    "$deleteFromPrimitiveList/mergingIntList": [1]}}),
                json!({"retainKeysMap": {"mergingIntList": [2]}}),
            ),
        ],
    );
}

/// (description, original, patch, code, message fragment).
fn check_errors(schema: SchemaRef, cases: &[(&str, Value, &str, u16, &str)]) {
    for (description, original, patch, code, fragment) in cases {
        match apply_strategic_merge_patch(original, patch.as_bytes(), &schema) {
            Err(err) => {
                assert_eq!(err.code(), *code, "{description}: {err}");
                assert!(err.to_string().contains(fragment), "{description}: {err}");
            }
            Ok(v) => panic!("{description}: expected an error, got {v}"),
        }
    }
}

#[test]
fn malformed_patches_are_rejected_with_upstream_messages() {
    let list = json!({"mergingList": [{"name": 1, "value": "a"}], "mergingIntList": [1]});
    check_errors(
        merge_item(),
        &[
            (
                "missing merge key",
                list.clone(),
                r#"{"mergingList":[{"value":"b"}]}"#,
                422,
                "map: map[value:b] does not contain declared merge key: name",
            ),
            (
                "missing merge key in a delete",
                list.clone(),
                r#"{"mergingList":[{"$patch":"delete"}]}"#,
                422,
                "map: map[$patch:delete] does not contain declared merge key: name",
            ),
            (
                "unknown $patch in a map",
                list.clone(),
                r#"{"$patch":"frobnicate"}"#,
                422,
                "unknown patch type: frobnicate in map: map[$patch:frobnicate]",
            ),
            (
                "unknown $patch in a list",
                list.clone(),
                r#"{"mergingList":[{"name":1,"$patch":"x"}]}"#,
                422,
                "unknown patch type: x in map: map[$patch:x name:1]",
            ),
            (
                "merge directive in a list",
                list.clone(),
                r#"{"mergingList":[{"$patch":"merge"}]}"#,
                422,
                "merging lists cannot yet be specified in the patch",
            ),
            (
                "order mismatch",
                json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
                r#"{"$setElementOrder/mergingList":[{"name":1},{"name":2},{"name":3}],
                    "mergingList":[{"name":3,"value":3},{"name":1,"value":1}]}"#,
                422,
                "The order in patch list:\n[map[name:3 value:3] map[name:1 value:1]]\n doesn't match \
                 $setElementOrder list:\n[map[name:1] map[name:2] map[name:3]]\n",
            ),
            (
                "order list without merge keys",
                list.clone(),
                r#"{"$setElementOrder/mergingList":[{"value":1}]}"#,
                422,
                "does not contain declared merge key: name",
            ),
            (
                "unknown parallel-list directive",
                list.clone(),
                r#"{"$frobnicate/mergingList":[1]}"#,
                400,
                "unknown patch directive \"$frobnicate/mergingList\"",
            ),
            (
                "$setElementOrder without a field",
                list.clone(),
                r#"{"$setElementOrder":[1]}"#,
                400,
                "invalid patch format of setElementOrder list",
            ),
            (
                "$setElementOrder not a list",
                list.clone(),
                r#"{"$setElementOrder/mergingList":{}}"#,
                400,
                "invalid patch format of setElementOrder list",
            ),
            (
                "$deleteFromPrimitiveList not a list",
                list.clone(),
                r#"{"$deleteFromPrimitiveList/mergingIntList":3}"#,
                400,
                "invalid patch format of primitive list",
            ),
            (
                "$deleteFromPrimitiveList/ without a field",
                list.clone(),
                r#"{"$deleteFromPrimitiveList/":[1]}"#,
                400,
                "invalid patch format of primitive list",
            ),
            (
                "$retainKeys not a list",
                list.clone(),
                r#"{"$retainKeys":"name"}"#,
                400,
                "invalid patch format of retainKeys",
            ),
            (
                "patch field missing from $retainKeys",
                list.clone(),
                r#"{"$retainKeys":["name"],"value":"x"}"#,
                400,
                "invalid patch format of retainKeys",
            ),
            (
                "list of lists",
                list.clone(),
                r#"{"mergingIntList":[[1]]}"#,
                422,
                "lists of lists are not supported",
            ),
            (
                "mixed element types",
                list.clone(),
                r#"{"mergingIntList":["a"]}"#,
                422,
                "list element types are not identical: [[1] [a]]",
            ),
            (
                "objects in a keyless merge list",
                json!({"mergingIntList": [{"a": 1}]}),
                r#"{"mergingIntList":[{"a":2}]}"#,
                422,
                "cannot merge lists without merge key",
            ),
            ("not JSON", list.clone(), "{", 400, "error decoding patch: "),
            (
                "not an object",
                list.clone(),
                "[]",
                400,
                "a strategic merge patch must be a JSON object, not an array",
            ),
            (
                "target not an object",
                json!([1]),
                "{}",
                422,
                "expected a map, but received an array",
            ),
        ],
    );
}

// ---- the same rules on built-in kinds -----------------------------------------------------------

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
            "finalizers": ["a.example/x", "b.example/y"]},
        "spec": {
            "replicas": 2,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers,
                "tolerations": [{"key": "a", "operator": "Exists"}]}},
        },
    })
}

fn containers() -> Value {
    json!([
        {"name": "nginx", "image": "nginx:1.25", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]},
        {"name": "sidecar", "image": "envoy:1", "args": ["--x"]},
    ])
}

/// `original` with one JSON-pointer location replaced, for stating expectations compactly.
fn with(original: &Value, pointer: &str, value: Value) -> Value {
    let mut out = original.clone();
    *out.pointer_mut(pointer).expect("pointer exists") = value;
    out
}

#[test]
fn deployments_patch_like_kubernetes() {
    let live = deployment(containers());
    let schema = schema_for("Deployment");
    let c0 = "/spec/template/spec/containers/0";
    let cases = [
        (
            "one container's image changes, the other container stays",
            live.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.26"}]}}}}),
            with(&live, &format!("{c0}/image"), json!("nginx:1.26")),
        ),
        (
            "$patch: delete removes a container",
            live.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
            with(
                &live,
                "/spec/template/spec/containers",
                json!([containers()[0].clone()]),
            ),
        ),
        (
            "a new container is added",
            live.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "init", "image": "busybox"}]}}}}),
            with(
                &live,
                "/spec/template/spec/containers",
                json!([{"name": "init", "image": "busybox"}, containers()[0].clone(), containers()[1].clone()]),
            ),
        ),
        (
            "null deletes a label, labels merge",
            live.clone(),
            json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
            with(&live, "/metadata/labels", json!({"app": "web", "env": "prod"})),
        ),
        (
            "$setElementOrder reorders containers",
            live.clone(),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "sidecar"}, {"name": "nginx"}]}}}}),
            with(
                &live,
                "/spec/template/spec/containers",
                json!([containers()[1].clone(), containers()[0].clone()]),
            ),
        ),
        (
            "$retainKeys drops rollingUpdate when switching to Recreate",
            live.clone(),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            with(&live, "/spec/strategy", json!({"type": "Recreate"})),
        ),
        (
            "finalizers merge as a set",
            live.clone(),
            json!({"metadata": {"finalizers": ["b.example/y", "c.example/z"]}}),
            with(
                &live,
                "/metadata/finalizers",
                json!(["a.example/x", "b.example/y", "c.example/z"]),
            ),
        ),
        (
            "$deleteFromPrimitiveList/finalizers",
            live.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example/x"]}}),
            with(&live, "/metadata/finalizers", json!(["b.example/y"])),
        ),
        (
            "env merges by name",
            live.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "env": [{"name": "B", "value": "3"}]}]}}}}),
            with(&live, &format!("{c0}/env/1/value"), json!("3")),
        ),
        (
            "ports merge by containerPort",
            live.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "ports": [{"containerPort": 80, "name": "http"}]}]}}}}),
            with(
                &live,
                &format!("{c0}/ports/0"),
                json!({"containerPort": 80, "protocol": "TCP", "name": "http"}),
            ),
        ),
        (
            "args are atomic",
            live.clone(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "args": ["--y"]}]}}}}),
            with(&live, "/spec/template/spec/containers/1/args", json!(["--y"])),
        ),
        (
            "tolerations are atomic",
            live.clone(),
            json!({"spec": {"template": {"spec": {"tolerations": [{"key": "b", "operator": "Exists"}]}}}}),
            with(
                &live,
                "/spec/template/spec/tolerations",
                json!([{"key": "b", "operator": "Exists"}]),
            ),
        ),
    ];
    check(schema, &cases);
}

#[test]
fn other_kinds_merge_by_their_keys() {
    let pod = json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "rs"}]},
        "spec": {"volumes": [{"name": "data", "emptyDir": {}}], "containers": [{"name": "c", "volumeMounts":
            [{"mountPath": "/data", "name": "data"}]}]},
        "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Scheduled", "status": "True"}],
            "podIPs": [{"ip": "10.0.0.1"}]}});
    check(
        schema_for("Pod"),
        &[
            (
                "status conditions merge by type",
                pod.clone(),
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
                with(&pod, "/status/conditions/0/status", json!("True")),
            ),
            (
                "ownerReferences merge by uid",
                pod.clone(),
                json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}]}}),
                with(
                    &pod,
                    "/metadata/ownerReferences/0",
                    json!({"uid": "u1", "name": "rs", "controller": true}),
                ),
            ),
            (
                "a volume's source is switched with $retainKeys",
                pod.clone(),
                json!({"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"],
                    "hostPath": {"path": "/srv"}}]}}),
                with(
                    &pod,
                    "/spec/volumes/0",
                    json!({"name": "data", "hostPath": {"path": "/srv"}}),
                ),
            ),
            (
                "volumeMounts merge by mountPath",
                pod.clone(),
                json!({"spec": {"containers": [{"name": "c", "volumeMounts": [{"mountPath": "/data", "readOnly": true}]}]}}),
                with(
                    &pod,
                    "/spec/containers/0/volumeMounts/0",
                    json!({"mountPath": "/data", "name": "data", "readOnly": true}),
                ),
            ),
        ],
    );
    let service = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}], "selector": {"app": "a"}}});
    check(
        schema_for("Service"),
        &[(
            "service ports merge by port, selector merges",
            service.clone(),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}], "selector": {"tier": "b"}}}),
            json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}],
                "selector": {"app": "a", "tier": "b"}}}),
        )],
    );
    let node = json!({"spec": {"podCIDRs": ["10.0.0.0/24"], "taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {"addresses": [{"type": "InternalIP", "address": "1.2.3.4"}]}});
    check(
        schema_for("Node"),
        &[(
            "taints are atomic, podCIDRs a set, addresses by type",
            node.clone(),
            json!({"spec": {"podCIDRs": ["10.0.1.0/24"], "taints": [{"key": "b", "effect": "NoExecute"}]},
                "status": {"addresses": [{"type": "Hostname", "address": "n1"}]}}),
            // New elements the server did not have come before server-only ones (upstream order).
            json!({"spec": {"podCIDRs": ["10.0.1.0/24", "10.0.0.0/24"], "taints": [{"key": "b", "effect": "NoExecute"}]},
                "status": {"addresses": [{"type": "Hostname", "address": "n1"},
                    {"type": "InternalIP", "address": "1.2.3.4"}]}}),
        )],
    );
}

#[test]
fn unknown_kinds_merge_maps_and_replace_lists() {
    let live = json!({"spec": {"items": [{"name": "a"}], "map": {"a": 1, "b": 2}}, "metadata": {"finalizers": ["x"]}});
    let patch = json!({"spec": {"items": [{"name": "b"}], "map": {"a": null, "c": 3}}, "metadata": {"finalizers": ["y"]}});
    let expected = json!({"spec": {"items": [{"name": "b"}], "map": {"b": 2, "c": 3}}, "metadata": {"finalizers": ["y"]}});
    assert_eq!(smp(&live, &patch, schema_for("Widget")).unwrap(), expected);
    assert_eq!(
        apply_merge_patch(&live, patch.to_string().as_bytes()).unwrap(),
        expected
    );
}

// ---- kubectl apply, as sent on the wire (kubectl-compat §2.2–2.4) --------------------------------

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// What the server holds after `kubectl apply` created the Deployment and defaulting ran, plus a
/// container injected by someone else (which apply must leave alone).
fn applied_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "6a1c", "resourceVersion": "12",
            "generation": 1, "labels": {"app": "web", "tier": "front"},
            "annotations": {LAST_APPLIED: "{\"old\":true}\n"}},
        "spec": {"replicas": 1, "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "terminationGracePeriodSeconds": 30,
                "containers": [
                    {"name": "nginx", "image": "nginx:1.25", "args": ["-g", "daemon off;"],
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File"},
                    {"name": "mesh-proxy", "image": "proxy:1"},
                ]}}},
    })
}

#[test]
fn kubectl_apply_changed_image_and_removed_env_var() {
    // The body kubectl 1.32 sent when the image changed and env B was removed (§2.2), verbatim.
    let body = json!({"metadata": {"annotations": {LAST_APPLIED: "{...new manifest...}\n"}},
        "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"$setElementOrder/env": [{"name": "A"}], "env": [{"$patch": "delete", "name": "B"}],
                "image": "nginx:1.26", "name": "nginx"}]}}}});
    let live = applied_deployment();
    let patched = apply_patch(
        PatchType::Strategic,
        &live,
        body.to_string().as_bytes(),
        &schema_for("Deployment"),
    )
    .unwrap();
    let mut expected = with(
        &live,
        "/metadata/annotations",
        json!({LAST_APPLIED: "{...new manifest...}\n"}),
    );
    expected = with(
        &expected,
        "/spec/template/spec/containers/0/image",
        json!("nginx:1.26"),
    );
    expected = with(
        &expected,
        "/spec/template/spec/containers/0/env",
        json!([{"name": "A", "value": "1"}]),
    );
    assert_eq!(patched, expected);
}

#[test]
fn kubectl_apply_removed_fields_and_container() {
    // A second apply whose manifest dropped the `tier` label, nginx's args, and a container the
    // previous manifest had: kubectl sends null for removed fields and a delete directive for the
    // removed list element (CreateThreeWayMergePatch). The injected mesh-proxy is not in
    // last-applied, so it is not deleted and stays where it was.
    let mut live = applied_deployment();
    let containers = live
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .unwrap();
    containers.insert(1, json!({"name": "old-helper", "image": "helper:1"}));
    let body = json!({"metadata": {"annotations": {LAST_APPLIED: "{...v3...}\n"}, "labels": {"tier": null}},
        "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "nginx"}],
            "containers": [{"args": null, "name": "nginx"}, {"$patch": "delete", "name": "old-helper"}]}}}});
    let patched =
        apply_strategic_merge_patch(&live, body.to_string().as_bytes(), &schema_for("Deployment")).unwrap();

    let nginx = &patched["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(nginx["name"], "nginx");
    assert!(nginx.get("args").is_none(), "{nginx}");
    assert_eq!(
        nginx["imagePullPolicy"], "IfNotPresent",
        "server defaults survive"
    );
    let names: Vec<&str> = patched["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["nginx", "mesh-proxy"]);
    assert_eq!(patched["metadata"]["labels"], json!({"app": "web"}));
    assert_eq!(patched["metadata"]["annotations"][LAST_APPLIED], "{...v3...}\n");
    assert_eq!(patched["spec"]["strategy"], live["spec"]["strategy"]);
}

// ---- patch types and dispatch -------------------------------------------------------------------

#[test]
fn patch_types_from_content_types() {
    let cases = [
        ("application/json-patch+json", Some(PatchType::Json)),
        ("application/merge-patch+json", Some(PatchType::Merge)),
        (
            "application/strategic-merge-patch+json",
            Some(PatchType::Strategic),
        ),
        ("application/apply-patch+yaml", Some(PatchType::Apply)),
        (
            "Application/Merge-Patch+JSON; charset=utf-8",
            Some(PatchType::Merge),
        ),
        ("application/json", None),
        ("", None),
    ];
    for (content_type, expected) in cases {
        assert_eq!(
            PatchType::from_content_type(content_type),
            expected,
            "{content_type}"
        );
    }
    for t in [
        PatchType::Json,
        PatchType::Merge,
        PatchType::Strategic,
        PatchType::Apply,
    ] {
        assert_eq!(PatchType::from_content_type(t.content_type()), Some(t));
    }
}

#[test]
fn apply_patch_dispatches_and_rejects_server_side_apply() {
    let live = json!({"metadata": {"labels": {"a": "1"}}});
    let any = SchemaRef::ANY;
    let json_patch = br#"[{"op":"add","path":"/metadata/labels/b","value":"2"}]"#;
    let merged = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
    assert_eq!(
        apply_patch(PatchType::Json, &live, json_patch, &any).unwrap(),
        merged
    );
    let body = br#"{"metadata":{"labels":{"b":"2"}}}"#;
    assert_eq!(apply_patch(PatchType::Merge, &live, body, &any).unwrap(), merged);
    assert_eq!(
        apply_patch(PatchType::Strategic, &live, body, &any).unwrap(),
        merged
    );
    let err = apply_patch(PatchType::Apply, &live, body, &any).unwrap_err();
    assert_eq!((err.code(), err.reason()), (415, "UnsupportedMediaType"));
}

#[test]
fn the_deepest_patch_that_parses_stays_within_a_threads_stack() {
    // serde_json refuses input nested deeper than 128, which bounds our recursion; this checks
    // that 128 levels of merge lists fit a default 2 MiB thread stack even in a debug build.
    fn nest(depth: usize, leaf: Value) -> Value {
        (0..depth).fold(leaf, |v, i| {
            if i % 2 == 0 {
                json!([{"name": "a", "mergingList": v}])
            } else {
                json!({"mergingList": v})
            }
        })
    }
    let (target, patch) = (nest(84, json!(1)), nest(84, json!(2)));
    let patched = smp(&target, &patch, merge_item()).unwrap();
    assert_eq!(patched, patch);
    let too_deep = nest(86, json!(2)).to_string();
    let err = apply_strategic_merge_patch(&target, too_deep.as_bytes(), &merge_item()).unwrap_err();
    assert_eq!(err.code(), 400);
}

// ---- properties ---------------------------------------------------------------------------------

/// Field names that hit the schemas' interesting paths, plus every directive spelling.
const KEYS: &[&str] = &[
    "name",
    "value",
    "uid",
    "type",
    "port",
    "containerPort",
    "mountPath",
    "metadata",
    "spec",
    "status",
    "template",
    "containers",
    "initContainers",
    "env",
    "ports",
    "volumes",
    "finalizers",
    "ownerReferences",
    "labels",
    "strategy",
    "conditions",
    "mergingList",
    "mergingIntList",
    "nonMergingList",
    "retainKeysMap",
    "retainKeysMergingList",
    "replacingItem",
    "$patch",
    "$retainKeys",
    "$setElementOrder/containers",
    "$setElementOrder/mergingList",
    "$setElementOrder/mergingIntList",
    "$setElementOrder/finalizers",
    "$setElementOrder/env",
    "$deleteFromPrimitiveList/finalizers",
    "$deleteFromPrimitiveList/mergingIntList",
    "$setElementOrder",
    "$deleteFromPrimitiveList/",
    "$x/y",
];

const STRINGS: &[&str] = &[
    "replace",
    "delete",
    "merge",
    "name",
    "a",
    "b",
    "nginx",
    "containers",
    "/spec",
    "",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..4).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1.0e3f64..1.0e3).prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ]
}

fn any_json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS).prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn any_object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(KEYS).prop_map(String::from),
        any_json(),
        0..6,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// JSON patch operations over a small set of paths, so many of them apply.
fn json_patch_ops() -> impl Strategy<Value = Value> {
    let pointer = prop::sample::select(
        &[
            "",
            "/a",
            "/a/0",
            "/a/-",
            "/name",
            "/spec/containers/0",
            "/~1",
            "/a/b/c",
        ][..],
    );
    let op = (
        prop::sample::select(&["add", "remove", "replace", "move", "copy", "test", "nope"][..]),
        pointer.clone(),
        pointer,
        any_json(),
    )
        .prop_map(|(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}));
    prop::collection::vec(op, 0..6).prop_map(Value::Array)
}

fn schemas() -> [SchemaRef; 5] {
    [
        schema_for("Deployment"),
        schema_for("Pod"),
        schema_for("Node"),
        merge_item(),
        SchemaRef::ANY,
    ]
}

/// A merge patch taking `from` to `to` (neither holding lists or nulls).
fn diff(
    from: &serde_json::Map<String, Value>,
    to: &serde_json::Map<String, Value>,
) -> serde_json::Map<String, Value> {
    let mut patch = serde_json::Map::new();
    for key in from.keys().filter(|k| !to.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    for (key, new) in to {
        match (from.get(key), new) {
            (Some(old), _) if old == new => {}
            (Some(Value::Object(old)), Value::Object(new)) => {
                patch.insert(key.clone(), Value::Object(diff(old, new)));
            }
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    patch
}

/// Objects without lists or nulls, over field names that exist in the built-in schemas.
fn listless_object() -> impl Strategy<Value = serde_json::Map<String, Value>> {
    let key = prop::sample::select(
        &[
            "metadata", "labels", "spec", "template", "strategy", "name", "a", "b",
        ][..],
    )
    .prop_map(String::from);
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (0i64..3).prop_map(Value::from),
        prop::sample::select(&["x", "y"][..]).prop_map(Value::from)
    ];
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop::collection::btree_map(
            prop::sample::select(&["metadata", "labels", "spec", "name", "a", "b"][..])
                .prop_map(String::from),
            inner,
            0..4,
        )
        .prop_map(|m| Value::Object(m.into_iter().collect()))
    });
    prop::collection::btree_map(key, value, 0..5).prop_map(|m| m.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn strategic_merge_equals_merge_patch_without_lists(from in listless_object(), to in listless_object()) {
        let (from, to_value) = (Value::Object(from.clone()), Value::Object(to.clone()));
        let Value::Object(from_map) = &from else { unreachable!() };
        let patch = Value::Object(diff(from_map, &to)).to_string();
        let merged = apply_merge_patch(&from, patch.as_bytes()).unwrap();
        prop_assert_eq!(&merged, &to_value);
        for schema in [schema_for("Deployment"), schema_for("Pod"), SchemaRef::ANY] {
            prop_assert_eq!(&apply_strategic_merge_patch(&from, patch.as_bytes(), &schema).unwrap(), &merged);
        }
    }

    #[test]
    fn no_json_input_panics(target in any_object(), patch in any_json(), ops in json_patch_ops()) {
        let body = patch.to_string();
        for schema in schemas() {
            let _ = apply_strategic_merge_patch(&target, body.as_bytes(), &schema);
        }
        let _ = apply_merge_patch(&target, body.as_bytes());
        let _ = apply_json_patch(&target, body.as_bytes());
        let _ = apply_json_patch(&target, ops.to_string().as_bytes());
    }

    #[test]
    fn no_object_patch_panics(target in any_object(), patch in any_object()) {
        let body = patch.to_string();
        for schema in schemas() {
            if let Ok(patched) = apply_strategic_merge_patch(&target, body.as_bytes(), &schema) {
                // A successful patch of an object is an object.
                prop_assert!(patched.is_object());
            }
        }
    }

    #[test]
    fn no_byte_string_panics(target in any_object(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for t in [PatchType::Json, PatchType::Merge, PatchType::Strategic, PatchType::Apply] {
            let _ = apply_patch(t, &target, &bytes, &schema_for("Pod"));
        }
    }
}
