//! Label and field selectors: the `labelSelector=` and `fieldSelector=` query parameters of list and
//! watch, the metav1 `LabelSelector` objects that ReplicaSets, Deployments and Services hold, and
//! matching objects against them.
//!
//! This mirrors upstream apimachinery exactly (grammar, whitespace, validation and the text of every
//! error, because the API server returns those texts to kubectl as 400 BadRequest):
//! - `pkg/labels/selector.go`: the lexer and recursive-descent parser, `NewRequirement`, matching
//!   (`!=` and `notin` also match objects that lack the key), and `String()` (requirements sorted by
//!   key, set values sorted). Like upstream we also accept its integer comparisons `key>N`, `key<N`;
//! - `pkg/api/validate/content/kube.go` and `dns.go`: label key and value validation messages;
//! - `pkg/util/validation/field/errors.go` and `pkg/util/errors`: how those validation errors print;
//! - `pkg/apis/meta/v1/helpers.go`: `LabelSelectorAsSelector`;
//! - `pkg/fields/selector.go`: field selectors with `\,` `\=` `\\` escaping.
//!
//! Which fields a kind supports is not decided here: [`FieldSelector::unsupported_field`] lets the
//! registry answer `field label not supported: <field>` for the rest.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::{self, Write as _},
    str::FromStr,
};

use serde_json::Value;

/// A selector that upstream would reject. The message is upstream's text, ready for a 400 Status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A label selector string, a label requirement or a metav1 `LabelSelector` is invalid.
    #[error("{0}")]
    Label(String),
    /// A field selector string is invalid.
    #[error("{0}")]
    Field(String),
}

// ------------------------------------------------------------------------------------------------
// Label selectors: the model
// ------------------------------------------------------------------------------------------------

/// The operator of a label [`Requirement`] (upstream `selection.Operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key in (a,b)`: the key exists and its value is one of the set.
    In,
    /// `key notin (a,b)`: the key is absent, or its value is none of the set.
    NotIn,
    /// `key=a`.
    Equals,
    /// `key==a` (same meaning as `=`, kept so the string form round-trips).
    DoubleEquals,
    /// `key!=a`: the key is absent, or its value differs.
    NotEquals,
    /// `key`: the key exists.
    Exists,
    /// `!key`: the key does not exist.
    DoesNotExist,
    /// `key>5`: the key exists and its value, as an integer, is greater.
    GreaterThan,
    /// `key<5`: the key exists and its value, as an integer, is smaller.
    LessThan,
}

impl Operator {
    /// Upstream's name for the operator (`selection.Operator` string values).
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// Upstream's `binaryOperators`, in its order: parse errors list them.
const BINARY_OPERATORS: &str = "in, notin, =, ==, !=, gt, lt";

/// One term of a label selector: a key, an operator and its values (upstream `labels.Requirement`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement with upstream's `NewRequirement` checks: a valid label key, valid label
    /// values, none for `Exists`/`DoesNotExist`, one for `=`/`==`/`!=`, one integer for `>`/`<`, at
    /// least one for `in`/`notin`.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        new_requirement(key, operator, values).map_err(SelectorError::Label)
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, as given (parsed selectors hold them sorted and without duplicates).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether a label set, seen through `get` (a key's value, or `None` if absent), satisfies this
    /// requirement.
    pub fn matches_with<'v>(&self, get: impl Fn(&str) -> Option<&'v str>) -> bool {
        let value = get(&self.key);
        let has_value = |v: &str| self.values.iter().any(|x| x == v);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => value.is_some_and(has_value),
            // Upstream semantics: an object without the key satisfies `!=` and `notin`.
            Operator::NotIn | Operator::NotEquals => !value.is_some_and(has_value),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [bound]) = (value.and_then(parse_go_int), self.values.as_slice()) else {
                    return false;
                };
                let Some(bound) = parse_go_int(bound) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > bound
                } else {
                    actual < bound
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Upstream `Requirement.String()`: `!k`, `k`, `k=v`, `k==v`, `k!=v`, `k>v`, `k<v`,
    /// `k in (a,b)`, `k notin (a,b)`, with set values sorted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
        };
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        let values = values.join(",");
        match self.operator {
            Operator::In | Operator::NotIn => write!(f, "{}{op}({values})", self.key),
            _ => write!(f, "{}{op}{values}", self.key),
        }
    }
}

/// A label selector: the AND of its requirements (upstream `labels.Selector`).
///
/// Besides parsed selectors there is "nothing" (what a missing metav1 selector converts to), which
/// matches no object and prints as the empty string, as upstream's `labels.Nothing()` does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every object (the empty string's selector).
    pub fn everything() -> Self {
        Self::default()
    }

    /// The selector that matches no object (upstream `labels.Nothing()`).
    pub fn nothing() -> Self {
        Self {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Parses the `labelSelector=` form, e.g. `app=web,tier notin (db),!canary` (upstream
    /// `labels.Parse`). Requirements are kept sorted by key.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser::new(selector);
        let requirements = parser.parse().map_err(SelectorError::Label)?;
        Ok(Self::from_requirements(requirements))
    }

    /// The selector that requires exactly these labels (upstream `SelectorFromSet`; like upstream it
    /// does not validate them). An empty set gives [`LabelSelector::everything`].
    pub fn from_set(labels: &BTreeMap<String, String>) -> Self {
        let requirements = labels
            .iter()
            .map(|(k, v)| Requirement {
                key: k.clone(),
                operator: Operator::Equals,
                values: vec![v.clone()],
            })
            .collect();
        Self::from_requirements(requirements)
    }

    /// Converts a metav1 `LabelSelector` held as JSON
    /// (`{"matchLabels":{..},"matchExpressions":[{"key","operator","values"}]}`), as upstream's
    /// `LabelSelectorAsSelector` does: `null` selects nothing, `{}` selects everything, operators are
    /// `In`, `NotIn`, `Exists` and `DoesNotExist`, and every requirement is validated.
    pub fn from_metav1(selector: &Value) -> Result<Self, SelectorError> {
        metav1_to_selector(selector).map_err(SelectorError::Label)
    }

    /// Builds a selector from requirements (sorted by key, as upstream's `Add` does).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        // Stable, so requirements on one key keep their order and the string form is deterministic.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self {
            requirements,
            nothing: false,
        }
    }

    /// The requirements, sorted by key.
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True if the selector does not restrict anything (it matches every object).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// True for [`LabelSelector::nothing`].
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether a label set satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Whether an object's `metadata.labels` satisfy the selector (no labels is the empty set).
    pub fn matches_object(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        self.matches_with(|k| labels.and_then(|l| l.get(k)).and_then(Value::as_str))
    }

    /// Whether the labels seen through `get` (a key's value, or `None` if absent) satisfy the selector.
    pub fn matches_with<'v>(&self, get: impl Fn(&str) -> Option<&'v str>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches_with(&get))
    }

    /// If the selector requires `key` to have one specific value (`key=v`, `key==v` or
    /// `key in (v)`), that value (upstream `RequiresExactMatch`; only the first requirement on the
    /// key is looked at).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [v]) => Some(v),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The canonical string form (upstream `String()`): requirements joined by `,`, in key order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Upstream `NewRequirement`, returning upstream's aggregated error text.
