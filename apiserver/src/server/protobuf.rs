//! Request bodies in `application/vnd.kubernetes.protobuf`, turned into the JSON object the same client
//! would have sent as JSON. kubectl's typed-clientset commands (`kubectl create deployment|configmap|…`,
//! drain's Eviction) send protobuf and never fall back to JSON on a 415, so the server has to read it.
//!
//! Mirrors the reading half of apimachinery's `pkg/runtime/serializer/protobuf/protobuf.go`: a body is
//! the 4-byte magic `k8s\0` and then a `runtime.Unknown` whose `typeMeta` names the kind and whose `raw`
//! holds the object's message. The wire is split into records by `wire`, and each record is given a
//! meaning by the schema table (`schema`, generated from the k8s-pb crate and the Go JSON facts). The
//! JSON is what `encoding/json` makes of the same Go struct:
//!   - `meta/v1` `Time` and `MicroTime` become RFC 3339 strings (`Time` keeps whole seconds, as upstream's
//!     JSON and protobuf readers both do); an empty `Time` (the zero time) is `null`; `Duration` is Go's
//!     `time.Duration` string; `resource.Quantity` is its string; `intstr.IntOrString` a number or a string;
//!     `runtime.RawExtension` and `FieldsV1` embed the JSON they carry (Go writes their bytes as they are);
//!   - `bytes` are base64 strings, maps are objects, empty lists and maps are left out;
//!   - zero scalars are left out unless the Go field is a pointer or has no `omitempty` (`keepzero` in
//!     the table): the Go marshaller writes every non-pointer scalar, so `generateName: ""` is on the
//!     wire of every object but in none of their JSON;
//!   - fields embedded with `json:",inline"` (`Volume.volumeSource`, `Probe.handler`) are flattened;
//!   - unknown field numbers are skipped (a newer client's fields), as Go's generated readers do;
//!     strings that are not UTF-8 get U+FFFD, as Go's JSON writer does.

pub mod schema;
mod wire;

use std::borrow::Cow;

use base64::Engine as _;
use serde_json::{Map, Value as Json};

use self::{
    schema::{Field, Message, Schema, Shape, Type},
    wire::Value,
};

/// The media type of Kubernetes' protobuf encoding (a `Content-Type` parameter may follow it).
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every protobuf-encoded object (`protobuf.go`'s `protoEncodingPrefix`).
pub const MAGIC: &[u8] = b"k8s\0";

/// How deep messages may nest: far more than any Kubernetes object, and a bound on the recursion a
/// crafted body can cause.
const MAX_DEPTH: usize = 64;

/// Kinds of `meta.k8s.io/v1` that are registered in every group version (`metav1.AddToGroupVersion`),
/// so a body may name them with any `apiVersion`.
const META_KINDS: &[&str] = &[
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "GetOptions",
    "ListOptions",
    "Status",
];

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The body is not a well-formed protobuf object (a 400).
    Malformed(String),
    /// The envelope names a kind the schema table does not have (a 415: send it as JSON).
    NoSchema {
        /// The envelope's `typeMeta.apiVersion`.
        api_version: String,
        /// The envelope's `typeMeta.kind`.
        kind: String,
    },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(message) => f.write_str(message),
            Self::NoSchema { api_version, kind } => {
                write!(f, "no protobuf schema for kind {kind:?} in {api_version:?}")
            }
        }
    }
}

impl From<String> for DecodeError {
    fn from(message: String) -> Self {
        Self::Malformed(message)
    }
}

impl From<&str> for DecodeError {
    fn from(message: &str) -> Self {
        Self::Malformed(message.to_owned())
    }
}

/// Whether a `Content-Type` value is Kubernetes' protobuf (parameters after `;` are ignored).
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case(MEDIA_TYPE)
}

