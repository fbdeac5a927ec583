//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's log as the kubelet serves it,
//! mirroring upstream's pkg/kubelet/kuberuntime/logs/logs.go (`ReadLogs`): the CRI log file is read
//! from the `tailLines`-th line from its end, entries older than `sinceSeconds`/`sinceTime` are
//! skipped, `P`artial entries are joined to the line the next entry ends, `timestamps` puts each
//! line's time (RFC 3339 with nanoseconds, trailing zeros trimmed, as Go's `RFC3339Nano`) before it,
//! `limitBytes` cuts the output, and `follow` keeps reading until the container exits or the client
//! goes away.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::Bytes;
use chrono::{DateTime, Utc};

/// The query parameters of a log request (upstream's `PodLogOptions` as the kubelet reads them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// `follow`: stream new lines until the container ends.
    pub follow: bool,
    /// `previous`: the log of the container's previous run.
    pub previous: bool,
    /// `timestamps`: prefix every line with its time.
    pub timestamps: bool,
    /// `tailLines`: only the last N lines of the file (negative: all).
    pub tail_lines: Option<i64>,
    /// `sinceSeconds` / `sinceTime`: only entries written at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// `limitBytes`: stop after this many bytes of output.
    pub limit_bytes: Option<i64>,
}

/// A query parameter that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadOption(pub String);

/// Go's `strconv.ParseBool`, which the kubelet's query decoding uses.
pub fn parse_bool(name: &str, value: &str) -> Result<bool, BadOption> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(BadOption(format!("{name}: invalid boolean value {value:?}"))),
    }
}

impl LogOptions {
    /// Reads the options from a query's pairs, relative to `now` (for `sinceSeconds`).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: DateTime<Utc>,
    ) -> Result<Self, BadOption> {
        let mut opts = LogOptions::default();
        let int = |name: &str, v: &str| {
            v.parse::<i64>()
                .map_err(|_| BadOption(format!("{name}: invalid integer value {v:?}")))
        };
        for (key, value) in pairs {
            match key {
                "follow" => opts.follow = parse_bool(key, value)?,
                "previous" => opts.previous = parse_bool(key, value)?,
                "timestamps" => opts.timestamps = parse_bool(key, value)?,
                "tailLines" => opts.tail_lines = Some(int(key, value)?),
                "limitBytes" => {
                    let n = int(key, value)?;
                    if n < 1 {
                        return Err(BadOption("limitBytes: must be greater than 0".into()));
                    }
                    opts.limit_bytes = Some(n);
                }
                "sinceSeconds" => {
                    let n = int(key, value)?;
                    if n < 1 {
                        return Err(BadOption("sinceSeconds: must be greater than 0".into()));
                    }
                    opts.since = Some(now - chrono::Duration::seconds(n));
                }
                "sinceTime" => {
                    let t = DateTime::parse_from_rfc3339(value)
                        .map_err(|e| BadOption(format!("sinceTime: {e}")))?;
                    opts.since = Some(t.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(opts)
    }
}

/// Formats a time as Go's `time.RFC3339Nano` does in UTC (fraction without trailing zeros).
pub fn rfc3339_nano(t: &DateTime<Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return base + "Z";
    }
    let fraction = format!("{nanos:09}");
    format!("{base}.{}Z", fraction.trim_end_matches('0'))
}

/// Turns CRI log lines into what the client sees, keeping the state that spans lines (whether the
/// next entry starts a line, how many bytes may still be written).
#[derive(Debug)]
pub struct LogWriter {
    opts: LogOptions,
    remaining: Option<i64>,
    at_line_start: bool,
}

impl LogWriter {
    /// A writer for `opts`.
    pub fn new(opts: LogOptions) -> Self {
        Self {
            remaining: opts.limit_bytes,
            opts,
            at_line_start: true,
        }
    }

    /// Whether `limitBytes` is used up (nothing more will be written).
    pub fn done(&self) -> bool {
        self.remaining.is_some_and(|r| r <= 0)
    }

    /// Appends the output for one line of the log file (without its newline) to `out`. Lines that
    /// are not CRI entries are skipped, as upstream logs and skips them. The content is passed on as
    /// bytes: a container may write anything.
    pub fn write_line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        if self.done() {
            return;
        }
        let mut fields = line.splitn(4, |b| *b == b' ');
        let (Some(time), Some(stream), Some(tag)) = (fields.next(), fields.next(), fields.next()) else {
            return;
        };
        let content = fields.next().unwrap_or_default();
        let partial = match tag {
            b"P" => true,
            b"F" => false,
            _ => return,
        };
        if !matches!(stream, b"stdout" | b"stderr") {
            return;
        }
        let Some(time) = std::str::from_utf8(time)
            .ok()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            return;
        };
        let time = time.with_timezone(&Utc);
        let starts_line = self.at_line_start;
        self.at_line_start = !partial;
        if self.opts.since.is_some_and(|since| time < since) {
            return;
        }
        let mut text = Vec::with_capacity(content.len() + 40);
        if self.opts.timestamps && starts_line {
            text.extend_from_slice(rfc3339_nano(&time).as_bytes());
            text.push(b' ');
        }
        text.extend_from_slice(content);
        if !partial {
            text.push(b'\n');
        }
        self.emit(&text, out);
    }

    fn emit(&mut self, text: &[u8], out: &mut Vec<u8>) {
        match &mut self.remaining {
            None => out.extend_from_slice(text),
            Some(remaining) => {
                let n = text.len().min(*remaining as usize);
                out.extend_from_slice(&text[..n]);
                *remaining -= n as i64;
            }
        }
    }
}

