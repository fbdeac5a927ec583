//! The protobuf schema of the Kubernetes types the server reads: `schema.txt` beside this file, written
//! by `gen_schema.py` from the k8s-pb crate's prost structs and the Go JSON facts in `go_json.txt` (see
//! the script's header for the format and how to rerun it). Loaded once, checked as it loads: every
//! message a field names exists and no message has a field number twice.

use std::{collections::HashMap, sync::OnceLock};

const TABLE: &str = include_str!("schema.txt");

/// Every message of the table, by name (`core.v1.Pod`, `meta.v1.ObjectMeta`, `runtime.Unknown`, …).
#[derive(Debug)]
pub struct Schema {
    messages: HashMap<&'static str, Message>,
}

/// One message: its fields in field-number order.
#[derive(Debug)]
pub struct Message {
    /// `PKG.Name`, as the table spells it.
    pub name: &'static str,
    /// Sorted by `tag`, which is unique.
    pub fields: Vec<Field>,
}

/// One field of a message.
#[derive(Debug, Clone)]
pub struct Field {
    /// The protobuf field number.
    pub tag: u32,
    /// The JSON name.
    pub name: &'static str,
    /// The type of the value (of each item of a list, of each value of a map).
    pub ty: Type,
    /// Single, list or map.
    pub shape: Shape,
    /// JSON shows this field's zero value (a Go pointer, or no `omitempty`).
    pub keep_zero: bool,
    /// The message's fields go into the parent's JSON object (`json:",inline"`).
    pub inline: bool,
}

/// Whether a field holds one value, a list or a map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One value.
    Single,
    /// `repeated`: a JSON array.
    Repeated,
    /// `map<string, T>`: a JSON object.
    Map,
}

/// The type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// UTF-8 text.
    String,
    /// `bool`.
    Bool,
    /// `int32` (a varint).
    Int32,
    /// `int64` (a varint).
    Int64,
    /// `double` (fixed64).
    Double,
    /// Opaque bytes (base64 in JSON).
    Bytes,
    /// A message of the table, by name.
    Message(&'static str),
}

impl Schema {
    /// The message called `name`.
    pub fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    /// Every message, in no particular order.
    pub fn messages(&self) -> impl Iterator<Item = &Message> {
        self.messages.values()
    }
}

impl Message {
    /// The field numbered `tag`.
    pub fn field(&self, tag: u32) -> Option<&Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }

    /// The field whose JSON name is `name`.
    pub fn field_named(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// The table, loaded on first use.
pub fn schema() -> Result<&'static Schema, String> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| parse(TABLE))
        .as_ref()
        .map_err(|e| format!("the protobuf schema table does not load: {e}"))
}

fn parse(text: &'static str) -> Result<Schema, String> {
    let mut messages = HashMap::new();
    let mut current: Option<Message> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix("message ") {
            if let Some(done) = current.replace(Message {
                name,
                fields: Vec::new(),
            }) {
                messages.insert(done.name, done);
            }
            continue;
        }
        let at = || format!("line {}: {line:?}", n + 1);
        let message = current
            .as_mut()
            .ok_or_else(|| format!("{}: field outside a message", at()))?;
        let mut words = line.split_whitespace();
        let (Some(tag), Some(name), Some(ty)) = (words.next(), words.next(), words.next()) else {
            return Err(format!("{}: want TAG NAME TYPE", at()));
        };
        let tag = tag.parse().map_err(|_| format!("{}: bad field number", at()))?;
        let (shape, ty) = match (ty.strip_prefix("[]"), ty.strip_prefix("map[]")) {
            (Some(item), _) => (Shape::Repeated, item),
            (_, Some(value)) => (Shape::Map, value),
            _ => (Shape::Single, ty),
        };
        let ty = match ty {
            "string" => Type::String,
            "bool" => Type::Bool,
            "int32" => Type::Int32,
            "int64" => Type::Int64,
            "double" => Type::Double,
            "bytes" => Type::Bytes,
            name => Type::Message(name),
        };
        let mut field = Field {
            tag,
            name,
            ty,
            shape,
            keep_zero: false,
            inline: false,
        };
        for flag in words {
            match flag {
                "keepzero" => field.keep_zero = true,
                "inline" => field.inline = true,
                _ => return Err(format!("{}: unknown flag {flag:?}", at())),
            }
        }
        if field.inline && (shape != Shape::Single || !matches!(ty, Type::Message(_))) {
            return Err(format!("{}: only a single message can be inline", at()));
        }
        message.fields.push(field);
    }
    if let Some(done) = current {
        messages.insert(done.name, done);
    }
    for message in messages.values_mut() {
        message.fields.sort_by_key(|f| f.tag);
        if message.fields.windows(2).any(|w| w[0].tag == w[1].tag) {
            return Err(format!("{} has a field number twice", message.name));
        }
    }
    for message in messages.values() {
        for field in &message.fields {
            if let Type::Message(name) = field.ty
                && !messages.contains_key(name)
            {
                return Err(format!(
                    "{}.{} names {name}, which is not in the table",
                    message.name, field.name
                ));
            }
        }
    }
    Ok(Schema { messages })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_loads_with_the_go_facts() {
        let schema = schema().unwrap();
        assert!(schema.messages().count() > 300);
        let spec = schema.message("apps.v1.DeploymentSpec").unwrap();
        let replicas = spec.field(1).unwrap();
        assert_eq!(
            (replicas.name, replicas.ty, replicas.shape),
            ("replicas", Type::Int32, Shape::Single)
        );
        assert!(replicas.keep_zero, "*int32");
        assert!(!spec.field_named("minReadySeconds").unwrap().keep_zero);
        let volume = schema.message("core.v1.Volume").unwrap();
        assert!(volume.field_named("volumeSource").unwrap().inline);
        let status = schema.message("core.v1.PodStatus").unwrap();
        let ips = status.field_named("podIPs").unwrap();
        assert_eq!(
            (ips.ty, ips.shape),
            (Type::Message("core.v1.PodIp"), Shape::Repeated)
        );
        let labels = schema.message("meta.v1.ObjectMeta").unwrap().field(11).unwrap();
        assert_eq!(
            (labels.name, labels.ty, labels.shape),
            ("labels", Type::String, Shape::Map)
        );
        assert!(
            !schema
                .message("meta.v1.ObjectMeta")
                .unwrap()
                .field(2)
                .unwrap()
                .keep_zero
        );
        let meta = schema.message("meta.v1.FieldsV1").unwrap();
        assert_eq!(meta.field(1).unwrap().ty, Type::Bytes);
        for name in [
            "runtime.Unknown",
            "runtime.TypeMeta",
            "policy.v1.Eviction",
            "util.intstr.IntOrString",
        ] {
            assert!(schema.message(name).is_some(), "{name}");
        }
    }

    #[test]
    fn broken_tables_are_errors() {
        assert!(parse("1 x string").unwrap_err().contains("outside a message"));
        assert!(
            parse("message a.A\n1 x b.B")
                .unwrap_err()
                .contains("not in the table")
        );
        assert!(
            parse("message a.A\n1 x string\n1 y string")
                .unwrap_err()
                .contains("twice")
        );
        assert!(parse("message a.A\n1 x string odd").unwrap_err().contains("flag"));
        assert!(
            parse("message a.A\n1 x string inline")
                .unwrap_err()
                .contains("inline")
        );
        assert!(parse("message a.A\nx 1 string").unwrap_err().contains("number"));
    }
}
