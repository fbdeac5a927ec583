//! The per-container monitor, in the role of containerd-shim / conmon: it makes itself a child
//! subreaper, starts the container with a detached `runc run -d --pid-file <f>` (so no runc process
//! stays resident: runc exits once the container runs, and the container's init becomes the shim's
//! child), reaps that init itself to learn how it ended, writes the container's output to its log
//! file in the CRI log format, and writes the exit code to a file the kubelet reads. The kubelet
//! starts it in its own process group, so a kubelet that stops or restarts takes neither it nor the
//! container down, and the exit code and log are still there when a new kubelet looks.
//!
//! Usage: `skiff-shim <exit-file> <log-file> <started-file> <runc> <runc args>...`, the runc args
//! being a detached run with `--pid-file` (the shim reads the container's pid there).
//!
//! - runc gets the write ends of two pipes as its stdout and stderr; detached, it passes them
//!   straight to the container's init, so what the container (or runc, failing) writes arrives on
//!   the shim's read ends. Each line becomes `<RFC 3339 nano time> <stdout|stderr> F <line>` (a line
//!   longer than 16 KiB goes in `P` pieces, as containerd splits them): what the kubelet's log
//!   reader and `kubectl logs` expect from CRI runtimes.
//! - Once runc has exited successfully, the shim writes the container's pid to the started file: the
//!   kubelet waits for that file (or the exit file) instead of asking runc again and again.
//! - The exit file holds the code as decimal text: the init's exit code, or 128+N when signal N
//!   killed it (what a shell and runc report), or runc's own code when the start failed. It is
//!   written once the init is reaped and what it wrote is in the log, to a temporary name then
//!   renamed, so a reader never sees half of it.
//! - The shim then keeps copying until nobody holds the pipes any more (processes the container left
//!   behind may still write), reaping whatever else is handed to it, and exits.

use std::{
    collections::HashMap,
    fs::File,
    io::{ErrorKind, Read, Write},
    os::fd::AsFd,
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use nix::{
    errno::Errno,
    fcntl::{FcntlArg, OFlag, fcntl},
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        prctl,
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};

/// The longest log entry: a longer line is split into partial (`P`) entries, as containerd does.
const MAX_LINE: usize = 16 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [exit_file, log_file, started_file, runc, rest @ ..] = args.as_slice() else {
        usage();
    };
    let Some(pid_file) = pid_file_arg(rest) else {
        usage();
    };
    let log = match File::options().create(true).append(true).open(log_file) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skiff-shim: opening {log_file}: {e}");
            std::process::exit(1);
        }
    };
    let shim = Shim {
        exit_file,
        started_file,
        pid_file,
        log,
    };
    std::process::exit(shim.run(runc, rest));
}

fn usage() -> ! {
    eprintln!(
        "usage: skiff-shim <exit-file> <log-file> <started-file> <runc> <runc args with --pid-file>..."
    );
    std::process::exit(2);
}

/// The value of `--pid-file` in runc's arguments.
fn pid_file_arg(args: &[String]) -> Option<&str> {
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--pid-file") {
            Some("") => args.get(i + 1).map(String::as_str),
            Some(v) => v.strip_prefix('='),
            None => None,
        })
}

struct Shim<'a> {
    exit_file: &'a str,
    started_file: &'a str,
    pid_file: &'a str,
    log: File,
}

/// Where the container is.
#[derive(Clone, Copy)]
enum Init {
    /// runc still runs (it has not said which pid the container has).
    Starting(Pid),
    /// The container's init runs, as our child.
    Running(Pid),
    /// The exit file is written.
    Ended,
}

