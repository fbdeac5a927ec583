//! Output as kubectl formats it: tables aligned the way its tabwriter aligns them (cells padded by 3
//! spaces to at least 6 columns, the last cell unpadded, widths remembered while watching), objects as
//! YAML (keys sorted, as kubectl's JSON→YAML conversion sorts them) or 4-space-indented JSON, and
//! `-o name` lines.

use serde_json::Value;

/// A table being printed: rows are aligned against every row seen so far.
#[derive(Default)]
pub struct TableWriter {
    widths: Vec<usize>,
}

const PADDING: usize = 3;
const MIN_WIDTH: usize = 6;

impl TableWriter {
    /// Formats `rows` (the header too, if wanted) as aligned lines, widening columns as needed.
    pub fn format(&mut self, rows: &[Vec<String>]) -> String {
        for row in rows {
            // The last cell is not a column (tabwriter pads only tab-terminated cells).
            for (i, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
                let width = (cell.chars().count() + PADDING).max(MIN_WIDTH);
                if self.widths.len() <= i {
                    self.widths.resize(i + 1, 0);
                }
                self.widths[i] = self.widths[i].max(width);
            }
        }
        let mut out = String::new();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if i + 1 < row.len() {
                    let pad = self.widths[i] - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push('\n');
        }
        out
    }
}

/// A table cell as kubectl prints it.
pub fn cell_text(cell: &Value) -> String {
    match cell {
        Value::String(s) => s.clone(),
        Value::Null => "<none>".to_string(),
        other => other.to_string(),
    }
}

/// An object (or list) as kubectl's `-o yaml`.
pub fn to_yaml(value: &Value) -> anyhow::Result<String> {
    let mut text = serde_saphyr::to_string(value).map_err(|e| anyhow::anyhow!("cannot print YAML: {e}"))?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// An object (or list) as kubectl's `-o json` (4-space indentation).
pub fn to_json(value: &Value) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut ser)?;
    out.push(b'\n');
    Ok(String::from_utf8(out)?)
}

/// What kubectl leaves out of printed objects by default (`--show-managed-fields=false`).
pub fn strip_managed_fields(object: &mut Value) {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
}