fn new_requirement(key: &str, operator: Operator, values: Vec<String>) -> Result<Requirement, String> {
    // Upstream is called without a field path, so its paths are "key", "values", "values[i]".
    let mut errs = Vec::new();
    errs.extend(validate_label_key(key, "key"));
    let count_error = match operator {
        Operator::In | Operator::NotIn if values.is_empty() => {
            Some("for 'in', 'notin' operators, values set can't be empty")
        }
        Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
            Some("exact-match compatibility requires one single value")
        }
        Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
            Some("values set must be empty for exists and does not exist")
        }
        Operator::GreaterThan | Operator::LessThan if values.len() != 1 => {
            Some("for 'Gt', 'Lt' operators, exactly one value is required")
        }
        _ => None,
    };
    errs.extend(count_error.map(|detail| invalid("values", &go_json_strings(&values), detail)));
    if matches!(operator, Operator::GreaterThan | Operator::LessThan) {
        for (i, v) in values.iter().enumerate() {
            if parse_go_int(v).is_none() {
                let detail = "for 'Gt', 'Lt' operators, the value must be an integer";
                errs.push(invalid(&format!("values[{i}]"), &go_quote(v), detail));
            }
        }
    }
    for (i, v) in values.iter().enumerate() {
        errs.extend(validate_label_value(key, v, &format!("values[{i}]")));
    }
    aggregate(errs)?;
    Ok(Requirement {
        key: key.to_string(),
        operator,
        values,
    })
}

/// Go's `strconv.ParseInt(s, 10, 64)`: optional sign, decimal digits, in range. Rust's parser
/// accepts exactly that set of strings.
fn parse_go_int(s: &str) -> Option<i64> {
    s.parse().ok()
}

// ------------------------------------------------------------------------------------------------
// Label selectors: metav1.LabelSelector conversion
// ------------------------------------------------------------------------------------------------

/// Upstream `LabelSelectorAsSelector` over the JSON form.
fn metav1_to_selector(selector: &Value) -> Result<LabelSelector, String> {
    let obj = match selector {
        Value::Null => return Ok(LabelSelector::nothing()),
        Value::Object(obj) => obj,
        _ => return Err("invalid label selector: expected an object".to_string()),
    };
    let match_labels = json_object_or_empty(obj.get("matchLabels"), "matchLabels")?;
    let match_expressions = json_array_or_empty(obj.get("matchExpressions"), "matchExpressions")?;
    if match_labels.is_empty() && match_expressions.is_empty() {
        return Ok(LabelSelector::everything());
    }
    let mut requirements = Vec::with_capacity(match_labels.len() + match_expressions.len());
    for (key, value) in match_labels {
        let value = json_string(Some(value), &format!("matchLabels[{key:?}]"))?;
        requirements.push(new_requirement(key, Operator::Equals, vec![value])?);
    }
    for (i, expr) in match_expressions.iter().enumerate() {
        requirements.push(metav1_expression(expr, i)?);
    }
    Ok(LabelSelector::from_requirements(requirements))
}

/// One `matchExpressions` entry to a requirement.
fn metav1_expression(expr: &Value, index: usize) -> Result<Requirement, String> {
    let at = |field: &str| format!("matchExpressions[{index}].{field}");
    let Some(expr) = expr.as_object() else {
        return Err(format!(
            "invalid label selector: matchExpressions[{index}] must be an object"
        ));
    };
    let key = json_string(expr.get("key"), &at("key"))?;
    let operator = json_string(expr.get("operator"), &at("operator"))?;
    let operator = match operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            return Err(format!(
                "{} is not a valid label selector operator",
                go_quote(other)
            ));
        }
    };
    let values = json_array_or_empty(expr.get("values"), &at("values"))?
        .iter()
        .enumerate()
        .map(|(i, v)| json_string(Some(v), &format!("{}[{i}]", at("values"))))
        .collect::<Result<Vec<_>, _>>()?;
    new_requirement(&key, operator, values)
}

/// A JSON string field; absent or `null` reads as "" (Go's zero value).
fn json_string(value: Option<&Value>, what: &str) -> Result<String, String> {
    match value {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("invalid label selector: {what} must be a string")),
    }
}

/// A JSON object field; absent or `null` reads as empty.
fn json_object_or_empty<'a>(
    value: Option<&'a Value>,
    what: &str,
) -> Result<Vec<(&'a String, &'a Value)>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().collect()),
        Some(_) => Err(format!("invalid label selector: {what} must be an object")),
    }
}

/// A JSON array field; absent or `null` reads as empty.
fn json_array_or_empty<'a>(value: Option<&'a Value>, what: &str) -> Result<&'a [Value], String> {
    match value {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format!("invalid label selector: {what} must be an array")),
    }
}

// ------------------------------------------------------------------------------------------------
// Label selectors: lexer and parser (a port of upstream's, quirks included)
// ------------------------------------------------------------------------------------------------

