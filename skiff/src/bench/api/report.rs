//! Printing `skiff bench api`: the side-by-side table (API server | raw Store), the `skiff server`
//! process figures, and each figure the issue asks for against its target.

use std::{collections::HashMap, time::Duration};

use super::{
    super::report::{GROUP_WIDTH, latency, thousands},
    ApiBenchArgs, Cell, P99_CONCURRENCY, READERS, Run, errors_warning,
    fanout::Fanout,
    latency_cell,
    process::ServerStart,
    progress, summarize,
};

/// The two columns of the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Side {
    /// Through the API server, over HTTPS.
    Api,
    /// The Store alone.
    Raw,
}

/// The rows of the table.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(super) enum Row {
    Create(usize),
    Get,
    /// API only: GET /healthz, the HTTPS round trip without a handler behind it.
    Healthz,
    ListCache,
    ListConsistent,
    FanoutLast,
    FanoutMedian,
}

/// Every figure measured.
#[derive(Default)]
pub(super) struct Results {
    cells: HashMap<(Side, Row), Cell>,
    /// One per start of `skiff server`.
    pub server: Vec<ServerStart>,
    pub warnings: Vec<String>,
}

impl Results {
    /// Records a closed-loop run (rate and latency percentiles); an error if nothing succeeded.
    pub fn record(&mut self, side: Side, row: Row, what: &str, run: &Run) -> anyhow::Result<()> {
        let cell = summarize(run, what)?;
        progress(what, &cell);
        self.cells.insert((side, row), cell);
        self.warnings.extend(errors_warning(what, run));
        Ok(())
    }

    /// Records one-at-a-time timings (latencies only).
    pub fn record_times(&mut self, side: Side, row: Row, what: &str, times: Vec<Duration>) {
        let cell = latency_cell(times);
        progress(what, &cell);
        self.cells.insert((side, row), cell);
    }

    /// Records a fan-out cell: the last and the median watcher, over the rounds.
    pub fn record_fanout(&mut self, side: Side, what: &str, fanout: Fanout) {
        if fanout.missed > 0 {
            self.warnings.push(format!(
                "{what}: {} events never reached their watcher",
                fanout.missed
            ));
        }
        self.record_times(
            side,
            Row::FanoutLast,
            &format!("{what}, last watcher"),
            fanout.last,
        );
        self.record_times(
            side,
            Row::FanoutMedian,
            &format!("{what}, median watcher"),
            fanout.median,
        );
    }

    fn get(&self, side: Side, row: Row) -> Option<Cell> {
        self.cells.get(&(side, row)).copied()
    }

    fn rate(&self, side: Side, row: Row) -> Option<f64> {
        self.get(side, row).and_then(|c| c.ops_per_sec)
    }

    /// Median and largest of a process figure over the starts.
    fn server_figure(&self, f: impl Fn(&ServerStart) -> f64) -> Option<(f64, f64)> {
        let mut values: Vec<f64> = self.server.iter().map(f).collect();
        values.sort_unstable_by(f64::total_cmp);
        Some((*values.get((values.len().max(1) - 1) / 2)?, *values.last()?))
    }
}

