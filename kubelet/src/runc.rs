//! A thin wrapper of the runc command line, the part of containerd's `go-runc` package skiff needs:
//! run, state, kill, delete and list, always with `--root <our state dir>` so skiff's containers never
//! mix with anyone else's (runc's default root is /run/runc). Errors carry runc's own message. `state`
//! and `list` read runc's state files as runc itself does (no Go process per query: the start path asks
//! several times per pod).

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use serde::Deserialize;

use crate::runtime::RuntimeError;

/// A runc command that failed.
#[derive(Debug)]
pub struct RuncError {
    /// The arguments after `runc --root …`.
    pub args: Vec<String>,
    /// Its exit code (None if it could not run or was killed).
    pub code: Option<i32>,
    /// What runc printed on stderr (or why it could not run).
    pub stderr: String,
}

impl std::fmt::Display for RuncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "runc {}: {}", self.args.join(" "), self.stderr.trim())
    }
}

impl std::error::Error for RuncError {}

impl From<RuncError> for RuntimeError {
    fn from(e: RuncError) -> Self {
        RuntimeError(e.to_string())
    }
}

impl RuncError {
    /// runc says the container is not there.
    pub fn not_found(&self) -> bool {
        self.stderr.contains("does not exist") || self.stderr.contains("not exist")
    }
}

/// A container as `runc state` / `runc list` report it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct State {
    /// Its id.
    pub id: String,
    /// Its init process on the host (0 once stopped).
    pub pid: i64,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    /// Its bundle directory.
    pub bundle: String,
    /// When it was created (RFC 3339, nanoseconds).
    pub created: String,
    /// The annotations of its config.json.
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl State {
    /// One annotation, if set.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// runc with its own state root.
#[derive(Clone, Debug)]
pub struct Runc {
    /// The runc binary.
    pub binary: PathBuf,
    /// `--root`: where runc keeps the state of our containers.
    pub root: PathBuf,
}

impl Runc {
    /// runc from `binary`, keeping state under `root`.
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            root: root.into(),
        }
    }

    /// The command line for `args` (after the global `--root`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    /// Everything after the binary for `args`, for a caller that runs runc through another program.
    pub fn args(&self, args: &[&str]) -> Vec<OsString> {
        let mut all: Vec<OsString> = vec!["--root".into(), self.root.clone().into_os_string()];
        all.extend(args.iter().map(OsString::from));
        all
    }

    fn output(&self, args: &[&str]) -> Result<String, RuncError> {
        let err = |code, stderr: String| RuncError {
            args: args.iter().map(|a| a.to_string()).collect(),
            code,
            stderr,
        };
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| err(None, format!("running {}: {e}", self.binary.display())))?;
        if !out.status.success() {
            return Err(err(
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `runc run -d`: creates and starts `id` from `bundle`, detached. The container inherits runc's
    /// stdio, so its output (and runc's own errors) go to `log`; on failure the error carries the
    /// log's end.
    pub fn run_detached(&self, id: &str, bundle: &Path, log: &Path) -> Result<(), RuncError> {
        let args = ["run", "--detach", "--bundle", path_str(bundle), id];
        let err = |code, stderr: String| RuncError {
            args: args.iter().map(|a| a.to_string()).collect(),
            code,
            stderr,
        };
        let open = || File::options().create(true).append(true).open(log);
        let (out, errf) = match (open(), open()) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return Err(err(None, format!("opening {}: {e}", log.display()))),
        };
        let status = self
            .command(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(errf)
            .status()
            .map_err(|e| err(None, format!("running {}: {e}", self.binary.display())))?;
        if !status.success() {
            return Err(err(status.code(), tail(log)));
        }
        Ok(())
    }

    /// Starts `monitor` with `monitor_args` followed by the arguments of a detached
    /// `runc run --pid-file <pid_file>` of `id`, in its own process group, the monitor's own stdio to
    /// `log`. The monitor (skiff-shim) is the container's subreaper: runc exits once the container
    /// runs and the monitor reaps the container's init itself; the stopped container stays listed
    /// until it is deleted. The caller reaps the returned child.
    pub fn spawn_monitored(
        &self,
        monitor: &Path,
        monitor_args: &[OsString],
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> std::io::Result<Child> {
        use std::os::unix::process::CommandExt;
        let out = File::options().create(true).append(true).open(log)?;
        let errf = out.try_clone()?;
        let mut cmd = Command::new(monitor);
        let run = [
            "run",
            "--detach",
            "--pid-file",
            path_str(pid_file),
            "--bundle",
            path_str(bundle),
            id,
        ];
        cmd.args(monitor_args)
            .arg(&self.binary)
            .args(self.args(&run))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(errf)
            // Its own process group: a ^C or a signal to the kubelet's group does not reach it.
            .process_group(0);
        cmd.spawn()
    }

    /// What `runc state` prints, read the way runc itself reads it (without running runc, a Go
    /// process per call): None when runc does not know `id`.
    pub fn state(&self, id: &str) -> Result<Option<State>, RuncError> {
        if id.is_empty() || id.contains('/') || id == "." || id == ".." {
            return Ok(None);
        }
        read_state(&self.root.join(id)).map_err(|stderr| RuncError {
            args: vec!["state".into(), id.into()],
            code: None,
            stderr,
        })
    }

    /// `runc kill`: sends `signal` (`TERM`, `KILL`…) to the container's init process, or with `all`
    /// to every process in it.
    pub fn kill(&self, id: &str, signal: &str, all: bool) -> Result<(), RuncError> {
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, signal]);
        self.output(&args).map(drop)
    }

    /// `runc delete --force`: kills what still runs and removes the container; not an error when it is
    /// already gone.
    pub fn delete_force(&self, id: &str) -> Result<(), RuncError> {
        match self.output(&["delete", "--force", id]) {
            Err(e) if e.not_found() => Ok(()),
            other => other.map(drop),
        }
    }

    /// What `runc list` prints: every container under our root (read as runc reads it).
    pub fn list(&self) -> Result<Vec<State>, RuncError> {
        let err = |stderr: String| RuncError {
            args: vec!["list".into()],
            code: None,
            stderr,
        };
        let dir = match std::fs::read_dir(&self.root) {
            Ok(dir) => dir,
            // runc lists nothing when its root does not exist yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(err(format!("reading {}: {e}", self.root.display()))),
        };
        let mut states = Vec::new();
        for entry in dir.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // A container that vanished meanwhile (or cannot be loaded) is left out, as runc does.
            if let Ok(Some(state)) = read_state(&entry.path()) {
                states.push(state);
            }
        }
        states.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(states)
    }
}