/// Lexer tokens (upstream `labels.Token`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Upstream `string2token`: the literals that are tokens rather than identifiers.
fn keyword(literal: &[u8]) -> Option<Token> {
    Some(match literal {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(ch: u8) -> bool {
    matches!(ch, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(ch: u8) -> bool {
    matches!(ch, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Upstream's byte lexer. Only ASCII bytes end an identifier, so every literal is a whole UTF-8
/// slice of the input.
struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    /// The next byte, or 0 at the end. As upstream, a NUL byte in the input also reads as 0: it ends
    /// the identifier it follows, and between tokens it ends the selector.
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    /// Steps back over the byte just read (only ever called after a read that advanced).
    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn literal(&self, start: usize, end: usize) -> String {
        String::from_utf8_lossy(&self.s[start..end]).into_owned()
    }

    /// The next token and its literal (upstream `Lex`).
    fn lex(&mut self) -> (Token, String) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, String::new());
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }

    /// An identifier, or the keywords `in` / `notin`.
    fn scan_id_or_keyword(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut end = start;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            end = self.pos;
        }
        let token = keyword(&self.s[start..end]).unwrap_or(Token::Identifier);
        (token, self.literal(start, end))
    }

    /// The longest operator made of special symbols (`!=` rather than `!`, `==` rather than `=`).
    fn scan_special_symbol(&mut self) -> (Token, String) {
        let start = self.pos;
        let mut last: Option<(Token, usize)> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            match keyword(&self.s[start..self.pos]) {
                Some(token) => last = Some((token, self.pos)),
                None if last.is_some() => {
                    self.unread();
                    break;
                }
                None => {}
            }
        }
        match last {
            Some((token, end)) => (token, self.literal(start, end)),
            // Unreachable in practice (every special symbol is a token alone); kept as upstream has it.
            None => (
                Token::Error,
                format!(
                    "error expected: keyword found '{}'",
                    self.literal(start, self.pos)
                ),
            ),
        }
    }
}

/// Upstream's parser contexts: `in` and `notin` are operators after a key, identifiers elsewhere
/// (`in in (in)` is a valid selector).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

/// Recursive-descent parser over the scanned tokens (upstream `labels.Parser`). Errors are upstream's
/// texts.
struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    /// Scans the whole input up front, as upstream does.
    fn new(selector: &str) -> Self {
        let mut lexer = Lexer {
            s: selector.as_bytes(),
            pos: 0,
        };
        let mut items = Vec::new();
        loop {
            let item = lexer.lex();
            let end = item.0 == Token::EndOfString;
            items.push(item);
            if end {
                return Self { items, position: 0 };
            }
        }
    }

    fn token_in(context: Context, token: Token) -> Token {
        match (context, token) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            _ => token,
        }
    }

    fn lookahead(&self, context: Context) -> (Token, String) {
        // The grammar never reads past EndOfString; clamping keeps that true for any input.
        let (token, literal) = &self.items[self.position.min(self.items.len() - 1)];
        (Self::token_in(context, *token), literal.clone())
    }

    fn consume(&mut self, context: Context) -> (Token, String) {
        let item = self.lookahead(context);
        self.position += 1;
        item
    }

    /// `<selector> ::= <requirement> | <requirement> "," <selector>`, or nothing.
    fn parse(&mut self) -> Result<Vec<Requirement>, String> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self
                        .parse_requirement()
                        .map_err(|e| format!("unable to parse requirement: {e}"))?;
                    requirements.push(r);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(format!("found '{literal}', expected: identifier after ','"));
                            }
                        }
                        _ => return Err(format!("found '{literal}', expected: ',' or 'end of string'")),
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    ));
                }
            }
        }
    }

    /// `<requirement> ::= [!] KEY [ <set-based-restriction> | <exact-match-restriction> ]`.
    fn parse_requirement(&mut self) -> Result<Requirement, String> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = inferred {
            return new_requirement(&key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // Upstream collects values in a set: sorted, without duplicates.
        new_requirement(&key, operator, values.into_iter().collect())
    }

    /// The key, and `Exists`/`DoesNotExist` when no binary operator follows (a `!key` never takes
    /// one: what follows it must be `,` or the end).
    fn parse_key_and_infer_operator(&mut self) -> Result<(String, Option<Operator>), String> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let mut operator = None;
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(format!("found '{literal}', expected: identifier"));
        }
        // The parser validates the key itself with a nil field path, which Go prints as "<nil>".
        if let Some(err) = validate_label_key(&literal, "<nil>") {
            return Err(err);
        }
        let (next, _) = self.lookahead(Context::Values);
        if operator.is_none() && matches!(next, Token::EndOfString | Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, String> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => return Err(format!("found '{literal}', expected: {BINARY_OPERATORS}")),
        })
    }

    /// `"(" <values> ")"`; `()` is the set holding the empty string.
    fn parse_values(&mut self) -> Result<BTreeSet<String>, String> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            // Sic: upstream has no comma before "expected" here.
            return Err(format!("found '{literal}' expected: '('"));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(format!("found '{literal}', expected: ')'"));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(BTreeSet::from([String::new()]))
            }
            _ => Err(format!("found '{literal}', expected: ',', ')' or identifier")),
        }
    }

    /// A comma-separated list of possibly empty identifiers: `(a,,b)`, `(,a)` and `(a,)` all hold "".
    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, String> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal);
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => return Err(format!("found '{literal}', expected: ',' or ')'")),
                    }
                }
                Token::Comma => {
                    // A comma first, last or doubled stands for an empty value. The next comma is
                    // left for the next round (upstream fixed `x in (a,,)` this way in 1.35).
                    let next = self.lookahead(Context::Values).0;
                    if values.is_empty() || matches!(next, Token::ClosedPar | Token::Comma) {
                        values.insert(String::new());
                    }
                    if next == Token::ClosedPar {
                        return Ok(values);
                    }
                }
                _ => return Err(format!("found '{literal}', expected: ',', or identifier")),
            }
        }
    }

    /// The single value after `=`, `==`, `!=`, `>` or `<`; nothing before `,` or the end is "".
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, String> {
        if matches!(
            self.lookahead(Context::Values).0,
            Token::EndOfString | Token::Comma
        ) {
            return Ok(BTreeSet::from([String::new()]));
        }
        match self.consume(Context::Values) {
            (Token::Identifier, literal) => Ok(BTreeSet::from([literal])),
            (_, literal) => Err(format!("found '{literal}', expected: identifier")),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Label key and value validation, printed as upstream's field errors
// ------------------------------------------------------------------------------------------------

const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_NAME_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// Upstream `validateLabelKey`: the `Invalid` field error at `path`, if `key` is not a label key.
fn validate_label_key(key: &str, path: &str) -> Option<String> {
    let errs = label_key_errors(key);
    (!errs.is_empty()).then(|| invalid(path, &go_quote(key), &errs.join("; ")))
}

/// Upstream `validateLabelValue`: the field error at `<path>[<key>]`, if `value` is not a label value.
fn validate_label_value(key: &str, value: &str, path: &str) -> Option<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_NAME_MAX {
        errs.push(max_len_error(LABEL_NAME_MAX));
    }
    if !value.is_empty() && !is_label_name(value) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    (!errs.is_empty()).then(|| invalid(&format!("{path}[{key}]"), &go_quote(value), &errs.join("; ")))
}

/// Upstream `content.IsLabelKey`: `[DNS-1123 subdomain "/"] name`, name ≤ 63 bytes.
fn label_key_errors(key: &str) -> Vec<String> {
    let name_examples = ["MyName", "my.name", "123-abc"];
    let parts: Vec<&str> = key.split('/').collect();
    let mut errs = Vec::new();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            *name
        }
        _ => {
            let shape = regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &name_examples);
            return vec![format!(
                "a valid label key {shape} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(LABEL_NAME_MAX)));
    }
    if !is_label_name(name) {
        errs.push(format!(
            "name part {}",
            regex_error(LABEL_KEY_ERR, LABEL_KEY_FMT, &name_examples)
        ));
    }
    errs
}

/// Upstream `IsDNS1123Subdomain`.
fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !value.split('.').all(is_dns1123_label) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    let edge_ok = |c: &u8| c.is_ascii_alphanumeric();
    let inner_ok = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    b.first().is_some_and(edge_ok) && b.last().is_some_and(edge_ok) && b.iter().all(inner_ok)
}

/// `^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge_ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let inner_ok = |c: &u8| edge_ok(c) || *c == b'-';
    b.first().is_some_and(edge_ok) && b.last().is_some_and(edge_ok) && b.iter().all(inner_ok)
}

/// Upstream `MaxLenError`.
fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} bytes")
}

/// Upstream `RegexError`, odd spacing included: `msg (e.g. 'a',  or 'b', regex used for … 're')`.
fn regex_error(msg: &str, regex: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, example) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        let _ = write!(out, "'{example}', ");
    }
    let _ = write!(out, "regex used for validation is '{regex}')");
    out
}

/// An upstream `field.Invalid` error as Go prints it; `bad_value` is already rendered.
fn invalid(path: &str, bad_value: &str, detail: &str) -> String {
    format!("{path}: Invalid value: {bad_value}: {detail}")
}

/// Upstream `ErrorList.ToAggregate().Error()`: nothing is Ok, one error prints alone, more print as
/// `[a, b]` without duplicates.
fn aggregate(errs: Vec<String>) -> Result<(), String> {
    let mut unique: Vec<String> = Vec::with_capacity(errs.len());
    for e in errs {
        if !unique.contains(&e) {
            unique.push(e);
        }
    }
    match unique.len() {
        0 => Ok(()),
        1 => Err(unique.remove(0)),
        _ => Err(format!("[{}]", unique.join(", "))),
    }
}

/// Go's `%q` (`strconv.Quote`). Go decides printability by Unicode category; this uses Rust's
/// control and whitespace classes, which agree for everything a selector can sensibly contain.
fn go_quote(s: &str) -> String {
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
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c == ' ' || !(c.is_control() || c.is_whitespace()) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// Go's `json.Marshal` of a `[]string` as field errors print it: `null` for none (upstream passes a
/// nil slice then), HTML-safe escaping as Go's encoder does.
fn go_json_strings(values: &[String]) -> String {
    if values.is_empty() {
        return "null".to_string();
    }
    let mut out = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        for c in v.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

// ------------------------------------------------------------------------------------------------
// Field selectors
// ------------------------------------------------------------------------------------------------

/// The operator of a field requirement. `==` parses as [`FieldOperator::Equals`], as upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FieldOperator {
    /// `field=value` or `field==value`.
    Equals,
    /// `field!=value`.
    NotEquals,
}

/// One term of a field selector (upstream `fields.Requirement`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldRequirement {
    /// The field path, e.g. `metadata.name` or `status.phase`, exactly as written (not trimmed).
    pub field: String,
    /// `=` or `!=`.
    pub op: FieldOperator,
    /// The value, unescaped.
    pub value: String,
}

impl FieldRequirement {
    /// Whether a field value satisfies the term; a missing field compares as "" (upstream `Set.Get`).
    pub fn matches(&self, actual: Option<&str>) -> bool {
        let equal = actual.unwrap_or("") == self.value;
        match self.op {
            FieldOperator::Equals => equal,
            FieldOperator::NotEquals => !equal,
        }
    }
}

impl fmt::Display for FieldRequirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            FieldOperator::Equals => "=",
            FieldOperator::NotEquals => "!=",
        };
        write!(f, "{}{op}{}", self.field, escape_field_value(&self.value))
    }
}

