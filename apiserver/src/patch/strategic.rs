//! Strategic merge patch (`application/strategic-merge-patch+json`): the patch format kubectl sends
//! for built-in kinds, from `kubectl apply` (client-side) and `kubectl patch`.
//!
//! This mirrors the server half of `apimachinery/pkg/util/strategicpatch/patch.go`
//! (`StrategicMergeMapPatch` with `MergeParallelList` and `IgnoreUnmatchedNulls`: `mergeMap`,
//! `mergeSlice`, `mergePatchIntoOriginal`, `normalizeElementOrder`, `applyRetainKeysDirective`),
//! written anew over `serde_json::Value` and driven by the table in [`super::schema`]:
//!
//! - maps merge key by key; `null` deletes a key; a value of another type replaces;
//! - a list field with `patchStrategy: merge` and a merge key merges element-wise by that key, new
//!   elements are added, and every patch element must carry the key; a merge list of scalars is a
//!   de-duplicated union; every other list is replaced whole;
//! - directives: `$patch: replace | delete` in a map (and `merge`, the default, accepted),
//!   `{"<key>": v, "$patch": "delete"}` and `{"$patch": "replace"}` as list elements, `$retainKeys`,
//!   `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` beside the list they govern;
//!   any other `$patch` value, `$patch: merge` in a list, or an unknown `$name/<field>` key is an error;
//! - the order of a merged list: patch elements in patch (or `$setElementOrder`) order, with
//!   server-only elements kept where they were relative to the ones around them.
//!
//! Where we differ from upstream, on purpose:
//! - a value taken from the patch where the object had nothing to merge with (a new key, a changed
//!   type, an atomic list, a new list element) is itself merged into an empty value, so its nulls
//!   are dropped and its directives applied; upstream copies it, stripping only `$patch` maps;
//! - `$patch: merge` in a map is the default merge (upstream: "unknown patch type");
//! - unknown `$name/<field>` directive keys are rejected (upstream stores them as fields);
//! - `$deleteFromPrimitiveList/<field>` runs after the field's other changes (upstream: in Go's
//!   random map order, which only matters for a patch that both adds and deletes one value);
//! - scalars compare by JSON value (so `1` and `1.0` are one element), where Go compares its
//!   decoded types; and the few upstream cases that would panic or error on a malformed stored
//!   object (a `$setElementOrder` over a non-list field) treat that field as absent.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
};

use serde_json::{Map, Value};

use super::{
    PatchError, decode_object, json_type,
    schema::{FieldMeta, PatchStrategy, SchemaRef},
};

type Object = Map<String, Value>;

const DIRECTIVE_MARKER: &str = "$patch";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";

// Upstream's `mergepatch` error texts, so clients and people searching for them find the same words.
const ERR_BAD_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_BAD_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_BAD_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_NO_LIST_OF_LISTS: &str = "lists of lists are not supported";
const ERR_MERGE_IN_LIST: &str = "merging lists cannot yet be specified in the patch";

/// Applies a strategic merge patch body to `target` (which must be a JSON object), using `kind` to
/// know which lists merge by which key (see [`super::schema_for`]).
pub fn apply_strategic_merge_patch(
    target: &Value,
    patch: &[u8],
    kind: &SchemaRef,
) -> Result<Value, PatchError> {
    let patch = decode_object(patch, "a strategic merge patch")?;
    let Value::Object(original) = target else {
        return Err(PatchError::Invalid(format!(
            "expected a map, but received {}",
            json_type(target)
        )));
    };
    merge_map(original.clone(), &patch, *kind).map(Value::Object)
}

// ---- maps ---------------------------------------------------------------------------------------

