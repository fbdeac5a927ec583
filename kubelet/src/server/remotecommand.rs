//! exec and attach over WebSocket, the kubelet's side of the `v4.channel.k8s.io` and
//! `v5.channel.k8s.io` protocols (upstream's pkg/kubelet/cri/streaming/remotecommand and
//! apimachinery's wsstream): every binary message is one channel byte and its payload.
//!
//! | channel | direction | what |
//! |---|---|---|
//! | 0 | in | stdin |
//! | 1, 2 | out | stdout, stderr (no stderr with a tty: the terminal merges them) |
//! | 3 | out | one `metav1.Status` when the command ends: Success, or Failure with reason `NonZeroExitCode` and the code as the `ExitCode` cause |
//! | 4 | in | terminal size, `{"Width":…,"Height":…}` |
//! | 255 | in | v5 only: `[255, n]` closes stream n (kubectl closes stdin at its EOF) |
//!
//! exec runs `runc exec` in the foreground (through [`ContainerStreams::exec_command`]), so its exit
//! code is the command's: with pipes for stdio, or with a pseudoterminal of ours (see `exec_tty`).
//! attach follows what the container writes to its log from now on, split by stream.

use std::{
    io::{Read, Seek, SeekFrom, Write},
    os::unix::{ffi::OsStrExt, fs::OpenOptionsExt},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    sync::mpsc,
};

use super::{ContainerRef, ContainerStreams, logs::parse_bool};

/// The v5 protocol (adds [`CLOSE`]).
pub const V5: &str = "v5.channel.k8s.io";
/// The v4 protocol.
pub const V4: &str = "v4.channel.k8s.io";
/// Channel: the command's stdin.
pub const STDIN: u8 = 0;
/// Channel: its stdout.
pub const STDOUT: u8 = 1;
/// Channel: its stderr.
pub const STDERR: u8 = 2;
/// Channel: the final status.
pub const ERROR: u8 = 3;
/// Channel: terminal resizes.
pub const RESIZE: u8 = 4;
/// v5: closes the stream its payload names.
pub const CLOSE: u8 = 255;

/// How long output may keep coming after the command ended (a background process holding the pipe
/// must not hold the session open).
const DRAIN: Duration = Duration::from_secs(2);

/// What the client asked for (upstream's remotecommand `Options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// `command` (repeated), exec only.
    pub command: Vec<String>,
    /// `stdin`.
    pub stdin: bool,
    /// `stdout`.
    pub stdout: bool,
    /// `stderr` (always false with a tty).
    pub stderr: bool,
    /// `tty`.
    pub tty: bool,
}

impl StreamOptions {
    /// Reads the query of an exec (or, `attach`, an attach) request, with upstream's checks.
    pub fn parse(pairs: &[(String, String)], attach: bool) -> Result<Self, String> {
        let mut opts = StreamOptions::default();
        for (key, value) in pairs {
            let flag = || parse_bool(key, value).map_err(|e| e.0);
            match key.as_str() {
                "command" => opts.command.push(value.clone()),
                "stdin" => opts.stdin = flag()?,
                "stdout" => opts.stdout = flag()?,
                "stderr" => opts.stderr = flag()?,
                "tty" => opts.tty = flag()?,
                _ => {}
            }
        }
        // Upstream bypasses stderr with a tty rather than failing.
        opts.stderr &= !opts.tty;
        if !opts.stdin && !opts.stdout && !opts.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        if !attach && opts.command.is_empty() {
            return Err("you must specify at least one command for the container".into());
        }
        Ok(opts)
    }
}

/// One message of `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(Bytes::from(bytes))
}

/// The status sent on [`ERROR`] for a command that ended with `code` (None: it could not run, with
/// `error` saying why).
pub fn exit_status(command: &[String], code: Option<i32>, error: Option<&str>) -> Value {
    match (code, error) {
        (Some(0), _) => json!({ "metadata": {}, "status": "Success" }),
        (Some(code), _) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": { "causes": [{ "reason": "ExitCode", "message": code.to_string() }] },
        }),
        (None, message) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "Internal error occurred: error executing command in container: {}",
                message.unwrap_or("unknown error")
            ),
            "reason": "InternalError",
            "code": 500,
            "details": { "causes": [{ "message": message.unwrap_or("unknown error") }] },
        }),
    }
}

/// What the client sends, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes for stdin.
    Stdin(Bytes),
    /// stdin is closed (v5's CLOSE of stream 0).
    CloseStdin,
    /// The terminal's new size (columns, rows).
    Resize(u16, u16),
    /// Anything else (ignored).
    Other,
}

