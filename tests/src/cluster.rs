//! The one-binary cluster of the end-to-end tests: `skiff server` with its embedded node in a network
//! namespace the test makes (as the quickstart runs it), busybox as the only image, and the real
//! kubectl. [`Cluster`] is a guard: on drop the server is killed, what its node left running is
//! removed, and then the namespace goes, so a failing test leaves nothing behind.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use crate::{
    Server, kubectl,
    node::{Netns, busybox_images_dir, install_node_helpers, remove_node_leftovers},
};

/// The node's address (on the loopback of its namespace).
pub const NODE_IP: &str = "10.200.0.1";
/// The node's name.
pub const NODE_NAME: &str = "e2e-node";

/// The server, its node's namespace, and the node's leftovers removed on drop (in that order).
pub struct Cluster {
    server: Option<Server>,
    /// The node's network namespace: where pods, Service VIPs and the cluster DNS are reachable.
    pub netns: Netns,
    _images: tempfile::TempDir,
}

impl Cluster {
    /// Starts `skiff server` with its node in a new namespace `skiff-<tag>-<pid>`.
    pub async fn start(tag: &str) -> Self {
        install_node_helpers();
        let netns = Netns::create(tag, NODE_IP);
        let images = tempfile::Builder::new()
            .prefix("skiff-e2e-images-")
            .tempdir()
            .expect("tempdir");
        let images_dir = busybox_images_dir(images.path());
        let server = Server::start(&[
            "--node-netns",
            &netns.path(),
            "--node-name",
            NODE_NAME,
            "--node-ip",
            NODE_IP,
            "--images-dir",
            images_dir.to_str().expect("utf-8 path"),
        ])
        .await
        .expect("start skiff server");
        Self {
            server: Some(server),
            netns,
            _images: images,
        }
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server")
    }

    /// SIGKILLs the server (the API server, controllers, scheduler and the embedded node with it),
    /// then starts it again with the same data dir, port and flags, and waits until it is ready.
    pub async fn kill_and_restart(&mut self) {
        let server = self.server.as_mut().expect("server");
        server.kill();
        server.restart().await.expect("restart skiff server");
    }

    /// kubectl `args` (with `stdin`), which must succeed; its stdout.
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (success, out, err) = kubectl(self.server(), args, stdin);
        assert!(
            success,
            "kubectl {args:?} failed: {err}\n{}\n{}\nserver log (end):\n{}",
            last_lines(&out, 8),
            self.diagnosis(),
            self.log_tail(60)
        );
        out
    }

    /// What a failed test should print first, briefly (CI keeps only the beginning and the end of a
    /// long failure): each node's conditions and taints, how many pods are in each state, and the
    /// latest Warning events.
    pub fn diagnosis(&self) -> String {
        let nodes = self
            .try_ok(&[
                "get",
                "nodes",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}:{range .status.conditions[*]} {.type}={.status}{end} taints={.spec.taints}{"\n"}{end}"#,
            ])
            .unwrap_or_default();
        let pods = self
            .try_ok(&["get", "pods", "-A", "--no-headers"])
            .unwrap_or_default();
        let mut states = std::collections::BTreeMap::<&str, usize>::new();
        for status in pods.lines().filter_map(|l| l.split_whitespace().nth(3)) {
            *states.entry(status).or_default() += 1;
        }
        let warnings = self
            .try_ok(&[
                "get",
                "events",
                "-A",
                "--field-selector",
                "type=Warning",
                "--sort-by",
                ".lastTimestamp",
            ])
            .unwrap_or_default();
        format!(
            "nodes:\n{nodes}pods by status: {states:?}\nlatest warnings:\n{}",
            last_lines(&warnings, 10)
        )
    }

    /// kubectl `args`: its stdout when it succeeded.
    pub fn try_ok(&self, args: &[&str]) -> Option<String> {
        let (success, out, _) = kubectl(self.server(), args, None);
        success.then_some(out)
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.server().log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `kubectl rollout status` of Deployment `name`, which must say it rolled out within
    /// `timeout_secs`.
    pub fn rolled_out(&self, name: &str, timeout_secs: u32) {
        let out = crate::kubectl_command(
            self.server(),
            timeout_secs + 10,
            &[
                "rollout",
                "status",
                &format!("deployment/{name}"),
                &format!("--timeout={timeout_secs}s"),
            ],
        )
        .stdin(std::process::Stdio::null())
        .output()
        .expect("kubectl runs");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && stdout.contains("successfully rolled out"),
            "deployment/{name} did not roll out: {stderr}\n{}\n{}\n{}\nserver log (end):\n{}",
            last_lines(&stdout, 8),
            self.diagnosis(),
            last_lines(
                &self
                    .try_ok(&["get", "deployments,replicasets,pods", "-o", "wide"])
                    .unwrap_or_default(),
                30
            ),
            self.log_tail(60)
        );
    }

    /// The ClusterIP of Service `name` (namespace default).
    pub fn cluster_ip(&self, name: &str) -> String {
        self.ok(
            &["get", "service", name, "-o", "jsonpath={.spec.clusterIP}"],
            None,
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
            // A failed test keeps the whole server log (the data dir goes with the server).
            if std::thread::panicking() {
                let kept = std::env::temp_dir().join(format!("{}.log", self.netns.name));
                if std::fs::write(&kept, server.log()).is_ok() {
                    eprintln!("server log kept in {}", kept.display());
                }
            }
            remove_node_leftovers(server.data_dir.path());
        }
    }
}

/// Moves the calling thread into the network namespace at `path` (a thread of its own: the namespace
/// stays with it).
pub fn enter_netns(path: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
}

/// One HTTP/1.0 GET of `/` from `addr` on a new connection (2 s to connect, 5 s to answer): the body
/// of a 200 answer, or what went wrong.
pub fn http_get_once(addr: SocketAddr) -> Result<String, String> {
    let mut conn =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| conn.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("timeouts: {e}"))?;
    conn.write_all(b"GET / HTTP/1.0\r\nHost: e2e\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.lines().next().unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(format!("answer: {status:?}"));
    }
    Ok(answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

/// The last `n` lines of `text`, with a note of how many were left out.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skipped = lines.len().saturating_sub(n);
    let tail = lines[skipped..].join("\n");
    match skipped {
        0 => tail,
        _ => format!("[{skipped} lines before]\n{tail}"),
    }
}
