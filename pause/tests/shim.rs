//! skiff-shim against stand-ins for runc: shells that start the "container" in the background, write
//! its pid and exit, as a detached `runc run --pid-file` does (or fail, as a runc that cannot start
//! the container does).

use std::{path::PathBuf, process::Command};

/// Runs the shim with `sh -c script` in runc's place in a fresh directory; that directory.
fn shim(name: &str, script: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skiff-shim-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let script = script.replace("PIDFILE", &path("pid"));
    let status = Command::new(env!("CARGO_BIN_EXE_skiff-shim"))
        .args([path("exit"), path("log"), path("started"), "/bin/sh".into()])
        .args(["-c", &script, "--pid-file", &path("pid")])
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

fn read(dir: &std::path::Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// The log's entries without their times.
fn entries(dir: &std::path::Path) -> Vec<String> {
    read(dir, "log")
        .lines()
        .map(|l| l.split_once(' ').unwrap().1.to_owned())
        .collect()
}

#[test]
fn the_orphaned_container_is_reaped_and_its_output_logged() {
    let dir = shim(
        "exit",
        "(sleep 0.2; echo out; printf 'no newline' >&2; exit 7) & echo $! > PIDFILE; echo started",
    );
    assert_eq!(read(&dir, "exit"), "7");
    assert_eq!(read(&dir, "started"), read(&dir, "pid").trim());
    let mut log = entries(&dir);
    log.sort();
    assert_eq!(log, ["stderr F no newline", "stdout F out", "stdout F started"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_signal_is_128_plus_its_number() {
    let dir = shim(
        "signal",
        "(sleep 0.2; kill -KILL $(cat PIDFILE)) & sleep 30 & echo $! > PIDFILE",
    );
    assert_eq!(read(&dir, "exit"), "137");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failed_start_leaves_runcs_code_and_complaint() {
    let dir = shim("fail", "echo 'container_linux.go: no such file' >&2; exit 1");
    assert_eq!(
        (read(&dir, "exit"), read(&dir, "started")),
        ("1".into(), String::new())
    );
    assert_eq!(entries(&dir), ["stderr F container_linux.go: no such file"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn what_is_left_behind_is_still_logged_after_the_exit() {
    // The "container" exits at once; a process it started keeps the pipes and writes later.
    let dir = shim(
        "left",
        "(echo first; (sleep 0.5; echo later) & exit 3) & echo $! > PIDFILE",
    );
    assert_eq!(read(&dir, "exit"), "3");
    assert_eq!(entries(&dir), ["stdout F first", "stdout F later"]);
    // The exit was recorded before the late line was written.
    let exited = std::fs::metadata(dir.join("exit")).unwrap().modified().unwrap();
    let logged = std::fs::metadata(dir.join("log")).unwrap().modified().unwrap();
    assert!(logged.duration_since(exited).unwrap() >= std::time::Duration::from_millis(300));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn long_lines_go_in_pieces() {
    let dir = shim(
        "long",
        "(head -c 40000 /dev/zero | tr '\\0' x; echo) & echo $! > PIDFILE",
    );
    let log = entries(&dir);
    let tags: Vec<&str> = log.iter().map(|e| &e[7..8]).collect();
    assert_eq!(tags, ["P", "P", "F"]);
    let text: usize = log.iter().map(|e| e.len() - 9).sum();
    assert_eq!(text, 40000);
    std::fs::remove_dir_all(&dir).unwrap();
}
