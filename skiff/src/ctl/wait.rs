//! `skiff wait`: block until objects meet a condition (`--for=condition=Ready`, with an optional
//! `=value`), a JSONPath value (`--for=jsonpath={.status.phase}=Running`), or are deleted
//! (`--for=delete`), printing `type/name condition met` for each as kubectl does.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Ctx, api_error, is_not_found, jsonpath::Step, modify::parse_duration};

/// `skiff wait` flags.
#[derive(clap::Args, Debug)]
pub struct WaitArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `TYPE/NAME…` or `TYPE [NAME…]` (with `-l` or `--all`).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// `condition=NAME[=VALUE]`, `jsonpath={.path}=VALUE` or `delete`.
    #[arg(long = "for", required = true)]
    pub for_: String,
    /// Give up after this long.
    #[arg(long, default_value = "30s")]
    pub timeout: String,
    /// Wait on the objects of TYPE matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Wait on every object of TYPE.
    #[arg(long)]
    pub all: bool,
}

/// What is waited for.
#[derive(Debug, PartialEq)]
pub enum Wanted {
    Delete,
    Condition { name: String, value: String },
    JsonPath { path: Vec<Step>, value: String },
}

pub fn parse_for(text: &str) -> anyhow::Result<Wanted> {
    if text == "delete" {
        return Ok(Wanted::Delete);
    }
    if let Some(rest) = text.strip_prefix("condition=") {
        let (name, value) = rest.split_once('=').unwrap_or((rest, "True"));
        if name.is_empty() {
            bail!("--for=condition needs a condition name");
        }
        return Ok(Wanted::Condition {
            name: name.to_string(),
            value: value.to_string(),
        });
    }
    if let Some(rest) = text.strip_prefix("jsonpath=") {
        let (expr, value) = rest
            .rsplit_once('=')
            .context("--for=jsonpath needs a value: jsonpath={.status.phase}=Running")?;
        let path = super::jsonpath::parse_path(expr.trim_start_matches('{').trim_end_matches('}'))?;
        return Ok(Wanted::JsonPath {
            path,
            value: value.to_string(),
        });
    }
    bail!("unrecognized condition: \"{text}\" (use condition=NAME, jsonpath={{.path}}=VALUE or delete)")
}

/// Whether `o` meets `wanted` (never for Delete: that one is met by absence).
pub fn met(wanted: &Wanted, o: &Value) -> bool {
    match wanted {
        Wanted::Delete => false,
        Wanted::Condition { name, value } => o["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(name))
                    && c["status"]
                        .as_str()
                        .is_some_and(|s| s.eq_ignore_ascii_case(value))
            })
        }),
        Wanted::JsonPath { path, value } => super::jsonpath::select(o, path)
            .first()
            .is_some_and(|v| super::jsonpath::text(v) == *value),
    }
}

pub async fn run(ctx: &Ctx, args: WaitArgs) -> anyhow::Result<()> {
    let wanted = parse_for(&args.for_)?;
    let deadline = Instant::now() + parse_duration(&args.timeout)?;
    let catalog = ctx.catalog().await?;
    let mut objects = Vec::new();
    for (t, names) in super::get::parse_targets(catalog, &args.resources)? {
        if names.is_empty() {
            if args.selector.is_none() && !args.all {
                bail!("resource(s) were provided, but no name was specified");
            }
            let items = ctx
                .list(t, Some(&ctx.namespace), args.selector.as_deref(), None)
                .await?;
            for item in &items {
                objects.push((
                    t,
                    item["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                ));
            }
        } else {
            objects.extend(names.into_iter().map(|n| (t, n)));
        }
    }
    if objects.is_empty() {
        bail!("no matching resources found");
    }
    for (t, name) in objects {
        let path = t.object_path(&ctx.namespace, &name);
        loop {
            let request = http::Request::get(&path).body(Vec::new())?;
            let answer = ctx.client.request::<Value>(request).await.map_err(api_error);
            let done = match (&wanted, answer) {
                (Wanted::Delete, Err(e)) if is_not_found(&e) => true,
                (_, Err(e)) => return Err(e),
                (w, Ok(o)) => met(w, &o),
            };
            if done {
                println!("{}/{name} condition met", t.display());
                break;
            }
            if Instant::now() >= deadline {
                bail!("timed out waiting for the condition on {}/{name}", t.plural);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_parses_conditions_jsonpaths_and_delete() {
        assert_eq!(parse_for("delete").unwrap(), Wanted::Delete);
        assert_eq!(
            parse_for("condition=Ready").unwrap(),
            Wanted::Condition {
                name: "Ready".into(),
                value: "True".into()
            }
        );
        assert_eq!(
            parse_for("condition=Available=false").unwrap(),
            Wanted::Condition {
                name: "Available".into(),
                value: "false".into()
            }
        );
        assert_eq!(
            parse_for("jsonpath={.status.containerStatuses[0].ready}=true").unwrap(),
            Wanted::JsonPath {
                path: vec![
                    Step::Field("status".into()),
                    Step::Field("containerStatuses".into()),
                    Step::Index(0),
                    Step::Field("ready".into())
                ],
                value: "true".into()
            }
        );
        assert!(parse_for("ready").is_err());
        assert!(parse_for("jsonpath={.status.phase}").is_err());
    }

    #[test]
    fn conditions_and_values_are_matched() {
        let pod = serde_json::json!({"status": {"phase": "Running", "containerStatuses": [{"ready": true}],
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "Initialized", "status": "False"}]}});
        assert!(met(&parse_for("condition=Ready").unwrap(), &pod));
        assert!(met(&parse_for("condition=ready=true").unwrap(), &pod));
        assert!(!met(&parse_for("condition=Initialized").unwrap(), &pod));
        assert!(met(&parse_for("condition=Initialized=False").unwrap(), &pod));
        assert!(!met(&parse_for("condition=Missing").unwrap(), &pod));
        assert!(met(&parse_for("jsonpath={.status.phase}=Running").unwrap(), &pod));
        assert!(!met(
            &parse_for("jsonpath={.status.phase}=Pending").unwrap(),
            &pod
        ));
        assert!(met(
            &parse_for("jsonpath={.status.containerStatuses[0].ready}=true").unwrap(),
            &pod
        ));
        assert!(!met(&parse_for("jsonpath={.status.nothing}=x").unwrap(), &pod));
    }
}
