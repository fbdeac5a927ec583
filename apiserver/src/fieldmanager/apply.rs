//! Server-side apply: merging an applied configuration into the live object, with ownership.
//!
//! Mirrors structured-merge-diff's `merge/update.go` (`Updater.Apply`, `prune`,
//! `addBackOwnedItems`, `addBackDanglingItems`) and the upstream managers around it:
//! `structuredmerge.go`, `stripmeta.go`, `skipnonapplied.go` (a live object without managedFields
//! gets a `before-first-apply` owner for everything it has), `managedfieldsupdater.go` (the
//! timestamp), `lastappliedmanager.go`/`lastappliedupdater.go` (see [`super::lastapplied`]).

use serde_json::{Map, Value};

use super::conflict::ApplyError;
use super::fieldpath::{FieldSet, values_equal};
use super::lastapplied::{self, KUBECTL};
use super::managed::{self, Entry, Managed, Operation, identifier};
use super::typed::{field_set, merge, remove, validate};
use super::typeinfo::Ty;
use super::update::{
    TransferError, Writer, managed_fields_of, manager_name, record_update, set_managed_fields,
    transfer_ownership,
};

/// The manager upstream gives the fields of an object that is applied to for the first time and
/// has no managedFields.
const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Applies `config` (the body of an `application/apply-patch+yaml` PATCH, as JSON) for `manager`
/// to `live` (`None` when the object does not exist yet: the apply creates it) and returns the
/// object to store, with `metadata.managedFields` updated.
///
/// - The configuration is merged into the live object: maps field by field, list-maps item by item
///   (by the kind's list keys), sets by value; atomic lists and scalars are replaced.
/// - A field the configuration sets to a different value than the live one, or adds, and that
///   another manager owns, is a conflict: [`ApplyError::Conflicts`] unless `force`, which moves
///   the field to `manager`.
/// - Fields `manager` applied last time, no longer applies, and no one else owns are removed.
/// - `manager`'s `Apply` entry becomes the configuration's fields (without `apiVersion`, `kind`,
///   name, namespace and other server-set metadata), with the configuration's apiVersion. Its time
///   becomes `now` when the object changes, or when the entry is new.
/// - `status` in the configuration is ignored: the live status is kept and never owned.
///
/// `kind` chooses the list keys (see [`crate::patch::schema`]). The caller checks that `config`
/// names the object and version being patched, and treats a `resourceVersion` in it as a
/// precondition; server-set metadata in `config` is merged like any other field.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    kind: &str,
    now: &str,
) -> Result<Value, ApplyError> {
    let api_version = check_config(config)?;
    let ty = Ty::root(kind);
    validate(config, &ty, false).map_err(|e| {
        ApplyError::InvalidObject(format!(
            "failed to create typed patch object ({}): {e}",
            describe(config)
        ))
    })?;
    let mut live_obj = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    set_managed_fields(&mut live_obj, None);
    validate(&live_obj, &ty, true).map_err(|e| {
        ApplyError::InvalidObject(format!(
            "failed to create typed live object ({}): {e}",
            describe(config)
        ))
    })?;
    let managed = Managed::decode(live.and_then(managed_fields_of))
        .map_err(|e| ApplyError::InvalidObject(format!("failed to decode managed fields: {e}")))?;

    let request = Request {
        live: &live_obj,
        exists: live.is_some(),
        config,
        manager: manager_name(manager),
        api_version,
        ty,
        now,
    };
    let (mut object, managed) = match request.apply(managed.clone(), force) {
        Err(ApplyError::Conflicts(conflicts)) if manager == KUBECTL => {
            // Conflicts over fields kubectl's client-side apply recorded, still at their recorded
            // values, are not conflicts: the apply takes them over.
            let Some(allowed) = lastapplied::allowed_conflicts(&live_obj, api_version, &ty) else {
                return Err(ApplyError::Conflicts(conflicts));
            };
            let remaining: Vec<_> = conflicts
                .into_iter()
                .filter(|c| !allowed.has(&c.path.0))
                .collect();
            if !remaining.is_empty() {
                return Err(ApplyError::Conflicts(remaining));
            }
            request.apply(managed, true)?
        }
        result => result?,
    };
    if manager == KUBECTL {
        lastapplied::sync_annotation(&mut object, config);
    }
    set_managed_fields(&mut object, managed.encode());
    Ok(object)
}

/// The checks upstream makes before merging; returns the configuration's apiVersion.
fn check_config(config: &Value) -> Result<&str, ApplyError> {
    let Value::Object(map) = config else {
        return Err(ApplyError::BadRequest(
            "the applied configuration must be a JSON object".to_owned(),
        ));
    };
    let non_empty = |name: &str| map.get(name).and_then(Value::as_str).filter(|s| !s.is_empty());
    if non_empty("kind").is_none() {
        return Err(ApplyError::BadRequest(format!(
            "Object 'Kind' is missing in '{config}'"
        )));
    }
    let Some(api_version) = non_empty("apiVersion") else {
        return Err(ApplyError::BadRequest(format!(
            "Object 'apiVersion' is missing in '{config}'"
        )));
    };
    if let Some(metadata) = map.get("metadata").filter(|m| !m.is_object() && !m.is_null()) {
        return Err(ApplyError::InvalidObject(format!(
            "failed to create typed patch object ({}): .metadata: expected map, got {metadata}",
            describe(config)
        )));
    }
    if managed_fields_of(config).is_some_and(|m| !m.is_null()) {
        return Err(ApplyError::BadRequest(
            "metadata.managedFields must be nil".to_owned(),
        ));
    }
    Ok(api_version)
}

