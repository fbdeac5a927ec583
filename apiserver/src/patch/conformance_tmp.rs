//! temp
use serde_json::{Value, json};

use super::schema::{Field, SchemaRef, TypeDesc};
use super::*;

static MERGE_ITEM: TypeDesc = TypeDesc {
    name: "mergeItem",
    fields: &[
        Field::merge_by("mergingList", "name", SchemaRef::of(&MERGE_ITEM)),
        Field::merge_set("mergingIntList"),
        Field::merge_by("mergeItemPtr", "name", SchemaRef::of(&MERGE_ITEM)),
        Field::replace("replacingItem"),
        Field::object("retainKeysMap", SchemaRef::of(&RETAIN_KEYS_MERGE_ITEM)).retain_keys(),
        Field::merge_by("retainKeysMergingList", "name", SchemaRef::of(&MERGE_ITEM)).retain_keys(),
    ],
};

static RETAIN_KEYS_MERGE_ITEM: TypeDesc = TypeDesc {
    name: "retainKeysMergeItem",
    fields: &[Field::merge_set("mergingIntList"), Field::merge_by("mergingList", "name", SchemaRef::of(&MERGE_ITEM))],
};

fn go_str(v: &Value) -> String {
    match v { Value::String(s) => s.clone(), Value::Null => "<nil>".into(), other => other.to_string() }
}

fn sort_lists(v: &Value, schema: SchemaRef) -> Value {
    let Value::Object(m) = v else { return v.clone() };
    let mut out = serde_json::Map::new();
    for (k, x) in m {
        let nv = if k == "$retainKeys" || k.starts_with("$deleteFromPrimitiveList") {
            let mut l = x.as_array().cloned().unwrap_or_default();
            l.sort_by_key(go_str);
            Value::Array(l)
        } else if k.starts_with("$setElementOrder") || k == "$patch" {
            x.clone()
        } else {
            let meta = schema.field(k);
            match x {
                Value::Object(_) => sort_lists(x, meta.schema),
                Value::Array(l) if matches!(meta.strategy, schema::PatchStrategy::Merge { .. }) => {
                    if l.iter().all(|e| !e.is_object()) {
                        let mut l2: Vec<Value> = Vec::new();
                        for e in l { if !l2.contains(e) { l2.push(e.clone()) } }
                        l2.sort_by_key(go_str);
                        Value::Array(l2)
                    } else {
                        let key = meta.merge_key().unwrap();
                        let mut l2: Vec<Value> = l.iter().map(|e| sort_lists(e, meta.schema)).collect();
                        l2.sort_by_key(|e| go_str(e.get(key).unwrap_or(&Value::Null)));
                        Value::Array(l2)
                    }
                }
                _ => x.clone(),
            }
        };
        out.insert(k.clone(), nv);
    }
    Value::Object(out)
}

#[test]
fn upstream_conformance() {
    let text = std::fs::read_to_string("/root/patchref/cases.json").expect("cases");
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    let schema = SchemaRef::of(&MERGE_ITEM);
    let mut failures = 0;
    for c in &cases {
        let desc = c["desc"].as_str().unwrap();
        let sorted = c["sorted"].as_bool().unwrap();
        let obj = |v: &Value| if v.is_null() { json!({}) } else { v.clone() };
        let (mut original, mut patch, mut expected) = (obj(&c["original"]), obj(&c["patch"]), obj(&c["expected"]));
        if sorted {
            original = sort_lists(&original, schema);
            patch = sort_lists(&patch, schema);
            expected = sort_lists(&expected, schema);
        }
        let got = apply_strategic_merge_patch(&original, patch.to_string().as_bytes(), &schema);
        match (&c["error"], got) {
            (Value::String(e), Err(err)) if err.to_string().contains(e.as_str()) => {}
            (Value::String(e), other) => { failures += 1; println!("FAIL {desc}: expected error {e}, got {other:?}"); }
            (_, Ok(v)) if v == expected => {}
            (_, other) => { failures += 1; println!("FAIL {desc}:\n  original {original}\n  patch {patch}\n  expected {expected}\n  got {other:?}"); }
        }
    }
    println!("{} cases, {failures} failures", cases.len());
    assert_eq!(failures, 0);
}
