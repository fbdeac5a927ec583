//! Starts a real etcd (Debian's `etcd` binary, 3.4) on loopback for tests and benchmarks.
//!
//! [`EtcdProcess::start`] picks two free loopback ports (client and peer), starts a one-member etcd with
//! a fresh data dir in a temporary directory, and returns once etcd answers `GET /health`. The process
//! is killed (SIGKILL) and the data dir removed when the value is dropped, so a panicking test does not
//! leave an etcd behind. [`EtcdProcess::stop`] and [`EtcdProcess::restart`] keep the data dir and the
//! ports, for restart and durability tests.
//!
//! etcd's own logs go to `etcd.log` next to the data dir (see [`EtcdProcess::log_path`]).
//! The binary is `$SKIFF_ETCD_BIN` if set, else `etcd` on `PATH`, else `/usr/bin/etcd`.
//!
//! This module has no etcd-client dependency: it is compiled with or without the `etcd` feature.

use std::{
    ffi::OsString,
    fs::{self, OpenOptions},
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long etcd may take to answer its health check after being started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How many times a fresh start retries with new ports (another process may grab a port we picked).
const START_ATTEMPTS: usize = 5;
/// The member name of the one-member cluster.
const MEMBER: &str = "skiff-test";

/// A running (or stopped) one-member etcd on loopback, owned by the caller. See the module docs.
#[derive(Debug)]
pub struct EtcdProcess {
    binary: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    // Dropped after `Drop::drop` has killed the child, which removes the data dir and the log.
    dir: TempDir,
}

impl EtcdProcess {
    /// Starts a fresh etcd on two free loopback ports and waits until it is healthy.
    ///
    /// Fails with [`io::ErrorKind::NotFound`] ("etcd not found: install Debian's etcd-server") when no
    /// etcd binary is installed, and with the tail of etcd's log when it does not come up.
    pub async fn start() -> io::Result<EtcdProcess> {
        let binary = find_etcd()?;
        let dir = tempfile::Builder::new().prefix("skiff-etcd-").tempdir()?;
        let (client_port, peer_port) = free_ports()?;
        let mut etcd = EtcdProcess {
            binary,
            client_port,
            peer_port,
            child: None,
            dir,
        };
        let mut last_err = None;
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                // A port we picked may have been taken in the meantime: start over with new ports and
                // a pristine data dir (the old one records the old peer URL).
                let _ = fs::remove_dir_all(etcd.data_dir());
                (etcd.client_port, etcd.peer_port) = free_ports()?;
            }
            match etcd.spawn_and_wait().await {
                Ok(()) => return Ok(etcd),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(e),
                Err(e) => {
                    etcd.stop();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("etcd did not start")))
    }

    /// The client URL, e.g. `http://127.0.0.1:23790`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }

    /// The peer port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// etcd's data dir (kept across [`stop`](Self::stop) and [`restart`](Self::restart)).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The file etcd's stdout and stderr go to.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// The process id while etcd runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the etcd process is alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills etcd (SIGKILL, as a crash would) and waits for it to exit. The data dir is kept.
    /// Does nothing when it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops etcd if it runs, then starts it again on the same ports with the same data dir and waits
    /// until it is healthy.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let mut last_err = None;
        // The ports are fixed now; if one is briefly unavailable, wait and try again.
        for attempt in 0..START_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * attempt as u64)).await;
            }
            match self.spawn_and_wait().await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.stop();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("etcd did not restart")))
    }

    fn args(&self) -> Vec<OsString> {
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut args: Vec<OsString> = Vec::new();
        let mut flag = |name: &str, value: OsString| {
            let mut arg = OsString::from(format!("--{name}="));
            arg.push(value);
            args.push(arg);
        };
        flag("name", MEMBER.into());
        flag("data-dir", self.data_dir().into_os_string());
        flag("listen-client-urls", client.clone().into());
        flag("advertise-client-urls", client.into());
        flag("listen-peer-urls", peer.clone().into());
        flag("initial-advertise-peer-urls", peer.clone().into());
        flag("initial-cluster", format!("{MEMBER}={peer}").into());
        flag("initial-cluster-state", "new".into());
        flag(
            "initial-cluster-token",
            format!("skiff-{}", self.peer_port).into(),
        );
        flag("logger", "zap".into());
        flag("log-outputs", "stderr".into());
        flag("log-level", "warn".into());
        // 2 GiB, etcd's default, made explicit so a test never hits the smaller "low space" quota.
        flag("quota-backend-bytes", (2u64 << 30).to_string().into());
        args
    }

    async fn spawn_and_wait(&mut self) -> io::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(self.args())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        // ETCD_* variables from the environment would override (or, in 3.4, conflict with) our flags.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(name);
            }
        }
        let child = cmd.spawn().map_err(|e| not_found_or(e, &self.binary))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    async fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "etcd exited during startup ({status}); log tail:\n{}",
                    self.log_tail()
                )));
            }
            if healthy(self.client_port).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "etcd on port {} not healthy within {READY_TIMEOUT:?}; log tail:\n{}",
                        self.client_port,
                        self.log_tail()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `GET /health` over a plain HTTP/1.0 request; true when etcd reports itself healthy.
