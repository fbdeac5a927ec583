//! The per-container monitor, in the role of containerd-shim / conmon: it runs `runc run` in the
//! foreground (so runc stays the container's parent and learns its exit status), writes the
//! container's output to its log file in the CRI log format, and when the container ends writes the
//! exit code to a file the kubelet reads. The kubelet starts it in its own process group, so a kubelet
//! that stops or restarts takes neither it nor the container down, and the exit code and log are
//! still there when a new kubelet looks.
//!
//! Usage: `skiff-shim <exit-file> <log-file> <runc> <runc args>...`. Each line the container writes
//! becomes `<RFC 3339 nano time> <stdout|stderr> F <line>` (what the kubelet's log reader and
//! `kubectl logs` expect from CRI runtimes). The exit file holds the code as decimal text, written to a
//! temporary name and renamed, so a reader never sees half of it.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Write},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [exit_file, log_file, runc, rest @ ..] = args.as_slice() else {
        eprintln!("usage: skiff-shim <exit-file> <log-file> <runc> <runc args>...");
        std::process::exit(2);
    };
    let log = match File::options().create(true).append(true).open(log_file) {
        Ok(f) => Arc::new(Mutex::new(f)),
        Err(e) => {
            eprintln!("skiff-shim: opening {log_file}: {e}");
            std::process::exit(1);
        }
    };
    let code = match Command::new(runc)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            let copiers = [
                child
                    .stdout
                    .take()
                    .map(|out| copy_lines(out, "stdout", log.clone())),
                child
                    .stderr
                    .take()
                    .map(|err| copy_lines(err, "stderr", log.clone())),
            ];
            let status = child.wait();
            for copier in copiers.into_iter().flatten() {
                let _ = copier.join();
            }
            match status {
                // runc reports a container killed by signal N as 128+N itself.
                Ok(status) => status.code().unwrap_or_else(|| {
                    128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
                }),
                Err(e) => {
                    eprintln!("skiff-shim: waiting for {runc}: {e}");
                    -1
                }
            }
        }
        Err(e) => {
            eprintln!("skiff-shim: running {runc}: {e}");
            -1
        }
    };
    let tmp = format!("{exit_file}.tmp");
    if let Err(e) = std::fs::write(&tmp, code.to_string()).and_then(|()| std::fs::rename(&tmp, exit_file)) {
        eprintln!("skiff-shim: writing {exit_file}: {e}");
        std::process::exit(1);
    }
}

/// Copies `from` line by line into `log` in the CRI format, on its own thread.
fn copy_lines(
    from: impl Read + Send + 'static,
    stream: &'static str,
    log: Arc<Mutex<File>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line.last() != Some(&b'\n') {
                line.push(b'\n'); // The last line, unterminated: still a full line.
            }
            let mut entry = format!("{} {stream} F ", now_rfc3339_nano()).into_bytes();
            entry.extend_from_slice(&line);
            let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = file.write_all(&entry);
        }
    })
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
}
