//! `metadata.managedFields`: decoding it into one field set per manager, and encoding it back.
//!
//! Mirrors `apimachinery/pkg/util/managedfields/internal/managedfields.go` (decode, encode, the
//! manager identifier and the entry order), `stripmeta.go` (fields nobody owns) and the reset
//! fields of the registry strategies (`status` is never owned through the main resource).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::fieldpath::{FieldSet, PathElement};

/// The operation a managedFields entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Server-side apply (`application/apply-patch+yaml`).
    Apply,
    /// Any other write: create, update, patch.
    Update,
}

impl Operation {
    /// The wire name, `Apply` or `Update`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One decoded entry: who owns which fields, through which operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub manager: String,
    pub operation: Operation,
    /// Empty for the main resource.
    pub subresource: String,
    pub api_version: String,
    pub time: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Upstream's manager identifier (`BuildManagerIdentifier`), the key entries are merged by.
    pub fn identifier(&self) -> String {
        identifier(
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
    }
}

/// The identifier of a manager: the entry as JSON without fields, type and time, and without the
/// API version for appliers (an applier is the same manager whichever version it applies). Go's
/// field order and `omitempty`, so that sorting by it sorts as upstream does.
pub(crate) fn identifier(
    manager: &str,
    operation: Operation,
    api_version: &str,
    subresource: &str,
) -> String {
    let mut id = String::from("{");
    if !manager.is_empty() {
        id.push_str(&format!("\"manager\":{},", Value::from(manager)));
    }
    id.push_str(&format!("\"operation\":\"{}\"", operation.as_str()));
    if operation == Operation::Update && !api_version.is_empty() {
        id.push_str(&format!(",\"apiVersion\":{}", Value::from(api_version)));
    }
    if !subresource.is_empty() {
        id.push_str(&format!(",\"subresource\":{}", Value::from(subresource)));
    }
    id.push('}');
    id
}

/// All entries of an object, by identifier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Managed(BTreeMap<String, Entry>);

impl Managed {
    /// Decodes `metadata.managedFields` (absent or null: no entries). Fails on an entry upstream
    /// would reject: an unknown operation, no apiVersion, a fieldsType other than `FieldsV1`.
    pub fn decode(list: Option<&Value>) -> Result<Self, String> {
        let items = match list {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err("managedFields must be a list".to_owned()),
        };
        let mut managed = Self::default();
        for (i, item) in items.iter().enumerate() {
            let str_field = |name: &str| {
                item.get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            let operation = match item.get("operation").and_then(Value::as_str) {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                _ => return Err("operation must be `Apply` or `Update`".to_owned()),
            };
            let api_version = str_field("apiVersion");
            if api_version.is_empty() {
                return Err("apiVersion must not be empty".to_owned());
            }
            match item.get("fieldsType").and_then(Value::as_str).unwrap_or_default() {
                "FieldsV1" => {}
                "" => return Err(format!("missing fieldsType in managed fields entry {i}")),
                other => {
                    return Err(format!(
                        "invalid fieldsType {other:?} in managed fields entry {i}"
                    ));
                }
            }
            let set = match item.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(fields) => {
                    FieldSet::from_fields_v1(fields).map_err(|e| format!("error decoding set: {e}"))?
                }
            };
            managed.insert(Entry {
                manager: str_field("manager"),
                operation,
                subresource: str_field("subresource"),
                api_version,
                time: item.get("time").and_then(Value::as_str).map(str::to_owned),
                set,
            });
        }
        Ok(managed)
    }

    /// The `metadata.managedFields` list, in upstream's order: appliers first, then by time,
    /// manager, apiVersion and subresource. `None` when there are no entries (the field is then
    /// left out of the object).
    pub fn encode(&self) -> Option<Value> {
        if self.0.is_empty() {
            return None;
        }
        let mut entries: Vec<&Entry> = self.0.values().collect();
        entries.sort_by(|p, q| {
            p.operation
                .cmp(&q.operation)
                .then_with(|| seconds(p.time.as_deref()).cmp(&seconds(q.time.as_deref())))
                .then_with(|| p.manager.cmp(&q.manager))
                .then_with(|| p.api_version.cmp(&q.api_version))
                .then_with(|| p.subresource.cmp(&q.subresource))
        });
        let list = entries
            .into_iter()
            .map(|e| {
                let mut entry = Map::new();
                if !e.manager.is_empty() {
                    entry.insert("manager".into(), json!(e.manager));
                }
                entry.insert("operation".into(), json!(e.operation.as_str()));
                entry.insert("apiVersion".into(), json!(e.api_version));
                if let Some(time) = &e.time {
                    entry.insert("time".into(), json!(time));
                }
                entry.insert("fieldsType".into(), json!("FieldsV1"));
                entry.insert("fieldsV1".into(), e.set.to_fields_v1());
                if !e.subresource.is_empty() {
                    entry.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(entry)
            })
            .collect();
        Some(Value::Array(list))
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry with this identifier.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.0.get(id)
    }

    /// The entry with this identifier, to change.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut Entry> {
        self.0.get_mut(id)
    }

