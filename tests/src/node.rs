//! What end-to-end tests with a real node need: root, a network namespace of their own (removed when
//! the guard drops), the node's static helpers next to the `skiff` binary, a busybox image, and the
//! removal of whatever the node left running.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

/// Whether the test runs as root (node tests need it; CI runs as root).
pub fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// A network namespace this test made, with loopback up and `address` on it (the node's address:
/// only the namespace routes to it); deleted on drop.
pub struct Netns {
    /// Its name (`ip netns` name).
    pub name: String,
}

impl Netns {
    /// Creates `skiff-<tag>-<pid>`.
    pub fn create(tag: &str, address: &str) -> Self {
        let name = format!("skiff-{tag}-{}", std::process::id());
        let ns = Self { name };
        sh("ip", &["netns", "add", &ns.name]);
        sh("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        sh(
            "ip",
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{address}/32"),
                "dev",
                "lo",
            ],
        );
        ns
    }

    /// Creates `skiff-<tag>-<pid>` with only loopback up: its address comes from a link
    /// ([`Netns::link`]).
    pub fn bare(tag: &str) -> Self {
        let name = format!("skiff-{tag}-{}", std::process::id());
        let ns = Self { name };
        sh("ip", &["netns", "add", &ns.name]);
        sh("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Joins this namespace and `peer` with a veth pair (made inside this namespace, its other end
    /// moved straight into `peer`: the host's namespace never sees it), both ends named `ifname`, with
    /// `addr` and `peer_addr` (CIDR notation, one subnet) on them: two machines on one link.
    pub fn link(&self, peer: &Netns, ifname: &str, addr: &str, peer_addr: &str) {
        sh(
            "ip",
            &[
                "-n", &self.name, "link", "add", ifname, "type", "veth", "peer", "name", ifname, "netns",
                &peer.name,
            ],
        );
        for (ns, addr) in [(self, addr), (peer, peer_addr)] {
            sh("ip", &["-n", &ns.name, "addr", "add", addr, "dev", ifname]);
            sh("ip", &["-n", &ns.name, "link", "set", ifname, "up"]);
        }
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs `cmd args…` inside the namespace; its stdout, or None when it failed.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Removes what a node whose data dir is `data_dir` left behind once its kubelet is gone: runc
/// containers (a stopped kubelet leaves them running, as upstream's does) and empty pod cgroups.
pub fn remove_node_leftovers(data_dir: &Path) {
    let root = data_dir.join("agent/runc");
    let root = root.to_string_lossy();
    let listed = Command::new("runc")
        .args(["--root", &root, "list", "-q"])
        .output();
    if let Ok(out) = listed {
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("runc")
                .args(["--root", &root, "delete", "--force", id])
                .status();
        }
    }
    for dir in ["/sys/fs/cgroup/skiff"].into_iter().map(PathBuf::from).chain(
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join("skiff")),
    ) {
        if let Ok(pods) = std::fs::read_dir(&dir) {
            for pod in pods.flatten() {
                remove_empty_dirs(&pod.path());
            }
        }
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_empty_dirs(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// Builds `skiff-pause` and `skiff-shim` (static, their own crate) once per test run and puts them
/// next to the `skiff` binary, where the kubelet looks for them.
pub fn install_node_helpers() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pause/Cargo.toml");
        let skiff = crate::skiff_bin();
        let beside = skiff.parent().expect("skiff's directory");
        // Their own target dir: the cargo running the tests may hold the shared one's lock.
        let target = beside.parent().expect("target dir").join("pause-build");
        for bin in ["skiff-pause", "skiff-shim"] {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["rustc", "--quiet", "--manifest-path"])
                .arg(&manifest)
                .args(["--bin", bin, "--", "-C", "target-feature=+crt-static"])
                .env("CARGO_TARGET_DIR", &target)
                .status()
                .expect("running cargo");
            assert!(status.success(), "building {bin}");
            // Copy then rename: another test binary may be starting a node with the old one.
            let tmp = beside.join(format!(".{bin}.{}", std::process::id()));
            std::fs::copy(target.join("debug").join(bin), &tmp).expect("copy helper");
            std::fs::rename(&tmp, beside.join(bin)).expect("install helper");
        }
    });
}

/// A busybox image as a directory (`<dir>/busybox`): Debian's static busybox and its applets.
pub fn busybox_images_dir(parent: &Path) -> PathBuf {
    let images = parent.join("images");
    let root = images.join("busybox");
    for sub in ["bin", "tmp", "proc", "dev", "sys", "www"] {
        std::fs::create_dir_all(root.join(sub)).expect("image dirs");
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("busybox-static is installed (scripts/setup.sh)");
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    let applets = Command::new(busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
        let link = root.join("bin").join(applet);
        if !link.exists() {
            let _ = std::os::unix::fs::symlink("busybox", link);
        }
    }
    images
}

fn sh(cmd: &str, args: &[&str]) {
    let status = Command::new(cmd).args(args).status().expect(cmd);
    assert!(status.success(), "{cmd} {args:?}");
}

/// A `skiff agent` process (a second node), running inside its own network namespace
/// (`--node-netns`) with a data dir of its own; killed on drop, its containers removed.
pub struct Agent {
    child: Option<std::process::Child>,
    /// Its data dir (`agent/` under it), removed on drop.
    pub data_dir: tempfile::TempDir,
}

impl Agent {
    /// Starts `skiff agent --kubeconfig <kubeconfig> --data-dir <tmp> <extra…>` (its stderr goes to
    /// `<data dir>/agent.log`).
    /// `connect` says how it reaches the server (`--kubeconfig K`, or `--server URL --token T`).
    pub fn start(connect: &[&str], extra: &[&str]) -> Self {
        let data_dir = tempfile::Builder::new()
            .prefix("skiff-e2e-agent-")
            .tempdir()
            .expect("tempdir");
        let log = std::fs::File::create(data_dir.path().join("agent.log")).expect("agent log");
        let child = Command::new(crate::skiff_bin())
            .arg("agent")
            .args(connect)
            .arg("--data-dir")
            .arg(data_dir.path())
            .args([
                "--eviction-hard",
                skiff_kubelet::eviction::SHARED_MACHINE_EVICTION_HARD,
            ])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff agent");
        Self {
            child: Some(child),
            data_dir,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("agent.log")).unwrap_or_default()
    }

    /// SIGKILL (a node lost at once) and the removal of the containers it left running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            remove_node_leftovers(self.data_dir.path());
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}
