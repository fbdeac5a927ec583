//! Helpers over objects held as JSON: metadata access, server-set fields, name rules.
//!
//! The server keeps objects as `serde_json::Value` so every kind (and unknown fields clients rely on
//! being preserved) round-trips unchanged; typed checks live in each kind's strategy.

use serde_json::{Value, json};

use super::{conversion, registry::ResourceInfo};
use crate::storage::{KeyValue, Revision};

/// `metadata.<field>` as a string, if present.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// A mutable `metadata` map, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().expect("metadata is an object")
}

/// The object stored under `kv`, in `info`'s version, with `metadata.resourceVersion` set to the
/// revision it was read at (stored values never carry it: the store's mod revision is the truth).
pub fn decode(info: &ResourceInfo, kv: &KeyValue) -> Value {
    decode_at(info, &kv.value, kv.mod_revision)
}

/// Decodes stored bytes into `info`'s version and stamps `resourceVersion` = `revision`.
pub fn decode_at(info: &ResourceInfo, bytes: &[u8], revision: Revision) -> Value {
    conversion::from_storage(info, decode_raw(bytes, revision))
}

/// Decodes stored bytes as stored (no version conversion).
pub fn decode_raw(bytes: &[u8], revision: Revision) -> Value {
    let mut obj: Value = serde_json::from_slice(bytes).unwrap_or_else(|e| {
        // Only the server writes the store, so this means outside tampering; show it, don't crash.
        json!({ "metadata": {}, "skiffDecodeError": e.to_string() })
    });
    meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
    obj
}

/// Stored bytes with `"resourceVersion":"<revision>"` spliced into the top-level `metadata`, without
/// parsing the object into a tree. `None` if the bytes are not a JSON object with an object-valued
/// top-level `metadata` (the server never stores such a thing).
pub fn with_resource_version(bytes: &[u8], revision: Revision) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() + 40);
    write_with_resource_version(bytes, revision, &mut out).then_some(out)
}

/// [`with_resource_version`] appending to `out` (a list body), so no copy is made per object; false
/// (and nothing written) if the bytes are not of that shape.
pub fn write_with_resource_version(bytes: &[u8], revision: Revision, out: &mut Vec<u8>) -> bool {
    let Some(open) = top_level_metadata(bytes) else {
        return false;
    };
    let empty = bytes.get(open + 1) == Some(&b'}');
    out.extend_from_slice(&bytes[..=open]);
    out.extend_from_slice(b"\"resourceVersion\":\"");
    out.extend_from_slice(revision.to_string().as_bytes());
    out.push(b'"');
    if !empty {
        out.push(b',');
    }
    out.extend_from_slice(&bytes[open + 1..]);
    true
}

/// The index of the `{` that opens the value of the top-level key `metadata`, found by a scan that
/// tracks strings and nesting depth (so a `"metadata"` inside another field never matches).
fn top_level_metadata(bytes: &[u8]) -> Option<usize> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 1 && &bytes[start..=i.min(bytes.len() - 1)] == b"\"metadata\"" {
                    let mut j = i + 1;
                    while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if bytes.get(j) == Some(&b':') {
                        j += 1;
                        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        return (bytes.get(j) == Some(&b'{')).then_some(j);
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.checked_sub(1)?,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The bytes to store: the object, in `info`'s version, converted to the stored shape and without
/// `resourceVersion`.
pub fn encode(info: &ResourceInfo, obj: &Value) -> Vec<u8> {
    let mut obj = conversion::to_storage(info, obj.clone());
    meta_mut(&mut obj).remove("resourceVersion");
    serde_json::to_vec(&obj).expect("a Value always serializes")
}

/// Which DNS-1123 rule a kind's names follow.
#[derive(Clone, Copy)]
pub enum NameRule {
    /// A DNS label: at most 63 characters of `[a-z0-9-]`, alphanumeric at both ends (namespaces).
    Label,
    /// A DNS subdomain: at most 253 characters, dot-separated labels (most kinds).
    Subdomain,
}

/// Field errors for `metadata.name` under `rule`.
pub fn validate_name(obj: &Value, rule: NameRule) -> Vec<(String, String, String)> {
    let name = meta_str(obj, "name").unwrap_or("");
    if name.is_empty() {
        return vec![(
            "metadata.name".into(),
            "FieldValueRequired".into(),
            "Required value: name or generateName is required".into(),
        )];
    }
    let label_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    let (ok, what, regex, example) = match rule {
        NameRule::Label => (
            label_ok(name),
            "RFC 1123 label",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?",
            "'my-name',  or '123-abc'",
        ),
        NameRule::Subdomain => (
            name.len() <= 253 && name.split('.').all(label_ok),
            "RFC 1123 subdomain",
            "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            "'example.com'",
        ),
    };
    if ok {
        return Vec::new();
    }
    vec![(
        "metadata.name".into(),
        "FieldValueInvalid".into(),
        format!(
            "Invalid value: {name:?}: a lowercase {what} must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. {example}, regex used for validation is '{regex}')"
        ),
    )]
}

/// A name from `generateName`: the prefix plus five random characters, as upstream's
/// `names.SimpleNameGenerator` (consonants and digits that cannot spell words).
pub fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let suffix: String = bytes[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Now, as Kubernetes prints timestamps (RFC 3339, seconds, UTC).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The metadata-only view of an object (meta.k8s.io/v1 PartialObjectMetadata), which clients ask for
/// with `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1` (kube's
/// `metadata_watcher`, the garbage collector) and Table rows carry.
pub fn partial_metadata(obj: &Value) -> Value {
    serde_json::json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"] })
}

/// [`partial_metadata`] of stored bytes at `revision`, reading only their `metadata` (the rest is
/// skipped by the parser, not built into a tree): what a metadata watch sends for each event.
pub fn partial_metadata_of(bytes: &[u8], revision: Revision) -> Value {
    #[derive(serde::Deserialize)]
    struct OnlyMetadata {
        #[serde(default)]
        metadata: serde_json::Map<String, Value>,
    }
    let mut metadata = serde_json::from_slice::<OnlyMetadata>(bytes)
        .map(|o| o.metadata)
        .unwrap_or_default();
    metadata.insert("resourceVersion".into(), Value::String(revision.to_string()));
    serde_json::json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splicing_the_resource_version_matches_decoding() {
        for stored in [
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "data": { "metadata": "{\"metadata\":{}" }, "metadata": { "name": "a" } }),
            json!({ "a": [{ "metadata": { "x": 1 } }], "metadata": {}, "z": "\\\"" }),
        ] {
            let bytes = serde_json::to_vec(&stored).expect("json");
            let spliced = with_resource_version(&bytes, 42).expect("spliced");
            let parsed: Value = serde_json::from_slice(&spliced).expect("still JSON");
            assert_eq!(parsed, decode_raw(&bytes, 42));
        }
        assert_eq!(with_resource_version(b"[1]", 1), None);
        assert_eq!(with_resource_version(b"{\"metadata\":1}", 1), None);
    }
}