/// Merges a patch map into an original map (upstream `mergeMap`), honouring a `$patch` directive.
fn merge_map(original: Object, patch: &Object, schema: SchemaRef) -> Result<Object, PatchError> {
    let Some(directive) = patch.get(DIRECTIVE_MARKER) else {
        return merge_fields(original, patch, schema);
    };
    match directive.as_str() {
        // The map becomes the patch's other keys, as if merged into nothing.
        Some("replace") => merge_fields(Object::new(), patch, schema),
        // Upstream leaves an empty map behind rather than removing the key; so do we.
        Some("delete") => Ok(Object::new()),
        Some("merge") => merge_fields(original, patch, schema),
        _ => Err(unknown_patch_type(directive, patch)),
    }
}

/// The keys of one patch map, sorted by the role they play.
struct MapPatch<'a> {
    retain_keys: Option<&'a Value>,
    /// (`<field>`, order list) for each `$setElementOrder/<field>`.
    set_element_order: Vec<(&'a str, &'a Value)>,
    /// (`<field>`, values) for each `$deleteFromPrimitiveList/<field>`.
    delete_from_primitive_list: Vec<(&'a str, &'a Value)>,
    /// Ordinary fields.
    fields: Vec<(&'a str, &'a Value)>,
}

impl<'a> MapPatch<'a> {
    fn parse(patch: &'a Object) -> Result<Self, PatchError> {
        let mut parsed = Self {
            retain_keys: None,
            set_element_order: Vec::new(),
            delete_from_primitive_list: Vec::new(),
            fields: Vec::new(),
        };
        for (key, value) in patch {
            if key == DIRECTIVE_MARKER {
                continue; // handled by merge_map
            } else if key == RETAIN_KEYS_DIRECTIVE {
                parsed.retain_keys = Some(value);
            } else if key.starts_with(SET_ELEMENT_ORDER_PREFIX) {
                let field = parallel_list_field(key, SET_ELEMENT_ORDER_PREFIX, ERR_BAD_SET_ELEMENT_ORDER)?;
                parsed.set_element_order.push((field, value));
            } else if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
                let field =
                    parallel_list_field(key, DELETE_FROM_PRIMITIVE_LIST_PREFIX, ERR_BAD_PRIMITIVE_LIST)?;
                parsed.delete_from_primitive_list.push((field, value));
            } else if key.starts_with('$') && key.contains('/') {
                // Shaped like a parallel-list directive but not one we know: a typo or a newer
                // client; storing it as a field (upstream) would only hide the mistake.
                return Err(PatchError::BadRequest(format!("unknown patch directive {key:?}")));
            } else {
                parsed.fields.push((key, value));
            }
        }
        Ok(parsed)
    }
}

/// `<field>` out of `<prefix>/<field>` (upstream `extractKey`).
fn parallel_list_field<'a>(key: &'a str, prefix: &str, err: &str) -> Result<&'a str, PatchError> {
    key.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|field| !field.is_empty())
        .ok_or_else(|| PatchError::BadRequest(err.to_owned()))
}

/// Merges the fields of a patch map (its `$patch` directive already handled).
fn merge_fields(mut original: Object, patch: &Object, schema: SchemaRef) -> Result<Object, PatchError> {
    let parts = MapPatch::parse(patch)?;
    if let Some(retain) = parts.retain_keys {
        apply_retain_keys(&mut original, retain, &parts.fields)?;
    }
    // Ordered lists first: their patch list is merged there and must not be merged twice.
    let mut ordered = HashSet::new();
    for &(field, order) in &parts.set_element_order {
        set_element_order(&mut original, field, order, patch.get(field), schema.field(field))?;
        ordered.insert(field);
    }
    for &(key, value) in &parts.fields {
        if !ordered.contains(key) {
            merge_field(&mut original, key, value, schema.field(key))?;
        }
    }
    for &(field, values) in &parts.delete_from_primitive_list {
        delete_from_primitive_list(&mut original, field, values)?;
    }
    Ok(original)
}