impl Shim<'_> {
    /// Runs `runc` with `args` and follows the container to its end; the shim's exit code.
    fn run(mut self, runc: &str, args: &[String]) -> i32 {
        // Orphans of our children (the container's init once runc exits) become ours, not init's.
        if let Err(e) = prctl::set_child_subreaper(true) {
            eprintln!("skiff-shim: becoming a child subreaper: {e}");
        }
        // SIGCHLD through a file descriptor, polled with the pipes (Command clears the mask in runc).
        let mut chld = SigSet::empty();
        chld.add(Signal::SIGCHLD);
        let sigfd = match chld
            .thread_block()
            .and_then(|()| SignalFd::with_flags(&chld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC))
        {
            Ok(fd) => fd,
            Err(e) => return self.fail(&format!("watching for SIGCHLD: {e}")),
        };
        let (pipes, writers) = match (std::io::pipe(), std::io::pipe()) {
            (Ok((out_r, out_w)), Ok((err_r, err_w))) => {
                ([(out_r, "stdout"), (err_r, "stderr")], (out_w, err_w))
            }
            (Err(e), _) | (_, Err(e)) => return self.fail(&format!("making pipes: {e}")),
        };
        let mut streams = pipes.map(|(reader, name)| Stream::new(reader, name));
        for s in &streams {
            if let Some(r) = &s.reader
                && let Err(e) = fcntl(r, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            {
                return self.fail(&format!("making a pipe non-blocking: {e}"));
            }
        }
        // Detached, runc hands these to the container's init; ours close when `writers` goes.
        let spawned = Command::new(runc)
            .args(args)
            .stdin(Stdio::null())
            .stdout(writers.0)
            .stderr(writers.1)
            .spawn();
        let runc_pid = match spawned {
            Ok(child) => Pid::from_raw(child.id() as i32),
            Err(e) => return self.fail(&format!("running {runc}: {e}")),
        };
        let mut init = Init::Starting(runc_pid);
        // Children reaped before runc said which one is the container.
        let mut early: HashMap<Pid, i32> = HashMap::new();
        loop {
            let open: Vec<usize> = (0..streams.len())
                .filter(|&i| streams[i].reader.is_some())
                .collect();
            if matches!(init, Init::Ended) && open.is_empty() {
                return 0;
            }
            let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
            for &i in &open {
                if let Some(r) = &streams[i].reader {
                    fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
                }
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("skiff-shim: poll: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
            drop(fds);
            for s in &mut streams {
                s.pump(&mut self.log);
            }
            while let Ok(Some(_)) = sigfd.read_signal() {}
            let reaped = reap_all();
            match init {
                Init::Starting(runc) => {
                    // The container's init may be reaped in the same round as runc, even before it.
                    early.extend(reaped);
                    if let Some(code) = early.remove(&runc) {
                        init = match code {
                            0 => self.started(),
                            // runc failed: its code, its complaint (on stderr) in the log.
                            _ => self.ended(code, &mut streams),
                        };
                        if let Init::Running(container) = init {
                            init = match early.remove(&container) {
                                Some(code) => self.ended(code, &mut streams),
                                None => match waitpid(container, Some(WaitPidFlag::WNOHANG)) {
                                    Err(Errno::ECHILD) => {
                                        eprintln!(
                                            "skiff-shim: container process {container} is not our child"
                                        );
                                        self.ended(-1, &mut streams)
                                    }
                                    status => match status.ok().and_then(exit_code) {
                                        Some((_, code)) => self.ended(code, &mut streams),
                                        None => init,
                                    },
                                },
                            };
                        }
                        early.clear();
                    }
                }
                Init::Running(container) => {
                    if let Some(&(_, code)) = reaped.iter().find(|(pid, _)| *pid == container) {
                        init = self.ended(code, &mut streams);
                    }
                }
                Init::Ended => {}
            }
        }
    }

    /// runc has started the container: its pid from the pid file, announced in the started file.
    fn started(&mut self) -> Init {
        let pid = std::fs::read_to_string(self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|&p| p > 0);
        let Some(pid) = pid else {
            // Not one to follow: its end will not be known (the kubelet finds it in runc's list).
            eprintln!("skiff-shim: no pid in {}", self.pid_file);
            return self.ended(-1, &mut []);
        };
        write_atomically(self.started_file, &pid.to_string());
        Init::Running(Pid::from_raw(pid))
    }

    /// The container ended with `code`: what it wrote so far goes to the log, then the exit file.
    fn ended(&mut self, code: i32, streams: &mut [Stream]) -> Init {
        for s in streams.iter_mut() {
            s.pump(&mut self.log);
        }
        if !write_atomically(self.exit_file, &code.to_string()) {
            std::process::exit(1);
        }
        Init::Ended
    }

    /// Could not even start runc: the reason to our stderr, -1 to the exit file.
    fn fail(&self, why: &str) -> i32 {
        eprintln!("skiff-shim: {why}");
        write_atomically(self.exit_file, "-1");
        1
    }
}

/// Every child that has ended, with its code, without blocking.
fn reap_all() -> Vec<(Pid, i32)> {
    let mut reaped = Vec::new();
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return reaped,
            Ok(status) => reaped.extend(exit_code(status)),
            Err(Errno::EINTR) => {}
            Err(e) => {
                eprintln!("skiff-shim: waitpid: {e}");
                return reaped;
            }
        }
    }
}

