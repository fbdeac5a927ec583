//! `skiff logs` and `skiff exec`: a container's output and a command inside it, through the API
//! server's `pods/log` and `pods/exec` subresources (the server proxies them to the node's kubelet).
//! A workload name (`deploy/web`) stands for one of its pods, as in kubectl; with several containers
//! the pod's `kubectl.kubernetes.io/default-container`, else its first, is used and named on stderr.

use anyhow::{Context, bail};
use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, LogParams};
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{Ctx, api_error};

/// `skiff logs` flags.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `POD`, or `TYPE/NAME` of a workload (one of its pods is used).
    pub target: String,
    /// Which container (default: the pod's default container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new output.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous (terminated) instance of the container.
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines.
    #[arg(long)]
    pub tail: Option<i64>,
    /// Prefix each line with its timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// `skiff exec` flags.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[command(flatten)]
    pub global: super::GlobalArgs,
    /// `POD`, or `TYPE/NAME` of a workload.
    pub target: String,
    /// Which container (default: the pod's default container).
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (stdin must be one).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The pod a target names: a pod itself, or the first (by name) of a workload's pods.
async fn pod_for(ctx: &Ctx, target: &str) -> anyhow::Result<Value> {
    let catalog = ctx.catalog().await?;
    let (t, name) = match target.split_once('/') {
        Some((t, name)) => (catalog.resolve(t)?, name),
        None => (catalog.resolve("pods")?, target),
    };
    let request = http::Request::get(t.object_path(&ctx.namespace, name)).body(Vec::new())?;
    let object: Value = ctx.client.request(request).await.map_err(api_error)?;
    if t.kind == "Pod" && t.group.is_empty() {
        return Ok(object);
    }
    let labels = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .or_else(|| {
            object["spec"]["selector"]
                .as_object()
                .filter(|_| t.kind == "Service")
        })
        .with_context(|| {
            format!(
                "cannot find the pods of {}/{name}: it has no label selector",
                t.display()
            )
        })?;
    let selector: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    let pods = catalog.resolve("pods")?;
    let mut items = ctx
        .list(pods, Some(&ctx.namespace), Some(&selector.join(",")), None)
        .await?;
    items.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    let count = items.len();
    let pod = items
        .into_iter()
        .next()
        .with_context(|| format!("no pods found for {}/{name}", t.display()))?;
    if count > 1 {
        eprintln!(
            "Found {count} pods, using pod/{}",
            pod["metadata"]["name"].as_str().unwrap_or("")
        );
    }
    Ok(pod)
}

/// `-c`, else the default container (and, when there was a choice, say which on stderr).
fn container_for(pod: &Value, wanted: Option<String>) -> anyhow::Result<String> {
    if let Some(c) = wanted {
        return Ok(c);
    }
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let default = pod["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"]
        .as_str()
        .or(names.first().copied())
        .context("the pod has no containers")?;
    if names.len() > 1 {
        eprintln!("Defaulted container \"{default}\" out of: {}", names.join(", "));
    }
    Ok(default.to_string())
}

pub async fn logs(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<()> {
    let pod = pod_for(ctx, &args.target).await?;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let container = container_for(&pod, args.container)?;
    let params = LogParams {
        container: Some(container),
        follow: args.follow,
        previous: args.previous,
        tail_lines: args.tail,
        timestamps: args.timestamps,
        ..LogParams::default()
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut lines = api.log_stream(&name, &params).await.map_err(api_error)?.lines();
    let mut out = tokio::io::stdout();
    while let Some(line) = lines.next().await {
        let line = line.context("the log stream broke")?;
        out.write_all(line.as_bytes()).await?;
        out.write_all(b"\n").await?;
        if args.follow {
            out.flush().await?;
        }
    }
    out.flush().await?;
    Ok(())
}

/// Puts the terminal on stdin into raw mode for `exec -t`, restoring it when dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

pub async fn exec(ctx: &Ctx, args: ExecArgs) -> anyhow::Result<()> {
    let pod = pod_for(ctx, &args.target).await?;
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let container = container_for(&pod, args.container)?;
    let tty = args.tty && std::io::IsTerminal::is_terminal(&std::io::stdin());
    if args.tty && !tty {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let params = AttachParams::default()
        .container(container)
        .stdin(args.stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let mut process = api.exec(&name, args.command, &params).await.map_err(api_error)?;
    let _raw = tty.then(RawTerminal::enter);
    let status = process.take_status();
    let mut tasks = Vec::new();
    if let Some(mut stdout) = process.stdout() {
        tasks.push(tokio::spawn(async move {
            let mut out = tokio::io::stdout();
            let _ = tokio::io::copy(&mut stdout, &mut out).await;
            let _ = out.flush().await;
        }));
    }
    if let Some(mut stderr) = process.stderr() {
        tasks.push(tokio::spawn(async move {
            let mut err = tokio::io::stderr();
            let _ = tokio::io::copy(&mut stderr, &mut err).await;
            let _ = err.flush().await;
        }));
    }
    if let Some(mut stdin) = process.stdin() {
        // Not joined: stdin may stay open after the command exits (as with kubectl).
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut stdin).await;
            let _ = stdin.shutdown().await;
        });
    }
    for task in tasks {
        let _ = task.await;
    }
    let status = match status {
        Some(status) => status.await,
        None => None,
    };
    drop(_raw);
    let _ = process.join().await;
    if let Some(status) = status
        && status.status.as_deref() == Some("Failure")
    {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| causes.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<i32>().ok());
        match code {
            Some(code) => {
                eprintln!("command terminated with exit code {code}");
                return Err(super::ExitCode(code).into());
            }
            None => bail!("{}", status.message.unwrap_or_default()),
        }
    }
    Ok(())
}