/// Decodes one binary message from the client.
pub fn decode_input(data: &[u8], v5: bool) -> Input {
    match data.split_first() {
        Some((&STDIN, rest)) => Input::Stdin(Bytes::copy_from_slice(rest)),
        Some((&RESIZE, rest)) => {
            let size: Value = serde_json::from_slice(rest).unwrap_or_default();
            let dim = |k: &str| size[k].as_u64().unwrap_or(0).min(u16::MAX as u64) as u16;
            Input::Resize(dim("Width"), dim("Height"))
        }
        Some((&CLOSE, [stream, ..])) if v5 && *stream == STDIN => Input::CloseStdin,
        _ => Input::Other,
    }
}

/// One exec or attach session on an upgraded connection.
pub struct Session {
    socket: WebSocket,
    v5: bool,
    opts: StreamOptions,
}

/// The two halves of a session once it runs: messages out, client input in.
struct Wired {
    out: mpsc::Sender<Message>,
    stdin: mpsc::Receiver<Option<Bytes>>,
    resize: mpsc::Receiver<(u16, u16)>,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
}

impl Session {
    /// A session of `opts` on `socket` (`v5`: the v5 protocol was chosen).
    pub fn new(socket: WebSocket, v5: bool, opts: StreamOptions) -> Self {
        Self { socket, v5, opts }
    }

    fn wire(self) -> (Wired, StreamOptions) {
        let (mut sink, mut source) = self.socket.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(64);
        let writer = tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                let last = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || last {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let (stdin_tx, stdin) = mpsc::channel::<Option<Bytes>>(64);
        let (resize_tx, resize) = mpsc::channel::<(u16, u16)>(8);
        let v5 = self.v5;
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = source.next().await {
                let data = match message {
                    Message::Binary(data) => data,
                    Message::Close(_) => break,
                    _ => continue,
                };
                match decode_input(&data, v5) {
                    // An error: nobody reads stdin (not asked for, or the command ended).
                    Input::Stdin(bytes) => {
                        let _ = stdin_tx.send(Some(bytes)).await;
                    }
                    Input::CloseStdin => {
                        let _ = stdin_tx.send(None).await;
                    }
                    Input::Resize(w, h) => {
                        let _ = resize_tx.try_send((w, h));
                    }
                    Input::Other => {}
                }
            }
        });
        (
            Wired {
                out,
                stdin,
                resize,
                writer,
                reader,
            },
            self.opts,
        )
    }

    /// Runs `opts.command` in `container` and reports how it ended.
    pub async fn exec(self, streams: Arc<dyn ContainerStreams>, container: ContainerRef) {
        let (wired, opts) = self.wire();
        let out = wired.out.clone();
        let (code, error) = if opts.tty {
            exec_tty(&streams, &container, &opts, wired.stdin, wired.resize, &out).await
        } else {
            exec_pipes(&streams, &container, &opts, wired.stdin, &out).await
        };
        let status = exit_status(&opts.command, code, error.as_deref());
        finish(out, status, wired.writer, wired.reader).await;
    }

    /// Streams what `container` writes from now on until it ends or the client leaves.
    pub async fn attach(self, streams: Arc<dyn ContainerStreams>, container: ContainerRef) {
        let (wired, opts) = self.wire();
        // The container's own stdin is not reachable (its shim does not keep it open).
        drop(wired.stdin);
        let out = wired.out.clone();
        let log = container.log.clone();
        let running: Box<dyn Fn() -> bool + Send> = {
            let streams = streams.clone();
            Box::new(move || streams.running(&container))
        };
        let follower_out = out.clone();
        let follow = tokio::task::spawn_blocking(move || follow_streams(&log, &opts, running, follower_out));
        // The client leaving ends the session too.
        let mut reader = wired.reader;
        tokio::select! {
            _ = follow => {}
            _ = &mut reader => {}
        }
        let status = json!({ "metadata": {}, "status": "Success" });
        finish(out, status, wired.writer, reader).await;
    }
}

/// Sends the status and the close, then lets the writer finish.
async fn finish(
    out: mpsc::Sender<Message>,
    status: Value,
    writer: tokio::task::JoinHandle<()>,
    reader: tokio::task::JoinHandle<()>,
) {
    let _ = out.send(frame(ERROR, status.to_string().as_bytes())).await;
    let _ = out
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    reader.abort();
}