/// Decodes a protobuf request body (`k8s\0` + `runtime.Unknown`) into the object's JSON form, with
/// `apiVersion` and `kind` set from the envelope's `typeMeta`.
pub fn decode_object(bytes: &[u8]) -> Result<Json, DecodeError> {
    let schema = schema::schema()?;
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or("the protobuf body does not start with the \"k8s\\x00\" prefix")?;
    let unknown = message(schema, "runtime.Unknown")?;
    let envelope =
        Fields::read(unknown, body).map_err(|e| format!("error decoding the protobuf envelope: {e}"))?;
    let type_meta = envelope
        .bytes("typeMeta")?
        .ok_or("the protobuf envelope has no typeMeta")?;
    let type_meta = Fields::read(message(schema, "runtime.TypeMeta")?, type_meta)?;
    let (api_version, kind) = (type_meta.string("apiVersion")?, type_meta.string("kind")?);
    let encoding = envelope.string("contentEncoding")?;
    if !encoding.is_empty() {
        return Err(format!("protobuf bodies with contentEncoding {encoding:?} are not supported").into());
    }
    let content_type = envelope.string("contentType")?;
    if !(content_type.is_empty() || is_protobuf(&content_type)) {
        return Err(format!("protobuf envelope holds content of type {content_type:?}").into());
    }
    if kind.is_empty() {
        return Err("the protobuf envelope's typeMeta has no kind".into());
    }
    let Some(object) = object_message(schema, &api_version, &kind) else {
        return Err(DecodeError::NoSchema { api_version, kind });
    };
    let raw = envelope.bytes("raw")?.unwrap_or_default();
    let mut out = Map::new();
    out.insert("apiVersion".into(), Json::String(api_version));
    out.insert("kind".into(), Json::String(kind.clone()));
    message_fields(schema, object, raw, 0, &mut out)
        .map_err(|e| format!("error decoding {kind} from protobuf: {e}"))?;
    Ok(Json::Object(out))
}

fn message<'s>(schema: &'s Schema, name: &str) -> Result<&'s Message, String> {
    schema
        .message(name)
        .ok_or_else(|| format!("the protobuf schema has no {name}"))
}

/// The message of `kind` in `apiVersion`: `<group without .k8s.io>.<version>.<Kind>` (`core` for the
/// legacy group), or a `meta/v1` options kind. apimachinery's own packages are no API group.
fn object_message<'s>(schema: &'s Schema, api_version: &str, kind: &str) -> Option<&'s Message> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    if !word(version) || !version.starts_with('v') || !word(kind) {
        return None;
    }
    if META_KINDS.contains(&kind) && (version == "v1" || group == "meta.k8s.io") {
        return schema.message(&format!("meta.v1.{kind}"));
    }
    let package = match group {
        "" => "core",
        g => g.strip_suffix(".k8s.io").unwrap_or(g),
    };
    if !word(package) || ["meta", "runtime", "api", "util"].contains(&package) {
        return None;
    }
    schema.message(&format!("{package}.{version}.{kind}"))
}

/// The records of one message, grouped by field (wire order kept), unknown field numbers dropped.
struct Fields<'m, 'a> {
    message: &'m Message,
    /// Parallel to `message.fields`.
    values: Vec<Vec<Value<'a>>>,
}

impl<'m, 'a> Fields<'m, 'a> {
    fn read(message: &'m Message, bytes: &'a [u8]) -> Result<Self, String> {
        let mut values = vec![Vec::new(); message.fields.len()];
        for record in wire::records(bytes) {
            let (tag, value) = record?;
            if let Ok(i) = message.fields.binary_search_by_key(&tag, |f| f.tag) {
                values[i].push(value);
            }
        }
        Ok(Self { message, values })
    }

    /// The last value of the field called `name` (protobuf's rule for a repeated single field).
    fn last(&self, name: &str) -> Result<Option<(&'m Field, Value<'a>)>, String> {
        let i = self
            .message
            .fields
            .iter()
            .position(|f| f.name == name)
            .ok_or_else(|| format!("{} has no field {name}", self.message.name))?;
        Ok(self.values[i].last().map(|v| (&self.message.fields[i], *v)))
    }