/// What runc keeps of a container in `<root>/<id>/state.json` (libcontainer's `State`), the part
/// `runc state` reports.
#[derive(Deserialize)]
struct Saved {
    id: String,
    init_process_pid: i64,
    /// The init's start time in clock ticks since boot (/proc/<pid>/stat field 22); a string in old runcs.
    init_process_start: serde_json::Value,
    created: String,
    #[serde(default)]
    config: SavedConfig,
    #[serde(default)]
    cgroup_paths: BTreeMap<String, String>,
}

#[derive(Default, Deserialize)]
struct SavedConfig {
    /// `bundle=<dir>` and the spec's annotations as `key=value`.
    #[serde(default)]
    labels: Option<Vec<String>>,
}

/// `runc state` of the container whose runc directory is `dir` (libcontainer's `currentStatus`):
/// stopped unless its init process (same pid *and* start time) lives and is not a zombie; created while
/// its exec fifo is there; paused while its freezer says so; else running. The pid is 0 once stopped.
fn read_state(dir: &Path) -> Result<Option<State>, String> {
    let text = match std::fs::read(dir.join("state.json")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}/state.json: {e}", dir.display())),
    };
    let saved: Saved =
        serde_json::from_slice(&text).map_err(|e| format!("parsing {}/state.json: {e}", dir.display()))?;
    let start = match &saved.init_process_start {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    };
    let alive = saved.init_process_pid > 0
        && std::fs::read_to_string(format!("/proc/{}/stat", saved.init_process_pid))
            .ok()
            .and_then(|stat| proc_stat_state_and_start(&stat))
            .is_some_and(|(state, started)| Some(started) == start && state != 'Z' && state != 'X');
    let frozen = || match saved.cgroup_paths.get("freezer") {
        Some(v1) => {
            std::fs::read_to_string(Path::new(v1).join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
        }
        None => saved.cgroup_paths.get("").is_some_and(|v2| {
            std::fs::read_to_string(Path::new(v2).join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        }),
    };
    let status = if frozen() {
        "paused"
    } else if !alive {
        "stopped"
    } else if dir.join("exec.fifo").exists() {
        "created"
    } else {
        "running"
    };
    let mut bundle = String::new();
    let mut annotations = BTreeMap::new();
    for label in saved.config.labels.iter().flatten() {
        let (k, v) = label.split_once('=').unwrap_or((label, ""));
        if k == "bundle" {
            bundle = v.to_owned();
        } else {
            annotations.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(Some(State {
        id: saved.id,
        pid: if status == "stopped" {
            0
        } else {
            saved.init_process_pid
        },
        status: status.to_owned(),
        bundle,
        created: saved.created,
        annotations: Some(annotations),
    }))
}

/// The state letter (field 3) and start time (field 22) of a /proc/<pid>/stat line.
fn proc_stat_state_and_start(stat: &str) -> Option<(char, u64)> {
    // The command (field 2) is in parentheses and may hold anything, spaces and ')' included.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// The last lines of a log file (runc's error is the last thing it wrote).
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_state_output_parse() {
        let list = r#"[{"ociVersion":"1.0.2","id":"u1","pid":4242,"status":"running","bundle":"/b/u1",
            "rootfs":"/r","created":"2026-11-22T14:04:35.836432397Z","annotations":{"io.kubernetes.pod.uid":"u1"},
            "owner":"root"}]"#;
        let states: Vec<State> = serde_json::from_str(list).unwrap();
        assert_eq!(states[0].pid, 4242);
        assert_eq!(states[0].annotation("io.kubernetes.pod.uid"), Some("u1"));
        assert_eq!(serde_json::from_str::<Option<Vec<State>>>("null").unwrap(), None);
        let state: State = serde_json::from_str(
            r#"{"id":"x","pid":0,"status":"stopped","bundle":"/b","rootfs":"/r","created":"t"}"#,
        )
        .unwrap();
        assert_eq!((state.status.as_str(), state.annotation("a")), ("stopped", None));
    }

    #[test]
    fn commands_use_our_root_and_errors_carry_stderr() {
        let runc = Runc::new("runc", "/run/skiff/runc");
        let cmd = runc.command(&["state", "x"]);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--root", "/run/skiff/runc", "state", "x"]);
        let e = RuncError {
            args: vec!["state".into(), "x".into()],
            code: Some(1),
            stderr: "container does not exist\n".into(),
        };
        assert!(e.not_found());
        assert_eq!(RuntimeError::from(e).0, "runc state x: container does not exist");
    }

    #[test]
    fn state_and_list_read_runcs_state_files() {
        let root = std::env::temp_dir().join(format!("skiff-runc-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let runc = Runc::new("/nonexistent/runc", &root);
        assert_eq!(runc.list().unwrap(), vec![], "no root yet: nothing");
        let me = std::process::id() as i64;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (_, start) = proc_stat_state_and_start(&stat).unwrap();
        let save = |id: &str, pid: i64, start: u64| {
            std::fs::create_dir_all(root.join(id)).unwrap();
            let saved = serde_json::json!({ "id": id, "init_process_pid": pid, "init_process_start": start,
                "created": "2026-12-06T05:00:00.123456789Z", "rootless": false, "cgroup_paths": {},
                "config": { "labels": [format!("bundle=/b/{id}"), "io.kubernetes.pod.uid=u1", "x=a=b"] } });
            std::fs::write(root.join(id).join("state.json"), saved.to_string()).unwrap();
        };
        save("live", me, start);
        save("reused-pid", me, start + 1);
        save("gone", 0, start);
        std::fs::create_dir_all(root.join("half-made")).unwrap();
        let live = runc.state("live").unwrap().unwrap();
        assert_eq!(
            (live.status.as_str(), live.pid, live.bundle.as_str()),
            ("running", me, "/b/live")
        );
        assert_eq!(
            (live.annotation("io.kubernetes.pod.uid"), live.annotation("x")),
            (Some("u1"), Some("a=b"))
        );
        assert_eq!(live.created, "2026-12-06T05:00:00.123456789Z");
        let reused = runc.state("reused-pid").unwrap().unwrap();
        assert_eq!((reused.status.as_str(), reused.pid), ("stopped", 0));
        std::fs::write(root.join("live").join("exec.fifo"), "").unwrap();
        assert_eq!(runc.state("live").unwrap().unwrap().status, "created");
        assert_eq!(runc.state("half-made").unwrap(), None);
        assert_eq!(runc.state("never").unwrap(), None);
        let ids: Vec<String> = runc.list().unwrap().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["gone", "live", "reused-pid"]);
        assert_eq!(
            proc_stat_state_and_start("1 (a) b) R 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 77 0"),
            Some(('R', 77))
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    /// runc's `runType`: a recorded init that exited (reaped or not) or whose pid now belongs to
    /// another process is stopped, exec fifo or not; a frozen freezer cgroup is paused.
    #[test]
    fn dead_zombie_and_frozen_inits_read_as_runc_reports_them() {
        let root = std::env::temp_dir().join(format!("skiff-runc-dead-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let runc = Runc::new("/nonexistent/runc", &root);
        assert_eq!(runc.state("x").unwrap(), None, "no root: runc knows nothing");
        let started = |pid: u32| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            proc_stat_state_and_start(&stat).unwrap()
        };
        let save = |id: &str, pid: u32, start: u64, cgroups: serde_json::Value| {
            std::fs::create_dir_all(root.join(id)).unwrap();
            let saved = serde_json::json!({ "id": id, "init_process_pid": pid, "init_process_start": start,
                "created": "2026-12-06T05:00:00Z", "cgroup_paths": cgroups, "config": { "labels": ["bundle=/b"] } });
            std::fs::write(root.join(id).join("state.json"), saved.to_string()).unwrap();
            // Left behind by a runc killed between the init's exec and its start: no matter once
            // the init is gone.
            std::fs::write(root.join(id).join("exec.fifo"), "").unwrap();
        };
        // Exited and reaped: its pid names no process (or, reused, one with another start time).
        let mut child = std::process::Command::new("sleep").arg("60").spawn().unwrap();
        let (_, start) = started(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        save("dead", child.id(), start, serde_json::json!({}));
        // Exited, not reaped yet: a zombie.
        let mut zombie = std::process::Command::new("true").spawn().unwrap();
        let (_, zstart) = started(zombie.id());
        while started(zombie.id()).0 != 'Z' {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        save("zombie", zombie.id(), zstart, serde_json::json!({}));
        for id in ["dead", "zombie"] {
            let s = runc.state(id).unwrap().unwrap();
            assert_eq!((s.status.as_str(), s.pid), ("stopped", 0), "{id}");
        }
        zombie.wait().unwrap();
        // Alive but created (waiting on its exec fifo), and the same frozen (v1 freezer).
        let me = std::process::id();
        let (_, mine) = started(me);
        let freezer = root.join("freezer");
        std::fs::create_dir_all(&freezer).unwrap();
        std::fs::write(freezer.join("freezer.state"), "THAWED\n").unwrap();
        save("created", me, mine, serde_json::json!({ "freezer": freezer }));
        let s = runc.state("created").unwrap().unwrap();
        assert_eq!((s.status.as_str(), s.pid), ("created", me as i64));
        std::fs::write(freezer.join("freezer.state"), "FROZEN\n").unwrap();
        assert_eq!(runc.state("created").unwrap().unwrap().status, "paused");
        // A state.json runc would not load is an error, not a stopped container.
        std::fs::write(root.join("dead").join("state.json"), "{").unwrap();
        assert!(runc.state("dead").unwrap_err().stderr.contains("parsing"));
        // Ids runc refuses are unknown, never paths out of the root.
        assert_eq!(runc.state("../x").unwrap(), None);
        let _ = std::fs::remove_dir_all(&root);
    }
}
