//! Printing `skiff bench store`: the side-by-side table and the ratios against the targets.

use super::*;

/// The rows of the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Row {
    Write(usize),
    /// Raw etcd only: the create-if-absent Txn instead of a put.
    WriteTxn(usize),
    Read,
    WatchFromStart,
    WatchFromAck,
}

/// Every figure measured, by (target name, row).
#[derive(Default)]
pub(super) struct Results {
    cells: HashMap<(&'static str, Row), Cell>,
    pub(super) warnings: Vec<String>,
}

impl Results {
    pub(super) fn add(&mut self, target: &'static str, row: Row, (cell, warning): (Cell, Option<String>)) {
        self.cells.insert((target, row), cell);
        self.warnings.extend(warning);
    }

    pub(super) fn get(&self, target: &str, row: Row) -> Option<Cell> {
        self.cells
            .iter()
            .find(|((t, r), _)| *t == target && *r == row)
            .map(|(_, c)| *c)
    }
}

pub(super) const LABEL_WIDTH: usize = 30;
pub(super) const GROUP_WIDTH: usize = 27;

/// The side-by-side table: one row per operation, one column group per target.
pub(super) fn print_table(results: &Results, targets: &[&str], concurrency: &[usize]) {
    let mut header = format!("{:<LABEL_WIDTH$}", "");
    let mut sub = format!("{:<LABEL_WIDTH$}", "operation");
    for t in targets {
        header.push_str(&format!(" | {t:^GROUP_WIDTH$}"));
        sub.push_str(&format!(" | {:>9} {:>8} {:>8}", "ops/s", "p50 ms", "p99 ms"));
    }
    println!("{}", header.trim_end());
    println!("{sub}");
    println!("{}", "-".repeat(sub.chars().count()));
    let mut rows: Vec<(String, Row)> = concurrency
        .iter()
        .map(|&n| {
            (
                format!("write new key, {n} writer{}", if n == 1 { "" } else { "s" }),
                Row::Write(n),
            )
        })
        .collect();
    let at = ratio_concurrency(concurrency);
    let rows_have_txn = targets
        .iter()
        .any(|t| results.get(t, Row::WriteTxn(at)).is_some());
    if rows_have_txn {
        rows.push((format!("write as txn, {at} writers"), Row::WriteTxn(at)));
    }
    rows.push((format!("read 1 key, {READERS} readers"), Row::Read));
    rows.push(("watch, write start → event".into(), Row::WatchFromStart));
    rows.push(("watch, write ack → event".into(), Row::WatchFromAck));
    for (label, row) in rows {
        let mut line = format!("{label:<LABEL_WIDTH$}");
        for t in targets {
            line.push_str(" | ");
            line.push_str(&match results.get(t, row) {
                Some(c) => format!(
                    "{:>9} {:>8} {:>8}",
                    c.ops_per_sec.map(thousands).unwrap_or_else(|| "-".into()),
                    latency(c.p50_ms),
                    latency(c.p99_ms)
                ),
                None => format!("{:>GROUP_WIDTH$}", "-"),
            });
        }
        println!("{line}");
    }
    if rows_have_txn {
        println!(
            "(write as txn: raw etcd sending the create-if-absent Txn that the etcd backend's create sends)"
        );
    }
    println!(
        "(watch rows: ops/s is the rate of the {WATCH_WRITERS} writers the watch ran under; \
         ≤0 = the event arrived before the write's reply)"
    );
}

/// The concurrency the write ratios are taken at: 64, or the highest measured if 64 is not.
pub(super) fn ratio_concurrency(concurrency: &[usize]) -> usize {
    if concurrency.contains(&RATIO_CONCURRENCY) {
        RATIO_CONCURRENCY
    } else {
        concurrency.iter().copied().max().unwrap_or(RATIO_CONCURRENCY)
    }
}

/// The figures the issue asks for, each with its target and whether it is met, and the ratios that
/// explain them.
pub(super) fn print_ratios(results: &Results, concurrency: &[usize]) {
    let at = ratio_concurrency(concurrency);
    let rate = |t, row| results.get(t, row).and_then(|c| c.ops_per_sec);
    let line = |what: String, figure: String, target: &str, met: Option<bool>| {
        let verdict = met.map_or("", |ok| if ok { "met" } else { "NOT met" });
        println!("  {what:<46} {figure:>9}   {target:<16} {verdict}");
    };
    println!("against the targets");
    for (backend, target) in [("sqlite", 1.0), ("etcd-backend", 0.8)] {
        if let (Some(ours), Some(raw)) = (rate(backend, Row::Write(at)), rate("raw-etcd", Row::Write(at))) {
            let ratio = ours / raw;
            let what = format!("{backend}/raw-etcd writes at {at}");
            line(
                what,
                format!("{ratio:.2}"),
                &format!("(target ≥ {target:.1})"),
                Some(ratio >= target),
            );
        }
    }
    // Both watch latencies against the target: from the write's start it includes the write itself
    // (queueing behind 16 writers); from its acknowledgement it is what the watch path adds.
    for backend in ["sqlite", "etcd-backend", "raw-etcd"] {
        for (row, from) in [(Row::WatchFromStart, "start"), (Row::WatchFromAck, "ack")] {
            if let Some(c) = results.get(backend, row) {
                let (target, met) = match backend {
                    "raw-etcd" => ("(reference)", None),
                    _ => ("(target ≤ 5 ms)", Some(c.p99_ms <= 5.0)),
                };
                let what = format!("{backend} watch p99, write {from} → event");
                line(what, format!("{} ms", latency(c.p99_ms)), target, met);
            }
        }
    }
    println!("explaining them");
    if let (Some(ours), Some(raw)) = (
        rate("etcd-backend", Row::Write(at)),
        rate("raw-etcd", Row::WriteTxn(at)),
    ) {
        let what = format!("etcd-backend/raw-etcd txn writes at {at}");
        line(what, format!("{:.2}", ours / raw), "(same request)", None);
    }
    if let (Some(txn), Some(put)) = (
        rate("raw-etcd", Row::WriteTxn(at)),
        rate("raw-etcd", Row::Write(at)),
    ) {
        let what = format!("raw-etcd txn/put writes at {at}");
        line(what, format!("{:.2}", txn / put), "(etcd's own)", None);
    }
    for backend in ["sqlite", "etcd-backend"] {
        if let (Some(ours), Some(raw)) = (rate(backend, Row::Read), rate("raw-etcd", Row::Read)) {
            let what = format!("{backend}/raw-etcd reads at {READERS}");
            line(what, format!("{:.2}", ours / raw), "(no target)", None);
        }
    }
}

pub(super) fn latency(ms: f64) -> String {
    if ms <= 0.0 {
        "≤0".into()
    } else {
        format!("{ms:.2}")
    }
}

pub(super) fn thousands(rate: f64) -> String {
    let digits = format!("{:.0}", rate);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