/// A duration as kubectl's short human form: `45s`, `5m10s`, `3h`, `2d5h`, `400d`
/// (apimachinery's `HumanDuration`).
pub fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        return if s.is_multiple_of(60) {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = s / 3600;
    if h < 8 {
        return if m.is_multiple_of(60) {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    if h < 24 * 8 {
        return if h.is_multiple_of(24) {
            format!("{}d", h / 24)
        } else {
            format!("{}d{}h", h / 24, h % 24)
        };
    }
    if h < 24 * 365 * 2 {
        return format!("{}d", h / 24);
    }
    if h < 24 * 365 * 8 {
        let days = h / 24;
        return if days.is_multiple_of(365) {
            format!("{}y", days / 365)
        } else {
            format!("{}y{}d", days / 365, days % 365)
        };
    }
    format!("{}y", h / 24 / 365)
}

/// How long ago an RFC 3339 timestamp was, in kubectl's form (`<unknown>` when absent or unreadable).
pub fn age(timestamp: Option<&str>) -> String {
    let Some(then) = timestamp.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".to_string();
    };
    // Whole seconds of the exact difference (an eventTime has microseconds), as Go's
    // `int(time.Since(t).Seconds())`: subtracting truncated seconds would run up to 1 s ahead.
    let millis = (chrono::Utc::now() - then.with_timezone(&chrono::Utc)).num_milliseconds();
    let secs = (millis / 1000).max(0) as u64;
    human_duration(std::time::Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn tables_align_like_kubectls_tabwriter() {
        let mut w = TableWriter::default();
        let text = w.format(&[
            row(&["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
            row(&["web-7d9c-abcde", "1/1", "Running", "0", "5s"]),
        ]);
        assert_eq!(
            text,
            "NAME             READY   STATUS    RESTARTS   AGE\n\
             web-7d9c-abcde   1/1     Running   0          5s\n"
        );
        // Short columns are still 6 wide; later rows keep (and may widen) the widths.
        let mut w = TableWriter::default();
        assert_eq!(w.format(&[row(&["A", "B"])]), "A     B\n");
        assert_eq!(w.format(&[row(&["LONGER-NAME", "x"])]), "LONGER-NAME   x\n");
        assert_eq!(w.format(&[row(&["A", "B"])]), "A             B\n");
    }

    #[test]
    fn durations_read_as_kubectls() {
        let d = |s| human_duration(std::time::Duration::from_secs(s));
        assert_eq!(d(5), "5s");
        assert_eq!(d(119), "119s");
        assert_eq!(d(130), "2m10s");
        assert_eq!(d(600), "10m");
        assert_eq!(d(3 * 3600 + 120), "3h2m");
        assert_eq!(d(10 * 3600), "10h");
        assert_eq!(d(50 * 3600), "2d2h");
        assert_eq!(d(10 * 86400), "10d");
        assert_eq!(age(None), "<unknown>");
        assert_eq!(age(Some("not a time")), "<unknown>");
        assert!(age(Some("2000-01-01T00:00:00Z")).ends_with('y'));
    }

    #[test]
    fn objects_print_as_yaml_and_json() {
        let mut v = serde_json::json!({"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "a", "managedFields": [{}]}});
        strip_managed_fields(&mut v);
        let yaml = to_yaml(&v).unwrap();
        assert!(
            yaml.starts_with("apiVersion: v1\nkind: Pod\nmetadata:\n"),
            "{yaml}"
        );
        assert!(!yaml.contains("managedFields"));
        assert_eq!(
            to_json(&serde_json::json!({"a": [1]})).unwrap(),
            "{\n    \"a\": [\n        1\n    ]\n}\n"
        );
        assert_eq!(cell_text(&serde_json::json!(3)), "3");
        assert_eq!(cell_text(&Value::Null), "<none>");
    }
}

/// Go's `text/tabwriter` over `text` (cells end at tabs; the text after a line's last tab is not a
/// cell), padding with spaces: a column's width is set per *block* of consecutive lines that have a
/// cell in it, which is how kubectl's describe output aligns each run of `Key:\tvalue` lines on its
/// own. `minwidth` and `padding` as in `tabwriter.NewWriter`.
pub fn tabwrite(text: &str, minwidth: usize, padding: usize) -> String {
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    let mut widths = Vec::new();
    let mut out = String::new();
    format_block(&lines, 0, lines.len(), &mut widths, minwidth, padding, &mut out);
    out
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    minwidth: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        // Only tab-terminated cells count: a line with n tabs has n cells in columns.
        if column >= lines[this].len() - 1 {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut width = minwidth;
        while this < line1 && column < lines[this].len() - 1 {
            width = width.max(lines[this][column].chars().count() + padding);
            this += 1;
        }
        widths.push(width);
        format_block(lines, line0, this, widths, minwidth, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j + 1 < line.len() {
                let width = widths.get(j).copied().unwrap_or(0);
                out.extend(std::iter::repeat_n(
                    ' ',
                    width.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push('\n');
    }
}

/// An RFC 3339 timestamp as kubectl's describe prints it (`Mon, 02 Jan 2006 15:04:05 -0700`).
pub fn describe_time(timestamp: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(timestamp)
        .map(|t| t.format("%a, %d %b %Y %H:%M:%S %z").to_string())
        .unwrap_or_else(|_| timestamp.to_string())
}

#[cfg(test)]
mod tabwriter_tests {
    use super::*;

    #[test]
    fn blocks_align_separately_like_gos_tabwriter() {
        // A line without a tab ends a block; adjacent lines with cells share one, whatever their
        // indentation (so `QoS Class` aligns with the container's fields just above it).
        let text = "Name:\tweb\nNamespace:\tdefault\nContainers:\n  httpd:\n    Image:\tbusybox\n    Container ID:\tx\nQoS Class:\tBurstable\n";
        assert_eq!(
            tabwrite(text, 0, 2),
            "Name:       web\nNamespace:  default\nContainers:\n  httpd:\n    Image:         busybox\n    Container ID:  x\nQoS Class:         Burstable\n"
        );
        // Rows of a table inside: every column aligned over the block.
        assert_eq!(
            tabwrite("  Type\tStatus\n  Ready\tTrue\n", 0, 2),
            "  Type   Status\n  Ready  True\n"
        );
        assert_eq!(
            describe_time("2026-12-06T06:53:16Z"),
            "Sun, 06 Dec 2026 06:53:16 +0000"
        );
    }
}