    fn bytes(&self, name: &str) -> Result<Option<&'a [u8]>, String> {
        match self.last(name)? {
            None => Ok(None),
            Some((_, Value::Bytes(b))) => Ok(Some(b)),
            Some((field, _)) => Err(wire_type_error(self.message, field)),
        }
    }

    fn string(&self, name: &str) -> Result<String, String> {
        Ok(String::from_utf8_lossy(self.bytes(name)?.unwrap_or_default()).into_owned())
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        match self.last(name)? {
            None => Ok(0),
            Some((field, Value::Varint(n))) if field.ty == Type::Int32 => Ok(i64::from(n as i32)),
            Some((_, Value::Varint(n))) => Ok(n as i64),
            Some((field, _)) => Err(wire_type_error(self.message, field)),
        }
    }
}

fn wire_type_error(message: &Message, field: &Field) -> String {
    format!(
        "wrong wire type for field {}.{} ({})",
        message.name, field.name, field.tag
    )
}

/// Writes the fields of a `message` read from `bytes` into `out` under their JSON names.
fn message_fields(
    schema: &Schema,
    message: &Message,
    bytes: &[u8],
    depth: usize,
    out: &mut Map<String, Json>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("objects nested more than {MAX_DEPTH} deep"));
    }
    let fields = Fields::read(message, bytes)?;
    for (field, values) in message.fields.iter().zip(&fields.values) {
        if values.is_empty() {
            continue;
        }
        let wrong = || wire_type_error(message, field);
        match field.shape {
            Shape::Single => {
                if let Type::Message(name) = field.ty {
                    // Repeats of a message field merge, which reading their bytes as one message does.
                    let joined = join(values).ok_or_else(wrong)?;
                    let inner = self::message(schema, name)?;
                    if field.inline {
                        message_fields(schema, inner, &joined, depth + 1, out)?;
                    } else {
                        out.insert(
                            field.name.into(),
                            message_json(schema, inner, &joined, depth + 1)?,
                        );
                    }
                } else {
                    let value = scalar(field.ty, values[values.len() - 1]).ok_or_else(wrong)??;
                    if field.keep_zero || !is_zero(&value) {
                        out.insert(field.name.into(), value);
                    }
                }
            }
            Shape::Repeated => {
                let mut items = Vec::new();
                for value in values {
                    match (field.ty, *value) {
                        (Type::Message(name), Value::Bytes(b)) => {
                            items.push(message_json(schema, self::message(schema, name)?, b, depth + 1)?)
                        }
                        (Type::Message(_), _) => return Err(wrong()),
                        // A packed run of numbers: one record holding their varints (or fixed64s).
                        (Type::Int32 | Type::Int64 | Type::Bool | Type::Double, Value::Bytes(mut b)) => {
                            while !b.is_empty() {
                                let item = if field.ty == Type::Double {
                                    let (head, tail) = b.split_at_checked(8).ok_or("short packed double")?;
                                    b = tail;
                                    Value::Fixed64(u64::from_le_bytes(head.try_into().map_err(|_| wrong())?))
                                } else {
                                    Value::Varint(wire::varint(&mut b)?)
                                };
                                items.push(scalar(field.ty, item).ok_or_else(wrong)??);
                            }
                        }
                        (ty, value) => items.push(scalar(ty, value).ok_or_else(wrong)??),
                    }
                }
                if !items.is_empty() {
                    out.insert(field.name.into(), Json::Array(items));
                }
            }
            Shape::Map => {
                let mut map = Map::new();
                for value in values {
                    let Value::Bytes(entry) = value else {
                        return Err(wrong());
                    };
                    let (key, value) = map_entry(schema, field, entry, depth + 1)?;
                    map.insert(key, value);
                }
                if !map.is_empty() {
                    out.insert(field.name.into(), Json::Object(map));
                }
            }
        }
    }
    Ok(())
}

