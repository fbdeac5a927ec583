//! `kubectl port-forward`: the kubelet's side of `portforward.k8s.io` over SPDY/3.1 (upstream's
//! pkg/kubelet/cri/streaming/portforward/httpstream.go). For every local connection the client
//! opens two streams with the same `requestID`: `streamType: error` and `streamType: data` for
//! `port`. Each is answered with SYN_REPLY; the data stream is piped to the port on the pod's
//! loopback (inside its network namespace, as CRI runtimes do), and what goes wrong is written on
//! the error stream before both are closed.

use std::{collections::HashMap, sync::Arc};

use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

use super::spdy::{self, Frame, HeaderCodec};

/// Starts the process that connects to a port in the pod: its stdin and stdout are the connection.
pub type Connector = Arc<dyn Fn(u16) -> std::io::Result<tokio::process::Child> + Send + Sync>;

/// What the writer sends: frames are encoded in order by one owner of the header compressor.
enum Out {
    Reply(u32),
    Data(u32, Bytes, bool),
    Ping(u32),
    Reset(u32),
}

/// The two streams of one forwarded connection, as they arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<(u32, u16)>,
}

/// Serves one port-forward session on `io` until the client goes away.
pub async fn serve(io: impl AsyncRead + AsyncWrite + Send + 'static, connect: Connector) {
    let (mut reader, mut writer) = tokio::io::split(io);
    let (out, mut out_rx) = mpsc::channel::<Out>(256);
    let writer_task = tokio::spawn(async move {
        let mut codec = HeaderCodec::default();
        while let Some(message) = out_rx.recv().await {
            let frame = match message {
                Out::Reply(id) => match spdy::syn_reply(&mut codec, id) {
                    Ok(frame) => frame,
                    Err(e) => {
                        tracing::debug!(error = %e, "port-forward: SYN_REPLY");
                        return;
                    }
                },
                Out::Data(id, payload, fin) => spdy::data(id, &payload, fin),
                Out::Ping(id) => spdy::ping(id),
                Out::Reset(id) => spdy::rst_stream(id, 5),
            };
            if writer.write_all(&frame).await.is_err() {
                return;
            }
        }
    });
    let mut codec = HeaderCodec::default();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    // Where the client's bytes for each data stream go (None: it sent FIN).
    let mut inputs: HashMap<u32, mpsc::Sender<Option<Bytes>>> = HashMap::new();
    loop {
        let frame = match spdy::read_frame(&mut reader, &mut codec).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward session ended");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let get = |name: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let _ = out.send(Out::Reply(stream_id)).await;
                let request = get("requestid");
                let pair = pairs.entry(request.clone()).or_default();
                match get("streamtype").as_str() {
                    "error" => pair.error = Some(stream_id),
                    "data" => match get("port").parse::<u16>() {
                        Ok(port) => pair.data = Some((stream_id, port)),
                        Err(_) => {
                            let _ = out.send(Out::Reset(stream_id)).await;
                            continue;
                        }
                    },
                    _ => {
                        let _ = out.send(Out::Reset(stream_id)).await;
                        continue;
                    }
                }
                if let Pair {
                    error: Some(error),
                    data: Some((data, port)),
                } = *pair
                {
                    pairs.remove(&request);
                    let (tx, rx) = mpsc::channel(64);
                    inputs.insert(data, tx);
                    tokio::spawn(forward(connect.clone(), port, data, error, rx, out.clone()));
                }
            }
            Frame::Data { stream_id, fin, data } => {
                if let Some(input) = inputs.get(&stream_id) {
                    if !data.is_empty() {
                        let _ = input.send(Some(Bytes::from(data))).await;
                    }
                    if fin {
                        let _ = input.send(None).await;
                        inputs.remove(&stream_id);
                    }
                }
            }
            Frame::RstStream { stream_id, .. } => {
                inputs.remove(&stream_id);
            }
            Frame::Ping(id) => {
                let _ = out.send(Out::Ping(id)).await;
            }
            Frame::GoAway => break,
            Frame::SynReply { .. } | Frame::Other => {}
        }
    }
    // Dropping the inputs ends every forward still running.
    drop(inputs);
    drop(out);
    let _ = writer_task.await;
}

