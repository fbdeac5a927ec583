//! The part of kubectl's JSONPath templates people use: `{.a.b}`, `{.items[0].x}`, `{.items[*].x}`,
//! `{..}`-free paths mixed with literal text (`{.a}{"\n"}`, `name={.metadata.name}`). Values print as
//! kubectl prints them: strings bare, everything else as JSON, several matches separated by spaces.

use anyhow::{Context, bail};
use serde_json::Value;

/// One step of a path.
#[derive(Debug, PartialEq)]
pub enum Step {
    Field(String),
    Index(usize),
    All,
}

/// Parses `.a.b[0].c[*]` (the inside of `{…}`, leading `.` optional).
pub fn parse_path(expr: &str) -> anyhow::Result<Vec<Step>> {
    let mut path = Vec::new();
    for part in expr.trim().split('.').filter(|p| !p.is_empty()) {
        let (field, mut rest) = match part.split_once('[') {
            Some((f, rest)) => (f, format!("[{rest}")),
            None => (part, String::new()),
        };
        if !field.is_empty() {
            path.push(Step::Field(field.to_string()));
        }
        while let Some(inner) = rest.strip_prefix('[') {
            let (index, tail) = inner.split_once(']').context("unclosed [ in a JSONPath")?;
            path.push(match index {
                "*" => Step::All,
                n => Step::Index(
                    n.parse()
                        .with_context(|| format!("unsupported JSONPath index [{n}]"))?,
                ),
            });
            rest = tail.to_string();
        }
    }
    Ok(path)
}

/// Every value the path reaches in `v`.
pub fn select<'v>(v: &'v Value, path: &[Step]) -> Vec<&'v Value> {
    let mut at = vec![v];
    for step in path {
        at = at
            .into_iter()
            .flat_map(|v| -> Vec<&Value> {
                match step {
                    Step::Field(f) => v.get(f.as_str()).into_iter().collect(),
                    Step::Index(i) => v.get(*i).into_iter().collect(),
                    Step::All => match v {
                        Value::Array(items) => items.iter().collect(),
                        Value::Object(map) => map.values().collect(),
                        _ => Vec::new(),
                    },
                }
            })
            .collect();
    }
    at
}

/// A value as kubectl's JSONPath printer prints it.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders a whole template against `v`.
pub fn render(template: &str, v: &Value) -> anyhow::Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = rest[open..]
            .find('}')
            .context("unclosed { in the JSONPath template")?
            + open;
        let expr = rest[open + 1..close].trim();
        if let Some(literal) = expr.strip_prefix('"').and_then(|e| e.strip_suffix('"')) {
            out.push_str(&literal.replace("\\n", "\n").replace("\\t", "\t"));
        } else {
            if expr.starts_with("range")
                || expr.starts_with("end")
                || expr.contains("..")
                || expr.contains('?')
            {
                bail!("JSONPath {{{expr}}} is not supported by skiff (paths, [N] and [*] are)");
            }
            let values = select(v, &parse_path(expr)?);
            out.push_str(&values.iter().map(|v| text(v)).collect::<Vec<_>>().join(" "));
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_like_kubectls() {
        let list = serde_json::json!({"items": [
            {"metadata": {"name": "a"}, "spec": {"ports": [{"port": 80}]}},
            {"metadata": {"name": "b"}, "spec": {"ports": [{"port": 81}]}}
        ]});
        assert_eq!(render("{.items[*].metadata.name}", &list).unwrap(), "a b");
        assert_eq!(render("{.items[1].spec.ports[0].port}", &list).unwrap(), "81");
        assert_eq!(
            render("first={.items[0].metadata.name}{\"\\n\"}", &list).unwrap(),
            "first=a\n"
        );
        assert_eq!(
            render("{.items[0].spec}", &list).unwrap(),
            r#"{"ports":[{"port":80}]}"#
        );
        assert_eq!(render("{.missing}", &list).unwrap(), "");
        assert!(render("{range .items[*]}{end}", &list).is_err());
        assert!(render("{.items[", &list).is_err());
    }
}