/// Copies `from` to `channel` until its end.
async fn pump(mut from: impl AsyncRead + Unpin, channel: u8, out: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(frame(channel, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The exit code of a finished process as a shell reports it (128 + signal when killed).
fn code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

async fn exec_pipes(
    streams: &Arc<dyn ContainerStreams>,
    container: &ContainerRef,
    opts: &StreamOptions,
    mut stdin: mpsc::Receiver<Option<Bytes>>,
    out: &mpsc::Sender<Message>,
) -> (Option<i32>, Option<String>) {
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut command = tokio::process::Command::from(streams.exec_command(container, &opts.command, false));
    command
        .stdin(piped(opts.stdin))
        .stdout(piped(opts.stdout))
        .stderr(piped(opts.stderr));
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return (None, Some(format!("starting runc exec: {e}"))),
    };
    match child.stdin.take() {
        Some(mut to) => {
            tokio::spawn(async move {
                while let Some(Some(data)) = stdin.recv().await {
                    if to.write_all(&data).await.is_err() {
                        break;
                    }
                }
                // Dropping it closes the command's stdin (its EOF).
            });
        }
        // Nothing will read what a client sends anyway.
        None => drop(stdin),
    }
    let mut pumps = Vec::new();
    if let Some(from) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(from, STDOUT, out.clone())));
    }
    if let Some(from) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(from, STDERR, out.clone())));
    }
    let status = child.wait().await;
    for p in pumps {
        let _ = tokio::time::timeout(DRAIN, p).await;
    }
    match status {
        Ok(status) => (Some(code_of(status)), None),
        Err(e) => (None, Some(format!("waiting for runc exec: {e}"))),
    }
}

/// A pseudoterminal: the master, and the path of its slave.
fn open_pty() -> std::io::Result<(std::fs::File, PathBuf)> {
    use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.as_bytes()));
    Ok((std::fs::File::from(master), path))
}

fn set_size(master: &std::fs::File, (width, height): (u16, u16)) {
    let size = rustix::termios::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    if let Err(e) = rustix::termios::tcsetwinsize(master, size) {
        tracing::debug!(error = %e, "resizing an exec terminal");
    }
}

/// exec with a terminal. runc 1.1 hands a terminal's master over a console socket only when it
/// detaches (and then nobody can wait for the command), so runc runs in the foreground with
/// `--tty`: it makes the container's terminal and copies between it and its own stdio, which is a
/// pseudoterminal of ours. runc resizes the container's terminal to ours when it starts and on
/// SIGWINCH, which it is sent after each resize (it is not in our terminal's session, so the kernel
/// does not send it).
async fn exec_tty(
    streams: &Arc<dyn ContainerStreams>,
    container: &ContainerRef,
    opts: &StreamOptions,
    mut stdin: mpsc::Receiver<Option<Bytes>>,
    mut resize: mpsc::Receiver<(u16, u16)>,
    out: &mpsc::Sender<Message>,
) -> (Option<i32>, Option<String>) {
    let (master, slave_path) = match open_pty() {
        Ok(pty) => pty,
        Err(e) => return (None, Some(format!("opening a pseudoterminal: {e}"))),
    };
    // kubectl sends the terminal's size first thing: start with it, so the command sees it at once.
    if let Ok(Some(size)) = tokio::time::timeout(Duration::from_millis(200), resize.recv()).await {
        set_size(&master, size);
    }
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(&slave_path);
    let stdio = slave.and_then(|s| Ok((s.try_clone()?, s.try_clone()?, s)));
    let (a, b, c) = match stdio {
        Ok(files) => files,
        Err(e) => return (None, Some(format!("opening {}: {e}", slave_path.display()))),
    };
    let mut command = tokio::process::Command::from(streams.exec_command(container, &opts.command, true));
    command.stdin(a).stdout(b).stderr(c);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return (None, Some(format!("starting runc exec: {e}"))),
    };
    // Our copies of the slave went into the command and are closed here, so the master reads EIO
    // once runc is gone.
    drop(command);
    let runc_pid = child.id();
    let clone = |f: &std::fs::File| f.try_clone();
    let (Ok(mut reader), Ok(mut writer)) = (clone(&master), clone(&master)) else {
        let _ = child.start_kill();
        return (None, Some("duplicating the terminal".into()));
    };
    let resizer = tokio::spawn(async move {
        while let Some(size) = resize.recv().await {
            set_size(&master, size);
            if let Some(pid) = runc_pid {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGWINCH,
                );
            }
        }
    });
    // Set once runc is reaped: its pid may then be someone else's.
    let exited = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reaped = exited.clone();
    std::thread::spawn(move || {
        loop {
            match stdin.blocking_recv() {
                Some(Some(data)) => {
                    if writer.write_all(&data).is_err() {
                        return;
                    }
                }
                // The client's end of the terminal closed: an end of input (^D).
                Some(None) => {
                    let _ = writer.write_all(&[4]);
                }
                // The client is gone: hang up, as a terminal whose line dropped does (runc passes
                // the signal on to the command), rather than leave a shell waiting for input.
                None => {
                    if let Some(pid) = runc_pid
                        && !reaped.load(std::sync::atomic::Ordering::SeqCst)
                    {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid as i32),
                            nix::sys::signal::Signal::SIGHUP,
                        );
                    }
                    return;
                }
            }
        }
    });
    let output = {
        let out = out.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; 32 * 1024];
            // EIO once the last holder of the slave (runc) is gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || out.blocking_send(frame(STDOUT, &buf[..n])).is_err() {
                    break;
                }
            }
        })
    };
    let status = child.wait().await;
    exited.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = tokio::time::timeout(DRAIN, output).await;
    resizer.abort();
    match status {
        Ok(status) => (Some(code_of(status)), None),
        Err(e) => (None, Some(format!("waiting for runc exec: {e}"))),
    }
}

