//! The kinds served and what differs between them: names, scope, storage key, defaults and
//! validation (upstream's `pkg/registry/<group>/<kind>/strategy.go`, in miniature). Adding a kind is
//! one entry in [`RESOURCES`] plus its strategy functions.

use serde_json::{Value, json};

use super::object;

/// One served resource.
#[derive(Debug)]
pub struct ResourceInfo {
    /// Plural resource name in the URL, e.g. `configmaps`.
    pub resource: &'static str,
    /// Kind of its objects, e.g. `ConfigMap`.
    pub kind: &'static str,
    /// `apiVersion` of its objects.
    pub api_version: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Fills defaults on create (upstream's defaulting plus `PrepareForCreate`).
    pub prepare_for_create: fn(&mut Value),
    /// Field errors of an object about to be stored: (field path, reason, message).
    pub validate: fn(&Value) -> Vec<(String, String, String)>,
}

/// Every resource the server serves.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        resource: "namespaces",
        kind: "Namespace",
        api_version: "v1",
        namespaced: false,
        prepare_for_create: namespace_prepare_for_create,
        validate: |obj| object::validate_name(obj, object::NameRule::Label),
    },
    ResourceInfo {
        resource: "configmaps",
        kind: "ConfigMap",
        api_version: "v1",
        namespaced: true,
        prepare_for_create: |_| {},
        validate: configmap_validate,
    },
];

/// Looks up a resource by its plural name.
pub fn find(resource: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.resource == resource)
}

impl ResourceInfo {
    /// The storage key prefix of every object of this resource (in `namespace`, if given).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.resource),
            _ => format!("/registry/{}/", self.resource),
        }
    }

    /// The storage key of one object: `/registry/<resource>/[<namespace>/]<name>`.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }

    /// The kind of this resource's list (`ConfigMapList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// New namespaces are Active and carry the `kubernetes` finalizer, as upstream's strategy sets.
fn namespace_prepare_for_create(obj: &mut Value) {
    obj["spec"] = json!({ "finalizers": ["kubernetes"] });
    obj["status"] = json!({ "phase": "Active" });
}

/// ConfigMap keys must be valid config keys and data must fit the 1 MiB object limit.
fn configmap_validate(obj: &Value) -> Vec<(String, String, String)> {
    let mut errs = object::validate_name(obj, object::NameRule::Subdomain);
    let mut total = 0usize;
    for field in ["data", "binaryData"] {
        let Some(map) = obj.get(field).and_then(Value::as_object) else { continue };
        for (key, value) in map {
            total += key.len() + value.as_str().map_or(0, str::len);
            let ok = !key.is_empty()
                && key.len() <= 253
                && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !ok {
                errs.push((
                    format!("{field}[{key}]"),
                    "FieldValueInvalid".into(),
                    format!("Invalid value: {key:?}: a valid config key must consist of alphanumeric characters, '-', '_' or '.'"),
                ));
            }
        }
    }
    if total > 1024 * 1024 {
        errs.push(("data".into(), "FieldValueTooLong".into(), "Too long: must have at most 1048576 bytes".into()));
    }
    errs
}