/// Where the last `n` lines of `data` start (upstream's `tail.FindTailLineStartIndex`): a final line
/// without its newline counts as a line.
pub fn tail_start(data: &[u8], n: i64) -> usize {
    if n < 0 {
        return 0;
    }
    let mut end = data.len();
    // A trailing newline ends the last line rather than starting an empty one.
    if end > 0 && data[end - 1] == b'\n' {
        end -= 1;
    }
    let mut count = 0;
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            count += 1;
            if count == n {
                return i + 1;
            }
        }
    }
    if n == 0 {
        return data.len();
    }
    0
}

/// Everything one log file yields for `opts`, without following (the unit of the tests).
pub fn render(data: &[u8], opts: &LogOptions) -> Vec<u8> {
    let start = opts.tail_lines.map_or(0, |n| tail_start(data, n));
    let mut writer = LogWriter::new(opts.clone());
    let mut out = Vec::new();
    for line in data[start..].split(|b| *b == b'\n') {
        if !line.is_empty() {
            writer.write_line(line, &mut out);
        }
    }
    out
}

/// How the log of one container is found and whether it still runs, for `follow`.
pub struct LogSource {
    /// The log file.
    pub path: PathBuf,
    /// Whether the container that writes `path` still runs (asked when the file has no more).
    pub running: Box<dyn Fn() -> bool + Send>,
}

/// How often a followed log is looked at again when it had nothing new.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often, while a followed log has nothing new, the container is asked whether it still runs.
const RUNNING_CHECK: Duration = Duration::from_millis(500);

