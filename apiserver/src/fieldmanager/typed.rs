//! The operations on objects that field management is built from, each a walk over a
//! [`serde_json::Value`] guided by its [`Ty`]: the field set an object specifies, merging a
//! configuration into an object, comparing two objects, removing a set of fields, and validating
//! list keys.
//!
//! Mirrors structured-merge-diff's `typed` package (`tofieldset.go`, `merge.go`, `compare.go`,
//! `remove.go`, `helpers.go`). Differences, all from working on untyped JSON:
//! - every map is treated as a struct: a non-empty map-valued field is not a member itself (only
//!   what is below it), where upstream makes the fields of `map[string]T` maps members too. For
//!   built-in kinds this only differs for maps of maps or lists, which are rare.
//! - where the two sides have different shapes (a map against a list) the comparison reports the
//!   field as modified without listing what is below it.
//! - removing the last field of a map or list drops the map or list, where upstream leaves a null
//!   (which its typed round trip then drops for built-in kinds).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, Path, PathElement, values_equal};
use super::typeinfo::{Shape, Ty};

/// How a value is walked: a granular map, an associative list, or a leaf (scalars, null, atomic
/// maps and lists, and lists or maps where the schema expects something else).
enum Node<'a> {
    Map(&'a Map<String, Value>),
    List(&'a [Value]),
    Leaf,
}

fn node<'a>(value: &'a Value, ty: &Ty) -> Node<'a> {
    match value {
        Value::Object(map) if ty.shape == Shape::Granular => Node::Map(map),
        Value::Array(items) if ty.is_associative_list() => Node::List(items),
        _ => Node::Leaf,
    }
}

/// An error at a path, formatted as upstream's `ValidationError`: `.spec.ports: message`.
fn at(path: &[PathElement], message: impl std::fmt::Display) -> String {
    format!("{}: {message}", Path(path.to_vec()))
}

fn with(path: &[PathElement], element: PathElement) -> Vec<PathElement> {
    let mut p = path.to_vec();
    p.push(element);
    p
}

/// The path element that identifies `item` in an associative list of type `ty` (upstream's
/// `listItemToPathElement`): its key fields for a list-map (defaults filling missing ones, absent
/// ones left out), itself for a set.
pub(crate) fn item_element(item: &Value, ty: &Ty) -> Result<PathElement, String> {
    match ty.shape {
        Shape::ListMap(keys) => {
            let map = match item {
                Value::Object(map) => map,
                Value::Null => return Err("associative list with keys may not have a null element".into()),
                _ => return Err("associative list with keys may not have non-map elements".into()),
            };
            let fields = keys.fields();
            let mut key: Vec<(String, Value)> = fields
                .iter()
                .filter_map(|f| {
                    let value = map.get(f.name).cloned().or_else(|| f.default.map(Value::from))?;
                    Some((f.name.to_owned(), value))
                })
                .collect();
            if key.is_empty() {
                let names: Vec<String> = fields
                    .iter()
                    .map(|f| super::fieldpath::go_quote(f.name))
                    .collect();
                return Err(format!(
                    "associative list with keys has an element that omits all key fields [{}] (and doesn't have default values for any key fields)",
                    names.join(" ")
                ));
            }
            key.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(key))
        }
        Shape::Set => match item {
            Value::Object(_) => Err("associative list without keys has an element that's a map type".into()),
            Value::Array(_) => Err("not supported: associative list with lists as elements".into()),
            Value::Null => Err("associative list without keys has an element that's an explicit null".into()),
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
        Shape::Granular | Shape::Atomic => Err("invalid indexing of non-associative list".into()),
    }
}

/// The path elements of a list's items, or the first item that has none.
fn item_elements(items: &[Value], ty: &Ty, path: &[PathElement]) -> Result<Vec<PathElement>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| item_element(item, ty).map_err(|e| at(path, format!("element {i}: {e}"))))
        .collect()
}

/// Checks that every item of every associative list in `value` has a key and, unless
/// `allow_duplicates`, that no key repeats. Upstream rejects an applied configuration that fails
/// this (`failed to create typed patch object`); live objects may hold duplicates, written by
/// create or update.
pub(crate) fn validate(value: &Value, ty: &Ty, allow_duplicates: bool) -> Result<(), String> {
    validate_at(value, ty, allow_duplicates, &mut Vec::new())
}