async fn healthy(port: u16) -> bool {
    let check = async {
        let mut conn = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        conn.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response).await?;
        io::Result::Ok(response)
    };
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(response)) => {
            let text = String::from_utf8_lossy(&response);
            text.starts_with("HTTP/1.") && text.contains("200") && text.contains("\"health\":\"true\"")
        }
        _ => false,
    }
}

/// Two distinct free loopback ports: both are bound at once (so they differ), then released.
fn free_ports() -> io::Result<(u16, u16)> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let a = TcpListener::bind(any)?;
    let b = TcpListener::bind(any)?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn not_found_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        "etcd not found: install Debian's etcd-server",
    )
}

fn not_found_or(e: io::Error, binary: &Path) -> io::Error {
    if e.kind() == io::ErrorKind::NotFound {
        not_found_error()
    } else {
        io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display()))
    }
}

/// `$SKIFF_ETCD_BIN`, else `etcd` on `PATH`, else `/usr/bin/etcd`.
fn find_etcd() -> io::Result<PathBuf> {
    find_etcd_in(
        std::env::var_os("SKIFF_ETCD_BIN"),
        std::env::var_os("PATH"),
        Path::new("/usr/bin/etcd"),
    )
}

fn find_etcd_in(explicit: Option<OsString>, path: Option<OsString>, fallback: &Path) -> io::Result<PathBuf> {
    if let Some(bin) = explicit {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(bin)
        } else {
            Err(not_found_error())
        };
    }
    let on_path = path
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file());
    match on_path {
        Some(bin) => Ok(bin),
        None if fallback.is_file() => Ok(fallback.to_path_buf()),
        None => Err(not_found_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        let (a, b) = free_ports().expect("ports");
        assert_ne!(a, b);
        assert!(a > 0 && b > 0);
    }

    #[test]
    fn a_missing_binary_says_what_to_install() {
        let empty = TempDir::new().expect("tempdir");
        let nowhere = empty.path().join("etcd");
        let err =
            find_etcd_in(None, Some(empty.path().as_os_str().to_owned()), &nowhere).expect_err("no etcd");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.to_string(), "etcd not found: install Debian's etcd-server");
        let err = find_etcd_in(Some(nowhere.clone().into_os_string()), None, &nowhere).expect_err("no etcd");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn args_name_both_ports() {
        let dir = TempDir::new().expect("tempdir");
        let etcd = EtcdProcess {
            binary: PathBuf::from("/usr/bin/etcd"),
            client_port: 1111,
            peer_port: 2222,
            child: None,
            dir,
        };
        let args: Vec<String> = etcd
            .args()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"--listen-client-urls=http://127.0.0.1:1111".to_owned()));
        assert!(args.contains(&"--initial-cluster=skiff-test=http://127.0.0.1:2222".to_owned()));
        assert_eq!(etcd.endpoint(), "http://127.0.0.1:1111");
    }
}