    /// Adds or replaces the entry with the same identifier.
    pub fn insert(&mut self, entry: Entry) {
        self.0.insert(entry.identifier(), entry);
    }

    /// Removes the entry with this identifier.
    pub fn remove(&mut self, id: &str) -> Option<Entry> {
        self.0.remove(id)
    }

    /// The entries with their identifiers, in identifier order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Entry)> {
        self.0.iter()
    }

    /// The entries to change, with their identifiers.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Entry)> {
        self.0.iter_mut()
    }

    /// Drops entries that own nothing.
    pub fn drop_empty(&mut self) {
        self.0.retain(|_, e| !e.set.is_empty());
    }

    /// Every field anyone owns.
    pub fn all_fields(&self) -> FieldSet {
        self.0.values().fold(FieldSet::new(), |acc, e| acc.union(&e.set))
    }
}

/// Unix seconds of an RFC 3339 time, 0 when absent or unreadable (upstream sorts a nil time as 0).
fn seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

/// Whether a client asked to clear managedFields: an empty list, or a list of one empty entry
/// (upstream's `isResetManagedFields`).
pub(crate) fn is_reset(list: Option<&Value>) -> bool {
    match list {
        Some(Value::Array(items)) => match items.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}

fn field_path(names: &[&str]) -> Vec<PathElement> {
    names
        .iter()
        .map(|n| PathElement::Field((*n).to_owned()))
        .collect()
}

/// Fields set by the server or identifying the object, never owned by anyone (upstream's
/// `stripmeta.go`). Only these paths themselves: `metadata.labels` below `metadata` stays.
pub(crate) fn server_fields() -> FieldSet {
    let paths = [
        &["apiVersion"][..],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ]
    .map(field_path);
    FieldSet::from_paths(paths.iter().map(Vec::as_slice))
}

/// Subtrees a write through `subresource` may not take ownership of (the registry strategies'
/// `GetResetFields`): `status` through the main resource and every subresource but `status`;
/// `spec` through `status`.
pub(crate) fn ignored_fields(subresource: &str) -> FieldSet {
    let ignored = if subresource == "status" { "spec" } else { "status" };
    FieldSet::from_paths([field_path(&[ignored]).as_slice()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_follow_go_field_order_and_omitempty() {
        let cases = [
            (
                ("kubectl", Operation::Apply, "apps/v1", ""),
                r#"{"manager":"kubectl","operation":"Apply"}"#,
            ),
            (
                ("kubectl", Operation::Update, "apps/v1", "scale"),
                r#"{"manager":"kubectl","operation":"Update","apiVersion":"apps/v1","subresource":"scale"}"#,
            ),
            (
                ("", Operation::Update, "v1", ""),
                r#"{"operation":"Update","apiVersion":"v1"}"#,
            ),
        ];
        for ((m, op, v, sub), want) in cases {
            assert_eq!(identifier(m, op, v, sub), want);
        }
    }

    #[test]
    fn decode_encode_round_trip_and_order() {
        let list = json!([
            {"manager": "b", "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:02Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:x": {}}}},
            {"manager": "c", "operation": "Update", "apiVersion": "v1", "time": "2025-01-01T00:00:01Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:y": {}}}, "subresource": "status"},
            {"manager": "a", "operation": "Apply", "apiVersion": "v1", "time": "2025-01-01T00:00:09Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {"f:z": {}}}},
        ]);
        let managed = Managed::decode(Some(&list)).unwrap();
        let encoded = managed.encode().unwrap();
        let managers: Vec<&str> = encoded
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["manager"].as_str().unwrap())
            .collect();
        assert_eq!(managers, ["a", "c", "b"]);
        assert_eq!(Managed::decode(Some(&encoded)).unwrap(), managed);
        assert_eq!(Managed::default().encode(), None);
    }

    #[test]
    fn decode_rejects_what_upstream_rejects() {
        let cases = [
            (
                json!([{"operation": "Patch", "apiVersion": "v1", "fieldsType": "FieldsV1"}]),
                "operation must be `Apply` or `Update`",
            ),
            (
                json!([{"operation": "Apply", "fieldsType": "FieldsV1"}]),
                "apiVersion must not be empty",
            ),
            (
                json!([{"operation": "Apply", "apiVersion": "v1"}]),
                "missing fieldsType in managed fields entry 0",
            ),
            (
                json!([{"operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"}]),
                "invalid fieldsType \"FieldsV2\" in managed fields entry 0",
            ),
            (json!({}), "managedFields must be a list"),
        ];
        for (list, want) in cases {
            assert_eq!(Managed::decode(Some(&list)).unwrap_err(), want);
        }
        assert!(is_reset(Some(&json!([]))));
        assert!(is_reset(Some(&json!([{}]))));
        assert!(!is_reset(Some(&json!(null))));
        assert!(!is_reset(None));
    }
}
