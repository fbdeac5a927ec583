//! Reading manifests as `kubectl -f` does: a file, a directory (its `.yaml`, `.yml` and `.json`
//! files, recursively with `-R`), or `-` for stdin; each file holds one or more YAML documents (or one
//! JSON object), and a `kind: List` contributes its items.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::Value;

/// One object read from a manifest, with where it came from (for error messages).
#[derive(Debug)]
pub struct Manifest {
    pub source: String,
    pub object: Value,
}

/// Every object of the `-f` arguments, in order.
pub fn read_all(files: &[String], recursive: bool) -> anyhow::Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for file in files {
        if file == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).context("cannot read stdin")?;
            out.extend(parse("STDIN", &text)?);
            continue;
        }
        let path = Path::new(file);
        let meta = std::fs::metadata(path).with_context(|| format!("the path \"{file}\" does not exist"))?;
        let paths = if meta.is_dir() {
            let mut found = Vec::new();
            walk(path, recursive, &mut found)?;
            found.sort();
            found
        } else {
            vec![path.to_path_buf()]
        };
        for p in paths {
            let text = std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
            out.extend(parse(&p.display().to_string(), &text)?);
        }
    }
    if out.is_empty() {
        bail!("no objects passed to apply");
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, found)?;
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            found.push(path);
        }
    }
    Ok(())
}

/// The objects of one file's text.
pub fn parse(source: &str, text: &str) -> anyhow::Result<Vec<Manifest>> {
    let documents: Vec<Value> = if text.trim_start().starts_with('{') {
        vec![serde_json::from_str(text).with_context(|| format!("error parsing {source}"))?]
    } else {
        serde_saphyr::from_multiple(text).map_err(|e| anyhow::anyhow!("error parsing {source}: {e}"))?
    };
    let mut out = Vec::new();
    for doc in documents.into_iter().filter(|d| !d.is_null()) {
        let Value::Object(map) = &doc else {
            bail!("error parsing {source}: a document is not an object");
        };
        for field in ["apiVersion", "kind"] {
            if !map.get(field).is_some_and(Value::is_string) {
                bail!("error validating data from {source}: {field} not set");
            }
        }
        if doc["kind"]
            .as_str()
            .is_some_and(|k| k == "List" || k.ends_with("List") && doc.get("items").is_some())
        {
            for item in doc["items"].as_array().into_iter().flatten() {
                out.push(Manifest {
                    source: source.to_string(),
                    object: item.clone(),
                });
            }
        } else {
            out.push(Manifest {
                source: source.to_string(),
                object: doc,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_lists_and_json() {
        let yaml = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Service, metadata: {name: b}}\n- {apiVersion: v1, kind: Pod, metadata: {name: c}}\n";
        let names: Vec<_> = parse("x", yaml)
            .unwrap()
            .iter()
            .map(|m| m.object["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let json = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#;
        assert_eq!(parse("y", json).unwrap()[0].object["kind"], "Secret");
    }

    #[test]
    fn bad_manifests_name_the_problem() {
        let err = parse("f.yaml", "kind: Pod\nmetadata: {name: a}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error validating data from f.yaml: apiVersion not set"
        );
        let err = parse("f.yaml", "a: [b\n").unwrap_err();
        assert!(err.to_string().starts_with("error parsing f.yaml"), "{err}");
        let err = parse("f.yaml", "- 1\n- 2\n").unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
    }

    #[test]
    fn directories_are_read_in_order_and_recursively_with_r() {
        let dir = tempfile::tempdir().unwrap();
        let doc = |n: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}}}\n");
        std::fs::write(dir.path().join("b.yaml"), doc("b")).unwrap();
        std::fs::write(dir.path().join("a.yml"), doc("a")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/c.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        let names = |recursive| -> Vec<String> {
            read_all(&[dir.path().display().to_string()], recursive)
                .unwrap()
                .iter()
                .map(|m| m.object["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(false), ["a", "b"]);
        assert_eq!(names(true), ["a", "b", "c"]);
        assert!(read_all(&["/nonexistent/x.yaml".into()], false).is_err());
    }
}