/// Merges one patch field into the original map.
fn merge_field(original: &mut Object, key: &str, patch: &Value, meta: FieldMeta) -> Result<(), PatchError> {
    let merged = match (original.remove(key), patch) {
        // null deletes; a null for a key the object lacks is simply dropped (IgnoreUnmatchedNulls).
        (_, Value::Null) => None,
        (Some(Value::Object(o)), Value::Object(p)) if meta.strategy != PatchStrategy::Replace => {
            Some(Value::Object(merge_map(o, p, meta.schema)?))
        }
        (Some(Value::Array(o)), Value::Array(p)) => Some(Value::Array(merge_list(o, p, meta)?)),
        // Absent, of another type, a scalar, or a `replace` map: the patch value wins.
        (_, p) => fresh(p, meta)?,
    };
    if let Some(value) = merged {
        original.insert(key.to_owned(), value);
    }
    Ok(())
}

/// What a patch value becomes where there is nothing to merge it with: itself merged into an empty
/// value, so nulls vanish and directives take effect. `None` means "no value" (null, or a map
/// deleted with `$patch: delete`).
fn fresh(patch: &Value, meta: FieldMeta) -> Result<Option<Value>, PatchError> {
    Ok(match patch {
        Value::Null => None,
        Value::Object(p) if p.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some("delete") => None,
        Value::Object(p) => Some(Value::Object(merge_map(Object::new(), p, meta.schema)?)),
        Value::Array(p) => Some(Value::Array(merge_list(Vec::new(), p, meta)?)),
        scalar => Some(scalar.clone()),
    })
}

