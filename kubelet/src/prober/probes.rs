//! Running one probe: exec in the container, an HTTP GET or a TCP connect to the pod, as upstream's
//! pkg/probe/{exec,http,tcp}. Blocking (callers run it on a blocking thread).
//!
//! HTTP and TCP probes go from the node to the pod IP. When the node is a network namespace the
//! kubelet is not in (tests, nodes in namespaces), the connection is opened from a thread that
//! entered that namespace: a socket belongs to the namespace it was made in.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::PathBuf,
    time::Duration,
};

use super::results::Action;
use crate::runtime::ContainerRuntime;

/// What one probe run gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProbeRun {
    /// It passed.
    Success,
    /// It failed, with what it said.
    Failure(String),
    /// It could not be run; upstream throws such results away.
    Error(String),
}

/// Where a probe runs.
pub struct Target<'a> {
    /// The runtime (for exec).
    pub runtime: &'a dyn ContainerRuntime,
    /// The pod's UID.
    pub pod_uid: &'a str,
    /// The container's name.
    pub container: &'a str,
    /// The pod's IP (the default host of HTTP and TCP probes).
    pub pod_ip: &'a str,
}

/// The User-Agent of HTTP probes (upstream: `kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.36";

/// Runs `action` against `target` within `timeout`.
pub fn run(action: &Action, target: &Target<'_>, timeout: Duration) -> ProbeRun {
    match action {
        Action::Exec(cmd) => match target
            .runtime
            .exec_sync(target.pod_uid, target.container, cmd, timeout)
        {
            Ok(r) if r.exit_code == 0 => ProbeRun::Success,
            Ok(r) => ProbeRun::Failure(format!(
                "command {cmd:?} exited with {}: {}",
                r.exit_code,
                r.output.trim()
            )),
            // A command that outlasts its timeout fails (upstream since 1.20).
            Err(e) if e.0.contains("timed out") => ProbeRun::Failure(e.0),
            Err(e) => ProbeRun::Error(e.0),
        },
        Action::TcpSocket { host, port } => {
            let host = host.as_deref().unwrap_or(target.pod_ip);
            match connect(host, *port, timeout, target.runtime.node_netns()) {
                Ok(_) => ProbeRun::Success,
                Err(e) => ProbeRun::Failure(format!("dial tcp {host}:{port}: {e}")),
            }
        }
        Action::HttpGet {
            scheme,
            host,
            port,
            path,
            headers,
        } => {
            let tls = match scheme.as_str() {
                "HTTP" => false,
                "HTTPS" => true,
                other => return ProbeRun::Error(format!("unsupported scheme {other:?}")),
            };
            let host = host.as_deref().unwrap_or(target.pod_ip);
            let url = format!("{}://{host}:{port}{path}", scheme.to_ascii_lowercase());
            match http_get(
                host,
                *port,
                path,
                headers,
                tls,
                timeout,
                target.runtime.node_netns(),
            ) {
                Ok(code) if (200..400).contains(&code) => ProbeRun::Success,
                Ok(code) => ProbeRun::Failure(format!("HTTP probe failed with statuscode: {code}")),
                Err(e) => ProbeRun::Failure(format!("Get \"{url}\": {e}")),
            }
        }
        // Async (HTTP/2): the worker runs these itself (see super::grpc).
        Action::Grpc { .. } => ProbeRun::Error("gRPC probes run on the async path".into()),
        Action::Unsupported(why) => ProbeRun::Error(why.clone()),
    }
}

/// A TCP connection to `host:port` within `timeout`, made in network namespace `netns` if given.
pub fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
    netns: Option<PathBuf>,
) -> std::io::Result<TcpStream> {
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no address for {host}")))?;
    let Some(netns) = netns else {
        return TcpStream::connect_timeout(&addr, timeout);
    };
    // A thread of its own enters the namespace (and ends with it: the kubelet's threads stay put).
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&netns)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
        TcpStream::connect_timeout(&addr, timeout)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the probe thread panicked")))
}

/// The most redirects an HTTP probe follows (Go's client default, which upstream keeps).
const MAX_REDIRECTS: usize = 10;