fn validate_at(
    value: &Value,
    ty: &Ty,
    allow_duplicates: bool,
    path: &mut Vec<PathElement>,
) -> Result<(), String> {
    match node(value, ty) {
        Node::Map(map) => map.iter().try_for_each(|(k, child)| {
            path.push(PathElement::Field(k.clone()));
            let result = validate_at(child, &ty.field(k), allow_duplicates, path);
            path.pop();
            result
        }),
        Node::List(items) => {
            let elements = item_elements(items, ty, path)?;
            let mut seen = BTreeSet::new();
            for (element, item) in elements.into_iter().zip(items) {
                if !seen.insert(element.clone()) && !allow_duplicates {
                    return Err(at(path, format!("duplicate entries for key {element}")));
                }
                path.push(element);
                let result = validate_at(item, &ty.item(), allow_duplicates, path);
                path.pop();
                result?;
            }
            Ok(())
        }
        Node::Leaf => Ok(()),
    }
}

// ---- the field set of an object (tofieldset.go) -------------------------------------------------

/// The set of fields `value` specifies: every scalar, null, empty map, atomic map or list, and
/// every item of an associative list (as a member, besides what is inside it). A duplicated list
/// item is owned only as a whole. Items without a key are skipped (validate first).
pub(crate) fn field_set(value: &Value, ty: &Ty) -> FieldSet {
    let mut set = FieldSet::new();
    collect_fields(value, ty, &mut Vec::new(), &mut set);
    set
}

fn collect_fields(value: &Value, ty: &Ty, path: &mut Vec<PathElement>, set: &mut FieldSet) {
    match node(value, ty) {
        Node::Map(map) => {
            for (k, child) in map {
                path.push(PathElement::Field(k.clone()));
                collect_fields(child, &ty.field(k), path, set);
                // A struct field is owned itself only when there is nothing below it to own.
                if child.is_null() || child.as_object().is_some_and(Map::is_empty) {
                    set.insert(path);
                }
                path.pop();
            }
        }
        Node::List(items) => {
            let elements: Vec<Option<PathElement>> = items.iter().map(|i| item_element(i, ty).ok()).collect();
            let mut seen = BTreeSet::new();
            let mut duplicates = BTreeSet::new();
            for element in elements.iter().flatten() {
                if !seen.insert(element) && duplicates.insert(element) {
                    set.insert(&with(path, element.clone()));
                }
            }
            for (element, item) in elements.iter().zip(items) {
                let Some(element) = element.as_ref().filter(|e| !duplicates.contains(e)) else {
                    continue;
                };
                path.push(element.clone());
                collect_fields(item, &ty.item(), path, set);
                set.insert(path);
                path.pop();
            }
        }
        Node::Leaf => set.insert(path),
    }
}

// ---- merging an applied configuration (merge.go) ------------------------------------------------

/// Merges `rhs` (the applied configuration) into `lhs` (the live object): maps merge field by
/// field, associative lists item by item, everything else is replaced by `rhs`. `None` only when
/// both sides are absent.
pub(crate) fn merge(lhs: Option<&Value>, rhs: Option<&Value>, ty: &Ty) -> Result<Option<Value>, String> {
    merge_at(lhs, rhs, ty, &mut Vec::new())
}

