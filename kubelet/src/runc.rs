//! A thin wrapper of the runc command line, the part of containerd's `go-runc` package skiff needs:
//! run, state, kill, delete and list, always with `--root <our state dir>` so skiff's containers never
//! mix with anyone else's (runc's default root is /run/runc). Errors carry runc's own message.

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

    /// `runc state`: None when runc does not know `id`.
    pub fn state(&self, id: &str) -> Result<Option<State>, RuncError> {
        match self.output(&["state", id]) {
            Ok(out) => serde_json::from_str(&out).map(Some).map_err(|e| RuncError {
                args: vec!["state".into(), id.into()],
                code: Some(0),
                stderr: format!("parsing its output: {e}"),
            }),
            Err(e) if e.not_found() => Ok(None),
            Err(e) => Err(e),
        }
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

    /// `runc list`: every container under our root.
    ///
    /// runc (1.1) lists the root's directories, then reads each container's state, and fails the whole
    /// listing when one of them is deleted in between ("stat <root>/<id>: no such file or directory"):
    /// with pods deleted concurrently that happens often, so such a listing is taken again, a little
    /// later each time (16 teardowns at once on a loaded machine lost 10 immediate retries in a row).
    pub fn list(&self) -> Result<Vec<State>, RuncError> {
        let mut attempts: u64 = 0;
        let out = loop {
            match self.output(&["list", "--format", "json"]) {
                Err(e)
                    if attempts < 40
                        && e.stderr.contains("stat ")
                        && e.stderr.contains("no such file or directory") =>
                {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis((attempts * 5).min(100)));
                }
                other => break other?,
            }
        };
        // runc prints `null` when there are none.
        serde_json::from_str::<Option<Vec<State>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| RuncError {
                args: vec!["list".into()],
                code: Some(0),
                stderr: format!("parsing its output: {e}"),
            })
    }
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
        // A runc that is not there is an error that says so, not a panic.
        let missing = Runc::new("/nonexistent/runc", "/tmp");
        assert!(missing.list().unwrap_err().stderr.contains("/nonexistent/runc"));
    }
}