/// An HTTP/1.1 GET of `path` from `host:port` (over TLS if `tls`, the certificate unchecked); the
/// final status code. Redirects to the same host are followed (up to 10); one to another host ends
/// the probe with the redirect's own code, as upstream's `RedirectChecker` does.
fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    tls: bool,
    timeout: Duration,
    netns: Option<PathBuf>,
) -> std::io::Result<u16> {
    let (mut port, mut path, mut tls) = (port, path.to_owned(), tls);
    for _ in 0..=MAX_REDIRECTS {
        let (code, location) = get_once(host, port, &path, headers, tls, timeout, netns.clone())?;
        let Some(next) = location.filter(|_| (300..400).contains(&code)) else {
            return Ok(code);
        };
        match redirect_target(&next, host, port, tls) {
            Some((h, p, new_path, new_tls)) if h == host => (port, path, tls) = (p, new_path, new_tls),
            // Another host (or a Location we cannot read): the redirect is the answer.
            _ => return Ok(code),
        }
    }
    Err(std::io::Error::other(format!(
        "stopped after {MAX_REDIRECTS} redirects"
    )))
}

/// Where a `Location` leads from `host:port`: (host, port, path, tls).
pub fn redirect_target(
    location: &str,
    host: &str,
    port: u16,
    tls: bool,
) -> Option<(String, u16, String, bool)> {
    if location.starts_with('/') {
        return Some((host.to_owned(), port, location.to_owned(), tls));
    }
    let (tls, rest) = if let Some(r) = location.strip_prefix("https://") {
        (true, r)
    } else {
        (false, location.strip_prefix("http://")?)
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let default = if tls { 443 } else { 80 };
    let (h, p) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (h, after) = bracketed.split_once(']')?;
        match after.strip_prefix(':') {
            Some(p) => (h, p.parse().ok()?),
            None => (h, default),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, default),
        }
    };
    Some((h.to_owned(), p, path, tls))
}

/// One GET: the status code and the `Location` header.
#[allow(clippy::too_many_arguments)]
fn get_once(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    tls: bool,
    timeout: Duration,
    netns: Option<PathBuf>,
) -> std::io::Result<(u16, Option<String>)> {
    let stream = connect(host, port, timeout, netns)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let req = request(host, port, path, headers);
    if !tls {
        return exchange(stream, &req);
    }
    let config = super::tls::probe_client_config().map_err(std::io::Error::other)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    exchange(rustls::StreamOwned::new(conn, stream), &req)
}

/// Sends `req` on `stream` and reads the response's status code and `Location` header.
fn exchange(mut stream: impl Read + Write, req: &str) -> std::io::Result<(u16, Option<String>)> {
    stream.write_all(req.as_bytes())?;
    // The head is all a probe needs.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let code = status_code(&buf)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response"))?;
    let head = String::from_utf8_lossy(&buf);
    let location = head.lines().skip(1).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("location")
            .then(|| value.trim().to_owned())
    });
    Ok((code, location))
}