fn merge_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &Ty,
    path: &mut Vec<PathElement>,
) -> Result<Option<Value>, String> {
    let Some(rhs) = rhs else {
        return Ok(lhs.cloned());
    };
    // A null live value is a wildcard: it takes whatever shape the configuration has.
    let lhs = lhs.filter(|l| !l.is_null());
    match (node(rhs, ty), lhs.map(|l| node(l, ty))) {
        (Node::Map(r), l @ (None | Some(Node::Map(_)))) => {
            let l = match l {
                Some(Node::Map(l)) => Some(l),
                _ => None,
            };
            if r.is_empty() && l.is_none_or(Map::is_empty) {
                return Ok(Some(rhs.clone()));
            }
            let mut out = l.cloned().unwrap_or_default();
            for (k, rv) in r {
                path.push(PathElement::Field(k.clone()));
                let merged = merge_at(l.and_then(|l| l.get(k)), Some(rv), &ty.field(k), path);
                path.pop();
                if let Some(v) = merged? {
                    out.insert(k.clone(), v);
                }
            }
            Ok(Some(Value::Object(out)))
        }
        (Node::List(r), l @ (None | Some(Node::List(_)))) => {
            let l = match l {
                Some(Node::List(l)) => l,
                _ => &[],
            };
            if r.is_empty() && l.is_empty() {
                return Ok(Some(rhs.clone()));
            }
            merge_list(l, r, ty, path).map(|items| Some(Value::Array(items)))
        }
        // Shapes differ: the configuration replaces the live value, but is still validated.
        (Node::Map(_) | Node::List(_), Some(_)) => merge_at(None, Some(rhs), ty, path),
        (Node::Leaf, _) => Ok(Some(rhs.clone())),
    }
}

