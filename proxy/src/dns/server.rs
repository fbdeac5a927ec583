//! The DNS listeners: UDP and TCP (RFC 1035 §4.2, RFC 7766) on the same address.
//!
//! A query whose answer comes from the snapshot is answered inline by the task that read it; one
//! that must wait for an upstream (forwarding, an ExternalName target outside the cluster) gets its
//! own task so the listener keeps reading. Over UDP an answer larger than the client's limit (512
//! bytes, or its EDNS payload size) is replaced by an empty one with the TC bit set, so the client
//! asks again over TCP (RFC 2181 §9, what hickory's `Message::truncate` does).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::watch,
};

use super::{
    answer::{Outcome, Responder},
    forward::Forwarder,
    snapshot::Snapshot,
};

/// How long a TCP connection may stay idle between queries (CoreDNS's default read timeout).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Everything a listener needs to answer.
#[derive(Debug)]
pub struct Shared {
    /// Answers from the snapshot.
    pub responder: Responder,
    /// The latest snapshot.
    pub snapshot: watch::Receiver<Arc<Snapshot>>,
    /// Forwards the rest.
    pub forwarder: Forwarder,
}

/// Where a query goes after the snapshot has been consulted.
enum Step {
    /// Answered: encode and send (over UDP, within the client's size limit).
    Send(Message, usize),
    /// Needs an upstream.
    Later(Box<Message>, Outcome),
    /// Not a query: drop it.
    Ignore,
}

impl Shared {
    /// Decodes `bytes` and answers what the snapshot can.
    fn decide(&self, bytes: &[u8]) -> Step {
        let req = match Message::from_vec(bytes) {
            Ok(req) => req,
            Err(_) if bytes.len() >= 12 && bytes[2] & 0x80 == 0 => {
                // A query we cannot parse: FORMERR with its id (RFC 1035 §4.1.1).
                let mut m = Message::response(u16::from_be_bytes([bytes[0], bytes[1]]), OpCode::Query);
                m.metadata.response_code = ResponseCode::FormErr;
                return Step::Send(m, 512);
            }
            Err(_) => return Step::Ignore,
        };
        if req.metadata.message_type != MessageType::Query {
            return Step::Ignore;
        }
        let outcome = {
            let snap = self.snapshot.borrow();
            self.responder.answer(&snap, &req)
        };
        let limit = req.max_payload() as usize;
        match outcome {
            Outcome::Reply(m) => Step::Send(m, limit),
            Outcome::Forward if !self.forwarder.has_upstreams() => {
                // Nowhere to forward: REFUSED, as CoreDNS answers a name no server block serves.
                Step::Send(self.responder.error(&req, ResponseCode::Refused), limit)
            }
            later => Step::Later(Box::new(req), later),
        }
    }

    /// Finishes a query that needs an upstream.
    async fn finish(&self, req: &Message, outcome: Outcome) -> Message {
        match outcome {
            Outcome::Reply(m) => m,
            Outcome::Chase {
                mut reply,
                target,
                qtype,
            } => {
                if let Some(upstream) = self.forwarder.lookup(target, qtype).await {
                    reply.answers.extend(upstream.answers);
                }
                reply
            }
            Outcome::Forward => match self.forwarder.forward(req).await {
                Some(m) => m,
                None => self.responder.error(req, ResponseCode::ServFail),
            },
        }
    }
}

/// `m` on the wire, truncated to `limit` bytes if one is given (UDP).
fn encode(m: &Message, limit: Option<usize>) -> Option<Vec<u8>> {
    let bytes = m.to_vec().ok()?;
    match limit {
        Some(limit) if bytes.len() > limit => m.truncate().to_vec().ok(),
        _ => Some(bytes),
    }
}

/// Serves UDP on `socket` until the task is aborted.
pub async fn serve_udp(shared: Arc<Shared>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; they are not fatal.
                tracing::debug!(error = %e, "DNS UDP receive");
                continue;
            }
        };
        let bytes = &buf[..n];
        match shared.decide(bytes) {
            Step::Send(m, limit) => {
                if let Some(out) = encode(&m, Some(limit)) {
                    let _ = socket.send_to(&out, peer).await;
                }
            }
            Step::Later(req, outcome) => {
                let (shared, socket) = (shared.clone(), socket.clone());
                tokio::spawn(async move {
                    let m = shared.finish(&req, outcome).await;
                    let limit = req.max_payload() as usize;
                    if let Some(out) = encode(&m, Some(limit)) {
                        let _ = socket.send_to(&out, peer).await;
                    }
                });
            }
            Step::Ignore => {}
        }
    }
}

/// Accepts TCP connections on `listener` until the task is aborted.
pub async fn serve_tcp(shared: Arc<Shared>, listener: TcpListener) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_conn(shared.clone(), stream));
                }
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// One TCP connection: length-prefixed queries answered in order, closed when idle.
async fn serve_conn(shared: Arc<Shared>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    loop {
        let len = match tokio::time::timeout(TCP_IDLE, stream.read_u16()).await {
            Ok(Ok(len)) => len as usize,
            _ => return,
        };
        let mut bytes = vec![0u8; len];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut bytes)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let m = match shared.decide(&bytes) {
            Step::Send(m, _) => m,
            Step::Later(req, outcome) => shared.finish(&req, outcome).await,
            Step::Ignore => continue,
        };
        let Some(out) = encode(&m, None) else {
            continue;
        };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&(out.len() as u16).to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).await.is_err() {
            return;
        }
    }
}

/// Binds UDP and TCP on `addr` (with port 0, each gets its own port).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(Arc<UdpSocket>, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let tcp = TcpListener::bind(addr).await?;
    Ok((Arc::new(udp), tcp))
}