/// The process and code of an end: its exit code, or 128+N when signal N killed it.
fn exit_code(status: WaitStatus) -> Option<(Pid, i32)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid, code)),
        WaitStatus::Signaled(pid, signal, _) => Some((pid, 128 + signal as i32)),
        _ => None,
    }
}

/// `text` into `path` through a temporary name, so a reader sees all of it or nothing.
fn write_atomically(path: &str, text: &str) -> bool {
    let tmp = format!("{path}.tmp");
    match std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skiff-shim: writing {path}: {e}");
            false
        }
    }
}

/// One of the container's output streams: the read end of its pipe and the line being assembled.
struct Stream {
    reader: Option<std::io::PipeReader>,
    name: &'static str,
    pending: Vec<u8>,
}

impl Stream {
    fn new(reader: std::io::PipeReader, name: &'static str) -> Self {
        Self {
            reader: Some(reader),
            name,
            pending: Vec::new(),
        }
    }

    /// Reads what the pipe holds now (it does not block) into `log`, line by line; at the end of the
    /// stream the last, unterminated line too.
    fn pump(&mut self, log: &mut File) {
        let Some(reader) = &mut self.reader else {
            return;
        };
        let mut buf = [0u8; 8192];
        let eof = loop {
            match reader.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    emit_lines(&mut self.pending, self.name, log);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                Err(_) => break true,
            }
        };
        if eof {
            if !self.pending.is_empty() {
                let rest = std::mem::take(&mut self.pending);
                write_entry(log, self.name, "F", &rest);
            }
            self.reader = None;
        }
    }
}

/// Writes the complete lines of `pending` to `log` as `stream`'s (and pieces of a line too long to
/// wait for), keeping the rest.
fn emit_lines(pending: &mut Vec<u8>, stream: &str, log: &mut File) {
    let mut start = 0;
    while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
        write_entry(log, stream, "F", &pending[start..start + end]);
        start += end + 1;
    }
    while pending.len() - start >= MAX_LINE {
        write_entry(log, stream, "P", &pending[start..start + MAX_LINE]);
        start += MAX_LINE;
    }
    pending.drain(..start);
}

/// One CRI log entry: `<time> <stream> <F|P> <content>\n`.
fn write_entry(log: &mut File, stream: &str, tag: &str, content: &[u8]) {
    let mut entry = format!("{} {stream} {tag} ", now_rfc3339_nano()).into_bytes();
    entry.extend_from_slice(content);
    entry.push(b'\n');
    let _ = log.write_all(&entry);
}

/// The time as RFC 3339 with nanoseconds, UTC (`2026-11-22T14:04:35.836432397Z`).
fn now_rfc3339_nano() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_414), (2025, 11, 22));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let now = now_rfc3339_nano();
        assert_eq!((now.len(), &now[10..11], &now[29..]), (30, "T", "Z"));
    }

    #[test]
    fn pid_file_is_found_in_runc_args() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let run = args(&[
            "--root",
            "/r",
            "run",
            "-d",
            "--pid-file",
            "/b/pid",
            "--bundle",
            "/b",
            "id",
        ]);
        assert_eq!(pid_file_arg(&run), Some("/b/pid"));
        assert_eq!(pid_file_arg(&args(&["run", "--pid-file=/p", "id"])), Some("/p"));
        assert_eq!(pid_file_arg(&args(&["run", "id"])), None);
    }
}