/// `$retainKeys`: drop original keys not in the list; every non-null patch field must be listed.
fn apply_retain_keys(
    original: &mut Object,
    retain: &Value,
    fields: &[(&str, &Value)],
) -> Result<(), PatchError> {
    let Value::Array(list) = retain else {
        return Err(PatchError::BadRequest(ERR_BAD_RETAIN_KEYS.into()));
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    if fields
        .iter()
        .any(|(key, value)| !value.is_null() && !keep.contains(key))
    {
        return Err(PatchError::BadRequest(ERR_BAD_RETAIN_KEYS.into()));
    }
    original.retain(|key, _| keep.contains(key.as_str()));
    Ok(())
}

/// `$deleteFromPrimitiveList/<field>`: remove these scalars from the list, if there is one.
fn delete_from_primitive_list(original: &mut Object, field: &str, values: &Value) -> Result<(), PatchError> {
    let Value::Array(values) = values else {
        return Err(PatchError::BadRequest(ERR_BAD_PRIMITIVE_LIST.into()));
    };
    if values.iter().any(|v| v.is_object() || v.is_array()) {
        return Err(PatchError::BadRequest(ERR_BAD_PRIMITIVE_LIST.into()));
    }
    // A missing list stays missing: deleting from nothing must not create an empty list.
    if let Some(Value::Array(list)) = original.get_mut(field) {
        let doomed: HashSet<String> = values.iter().map(identity).collect();
        list.retain(|v| !doomed.contains(&identity(v)));
    }
    Ok(())
}

// ---- lists --------------------------------------------------------------------------------------

/// Merges a patch list into an original list according to the field's strategy.
fn merge_list(original: Vec<Value>, patch: &[Value], meta: FieldMeta) -> Result<Vec<Value>, PatchError> {
    match meta.strategy {
        PatchStrategy::Merge { key } => merge_merging_list(original, patch, key, meta.schema),
        PatchStrategy::Default | PatchStrategy::Replace => atomic_list(patch, meta.schema),
    }
}

/// An atomic list is the patch list; its elements are cleaned like any fresh value, and directive
/// elements (`{"$patch": ...}`) have nothing to act on, so they are dropped.
fn atomic_list(patch: &[Value], schema: SchemaRef) -> Result<Vec<Value>, PatchError> {
    let element = FieldMeta {
        schema,
        ..FieldMeta::DEFAULT
    };
    let mut out = Vec::with_capacity(patch.len());
    for item in patch {
        match item {
            Value::Object(m) if m.contains_key(DIRECTIVE_MARKER) => {}
            Value::Null => out.push(Value::Null),
            _ => out.extend(fresh(item, element)?),
        }
    }
    Ok(out)
}

/// The JSON type of list elements, which must agree across the original and the patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ElementKind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The common element kind of two lists (upstream `sliceElementType`).
fn element_kind(original: &[Value], patch: &[Value]) -> Result<Option<ElementKind>, PatchError> {
    let mut kind = None;
    for value in original.iter().chain(patch) {
        let this = match value {
            Value::Array(_) => return Err(PatchError::Invalid(ERR_NO_LIST_OF_LISTS.into())),
            Value::Null => ElementKind::Null,
            Value::Bool(_) => ElementKind::Bool,
            Value::Number(_) => ElementKind::Number,
            Value::String(_) => ElementKind::String,
            Value::Object(_) => ElementKind::Object,
        };
        match kind {
            Some(previous) if previous != this => {
                let lists = format!("[{} {}]", go_fmt_list(original), go_fmt_list(patch));
                return Err(PatchError::Invalid(format!(
                    "list element types are not identical: {lists}"
                )));
            }
            _ => kind = Some(this),
        }
    }
    Ok(kind)
}

/// A list with `patchStrategy: merge` (upstream `mergeSlice`).
fn merge_merging_list(
    original: Vec<Value>,
    patch: &[Value],
    key: Option<&str>,
    schema: SchemaRef,
) -> Result<Vec<Value>, PatchError> {
    match (element_kind(&original, patch)?, key) {
        (None, _) => Ok(original),
        (Some(ElementKind::Object), Some(key)) => merge_keyed_list(original, patch, key, schema),
        (Some(ElementKind::Object), None) => Err(PatchError::Invalid(format!(
            "cannot merge lists without merge key for {}",
            schema.name()
        ))),
        (Some(_), _) => Ok(merge_scalar_list(original, patch)),
    }
}

/// A merge list of scalars: the union, each value once, ordered like the patch where it speaks.
fn merge_scalar_list(original: Vec<Value>, patch: &[Value]) -> Vec<Value> {
    let server_order = Order::new(original.iter().map(identity));
    let patch_order = Order::new(patch.iter().map(identity));
    let mut seen = HashSet::new();
    let unique = original
        .into_iter()
        .chain(patch.iter().cloned())
        .filter_map(|value| {
            let id = identity(&value);
            seen.insert(id.clone()).then_some((id, value))
        });
    let (in_patch, server_only) = unique.partition(|(id, _)| patch_order.contains(id));
    normalize_order(in_patch, server_only, &patch_order, &server_order)
}

/// A merge list of objects keyed by `key` (upstream `mergeSliceWithSpecialElements` followed by
/// `mergeSliceWithoutSpecialElements` and the order normalisation).
fn merge_keyed_list(
    original: Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: SchemaRef,
) -> Result<Vec<Value>, PatchError> {
    let special = SpecialElements::collect(patch, key)?;
    if special.replace {
        return special
            .plain
            .into_iter()
            .map(|m| merge_map(Object::new(), m, schema).map(Value::Object))
            .collect();
    }
    let mut current = original;
    current.retain(|item| key_identity(item, key).is_none_or(|id| !special.deletions.contains(&id)));
    let server_order = Order::new(current.iter().filter_map(|item| key_identity(item, key)));

    // Index by merge key (first occurrence, as upstream's linear search finds) to merge in place.
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, item) in current.iter().enumerate() {
        if let Some(id) = key_identity(item, key) {
            index.entry(id).or_insert(i);
        }
    }
    let mut patch_ids = Vec::with_capacity(special.plain.len());
    for element in special.plain {
        let id = merge_key_of(element, key)?;
        match index.get(&id).and_then(|&i| current.get_mut(i)) {
            Some(Value::Object(existing)) => {
                let taken = std::mem::take(existing);
                *existing = merge_map(taken, element, schema)?;
            }
            _ => {
                index.insert(id.clone(), current.len());
                current.push(Value::Object(merge_map(Object::new(), element, schema)?));
            }
        }
        patch_ids.push(id);
    }

    let patch_order = Order::new(patch_ids);
    let (in_patch, server_only) = partition(current, Some(key), &patch_order)?;
    Ok(normalize_order(
        in_patch,
        server_only,
        &patch_order,
        &server_order,
    ))
}

