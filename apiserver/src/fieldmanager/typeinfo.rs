//! What server-side apply needs to know about a field's type: is a map granular or atomic, and is a
//! list atomic, a set (`listType=set`) or a list-map (`listType=map` with its `listMapKey`s)?
//!
//! Upstream reads this from the OpenAPI schema (`x-kubernetes-list-type`, `-list-map-keys`,
//! `-map-type`) generated from the `+listType`/`+structType`/`+mapType` markers in `k8s.io/api`.
//! Here it is derived from the strategic-merge-patch table in [`crate::patch::schema`] (merge lists
//! are list-maps keyed by their merge key, merged primitive lists are sets, everything else is
//! atomic, `replace` fields are atomic), plus a few facts where apply and strategic merge patch
//! disagree, listed in [`OVERRIDES`]. Those belong in the schema table; they live here because that
//! file has another owner.

use serde_json::Value;

use crate::patch::schema::{PatchStrategy, SchemaRef, schema_for};

/// One key field of a list-map, with the default upstream fills in when an item omits it
/// (`protocol` of ports defaults to `TCP`, so `{containerPort: 80}` is keyed
/// `{"containerPort":80,"protocol":"TCP"}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

const fn key(name: &'static str) -> KeyField {
    KeyField { name, default: None }
}

const fn key_or(name: &'static str, default: &'static str) -> KeyField {
    KeyField {
        name,
        default: Some(default),
    }
}

/// The key fields of a list-map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// The single merge key from the patch table.
    One(&'static str),
    /// A compound key, from [`OVERRIDES`].
    Many(&'static [KeyField]),
}

impl Keys {
    pub fn fields(self) -> Vec<KeyField> {
        match self {
            Self::One(name) => vec![key(name)],
            Self::Many(fields) => fields.to_vec(),
        }
    }
}

/// How a value of this type merges, is compared and is owned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Maps are granular (owned field by field); lists are atomic.
    Granular,
    /// Owned and replaced as a whole, map or list.
    Atomic,
    /// A list of scalars owned item by item (`v:` elements).
    Set,
    /// A list of objects owned item by item, identified by key fields (`k:` elements).
    ListMap(Keys),
}

/// A value's type: how it behaves itself, and the schema of its fields (or of its items, for a
/// list).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ty {
    pub shape: Shape,
    schema: SchemaRef,
}

/// Apply facts that differ from the strategic-merge-patch table, by (type name in the patch table,
/// field). From the markers in `k8s.io/api` (`core/v1`, `apps/v1`, `batch/v1`) and
/// `metav1.LabelSelector` (`+structType=atomic`).
const OVERRIDES: &[(&str, &str, Shape)] = &[
    // Compound list-map keys; strategic merge patch uses only the first.
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        Shape::ListMap(Keys::Many(&[key("containerPort"), key_or("protocol", "TCP")])),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        Shape::ListMap(Keys::Many(&[key("port"), key_or("protocol", "TCP")])),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "topologySpreadConstraints",
        Shape::ListMap(Keys::Many(&[key("topologyKey"), key("whenUnsatisfiable")])),
    ),
    // Atomic maps and structs (`+mapType=atomic`, LabelSelector's `+structType=atomic`).
    ("io.k8s.api.core.v1.PodSpec", "nodeSelector", Shape::Atomic),
    ("io.k8s.api.core.v1.ServiceSpec", "selector", Shape::Atomic),
    ("io.k8s.api.apps.v1.DeploymentSpec", "selector", Shape::Atomic),
    // The patch table's shared spec of ReplicaSet, StatefulSet, DaemonSet, Job and
    // ReplicationController: the first four have a LabelSelector, the last an atomic map.
    ("spec", "selector", Shape::Atomic),
    // Strategic merge patch merges these by `ip`; apply treats them as atomic.
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", Shape::Atomic),
];

/// Fields that upstream's Go types hold as non-pointer structs beyond those the patch table
/// describes (see [`Ty::is_struct_field`]).
const EXTRA_STRUCT_FIELDS: &[(&str, &str)] = &[
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy"),
    ("spec", "updateStrategy"),
];

/// Lists that upstream's Go types hold without `omitempty`: null, not absent, in an empty object.
/// Null is a wildcard in comparisons, so adding items to one does not make the list itself owned
/// (`f:containers` has no `"."`, `f:volumes` does).
const NULL_FIELDS: &[(&str, &str)] = &[("io.k8s.api.core.v1.PodSpec", "containers")];

/// Field names that are non-pointer structs in upstream's Go types wherever the patch table knows
/// their type (see [`Ty::is_struct_field`]).
const STRUCT_FIELD_CANDIDATES: &[&str] = &["metadata", "spec", "status", "template", "jobTemplate"];

impl Ty {
    /// The type of a whole object of `kind`.
    pub fn root(kind: &str) -> Self {
        Self::of(schema_for(kind))
    }

    /// A granular value of the given schema.
    pub fn of(schema: SchemaRef) -> Self {
        Self {
            shape: Shape::Granular,
            schema,
        }
    }

    /// The type of field `name` of a map of this type.
    pub fn field(&self, name: &str) -> Self {
        let meta = self.schema.field(name);
        let type_name = self.schema.name();
        let shape = OVERRIDES
            .iter()
            .find(|(t, f, _)| *t == type_name && *f == name)
            .map(|(_, _, shape)| *shape)
            .unwrap_or(match meta.strategy {
                PatchStrategy::Default => Shape::Granular,
                PatchStrategy::Replace => Shape::Atomic,
                PatchStrategy::Merge { key: Some(key) } => Shape::ListMap(Keys::One(key)),
                PatchStrategy::Merge { key: None } => Shape::Set,
            });
        Self {
            shape,
            schema: meta.schema,
        }
    }