/// A field selector: the AND of its terms (upstream `fields.Selector` from `ParseSelector`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    /// The selector that matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parses the `fieldSelector=` form, e.g. `status.phase=Running,spec.nodeName!=n1`. Terms are
    /// split on unescaped commas and kept in sorted order, values may escape `\,` `\=` `\\`, and a
    /// term that is just an operator (`=`, `!=`) is dropped, all as upstream does.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut terms = split_terms(selector);
        terms.sort_unstable();
        let mut requirements = Vec::with_capacity(terms.len());
        for term in terms.into_iter().filter(|t| !t.is_empty()) {
            let Some((field, op, raw_value)) = split_term(term) else {
                let msg = format!("invalid selector: '{selector}'; can't understand '{term}'");
                return Err(SelectorError::Field(msg));
            };
            let value = unescape_field_value(raw_value).map_err(SelectorError::Field)?;
            // Upstream's Transform turns a term with neither field nor value into "everything".
            if field.is_empty() && value.is_empty() {
                continue;
            }
            requirements.push(FieldRequirement {
                field: field.to_string(),
                op,
                value,
            });
        }
        Ok(Self { requirements })
    }

    /// The terms, in upstream's order (sorted by their text as written).
    pub fn requirements(&self) -> &[FieldRequirement] {
        &self.requirements
    }

    /// True if the selector does not restrict anything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether an object satisfies every term; `get` returns a field's value, and a field it returns
    /// `None` for compares as the empty string (so `spec.nodeName=` selects unscheduled pods).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements
            .iter()
            .all(|r| r.matches(get(&r.field).as_deref()))
    }

    /// If a `field=value` term pins `field`, that value (upstream `RequiresExactMatch`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.op == FieldOperator::Equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// The first field (in term order) that is not in `supported`, for the server's 400
    /// `field label not supported: <field>`.
    pub fn unsupported_field(&self, supported: &[&str]) -> Option<&str> {
        self.requirements
            .iter()
            .map(|r| r.field.as_str())
            .find(|f| !supported.contains(f))
    }
}

impl fmt::Display for FieldSelector {
    /// Upstream `String()`: terms joined by `,`, values escaped, `==` printed as `=`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_char(',')?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl FromStr for FieldSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Escapes `\`, `,` and `=` in a field selector value (upstream `fields.EscapeValue`).
pub fn escape_field_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Upstream `UnescapeValue`: `\\` `\,` `\=` are the only escapes; a bare `,` or `=` is an error.
fn unescape_field_value(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut escaped = false;
    for c in raw.chars() {
        if escaped {
            if !matches!(c, '\\' | ',' | '=') {
                return Err(format!("invalid field selector: invalid escape sequence: \\{c}"));
            }
            out.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            // Upstream formats the rune with %v, which prints its code point: '=' is "61".
            ',' | '=' => {
                return Err(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                ));
            }
            c => out.push(c),
        }
    }
    if escaped {
        return Err("invalid field selector: invalid escape sequence: \\".to_string());
    }
    Ok(out)
}

/// Upstream `splitTerms`: split on commas not preceded by an escaping backslash (escapes are kept).
fn split_terms(selector: &str) -> Vec<&str> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in selector.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' {
            terms.push(&selector[start..i]);
            start = i + 1;
        }
    }
    terms.push(&selector[start..]);
    terms
}

