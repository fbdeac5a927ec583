//! Field paths and sets of them, and their wire encoding `FieldsV1`.
//!
//! Mirrors structured-merge-diff's `fieldpath` package (`element.go`, `path.go`, `set.go`,
//! `serialize.go`, `serialize-pe.go`) and the value ordering of its `value` package, which decides
//! both the order of conflicts in error messages and which path elements are "the same".
//!
//! A [`FieldSet`] is a trie: at each level the elements that are *members* (owned themselves) and
//! the elements that have *children* (something below them is owned). An element can be both, which
//! `FieldsV1` writes as a `"."` key inside the child object.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a [`Path`]: a map field, a list-map item by its key fields, a set item by its value,
/// or a list index (only in sets read from `FieldsV1`; field sets of objects never use indices).
#[derive(Debug, Clone)]
pub enum PathElement {
    /// `f:<name>`: the field `name` of a map.
    Field(String),
    /// `k:{"name":"web"}`: the item of a list-map whose key fields have these values, sorted by
    /// field name.
    Key(Vec<(String, Value)>),
    /// `v:<json>`: the item of a set (a list of scalars) equal to this value.
    Value(Value),
    /// `i:<n>`: the n-th item of a list.
    Index(usize),
}

impl PathElement {
    /// The `FieldsV1` key of this element: `f:name`, `k:{...}`, `v:...` or `i:n`.
    pub fn to_fields_v1_key(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(fields) => {
                // Go writes the key fields in their (sorted) order with encoding/json escaping.
                let body: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| {
                        format!("{}:{}", go_json(&Value::from(name.as_str())), go_json(value))
                    })
                    .collect();
                format!("k:{{{}}}", body.join(","))
            }
            Self::Value(value) => format!("v:{}", go_json(value)),
            Self::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key. `Ok(None)` for a well-formed key of an unknown type, which upstream
    /// drops rather than rejects (a newer server may know it).
    pub fn from_fields_v1_key(key: &str) -> Result<Option<Self>, String> {
        let (kind, rest) = match key.split_at_checked(2) {
            Some((prefix, rest)) if prefix.len() == 2 && prefix.ends_with(':') => (&prefix[..1], rest),
            _ => return Err(format!("invalid path element {key:?}: missing colon")),
        };
        let element = match kind {
            "f" => Self::Field(rest.to_owned()),
            "v" => {
                Self::Value(serde_json::from_str(rest).map_err(|e| format!("invalid value in {key:?}: {e}"))?)
            }
            "k" => {
                let fields: Map<String, Value> =
                    serde_json::from_str(rest).map_err(|e| format!("invalid key in {key:?}: {e}"))?;
                // serde_json's map is sorted by name, which is the order upstream sorts keys in.
                Self::Key(fields.into_iter().collect())
            }
            "i" => Self::Index(
                rest.parse()
                    .map_err(|e| format!("invalid index in {key:?}: {e}"))?,
            ),
            _ => return Ok(None),
        };
        Ok(Some(element))
    }
}