/// The bytes of every record of a message field, as one message.
fn join<'a>(values: &[Value<'a>]) -> Option<Cow<'a, [u8]>> {
    match values {
        [Value::Bytes(one)] => Some(Cow::Borrowed(one)),
        _ => {
            let mut all = Vec::new();
            for value in values {
                let Value::Bytes(b) = value else { return None };
                all.extend_from_slice(b);
            }
            Some(Cow::Owned(all))
        }
    }
}

/// A map entry: a message whose field 1 is the (string) key and field 2 the value.
fn map_entry(schema: &Schema, field: &Field, entry: &[u8], depth: usize) -> Result<(String, Json), String> {
    let (mut key, mut value) = (String::new(), None);
    for record in wire::records(entry) {
        match record? {
            (1, Value::Bytes(k)) => key = String::from_utf8_lossy(k).into_owned(),
            (2, v) => value = Some(v),
            (1, _) => return Err(format!("wrong wire type for a key of {}", field.name)),
            _ => {}
        }
    }
    let wrong = || format!("wrong wire type for a value of {}", field.name);
    let value = match (field.ty, value) {
        (Type::Message(name), Some(Value::Bytes(b))) => {
            message_json(schema, message(schema, name)?, b, depth)?
        }
        (Type::Message(name), None) => message_json(schema, message(schema, name)?, &[], depth)?,
        (Type::Message(_), Some(_)) => return Err(wrong()),
        (ty, Some(v)) => scalar(ty, v).ok_or_else(wrong)??,
        (ty, None) => scalar(
            ty,
            if is_len(ty) {
                Value::Bytes(&[])
            } else {
                Value::Varint(0)
            },
        )
        .ok_or_else(wrong)??,
    };
    Ok((key, value))
}

fn is_len(ty: Type) -> bool {
    matches!(ty, Type::String | Type::Bytes | Type::Message(_))
}

/// A scalar value as JSON; `None` when the wire type does not fit the field's type.
fn scalar(ty: Type, value: Value<'_>) -> Option<Result<Json, String>> {
    Some(Ok(match (ty, value) {
        (Type::String, Value::Bytes(b)) => Json::String(String::from_utf8_lossy(b).into_owned()),
        (Type::Bytes, Value::Bytes(b)) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        (Type::Bool, Value::Varint(n)) => Json::Bool(n != 0),
        // An int32 is sign-extended to 64 bits on the wire; its low 32 bits are the value.
        (Type::Int32, Value::Varint(n)) => Json::from(n as i32),
        (Type::Int64, Value::Varint(n)) => Json::from(n as i64),
        (Type::Double, Value::Fixed64(bits)) => {
            let n = f64::from_bits(bits);
            // Go's JSON writer refuses NaN and infinities too.
            match serde_json::Number::from_f64(n) {
                Some(n) => Json::Number(n),
                None => return Some(Err(format!("unsupported value: {n}"))),
            }
        }
        _ => return None,
    }))
}

