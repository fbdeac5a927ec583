//! Bad start-up input: each gives a one-line error naming the problem and a non-zero exit, never a
//! panic (corrupt or unwritable data dir, unreachable etcd, malformed endpoint, port in use, a second
//! server on the same data dir).

use std::{
    process::{Command, Output},
    time::{Duration, Instant},
};

use skiff_tests::{Server, free_port, skiff_bin};

/// Runs `skiff server` with `args` (with logs silenced, so stderr holds only the error).
fn run_server(data_dir: &std::path::Path, args: &[&str]) -> Output {
    let start = Instant::now();
    let out = Command::new(skiff_bin())
        .arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind-address", "127.0.0.1", "--disable-agent"])
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .expect("run skiff");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "failed fast ({:?})",
        start.elapsed()
    );
    out
}

/// The one line of error, after checking exit status and absence of a panic.
fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "must fail; stderr: {stderr}");
    assert_ne!(
        out.status.code(),
        Some(101),
        "a panic is not an error message: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("skiff: "), "{stderr}");
    lines[0].to_owned()
}

fn port_args(port: u16) -> [String; 2] {
    ["--https-listen-port".into(), port.to_string()]
}

#[test]
fn corrupt_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("server/db")).expect("mkdir");
    std::fs::write(dir.path().join("server/db/state.db"), vec![7u8; 16384]).expect("garbage");
    let port = port_args(free_port());
    let line = one_line_error(&run_server(dir.path(), &[&port[0], &port[1]]));
    assert!(
        line.contains("state.db") && line.contains("not a database"),
        "{line}"
    );
}

#[test]
fn unwritable_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").expect("write");
    let port = port_args(free_port());
    let line = one_line_error(&run_server(&file, &[&port[0], &port[1]]));
    assert!(
        line.contains("cannot create data dir") && line.contains("not-a-dir"),
        "{line}"
    );
}

#[test]
fn unreachable_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let port = port_args(free_port());
    let line = one_line_error(&run_server(
        dir.path(),
        &["--datastore-endpoint", &endpoint, &port[0], &port[1]],
    ));
    assert!(line.contains(&endpoint) && line.contains("etcd"), "{line}");
}

#[test]
fn malformed_endpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    for bad in [
        "ftp://127.0.0.1:2379",
        "http://",
        "127.0.0.1:2379,",
        "http://127.0.0.1:notaport",
    ] {
        let port = port_args(free_port());
        let line = one_line_error(&run_server(
            dir.path(),
            &["--datastore-endpoint", bad, &port[0], &port[1]],
        ));
        assert!(line.contains("--datastore-endpoint"), "{bad}: {line}");
    }
}

#[test]
fn port_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = port_args(taken.local_addr().expect("addr").port());
    let line = one_line_error(&run_server(dir.path(), &[&port[0], &port[1]]));
    assert!(
        line.contains("cannot listen on 127.0.0.1:") && line.contains("in use"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_server_on_the_same_data_dir() {
    let server = Server::start(&[]).await.expect("start server");
    let port = port_args(free_port());
    let line = one_line_error(&run_server(server.data_dir.path(), &[&port[0], &port[1]]));
    assert!(
        line.contains("state.db") && line.contains("in use by another process"),
        "{line}"
    );
}
