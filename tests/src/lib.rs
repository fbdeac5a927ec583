//! End-to-end harness: runs the real `skiff` binary and talks to it with the real kube-rs client.
//!
//! [`Server::start`] launches `skiff server` on a free loopback port with a temporary data dir and
//! waits until `/readyz` answers; the process is killed (and the data dir removed) when the handle is
//! dropped, so a failing test leaves nothing behind. The binary is the one cargo built next to the
//! test executable (`target/<profile>/skiff`), or `$SKIFF_BIN`: run `cargo build -p skiff` first
//! (the README's test command does).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub mod cluster;
pub mod node;

/// The `skiff` binary under test.
pub fn skiff_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SKIFF_BIN") {
        return bin.into();
    }
    // target/<profile>/deps/<test> → target/<profile>/skiff
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("skiff");
    assert!(
        bin.exists(),
        "{} not found: run `cargo build -p skiff` before the end-to-end tests",
        bin.display()
    );
    bin
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests on one machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `skiff server`.
pub struct Server {
    child: Option<Child>,
    /// The data dir (kept across restarts; removed on drop).
    pub data_dir: tempfile::TempDir,
    /// The HTTPS port.
    pub port: u16,
    extra: Vec<String>,
}

impl Server {
    /// Starts `skiff server` with `extra` flags and waits until it is ready.
    pub async fn start(extra: &[&str]) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new().prefix("skiff-e2e-").tempdir()?;
        let mut server = Self {
            child: None,
            data_dir,
            port: free_port(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn().await?;
        Ok(server)
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))?;
        let child = Command::new(skiff_bin())
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                &self.port.to_string(),
            ])
            // The embedded agent would make this machine a node in the host's network: tests run
            // without it unless they give it a network namespace of its own.
            .args((!self.wants_agent()).then_some("--disable-agent"))
            // A node under test must not see DiskPressure because a CI machine's shared disk is
            // nearly full of builds (it would reject every pod): a fixed 1 GiB of free disk.
            .args([
                "--eviction-hard",
                skiff_kubelet::eviction::SHARED_MACHINE_EVICTION_HARD,
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn skiff server")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60)).await
    }

    fn wants_agent(&self) -> bool {
        self.extra
            .iter()
            .any(|a| a == "--disable-agent" || a == "--node-netns")
    }

    /// Polls `/readyz` until it answers 200 (TLS is not checked here: only readiness matters).
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::new();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("skiff server exited with {status}; log:\n{}", self.log());
            }
            if self.kubeconfig().exists() {
                match self.client().await {
                    Ok(client) => match client.request_text(http_get("/readyz")).await {
                        Ok(text) if text.trim() == "ok" => return Ok(()),
                        Ok(text) => last_error = text,
                        Err(e) => last_error = e.to_string(),
                    },
                    Err(e) => last_error = e.to_string(),
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "skiff server not ready after {timeout:?} ({last_error}); log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// The last `lines` lines of its log (enough to see why a test failed, short enough to read).
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The admin kubeconfig the server wrote.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("kubeconfig.yaml")
    }

    /// A kube-rs client from the server's admin kubeconfig.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// SIGKILL: the server dies mid-whatever, as on a power cut of the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Starts the server again on the same data dir and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn().await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A GET request for `client.request*`.
pub fn http_get(path: &str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).expect("valid request")
}

/// The real kubectl against `server`, bounded by `timeout <secs>`, with its own discovery cache (so
/// it is never stale) and HOME.
pub fn kubectl_command(server: &Server, secs: u32, args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string())
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--cache-dir")
        .arg(
            server
                .data_dir
                .path()
                .join(format!("kubectl-cache-{}", free_port())),
        )
        .args(args)
        .env("HOME", server.data_dir.path());
    cmd
}

/// Runs kubectl (60 s at most) with `stdin`, returning (success, stdout, stderr).
pub fn kubectl(server: &Server, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let out = kubectl_output(server, args, stdin);
    (out.code == 0, out.stdout, out.stderr)
}

/// Runs kubectl `args` (60 s at most), which must succeed: its stdout. A failure panics with
/// kubectl's output and the end of the server's log.
pub fn kubectl_ok(server: &Server, args: &[&str]) -> String {
    let (success, out, err) = kubectl(server, args, None);
    assert!(
        success,
        "kubectl {args:?} failed: {err}\n{out}\nserver log:\n{}",
        server.log_tail(30)
    );
    out
}

/// Polls `check` every 200 ms until it holds, for at most `within`; then panics naming `what` (for
/// blocking checks such as kubectl runs; [`eventually`] is the async one).
pub fn poll_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs kubectl (60 s at most) with `stdin`.
pub fn kubectl_output(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    run_with_stdin(kubectl_command(server, 60, args), stdin)
}

