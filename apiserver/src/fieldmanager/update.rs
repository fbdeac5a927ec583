//! Recording ownership for writes that are not applies (create, update, patch), and the ownership
//! transfer both kinds of write share.
//!
//! Mirrors structured-merge-diff's `merge/update.go` (`Updater.update`, `Updater.Update`) and the
//! upstream managers wrapped around it: `managedfieldsupdater.go` (the "current-operation" trick
//! and the timestamp), `skipnonapplied.go` (objects without managedFields stay untracked until
//! their first apply), `buildmanagerinfo.go` and `fieldmanager.go` (`decodeLiveOrNew`: a client
//! may send managedFields with an update, or `[]` to clear them).

use serde_json::{Map, Value};

use super::conflict::Conflict;
use super::fieldpath::{FieldSet, Path};
use super::managed::{self, Entry, Managed, Operation, identifier};
use super::typed::{Comparison, compare};
use super::typeinfo::Ty;

/// The identifier under which an update's own changes are collected before they are merged into
/// the manager's entry. Real identifiers are JSON objects, so it cannot collide with one.
const CURRENT_OPERATION: &str = "current-operation";

/// Why ownership could not be moved.
#[derive(Debug)]
pub(crate) enum TransferError {
    /// Other managers own fields that changed, and the write is not forced.
    Conflicts(Vec<Conflict>),
    /// The objects could not be compared (a list item without a key).
    Invalid(String),
}

/// Moves ownership for the change `old` → `new` made by the manager `workflow`: every other
/// manager loses the fields that changed or were added (a conflict unless `force`) and the fields
/// that were removed; managers left owning nothing are dropped. Changes at or below `ignored` are
/// not considered. Returns the comparison (upstream's `Updater.update`).
pub(crate) fn transfer_ownership(
    old: &Value,
    new: &Value,
    ty: &Ty,
    managed: &mut Managed,
    workflow: &str,
    force: bool,
    ignored: &FieldSet,
) -> Result<Comparison, TransferError> {
    let cmp = compare(old, new, ty)
        .map_err(TransferError::Invalid)?
        .excluding(ignored);
    let changed = cmp.modified.union(&cmp.added);
    let conflicts: Vec<(String, FieldSet)> = managed
        .iter()
        .filter(|(id, _)| id.as_str() != workflow)
        .map(|(id, entry)| (id.clone(), entry.set.intersection(&changed)))
        .filter(|(_, set)| !set.is_empty())
        .collect();
    if !force && !conflicts.is_empty() {
        let list = conflicts
            .iter()
            .filter_map(|(id, set)| Some((managed.get(id)?, set)))
            .flat_map(|(entry, set)| set.paths().into_iter().map(move |path| conflict(entry, path)))
            .collect();
        return Err(TransferError::Conflicts(list));
    }
    for (id, set) in &conflicts {
        if let Some(entry) = managed.get_mut(id) {
            entry.set = entry.set.difference(set);
        }
    }
    if !cmp.removed.is_empty() {
        for (_, entry) in managed.iter_mut().filter(|(id, _)| id.as_str() != workflow) {
            entry.set = entry.set.difference(&cmp.removed);
        }
    }
    managed.drop_empty();
    Ok(cmp)
}

fn conflict(entry: &Entry, path: Path) -> Conflict {
    Conflict {
        manager: entry.manager.clone(),
        operation: entry.operation,
        api_version: (entry.operation == Operation::Update).then(|| entry.api_version.clone()),
        subresource: Some(entry.subresource.clone()).filter(|s| !s.is_empty()),
        field: path.to_string(),
        path,
    }
}

/// The manager name upstream records when a request names none.
pub(crate) fn manager_name(manager: &str) -> &str {
    if manager.is_empty() { "unknown" } else { manager }
}

/// Who writes, through what, and when: the identity of an `Update` entry and its time.
pub(crate) struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    /// Empty for the main resource.
    pub subresource: &'a str,
    pub now: &'a str,
}

