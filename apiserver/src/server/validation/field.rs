//! Field paths and field errors as apimachinery's `pkg/util/validation/field` (`path.go`, `errors.go`)
//! builds and prints them, plus the bits of Go formatting (`%q`, `%#v`) their messages contain.

use serde_json::{Map, Value};

use crate::server::registry::FieldError;

/// A field path, printed as upstream's `field.Path.String()`: `spec.containers[0].image`,
/// `metadata.labels`, `data[key]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    /// A path starting at `root` (`""` is the whole object, as upstream's `field.NewPath("")`).
    pub fn new(root: &str) -> Self {
        Self(root.to_owned())
    }

    /// `self.name`.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_owned())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// `self[i]`.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// `self[key]` (map keys are not quoted upstream).
    pub fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }
}

impl std::fmt::Display for Path {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A bad value as `field.Error.ErrorBody()` prints it: strings quoted (`%q`), integers bare, anything
/// else already rendered the way Go's `%#v` would.
#[derive(Clone, Debug)]
pub enum Bad {
    /// A string, printed quoted.
    Str(String),
    /// An integer, printed bare.
    Int(i64),
    /// Printed as is (a Go `%#v` rendering).
    Raw(String),
}

impl Bad {
    fn render(&self) -> String {
        match self {
            Bad::Str(s) => go_quote(s),
            Bad::Int(i) => i.to_string(),
            Bad::Raw(s) => s.clone(),
        }
    }
}

impl From<&str> for Bad {
    fn from(s: &str) -> Self {
        Bad::Str(s.to_owned())
    }
}

impl From<String> for Bad {
    fn from(s: String) -> Self {
        Bad::Str(s)
    }
}

impl From<&String> for Bad {
    fn from(s: &String) -> Self {
        Bad::Str(s.clone())
    }
}

impl From<i64> for Bad {
    fn from(i: i64) -> Self {
        Bad::Int(i)
    }
}

/// The errors collected by one validation run.
pub type Errs = Vec<FieldError>;

fn err(path: &Path, reason: &str, body: String, detail: &str) -> FieldError {
    let message = if detail.is_empty() {
        body
    } else {
        format!("{body}: {detail}")
    };
    (path.to_string(), reason.to_owned(), message)
}

/// `field.Required`: `Required value[: detail]`.
pub fn required(path: &Path, detail: &str) -> FieldError {
    err(path, "FieldValueRequired", "Required value".into(), detail)
}

/// `field.Invalid`: `Invalid value: <value>[: detail]`.
pub fn invalid(path: &Path, value: impl Into<Bad>, detail: &str) -> FieldError {
    err(
        path,
        "FieldValueInvalid",
        format!("Invalid value: {}", value.into().render()),
        detail,
    )
}

/// `field.NotSupported`: `Unsupported value: <value>: supported values: "a", "b"`.
pub fn not_supported(path: &Path, value: impl Into<Bad>, supported: &[&str]) -> FieldError {
    let detail = if supported.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
        format!("supported values: {}", quoted.join(", "))
    };
    err(
        path,
        "FieldValueNotSupported",
        format!("Unsupported value: {}", value.into().render()),
        &detail,
    )
}

/// `field.Duplicate`: `Duplicate value: <value>`.
pub fn duplicate(path: &Path, value: impl Into<Bad>) -> FieldError {
    err(
        path,
        "FieldValueDuplicate",
        format!("Duplicate value: {}", value.into().render()),
        "",
    )
}

/// `field.Forbidden`: `Forbidden[: detail]`.
pub fn forbidden(path: &Path, detail: &str) -> FieldError {
    err(path, "FieldValueForbidden", "Forbidden".into(), detail)
}

/// `field.TooLong`: `Too long: may not be more than <max> bytes`.
pub fn too_long(path: &Path, max: usize) -> FieldError {
    err(
        path,
        "FieldValueTooLong",
        "Too long".into(),
        &format!("may not be more than {max} bytes"),
    )
}

/// `field.TooMany`: `Too many: <n>: must have at most <max> items`.
pub fn too_many(path: &Path, actual: usize, max: usize) -> FieldError {
    err(
        path,
        "FieldValueTooMany",
        format!("Too many: {actual}"),
        &format!("must have at most {max} items"),
    )
}