/// `namespace/name; group/version, Kind=Kind`, as upstream names objects in apply errors.
fn describe(config: &Value) -> String {
    let get = |path: &[&str]| {
        path.iter()
            .try_fold(config, |v, k| v.get(*k))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let api_version = get(&["apiVersion"]);
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!(
        "{}/{}; {group}/{version}, Kind={}",
        get(&["metadata", "namespace"]),
        get(&["metadata", "name"]),
        get(&["kind"])
    )
}

/// One apply, possibly attempted twice (the second time forced, see `lastapplied`).
struct Request<'a> {
    /// The live object without managedFields (`{}` when it does not exist).
    live: &'a Value,
    exists: bool,
    config: &'a Value,
    manager: &'a str,
    api_version: &'a str,
    ty: Ty,
    now: &'a str,
}

impl Request<'_> {
    fn apply(&self, mut managed: Managed, force: bool) -> Result<(Value, Managed), ApplyError> {
        let invalid = |e: String| ApplyError::InvalidObject(format!("failed to merge config: {e}"));
        let ty = &self.ty;
        if managed.is_empty() && self.exists {
            let mut empty = Value::Object(Map::new());
            ty.fill_struct_fields(&mut empty);
            let mut live = self.live.clone();
            ty.fill_struct_fields(&mut live);
            let writer = Writer {
                manager: BEFORE_FIRST_APPLY,
                api_version: self.api_version,
                subresource: "",
                now: self.now,
            };
            managed = record_update(&empty, &live, ty, managed, &writer).map_err(invalid)?;
        }

        // Status is reset to the live one, as the registry strategies do for the main resource.
        let mut config = self.config.clone();
        if let Some(map) = config.as_object_mut() {
            map.remove("status");
        }
        let merged = merge(Some(self.live), Some(&config), ty)
            .map_err(invalid)?
            .unwrap_or_else(|| Value::Object(Map::new()));

        let ignored = managed::ignored_fields("");
        let id = identifier(self.manager, Operation::Apply, self.api_version, "");
        let previous = managed.remove(&id);
        // Until ownership has moved the entry keeps the identifying fields: prune must not remove
        // the name because nobody owns it.
        managed.insert(Entry {
            manager: self.manager.to_owned(),
            operation: Operation::Apply,
            subresource: String::new(),
            api_version: self.api_version.to_owned(),
            time: previous.as_ref().and_then(|e| e.time.clone()),
            set: field_set(&config, ty).recursive_difference(&ignored),
        });
        let new_object = prune(&merged, &managed, previous.as_ref().map(|e| &e.set), ty);
        match transfer_ownership(self.live, &new_object, ty, &mut managed, &id, force, &ignored) {
            Ok(_) => {}
            Err(TransferError::Conflicts(conflicts)) => return Err(ApplyError::Conflicts(conflicts)),
            Err(TransferError::Invalid(e)) => return Err(invalid(e)),
        }
        let changed = !self.exists || !values_equal(self.live, &new_object);
        if let Some(entry) = managed.get_mut(&id) {
            entry.set = entry.set.difference(&managed::server_fields());
            // Upstream stamps the time only when the object changed, which leaves a new entry
            // without one if its apply changed nothing; a new entry gets a time here.
            if changed || entry.time.is_none() {
                entry.time = Some(self.now.to_owned());
            }
        }
        managed.drop_empty();
        Ok((new_object, managed))
    }
}

/// Removes from `merged` the fields the applier applied last time (`last`) and no longer applies,
/// unless another manager owns them (upstream's `prune`). The applier's new fields are already in
/// `managed`.
///
/// As upstream, in three steps over field sets in which map fields with owned fields below them
/// are members too: remove everything under `last`; add back what anyone owns (removing what is
/// left unowned below what was removed); then add back whatever was removed that was not in
/// `last` itself (defaults and other unowned fields that were only caught under a removed parent).
fn prune(merged: &Value, managed: &Managed, last: Option<&FieldSet>, ty: &Ty) -> Value {
    let Some(last) = last.filter(|l| !l.is_empty()) else {
        return merged.clone();
    };
    let or_empty = |v: Option<Value>| v.unwrap_or_else(|| Value::Object(Map::new()));
    let fields = |v: &Value| field_set(v, ty).with_named_fields_as_members();
    let last = last.with_named_fields_as_members();
    let merged_set = fields(merged);
    let owned = managed.all_fields().with_named_fields_as_members();

    let pruned = or_empty(remove(merged, &last, ty));
    let unowned = merged_set.difference(&fields(&pruned).union(&owned));
    let pruned = or_empty(remove(merged, &unowned, ty));
    let dangling = merged_set.difference(&fields(&pruned)).intersection(&last);
    or_empty(remove(merged, &dangling, ty))
}
