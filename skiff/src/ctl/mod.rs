//! The client verbs (`skiff apply|get|describe|delete|scale|rollout|logs|exec|wait`): kubectl's
//! everyday commands, built on kube-rs and the server's own discovery and Table output, so what they
//! print matches what kubectl prints against the same cluster.
//!
//! Each verb lives in a module named for it (delete and scale in `modify`, logs and exec in `logs`);
//! `manifest` (reading `-f`), `printer` (tables, YAML, JSON, ages), `jsonpath`, `resource` and
//! `resources` (a pod's requests and limits, added up as kubectl does) are what they share, with
//! [`Ctx`]: the client, the namespace, and the resource types
//! the server advertises ([`resource::Catalog`], from aggregated discovery: plural, singular, kind and
//! short names all resolve, as in kubectl). The cluster is found as kubectl finds it, with skiff's own
//! kubeconfig in between: `--kubeconfig`, then `KUBECONFIG`, then `<data-dir>/kubeconfig.yaml`
//! (what `skiff server` writes), then `~/.kube/config`.

mod apply;
mod describe;
mod get;
mod jsonpath;
mod logs;
mod manifest;
mod modify;
mod printer;
pub mod resource;
mod resources;
mod rollout;
mod wait;

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use kube::config::{KubeConfigOptions, Kubeconfig};

pub use resource::Catalog;

/// Flags every client verb takes.
#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// The kubeconfig to use (else `KUBECONFIG`, `<data-dir>/kubeconfig.yaml`, `~/.kube/config`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The namespace (else the kubeconfig context's, else `default`).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// The data dir of a local `skiff server`, whose `kubeconfig.yaml` is the third place looked at.
    #[arg(long, default_value = "/var/lib/skiff", env = "SKIFF_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// The client verbs.
#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Create or update objects from manifests (server-side apply, owning every field it sends).
    Apply(apply::ApplyArgs),
    /// List objects as tables, or print them as YAML, JSON or names.
    Get(get::GetArgs),
    /// Show an object in detail, with its events.
    Describe(describe::DescribeArgs),
    /// Delete objects by name, label selector or manifest.
    Delete(modify::DeleteArgs),
    /// Set the replicas of a Deployment, ReplicaSet or StatefulSet.
    Scale(modify::ScaleArgs),
    /// Manage a rollout: status, history, undo, restart, pause, resume.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Print a container's logs.
    Logs(logs::LogsArgs),
    /// Run a command in a container.
    Exec(logs::ExecArgs),
    /// Wait for a condition on objects, or for their deletion.
    Wait(wait::WaitArgs),
}

/// What a verb works with.
pub struct Ctx {
    pub client: kube::Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given explicitly (manifests' own namespaces give way to it, as in kubectl).
    pub namespace_explicit: bool,
    catalog: tokio::sync::OnceCell<Catalog>,
}

impl Ctx {
    /// The objects of type `t` in `namespace` (every namespace when `None`), by label and field
    /// selector when given.
    pub async fn list(
        &self,
        t: &resource::ResourceType,
        namespace: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> anyhow::Result<Vec<serde_json::Value>> {
        let mut q = Vec::new();
        if let Some(l) = labels {
            q.push(("labelSelector".to_string(), l.to_string()));
        }
        if let Some(f) = fields {
            q.push(("fieldSelector".to_string(), f.to_string()));
        }
        let path = format!("{}?{}", t.collection_path(namespace), get::encode_query(&q));
        let request = http::Request::get(path).body(Vec::new())?;
        let mut list: serde_json::Value = self.client.request(request).await.map_err(api_error)?;
        Ok(match list["items"].take() {
            serde_json::Value::Array(items) => items,
            _ => Vec::new(),
        })
    }

    /// The resource types the server serves (fetched once, on first use).
    pub async fn catalog(&self) -> anyhow::Result<&Catalog> {
        self.catalog
            .get_or_try_init(|| Catalog::discover(&self.client))
            .await
    }
}

/// An error the API server answered with (a `Status`): printed as kubectl prints it,
/// `Error from server (NotFound): pods "x" not found`.
#[derive(Debug)]
pub struct ServerError {
    pub reason: String,
    pub message: String,
    pub code: u16,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {}

/// A kube-rs error as an [`anyhow::Error`], keeping the server's Status apart.
pub fn api_error(e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(status) => ServerError {
            reason: status.reason.clone(),
            message: status.message.clone(),
            code: status.code,
        }
        .into(),
        other => anyhow::Error::from(other),
    }
}

/// Whether `e` is the server's NotFound.
pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ServerError>().is_some_and(|s| s.code == 404)
}

/// The one line kubectl prints for an error: `Error from server (Reason): …` for the server's
/// answers, `error: …` for the client's own.
pub fn error_line(e: &anyhow::Error) -> String {
    match e.chain().find_map(|c| c.downcast_ref::<ServerError>()) {
        Some(s) if s.reason.is_empty() => format!("Error from server: {e:#}"),
        Some(s) => format!("Error from server ({}): {e:#}", s.reason),
        None => format!("error: {e:#}"),
    }
}

/// A verb that already printed its errors (e.g. apply, which goes on past a failed object) and only
/// needs the exit status to say so.
#[derive(Debug)]
pub struct AlreadyReported;

impl std::fmt::Display for AlreadyReported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("errors were reported above")
    }
}

impl std::error::Error for AlreadyReported {}

/// A verb whose outcome is an exit status of its own (`exec`: the command's).
#[derive(Debug)]
pub struct ExitCode(pub i32);

impl std::fmt::Display for ExitCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for ExitCode {}