    /// The type of the items of a list of this type. Lists nested directly in lists are atomic.
    pub fn item(&self) -> Self {
        Self::of(self.schema)
    }

    /// Whether the list of this type is associative (a set or a list-map), i.e. owned by item.
    pub fn is_associative_list(&self) -> bool {
        matches!(self.shape, Shape::Set | Shape::ListMap(_))
    }

    /// Whether field `name` is a non-pointer struct in upstream's Go type, which is therefore
    /// present (as `{}`) even in an empty object. Upstream compares an update against such a
    /// zero-valued object, so those fields never show up as added themselves (no `"."` for
    /// `f:spec` in a creator's entry). Guessing too many is harmless: the guess is only used to add
    /// the same `{}` to both sides of a comparison.
    pub fn is_struct_field(&self, name: &str) -> bool {
        let type_name = self.schema.name();
        if EXTRA_STRUCT_FIELDS
            .iter()
            .any(|(t, f)| *t == type_name && *f == name)
        {
            return true;
        }
        STRUCT_FIELD_CANDIDATES.contains(&name)
            && self.schema.field(name).schema.name() != SchemaRef::ANY.name()
    }

    /// Adds `{}` for every missing non-pointer struct field (see [`Ty::is_struct_field`]),
    /// recursively, and null for the lists in [`NULL_FIELDS`], so the object looks like upstream's
    /// typed Go value.
    pub fn fill_struct_fields(&self, value: &mut Value) {
        let Value::Object(map) = value else { return };
        let type_name = self.schema.name();
        for (_, name) in NULL_FIELDS.iter().filter(|(t, _)| *t == type_name) {
            map.entry(*name).or_insert(Value::Null);
        }
        let names = STRUCT_FIELD_CANDIDATES
            .iter()
            .copied()
            .chain(EXTRA_STRUCT_FIELDS.iter().map(|(_, f)| *f));
        for name in names {
            if !self.is_struct_field(name) {
                continue;
            }
            let child = map
                .entry(name)
                .or_insert_with(|| Value::Object(Default::default()));
            if child.is_null() {
                *child = Value::Object(Default::default());
            }
            self.field(name).fill_struct_fields(child);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(kind: &str, path: &str) -> Ty {
        path.split('.').fold(Ty::root(kind), |ty, part| match part {
            "[]" => ty.item(),
            name => ty.field(name),
        })
    }

    const CONTAINER_PORT_KEYS: &[KeyField] = &[key("containerPort"), key_or("protocol", "TCP")];
    const SERVICE_PORT_KEYS: &[KeyField] = &[key("port"), key_or("protocol", "TCP")];

    #[test]
    fn shapes_of_built_in_fields() {
        let container_ports = Shape::ListMap(Keys::Many(CONTAINER_PORT_KEYS));
        let cases = [
            (
                "Deployment",
                "spec.template.spec.containers",
                Shape::ListMap(Keys::One("name")),
            ),
            (
                "Deployment",
                "spec.template.spec.containers.[].ports",
                container_ports,
            ),
            ("Pod", "spec.containers.[].env", Shape::ListMap(Keys::One("name"))),
            ("Pod", "spec.containers.[].command", Shape::Granular),
            ("Pod", "spec.tolerations", Shape::Granular),
            ("Pod", "spec.nodeSelector", Shape::Atomic),
            ("Pod", "metadata.finalizers", Shape::Set),
            (
                "Pod",
                "metadata.ownerReferences",
                Shape::ListMap(Keys::One("uid")),
            ),
            ("Pod", "metadata.labels", Shape::Granular),
            ("Service", "spec.selector", Shape::Atomic),
            (
                "Service",
                "spec.ports",
                Shape::ListMap(Keys::Many(SERVICE_PORT_KEYS)),
            ),
            ("Deployment", "spec.selector", Shape::Atomic),
            // The overrides keyed by the patch table's shared spec type must stay reachable.
            ("ReplicaSet", "spec.selector", Shape::Atomic),
            ("StatefulSet", "spec.selector", Shape::Atomic),
            ("Job", "spec.selector", Shape::Atomic),
            ("CronJob", "spec.jobTemplate.spec.selector", Shape::Atomic),
            ("PodDisruptionBudget", "spec.selector", Shape::Atomic),
            ("Widget", "spec.anything", Shape::Granular),
        ];
        for (kind, path, shape) in cases {
            assert_eq!(at(kind, path).shape, shape, "{kind} {path}");
        }
    }

    #[test]
    fn zero_valued_struct_fields() {
        let mut deployment = json!({"spec": {"template": null}});
        Ty::root("Deployment").fill_struct_fields(&mut deployment);
        assert_eq!(
            deployment,
            json!({"metadata": {}, "spec": {"template": {"metadata": {}, "spec": {"containers": null}}, "strategy": {}}, "status": {}})
        );
        let mut widget = json!({"spec": {}});
        Ty::root("Widget").fill_struct_fields(&mut widget);
        assert_eq!(widget, json!({"spec": {}}));
        let mut config_map = json!({});
        Ty::root("ConfigMap").fill_struct_fields(&mut config_map);
        assert_eq!(config_map, json!({"metadata": {}}));
    }
}