/// Upstream `splitTerm`: the field is everything before the first `!=`, `==` or `=` (no escaping in
/// field names); the raw value is the rest.
fn split_term(term: &str) -> Option<(&str, FieldOperator, &str)> {
    const OPERATORS: [(&str, FieldOperator); 3] = [
        ("!=", FieldOperator::NotEquals),
        ("==", FieldOperator::Equals),
        ("=", FieldOperator::Equals),
    ];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS
            .iter()
            .find(|(op, _)| rest.starts_with(op))
            .map(|(op, kind)| (&term[..i], *kind, &rest[op.len()..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parse(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    fn label_err(s: &str) -> String {
        match LabelSelector::parse(s) {
            Err(SelectorError::Label(msg)) => msg,
            other => panic!("{s:?}: expected a label error, got {other:?}"),
        }
    }

    fn field_err(s: &str) -> String {
        match FieldSelector::parse(s) {
            Err(SelectorError::Field(msg)) => msg,
            other => panic!("{s:?}: expected a field error, got {other:?}"),
        }
    }

    fn req(key: &str, op: Operator, values: &[&str]) -> Requirement {
        Requirement::new(key, op, values.iter().map(|v| v.to_string()).collect()).unwrap()
    }

    // -------------------------------------------------------------------- label parsing (upstream)

    #[test]
    fn good_strings_restring_without_spaces() {
        // upstream TestSelectorParse
        for s in [
            "x=a,y=b,z=c",
            "",
            "x!=a,y=b",
            "x=",
            "x= ",
            "x=,z= ",
            "x= ,z= ",
            "!x",
            "x>1",
            "x>1,z<5",
        ] {
            assert_eq!(parse(s).to_string(), s.replace(' ', ""), "{s:?}");
        }
        for s in ["x=a||y=b", "x==a==b", "!x=a", "x<a"] {
            assert!(LabelSelector::parse(s).is_err(), "{s:?} should fail");
        }
    }

    #[test]
    fn parse_is_deterministic_and_sorted_by_key() {
        assert_eq!(parse("x=a,a=x").to_string(), "a=x,x=a");
        assert_eq!(parse("a=x,x=a"), parse("x=a,a=x"));
        assert_eq!(parse("z, y in (b,a), !x").to_string(), "!x,y in (a,b),z");
    }

    #[test]
    fn set_based_parser_table() {
        use Operator::*;
        // upstream TestSetSelectorParser (valid rows)
        let rows: Vec<(&str, Vec<Requirement>)> = vec![
            ("", vec![]),
            ("\rx", vec![req("x", Exists, &[])]),
            (
                "this-is-a-dns.domain.com/key-with-dash",
                vec![req("this-is-a-dns.domain.com/key-with-dash", Exists, &[])],
            ),
            (
                "this-is-another-dns.domain.com/key-with-dash in (so,what)",
                vec![req(
                    "this-is-another-dns.domain.com/key-with-dash",
                    In,
                    &["so", "what"],
                )],
            ),
            (
                "0.1.2.domain/99 notin (10.10.100.1, tick.tack.clock)",
                vec![req("0.1.2.domain/99", NotIn, &["10.10.100.1", "tick.tack.clock"])],
            ),
            ("foo  in\t (abc)", vec![req("foo", In, &["abc"])]),
            ("x notin\n (abc)", vec![req("x", NotIn, &["abc"])]),
            ("x  notin\t\t\t(abc,def)", vec![req("x", NotIn, &["abc", "def"])]),
            ("x in (abc,def)", vec![req("x", In, &["abc", "def"])]),
            ("x in (abc,)", vec![req("x", In, &["", "abc"])]),
            ("x in (abc,abc)", vec![req("x", In, &["abc"])]),
            ("x in ()", vec![req("x", In, &[""])]),
            ("x in (a,,)", vec![req("x", In, &["", "a"])]),
            ("x in (a,,,)", vec![req("x", In, &["", "a"])]),
            ("x in (a,,,,,,)", vec![req("x", In, &["", "a"])]),
            ("x in (a,,a,,a,,a,,)", vec![req("x", In, &["", "a"])]),
            ("x in (a,,b)", vec![req("x", In, &["", "a", "b"])]),
            ("x in (,)", vec![req("x", In, &[""])]),
            ("x in (,,)", vec![req("x", In, &[""])]),
            (
                "x notin (abc,,def),bar,z in (),w",
                vec![
                    req("bar", Exists, &[]),
                    req("w", Exists, &[]),
                    req("x", NotIn, &["", "abc", "def"]),
                    req("z", In, &[""]),
                ],
            ),
            ("x,y in (a)", vec![req("x", Exists, &[]), req("y", In, &["a"])]),
            ("x=a", vec![req("x", Equals, &["a"])]),
            ("x>1", vec![req("x", GreaterThan, &["1"])]),
            ("x<7", vec![req("x", LessThan, &["7"])]),
            (
                "x=a,y!=b",
                vec![req("x", Equals, &["a"]), req("y", NotEquals, &["b"])],
            ),
            (
                "x=a,y!=b,z in (h,i,j)",
                vec![
                    req("x", Equals, &["a"]),
                    req("y", NotEquals, &["b"]),
                    req("z", In, &["h", "i", "j"]),
                ],
            ),
            ("x notin ( )", vec![req("x", NotIn, &[""])]),
            ("x notin (, a)", vec![req("x", NotIn, &["", "a"])]),
            ("a ", vec![req("a", Exists, &[])]),
            (
                "a in (x,y,notin, z,in)",
                vec![req("a", In, &["in", "notin", "x", "y", "z"])],
            ),
            ("in in (in)", vec![req("in", In, &["in"])]),
            ("notin=in", vec![req("notin", Equals, &["in"])]),
            ("x==a", vec![req("x", DoubleEquals, &["a"])]),
        ];
        for (input, want) in rows {
            assert_eq!(parse(input).requirements(), want.as_slice(), "{input:?}");
        }
        for bad in [
            "x=a||y=b",
            "x,,y",
            ",x,y",
            "x nott in (y)",
            "a in (xyz),",
            "a in (xyz)b notin ()",
            "a in (xyz abc)",
            "a notin(",
            "a (",
            "(",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn syntax_errors_name_the_offending_token() {
        let rows = [
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("a,", "found '', expected: identifier after ','"),
            ("x,,y", "found ',', expected: identifier after ','"),
            (",a", "found ',', expected: !, identifier, or 'end of string'"),
            ("(", "found '(', expected: !, identifier, or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            (
                "a in (xyz)b notin ()",
                "found 'b', expected: ',' or 'end of string'",
            ),
            (
                "a (",
                "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x nott in (y)",
                "unable to parse requirement: found 'nott', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "a!",
                "unable to parse requirement: found '!', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("!", "unable to parse requirement: found '', expected: identifier"),
            (
                "!!a",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            ("a in", "unable to parse requirement: found '' expected: '('"),
            ("a in x", "unable to parse requirement: found 'x' expected: '('"),
            (
                "a notin(",
                "unable to parse requirement: found '', expected: ',', ')' or identifier",
            ),
            (
                "a in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "a in (xyz abc)",
                "unable to parse requirement: found 'abc', expected: ',' or ')'",
            ),
            (
                "a in (x",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "a in (x,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "a=)",
                "unable to parse requirement: found ')', expected: identifier",
            ),
            (
                "a===b",
                "unable to parse requirement: found '=', expected: identifier",
            ),
        ];
        for (input, want) in rows {
            assert_eq!(label_err(input), want, "{input:?}");
        }
    }

    #[test]
    fn validation_errors_are_upstream_field_errors() {
        let key_shape = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        let value_shape = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
        let dns_shape = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
        let long = "a".repeat(64);
        let rows = [
            ("foo$=bar".to_string(), format!("unable to parse requirement: <nil>: Invalid value: \"foo$\": name part {key_shape}")),
            ("x=a||y=b".to_string(), format!("unable to parse requirement: values[0][x]: Invalid value: \"a||y\": {value_shape}")),
            ("x in (a,b$)".to_string(), format!("unable to parse requirement: values[1][x]: Invalid value: \"b$\": {value_shape}")),
            (
                "x in (a$,b$)".to_string(),
                format!(
                    "unable to parse requirement: [values[0][x]: Invalid value: \"a$\": {value_shape}, values[1][x]: Invalid value: \"b$\": {value_shape}]"
                ),
            ),
            ("Foo.com/x".to_string(), format!("unable to parse requirement: <nil>: Invalid value: \"Foo.com/x\": prefix part {dns_shape}")),
            ("/x".to_string(), "unable to parse requirement: <nil>: Invalid value: \"/x\": prefix part must be non-empty".to_string()),
            (
                "x/".to_string(),
                format!("unable to parse requirement: <nil>: Invalid value: \"x/\": name part must be non-empty; name part {key_shape}"),
            ),
            (
                "a/b/c".to_string(),
                format!(
                    "unable to parse requirement: <nil>: Invalid value: \"a/b/c\": a valid label key {key_shape} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
                ),
            ),
            (long.clone(), format!("unable to parse requirement: <nil>: Invalid value: \"{long}\": name part must be no more than 63 bytes")),
            (
                format!("x={long}"),
                format!("unable to parse requirement: values[0][x]: Invalid value: \"{long}\": must be no more than 63 bytes"),
            ),
            (
                "x<a".to_string(),
                "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
                    .to_string(),
            ),
            (
                "x>".to_string(),
                "unable to parse requirement: values[0]: Invalid value: \"\": for 'Gt', 'Lt' operators, the value must be an integer"
                    .to_string(),
            ),
            (
                "x>a-".to_string(),
                format!(
                    "unable to parse requirement: [values[0]: Invalid value: \"a-\": for 'Gt', 'Lt' operators, the value must be an integer, values[0][x]: Invalid value: \"a-\": {value_shape}]"
                ),
            ),
            ("x=\"é".to_string(), format!("unable to parse requirement: values[0][x]: Invalid value: \"\\\"é\": {value_shape}")),
        ];
        for (input, want) in rows {
            assert_eq!(label_err(&input), want, "{input:?}");
        }
        let prefix = format!("{}.com", "a".repeat(250));
        let err = label_err(&format!("{prefix}/x"));
        assert!(
            err.contains(": prefix part must be no more than 253 bytes"),
            "{err}"
        );
    }

    #[test]
    fn nul_byte_ends_the_selector_between_tokens_as_upstream() {
        // Go's lexer reads NUL as its end-of-input sentinel.
        assert_eq!(parse("a \0 junk ((("), parse("a"));
        assert_eq!(parse("a\0,b").to_string(), "a,b");
    }

    // ------------------------------------------------------------------------------ label matching

    #[test]
    fn matching_table() {
        type Row = (&'static str, &'static [(&'static str, &'static str)], bool);
        let rows: &[Row] = &[
            // upstream TestSelectorMatches
            ("", &[("x", "y")], true),
            ("x=y", &[("x", "y")], true),
            ("x=y,z=w", &[("x", "y"), ("z", "w")], true),
            ("x!=y,z!=w", &[("x", "z"), ("z", "a")], true),
            ("notin=in", &[("notin", "in")], true),
            ("x", &[("x", "z")], true),
            ("!x", &[("y", "z")], true),
            ("x>1", &[("x", "2")], true),
            ("x<1", &[("x", "0")], true),
            ("x=z", &[], false),
            ("x=y", &[("x", "z")], false),
            ("x=y,z=w", &[("x", "w"), ("z", "w")], false),
            ("x!=y,z!=w", &[("x", "z"), ("z", "w")], false),
            ("x", &[("y", "z")], false),
            ("!x", &[("x", "z")], false),
            ("x>1", &[("x", "0")], false),
            ("x<1", &[("x", "2")], false),
            ("x>1", &[], false),
            ("x>1", &[("x", "v2")], false),
            ("x>1", &[("x", "99999999999999999999")], false), // not an int64
            // != and notin also match objects without the key
            ("x!=a", &[], true),
            ("x!=a", &[("x", "b")], true),
            ("x!=a", &[("x", "a")], false),
            ("x notin (a,b)", &[], true),
            ("x notin (a,b)", &[("x", "c")], true),
            ("x notin (a,b)", &[("x", "b")], false),
            ("x notin ()", &[("y", "")], true),
            ("x notin ()", &[("x", "")], false),
            ("x in (a,b)", &[("x", "a")], true),
            ("x in (a,b)", &[("x", "b")], true),
            ("x in (a,b)", &[("x", "c")], false),
            ("x in (a,b)", &[], false),
            ("x in ()", &[("x", "")], true),
            ("x in ()", &[("y", "baz")], false),
            ("x=", &[("x", "")], true),
            ("x=", &[], false),
            ("x,y=z", &[("x", "1"), ("y", "z")], true),
            ("x,y=z", &[("y", "z")], false),
            ("x,y=z", &[("x", "1"), ("y", "w")], false),
            ("!x,y", &[("y", "")], true),
            ("x notin (),!y", &[("y", "")], false),
            (
                "foo=bar,foobar=bar,baz=blah",
                &[("foo", "bar"), ("baz", "blah")],
                false,
            ),
        ];
        for (selector, labels, want) in rows {
            assert_eq!(
                parse(selector).matches(&set(labels)),
                *want,
                "{selector:?} against {labels:?}"
            );
        }
    }

    #[test]
    fn everything_nothing_and_objects() {
        assert!(LabelSelector::everything().is_empty());
        assert!(LabelSelector::everything().matches(&set(&[("x", "y")])));
        assert!(!LabelSelector::nothing().is_empty());
        assert!(!LabelSelector::nothing().matches(&set(&[])));
        assert_eq!(LabelSelector::nothing().to_string(), "");
        let sel = parse("app=web,tier!=db");
        assert!(sel.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {"labels": {"app": "web", "tier": "db"}}})));
        assert!(!sel.matches_object(&json!({"metadata": {}})));
        assert!(parse("!app").matches_object(&json!({"metadata": {"name": "x"}})));
        assert!(parse("").matches_object(&json!({})));
    }

    #[test]
    fn from_set_and_exact_match() {
        let sel = LabelSelector::from_set(&set(&[("b", "2"), ("a", "1")]));
        assert_eq!(sel.to_string(), "a=1,b=2");
        assert!(sel.matches(&set(&[("a", "1"), ("b", "2"), ("c", "3")])));
        assert!(LabelSelector::from_set(&set(&[])).is_empty());
        assert_eq!(
            parse("a in (x),b=y,c==z,d!=w,e in (p,q)").requires_exact_match("a"),
            Some("x")
        );
        assert_eq!(parse("b=y").requires_exact_match("b"), Some("y"));
        assert_eq!(parse("c==z").requires_exact_match("c"), Some("z"));
        assert_eq!(parse("d!=w").requires_exact_match("d"), None);
        assert_eq!(parse("e in (p,q)").requires_exact_match("e"), None);
        assert_eq!(parse("e in (p,q)").requires_exact_match("zzz"), None);
    }

    #[test]
    fn requirement_display_table() {
        use Operator::*;
        // upstream TestToString
        let rows = [
            (
                vec![
                    req("x", In, &["abc", "def"]),
                    req("y", NotIn, &["jkl"]),
                    req("z", Exists, &[]),
                ],
                "x in (abc,def),y notin (jkl),z",
            ),
            (
                vec![
                    req("x", NotIn, &["abc", "def"]),
                    req("y", NotEquals, &["jkl"]),
                    req("z", DoesNotExist, &[]),
                ],
                "x notin (abc,def),y!=jkl,!z",
            ),
            (
                vec![
                    req("x", NotIn, &["abc"]),
                    req("y", In, &["jkl", "mno"]),
                    req("z", NotIn, &[""]),
                ],
                "x notin (abc),y in (jkl,mno),z notin ()",
            ),
            (
                vec![
                    req("x", Equals, &["abc"]),
                    req("y", DoubleEquals, &["jkl"]),
                    req("z", NotEquals, &["a"]),
                    req("z", Exists, &[]),
                ],
                "x=abc,y==jkl,z!=a,z",
            ),
            (
                vec![
                    req("x", GreaterThan, &["2"]),
                    req("y", LessThan, &["8"]),
                    req("z", Exists, &[]),
                ],
                "x>2,y<8,z",
            ),
            (vec![req("x", In, &["b", "a"])], "x in (a,b)"),
        ];
        for (reqs, want) in rows {
            assert_eq!(LabelSelector::from_requirements(reqs).to_string(), want);
        }
    }

    #[test]
    fn requirement_constructor_checks() {
        use Operator::*;
        // upstream TestRequirementConstructor
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Requirement::new("x1", In, vec![]).unwrap_err().to_string(),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            Requirement::new("x5", Equals, s(&["bar", "foo"]))
                .unwrap_err()
                .to_string(),
            "values: Invalid value: [\"bar\",\"foo\"]: exact-match compatibility requires one single value"
        );
        assert_eq!(
            Requirement::new("x8", Exists, s(&["foo"]))
                .unwrap_err()
                .to_string(),
            "values: Invalid value: [\"foo\"]: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            Requirement::new("x13", GreaterThan, vec![])
                .unwrap_err()
                .to_string(),
            "values: Invalid value: null: for 'Gt', 'Lt' operators, exactly one value is required"
        );
        assert!(Requirement::new("x14", GreaterThan, s(&["bar"])).is_err());
        assert!(Requirement::new("x11", GreaterThan, s(&["1"])).is_ok());
        assert!(Requirement::new("x12", LessThan, s(&["6"])).is_ok());
        assert!(
            Requirement::new(&"a".repeat(254), Exists, vec![])
                .unwrap_err()
                .to_string()
                .starts_with("key: Invalid value: ")
        );
        assert!(
            Requirement::new("x17", Equals, s(&["a b"]))
                .unwrap_err()
                .to_string()
                .starts_with("values[0][x17]: Invalid value: \"a b\": ")
        );
        assert_eq!(
            go_json_strings(&s(&["<&>", "\u{1}"])),
            r#"["\u003c\u0026\u003e","\u0001"]"#
        );
    }

    // ---------------------------------------------------------------------------- metav1 selectors

    #[test]
    fn metav1_conversion_as_upstream() {
        // upstream TestLabelSelectorAsSelector
        assert!(
            LabelSelector::from_metav1(&Value::Null)
                .unwrap()
                .matches_nothing()
        );
        assert!(LabelSelector::from_metav1(&json!({})).unwrap().is_empty());
        assert!(
            LabelSelector::from_metav1(&json!({"matchLabels": null, "matchExpressions": []}))
                .unwrap()
                .is_empty()
        );
        let match_labels = json!({"matchLabels": {"foo": "bar"}});
        assert_eq!(
            LabelSelector::from_metav1(&match_labels).unwrap(),
            parse("foo=bar")
        );
        let both = json!({
            "matchLabels": {"foo": "bar"},
            "matchExpressions": [{"key": "baz", "operator": "In", "values": ["qux", "norf"]}],
        });
        let sel = LabelSelector::from_metav1(&both).unwrap();
        assert_eq!(sel.to_string(), "baz in (norf,qux),foo=bar");
        assert!(sel.matches(&set(&[("foo", "bar"), ("baz", "qux")])));
        let all_ops = json!({"matchExpressions": [
            {"key": "a", "operator": "NotIn", "values": ["x"]},
            {"key": "b", "operator": "Exists"},
            {"key": "c", "operator": "DoesNotExist", "values": []},
        ]});
        assert_eq!(
            LabelSelector::from_metav1(&all_ops).unwrap(),
            parse("a notin (x),b,!c")
        );
    }

    #[test]
    fn metav1_errors() {
        let err = |v: Value| LabelSelector::from_metav1(&v).unwrap_err().to_string();
        assert_eq!(
            err(
                json!({"matchExpressions": [{"key": "baz", "operator": "Exists", "values": ["qux", "norf"]}]})
            ),
            "values: Invalid value: [\"qux\",\"norf\"]: values set must be empty for exists and does not exist"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "baz", "operator": "In"}]})),
            "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "baz", "operator": "Gt", "values": ["1"]}]})),
            "\"Gt\" is not a valid label selector operator"
        );
        assert_eq!(
            err(json!({"matchExpressions": [{"key": "baz"}]})),
            "\"\" is not a valid label selector operator"
        );
        assert!(
            err(json!({"matchLabels": {"bad key": "v"}}))
                .starts_with("key: Invalid value: \"bad key\": name part must consist")
        );
        assert!(
            err(json!({"matchLabels": {"k": "bad value"}}))
                .starts_with("values[0][k]: Invalid value: \"bad value\": a valid label")
        );
        assert_eq!(
            err(json!({"matchLabels": {"k": 1}})),
            "invalid label selector: matchLabels[\"k\"] must be a string"
        );
        assert_eq!(err(json!([])), "invalid label selector: expected an object");
    }

    // ---------------------------------------------------------------------------- field selectors

    #[test]
    fn field_split_terms_and_term() {
        // upstream TestSplitTerms / TestSplitTerm
        let rows: &[(&str, &[&str])] = &[
            ("a", &["a"]),
            ("a=avalue", &["a=avalue"]),
            ("a=avalue,b=bvalue", &["a=avalue", "b=bvalue"]),
            (
                "a=avalue,b==bvalue,c!=cvalue",
                &["a=avalue", "b==bvalue", "c!=cvalue"],
            ),
            ("", &[]),
            ("a=a,", &["a=a", ""]),
            (",a=a", &["", "a=a"]),
            (r"k=\,,k2=v2", &[r"k=\,", "k2=v2"]),
            (r"k=\\,k2=v2", &[r"k=\\", "k2=v2"]),
            (r"k=\\\,,k2=v2", &[r"k=\\\,", "k2=v2"]),
            (r"k=\a\b\", &[r"k=\a\b\"]),
            (r"k=\", &[r"k=\"]),
            ("함=수,목=록", &["함=수", "목=록"]),
        ];
        for (input, want) in rows {
            assert_eq!(split_terms(input), *want, "{input:?}");
        }
        use FieldOperator::*;
        assert_eq!(split_term("a=value"), Some(("a", Equals, "value")));
        assert_eq!(split_term("b==value"), Some(("b", Equals, "value")));
        assert_eq!(split_term("c!=value"), Some(("c", NotEquals, "value")));
        assert_eq!(split_term(""), None);
        assert_eq!(split_term("a"), None);
        assert_eq!(split_term(r"k=\,"), Some(("k", Equals, r"\,")));
        assert_eq!(split_term(r"k=\\\a\b\=\,\"), Some(("k", Equals, r"\\\a\b\=\,\")));
        assert_eq!(split_term("함=수"), Some(("함", Equals, "수")));
    }

    #[test]
    fn field_escaping() {
        // upstream TestEscapeValue
        for (raw, escaped) in [
            ("", ""),
            ("a", "a"),
            ("=", r"\="),
            (",", r"\,"),
            (r"\", r"\\"),
            (r"\=\,\", r"\\\=\\\,\\"),
        ] {
            assert_eq!(escape_field_value(raw), escaped);
            assert_eq!(unescape_field_value(escaped).unwrap(), raw);
        }
        for bad in [r"\", r"\\\", r"\a"] {
            assert!(
                unescape_field_value(bad)
                    .unwrap_err()
                    .contains("invalid escape sequence"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn field_parse_good_bad_and_restring() {
        // upstream TestSelectorParse
        for s in ["x=a,y=b,z=c", "", "x!=a,y=b", r"x=a||y\=b", r"x=a\=\=b"] {
            assert_eq!(FieldSelector::parse(s).unwrap().to_string(), s);
        }
        for s in ["x=a||y=b", "x==a==b", "x=a,b", "x in (a)", "x in (a,b,c)", "x"] {
            assert!(FieldSelector::parse(s).is_err(), "{s:?} should fail");
        }
        let a = FieldSelector::parse("x=a,a=x").unwrap();
        assert_eq!(a, FieldSelector::parse("a=x,x=a").unwrap());
        assert_eq!(a.to_string(), "a=x,x=a");
        assert_eq!(FieldSelector::parse("b==c").unwrap().to_string(), "b=c");
        // Whitespace is data, as upstream: this field is " status.phase".
        let spaced = FieldSelector::parse("metadata.name=a, status.phase=b").unwrap();
        assert_eq!(
            spaced.unsupported_field(&["metadata.name", "status.phase"]),
            Some(" status.phase")
        );
        // A term with neither field nor value is dropped (upstream Transform).
        assert!(FieldSelector::parse("=").unwrap().is_empty());
        assert!(FieldSelector::parse("!=,,").unwrap().is_empty());
        assert_eq!(FieldSelector::parse("=x").unwrap().requirements()[0].field, "");
    }

    #[test]
    fn field_errors() {
        assert_eq!(
            field_err("x=a,b"),
            "invalid selector: 'x=a,b'; can't understand 'b'"
        );
        assert_eq!(
            field_err("x in (a)"),
            "invalid selector: 'x in (a)'; can't understand 'x in (a)'"
        );
        // Upstream prints the rune with %v, i.e. its code point ('=' is 61, ',' is 44).
        assert_eq!(
            field_err("x==a==b"),
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            field_err(r"metadata.name=a\x"),
            r"invalid field selector: invalid escape sequence: \x"
        );
        assert_eq!(
            field_err(r"metadata.name=a\"),
            r"invalid field selector: invalid escape sequence: \"
        );
        // Terms are checked in sorted order, so the first error is the sorted-first bad term.
        assert_eq!(field_err("z,a"), "invalid selector: 'z,a'; can't understand 'a'");
    }

    #[test]
    fn field_matching() {
        let fields = set(&[("foo", "bar"), ("baz", "blah"), ("complex", r"=value\,\")]);
        let get = |f: &str| fields.get(f).cloned();
        let yes = [
            "",
            "foo=bar",
            "baz=blah",
            "foo=bar,baz=blah",
            r"foo=bar,baz=blah,complex=\=value\\\,\\",
            "foo!=x",
            "missing!=x",
            "missing=",
        ];
        for s in yes {
            assert!(FieldSelector::parse(s).unwrap().matches(get), "{s:?}");
        }
        for s in [
            "foo=blah",
            "baz=bar",
            "foo=bar,foobar=bar,baz=blah",
            "missing=x",
            "missing!=",
            "foo!=bar",
        ] {
            assert!(!FieldSelector::parse(s).unwrap().matches(get), "{s:?}");
        }
        // spec.nodeName= selects pods that are not scheduled (a missing field is "").
        let unscheduled = FieldSelector::parse("spec.nodeName=").unwrap();
        assert!(unscheduled.matches(|_| None));
        assert!(!unscheduled.matches(|f| (f == "spec.nodeName").then(|| "n1".to_string())));
    }

    #[test]
    fn field_exact_match_and_supported_fields() {
        let sel = FieldSelector::parse("metadata.name=web,metadata.namespace!=kube-system").unwrap();
        assert_eq!(sel.requires_exact_match("metadata.name"), Some("web"));
        assert_eq!(sel.requires_exact_match("metadata.namespace"), None);
        assert_eq!(
            sel.unsupported_field(&["metadata.name", "metadata.namespace"]),
            None
        );
        assert_eq!(
            sel.unsupported_field(&["metadata.name"]),
            Some("metadata.namespace")
        );
        let sel = FieldSelector::parse("spec.foo=1,status.phase=Running").unwrap();
        assert_eq!(
            sel.unsupported_field(&["metadata.name", "status.phase"]),
            Some("spec.foo")
        );
        assert_eq!(
            sel.requirements()[1],
            FieldRequirement {
                field: "status.phase".into(),
                op: FieldOperator::Equals,
                value: "Running".into()
            }
        );
    }

    // -------------------------------------------------------------------------- property tests

    /// A small deterministic PRNG (xorshift64*), so the properties need no extra dependency and
    /// every failure reproduces.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    const NAME_CHARS: &[u8] = b"abcXYZ019-_.";

    fn label_name(rng: &mut Rng, max: usize) -> String {
        let len = 1 + rng.below(max);
        let mut s: String = (0..len).map(|_| *rng.pick(NAME_CHARS) as char).collect();
        // Edges must be alphanumeric.
        let edge = |rng: &mut Rng| *rng.pick(b"aZ9") as char;
        s.replace_range(0..1, &edge(rng).to_string());
        let last = s.len() - 1;
        s.replace_range(last.., &edge(rng).to_string());
        s
    }

    fn label_key(rng: &mut Rng) -> String {
        match rng.below(8) {
            0 => rng.pick(&["in", "notin", "x"]).to_string(),
            1 => format!(
                "{}.example.com/{}",
                rng.pick(&["a", "k8s", "x-1"]),
                label_name(rng, 20)
            ),
            2 => "k".repeat(63),
            _ => label_name(rng, 12),
        }
    }

    fn label_value(rng: &mut Rng) -> String {
        match rng.below(6) {
            0 => String::new(),
            1 => rng.pick(&["in", "notin"]).to_string(),
            _ => label_name(rng, 10),
        }
    }

    fn random_requirement(rng: &mut Rng) -> Requirement {
        use Operator::*;
        let key = label_key(rng);
        let op = *rng.pick(&[
            In,
            NotIn,
            Equals,
            DoubleEquals,
            NotEquals,
            Exists,
            DoesNotExist,
            GreaterThan,
            LessThan,
        ]);
        let values = match op {
            Exists | DoesNotExist => vec![],
            GreaterThan | LessThan => vec![rng.next().to_string().chars().take(1 + rng.below(18)).collect()],
            In | NotIn => {
                let set: BTreeSet<String> = (0..1 + rng.below(4)).map(|_| label_value(rng)).collect();
                set.into_iter().collect()
            }
            _ => vec![label_value(rng)],
        };
        Requirement::new(&key, op, values).expect("generated requirements are valid")
    }

    fn random_labels(rng: &mut Rng, sel: &LabelSelector) -> BTreeMap<String, String> {
        // Mostly keys and values the selector mentions, so matches happen both ways.
        let mut labels = BTreeMap::new();
        for r in sel.requirements() {
            if rng.below(3) > 0 {
                let value = match r.values() {
                    [] => label_value(rng),
                    vs if rng.below(2) == 0 => rng.pick(vs).clone(),
                    _ => rng.below(100).to_string(),
                };
                labels.insert(r.key().to_string(), value);
            }
        }
        labels
    }

    /// Values compared as sets: what a requirement means, whatever order or duplicates it was built with.
    fn canonical(sel: &LabelSelector) -> Vec<(String, Operator, BTreeSet<String>)> {
        sel.requirements()
            .iter()
            .map(|r| (r.key.clone(), r.operator, r.values.iter().cloned().collect()))
            .collect()
    }

    #[test]
    fn property_display_then_parse_round_trips() {
        let mut rng = Rng(0x5eed_1abe_15e1_ec70);
        for _ in 0..3000 {
            let reqs = (0..rng.below(5)).map(|_| random_requirement(&mut rng)).collect();
            let sel = LabelSelector::from_requirements(reqs);
            let text = sel.to_string();
            let back = LabelSelector::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(canonical(&back), canonical(&sel), "{text:?}");
            assert_eq!(back.to_string(), text);
            for _ in 0..4 {
                let labels = random_labels(&mut rng, &sel);
                assert_eq!(back.matches(&labels), sel.matches(&labels), "{text:?} {labels:?}");
            }
        }
    }

    #[test]
    fn property_metav1_equals_string_form() {
        // A metav1 selector and its printed form select the same objects.
        let mut rng = Rng(0xfeed_beef_0042_1337);
        for _ in 0..1000 {
            let mut match_labels = serde_json::Map::new();
            for _ in 0..rng.below(3) {
                match_labels.insert(label_key(&mut rng), Value::String(label_value(&mut rng)));
            }
            let exprs: Vec<Value> = (0..rng.below(3))
                .map(|_| {
                    let op = *rng.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
                    let count = if matches!(op, "In" | "NotIn") {
                        1 + rng.below(3)
                    } else {
                        0
                    };
                    let values: Vec<String> = (0..count).map(|_| label_value(&mut rng)).collect();
                    json!({"key": label_key(&mut rng), "operator": op, "values": values})
                })
                .collect();
            let obj = json!({"matchLabels": match_labels, "matchExpressions": exprs});
            let sel = LabelSelector::from_metav1(&obj).unwrap_or_else(|e| panic!("{obj}: {e}"));
            let reparsed = parse(&sel.to_string());
            assert_eq!(canonical(&reparsed), canonical(&sel), "{obj}");
            for _ in 0..4 {
                let labels = random_labels(&mut rng, &sel);
                assert_eq!(
                    reparsed.matches(&labels),
                    sel.matches(&labels),
                    "{obj} {labels:?}"
                );
            }
        }
    }

    /// Strings built from selector syntax, near-misses and oddities (NUL, multibyte, long runs).
    fn fuzz_input(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "a", "x", "k8s.io/", "/", ".", "-", "_", "9", "in", "notin", " in ", " notin ", "=", "==", "!=",
            "!", "(", ")", ",", "<", ">", " ", "\t", "\n", "\r", "\0", "é", "함", "$", "|", "\\", "\\,",
            "\\=", "\\\\", "\"", "0", "-1",
        ];
        let mut s = String::new();
        for _ in 0..rng.below(24) {
            let piece = rng.pick::<&str>(PIECES);
            s.push_str(piece);
        }
        if rng.below(20) == 0 {
            s.push_str(&"a".repeat(300));
        }
        s
    }

    #[test]
    fn property_label_parser_never_panics_and_accepted_input_round_trips() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        let mut accepted = 0;
        for _ in 0..30_000 {
            let input = fuzz_input(&mut rng);
            let Ok(sel) = LabelSelector::parse(&input) else {
                continue;
            };
            accepted += 1;
            let text = sel.to_string();
            let back = LabelSelector::parse(&text).unwrap_or_else(|e| panic!("{input:?} -> {text:?}: {e}"));
            assert_eq!(back, sel, "{input:?} -> {text:?}");
        }
        assert!(
            accepted > 100,
            "the fuzzer should produce some valid selectors, got {accepted}"
        );
    }

    #[test]
    fn property_field_parser_never_panics_and_accepted_input_round_trips() {
        let mut rng = Rng(0x0bad_5eed_cafe_f00d);
        let mut accepted = 0;
        for _ in 0..30_000 {
            let input = fuzz_input(&mut rng);
            let Ok(sel) = FieldSelector::parse(&input) else {
                continue;
            };
            accepted += 1;
            let text = sel.to_string();
            let back = FieldSelector::parse(&text).unwrap_or_else(|e| panic!("{input:?} -> {text:?}: {e}"));
            // `==` prints as `=`, which can change the sorted order of terms: compare as multisets.
            let sorted = |s: &FieldSelector| {
                let mut r = s.requirements().to_vec();
                r.sort();
                r
            };
            assert_eq!(sorted(&back), sorted(&sel), "{input:?} -> {text:?}");
        }
        assert!(
            accepted > 100,
            "the fuzzer should produce some valid selectors, got {accepted}"
        );
    }

    #[test]
    fn property_field_values_survive_escaping() {
        let mut rng = Rng(0x1111_2222_3333_4444);
        for _ in 0..5000 {
            let value = fuzz_input(&mut rng);
            let sel = FieldSelector::parse(&format!("metadata.name={}", escape_field_value(&value))).unwrap();
            assert_eq!(sel.requirements()[0].value, value);
            assert!(sel.matches(|_| Some(value.clone())));
        }
    }

    #[test]
    fn go_quote_escapes_like_strconv_quote() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\u{0}\u{7}\n\t\u{7f}"), r#""\x00\a\n\t\x7f""#);
        assert_eq!(go_quote("é함"), "\"é함\"");
        assert_eq!(go_quote("\u{a0}"), r#""\u00a0""#);
    }
}