/// Upstream's total order on path elements: fields, then keys, then values, then indices.
impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        fn rank(e: &PathElement) -> u8 {
            match e {
                PathElement::Field(_) => 0,
                PathElement::Key(_) => 1,
                PathElement::Value(_) => 2,
                PathElement::Index(_) => 3,
            }
        }
        match (self, other) {
            (Self::Field(a), Self::Field(b)) => a.cmp(b),
            (Self::Key(a), Self::Key(b)) => compare_field_lists(a, b),
            (Self::Value(a), Self::Value(b)) => compare_values(a, b),
            (Self::Index(a), Self::Index(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// Equality must agree with the order (`80` and `80.0` are the same key upstream), so it is defined
// through it rather than derived from `serde_json::Value`'s equality.
impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// Upstream's `PathElement.String()`, used in conflict messages: `.name`, `[name="web"]`,
/// `[containerPort=80,protocol="TCP"]`, `[=value]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => write!(f, ".{name}"),
            Self::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(name, value)| format!("{name}={}", go_value_string(value)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            Self::Value(value) => write!(f, "[={}]", go_value_string(value)),
            Self::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A sequence of path elements from the root of an object to one field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<PathElement>);

/// The elements written one after the other: `.spec.containers[name="web"].image`.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|e| write!(f, "{e}"))
    }
}

/// A set of field paths, as a trie (upstream's `fieldpath.Set`).
///
/// Invariant: no child set is empty, so structural equality is set equality.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// A set holding the given paths.
    pub fn from_paths<'a>(paths: impl IntoIterator<Item = &'a [PathElement]>) -> Self {
        let mut set = Self::new();
        for path in paths {
            set.insert(path);
        }
        set
    }

    /// Whether the set holds no path.
    pub fn is_empty(&self) -> bool {
        // Children are never empty, so members decide unless there are children.
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds one path. The empty path (the whole object) is never a member, as upstream.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Whether `path` is a member (not merely a prefix of one).
    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// Whether `element` is a member at this level.
    pub fn has_member(&self, element: &PathElement) -> bool {
        self.members.contains(element)
    }

    /// The paths below `element`, relative to it (upstream's `WithPrefix`).
    pub fn child(&self, element: &PathElement) -> Option<&FieldSet> {
        self.children.get(element)
    }

    /// Paths in either set.
    pub fn union(&self, other: &Self) -> Self {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (element, child) in &other.children {
            let merged = match out.children.get(element) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(element.clone(), merged);
        }
        out
    }

    /// [`Self::union`] of two owned sets: `other` is taken apart rather than copied (the write path
    /// builds big sets, a whole pod's fields, and cloning them was a fifth of a create's CPU).
    pub fn merge(mut self, other: Self) -> Self {
        self.merge_from(other);
        self
    }

    fn merge_from(&mut self, other: Self) {
        self.members.extend(other.members);
        for (element, child) in other.children {
            match self.children.entry(element) {
                std::collections::btree_map::Entry::Occupied(mut mine) => mine.get_mut().merge_from(child),
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(child);
                }
            }
        }
    }

    /// [`Self::difference`] in place.
    pub fn remove_all(&mut self, other: &Self) {
        self.members.retain(|m| !other.members.contains(m));
        self.children.retain(|e, mine| {
            if let Some(o) = other.children.get(e) {
                mine.remove_all(o);
            }
            !mine.is_empty()
        });
    }

    /// [`Self::recursive_difference`] in place.
    pub fn remove_recursive(&mut self, other: &Self) {
        self.members.retain(|m| !other.members.contains(m));
        self.children.retain(|e, mine| {
            if other.members.contains(e) {
                return false;
            }
            if let Some(o) = other.children.get(e) {
                mine.remove_recursive(o);
            }
            !mine.is_empty()
        });
    }

    /// Paths in both sets.
    pub fn intersection(&self, other: &Self) -> Self {
        let members = self.members.intersection(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter_map(|(e, mine)| Some((e.clone(), mine.intersection(other.children.get(e)?))))
            .filter(|(_, c)| !c.is_empty())
            .collect();
        Self { members, children }
    }

    /// Paths in `self` that are not in `other`. Paths below a member of `other` stay.
    pub fn difference(&self, other: &Self) -> Self {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .map(|(e, mine)| {
                (
                    e.clone(),
                    other
                        .children
                        .get(e)
                        .map_or_else(|| mine.clone(), |o| mine.difference(o)),
                )
            })
            .filter(|(_, c)| !c.is_empty())
            .collect();
        Self { members, children }
    }

    /// Paths in `self` that are neither in `other` nor below a member of `other` (upstream's
    /// `RecursiveDifference`, used to ignore whole subtrees such as `status`).
    pub fn recursive_difference(&self, other: &Self) -> Self {
        let members = self.members.difference(&other.members).cloned().collect();
        let children = self
            .children
            .iter()
            .filter(|(e, _)| !other.members.contains(e))
            .map(|(e, mine)| {
                (
                    e.clone(),
                    other
                        .children
                        .get(e)
                        .map_or_else(|| mine.clone(), |o| mine.recursive_difference(o)),
                )
            })
            .filter(|(_, c)| !c.is_empty())
            .collect();
        Self { members, children }
    }

    /// The set with every map field that has owned paths below it made a member too (upstream's
    /// `EnsureNamedFieldsAreMembers`). Prune uses it so that removing a field's last owned child
    /// can remove the field. Upstream does this only for fields declared by a struct type; every
    /// map here is treated as a struct, which differs only for maps of maps (see `typed.rs`).
    pub fn with_named_fields_as_members(&self) -> Self {
        let mut out = Self {
            members: self.members.clone(),
            children: BTreeMap::new(),
        };
        for (element, child) in &self.children {
            if matches!(element, PathElement::Field(_)) {
                out.members.insert(element.clone());
            }
            out.children
                .insert(element.clone(), child.with_named_fields_as_members());
        }
        out
    }

    /// Every member path, in upstream's iteration order: at each level the members, then each
    /// child's paths (this is the order conflicts are reported in).
    pub fn paths(&self) -> Vec<Path> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Path>) {
        for member in &self.members {
            let mut path = prefix.clone();
            path.push(member.clone());
            out.push(Path(path));
        }
        for (element, child) in &self.children {
            prefix.push(element.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` encoding: a JSON object keyed by [`PathElement::to_fields_v1_key`], each
    /// value an object of the children, with `".": {}` when the element is also a member.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_contents(false))
    }

    fn fields_v1_contents(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self && !self.is_empty() {
            out.insert(".".to_owned(), Value::Object(Map::new()));
        }
        for member in &self.members {
            if !self.children.contains_key(member) {
                out.insert(member.to_fields_v1_key(), Value::Object(Map::new()));
            }
        }
        for (element, child) in &self.children {
            let contents = child.fields_v1_contents(self.members.contains(element));
            out.insert(element.to_fields_v1_key(), Value::Object(contents));
        }
        out
    }

    /// Reads the `FieldsV1` encoding. Keys of unknown types are skipped, as upstream does.
    pub fn from_fields_v1(fields: &Value) -> Result<Self, String> {
        let Value::Object(map) = fields else {
            return Err("fieldsV1 must be a JSON object".to_owned());
        };
        Ok(Self::read_fields_v1(map)?.0.unwrap_or_default())
    }

    /// Returns the children found in `map` (`None` when there are none) and whether the element
    /// holding `map` is itself a member: when it has `"."`, or when it has nothing else.
    fn read_fields_v1(map: &Map<String, Value>) -> Result<(Option<Self>, bool), String> {
        let mut children: Option<Self> = None;
        let mut is_member = false;
        for (key, value) in map {
            if key == "." {
                is_member = true;
                continue;
            }
            let Some(element) = PathElement::from_fields_v1_key(key)? else {
                continue;
            };
            let Value::Object(inner) = value else {
                return Err(format!("value of {key:?} must be a JSON object"));
            };
            let (grandchildren, child_is_member) = Self::read_fields_v1(inner)?;
            let set = children.get_or_insert_with(Self::new);
            if child_is_member {
                set.members.insert(element.clone());
            }
            if let Some(grandchildren) = grandchildren.filter(|g| !g.is_empty()) {
                set.children.insert(element, grandchildren);
            }
        }
        if children.is_none() {
            is_member = true;
        }
        Ok((children, is_member))
    }
}

/// One path per line, as upstream's `Set.String()`.
impl fmt::Display for FieldSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.paths().iter().map(Path::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

// ---- value order and printing, as structured-merge-diff's `value` package -----------------------

/// Upstream's total order on values: numbers (ints and floats compared numerically), then strings,
/// booleans, lists, maps, and null last.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => compare_numbers(x, y),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (l, r) in x.iter().zip(y) {
                let c = compare_values(l, r);
                if c != Ordering::Equal {
                    return c;
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => compare_maps(x, y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Value equality under [`compare_values`] (so `1` equals `1.0`, as upstream's `value.Equals`).
pub fn values_equal(a: &Value, b: &Value) -> bool {
    compare_values(a, b) == Ordering::Equal
}

fn compare_numbers(x: &serde_json::Number, y: &serde_json::Number) -> Ordering {
    let as_int = |n: &serde_json::Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (as_int(x), as_int(y)) {
        (Some(a), Some(b)) => a.cmp(&b),
        _ => {
            let (a, b) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            a.partial_cmp(&b).unwrap_or(Ordering::Equal)
        }
    }
}

/// Upstream's `MapCompare`: the union of keys in lexical order; the first key missing on one side
/// decides (the side that lacks it sorts after), else the first differing value, else the length.
fn compare_maps(x: &Map<String, Value>, y: &Map<String, Value>) -> Ordering {
    let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
    for (i, key) in keys.into_iter().enumerate() {
        let c = if i == x.len() {
            Ordering::Less
        } else if i == y.len() {
            Ordering::Greater
        } else {
            match (x.get(key), y.get(key)) {
                (None, _) => Ordering::Greater,
                (_, None) => Ordering::Less,
                (Some(l), Some(r)) => compare_values(l, r),
            }
        };
        if c != Ordering::Equal {
            return c;
        }
    }
    Ordering::Equal
}

fn compare_field_lists(a: &[(String, Value)], b: &[(String, Value)]) -> Ordering {
    for ((an, av), (bn, bv)) in a.iter().zip(b) {
        let c = an.cmp(bn).then_with(|| compare_values(av, bv));
        if c != Ordering::Equal {
            return c;
        }
    }
    a.len().cmp(&b.len())
}

/// Upstream's `value.ToString`: Go's `%q` for strings, `%v` for numbers and booleans.
fn go_value_string(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_f64() => go_float(n.as_f64().unwrap_or_default()),
        Value::Number(n) => n.to_string(),
        Value::String(s) => go_quote(s),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_value_string).collect::<Vec<_>>().join(",")
        ),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", go_value_string(v)))
            .collect(),
    }
}

/// Go's `%v` for a float64: the shortest representation, in exponent form outside [1e-4, 1e21).
fn go_float(f: f64) -> String {
    let magnitude = f.abs();
    if magnitude != 0.0 && !(1e-4..1e21).contains(&magnitude) {
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exponent.strip_prefix('-').map_or(("+", exponent), |d| ("-", d));
        format!("{mantissa}e{sign}{digits:0>2}")
    } else {
        f.to_string()
    }
}

/// Go's `%q`: a double-quoted string with Go escapes; printable Unicode stays as is.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x80 && c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON as Go's `encoding/json` writes it: serde_json's output with `<`, `>`, `&`, U+2028 and
/// U+2029 escaped (those characters can only occur inside strings, so replacing them is safe).
pub(crate) fn go_json(value: &Value) -> String {
    let s = value.to_string();
    if !s.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn f(name: &str) -> PathElement {
        PathElement::Field(name.to_owned())
    }

    fn key(name: &str, value: Value) -> PathElement {
        PathElement::Key(vec![(name.to_owned(), value)])
    }

    #[test]
    fn fields_v1_round_trips_the_documented_shape() {
        let wire = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:name": {}}}}},
                "f:finalizers": {"v:\"a\"": {}},
            }
        });
        let set = FieldSet::from_fields_v1(&wire).unwrap();
        let web = || key("name", json!("web"));
        let containers = [f("spec"), f("template"), f("spec"), f("containers")];
        assert!(set.has(&[f("metadata"), f("labels"), f("app")]));
        assert!(!set.has(&[f("metadata"), f("labels")]));
        assert!(set.has(&[containers.as_slice(), &[web()]].concat()));
        assert!(set.has(&[containers.as_slice(), &[web(), f("image")]].concat()));
        assert!(set.has(&[f("spec"), f("finalizers"), PathElement::Value(json!("a"))]));
        assert_eq!(set.to_fields_v1(), wire);
    }

    /// The in-place and owned set operations the write path uses agree with the copying ones.
    #[test]
    fn in_place_operations_equal_copying_ones() {
        let sets = [
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}}}),
            json!({"f:metadata": {}, "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:x": {}}}}}),
            json!({"f:spec": {".": {}, "f:template": {"f:spec": {"f:x": {}, "f:y": {}}}}, "f:status": {}}),
            json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}}, "f:status": {"f:phase": {}}}),
            json!({}),
        ]
        .map(|wire| FieldSet::from_fields_v1(&wire).unwrap());
        for a in &sets {
            for b in &sets {
                assert_eq!(a.clone().merge(b.clone()), a.union(b), "{a:?} ∪ {b:?}");
                let mut d = a.clone();
                d.remove_all(b);
                assert_eq!(d, a.difference(b), "{a:?} - {b:?}");
                let mut r = a.clone();
                r.remove_recursive(b);
                assert_eq!(r, a.recursive_difference(b), "{a:?} -r {b:?}");
            }
        }
    }

    #[test]
    fn fields_v1_edge_cases() {
        let cases = [
            // An element with only unknown children counts as a member, as upstream.
            (json!({"f:a": {"x:1": {}}}), json!({"f:a": {}})),
            (json!({}), json!({})),
            (json!({"i:3": {}}), json!({"i:3": {}})),
            (
                json!({"k:{\"b\":2,\"a\":\"x\"}": {}}),
                json!({"k:{\"a\":\"x\",\"b\":2}": {}}),
            ),
        ];
        for (input, output) in cases {
            assert_eq!(
                FieldSet::from_fields_v1(&input).unwrap().to_fields_v1(),
                output,
                "{input}"
            );
        }
        for bad in [
            json!([]),
            json!({"f:a": 1}),
            json!({"k:nope": {}}),
            json!({"q": {}}),
        ] {
            assert!(FieldSet::from_fields_v1(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_strings_match_upstream() {
        let cases = [
            (vec![f("spec"), f("replicas")], ".spec.replicas"),
            (
                vec![f("spec"), f("containers"), key("name", json!("web")), f("image")],
                ".spec.containers[name=\"web\"].image",
            ),
            (
                vec![PathElement::Key(vec![
                    ("containerPort".into(), json!(80)),
                    ("protocol".into(), json!("TCP")),
                ])],
                "[containerPort=80,protocol=\"TCP\"]",
            ),
            (
                vec![f("finalizers"), PathElement::Value(json!("a\"b"))],
                ".finalizers[=\"a\\\"b\"]",
            ),
            (
                vec![PathElement::Index(2), PathElement::Value(json!(1.5e-7))],
                "[2][=1.5e-07]",
            ),
        ];
        for (path, want) in cases {
            assert_eq!(Path(path).to_string(), want);
        }
    }

    #[test]
    fn set_operations() {
        let a = FieldSet::from_paths([&[f("a"), f("b")][..], &[f("a"), f("c")], &[f("d")]]);
        let b = FieldSet::from_paths([&[f("a"), f("b")][..], &[f("e")], &[f("a")]]);
        assert_eq!(
            a.union(&b),
            FieldSet::from_paths([
                &[f("a"), f("b")][..],
                &[f("a"), f("c")],
                &[f("d")],
                &[f("e")],
                &[f("a")]
            ])
        );
        assert_eq!(a.intersection(&b), FieldSet::from_paths([&[f("a"), f("b")][..]]));
        assert_eq!(
            a.difference(&b),
            FieldSet::from_paths([&[f("a"), f("c")][..], &[f("d")]])
        );
        assert_eq!(a.recursive_difference(&b), FieldSet::from_paths([&[f("d")][..]]));
        assert!(a.difference(&a).is_empty());
        assert_eq!(a.difference(&a), FieldSet::new());
        assert_eq!(
            a.with_named_fields_as_members(),
            a.union(&FieldSet::from_paths([&[f("a")][..]]))
        );
        let order: Vec<String> = a.union(&b).paths().iter().map(Path::to_string).collect();
        assert_eq!(order, [".a", ".d", ".e", ".a.b", ".a.c"]);
    }

    #[test]
    fn value_order_and_equality_follow_upstream() {
        assert!(values_equal(&json!(80), &json!(80.0)));
        assert_eq!(key("port", json!(80)), key("port", json!(80.0)));
        let ordered = [
            json!(-1),
            json!(2.5),
            json!(10),
            json!("a"),
            json!(false),
            json!(true),
            json!([1]),
            json!({}),
            json!(null),
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare_values(&pair[0], &pair[1]),
                Ordering::Less,
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(compare_values(&json!({"a": 1}), &json!({"b": 1})), Ordering::Less);
        assert!(f("z") < key("a", json!(1)));
        assert_eq!(
            PathElement::Value(json!("<&>")).to_fields_v1_key(),
            "v:\"\\u003c\\u0026\\u003e\""
        );
    }
}