/// Upstream's list merge: items only in the live list keep their place, items of the configuration
/// come in its order (merged with the live item of the same key), and a live item the configuration
/// also has is emitted where the configuration puts it.
fn merge_list(
    lhs: &[Value],
    rhs: &[Value],
    ty: &Ty,
    path: &mut Vec<PathElement>,
) -> Result<Vec<Value>, String> {
    let rhs_pes = item_elements(rhs, ty, path)?;
    let lhs_pes = item_elements(lhs, ty, path)?;
    let mut observed_rhs: BTreeMap<&PathElement, &Value> = BTreeMap::new();
    for (pe, item) in rhs_pes.iter().zip(rhs) {
        if observed_rhs.insert(pe, item).is_some() {
            return Err(at(path, format!("duplicate entries for key {pe}")));
        }
    }
    // Live duplicates are allowed; they are not merged with the configuration (`None`).
    let mut observed_lhs: BTreeMap<&PathElement, Option<&Value>> = BTreeMap::new();
    for (pe, item) in lhs_pes.iter().zip(lhs) {
        observed_lhs
            .entry(pe)
            .and_modify(|v| *v = None)
            .or_insert(Some(item));
    }
    let mut shared = rhs_pes.iter().filter(|pe| observed_lhs.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_rhs: BTreeSet<&PathElement> = BTreeSet::new();
    let item_ty = ty.item();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let mut merge_item = |pe: &PathElement, l: Option<&Value>, r: Option<&Value>, out: &mut Vec<Value>| {
        path.push(pe.clone());
        let merged = merge_at(l, r, &item_ty, path);
        path.pop();
        out.extend(merged?);
        Ok::<(), String>(())
    };
    let (mut li, mut ri) = (0, 0);
    while li < lhs_pes.len() || ri < rhs_pes.len() {
        if li < lhs_pes.len() && ri < rhs_pes.len() {
            let pe = &lhs_pes[li];
            if *pe == rhs_pes[ri] {
                merged_rhs.insert(pe);
                let l = observed_lhs.get(pe).copied().flatten();
                merge_item(pe, l, observed_rhs.get(pe).copied(), &mut out)?;
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            if observed_rhs.contains_key(pe) && next_shared.is_some_and(|n| n != pe) {
                // A shared item, but not the next one in the configuration's order: it is emitted
                // when the configuration reaches it.
                li += 1;
                continue;
            }
        }
        if li < lhs_pes.len() {
            let pe = &lhs_pes[li];
            if !observed_rhs.contains_key(pe) {
                merge_item(pe, Some(&lhs[li]), None, &mut out)?;
                li += 1;
                continue;
            } else if merged_rhs.contains(pe) {
                li += 1;
            }
        }
        if ri < rhs_pes.len() {
            let pe = &rhs_pes[ri];
            merged_rhs.insert(pe);
            let l = observed_lhs.get(pe).copied().flatten();
            merge_item(pe, l, observed_rhs.get(pe).copied(), &mut out)?;
            ri += 1;
            if next_shared == Some(pe) {
                next_shared = shared.next();
            }
        }
    }
    Ok(out)
}

// ---- comparing two objects (compare.go) ---------------------------------------------------------

/// What changed between two objects, as three disjoint field sets.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Comparison {
    /// Fields present in the old object only (and, for maps and list items, the containers).
    pub removed: FieldSet,
    /// Leaf fields present in both with different values.
    pub modified: FieldSet,
    /// Fields present in the new object only (and, for maps and list items, the containers).
    pub added: FieldSet,
}

impl Comparison {
    /// Drops every change at or below a path of `ignored` (upstream's `ExcludeFields`).
    pub fn excluding(mut self, ignored: &FieldSet) -> Self {
        if !ignored.is_empty() {
            self.removed.remove_recursive(ignored);
            self.modified.remove_recursive(ignored);
            self.added.remove_recursive(ignored);
        }
        self
    }
}

/// Compares `lhs` (old) with `rhs` (new). Fails only when a list item has no key.
pub(crate) fn compare(lhs: &Value, rhs: &Value, ty: &Ty) -> Result<Comparison, String> {
    let mut cmp = Comparison::default();
    compare_at(Some(lhs), Some(rhs), ty, &mut Vec::new(), &mut cmp)?;
    Ok(cmp)
}

fn compare_at(
    lhs: Option<&Value>,
    rhs: Option<&Value>,
    ty: &Ty,
    path: &mut Vec<PathElement>,
    cmp: &mut Comparison,
) -> Result<(), String> {
    enum Kind<'a> {
        Map(Option<&'a Map<String, Value>>, Option<&'a Map<String, Value>>),
        List(&'a [Value], &'a [Value]),
        Leaf,
    }
    // Null and absent are wildcards that take the other side's shape.
    let (l, r) = (lhs.filter(|v| !v.is_null()), rhs.filter(|v| !v.is_null()));
    let kind = match (l.map(|v| node(v, ty)), r.map(|v| node(v, ty))) {
        (Some(Node::Map(a)), Some(Node::Map(b))) => Kind::Map(Some(a), Some(b)),
        (Some(Node::Map(a)), None) => Kind::Map(Some(a), None),
        (None, Some(Node::Map(b))) => Kind::Map(None, Some(b)),
        (Some(Node::List(a)), Some(Node::List(b))) => Kind::List(a, b),
        (Some(Node::List(a)), None) => Kind::List(a, &[]),
        (None, Some(Node::List(b))) => Kind::List(&[], b),
        _ => Kind::Leaf,
    };
    let empty = match &kind {
        Kind::Map(a, b) => a.is_none_or(|m| m.is_empty()) && b.is_none_or(|m| m.is_empty()),
        Kind::List(a, b) => a.is_empty() && b.is_empty(),
        Kind::Leaf => true,
    };
    if empty {
        // A leaf, or two empty containers: compared as values, which keeps null apart from `{}`.
        match (lhs, rhs) {
            (None, _) => cmp.added.insert(path),
            (_, None) => cmp.removed.insert(path),
            (Some(a), Some(b)) if !values_equal(a, b) => cmp.modified.insert(path),
            _ => {}
        }
        return Ok(());
    }
    match kind {
        Kind::Map(a, b) => {
            let keys: BTreeSet<&String> = a.iter().chain(b.iter()).flat_map(|m| m.keys()).collect();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                let result = compare_at(
                    a.and_then(|m| m.get(k)),
                    b.and_then(|m| m.get(k)),
                    &ty.field(k),
                    path,
                    cmp,
                );
                path.pop();
                result?;
            }
        }
        Kind::List(a, b) => compare_lists(a, b, ty, path, cmp)?,
        Kind::Leaf => {}
    }
    match (lhs, rhs) {
        (None, _) => cmp.added.insert(path),
        (_, None) => cmp.removed.insert(path),
        _ => {}
    }
    Ok(())
}