/// Runs one client verb; errors are printed here, as kubectl prints them.
pub async fn main(command: CtlCommand) -> i32 {
    match run(command).await {
        Ok(()) => 0,
        Err(e) if e.downcast_ref::<AlreadyReported>().is_some() => 1,
        Err(e) if e.downcast_ref::<ExitCode>().is_some() => e.downcast_ref::<ExitCode>().map_or(1, |c| c.0),
        Err(e) => {
            eprintln!("{}", error_line(&e));
            1
        }
    }
}

/// Runs one client verb.
pub async fn run(command: CtlCommand) -> anyhow::Result<()> {
    let global = match &command {
        CtlCommand::Apply(a) => &a.global,
        CtlCommand::Get(a) => &a.global,
        CtlCommand::Describe(a) => &a.global,
        CtlCommand::Delete(a) => &a.global,
        CtlCommand::Scale(a) => &a.global,
        CtlCommand::Rollout(c) => &c.args().global,
        CtlCommand::Logs(a) => &a.global,
        CtlCommand::Exec(a) => &a.global,
        CtlCommand::Wait(a) => &a.global,
    }
    .clone();
    let config = client_config(&global).await?;
    let namespace_explicit = global.namespace.is_some();
    let namespace = global
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).context("cannot build the API client")?;
    let ctx = Ctx {
        client,
        namespace,
        namespace_explicit,
        catalog: tokio::sync::OnceCell::new(),
    };
    match command {
        CtlCommand::Apply(args) => apply::run(&ctx, args).await,
        CtlCommand::Get(args) => get::run(&ctx, args).await,
        CtlCommand::Describe(args) => describe::run(&ctx, args).await,
        CtlCommand::Delete(args) => modify::delete(&ctx, args).await,
        CtlCommand::Scale(args) => modify::scale(&ctx, args).await,
        CtlCommand::Rollout(command) => rollout::run(&ctx, command).await,
        CtlCommand::Logs(args) => logs::logs(&ctx, args).await,
        CtlCommand::Exec(args) => logs::exec(&ctx, args).await,
        CtlCommand::Wait(args) => wait::run(&ctx, args).await,
    }
}

/// The kubeconfig files to merge (first wins), in kubectl's order with skiff's own file third; empty
/// when there is none.
pub fn kubeconfig_files(global: &GlobalArgs) -> Vec<PathBuf> {
    lookup(
        global,
        std::env::var_os("KUBECONFIG"),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

/// [`kubeconfig_files`] with the environment passed in (`KUBECONFIG`, `HOME`).
fn lookup(global: &GlobalArgs, env: Option<std::ffi::OsString>, home: Option<PathBuf>) -> Vec<PathBuf> {
    if let Some(path) = &global.kubeconfig {
        return vec![path.clone()];
    }
    if let Some(paths) = env.filter(|v| !v.is_empty()) {
        // kubectl merges every file of the list (first wins); missing ones are skipped.
        let files: Vec<PathBuf> = std::env::split_paths(&paths).filter(|p| p.exists()).collect();
        if !files.is_empty() {
            return files;
        }
    }
    let own = global.data_dir.join("kubeconfig.yaml");
    if own.exists() {
        return vec![own];
    }
    home.map(|h| h.join(".kube/config"))
        .filter(|p| p.exists())
        .into_iter()
        .collect()
}

async fn client_config(global: &GlobalArgs) -> anyhow::Result<kube::Config> {
    let files = kubeconfig_files(global);
    if files.is_empty() {
        anyhow::bail!(
            "no kubeconfig found: pass --kubeconfig, set KUBECONFIG, or run `skiff server` \
             (it writes {}/kubeconfig.yaml)",
            global.data_dir.display()
        );
    }
    let mut merged: Option<Kubeconfig> = None;
    for file in &files {
        let one = Kubeconfig::read_from(file)
            .with_context(|| format!("cannot read kubeconfig {}", file.display()))?;
        merged = Some(match merged {
            None => one,
            Some(m) => m.merge(one).context("cannot merge kubeconfigs")?,
        });
    }
    let kubeconfig = merged.expect("at least one file");
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {} is not usable", files[0].display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(dir: &std::path::Path, explicit: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            kubeconfig: explicit.map(PathBuf::from),
            namespace: None,
            data_dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn kubeconfig_lookup_follows_kubectl_order_with_the_data_dir_third() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".kube")).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        let env_file = dir.path().join("env-config");
        let find = |explicit: Option<&str>, env: Option<&std::ffi::OsStr>| {
            lookup(&global(&data, explicit), env.map(Into::into), Some(home.clone()))
        };
        // Nothing anywhere.
        assert!(find(None, None).is_empty());
        // ~/.kube/config only.
        std::fs::write(home.join(".kube/config"), "").unwrap();
        assert_eq!(find(None, None), vec![home.join(".kube/config")]);
        // The data dir's file comes before ~/.kube/config.
        std::fs::write(data.join("kubeconfig.yaml"), "").unwrap();
        assert_eq!(find(None, None), vec![data.join("kubeconfig.yaml")]);
        // KUBECONFIG before the data dir; missing files of its list are skipped; empty means unset.
        std::fs::write(&env_file, "").unwrap();
        let list = std::env::join_paths([dir.path().join("missing"), env_file.clone()]).unwrap();
        assert_eq!(find(None, Some(&list)), vec![env_file.clone()]);
        assert_eq!(find(None, Some("".as_ref())), vec![data.join("kubeconfig.yaml")]);
        // --kubeconfig before everything.
        assert_eq!(
            find(Some("/x/explicit"), Some(&list)),
            vec![PathBuf::from("/x/explicit")]
        );
    }
}