const LABEL_WIDTH: usize = 36;

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The side-by-side table, then the process figures.
pub(super) fn print_table(results: &Results, args: &ApiBenchArgs) {
    let mut header = format!("{:<LABEL_WIDTH$}", "");
    let mut sub = format!("{:<LABEL_WIDTH$}", "operation");
    for title in ["API server (HTTPS, kube-rs)", "raw Store (SQLite)"] {
        header.push_str(&format!(" | {title:^GROUP_WIDTH$}"));
        sub.push_str(&format!(" | {:>9} {:>8} {:>8}", "ops/s", "p50 ms", "p99 ms"));
    }
    println!("{}", header.trim_end());
    println!("{sub}");
    println!("{}", "-".repeat(sub.chars().count()));
    let pods = thousands(args.list_pods as f64);
    let watchers = thousands(args.watchers as f64);
    let mut rows: Vec<(String, Row)> = args
        .concurrency
        .iter()
        .map(|&n| (format!("create pod, {}", plural(n, "client")), Row::Create(n)))
        .collect();
    rows.extend([
        (format!("get pod, {READERS} clients"), Row::Get),
        (format!("GET /healthz, {READERS} clients"), Row::Healthz),
        (format!("list {pods} pods, watch cache"), Row::ListCache),
        (format!("list {pods} pods, consistent"), Row::ListConsistent),
        (format!("1 event → {watchers} watchers, last"), Row::FanoutLast),
        (
            format!("1 event → {watchers} watchers, median"),
            Row::FanoutMedian,
        ),
    ]);
    for (label, row) in rows {
        let mut line = format!("{label:<LABEL_WIDTH$}");
        for side in [Side::Api, Side::Raw] {
            line.push_str(" | ");
            line.push_str(&match results.get(side, row) {
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
    println!(
        "(list rows: one client, {} runs each; API = ?resourceVersion=0 (cache) or no resourceVersion \
         (store); raw = Store::list of the same prefix)",
        args.list_runs
    );
    println!(
        "(fan-out rows: start of the create → the last / median watcher has the event, over {}; \
         API = HTTP watches, raw = Store::watch)",
        plural(args.fanout_rounds, "round")
    );
    println!("(with few runs p99 is the slowest run)");
    println!();
    println!(
        "skiff server process, {}, fresh data dir each:",
        plural(results.server.len(), "start")
    );
    if let Some((p50, max)) = results.server_figure(|s| s.ready.as_secs_f64() * 1e3) {
        println!("  spawn → /readyz 200          p50 {p50:>7.0} ms   max {max:>7.0} ms");
    }
    if let Some((p50, max)) = results.server_figure(|s| s.rss_bytes as f64 / 1e6) {
        println!("  VmRSS after 2 s idle         p50 {p50:>7.1} MB   max {max:>7.1} MB");
    }
}

/// One line of the targets section: what, the figure, the target, and met / NOT met.
fn line(what: &str, figure: String, target: &str, met: Option<bool>) {
    let verdict = met.map_or("", |ok| if ok { "met" } else { "NOT met" });
    println!("  {what:<46} {figure:>10}   {target:<18} {verdict}");
}

/// The figures the issue asks for against their targets, then ratios that explain them.
pub(super) fn print_targets(results: &Results, args: &ApiBenchArgs) {
    use Row::*;
    use Side::*;
    println!("against the targets");
    for &n in &args.concurrency {
        if let (Some(api), Some(raw)) = (results.rate(Api, Create(n)), results.rate(Raw, Create(n))) {
            let ratio = api / raw;
            line(
                &format!("api/raw creates at {n}"),
                format!("{ratio:.2}"),
                "(target ≥ 0.7)",
                Some(ratio >= 0.7),
            );
        }
    }
    if let Some(c) = results.get(Api, Create(P99_CONCURRENCY)) {
        let what = format!("api create p99 at {P99_CONCURRENCY} clients");
        line(
            &what,
            format!("{} ms", latency(c.p99_ms)),
            "(target ≤ 20 ms)",
            Some(c.p99_ms <= 20.0),
        );
    }
    if let Some(c) = results.get(Api, ListCache) {
        let what = format!(
            "list {} pods from the cache, p50",
            thousands(args.list_pods as f64)
        );
        line(
            &what,
            format!("{} ms", latency(c.p50_ms)),
            "(target ≤ 100 ms)",
            Some(c.p50_ms <= 100.0),
        );
    }
    if let Some(c) = results.get(Api, FanoutLast) {
        let what = format!(
            "1 event → {} watchers, last, p50",
            thousands(args.watchers as f64)
        );
        line(
            &what,
            format!("{} ms", latency(c.p50_ms)),
            "(target ≤ 100 ms)",
            Some(c.p50_ms <= 100.0),
        );
    }
    if let Some((p50, _)) = results.server_figure(|s| s.ready.as_secs_f64() * 1e3) {
        line(
            "skiff server spawn → ready, p50",
            format!("{p50:.0} ms"),
            "(target ≤ 500 ms)",
            Some(p50 <= 500.0),
        );
    }
    if let Some((p50, _)) = results.server_figure(|s| s.rss_bytes as f64 / 1e6) {
        line(
            "skiff server idle RSS, p50",
            format!("{p50:.1} MB"),
            "(target ≤ 40 MB)",
            Some(p50 <= 40.0),
        );
    }

    println!("explaining them");
    if let (Some(api), Some(raw)) = (results.rate(Api, Get), results.rate(Raw, Get)) {
        line(
            &format!("api/raw gets at {READERS}"),
            format!("{:.2}", api / raw),
            "(no target)",
            None,
        );
    }
    if let (Some(get), Some(floor)) = (results.rate(Api, Get), results.rate(Api, Healthz)) {
        let what = format!("api get / GET /healthz at {READERS}");
        line(&what, format!("{:.2}", get / floor), "(HTTPS floor)", None);
    }
    let p50 = |side, row| results.get(side, row).map(|c| c.p50_ms);
    if let (Some(cache), Some(raw)) = (p50(Api, ListCache), p50(Raw, ListCache)) {
        line(
            "api cache list / Store::list, p50",
            format!("{:.2}", cache / raw),
            "(no target)",
            None,
        );
    }
    if let (Some(consistent), Some(raw)) = (p50(Api, ListConsistent), p50(Raw, ListConsistent)) {
        line(
            "api consistent list / Store::list, p50",
            format!("{:.2}", consistent / raw),
            "(no target)",
            None,
        );
    }
    if let (Some(api), Some(raw)) = (p50(Api, FanoutLast), p50(Raw, FanoutLast)) {
        line(
            "api/raw fan-out, last watcher, p50",
            format!("{:.2}", api / raw),
            "(no target)",
            None,
        );
    }
}
