//! `skiff get`: the server's own Table output (`Accept: …;as=Table;g=meta.k8s.io`), printed as
//! kubectl prints it (the priority-1 columns only with `-o wide`, a NAMESPACE column with `-A`,
//! `type/name` when several types are listed), or the objects as YAML, JSON or names. `-w` goes on
//! printing a row per change from a watch of the same table.

use anyhow::{Context, bail};
use futures::StreamExt;
use serde_json::Value;

use super::{
    Ctx, api_error,
    printer::{self, TableWriter},
    resource::{Catalog, ResourceType},
};

/// `skiff get` flags.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `TYPE[,TYPE…] [NAME…]` or `TYPE/NAME…` (`all` is the `all` category).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// `wide`, `yaml`, `json`, `name` or `jsonpath=TEMPLATE`.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// A label selector (`app=web`, `tier in (a,b)`, `!canary`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// A field selector (`status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch and print changes.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Leave out the header row.
    #[arg(long)]
    pub no_headers: bool,
}

/// What the arguments ask for: types, each with the names wanted (none = the whole collection).
pub fn parse_targets<'c>(
    catalog: &'c Catalog,
    args: &[String],
) -> anyhow::Result<Vec<(&'c ResourceType, Vec<String>)>> {
    let mut targets: Vec<(&ResourceType, Vec<String>)> = Vec::new();
    if args[0].contains('/') {
        for arg in args {
            let (t, name) = arg
                .split_once('/')
                .with_context(|| format!("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiff get resource/<resource_name>' instead of 'skiff get resource resource/<resource_name>'): {arg}"))?;
            let t = catalog.resolve(t)?;
            match targets.iter_mut().find(|(have, _)| *have == t) {
                Some((_, names)) => names.push(name.to_string()),
                None => targets.push((t, vec![name.to_string()])),
            }
        }
        return Ok(targets);
    }
    let names: Vec<String> = args[1..].to_vec();
    if let Some(bad) = names.iter().find(|n| n.contains('/')) {
        bail!("arguments in resource/name form must have a single resource and name: {bad}");
    }
    for t in args[0].split(',') {
        if t == "all" {
            targets.extend(catalog.category("all").into_iter().map(|t| (t, names.clone())));
        } else {
            targets.push((catalog.resolve(t)?, names.clone()));
        }
    }
    Ok(targets)
}

const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

fn query(args: &GetArgs, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded_pairs(extra);
    if let Some(l) = &args.selector {
        q.push(("labelSelector".into(), l.clone()));
    }
    if let Some(f) = &args.field_selector {
        q.push(("fieldSelector".into(), f.clone()));
    }
    encode_query(&q)
}