/// attach's output: the entries the container writes to `log` from now on, each on its stream's
/// channel (all on stdout with a tty), until it stops running or the client is gone.
fn follow_streams(
    log: &Path,
    opts: &StreamOptions,
    running: Box<dyn Fn() -> bool + Send>,
    out: mpsc::Sender<Message>,
) {
    let Ok(mut file) = std::fs::File::open(log) else {
        return;
    };
    if file.seek(SeekFrom::End(0)).is_err() {
        return;
    }
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut idle = 0;
    loop {
        let n = file.read(&mut buf).unwrap_or(0);
        if n == 0 {
            if out.is_closed() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
            idle += 1;
            if idle % 5 == 0 && !running() {
                return;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let Some(entry) = crate::logs::parse_line(&line) else {
                continue;
            };
            let channel = if entry.stream == "stderr" && !opts.tty {
                STDERR
            } else {
                STDOUT
            };
            if (channel == STDOUT && !opts.stdout) || (channel == STDERR && !opts.stderr) {
                continue;
            }
            let mut data = entry.content.as_bytes().to_vec();
            if !entry.partial {
                data.push(b'\n');
            }
            if out.blocking_send(frame(channel, &data)).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_follow_upstreams_rules() {
        let o = StreamOptions::parse(
            &pairs(&[
                ("command", "sh"),
                ("command", "-c"),
                ("command", "exit 3"),
                ("stdout", "true"),
                ("stderr", "1"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        let tty = StreamOptions::parse(
            &pairs(&[
                ("command", "sh"),
                ("stdin", "true"),
                ("stderr", "true"),
                ("tty", "true"),
            ]),
            false,
        )
        .unwrap();
        assert!(tty.tty && !tty.stderr, "no stderr with a tty");
        assert_eq!(
            StreamOptions::parse(&pairs(&[("command", "sh")]), false).unwrap_err(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(StreamOptions::parse(&pairs(&[("stdout", "true")]), false).is_err());
        assert!(StreamOptions::parse(&pairs(&[("stdout", "true")]), true).is_ok());
    }

    #[test]
    fn frames_carry_their_channel_first() {
        let Message::Binary(data) = frame(STDERR, b"oops") else {
            panic!("binary")
        };
        assert_eq!(&data[..], b"\x02oops");
        assert_eq!(
            decode_input(b"\x00hi", true),
            Input::Stdin(Bytes::from_static(b"hi"))
        );
        assert_eq!(
            decode_input(br#"{"Width":120,"Height":40}"#.as_slice(), true),
            Input::Other,
            "no channel byte"
        );
        assert_eq!(
            decode_input(b"\x04{\"Width\":120,\"Height\":40}", true),
            Input::Resize(120, 40)
        );
        assert_eq!(decode_input(&[CLOSE, STDIN], true), Input::CloseStdin);
        assert_eq!(
            decode_input(&[CLOSE, STDIN], false),
            Input::Other,
            "v4 has no close"
        );
    }

    #[test]
    fn exit_codes_become_upstreams_status() {
        let cmd = ["sh".to_owned(), "-c".to_owned(), "exit 3".to_owned()];
        assert_eq!(exit_status(&cmd, Some(0), None)["status"], "Success");
        let failed = exit_status(&cmd, Some(3), None);
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(
            failed["details"]["causes"][0],
            json!({ "reason": "ExitCode", "message": "3" })
        );
        assert_eq!(exit_status(&cmd, None, Some("boom"))["reason"], "InternalError");
    }
}
