//! `skiff delete` and `skiff scale`: the two verbs that change objects by name. Delete sends one
//! DELETE per object (as kubectl does, also for `-l` and `--all`, so each line printed is one object
//! gone) and by default waits until they are really gone (finalizers, graceful pod termination);
//! scale patches the `/scale` subresource, so it works for every kind that has one.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::{Ctx, api_error, is_not_found, manifest, resource::ResourceType};

/// `skiff delete` flags.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `TYPE NAME…` or `TYPE/NAME…`.
    pub resources: Vec<String>,
    /// Delete the objects of these manifests.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    /// With `-f` directories: their subdirectories too.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects of TYPE matching a label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of TYPE in the namespace.
    #[arg(long)]
    pub all: bool,
    /// `background` (default), `foreground` or `orphan`: what happens to dependents.
    #[arg(long, default_value = "background", value_parser = ["background", "foreground", "orphan"])]
    pub cascade: String,
    /// Seconds the objects get to terminate (pods), instead of their own.
    #[arg(long)]
    pub grace_period: Option<i64>,
    /// `--grace-period=1`.
    #[arg(long)]
    pub now: bool,
    /// Wait until the objects are gone (default true; `--wait=false` returns at once).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// How long to wait for the objects to go (e.g. `30s`, `2m`); 0 = a week.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// A missing object is not an error.
    #[arg(long)]
    pub ignore_not_found: bool,
}

/// `30s`, `2m`, `1h`, `500ms`, `1m30s` as a Duration (Go's `time.ParseDuration` subset kubectl takes).
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        bail!("invalid duration \"{text}\"");
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits]
            .parse()
            .with_context(|| format!("invalid duration \"{text}\""))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => number / 1000.0,
            "s" => number,
            "m" => number * 60.0,
            "h" => number * 3600.0,
            _ => bail!("invalid duration \"{text}\": units are ms, s, m, h"),
        };
        total += Duration::from_secs_f64(secs);
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// One object named on the command line or in a manifest.
struct Target<'c> {
    t: &'c ResourceType,
    namespace: String,
    name: String,
}

pub async fn delete(ctx: &Ctx, args: DeleteArgs) -> anyhow::Result<()> {
    let catalog = ctx.catalog().await?;
    let mut targets = Vec::new();
    if !args.files.is_empty() {
        for m in manifest::read_all(&args.files, args.recursive)? {
            let t = catalog.for_kind(
                m.object["apiVersion"].as_str().unwrap_or_default(),
                m.object["kind"].as_str().unwrap_or_default(),
            )?;
            let namespace = m.object["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&ctx.namespace)
                .to_string();
            let name = m.object["metadata"]["name"]
                .as_str()
                .context("a manifest has no metadata.name")?;
            targets.push(Target {
                t,
                namespace,
                name: name.to_string(),
            });
        }
    } else if args.resources.is_empty() {
        bail!("You must provide one or more resources by argument or filename.");
    } else {
        for (t, names) in super::get::parse_targets(catalog, &args.resources)? {
            if names.is_empty() {
                if args.selector.is_none() && !args.all {
                    bail!("resource(s) were provided, but no name was specified");
                }
                let items = ctx
                    .list(t, Some(&ctx.namespace), args.selector.as_deref(), None)
                    .await?;
                for item in &items {
                    targets.push(Target {
                        t,
                        namespace: ctx.namespace.clone(),
                        name: item["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    });
                }
            } else {
                targets.extend(names.into_iter().map(|name| Target {
                    t,
                    namespace: ctx.namespace.clone(),
                    name,
                }));
            }
        }
        if targets.is_empty() {
            eprintln!("No resources found");
            return Ok(());
        }
    }
    let grace = if args.now { Some(1) } else { args.grace_period };
    let mut body = serde_json::json!({
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "propagationPolicy": match args.cascade.as_str() {
            "foreground" => "Foreground",
            "orphan" => "Orphan",
            _ => "Background",
        },
    });
    if let Some(g) = grace {
        body["gracePeriodSeconds"] = g.into();
    }
    let mut failed = false;
    let mut gone = Vec::new();
    for target in &targets {
        let path = target.t.object_path(&target.namespace, &target.name);
        let request = http::Request::delete(&path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body)?)?;
        match ctx.client.request::<Value>(request).await.map_err(api_error) {
            Ok(answer) => {
                println!("{} \"{}\" deleted", target.t.display(), target.name);
                gone.push((path, answer["metadata"]["uid"].as_str().map(String::from)));
            }
            Err(e) if args.ignore_not_found && is_not_found(&e) => {}
            Err(e) => {
                eprintln!("{}", super::error_line(&e));
                failed = true;
            }
        }
    }
    if args.wait {
        let timeout = match parse_duration(&args.timeout)? {
            Duration::ZERO => Duration::from_secs(7 * 24 * 3600),
            d => d,
        };
        let deadline = Instant::now() + timeout;
        for (path, uid) in gone {
            wait_gone(ctx, &path, uid.as_deref(), deadline).await?;
        }
    }
    if failed {
        return Err(super::AlreadyReported.into());
    }
    Ok(())
}

/// Polls until the object at `path` is gone (or replaced by one with another uid).
pub async fn wait_gone(ctx: &Ctx, path: &str, uid: Option<&str>, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let request = http::Request::get(path).body(Vec::new())?;
        match ctx.client.request::<Value>(request).await.map_err(api_error) {
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
            Ok(o) if uid.is_some() && o["metadata"]["uid"].as_str() != uid => return Ok(()),
            Ok(_) => {}
        }
        if Instant::now() >= deadline {
            bail!("timed out waiting for the deletion of {path}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `skiff scale` flags.
#[derive(clap::Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `TYPE NAME` or `TYPE/NAME`.
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// The new number of replicas.
    #[arg(long, required = true)]
    pub replicas: i64,
    /// Only scale if the current number of replicas is this.
    #[arg(long)]
    pub current_replicas: Option<i64>,
}

pub async fn scale(ctx: &Ctx, args: ScaleArgs) -> anyhow::Result<()> {
    if args.replicas < 0 {
        bail!("The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0");
    }
    let catalog = ctx.catalog().await?;
    for (t, names) in super::get::parse_targets(catalog, &args.resources)? {
        if !t.subresources.iter().any(|s| s == "scale") {
            bail!("{} cannot be scaled (it has no scale subresource)", t.display());
        }
        if names.is_empty() {
            bail!("resource(s) were provided, but no name was specified");
        }
        for name in names {
            let path = format!("{}/scale", t.object_path(&ctx.namespace, &name));
            let mut patch = serde_json::json!({"spec": {"replicas": args.replicas}});
            if let Some(current) = args.current_replicas {
                let request = http::Request::get(&path).body(Vec::new())?;
                let scale: Value = ctx.client.request(request).await.map_err(api_error)?;
                if scale["spec"]["replicas"].as_i64() != Some(current) {
                    bail!(
                        "Expected replicas to be {current}, was {}",
                        scale["spec"]["replicas"].as_i64().unwrap_or(0)
                    );
                }
                // The precondition holds only for this resourceVersion.
                patch["metadata"] =
                    serde_json::json!({"resourceVersion": scale["metadata"]["resourceVersion"]});
            }
            let request = http::Request::patch(format!("{path}?fieldManager=skiff"))
                .header(http::header::CONTENT_TYPE, "application/merge-patch+json")
                .body(serde_json::to_vec(&patch)?)?;
            ctx.client.request::<Value>(request).await.map_err(api_error)?;
            println!("{}/{name} scaled", t.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_gos() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("10").is_err());
    }
}