/// `field.NotFound`: `Not found: <value>`.
pub fn not_found(path: &Path, value: impl Into<Bad>) -> FieldError {
    err(
        path,
        "FieldValueNotFound",
        format!("Not found: {}", value.into().render()),
        "",
    )
}

/// Go's `strconv.Quote`: double quotes, `\"` and `\\`, C escapes for control characters, `\u`/`\U`
/// for other non-printable characters; printable Unicode is kept.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() || (c.is_whitespace() && c != ' ') || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON scalar as text (strings unquoted), the way a Go string field would hold it.
pub fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `%#v` of a `map[string]string`: `map[string]string{"a":"1", "b":"2"}`, or `map[string]string(nil)`
/// when absent (keys sorted, as Go's fmt prints maps).
pub fn go_string_map(m: Option<&Value>) -> String {
    match m.and_then(Value::as_object) {
        None => "map[string]string(nil)".into(),
        Some(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", go_quote(k), go_quote(&scalar_text(&map[k.as_str()]))))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// `%#v` of a `[]string`: `[]string{"a", "b"}`, or `[]string(nil)` when absent.
pub fn go_string_slice(v: Option<&Value>) -> String {
    match v.and_then(Value::as_array) {
        None => "[]string(nil)".into(),
        Some(items) => {
            let items: Vec<String> = items.iter().map(|i| go_quote(&scalar_text(i))).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// `%#v` of an `intstr.IntOrString`.
pub fn go_int_or_string(v: &Value) -> String {
    match v {
        Value::String(s) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", go_quote(s)),
        other => format!(
            "intstr.IntOrString{{Type:0, IntVal:{}, StrVal:\"\"}}",
            other.as_i64().unwrap_or(0)
        ),
    }
}

/// `%#v` of a `*metav1.LabelSelector` (dereferenced, as `ErrorBody` does): `v1.LabelSelector{...}`.
pub fn go_label_selector(sel: &Value) -> String {
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_owned(),
        Some(reqs) => {
            let items: Vec<String> = reqs
                .iter()
                .map(|r| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(&text(r, "key")),
                        go_quote(&text(r, "operator")),
                        go_string_slice(r.get("values"))
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

/// `%#v` of a Go pointer field: `(*T)(nil)`, or an address when set (Go prints one; it varies by run).
pub fn go_pointer(type_name: &str, set: bool) -> String {
    if set {
        format!("(*{type_name})(0xc000010000)")
    } else {
        format!("(*{type_name})(nil)")
    }
}

// ---- JSON access that never panics and treats a wrong type as absent ----

/// `v[key]` if present and not null.
pub fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// `v[key]` as a string.
pub fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A string field upstream defaults when empty: its value, or `default`.
pub fn or_default<'a>(v: &'a Value, key: &str, default: &'a str) -> &'a str {
    str_of(v, key).filter(|s| !s.is_empty()).unwrap_or(default)
}

/// [`or_default`], owned.
pub fn defaulted(v: &Value, key: &str, default: &str) -> String {
    or_default(v, key, default).to_owned()
}

/// `v[key]` as a string, `""` when absent (a Go string field's zero value).
pub fn text(v: &Value, key: &str) -> String {
    str_of(v, key).unwrap_or("").to_owned()
}

/// `v[key]` as an integer.
pub fn int_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(|x| {
        x.as_i64()
            .or_else(|| x.as_u64().map(|u| u.min(i64::MAX as u64) as i64))
    })
}

/// `v[key]` as a list (empty when absent).
pub fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key).and_then(Value::as_array).map_or(&[], Vec::as_slice)
}

/// `v[key]` as a map.
pub fn map_of<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

/// `v[key]` as a boolean, `false` when absent.
pub fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Whether `v[key]` is present and not null.
pub fn has(v: &Value, key: &str) -> bool {
    get(v, key).is_some()
}

/// A shared null for absent sub-objects.
pub static NULL: Value = Value::Null;

/// `v[key]`, or null.
pub fn at<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key).unwrap_or(&NULL)
}

/// Equality as apimachinery's `equality.Semantic.DeepEqual` sees it for objects held as JSON: absent,
/// null, `""`, `[]` and `{}` are all the zero value (Go cannot tell them apart either).
pub fn semantic_eq(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), normalize(v)))
                .filter(|(_, v)| !is_zero(v))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        other => other.clone(),
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}
