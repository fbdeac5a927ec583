//! Typed decoding of request bodies: every object is read through its Kubernetes type (k8s-openapi),
//! as upstream's decoder does, so wrong types are a 400 and unknown fields are found.
//!
//! The check is a round trip: JSON → typed struct → JSON. A field present in the request but gone after
//! the round trip is one the type does not have; with `fieldValidation=Strict` that is a 400
//! ("strict decoding error: unknown field …"), with `Warn` (the default) a `Warning` header, with
//! `Ignore` nothing. What is stored is the round-tripped object, so unknown fields are dropped exactly
//! as upstream drops them.

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{registry::ResourceInfo, status::ApiError};

/// The `fieldValidation` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Unknown or duplicate fields fail the request.
    Strict,
    /// They are reported in `Warning` headers (upstream's default).
    #[default]
    Warn,
    /// They are dropped silently.
    Ignore,
}

impl FieldValidation {
    /// Parses the query parameter (absent = Warn); anything else is a 400.
    pub fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }
}

/// Runs `$body` with `$t` bound to the Rust type of the resource `$info` (one of the kinds in the registry):
/// `Some(result)`, or `None` for a kind without a compiled-in type. The one place kinds meet types.
#[macro_export]
macro_rules! with_kind_type {
    ($info:expr, $t:ident => $body:expr) => {{
        use k8s_openapi::api::{
            apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
            discovery::v1 as discovery,
        };
        let info: &$crate::server::registry::ResourceInfo = $info;
        match (info.group, info.kind) {
            ("events.k8s.io", "Event") => {
                type $t = k8s_openapi::api::events::v1::Event;
                Some($body)
            }
            (_, kind) => match kind {
                "Namespace" => {
                    type $t = core::Namespace;
                    Some($body)
                }
                "ConfigMap" => {
                    type $t = core::ConfigMap;
                    Some($body)
                }
                "Secret" => {
                    type $t = core::Secret;
                    Some($body)
                }
                "ServiceAccount" => {
                    type $t = core::ServiceAccount;
                    Some($body)
                }
                "Pod" => {
                    type $t = core::Pod;
                    Some($body)
                }
                "Service" => {
                    type $t = core::Service;
                    Some($body)
                }
                "Endpoints" => {
                    type $t = core::Endpoints;
                    Some($body)
                }
                "Node" => {
                    type $t = core::Node;
                    Some($body)
                }
                "Event" => {
                    type $t = core::Event;
                    Some($body)
                }
                "Deployment" => {
                    type $t = apps::Deployment;
                    Some($body)
                }
                "ReplicaSet" => {
                    type $t = apps::ReplicaSet;
                    Some($body)
                }
                "StatefulSet" => {
                    type $t = apps::StatefulSet;
                    Some($body)
                }
                "DaemonSet" => {
                    type $t = apps::DaemonSet;
                    Some($body)
                }
                "ControllerRevision" => {
                    type $t = apps::ControllerRevision;
                    Some($body)
                }
                "Job" => {
                    type $t = batch::Job;
                    Some($body)
                }
                "EndpointSlice" => {
                    type $t = discovery::EndpointSlice;
                    Some($body)
                }
                "Lease" => {
                    type $t = coordination::Lease;
                    Some($body)
                }
                _ => None,
            },
        }
    }};
}

/// Decodes `obj` as `info`'s kind. Returns the object as the type sees it and the unknown fields
/// (as warnings under Warn; under Strict they are the error).
pub fn decode(
    info: &ResourceInfo,
    obj: &Value,
    validation: FieldValidation,
) -> Result<(Value, Vec<String>), ApiError> {
    let typed = crate::with_kind_type!(info, T => roundtrip::<T>(obj)).unwrap_or_else(|| Ok(obj.clone()));
    let cannot = |detail: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
            kind = info.kind,
            version = info.version
        ))
    };
    let typed = typed.map_err(|e| cannot(e.to_string()))?;
    let mut unknown = Vec::new();
    unknown_fields(obj, &typed, "", &mut unknown);
    let messages: Vec<String> = unknown.iter().map(|f| format!("unknown field \"{f}\"")).collect();
    if validation == FieldValidation::Strict && !messages.is_empty() {
        return Err(cannot(format!("strict decoding error: {}", messages.join(", "))));
    }
    Ok((
        typed,
        if validation == FieldValidation::Warn {
            messages
        } else {
            Vec::new()
        },
    ))
}

fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(obj.clone())?;
    serde_json::to_value(&typed)
}

/// Paths (`spec.template.spec.containers[0].foo`) present in `sent` but not in `kept`.
fn unknown_fields(sent: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
    match (sent, kept) {
        (Value::Object(s), Value::Object(k)) => {
            for (key, value) in s {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_fields(value, kv, &child, out),
                    // A null (or an empty value the type omits) carries nothing that was lost.
                    None if is_empty(value) => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(s), Value::Array(k)) => {
            for (i, (sv, kv)) in s.iter().zip(k).enumerate() {
                unknown_fields(sv, kv, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::server::registry::find;

    fn deployment() -> &'static ResourceInfo {
        find("apps", "v1", "deployments").expect("served")
    }

    #[test]
    fn unknown_fields_are_named_by_path() {
        let obj = json!({ "apiVersion": "apps/v1", "kind": "Deployment", "metadata": { "name": "d", "bogus": 1 },
            "spec": { "replicaz": 3, "selector": {}, "template": { "spec": { "containers": [{ "name": "c", "imagee": "x" }] } } } });
        let err = decode(deployment(), &obj, FieldValidation::Strict).expect_err("strict");
        assert_eq!(err.code, 400);
        assert!(err.message.contains("strict decoding error"), "{}", err.message);
        assert!(
            err.message.contains("unknown field \"metadata.bogus\""),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("unknown field \"spec.replicaz\""),
            "{}",
            err.message
        );
        assert!(
            err.message
                .contains("unknown field \"spec.template.spec.containers[0].imagee\""),
            "{}",
            err.message
        );

        let (kept, warnings) = decode(deployment(), &obj, FieldValidation::Warn).expect("warn");
        assert_eq!(warnings.len(), 3);
        assert!(
            kept["spec"].get("replicaz").is_none(),
            "unknown fields are dropped"
        );
        let (_, warnings) = decode(deployment(), &obj, FieldValidation::Ignore).expect("ignore");
        assert!(warnings.is_empty());
    }

    #[test]
    fn wrong_types_are_bad_requests() {
        let obj = json!({ "metadata": { "name": "d" }, "spec": { "replicas": "three" } });
        let err = decode(deployment(), &obj, FieldValidation::Ignore).expect_err("type error");
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .starts_with("Deployment in version \"v1\" cannot be handled as a Deployment"),
            "{}",
            err.message
        );
    }

    #[test]
    fn known_fields_round_trip_unchanged() {
        let obj = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "c", "labels": { "a": "b" } },
                          "data": { "k": "v" } });
        let info = find("", "v1", "configmaps").expect("served");
        let (kept, warnings) = decode(info, &obj, FieldValidation::Strict).expect("decodes");
        assert_eq!(kept, obj);
        assert!(warnings.is_empty());
    }
}
