//! Running a command in a runc container and stopping one container of a pod: what containerd's CRI
//! `ExecSync` and `StopContainer` do for the kubelet's exec probes and liveness restarts
//! (pkg/cri/server/container_execsync.go, container_stop.go).

use std::{
    io::Read,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use crate::{
    runc::Runc,
    runtime::{ExecResult, RuntimeError},
};

/// The most output an exec keeps (upstream caps probe output at 10 KiB).
const MAX_OUTPUT: usize = 10 * 1024;

/// `runc exec` of `cmd` in container `id`, killed (and an error) once it outlasts `timeout`.
pub fn exec_sync(
    runc: &Runc,
    id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<ExecResult, RuntimeError> {
    if cmd.is_empty() {
        return Err(RuntimeError("exec: no command".into()));
    }
    let pid_file = std::env::temp_dir().join(format!(
        "skiff-exec-{}-{}.pid",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    ));
    let mut args = vec!["exec", "--pid-file", pid_file.to_str().unwrap_or_default(), id];
    args.extend(cmd.iter().map(String::as_str));
    let mut child = runc
        .command(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RuntimeError(format!("running runc exec: {e}")))?;
    // Readers on their own threads, so a chatty command cannot block on a full pipe.
    let read = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.by_ref().take(MAX_OUTPUT as u64).read_to_end(&mut buf);
                let _ = std::io::copy(&mut r, &mut std::io::sink());
            }
            buf
        })
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let err = read(child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(RuntimeError(format!("waiting for runc exec: {e}"))),
        }
    };
    let Some(status) = status else {
        // Kill the command in the container (runc passes the signal on only for TERM and friends).
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&pid_file);
        return Err(RuntimeError(format!(
            "command {cmd:?} timed out after {}s",
            timeout.as_secs_f64()
        )));
    };
    let _ = std::fs::remove_file(&pid_file);
    let mut output = out.join().unwrap_or_default();
    output.extend(err.join().unwrap_or_default());
    output.truncate(MAX_OUTPUT);
    Ok(ExecResult {
        exit_code: status.code().unwrap_or(-1),
        output: String::from_utf8_lossy(&output).into_owned(),
    })
}

/// Stops container `id`: TERM, KILL after `grace_seconds`, then waits (a few seconds at most) for its
/// shim to write the exit code to `exit_file`, so the next status reports it exited.
pub fn stop_container(
    runc: &Runc,
    id: &str,
    grace_seconds: i64,
    exit_file: &Path,
) -> Result<(), RuntimeError> {
    let running = |runc: &Runc| matches!(runc.state(id), Ok(Some(s)) if s.status == "running");
    if !running(runc) {
        return Ok(());
    }
    let _ = runc.kill(id, "TERM", false);
    let deadline = Instant::now() + Duration::from_secs(grace_seconds.max(0) as u64);
    while running(runc) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if running(runc) {
        runc.kill(id, "KILL", true)?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !exit_file.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