/// One forwarded connection: the client's data stream to `port` in the pod and back.
async fn forward(
    connect: Connector,
    port: u16,
    data: u32,
    error: u32,
    mut input: mpsc::Receiver<Option<Bytes>>,
    out: mpsc::Sender<Out>,
) {
    let fail = |message: String| {
        let out = out.clone();
        async move {
            let _ = out.send(Out::Data(error, Bytes::from(message), true)).await;
            let _ = out.send(Out::Data(data, Bytes::new(), true)).await;
        }
    };
    let mut child = match connect(port) {
        Ok(child) => child,
        Err(e) => return fail(format!("error forwarding port {port} to pod: {e}")).await,
    };
    let (Some(mut to), Some(mut from)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.start_kill();
        return fail(format!("error forwarding port {port} to pod: no pipes")).await;
    };
    let mut stderr = child.stderr.take();
    let (closed, mut client_closed) = tokio::sync::oneshot::channel::<()>();
    let upstream = tokio::spawn(async move {
        // The client's bytes to the port; its FIN (or its going away) ends the connection.
        while let Some(Some(bytes)) = input.recv().await {
            if to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = closed.send(());
    });
    let mut buf = vec![0u8; 32 * 1024];
    // Once the client closed its side, the port has a moment to finish answering.
    let mut linger: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> =
        Box::pin(std::future::pending());
    let mut client_done = false;
    loop {
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            _ = &mut client_closed, if !client_done => {
                client_done = true;
                linger = Box::pin(tokio::time::sleep(std::time::Duration::from_secs(2)));
                continue;
            }
            () = &mut linger => break,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out
                    .send(Out::Data(data, Bytes::copy_from_slice(&buf[..n]), false))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    // The port closed its side (or never opened): say why if the connector did.
    let mut said = String::new();
    if let Some(err) = stderr.as_mut() {
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            err.read_to_string(&mut said),
        )
        .await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    upstream.abort();
    let said = said.trim();
    if !said.is_empty() {
        let message = format!("error forwarding port {port} to pod: {said}");
        let _ = out.send(Out::Data(error, Bytes::from(message), true)).await;
    } else {
        let _ = out.send(Out::Data(error, Bytes::new(), true)).await;
    }
    let _ = out.send(Out::Data(data, Bytes::new(), true)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A client's SYN_STREAM for `stream_id` with `headers`.
    fn syn_stream(codec: &mut HeaderCodec, stream_id: u32, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut body = stream_id.to_be_bytes().to_vec();
        body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        body.extend(codec.encode(headers).unwrap());
        let mut frame = vec![0x80, 3, 0, 1, 0];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        frame.extend(body);
        frame
    }

    /// Reads frames until `until` says stop (at most 5 s).
    async fn read_until(
        r: &mut (impl AsyncRead + Unpin),
        codec: &mut HeaderCodec,
        mut until: impl FnMut(&Frame) -> bool,
    ) -> Vec<Frame> {
        let mut frames = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(frame) = spdy::read_frame(r, codec).await.unwrap() {
                let stop = until(&frame);
                frames.push(frame);
                if stop {
                    break;
                }
            }
        })
        .await
        .expect("the frames come in time");
        frames
    }

    fn connector(script: &'static str) -> Connector {
        Arc::new(move |port: u16| {
            tokio::process::Command::new("sh")
                .args(["-c", script, "sh", &port.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
        })
    }

    #[tokio::test]
    async fn a_data_stream_is_piped_to_the_port_and_back() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        // The "port" echoes what it gets, after saying which port it is.
        let session = tokio::spawn(serve(server, connector("echo port=$1; exec cat")));
        let (mut r, mut w) = tokio::io::split(client);
        let (mut out, mut inp) = (HeaderCodec::default(), HeaderCodec::default());
        let error = syn_stream(
            &mut out,
            1,
            &[("streamtype", "error"), ("port", "80"), ("requestid", "0")],
        );
        let data = syn_stream(
            &mut out,
            3,
            &[("streamtype", "data"), ("port", "80"), ("requestid", "0")],
        );
        w.write_all(&error).await.unwrap();
        w.write_all(&data).await.unwrap();
        w.write_all(&spdy::data(3, b"hello\n", false)).await.unwrap();
        w.write_all(&spdy::ping(1)).await.unwrap();
        let mut got = Vec::new();
        let frames = read_until(&mut r, &mut inp, |f| {
            if let Frame::Data {
                stream_id: 3, data, ..
            } = f
            {
                got.extend_from_slice(data);
            }
            got.ends_with(b"hello\n")
        })
        .await;
        assert!(frames.contains(&Frame::SynReply {
            stream_id: 1,
            fin: false
        }));
        assert!(frames.contains(&Frame::SynReply {
            stream_id: 3,
            fin: false
        }));
        assert_eq!(String::from_utf8_lossy(&got), "port=80\nhello\n");
        // The client closes its side: the connection ends, both streams with it.
        w.write_all(&spdy::data(3, b"", true)).await.unwrap();
        let frames = read_until(&mut r, &mut inp, |f| {
            matches!(
                f,
                Frame::Data {
                    stream_id: 3,
                    fin: true,
                    ..
                }
            )
        })
        .await;
        assert!(
            frames.iter().any(|f| matches!(
                f,
                Frame::Data {
                    stream_id: 1,
                    fin: true,
                    ..
                }
            )),
            "{frames:?}"
        );
        drop(w);
        drop(r);
        tokio::time::timeout(Duration::from_secs(5), session)
            .await
            .expect("the session ends with its connection")
            .unwrap();
    }

    #[tokio::test]
    async fn a_port_that_refuses_says_so_on_the_error_stream() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let _session = tokio::spawn(serve(server, connector("echo connection refused >&2; exit 1")));
        let (mut r, mut w) = tokio::io::split(client);
        let (mut out, mut inp) = (HeaderCodec::default(), HeaderCodec::default());
        for (id, kind) in [(1, "error"), (3, "data")] {
            let frame = syn_stream(
                &mut out,
                id,
                &[("streamtype", kind), ("port", "9"), ("requestid", "7")],
            );
            w.write_all(&frame).await.unwrap();
        }
        let mut error = Vec::new();
        read_until(&mut r, &mut inp, |f| match f {
            Frame::Data {
                stream_id: 1,
                data,
                fin,
            } => {
                error.extend_from_slice(data);
                *fin
            }
            _ => false,
        })
        .await;
        assert_eq!(
            String::from_utf8_lossy(&error),
            "error forwarding port 9 to pod: connection refused"
        );
    }
}
