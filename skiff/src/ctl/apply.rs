//! `skiff apply -f`: every object of the manifests goes to the server as a server-side apply patch
//! (`application/apply-patch+yaml`, field manager `skiff`, forcing conflicts). Forcing gives the
//! "the manifest wins" behaviour users know from `kubectl apply`: fields someone else set
//! (`skiff scale`, another manager) are taken back, and fields dropped from the manifest are removed
//! because skiff owned them. The line printed per object says created, configured or unchanged (the
//! resourceVersion before and after tells which), as kubectl's does.

use anyhow::Context;
use serde_json::Value;

use super::{Ctx, api_error, manifest, resource::ResourceType};

/// `skiff apply` flags.
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// Files, directories or `-` (stdin) to apply.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Also read the directories' subdirectories.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// `server`: have the server validate and default without persisting; `none`: apply.
    #[arg(long, default_value = "none", value_parser = ["none", "server"])]
    pub dry_run: String,
    /// Print the applied objects' names (`-o name`) instead of the status lines.
    #[arg(short = 'o', long, value_parser = ["name"])]
    pub output: Option<String>,
}

pub const FIELD_MANAGER: &str = "skiff";

pub async fn run(ctx: &Ctx, args: ApplyArgs) -> anyhow::Result<()> {
    let manifests = manifest::read_all(&args.files, args.recursive)?;
    let catalog = ctx.catalog().await?;
    let mut failures = 0;
    for m in manifests {
        let result = async {
            let t = catalog.for_kind(
                m.object["apiVersion"].as_str().unwrap_or_default(),
                m.object["kind"].as_str().unwrap_or_default(),
            )?;
            let outcome = apply_one(ctx, t, m.object, args.dry_run == "server").await?;
            anyhow::Ok((t, outcome))
        }
        .await;
        match result {
            Ok((t, (name, outcome))) => match args.output.as_deref() {
                Some(_) => println!("{}/{name}", t.display()),
                None if args.dry_run == "server" => {
                    println!("{}/{name} {outcome} (server dry run)", t.display())
                }
                None => println!("{}/{name} {outcome}", t.display()),
            },
            Err(e) => {
                failures += 1;
                eprintln!(
                    "{}",
                    super::error_line(&e.context(format!("error when applying \"{}\"", m.source)))
                );
            }
        }
    }
    if failures > 0 {
        return Err(super::AlreadyReported.into());
    }
    Ok(())
}

/// Applies one object; returns its name and `created`, `configured` or `unchanged`.
async fn apply_one(
    ctx: &Ctx,
    t: &ResourceType,
    mut object: Value,
    dry_run: bool,
) -> anyhow::Result<(String, &'static str)> {
    let name = object["metadata"]["name"]
        .as_str()
        .context("metadata.name is required by apply (generateName cannot be applied)")?
        .to_string();
    let namespace = if t.namespaced {
        let own = object["metadata"]["namespace"].as_str().map(String::from);
        match own {
            Some(ns) if ctx.namespace_explicit && ns != ctx.namespace => anyhow::bail!(
                "the namespace from the provided object \"{ns}\" does not match the namespace \"{}\". \
                 You must pass '--namespace={ns}' to perform this operation.",
                ctx.namespace
            ),
            Some(ns) => ns,
            None => {
                object["metadata"]["namespace"] = Value::String(ctx.namespace.clone());
                ctx.namespace.clone()
            }
        }
    } else {
        String::new()
    };
    let path = t.object_path(&namespace, &name);
    let before = get_object(ctx, &path).await?;
    let mut query = format!("fieldManager={FIELD_MANAGER}&force=true");
    if dry_run {
        query.push_str("&dryRun=All");
    }
    let request = http::Request::patch(format!("{path}?{query}"))
        .header(http::header::CONTENT_TYPE, "application/apply-patch+yaml")
        .header(http::header::ACCEPT, "application/json")
        .body(serde_json::to_vec(&object)?)?;
    let after: Value = ctx.client.request(request).await.map_err(api_error)?;
    // Unchanged when the server wrote nothing, or when what differs is only what others write
    // meanwhile (a controller's status, the resourceVersion that came with it).
    let outcome = match before {
        None => "created",
        Some(before) if comparable(before.clone()) == comparable(after) => "unchanged",
        Some(_) => "configured",
    };
    Ok((name, outcome))
}

/// An object without what changes when nobody applied anything: status, resourceVersion and
/// managedFields (their timestamps).
fn comparable(mut object: Value) -> Value {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    object
}

/// The object, or `None` when it does not exist.
async fn get_object(ctx: &Ctx, path: &str) -> anyhow::Result<Option<Value>> {
    let request = http::Request::get(path).body(Vec::new())?;
    match ctx.client.request::<Value>(request).await {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(api_error(e)),
    }
}
