//! Container logs in the CRI log format, the reading side of upstream's
//! pkg/kubelet/kuberuntime/logs/logs.go: each line of a log file is
//! `<RFC 3339 nano time> <stdout|stderr> <F|P> <content>` (`P` marks a piece of a longer line that
//! the next entry continues). `skiff-shim` writes them; the kubelet's log endpoint reads them.

use std::path::Path;

/// One entry of a CRI log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry<'a> {
    /// When the line was written (RFC 3339 with nanoseconds).
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A piece of a line the next entry continues (`P`), not a full line (`F`).
    pub partial: bool,
    /// The text, without its newline.
    pub content: &'a str,
}

/// Parses one line of a CRI log (None if it is not one).
pub fn parse_line(line: &str) -> Option<LogEntry<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next().filter(|s| matches!(*s, "stdout" | "stderr"))?;
    let partial = match parts.next()? {
        "P" => true,
        "F" => false,
        _ => return None,
    };
    Some(LogEntry {
        time,
        stream,
        partial,
        content: parts.next().unwrap_or_default(),
    })
}

/// What the container wrote, as text (both streams, in order; partial lines joined).
pub fn log_text(log: &str) -> String {
    let mut out = String::new();
    for entry in log.lines().filter_map(parse_line) {
        out += entry.content;
        if !entry.partial {
            out.push('\n');
        }
    }
    out
}

/// [`log_text`] of a log file (empty if it cannot be read).
pub fn read_log_text(path: &Path) -> String {
    log_text(&std::fs::read_to_string(path).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_lines_parse_and_join() {
        let log = "2026-11-22T14:04:35.836432397Z stdout F hello world\n\
                   2026-11-22T14:04:35.900000000Z stderr P a long \n\
                   2026-11-22T14:04:35.900000001Z stderr F line\n\
                   2026-11-22T14:04:36.000000000Z stdout F \n\
                   not a log line\n";
        let first = parse_line(log.lines().next().unwrap()).unwrap();
        assert_eq!(
            first,
            LogEntry {
                time: "2026-11-22T14:04:35.836432397Z",
                stream: "stdout",
                partial: false,
                content: "hello world"
            }
        );
        assert_eq!(log_text(log), "hello world\na long line\n\n");
        assert_eq!(parse_line("t stdin F x"), None);
    }
}
