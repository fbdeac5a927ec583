//! gRPC probes: the standard health check `grpc.health.v1.Health/Check` over HTTP/2 without TLS, as
//! upstream's pkg/probe/grpc. Only `SERVING` passes.
//!
//! The request and response are one-field protobuf messages (`HealthCheckRequest{service=1}`,
//! `HealthCheckResponse{status=1}`), encoded here by hand rather than generated.

use std::{path::PathBuf, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::probes::{ProbeRun, USER_AGENT, connect};

/// `HealthCheckResponse.ServingStatus` names by number.
const STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// The gRPC message (length-prefixed, uncompressed) of a `HealthCheckRequest` for `service`.
pub fn request_frame(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        put_varint(&mut msg, service.len() as u64);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend(msg);
    frame
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut n = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        n |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((n, i + 1));
        }
    }
    None
}

/// The `status` of a `HealthCheckResponse` in gRPC framing (0, UNKNOWN, when absent).
pub fn response_status(body: &[u8]) -> Option<u64> {
    let len = u32::from_be_bytes(body.get(1..5)?.try_into().ok()?) as usize;
    let mut msg = body.get(5..5 + len)?;
    let mut status = 0;
    while !msg.is_empty() {
        let (key, used) = varint(msg)?;
        msg = &msg[used..];
        match key & 7 {
            0 => {
                let (v, used) = varint(msg)?;
                if key >> 3 == 1 {
                    status = v;
                }
                msg = &msg[used..];
            }
            2 => {
                let (l, used) = varint(msg)?;
                msg = msg.get(used + l as usize..)?;
            }
            _ => return None,
        }
    }
    Some(status)
}

/// Checks `service` at `host:port` within `timeout`, connecting from network namespace `netns`.
pub async fn check(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
    netns: Option<PathBuf>,
) -> ProbeRun {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(timeout, call(host, port, service, timeout, netns)).await {
        Ok(Ok(1)) => ProbeRun::Success,
        Ok(Ok(status)) => {
            let name = STATUSES.get(status as usize).copied().unwrap_or("UNKNOWN");
            ProbeRun::Failure(format!("service unhealthy (responded with {name:?})"))
        }
        Ok(Err(e)) => ProbeRun::Failure(format!("failed to check service {addr:?}: {e}")),
        Err(_) => ProbeRun::Failure(format!(
            "timeout: health rpc did not complete within {}s",
            timeout.as_secs()
        )),
    }
}

async fn call(
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
    netns: Option<PathBuf>,
) -> Result<u64, Box<dyn std::error::Error + Send + Sync>> {
    let h = host.to_owned();
    let stream = tokio::task::spawn_blocking(move || connect(&h, port, timeout, netns)).await??;
    stream.set_nonblocking(true)?;
    let stream = tokio::net::TcpStream::from_std(stream)?;
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    let driver = tokio::spawn(conn);
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let req = http::Request::post(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("user-agent", USER_AGENT)
        .body(Full::new(Bytes::from(request_frame(service))))?;
    let result = async {
        let resp = send.send_request(req).await?;
        let headers = resp.headers().clone();
        let collected = resp.into_body().collect().await?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let grpc_status = |name: &str| {
            trailers
                .get(name)
                .or_else(|| headers.get(name))
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        if let Some(code) = grpc_status("grpc-status").filter(|c| c != "0") {
            let message = grpc_status("grpc-message").unwrap_or_default();
            return Err(format!("rpc error: code = {code} desc = {message}").into());
        }
        response_status(&collected.to_bytes()).ok_or_else(|| "malformed health check response".into())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::StreamBody;
    use hyper::body::Frame;

    use super::*;

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(request_frame(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(request_frame("db"), vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']);
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(
            response_status(&[0, 0, 0, 0, 0]),
            Some(0),
            "an empty message is UNKNOWN"
        );
        assert_eq!(
            response_status(&[0, 0, 0, 0, 4, 0x12, 0, 0x08, 2]),
            Some(2),
            "unknown fields skipped"
        );
        assert_eq!(response_status(&[0, 0]), None);
    }

    /// A health server on loopback answering `status` (with the gRPC trailers).
    async fn serve(status: u8) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| async move {
                    assert_eq!(req.uri().path(), "/grpc.health.v1.Health/Check");
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                    let frames: Vec<Result<Frame<Bytes>, Infallible>> = vec![
                        Ok(Frame::data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let body = StreamBody::new(futures::stream::iter(frames));
                    Ok::<_, Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(body)
                            .unwrap(),
                    )
                });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        port
    }

    #[tokio::test]
    async fn health_checks_over_http2() {
        let t = Duration::from_secs(5);
        let serving = serve(1).await;
        assert_eq!(check("127.0.0.1", serving, "", t, None).await, ProbeRun::Success);
        let not_serving = serve(2).await;
        assert_eq!(
            check("127.0.0.1", not_serving, "db", t, None).await,
            ProbeRun::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            check("127.0.0.1", closed, "", t, None).await,
            ProbeRun::Failure(_)
        ));
    }
}