/// The elements of a keyed patch list, with the `$patch` directive elements taken out.
struct SpecialElements<'a> {
    /// Elements without a directive, to merge.
    plain: Vec<&'a Object>,
    /// Merge-key identities of elements to delete.
    deletions: HashSet<String>,
    /// A `{"$patch": "replace"}` element: the list becomes `plain`.
    replace: bool,
}

impl<'a> SpecialElements<'a> {
    fn collect(patch: &'a [Value], key: &str) -> Result<Self, PatchError> {
        let mut out = Self {
            plain: Vec::new(),
            deletions: HashSet::new(),
            replace: false,
        };
        for item in patch {
            let Value::Object(element) = item else {
                return Err(PatchError::Invalid(format!(
                    "expected a map, but received {}",
                    json_type(item)
                )));
            };
            let Some(directive) = element.get(DIRECTIVE_MARKER) else {
                out.plain.push(element);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    out.deletions.insert(merge_key_of(element, key)?);
                }
                // Keep going: the other directive elements must still be valid and are dropped.
                Some("replace") => out.replace = true,
                Some("merge") => return Err(PatchError::Invalid(ERR_MERGE_IN_LIST.into())),
                _ => return Err(unknown_patch_type(directive, element)),
            }
        }
        Ok(out)
    }
}