/// The request upstream's prober sends: its headers, a Host of `host:port` unless given, and
/// `User-Agent: kube-probe/…` and `Accept: */*` unless given.
pub fn request(host: &str, port: u16, path: &str, headers: &[(String, String)]) -> String {
    let given = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut req = format!("GET {path} HTTP/1.1\r\n");
    if !given("Host") {
        req.push_str(&format!("Host: {host}:{port}\r\n"));
    }
    if !given("User-Agent") {
        req.push_str(&format!("User-Agent: {USER_AGENT}\r\n"));
    }
    if !given("Accept") {
        req.push_str("Accept: */*\r\n");
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n\r\n");
    req
}

/// The status code of an HTTP response's first line.
pub fn status_code(response: &[u8]) -> Option<u16> {
    let text = String::from_utf8_lossy(response);
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/"))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::runtime::FakeRuntime;

    #[test]
    fn requests_and_responses() {
        let r = request("10.0.0.1", 80, "/healthz", &[("X-Token".into(), "t".into())]);
        assert!(r.starts_with("GET /healthz HTTP/1.1\r\nHost: 10.0.0.1:80\r\nUser-Agent: kube-probe/"));
        assert!(r.contains("X-Token: t\r\n") && r.ends_with("\r\n\r\n"));
        let own = request("h", 1, "/", &[("Host".into(), "example".into())]);
        assert!(!own.contains("Host: h:1"));
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"garbage"), None);
    }

    fn serve_once(reply: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply.as_bytes());
            }
        });
        port
    }

    #[test]
    fn redirects_are_read_as_go_reads_them() {
        assert_eq!(
            redirect_target("/next", "10.0.0.1", 8080, false),
            Some(("10.0.0.1".into(), 8080, "/next".into(), false))
        );
        assert_eq!(
            redirect_target("https://10.0.0.1:8443/x", "10.0.0.1", 8080, false),
            Some(("10.0.0.1".into(), 8443, "/x".into(), true))
        );
        assert_eq!(
            redirect_target("http://example.com", "10.0.0.1", 8080, false),
            Some(("example.com".into(), 80, "/".into(), false))
        );
        assert_eq!(redirect_target("ftp://x", "h", 1, false), None);
        assert_eq!(
            redirect_target("http://[fd00::1]/", "fd00::1", 80, false),
            Some(("fd00::1".into(), 80, "/".into(), false))
        );
    }

    /// Serves `replies` in order, one connection each.
    fn serve(replies: Vec<String>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for reply in replies {
                if let Ok((mut s, _)) = listener.accept() {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(reply.as_bytes());
                }
            }
        });
        port
    }

    #[test]
    fn local_redirects_are_followed_and_others_pass() {
        let rt = FakeRuntime::new(250);
        let target = Target {
            runtime: &rt,
            pod_uid: "u",
            container: "c",
            pod_ip: "127.0.0.1",
        };
        let get = |port| Action::HttpGet {
            scheme: "HTTP".into(),
            host: None,
            port,
            path: "/".into(),
            headers: vec![],
        };
        let t = Duration::from_secs(2);
        let local = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /broken\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n".into(),
        ]);
        assert!(matches!(run(&get(local), &target, t), ProbeRun::Failure(m) if m.contains("500")));
        let away = serve(vec![
            "HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.example/\r\n\r\n".into(),
        ]);
        assert_eq!(
            run(&get(away), &target, t),
            ProbeRun::Success,
            "a non-local redirect passes"
        );
    }

    #[test]
    fn https_probes_do_not_check_the_certificate() {
        use std::sync::Arc;
        let key = rcgen::generate_simple_self_signed(vec!["pod.example".to_owned()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![key.cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into()),
            )
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((tcp, _)) = listener.accept() {
                let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf);
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        let rt = FakeRuntime::new(250);
        let target = Target {
            runtime: &rt,
            pod_uid: "u",
            container: "c",
            pod_ip: "127.0.0.1",
        };
        let get = Action::HttpGet {
            scheme: "HTTPS".into(),
            host: None,
            port,
            path: "/healthz".into(),
            headers: vec![],
        };
        assert_eq!(run(&get, &target, Duration::from_secs(5)), ProbeRun::Success);
    }

    #[test]
    fn http_and_tcp_probes_over_loopback() {
        let rt = FakeRuntime::new(250);
        let target = Target {
            runtime: &rt,
            pod_uid: "u",
            container: "c",
            pod_ip: "127.0.0.1",
        };
        let t = Duration::from_secs(2);
        let get = |port| Action::HttpGet {
            scheme: "HTTP".into(),
            host: None,
            port,
            path: "/".into(),
            headers: vec![],
        };
        assert_eq!(
            run(&get(serve_once("HTTP/1.1 302 Found\r\n\r\n")), &target, t),
            ProbeRun::Success
        );
        assert!(matches!(
            run(&get(serve_once("HTTP/1.1 500 Oops\r\n\r\n")), &target, t),
            ProbeRun::Failure(m) if m.contains("500")
        ));
        let port = serve_once("");
        assert_eq!(
            run(&Action::TcpSocket { host: None, port }, &target, t),
            ProbeRun::Success
        );
        // A port nothing listens on (the one just closed is likely free).
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            run(
                &Action::TcpSocket {
                    host: None,
                    port: closed
                },
                &target,
                t
            ),
            ProbeRun::Failure(_)
        ));
        assert!(matches!(
            run(&Action::Exec(vec!["true".into()]), &target, t),
            ProbeRun::Error(_)
        ));
    }
}