/// Zero scalars: what `omitempty` leaves out.
fn is_zero(value: &Json) -> bool {
    match value {
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A message as JSON, with apimachinery's types that marshal to something other than an object.
fn message_json(schema: &Schema, message: &Message, bytes: &[u8], depth: usize) -> Result<Json, String> {
    let fields = || Fields::read(message, bytes);
    Ok(match message.name {
        // An empty Time is the zero time, which Go's JSON writes as null (`creationTimestamp: null`).
        "meta.v1.Time" | "meta.v1.MicroTime" if bytes.is_empty() => Json::Null,
        "meta.v1.Time" => Json::String(rfc3339(fields()?.int("seconds")?, 0, false)?),
        "meta.v1.MicroTime" => {
            let f = fields()?;
            Json::String(rfc3339(f.int("seconds")?, f.int("nanos")?, true)?)
        }
        "meta.v1.Duration" => Json::String(go_duration(fields()?.int("duration")?)),
        "api.resource.Quantity" => Json::String(fields()?.string("string")?),
        "util.intstr.IntOrString" => {
            let f = fields()?;
            match f.int("type")? {
                1 => Json::String(f.string("strVal")?),
                _ => Json::from(f.int("intVal")?),
            }
        }
        "runtime.RawExtension" | "meta.v1.FieldsV1" => embedded(fields()?.bytes("raw")?.unwrap_or_default())?,
        _ => {
            let mut out = Map::new();
            message_fields(schema, message, bytes, depth, &mut out)?;
            Json::Object(out)
        }
    })
}

/// The content of a `RawExtension` (or `FieldsV1`): the JSON it carries, or `null` for none (what Go's
/// `RawExtension.MarshalJSON` writes for nil). Go writes the raw bytes into its JSON as they are, so
/// anything but JSON there (a nested protobuf object included) is an error there too, and not decoding
/// nested objects keeps a crafted body from recursing without bound.
fn embedded(raw: &[u8]) -> Result<Json, String> {
    if raw.is_empty() {
        return Ok(Json::Null);
    }
    serde_json::from_slice(raw).map_err(|e| format!("an embedded object is not JSON: {e}"))
}

/// `seconds`/`nanos` since the epoch in UTC as RFC 3339, with microseconds for `MicroTime`.
fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> Result<String, String> {
    let nanos = u32::try_from(nanos).ok().filter(|n| *n < 1_000_000_000);
    let time = nanos
        .and_then(|n| chrono::DateTime::from_timestamp(seconds, n))
        .ok_or_else(|| format!("timestamp out of range: {seconds}s"))?;
    Ok(if micro {
        time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
    } else {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    // Divides v by 10^prec, returning the fraction as ".123" without trailing zeros ("" for none).
    fn frac(v: u64, prec: u32) -> (String, u64) {
        let scale = 10u64.pow(prec);
        let digits = format!("{:0width$}", v % scale, width = prec as usize);
        let digits = digits.trim_end_matches('0');
        let text = if digits.is_empty() {
            String::new()
        } else {
            format!(".{digits}")
        };
        (text, v / scale)
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    let body = if u == 0 {
        "0s".to_owned()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        let (f, whole) = frac(u, 3);
        format!("{whole}{f}µs")
    } else if u < 1_000_000_000 {
        let (f, whole) = frac(u, 6);
        format!("{whole}{f}ms")
    } else {
        let (f, secs) = frac(u, 9);
        let minutes = secs / 60;
        if minutes >= 60 {
            format!("{}h{}m{}{f}s", minutes / 60, minutes % 60, secs % 60)
        } else if minutes > 0 {
            format!("{minutes}m{}{f}s", secs % 60)
        } else {
            format!("{secs}{f}s")
        }
    };
    format!("{sign}{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A field value for `msg`.
    enum F {
        Int(i64),
        Str(&'static str),
        Raw(Vec<u8>),
    }

    fn key(tag: u32, wire_type: u8, out: &mut Vec<u8>) {
        put_varint(u64::from(tag) << 3 | u64::from(wire_type), out);
    }

    fn put_varint(mut n: u64, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push(n as u8 | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// Encodes the fields of the table's message `name`, given by JSON name, in the order given.
    fn msg(name: &str, fields: &[(&str, F)]) -> Vec<u8> {
        let message = schema::schema().unwrap().message(name).unwrap();
        let mut out = Vec::new();
        for (field, value) in fields {
            let tag = message.field_named(field).unwrap().tag;
            match value {
                F::Int(n) => {
                    key(tag, 0, &mut out);
                    put_varint(*n as u64, &mut out);
                }
                F::Str(s) => {
                    key(tag, 2, &mut out);
                    put_varint(s.len() as u64, &mut out);
                    out.extend_from_slice(s.as_bytes());
                }
                F::Raw(b) => {
                    key(tag, 2, &mut out);
                    put_varint(b.len() as u64, &mut out);
                    out.extend_from_slice(b);
                }
            }
        }
        out
    }

    /// Wraps an object message in the envelope kubectl sends.
    fn envelope(api_version: &'static str, kind: &'static str, raw: Vec<u8>) -> Vec<u8> {
        let type_meta = msg(
            "runtime.TypeMeta",
            &[("apiVersion", F::Str(api_version)), ("kind", F::Str(kind))],
        );
        let mut out = MAGIC.to_vec();
        out.extend(msg(
            "runtime.Unknown",
            &[("typeMeta", F::Raw(type_meta)), ("raw", F::Raw(raw))],
        ));
        out
    }

    #[test]
    fn every_served_kind_has_a_message() {
        let schema = schema::schema().unwrap();
        for (api_version, kinds) in [
            (
                "v1",
                &[
                    "Namespace",
                    "Pod",
                    "Service",
                    "Endpoints",
                    "Node",
                    "Event",
                    "ConfigMap",
                    "Secret",
                    "ServiceAccount",
                    "Binding",
                    "DeleteOptions",
                ][..],
            ),
            (
                "apps/v1",
                &[
                    "Deployment",
                    "ReplicaSet",
                    "StatefulSet",
                    "DaemonSet",
                    "ControllerRevision",
                ],
            ),
            ("discovery.k8s.io/v1", &["EndpointSlice"]),
            ("coordination.k8s.io/v1", &["Lease"]),
            ("events.k8s.io/v1", &["Event"]),
            ("policy/v1", &["Eviction", "DeleteOptions"]),
            ("autoscaling/v1", &["Scale"]),
            ("meta.k8s.io/v1", &["DeleteOptions"]),
            ("batch/v1", &["Job"]),
            ("authorization.k8s.io/v1", &["SelfSubjectAccessReview"]),
            ("authentication.k8s.io/v1", &["TokenRequest"]),
        ] {
            for kind in kinds {
                assert!(
                    object_message(schema, api_version, kind).is_some(),
                    "{api_version} {kind}"
                );
            }
        }
        let event = object_message(schema, "events.k8s.io/v1", "Event").unwrap();
        assert_eq!(event.name, "events.v1.Event");
        assert!(object_message(schema, "v1", "Deployment").is_none());
        assert!(object_message(schema, "example.com/v1", "Widget").is_none());
        assert!(object_message(schema, "v1", "core.v1.Pod").is_none());
        assert!(object_message(schema, "meta/v1", "ObjectMeta").is_none());
        assert!(object_message(schema, "runtime/v1", "Unknown").is_none());
    }

    #[test]
    fn unknown_kind_is_a_no_schema_error_naming_it() {
        let err = decode_object(&envelope("example.com/v1", "Widget", vec![])).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NoSchema {
                api_version: "example.com/v1".into(),
                kind: "Widget".into()
            }
        );
        assert!(err.to_string().contains("\"Widget\""), "{err}");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let malformed = |body: &[u8]| match decode_object(body) {
            Err(DecodeError::Malformed(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(malformed(b"").contains("prefix"));
        assert!(malformed(b"{\"kind\":\"Pod\"}").contains("prefix"));
        assert!(malformed(b"k8s\0\xff\xff\xff").contains("envelope"));
        assert!(malformed(b"k8s\0").contains("typeMeta"));
        // A Pod whose raw bytes end in the middle of a length-delimited field.
        assert!(malformed(&envelope("v1", "Pod", vec![0x0a, 0x05, 0x0a])).contains("Pod"));
        // metadata (a message) sent as a varint.
        assert!(malformed(&envelope("v1", "Pod", vec![0x08, 0x01])).contains("wire type"));
        // A string map whose value is a varint.
        let entry = vec![0x0a, 0x01, b'k', 0x10, 0x01];
        let meta = msg("meta.v1.ObjectMeta", &[("labels", F::Raw(entry))]);
        let pod = msg("core.v1.Pod", &[("metadata", F::Raw(meta))]);
        assert!(malformed(&envelope("v1", "Pod", pod.clone())).contains("labels"));
        // Truncating a valid body anywhere never panics.
        let meta = msg("meta.v1.ObjectMeta", &[("name", F::Str("p"))]);
        let body = envelope("v1", "Pod", msg("core.v1.Pod", &[("metadata", F::Raw(meta))]));
        for end in 0..body.len() {
            let _ = decode_object(&body[..end]);
        }
    }

    #[test]
    fn nesting_is_bounded() {
        // The table has no recursive message today; the bound holds whatever a future one allows.
        let schema = schema::schema().unwrap();
        let pod = schema.message("core.v1.Pod").unwrap();
        let mut out = Map::new();
        let err = message_fields(schema, pod, &[], MAX_DEPTH + 1, &mut out).unwrap_err();
        assert!(err.contains("nested"), "{err}");
        assert!(message_fields(schema, pod, &[], MAX_DEPTH, &mut out).is_ok());
    }

    #[test]
    fn zero_scalars_follow_the_go_json_rules() {
        let meta = msg(
            "meta.v1.ObjectMeta",
            &[
                ("name", F::Str("d")),
                ("generateName", F::Str("")),
                ("generation", F::Int(0)),
                ("creationTimestamp", F::Raw(vec![])),
            ],
        );
        let spec = msg(
            "apps.v1.DeploymentSpec",
            &[
                ("replicas", F::Int(0)),        // *int32: 0 is shown
                ("minReadySeconds", F::Int(0)), // omitempty: not shown
                ("paused", F::Int(0)),
            ],
        );
        let d = msg(
            "apps.v1.Deployment",
            &[
                ("metadata", F::Raw(meta)),
                ("spec", F::Raw(spec)),
                ("status", F::Raw(vec![])),
            ],
        );
        let got = decode_object(&envelope("apps/v1", "Deployment", d)).unwrap();
        assert_eq!(
            got,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "creationTimestamp": null},
                "spec": {"replicas": 0},
                "status": {},
            })
        );
    }

    #[test]
    fn negative_numbers_repeats_and_unknown_fields() {
        let mut spec = msg(
            "apps.v1.DeploymentSpec",
            &[("replicas", F::Int(-1)), ("replicas", F::Int(3))],
        );
        // Field 1000, unknown: a varint, a fixed64, a fixed32 and bytes, all skipped.
        spec.extend([0xc0, 0x3e, 0x01, 0xc1, 0x3e, 0, 0, 0, 0, 0, 0, 0, 0]);
        spec.extend([0xc5, 0x3e, 0, 0, 0, 0, 0xc2, 0x3e, 0x01, 0xff]);
        spec.extend(msg("apps.v1.DeploymentSpec", &[("minReadySeconds", F::Int(-5))]));
        let d = msg("apps.v1.Deployment", &[("spec", F::Raw(spec))]);
        let got = decode_object(&envelope("apps/v1", "Deployment", d)).unwrap();
        assert_eq!(got["spec"], json!({"replicas": 3, "minReadySeconds": -5}));
    }

    #[test]
    fn repeated_message_fields_merge() {
        let a = msg(
            "meta.v1.ObjectMeta",
            &[("name", F::Str("a")), ("namespace", F::Str("ns"))],
        );
        let b = msg("meta.v1.ObjectMeta", &[("name", F::Str("b"))]);
        let cm = msg(
            "core.v1.ConfigMap",
            &[("metadata", F::Raw(a)), ("metadata", F::Raw(b))],
        );
        let got = decode_object(&envelope("v1", "ConfigMap", cm)).unwrap();
        assert_eq!(got["metadata"], json!({"name": "b", "namespace": "ns"}));
    }

    #[test]
    fn packed_and_unpacked_numbers() {
        // NodeSelectorRequirement has no numbers; DaemonEndpoint has one. Use a packed list of int32s
        // where the table has one (PodFailurePolicyOnExitCodesRequirement.values).
        let packed = msg(
            "batch.v1.PodFailurePolicyOnExitCodesRequirement",
            &[("values", F::Raw(vec![0x01, 0x02, 0xff, 0xff, 0xff, 0xff, 0x0f]))],
        );
        let unpacked = msg(
            "batch.v1.PodFailurePolicyOnExitCodesRequirement",
            &[("values", F::Int(7)), ("values", F::Int(8))],
        );
        let schema = schema::schema().unwrap();
        let req = schema
            .message("batch.v1.PodFailurePolicyOnExitCodesRequirement")
            .unwrap();
        assert_eq!(
            message_json(schema, req, &packed, 0).unwrap(),
            json!({"values": [1, 2, -1]})
        );
        assert_eq!(
            message_json(schema, req, &unpacked, 0).unwrap(),
            json!({"values": [7, 8]})
        );
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(rfc3339(1_767_323_045, 0, false).unwrap(), "2026-01-02T03:04:05Z");
        assert_eq!(
            rfc3339(1_767_323_045, 123_456_789, true).unwrap(),
            "2026-01-02T03:04:05.123456Z"
        );
        assert_eq!(rfc3339(0, 0, true).unwrap(), "1970-01-01T00:00:00.000000Z");
        assert!(rfc3339(i64::MAX, 0, false).is_err());
        assert!(rfc3339(0, -1, true).is_err());
        for (nanos, text) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_500_000, "1.5ms"),
            (1_000_000_000, "1s"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-2_000_000_000, "-2s"),
        ] {
            assert_eq!(go_duration(nanos), text);
        }
    }

    #[test]
    fn micro_time_and_duration_messages() {
        let t = msg(
            "meta.v1.MicroTime",
            &[("seconds", F::Int(1_767_323_045)), ("nanos", F::Int(5_000))],
        );
        let spec = msg(
            "coordination.v1.LeaseSpec",
            &[
                ("holderIdentity", F::Str("me")),
                ("leaseDurationSeconds", F::Int(0)),
                ("renewTime", F::Raw(t)),
            ],
        );
        let lease = msg("coordination.v1.Lease", &[("spec", F::Raw(spec))]);
        let got = decode_object(&envelope("coordination.k8s.io/v1", "Lease", lease)).unwrap();
        assert_eq!(
            got["spec"],
            json!({"holderIdentity": "me", "leaseDurationSeconds": 0, "renewTime": "2026-01-02T03:04:05.000005Z"})
        );
        let schema = schema::schema().unwrap();
        let d = msg("meta.v1.Duration", &[("duration", F::Int(90_000_000_000))]);
        assert_eq!(
            message_json(schema, schema.message("meta.v1.Duration").unwrap(), &d, 0).unwrap(),
            json!("1m30s")
        );
    }

    #[test]
    fn embedded_json_and_fields_v1() {
        let schema = schema::schema().unwrap();
        let decode = |name: &str, raw: &[u8]| {
            let bytes = msg(name, &[("raw", F::Raw(raw.to_vec()))]);
            message_json(schema, schema.message(name).unwrap(), &bytes, 0)
        };
        assert_eq!(
            decode("runtime.RawExtension", br#"{"a":[1,2]}"#).unwrap(),
            json!({"a": [1, 2]})
        );
        assert!(decode("runtime.RawExtension", b"{").is_err());
        let nested = envelope("v1", "Pod", vec![]);
        assert!(
            decode("runtime.RawExtension", &nested)
                .unwrap_err()
                .contains("not JSON")
        );
        assert_eq!(
            decode("meta.v1.FieldsV1", br#"{"f:data":{}}"#).unwrap(),
            json!({"f:data": {}})
        );
    }

    proptest::proptest! {
        /// Arbitrary bytes, and a real kubectl body with bytes overwritten, give a value or an error.
        #[test]
        fn any_body_is_an_answer_never_a_panic(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            edits in proptest::collection::vec((0usize..205, proptest::prelude::any::<u8>()), 1..8),
        ) {
            let mut body = MAGIC.to_vec();
            body.extend(&tail);
            let _ = decode_object(&body);
            let mut deployment = include_bytes!("../../tests/fixtures/protobuf/create-deployment.pb").to_vec();
            for (at, byte) in edits {
                let at = at % deployment.len();
                deployment[at] = byte;
            }
            let _ = decode_object(&deployment);
        }
    }
}