/// `$setElementOrder/<field>` (upstream `mergePatchIntoOriginal`): merge the field's patch list, if
/// any, then put the elements named in `order` first-class in that order, server-only elements
/// staying near their old neighbours.
fn set_element_order(
    original: &mut Object,
    field: &str,
    order: &Value,
    patch_list: Option<&Value>,
    meta: FieldMeta,
) -> Result<(), PatchError> {
    let Value::Array(order) = order else {
        return Err(PatchError::BadRequest(ERR_BAD_SET_ELEMENT_ORDER.into()));
    };
    let key = meta.merge_key();
    let patch_list = match patch_list {
        None => None,
        Some(Value::Array(list)) => Some(list.as_slice()),
        Some(_) => return Err(PatchError::BadRequest(ERR_BAD_SET_ELEMENT_ORDER.into())),
    };
    if let Some(list) = patch_list {
        validate_patch_order(list, order, key)?;
    }
    // A stored non-list (null, typically) has nothing to order: treat it as absent.
    let original_list = match original.remove(field) {
        Some(Value::Array(list)) => Some(list),
        _ => None,
    };
    let original_ids: Vec<String> = original_list
        .iter()
        .flatten()
        .filter_map(|item| list_identity(item, key).ok())
        .collect();
    let merged = match (original_list, patch_list) {
        (Some(list), None) => list,
        (None, Some(patch)) => merge_list(Vec::new(), patch, meta)?,
        (Some(list), Some(patch)) => merge_list(list, patch, meta)?,
        (None, None) => return Ok(()),
    };
    let wanted = Order::new(
        order
            .iter()
            .map(|item| list_identity(item, key))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let (in_order, server_only) = partition(merged, key, &wanted)?;
    let server_order = match (meta.strategy, patch_list) {
        (PatchStrategy::Merge { key: Some(key) }, Some(patch)) => {
            let merged_ids: HashSet<&str> = in_order
                .iter()
                .chain(&server_only)
                .map(|(id, _)| id.as_str())
                .collect();
            server_order_seen_by_upstream(original_ids, &merged_ids, patch, key)
        }
        _ => Order::new(original_ids),
    };
    original.insert(
        field.to_owned(),
        Value::Array(normalize_order(in_order, server_only, &wanted, &server_order)),
    );
    Ok(())
}

/// The "live order" upstream sorts server-only elements by after a keyed merge under
/// `$setElementOrder`. Go's `originalFieldValue` shares its backing array with the merge's working
/// list, so after `k` deletions its last `k` slots show the first `k` elements the merge appended.
/// The resulting order is observable (where a renamed container lands relative to injected ones
/// after `kubectl apply`) and upstream's tests pin it, so we reproduce the view: the original
/// elements that survived, then the appended ones, cut to the original length.
fn server_order_seen_by_upstream(
    original_ids: Vec<String>,
    merged_ids: &HashSet<&str>,
    patch: &[Value],
    key: &str,
) -> Order {
    let replaced = patch
        .iter()
        .any(|item| item.get(DIRECTIVE_MARKER).and_then(Value::as_str) == Some("replace"));
    if replaced {
        return Order::new(original_ids); // upstream merges into a fresh slice: no aliasing
    }
    let visible = original_ids.len();
    let kept: Vec<String> = original_ids
        .into_iter()
        .filter(|id| merged_ids.contains(id.as_str()))
        .collect();
    let mut seen: HashSet<String> = kept.iter().cloned().collect();
    let appended = patch
        .iter()
        .filter(|item| item.get(DIRECTIVE_MARKER).is_none())
        .filter_map(|item| key_identity(item, key))
        .filter(|id| seen.insert(id.clone()));
    Order::new(kept.into_iter().chain(appended).take(visible))
}

/// The patch list's elements must appear in `$setElementOrder` in the same relative order
/// (upstream `validatePatchWithSetOrderList`); directive elements are exempt.
fn validate_patch_order(patch: &[Value], order: &[Value], key: Option<&str>) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let order_ids = order
        .iter()
        .map(|item| list_identity(item, key))
        .collect::<Result<Vec<_>, _>>()?;
    let mut next = order_ids.iter();
    for item in patch {
        if item.as_object().is_some_and(|m| m.contains_key(DIRECTIVE_MARKER)) {
            continue;
        }
        let id = list_identity(item, key)?;
        // Advance through the order list to this element; running out means it is missing or
        // out of order.
        if !next.by_ref().any(|candidate| *candidate == id) {
            return Err(PatchError::Invalid(format!(
                "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER_PREFIX} list:\n{}\n",
                go_fmt_list(patch),
                go_fmt_list(order),
            )));
        }
    }
    Ok(())
}

// ---- ordering -----------------------------------------------------------------------------------

/// A list element with its identity (merge-key value, or the scalar itself).
type Tagged = (String, Value);

/// Splits list elements into those `order` names and the rest (the server-only ones).
fn partition(
    items: Vec<Value>,
    key: Option<&str>,
    order: &Order,
) -> Result<(Vec<Tagged>, Vec<Tagged>), PatchError> {
    let (mut named, mut rest) = (Vec::new(), Vec::new());
    for item in items {
        let id = list_identity(&item, key)?;
        if order.contains(&id) {
            named.push((id, item))
        } else {
            rest.push((id, item))
        }
    }
    Ok((named, rest))
}

/// Positions of element identities in a list (first occurrence wins, like upstream's `index`).
struct Order(HashMap<String, usize>);

impl Order {
    fn new(ids: impl IntoIterator<Item = String>) -> Self {
        let mut positions = HashMap::new();
        for (i, id) in ids.into_iter().enumerate() {
            positions.entry(id).or_insert(i);
        }
        Self(positions)
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.0.get(id).copied()
    }

    fn contains(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }
}