fn compare_lists(
    lhs: &[Value],
    rhs: &[Value],
    ty: &Ty,
    path: &mut Vec<PathElement>,
    cmp: &mut Comparison,
) -> Result<(), String> {
    // Items grouped by key, in first-seen order (live items first); duplicates are compared as a
    // whole.
    let mut order: Vec<PathElement> = Vec::new();
    let mut groups: BTreeMap<PathElement, (Vec<&Value>, Vec<&Value>)> = BTreeMap::new();
    for (pe, item) in item_elements(lhs, ty, path)?.into_iter().zip(lhs) {
        groups
            .entry(pe.clone())
            .or_insert_with(|| {
                order.push(pe);
                Default::default()
            })
            .0
            .push(item);
    }
    for (pe, item) in item_elements(rhs, ty, path)?.into_iter().zip(rhs) {
        groups
            .entry(pe.clone())
            .or_insert_with(|| {
                order.push(pe);
                Default::default()
            })
            .1
            .push(item);
    }
    let item_ty = ty.item();
    for pe in order {
        let (l, r) = &groups[&pe];
        path.push(pe);
        let result = match (l.len(), r.len()) {
            (0..=1, 0..=1) => compare_at(l.first().copied(), r.first().copied(), &item_ty, path, cmp),
            (2.., 2..) => {
                let same = l.len() == r.len() && l.iter().zip(r).all(|(a, b)| values_equal(a, b));
                if !same {
                    cmp.modified.insert(path);
                }
                Ok(())
            }
            (2.., _) => {
                let result = r
                    .first()
                    .map_or(Ok(()), |r| compare_at(None, Some(r), &item_ty, path, cmp));
                cmp.removed.insert(path);
                result
            }
            (_, _) => {
                let result = l
                    .first()
                    .map_or(Ok(()), |l| compare_at(Some(l), None, &item_ty, path, cmp));
                cmp.added.insert(path);
                result
            }
        };
        path.pop();
        result?;
    }
    Ok(())
}

// ---- removing fields (remove.go) ----------------------------------------------------------------