fn form_urlencoded_pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `k=v&…` with values percent-encoded.
pub fn encode_query(pairs: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

pub async fn run(ctx: &Ctx, args: GetArgs) -> anyhow::Result<()> {
    let catalog = ctx.catalog().await?;
    let targets = parse_targets(catalog, &args.resources)?;
    let namespace = (!args.all_namespaces).then_some(ctx.namespace.as_str());
    match args.output.as_deref() {
        None | Some("wide") => {}
        Some("yaml" | "json" | "name") => return print_objects(ctx, &args, &targets, namespace).await,
        Some(o) if o.starts_with("jsonpath=") => return print_objects(ctx, &args, &targets, namespace).await,
        Some(o) => bail!(
            "unable to match a printer suitable for the output format \"{o}\", allowed formats are: \
             json,jsonpath,name,wide,yaml"
        ),
    }
    let wide = args.output.as_deref() == Some("wide");
    let prefix_names = targets.len() > 1;
    let mut printed_any = false;
    let mut failed = false;
    let mut writer = TableWriter::default();
    let mut watch_from = Vec::new();
    for (t, names) in &targets {
        let mut tables = Vec::new();
        if names.is_empty() {
            let request =
                http::Request::get(format!("{}?{}", t.collection_path(namespace), query(&args, &[])))
                    .header(http::header::ACCEPT, TABLE)
                    .body(Vec::new())?;
            tables.push(ctx.client.request::<Value>(request).await.map_err(api_error)?);
        } else {
            for name in names {
                let request = http::Request::get(t.object_path(&ctx.namespace, name))
                    .header(http::header::ACCEPT, TABLE)
                    .body(Vec::new())?;
                match ctx.client.request::<Value>(request).await.map_err(api_error) {
                    Ok(table) => tables.push(table),
                    Err(e) => {
                        eprintln!("{}", super::error_line(&e));
                        failed = true;
                    }
                }
            }
        }
        let rows = table_rows(
            &tables,
            t,
            wide,
            args.all_namespaces && t.namespaced,
            prefix_names,
        );
        if rows.len() > 1 || args.watch {
            // Each type's table is its own block, separated by a blank line (widths restart).
            if printed_any && !args.watch {
                println!();
                writer = TableWriter::default();
            }
            printed_any |= rows.len() > 1;
            let rows = if args.no_headers { &rows[1..] } else { &rows[..] };
            print!("{}", writer.format(rows));
        }
        let rv = tables
            .first()
            .and_then(|t| t["metadata"]["resourceVersion"].as_str())
            .unwrap_or("0")
            .to_string();
        watch_from.push((*t, names.clone(), rv));
    }
    if !printed_any && !failed && !args.watch {
        match namespace {
            Some(ns) if targets.iter().any(|(t, _)| t.namespaced) => {
                eprintln!("No resources found in {ns} namespace.")
            }
            _ => eprintln!("No resources found"),
        }
    }
    if args.watch {
        watch(ctx, &args, watch_from, namespace, writer, wide, prefix_names).await?;
    }
    if failed {
        return Err(super::AlreadyReported.into());
    }
    Ok(())
}

/// The header and rows of tables of one type.
fn table_rows(
    tables: &[Value],
    t: &ResourceType,
    wide: bool,
    with_namespace: bool,
    prefix_names: bool,
) -> Vec<Vec<String>> {
    let Some(first) = tables.first() else {
        return Vec::new();
    };
    let columns: Vec<(usize, String)> = first["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| wide || c["priority"].as_i64().unwrap_or(0) == 0)
        .map(|(i, c)| (i, c["name"].as_str().unwrap_or_default().to_uppercase()))
        .collect();
    let mut header: Vec<String> = columns.iter().map(|(_, n)| n.clone()).collect();
    if with_namespace {
        header.insert(0, "NAMESPACE".into());
    }
    let mut out = vec![header];
    for table in tables {
        for row in table["rows"].as_array().into_iter().flatten() {
            out.push(row_cells(row, &columns, t, with_namespace, prefix_names));
        }
    }
    out
}

fn row_cells(
    row: &Value,
    columns: &[(usize, String)],
    t: &ResourceType,
    with_namespace: bool,
    prefix_names: bool,
) -> Vec<String> {
    let mut cells: Vec<String> = columns
        .iter()
        .map(|(i, _)| printer::cell_text(&row["cells"][*i]))
        .collect();
    if prefix_names && let Some(first) = cells.first_mut() {
        *first = format!("{}/{first}", t.display());
    }
    if with_namespace {
        cells.insert(
            0,
            row["object"]["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    cells
}

/// `-w`: one watch per type, from the listed resourceVersion; each event prints its row.
async fn watch(
    ctx: &Ctx,
    args: &GetArgs,
    targets: Vec<(&ResourceType, Vec<String>, String)>,
    namespace: Option<&str>,
    mut writer: TableWriter,
    wide: bool,
    prefix_names: bool,
) -> anyhow::Result<()> {
    let mut streams = Vec::new();
    for (t, names, rv) in targets {
        if names.len() > 1 {
            bail!(
                "watch is only supported on individual resources and resource collections, but {} resources were found",
                names.len()
            );
        }
        let field = names.first().map(|n| format!("metadata.name={n}"));
        let mut extra = vec![
            ("watch", "1"),
            ("resourceVersion", rv.as_str()),
            ("allowWatchBookmarks", "true"),
        ];
        if let Some(f) = &field {
            extra.push(("fieldSelector", f.as_str()));
        }
        let ns = if names.is_empty() {
            namespace
        } else {
            Some(ctx.namespace.as_str())
        };
        let request = http::Request::get(format!("{}?{}", t.collection_path(ns), query(args, &extra)))
            .header(http::header::ACCEPT, TABLE)
            .body(Vec::new())?;
        let events = ctx
            .client
            .request_events::<Value>(request)
            .await
            .map_err(api_error)?;
        streams.push(
            events
                .map(move |e: Result<kube::api::WatchEvent<Value>, kube::Error>| e.map(|e| (t, e)))
                .boxed(),
        );
    }
    let mut merged = futures::stream::select_all(streams);
    while let Some(event) = merged.next().await {
        let (t, event) = event.map_err(api_error)?;
        let table = match event {
            kube::api::WatchEvent::Added(v)
            | kube::api::WatchEvent::Modified(v)
            | kube::api::WatchEvent::Deleted(v) => v,
            kube::api::WatchEvent::Bookmark(_) => continue,
            kube::api::WatchEvent::Error(e) => bail!("watch ended: {}", e.message),
        };
        let rows = table_rows(
            std::slice::from_ref(&table),
            t,
            wide,
            args.all_namespaces && t.namespaced,
            prefix_names,
        );
        print!("{}", writer.format(&rows[1..]));
        use std::io::Write;
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// `-o yaml|json|name`: the objects themselves.
async fn print_objects(
    ctx: &Ctx,
    args: &GetArgs,
    targets: &[(&ResourceType, Vec<String>)],
    namespace: Option<&str>,
) -> anyhow::Result<()> {
    let mut objects = Vec::new();
    let mut single = targets.len() == 1 && targets[0].1.len() == 1;
    for (t, names) in targets {
        if names.is_empty() {
            single = false;
            let items = ctx
                .list(
                    t,
                    namespace,
                    args.selector.as_deref(),
                    args.field_selector.as_deref(),
                )
                .await?;
            for mut item in items {
                item["apiVersion"] = t.api_version().into();
                item["kind"] = t.kind.clone().into();
                objects.push((*t, item));
            }
        } else {
            for name in names {
                let request = http::Request::get(t.object_path(&ctx.namespace, name)).body(Vec::new())?;
                objects.push((*t, ctx.client.request::<Value>(request).await.map_err(api_error)?));
            }
        }
    }
    for (_, o) in objects.iter_mut() {
        printer::strip_managed_fields(o);
    }
    if args.output.as_deref() == Some("name") {
        for (t, o) in &objects {
            println!(
                "{}/{}",
                t.display(),
                o["metadata"]["name"].as_str().unwrap_or_default()
            );
        }
        if objects.is_empty() {
            eprintln!("No resources found");
        }
        return Ok(());
    }
    let value = if single {
        objects.pop().map(|(_, o)| o).unwrap_or_default()
    } else {
        serde_json::json!({
            "apiVersion": "v1",
            "items": objects.into_iter().map(|(_, o)| o).collect::<Vec<_>>(),
            "kind": "List",
            "metadata": {"resourceVersion": ""},
        })
    };
    let output = args.output.as_deref().unwrap_or_default();
    let text = if output == "json" {
        printer::to_json(&value)?
    } else if let Some(template) = output.strip_prefix("jsonpath=") {
        super::jsonpath::render(template, &value)?
    } else {
        printer::to_yaml(&value)?
    };
    print!("{text}");
    Ok(())
}