/// Upstream `normalizeElementOrder`: sort the patch's elements by the patch order and the
/// server-only ones by their old order, then interleave them (`mergeSortedSlice`).
fn normalize_order(
    mut in_patch: Vec<Tagged>,
    mut server_only: Vec<Tagged>,
    patch_order: &Order,
    server_order: &Order,
) -> Vec<Value> {
    // Stable sorts; anything not found keeps its relative place at the end.
    in_patch.sort_by_key(|(id, _)| patch_order.position(id).unwrap_or(usize::MAX));
    server_only.sort_by_key(|(id, _)| server_order.position(id).unwrap_or(usize::MAX));
    merge_sorted(server_only, in_patch, server_order)
}

/// Interleaves server-only elements (`left`) with patch elements (`right`), keeping each side's
/// order. A server-only element goes first only when both it and the next patch element were in
/// the server list and it came earlier there; so new patch elements come before the server-only
/// elements that follow them, exactly as upstream places them.
fn merge_sorted(left: Vec<Tagged>, right: Vec<Tagged>, server_order: &Order) -> Vec<Value> {
    let mut out = Vec::with_capacity(left.len() + right.len());
    let mut left = left.into_iter().peekable();
    let mut right = right.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((l, _)), Some((r, _))) => {
                matches!((server_order.position(l), server_order.position(r)), (Some(a), Some(b)) if a < b)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next.map(|(_, value)| value));
    }
    out
}

// ---- identities and messages --------------------------------------------------------------------

/// A canonical string for comparing scalars (and, rarely, merge-key values that are not scalars):
/// numbers compare by value, everything else by its JSON text.
fn identity(value: &Value) -> String {
    match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            // Integral floats within i64 range compare equal to the integer they denote.
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

/// The merge-key identity of a list element, if it is an object that has the key.
fn key_identity(item: &Value, key: &str) -> Option<String> {
    item.as_object()?.get(key).map(identity)
}

/// The identity of an element of a list merged by `key`, or of a scalar when there is no key.
fn list_identity(item: &Value, key: Option<&str>) -> Result<String, PatchError> {
    match (key, item) {
        (None, _) => Ok(identity(item)),
        (Some(key), Value::Object(m)) => merge_key_of(m, key),
        (Some(_), other) => Err(PatchError::Invalid(format!(
            "expected a map, but received {}",
            json_type(other)
        ))),
    }
}

/// The merge-key identity of a patch element, which must have the key.
fn merge_key_of(element: &Object, key: &str) -> Result<String, PatchError> {
    element.get(key).map(identity).ok_or_else(|| {
        PatchError::Invalid(format!(
            "map: {} does not contain declared merge key: {key}",
            go_fmt_map(element)
        ))
    })
}

fn unknown_patch_type(directive: &Value, map: &Object) -> PatchError {
    PatchError::Invalid(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(directive),
        go_fmt_map(map)
    ))
}

/// A value printed as Go's `%v` prints decoded JSON (`map[k:v]`, `[a b]`), so messages read like
/// upstream's.
fn go_fmt(value: &Value) -> String {
    let mut out = String::new();
    write_go(&mut out, value);
    out
}

fn go_fmt_map(map: &Object) -> String {
    let mut out = String::new();
    write_go_map(&mut out, map);
    out
}

fn go_fmt_list(list: &[Value]) -> String {
    let mut out = String::new();
    write_go_list(&mut out, list);
    out
}

fn write_go(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("<nil>"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => out.push_str(s),
        Value::Array(list) => write_go_list(out, list),
        Value::Object(map) => write_go_map(out, map),
    }
}

fn write_go_list(out: &mut String, list: &[Value]) {
    out.push('[');
    for (i, item) in list.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        write_go(out, item);
    }
    out.push(']');
}

fn write_go_map(out: &mut String, map: &Object) {
    out.push_str("map[");
    // serde_json's map is sorted by key, as Go's fmt sorts map keys.
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push(':');
        write_go(out, value);
    }
    out.push(']');
}
