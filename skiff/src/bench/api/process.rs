//! The process figures of `skiff bench api`: how long `skiff server` takes to become ready, and how
//! much memory it holds once idle (what a small on-prem node pays for its control plane).
//!
//! The server is this very binary (`std::env::current_exe()`), started as a child with a fresh data
//! dir on a free loopback port, so a first start is measured: it creates the SQLite store, the CA, the
//! serving certificate and the bootstrap objects. Ready = `/readyz` answers 200 over HTTPS, checked
//! with the CA it wrote into its kubeconfig. Memory = `VmRSS` from `/proc/<pid>/status`.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{client_from_kubeconfig, get};

/// How long the server may take to become ready before the bench gives up on it.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often readiness is polled (the figure's resolution).
const POLL: Duration = Duration::from_millis(5);

/// What one start of `skiff server` measured.
pub(in crate::bench) struct ServerStart {
    /// Spawn → `/readyz` answers 200.
    pub ready: Duration,
    /// Resident memory after the idle wait.
    pub rss_bytes: u64,
}

/// A `skiff server` child: killed (by its PID) and reaped when dropped, even when the bench fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `skiff server` in a fresh temp data dir, waits until it is ready, lets it sit `idle`, reads
/// its memory, and stops it (the data dir goes with it).
pub(in crate::bench) async fn start_server(idle: Duration) -> anyhow::Result<ServerStart> {
    let exe = std::env::current_exe().context("cannot find this skiff binary")?;
    let dir = tempfile::Builder::new().prefix("skiff-bench-server-").tempdir()?;
    let port = free_port()?;
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path)?;
    let spawned = Instant::now();
    let mut child = Child(
        Command::new(&exe)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--https-listen-port",
                &port.to_string(),
                "--disable-agent",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?,
    );
    wait_ready(&mut child, &dir.path().join("kubeconfig.yaml"), &log_path).await?;
    let ready = spawned.elapsed();
    tokio::time::sleep(idle).await;
    let rss_bytes = vm_rss(child.0.id())?;
    drop(child);
    Ok(ServerStart { ready, rss_bytes })
}

/// Polls `/readyz` until it answers 200. The kubeconfig (with the CA to trust) appears once the
/// server has its PKI and its listener; a client is built from it then.
async fn wait_ready(child: &mut Child, kubeconfig: &Path, log: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut client = None;
    let mut last_error = String::from("no kubeconfig yet");
    while Instant::now() < deadline {
        if let Some(status) = child.0.try_wait()? {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            anyhow::bail!("skiff server exited with {status}; its log:\n{log}");
        }
        if client.is_none() && kubeconfig.exists() {
            // The file may be half written: try again on the next poll.
            client = client_from_kubeconfig(kubeconfig).await.ok();
        }
        if let Some(client) = &client {
            match get(client, "/readyz").await {
                Ok(text) if text.trim() == "ok" => return Ok(()),
                Ok(text) => last_error = text,
                Err(e) => last_error = format!("{e:#}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
    anyhow::bail!("skiff server not ready after {READY_TIMEOUT:?}: {last_error}")
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Resident set size of process `pid`, from the `VmRSS:` line (in kB) of `/proc/<pid>/status`.
fn vm_rss(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS in {path}"))?;
    Ok(kb * 1024)
}