/// A child process killed (by its PID) and reaped when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skiff agent --hollow-nodes n` against `server`: nodes that report pods Running and Ready without
/// running them (its log goes to `agent.log` in the server's data dir).
pub fn hollow_nodes(server: &Server, n: usize) -> Process {
    let log = std::fs::File::create(server.data_dir.path().join("agent.log")).expect("agent log");
    Process(
        Command::new(skiff_bin())
            .args(["agent", "--hollow-nodes", &n.to_string(), "--kubeconfig"])
            .arg(server.kubeconfig())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff agent"),
    )
}

/// What a command-line tool run gave: exit code, stdout, stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    /// The exit code (-1 when killed by a signal).
    pub code: i32,
    /// Everything printed on stdout.
    pub stdout: String,
    /// Everything printed on stderr.
    pub stderr: String,
}

/// Runs `cmd` with `stdin`, bounded by the `timeout` wrapper the command was built with.
pub fn run_with_stdin(mut cmd: Command, stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("command runs");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("command output");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `skiff <args>` (a client verb) against `server`, 60 s at most, finding the cluster through
/// `--data-dir` (its `kubeconfig.yaml`) with no KUBECONFIG and an empty HOME, as on a fresh node.
pub fn skiff_cli(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg(skiff_bin())
        .args(args)
        .env_remove("KUBECONFIG")
        .env("SKIFF_DATA_DIR", server.data_dir.path())
        .env("HOME", server.data_dir.path().join("empty-home"));
    run_with_stdin(cmd, stdin)
}

/// An API server in this process over an embedded SQLite store, for tests that need to reach under
/// the API (compact the store, shrink the watch cache). Stops when dropped.
pub struct InProcess {
    /// The store the server sits on.
    pub store: std::sync::Arc<dyn skiff_apiserver::storage::Store>,
    /// A kube-rs client for it (admin).
    pub client: kube::Client,
    /// The server itself (its metrics, caches).
    pub api: std::sync::Arc<skiff_apiserver::server::ApiServer>,
    /// The admin kubeconfig (for the real kubectl).
    pub kubeconfig: PathBuf,
    /// The cluster CA (PEM): what kubelets verify the API server's client certificate against.
    pub ca_pem: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcess {
    /// Starts the server on 127.0.0.1:0 with `cache` options.
    pub async fn start(cache: skiff_apiserver::watch_cache::WatchCacheOptions) -> anyhow::Result<Self> {
        use skiff_apiserver::{
            server::{ApiServer, serve, tls},
            storage::sqlite::{SqliteOptions, SqliteStore},
        };
        let dir = tempfile::tempdir()?;
        let store: std::sync::Arc<dyn skiff_apiserver::storage::Store> = SqliteStore::open(
            &dir.path().join("state.db"),
            SqliteOptions {
                compact_interval: None,
                ..Default::default()
            },
        )?;
        let pki = tls::load_or_create(&dir.path().join("tls"), &["127.0.0.1".to_owned()])?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        tls::write_kubeconfig(
            &kubeconfig,
            &format!("https://127.0.0.1:{port}"),
            &pki.ca_pem,
            &pki.admin_token,
        )?;
        let api = ApiServer::new(store.clone(), cache);
        api.set_kubelet_client(skiff_apiserver::server::kubelet_client::KubeletClient::new(
            &pki.kubelet_client,
        )?);
        api.bootstrap(port).await?;
        let router = serve::with_auth(api.router(), vec![pki.admin_token.clone()]);
        let handle = api.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve::serve_tls(
            listener,
            pki.server_config,
            router,
            async move {
                let _ = stopped.await;
            },
        ));
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig)?,
            &Default::default(),
        )
        .await?;
        Ok(Self {
            store,
            client: kube::Client::try_from(config)?,
            api: handle,
            kubeconfig,
            ca_pem: pki.ca_pem.clone(),
            _dir: dir,
            stop: Some(stop),
        })
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A component (controller, scheduler, hollow node…) running as a task of this test, stopped when
/// dropped: its shutdown future completes and the task is aborted if it has not finished, so a failing
/// test leaves nothing running.
pub struct Component {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

impl Component {
    /// Spawns `run(shutdown)`; `shutdown` completes when the component is stopped or dropped.
    pub fn spawn<F, Fut>(run: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(run(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self {
            stop: Some(stop),
            handle,
        }
    }

    /// Stops the component and waits (at most 10 s) for it to finish its work in progress.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.handle).await;
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.handle.abort();
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `within`; each check is itself
/// bounded by 10 s.
pub async fn eventually<V, F, Fut>(what: &str, within: Duration, mut check: F) -> V
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<V>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(10), check()).await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