/// Streams the log of `source` for `opts` into `tx`, in the calling (blocking) thread, until the
/// file is read (or, following, the container ended and its last lines are sent), `limitBytes` is
/// used up, or the receiver is gone.
pub fn stream(
    source: LogSource,
    opts: LogOptions,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> std::io::Result<()> {
    let mut file = File::open(&source.path)?;
    let inode = file.metadata()?.ino();
    if let Some(n) = opts.tail_lines {
        // Tails are short: reading the file once to find where they start is simpler than reading
        // backwards in blocks, and a container log is rotated long before this matters.
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        file.seek(SeekFrom::Start(tail_start(&data, n) as u64))?;
    }
    let follow = opts.follow;
    let mut writer = LogWriter::new(opts);
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut idle = Duration::ZERO;
    // Set once the container was seen stopped: one more read drains what it wrote last.
    let mut ended = false;
    loop {
        let n = file.read(&mut buf)?;
        if n > 0 {
            idle = Duration::ZERO;
            pending.extend_from_slice(&buf[..n]);
            let mut out = Vec::new();
            let mut consumed = 0;
            while let Some(pos) = pending[consumed..].iter().position(|b| *b == b'\n') {
                writer.write_line(&pending[consumed..consumed + pos], &mut out);
                consumed += pos + 1;
            }
            pending.drain(..consumed);
            if !out.is_empty() && tx.blocking_send(Bytes::from(out)).is_err() {
                return Ok(());
            }
            if writer.done() {
                return Ok(());
            }
            continue;
        }
        // At the end of the file.
        if !follow || ended {
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(());
        }
        std::thread::sleep(FOLLOW_POLL);
        idle += FOLLOW_POLL;
        if idle >= RUNNING_CHECK {
            idle = Duration::ZERO;
            // A restart moves this run's log aside and starts a new file: this run is over.
            let replaced = std::fs::metadata(&source.path).map_or(true, |m| m.ino() != inode);
            if replaced || !(source.running)() {
                ended = true;
            }
        }
    }
}

/// The previous run's log beside a container's log (`previous.log`, see the runtime).
pub fn previous_log(log: &Path) -> PathBuf {
    log.with_file_name("previous.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2026-11-22T14:04:35.100000000Z stdout F one\n\
                       2026-11-22T14:04:36.000000000Z stderr P two \n\
                       2026-11-22T14:04:36.500000000Z stderr F halves\n\
                       2026-11-22T14:04:37.123456789Z stdout F three\n";

    fn opts() -> LogOptions {
        LogOptions::default()
    }

    fn text(out: Vec<u8>) -> String {
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_whole_log_joins_partial_lines() {
        assert_eq!(text(render(LOG.as_bytes(), &opts())), "one\ntwo halves\nthree\n");
    }

    #[test]
    fn timestamps_prefix_each_line_once() {
        let o = LogOptions {
            timestamps: true,
            ..opts()
        };
        assert_eq!(
            text(render(LOG.as_bytes(), &o)),
            "2026-11-22T14:04:35.1Z one\n2026-11-22T14:04:36Z two halves\n2026-11-22T14:04:37.123456789Z three\n"
        );
    }

    #[test]
    fn tail_counts_lines_of_the_file_from_its_end() {
        let tail = |n| {
            text(render(
                LOG.as_bytes(),
                &LogOptions {
                    tail_lines: Some(n),
                    ..opts()
                },
            ))
        };
        assert_eq!(tail(1), "three\n");
        assert_eq!(tail(0), "");
        assert_eq!(tail(2), "halves\nthree\n");
        assert_eq!(tail(100), "one\ntwo halves\nthree\n");
        assert_eq!(tail(-1), "one\ntwo halves\nthree\n");
        assert_eq!(tail_start(b"a\nb", 1), 2);
        assert_eq!(tail_start(b"", 3), 0);
    }

    #[test]
    fn since_skips_older_entries_and_limit_bytes_cuts() {
        let since = DateTime::parse_from_rfc3339("2026-11-22T14:04:36.2Z")
            .unwrap()
            .to_utc();
        let o = LogOptions {
            since: Some(since),
            ..opts()
        };
        assert_eq!(text(render(LOG.as_bytes(), &o)), "halves\nthree\n");
        let o = LogOptions {
            limit_bytes: Some(6),
            ..opts()
        };
        assert_eq!(text(render(LOG.as_bytes(), &o)), "one\ntw");
    }

    #[test]
    fn options_parse_as_the_kubelet_reads_them() {
        let now = DateTime::parse_from_rfc3339("2026-01-01T00:01:00Z")
            .unwrap()
            .to_utc();
        let o = LogOptions::parse(
            [
                ("follow", "true"),
                ("tailLines", "5"),
                ("sinceSeconds", "60"),
                ("timestamps", "1"),
                ("limitBytes", "10"),
                ("container", "c"),
            ],
            now,
        )
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(5), Some(10)));
        assert_eq!(o.since.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
        assert!(LogOptions::parse([("follow", "yes")], now).is_err());
        assert!(LogOptions::parse([("limitBytes", "0")], now).is_err());
        let t = LogOptions::parse([("sinceTime", "2026-01-01T00:00:30Z")], now).unwrap();
        assert_eq!(t.since.unwrap().timestamp(), now.timestamp() - 30);
    }

    #[test]
    fn a_followed_log_streams_until_the_container_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "2026-11-22T14:04:35Z stdout F first\n").unwrap();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let flag = running.clone();
        let source = LogSource {
            path: path.clone(),
            running: Box::new(move || flag.load(std::sync::atomic::Ordering::SeqCst)),
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let o = LogOptions {
            follow: true,
            ..opts()
        };
        let reader = std::thread::spawn(move || stream(source, o, tx));
        assert_eq!(&rx.blocking_recv().unwrap()[..], b"first\n");
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"2026-11-22T14:04:36Z stdout F second\n").unwrap();
        assert_eq!(&rx.blocking_recv().unwrap()[..], b"second\n");
        f.write_all(b"2026-11-22T14:04:37Z stdout F last\n").unwrap();
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(&rx.blocking_recv().unwrap()[..], b"last\n");
        assert!(rx.blocking_recv().is_none(), "the stream ends with the container");
        reader.join().unwrap().unwrap();
    }
}