/// `value` without the fields of `set`: a member is removed with everything below it. A map or
/// list left empty by the removal is removed too (`None`). Atomic values and items without a key
/// are kept: a set never reaches inside them.
pub(crate) fn remove(value: &Value, set: &FieldSet, ty: &Ty) -> Option<Value> {
    if set.is_empty() {
        return Some(value.clone());
    }
    match node(value, ty) {
        Node::Map(map) if !map.is_empty() => {
            let mut out = Map::new();
            for (k, child) in map {
                let pe = PathElement::Field(k.clone());
                if set.has_member(&pe) {
                    continue;
                }
                let kept = match set.child(&pe) {
                    Some(sub) => remove(child, sub, &ty.field(k)),
                    None => Some(child.clone()),
                };
                if let Some(v) = kept {
                    out.insert(k.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Node::List(items) if !items.is_empty() => {
            let item_ty = ty.item();
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let Ok(pe) = item_element(item, ty) else {
                    out.push(item.clone());
                    continue;
                };
                if set.has_member(&pe) {
                    continue;
                }
                match set.child(&pe) {
                    Some(sub) => {
                        out.push(remove(item, sub, &item_ty).unwrap_or_else(|| Value::Object(Map::new())))
                    }
                    None => out.push(item.clone()),
                }
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(value.clone()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(set: &FieldSet) -> Vec<String> {
        set.paths().iter().map(Path::to_string).collect()
    }

    #[test]
    fn field_set_of_an_applied_deployment() {
        let config = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": {}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}], "args": ["a"]}
                ]}}
            }
        });
        let set = field_set(&config, &Ty::root("Deployment"));
        assert_eq!(
            set.to_fields_v1(),
            json!({
                "f:apiVersion": {}, "f:kind": {},
                "f:metadata": {"f:name": {}, "f:labels": {"f:app": {}}, "f:annotations": {}},
                "f:spec": {
                    "f:replicas": {}, "f:selector": {},
                    "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                        ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                        "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                    }}}}
                }
            })
        );
    }

    #[test]
    fn field_set_of_sets_nulls_and_duplicates() {
        let ty = Ty::root("Pod");
        let pod = json!({"metadata": {"finalizers": ["a", "b"], "ownerReferences": [{"uid": "1"}, {"uid": "1", "x": 1}]}, "spec": {"hostname": null}});
        assert_eq!(
            paths(&field_set(&pod, &ty)),
            [
                ".metadata.finalizers[=\"a\"]",
                ".metadata.finalizers[=\"b\"]",
                ".metadata.ownerReferences[uid=\"1\"]",
                ".spec.hostname"
            ]
        );
    }

    #[test]
    fn validation_of_list_keys() {
        let ty = Ty::root("Pod");
        let cases = [
            (
                json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}),
                Some(".spec.containers: duplicate entries for key [name=\"a\"]"),
            ),
            (
                json!({"spec": {"containers": [{"image": "x"}]}}),
                Some(
                    ".spec.containers: element 0: associative list with keys has an element that omits all key fields [\"name\"] (and doesn't have default values for any key fields)",
                ),
            ),
            (
                json!({"spec": {"containers": [null]}}),
                Some(".spec.containers: element 0: associative list with keys may not have a null element"),
            ),
            (
                json!({"metadata": {"finalizers": [{}]}}),
                Some(
                    ".metadata.finalizers: element 0: associative list without keys has an element that's a map type",
                ),
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 1}, {"containerPort": 1, "protocol": "UDP"}]}]}}),
                None,
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "ports": [{"containerPort": 1}, {"containerPort": 1, "protocol": "TCP"}]}]}}),
                Some(
                    ".spec.containers[name=\"a\"].ports: duplicate entries for key [containerPort=1,protocol=\"TCP\"]",
                ),
            ),
            (
                json!({"spec": {"tolerations": [{}, {}], "containers": "not a list"}}),
                None,
            ),
        ];
        for (value, want) in cases {
            assert_eq!(validate(&value, &ty, false).err().as_deref(), want, "{value}");
        }
        assert!(
            validate(
                &json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}),
                &ty,
                true
            )
            .is_ok()
        );
    }

    #[test]
    fn merge_table() {
        let ty = Ty::root("Pod");
        let cases = [
            // Maps merge; scalars are replaced.
            (
                json!({"metadata": {"labels": {"a": "1", "b": "2"}}}),
                json!({"metadata": {"labels": {"a": "x"}}}),
                json!({"metadata": {"labels": {"a": "x", "b": "2"}}}),
            ),
            // List-maps merge by key: live-only items keep their place, configured ones follow the configuration.
            (
                json!({"spec": {"containers": [{"name": "a", "image": "1", "x": 1}, {"name": "b"}, {"name": "c"}]}}),
                json!({"spec": {"containers": [{"name": "c", "image": "3"}, {"name": "a", "image": "2"}]}}),
                json!({"spec": {"containers": [{"name": "b"}, {"name": "c", "image": "3"}, {"name": "a", "image": "2", "x": 1}]}}),
            ),
            (
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "c"}]}}),
                json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}),
            ),
            // Sets union; atomic lists and maps are replaced.
            (
                json!({"metadata": {"finalizers": ["a", "b"]}}),
                json!({"metadata": {"finalizers": ["c", "a"]}}),
                json!({"metadata": {"finalizers": ["c", "a", "b"]}}),
            ),
            (
                json!({"spec": {"tolerations": [{"key": "a"}]}}),
                json!({"spec": {"tolerations": [{"key": "b"}]}}),
                json!({"spec": {"tolerations": [{"key": "b"}]}}),
            ),
            (
                json!({"spec": {"nodeSelector": {"a": "1"}}}),
                json!({"spec": {"nodeSelector": {"b": "2"}}}),
                json!({"spec": {"nodeSelector": {"b": "2"}}}),
            ),
            // An empty configured map keeps the live one; shapes that differ are replaced.
            (
                json!({"metadata": {"labels": {"a": "1"}}}),
                json!({"metadata": {"labels": {}}}),
                json!({"metadata": {"labels": {"a": "1"}}}),
            ),
            (
                json!({"spec": {"x": [1]}}),
                json!({"spec": {"x": {"y": 1}}}),
                json!({"spec": {"x": {"y": 1}}}),
            ),
            (
                json!({"spec": {"x": null}}),
                json!({"spec": {"x": {"y": 1}}}),
                json!({"spec": {"x": {"y": 1}}}),
            ),
            // A live list with duplicates keeps them unless the configuration names that key.
            (
                json!({"spec": {"containers": [{"name": "a", "v": 1}, {"name": "a", "v": 2}, {"name": "b"}]}}),
                json!({"spec": {"containers": [{"name": "b", "v": 3}]}}),
                json!({"spec": {"containers": [{"name": "a", "v": 1}, {"name": "a", "v": 2}, {"name": "b", "v": 3}]}}),
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "v": 1}, {"name": "a", "v": 2}]}}),
                json!({"spec": {"containers": [{"name": "a", "w": 3}]}}),
                json!({"spec": {"containers": [{"name": "a", "w": 3}]}}),
            ),
        ];
        for (live, config, want) in cases {
            assert_eq!(
                merge(Some(&live), Some(&config), &ty).unwrap(),
                Some(want),
                "{live} <- {config}"
            );
        }
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert!(merge(Some(&json!({})), Some(&dup), &ty).is_err());
    }

    #[test]
    fn compare_table() {
        let ty = Ty::root("Pod");
        // (old, new, removed, modified, added)
        type Paths = &'static [&'static str];
        let cases: [(Value, Value, Paths, Paths, Paths); 5] = [
            (
                json!({"spec": {"a": 1, "b": 2}}),
                json!({"spec": {"a": 1, "b": 3, "c": 4}}),
                &[],
                &[".spec.b"],
                &[".spec.c"],
            ),
            (
                json!({"spec": {"m": {"x": 1}}}),
                json!({"spec": {}}),
                &[".spec.m", ".spec.m.x"],
                &[],
                &[],
            ),
            (
                json!({"spec": {"containers": [{"name": "a", "image": "1"}]}}),
                json!({"spec": {"containers": [{"name": "b", "image": "1"}]}}),
                &[
                    ".spec.containers[name=\"a\"]",
                    ".spec.containers[name=\"a\"].image",
                    ".spec.containers[name=\"a\"].name",
                ],
                &[],
                &[
                    ".spec.containers[name=\"b\"]",
                    ".spec.containers[name=\"b\"].image",
                    ".spec.containers[name=\"b\"].name",
                ],
            ),
            (
                json!({"spec": {"tolerations": [1]}}),
                json!({"spec": {"tolerations": [2]}}),
                &[],
                &[".spec.tolerations"],
                &[],
            ),
            (
                json!({"spec": {"e": {}}}),
                json!({"spec": {"e": null}}),
                &[],
                &[".spec.e"],
                &[],
            ),
        ];
        for (old, new, removed, modified, added) in cases {
            let cmp = compare(&old, &new, &ty).unwrap();
            assert_eq!(paths(&cmp.removed), removed, "removed {old} -> {new}");
            assert_eq!(paths(&cmp.modified), modified, "modified {old} -> {new}");
            assert_eq!(paths(&cmp.added), added, "added {old} -> {new}");
        }
    }

    #[test]
    fn remove_table() {
        let ty = Ty::root("Pod");
        let obj = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "2"}], "tolerations": [1]}
        });
        let f = |n: &str| PathElement::Field(n.to_owned());
        let b = PathElement::Key(vec![("name".into(), json!("b"))]);
        let a = PathElement::Key(vec![("name".into(), json!("a"))]);
        let cases = [
            (
                FieldSet::from_paths([&[f("metadata"), f("labels"), f("a")][..]]),
                json!({"metadata": {"labels": {"b": "2"}}, "spec": obj["spec"]}),
            ),
            (
                FieldSet::from_paths([
                    &[f("metadata"), f("labels"), f("a")][..],
                    &[f("metadata"), f("labels"), f("b")],
                ]),
                json!({"spec": obj["spec"]}),
            ),
            (
                FieldSet::from_paths([
                    &[f("spec"), f("containers"), b][..],
                    &[f("spec"), f("containers"), a, f("image")],
                ]),
                json!({"metadata": obj["metadata"], "spec": {"containers": [{"name": "a"}], "tolerations": [1]}}),
            ),
            (
                FieldSet::from_paths([&[f("spec")][..]]),
                json!({"metadata": obj["metadata"]}),
            ),
        ];
        for (set, want) in cases {
            assert_eq!(remove(&obj, &set, &ty), Some(want), "{set}");
        }
    }
}