/// Records an update by `writer` from `old` to `new` (both already filled with the kind's
/// zero-valued struct fields): the fields it changed or added become its own, merged into its
/// existing `Update` entry for the same API version and subresource, whose time becomes `now`. An
/// update that changes nothing leaves the entries as they were.
pub(crate) fn record_update(
    old: &Value,
    new: &Value,
    ty: &Ty,
    mut managed: Managed,
    writer: &Writer<'_>,
) -> Result<Managed, String> {
    let Writer {
        manager,
        api_version,
        subresource,
        now,
    } = *writer;
    let ignored = managed::ignored_fields(subresource);
    let cmp = match transfer_ownership(old, new, ty, &mut managed, CURRENT_OPERATION, true, &ignored) {
        Ok(cmp) => cmp,
        Err(TransferError::Invalid(e)) => return Err(e),
        // A forced transfer reports no conflicts; this arm only keeps the match total.
        Err(TransferError::Conflicts(_)) => return Err("unexpected conflicts".to_owned()),
    };
    let mut set = cmp.modified.merge(cmp.added);
    set.remove_recursive(&ignored);
    set.remove_all(&managed::server_fields());
    if set.is_empty() {
        return Ok(managed);
    }
    let manager = manager_name(manager);
    let id = identifier(manager, Operation::Update, api_version, subresource);
    let previous = managed.remove(&id).map(|e| e.set).unwrap_or_default();
    managed.insert(Entry {
        manager: manager.to_owned(),
        operation: Operation::Update,
        subresource: subresource.to_owned(),
        api_version: api_version.to_owned(),
        time: Some(now.to_owned()),
        set: set.merge(previous),
    });
    Ok(managed)
}

/// `metadata.managedFields` of an object, if it has any.
pub(crate) fn managed_fields_of(object: &Value) -> Option<&Value> {
    object.get("metadata")?.get("managedFields")
}

/// Replaces (or, for `None`, removes) `metadata.managedFields`.
pub(crate) fn set_managed_fields(object: &mut Value, list: Option<Value>) {
    let Some(map) = object.as_object_mut() else { return };
    match list {
        Some(list) => {
            // A metadata that is not a map is left alone (apply refuses such configurations).
            let metadata = map.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
            if let Some(metadata) = metadata.as_object_mut() {
                metadata.insert("managedFields".into(), list);
            }
        }
        None => {
            if let Some(metadata) = map.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("managedFields");
            }
        }
    }
}

fn str_at<'a>(object: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(object, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Records a write that is not an apply and returns `new` with `metadata.managedFields` updated.
///
/// `old` is the stored object (`None` for a create), `new` the object about to be stored,
/// `subresource` the subresource written through (`Some("status")`, `Some("scale")`; `None` for
/// the main resource). The fields whose values changed or that were added become owned by
/// `manager` (operation `Update`, the API version of `new`, `time` = `now`) and are taken away
/// from every other manager; removed fields leave every manager's set. Through the main resource
/// and `scale`, changes to `status` are not recorded; through `status`, changes to `spec` are not.
///
/// As upstream:
/// - if `new` carries managedFields, they are used instead of the stored ones (kubectl's
///   migration patch rewrites them this way); an empty list (`[]` or `[{}]`) clears them. Writes
///   through a subresource always start from the stored ones.
/// - an existing object without managedFields (and no reset) stays without them: ownership is
///   only tracked from its creation or its first apply on.
/// - if the objects cannot be compared (a list item without its key), `new` keeps the stored
///   managedFields.
pub fn update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) -> Value {
    let mut out = new.clone();
    if !out.is_object() {
        return out;
    }
    let subresource = subresource.unwrap_or_default();
    let stored = old.and_then(managed_fields_of);
    let sent = managed_fields_of(new);
    let decode_stored = || Managed::decode(stored).unwrap_or_default();
    let managed = if !subresource.is_empty() {
        decode_stored()
    } else if managed::is_reset(sent) {
        Managed::default()
    } else {
        match Managed::decode(sent) {
            Ok(m) if !m.is_empty() => m,
            _ => decode_stored(),
        }
    };
    set_managed_fields(&mut out, None);
    let is_create = old.is_none_or(|o| str_at(o, &["metadata", "uid"]).is_empty());
    if managed.is_empty() && !is_create {
        return out;
    }

    let kind = Some(str_at(new, &["kind"]))
        .filter(|k| !k.is_empty())
        .or(old.map(|o| str_at(o, &["kind"])));
    let ty = Ty::root(kind.unwrap_or_default());
    let api_version = Some(str_at(new, &["apiVersion"]))
        .filter(|v| !v.is_empty())
        .or(old.map(|o| str_at(o, &["apiVersion"])))
        .unwrap_or_default();
    let mut old_obj = old.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    set_managed_fields(&mut old_obj, None);
    ty.fill_struct_fields(&mut old_obj);
    let mut new_obj = out.clone();
    ty.fill_struct_fields(&mut new_obj);

    let writer = Writer {
        manager,
        api_version,
        subresource,
        now,
    };
    match record_update(&old_obj, &new_obj, &ty, managed, &writer) {
        Ok(managed) => set_managed_fields(&mut out, managed.encode()),
        // Upstream's UpdateNoErrors: keep what was stored rather than lose it.
        Err(_) => set_managed_fields(&mut out, stored.cloned()),
    }
    out
}
