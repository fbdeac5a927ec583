//! `skiff bench store`: what the Store costs, each backend beside the raw etcd it competes with.
//!
//! Measured in one run, side by side, so the comparison survives this machine's noise (runs differ by up
//! to ~35%, see shared/reference/measurements.md):
//!
//! - **writes**: `create` of a new key per op (raw etcd: `put` of a new key), at each concurrency;
//! - **reads**: `get` of one existing key by 16 concurrent readers (raw etcd: linearizable `get`);
//! - **watch delivery**: one watcher on a prefix while 16 writers create keys under it; latency is the
//!   event's arrival minus the start of its write (includes the write, queued behind 15 others), and
//!   minus the write's acknowledgement (what the watch path adds; negative when the event wins).
//!
//! Backends: embedded SQLite (a fresh temp dir, no periodic compaction), the etcd backend, and the
//! reference, etcd-client talking to that same etcd directly. The figures the issue asks for are
//! printed as ratios with their targets: SQLite at least as fast as raw etcd at 64 writers (group
//! commit should make it several times faster), the etcd backend within 80% of raw etcd at 64 writers
//! (it may add little on top of the client), and watch p99 within 5 ms (watch must not be what makes a
//! controller slow). The etcd backend's create is a create-if-absent Txn, not a put, so raw etcd also
//! sends that Txn at 64 writers: it tells etcd's own cost apart from the backend's. Without the `etcd`
//! feature only SQLite is measured.
//!
//! Every cell is a closed loop: N tokio tasks each issue one op, wait for its reply, and go again until
//! the cell's deadline; each op's latency goes into a sorted list (the histogram).

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use futures::{StreamExt as _, stream::BoxStream};
use skiff_apiserver::storage::{
    Store,
    sqlite::{SqliteOptions, SqliteStore},
};
use tokio::sync::oneshot;

pub mod api;
pub mod cluster;
pub mod dns;
#[cfg(feature = "etcd")]
mod etcd;
pub mod node;
pub mod proxy;
mod report;

use report::*;

/// Options of `skiff bench store`.
#[derive(clap::Args, Debug)]
pub struct StoreBenchArgs {
    /// Seconds each cell (one backend, one operation, one concurrency) runs.
    #[arg(long, default_value_t = 3)]
    pub duration: u64,
    /// Size in bytes of every value written.
    #[arg(long, default_value_t = 2048)]
    pub value_size: usize,
    /// etcd to measure (e.g. http://127.0.0.1:2379); unset = start our own on loopback in a temp dir.
    #[arg(long)]
    pub etcd_endpoint: Option<String>,
    /// Numbers of concurrent writers, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
}

/// Readers in the read cells (the concurrency of measurements.md's read figure).
const READERS: usize = 16;
/// Writers in the watch cells (the concurrency of measurements.md's watch figure).
const WATCH_WRITERS: usize = 16;
/// The concurrency the write ratios are taken at (or the highest one measured, if 64 is not).
const RATIO_CONCURRENCY: usize = 64;

/// Runs every cell and prints the table and the ratios.
pub async fn store(args: StoreBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.concurrency.is_empty(),
        "--concurrency needs at least one value"
    );
    let value: Arc<[u8]> = vec![b'x'; args.value_size].into();
    // A run id keeps keys unique even against an etcd that has seen earlier runs.
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let root = format!("/skiff-bench/{run_id:x}/");

    let sqlite_dir = tempfile::tempdir().context("cannot create a temp dir for SQLite")?;
    let sqlite_path = sqlite_dir.path().join("state.db");
    let sqlite = SqliteStore::open(
        &sqlite_path,
        SqliteOptions {
            compact_interval: None,
            ..Default::default()
        },
    )
    .context("cannot open the SQLite store")?;
    // Only the etcd side adds to these two.
    #[cfg_attr(not(feature = "etcd"), allow(unused_mut))]
    let mut targets = vec![Target::Store {
        name: "sqlite",
        store: sqlite,
    }];
    #[cfg_attr(not(feature = "etcd"), allow(unused_mut))]
    let mut setup = vec![format!(
        "sqlite: {} (WAL, synchronous=FULL, group commit)",
        sqlite_path.display()
    )];
    #[cfg(feature = "etcd")]
    let etcd = etcd::connect(args.etcd_endpoint.as_deref()).await?;
    #[cfg(feature = "etcd")]
    {
        setup.push(etcd.describe());
        targets.extend(etcd.targets());
    }
    #[cfg(not(feature = "etcd"))]
    if args.etcd_endpoint.is_some() {
        anyhow::bail!("--etcd-endpoint needs skiff built with the `etcd` feature");
    }

    println!(
        "skiff bench store: {} B values, {} s per cell, closed loop",
        args.value_size, args.duration
    );
    for line in &setup {
        println!("  {line}");
    }
    let results = run_cells(&targets, &args, &root, &value).await?;
    println!();
    let names: Vec<&str> = targets.iter().map(|t| t.name()).collect();
    print_table(&results, &names, &args.concurrency);
    println!();
    print_ratios(&results, &args.concurrency);
    for warning in &results.warnings {
        println!("warning: {warning}");
    }
    #[cfg(feature = "etcd")]
    etcd.cleanup(&root).await;
    Ok(())
}

/// Every cell: writes at each concurrency, then reads, then watch delivery, each on every target.
async fn run_cells(
    targets: &[Target],
    args: &StoreBenchArgs,
    root: &str,
    value: &Arc<[u8]>,
) -> anyhow::Result<Results> {
    let duration = Duration::from_secs(args.duration);
    let mut results = Results::default();
    // Cells run target after target at each concurrency, so the figures compared were measured
    // close together in time.
    for &n in &args.concurrency {
        for t in targets {
            // The etcd backend's create is a create-if-absent Txn, which etcd serves more slowly than a
            // bare put. The same Txn sent raw, right before the put, separates etcd's own cost from
            // the backend's.
            #[cfg(feature = "etcd")]
            if n == ratio_concurrency(&args.concurrency) && matches!(t, Target::RawEtcd(_)) {
                let prefix = format!("{root}{}/txn-c{n}/", t.name());
                let cell = measure_writes(t, &prefix, value, n, true, duration).await?;
                results.add(t.name(), Row::WriteTxn(n), cell);
            }
            let prefix = format!("{root}{}/write-c{n}/", t.name());
            let cell = measure_writes(t, &prefix, value, n, false, duration).await?;
            results.add(t.name(), Row::Write(n), cell);
        }
    }
    for t in targets {
        let cell = measure_reads(t, &format!("{root}{}/read/", t.name()), value, duration).await?;
        results.add(t.name(), Row::Read, cell);
    }
    for t in targets {
        let (from_start, from_ack) =
            measure_watch(t, &format!("{root}{}/watch/", t.name()), value, duration).await?;
        results.add(t.name(), Row::WatchFromStart, from_start);
        results.add(t.name(), Row::WatchFromAck, from_ack);
    }
    Ok(results)
}

/// Something to measure: a skiff Store backend, or etcd itself.
#[derive(Clone)]
enum Target {
    /// A backend driven through the Store trait, exactly as the API server drives it.
    Store {
        name: &'static str,
        store: Arc<dyn Store>,
    },
    /// etcd through etcd-client with no skiff code in between: the reference for the etcd numbers.
    #[cfg(feature = "etcd")]
    RawEtcd(Box<etcd_client::Client>),
}

impl Target {
    fn name(&self) -> &'static str {
        match self {
            Target::Store { name, .. } => name,
            #[cfg(feature = "etcd")]
            Target::RawEtcd(_) => "raw-etcd",
        }
    }

    /// Writes a key that does not exist yet. A Store always checks that it is absent; raw etcd does
    /// only when `if_absent` (then it sends the Txn the etcd backend sends), else it is a bare put.
    async fn create(&mut self, key: String, value: &[u8], if_absent: bool) -> anyhow::Result<()> {
        match self {
            Target::Store { store, .. } => {
                store.create(&key, value.to_vec()).await?;
            }
            #[cfg(feature = "etcd")]
            Target::RawEtcd(client) if if_absent => etcd::raw_create_if_absent(client, key, value).await?,
            #[cfg(feature = "etcd")]
            Target::RawEtcd(client) => {
                client.put(key, value, None).await?;
            }
        }
        #[cfg(not(feature = "etcd"))]
        let _ = if_absent;
        Ok(())
    }

    /// Reads a key that exists, at the latest revision.
    async fn get(&mut self, key: &str) -> anyhow::Result<()> {
        let found = match self {
            Target::Store { store, .. } => store.get(key, 0).await?.0.is_some(),
            #[cfg(feature = "etcd")]
            Target::RawEtcd(client) => !client.get(key, None).await?.kvs().is_empty(),
        };
        anyhow::ensure!(found, "{key} is missing");
        Ok(())
    }

    /// The keys of changes under `prefix` from now on, as their events arrive. Returns once the watch
    /// is established, so writes issued afterwards are all seen.
    async fn watch_keys(
        &mut self,
        prefix: &str,
    ) -> anyhow::Result<BoxStream<'static, anyhow::Result<String>>> {
        match self {
            Target::Store { store, .. } => {
                // Watching from the current revision replays anything written before the watch is live.
                let from = store.current_revision().await?;
                let events = store.watch(prefix, from).await?;
                Ok(events.map(|ev| Ok(ev?.kv.key)).boxed())
            }
            #[cfg(feature = "etcd")]
            Target::RawEtcd(client) => etcd::raw_watch_keys(client, prefix).await,
        }
    }
}

/// What one cell does per op.
#[derive(Clone)]
enum Op {
    /// Create `<prefix><op index>` with `value` (see [`Target::create`] for `if_absent`).
    Create {
        prefix: Arc<str>,
        value: Arc<[u8]>,
        if_absent: bool,
    },
    /// Get `key`.
    Get { key: Arc<str> },
}

/// One completed op: its index (which names its key) and when it was sent and acknowledged.
struct Sample {
    index: u64,
    start: Instant,
    ack: Instant,
}

/// What a closed loop produced.
struct Run {
    samples: Vec<Sample>,
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
}

fn key_of(prefix: &str, index: u64) -> String {
    format!("{prefix}{index:010}")
}

/// `concurrency` tasks each doing `op` in a loop until `duration` has passed.
async fn closed_loop(target: &Target, op: Op, concurrency: usize, duration: Duration) -> anyhow::Result<Run> {
    let begin = Instant::now();
    let deadline = begin + duration;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (mut target, op, next) = (target.clone(), op.clone(), next.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let (mut errors, mut first_error) = (0, None);
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let start = Instant::now();
                    let outcome = match &op {
                        Op::Create {
                            prefix,
                            value,
                            if_absent,
                        } => target.create(key_of(prefix, index), value, *if_absent).await,
                        Op::Get { key } => target.get(key).await,
                    };
                    match outcome {
                        Ok(()) => samples.push(Sample {
                            index,
                            start,
                            ack: Instant::now(),
                        }),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                    }
                }
                (samples, errors, first_error)
            })
        })
        .collect();
    let mut run = Run {
        samples: Vec::new(),
        elapsed: Duration::ZERO,
        errors: 0,
        first_error: None,
    };
    for task in tasks {
        let (samples, errors, first_error) = task.await.context("a benchmark task panicked")?;
        run.samples.extend(samples);
        run.errors += errors;
        run.first_error = run.first_error.or(first_error);
    }
    // The last ops finish after the deadline; the rate is over the time they really took.
    run.elapsed = begin.elapsed();
    Ok(run)
}

/// One figure of the table: a rate (if it has one) and two percentiles in milliseconds. Percentiles
/// may be negative (a watch event that arrives before its write's reply).
#[derive(Clone, Copy)]
struct Cell {
    ops_per_sec: Option<f64>,
    p50_ms: f64,
    p99_ms: f64,
}

/// Nearest-rank percentile of a sorted list.
fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied()
}

/// Rate and latency percentiles of a run; an error if nothing completed.
fn summarize(run: &Run, what: &str) -> anyhow::Result<Cell> {
    let mut latencies: Vec<Duration> = run.samples.iter().map(|s| s.ack - s.start).collect();
    latencies.sort_unstable();
    let ms = |p| percentile(&latencies, p).map_or(f64::NAN, |d: Duration| d.as_secs_f64() * 1e3);
    anyhow::ensure!(
        !latencies.is_empty(),
        "{what}: no op succeeded ({} errors, first: {})",
        run.errors,
        run.first_error.as_deref().unwrap_or("none")
    );
    Ok(Cell {
        ops_per_sec: Some(latencies.len() as f64 / run.elapsed.as_secs_f64()),
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
    })
}

/// Writes: `concurrency` writers creating new keys under `prefix`.
async fn measure_writes(
    target: &Target,
    prefix: &str,
    value: &Arc<[u8]>,
    concurrency: usize,
    if_absent: bool,
    duration: Duration,
) -> anyhow::Result<(Cell, Option<String>)> {
    let op = Op::Create {
        prefix: prefix.into(),
        value: value.clone(),
        if_absent,
    };
    let run = closed_loop(target, op, concurrency, duration).await?;
    let kind = if if_absent { "txn write" } else { "write" };
    let what = format!("{} {kind} c={concurrency}", target.name());
    let cell = summarize(&run, &what)?;
    progress(&what, &cell);
    Ok((cell, errors_warning(&what, &run)))
}

/// Reads: [`READERS`] readers getting one existing key (what a GET of one object costs the store).
async fn measure_reads(
    target: &Target,
    prefix: &str,
    value: &Arc<[u8]>,
    duration: Duration,
) -> anyhow::Result<(Cell, Option<String>)> {
    let key = format!("{prefix}object");
    target
        .clone()
        .create(key.clone(), value, false)
        .await
        .with_context(|| format!("cannot create {key}"))?;
    let run = closed_loop(target, Op::Get { key: key.into() }, READERS, duration).await?;
    let what = format!("{} read c={READERS}", target.name());
    let cell = summarize(&run, &what)?;
    progress(&what, &cell);
    Ok((cell, errors_warning(&what, &run)))
}

/// Watch delivery: one watcher on `prefix` while [`WATCH_WRITERS`] writers create keys under it.
/// Returns (event arrival − write start) and (event arrival − write acknowledgement); the rate in both
/// is the writers' rate, the load the watch was measured under.
async fn measure_watch(
    target: &Target,
    prefix: &str,
    value: &Arc<[u8]>,
    duration: Duration,
) -> anyhow::Result<((Cell, Option<String>), (Cell, Option<String>))> {
    let what = format!("{} watch, {WATCH_WRITERS} writers", target.name());
    let events = target
        .clone()
        .watch_keys(prefix)
        .await
        .with_context(|| format!("{what}: cannot watch"))?;
    let (total_tx, total_rx) = oneshot::channel();
    let collector = tokio::spawn(collect_arrivals(events, prefix.to_owned(), total_rx));
    let op = Op::Create {
        prefix: prefix.into(),
        value: value.clone(),
        if_absent: false,
    };
    let run = closed_loop(target, op, WATCH_WRITERS, duration).await?;
    let writes = summarize(&run, &what)?;
    let _ = total_tx.send(run.samples.len());
    let (arrivals, watch_error) = collector.await.context("the watch collector panicked")?;

    // Signed nanoseconds: an event may arrive before its write's reply (etcd often does that).
    let mut from_start = Vec::with_capacity(arrivals.len());
    let mut from_ack = Vec::with_capacity(arrivals.len());
    for s in &run.samples {
        if let Some(&at) = arrivals.get(&s.index) {
            from_start.push(signed_nanos(at, s.start));
            from_ack.push(signed_nanos(at, s.ack));
        }
    }
    anyhow::ensure!(
        !from_start.is_empty(),
        "{what}: no event arrived ({})",
        watch_error.as_deref().unwrap_or("the stream stayed silent")
    );
    from_start.sort_unstable();
    from_ack.sort_unstable();
    let cell = |sorted: &[i64]| Cell {
        ops_per_sec: writes.ops_per_sec,
        p50_ms: percentile(sorted, 0.50).unwrap_or(0) as f64 / 1e6,
        p99_ms: percentile(sorted, 0.99).unwrap_or(0) as f64 / 1e6,
    };
    let (start_cell, ack_cell) = (cell(&from_start), cell(&from_ack));
    progress(&format!("{what}: start→event"), &start_cell);
    progress(&format!("{what}: ack→event"), &ack_cell);

    let missed = run.samples.len() - from_start.len();
    let mut warning = errors_warning(&what, &run);
    if missed > 0 || watch_error.is_some() {
        let detail = watch_error
            .map(|e| format!(" (watch ended: {e})"))
            .unwrap_or_default();
        warning = Some(format!(
            "{}{what}: {missed} of {} acknowledged writes had no event within the wait{detail}",
            warning.map(|w| format!("{w}; ")).unwrap_or_default(),
            run.samples.len()
        ));
    }
    Ok(((start_cell, warning), (ack_cell, None)))
}

/// `later − earlier` in nanoseconds, negative when `later` is in fact earlier.
fn signed_nanos(later: Instant, earlier: Instant) -> i64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_nanos() as i64,
        None => -((earlier - later).as_nanos() as i64),
    }
}

/// Records when the event of each key arrives. Stops once it has as many as the writers acknowledged
/// (sent on `total` when they are done), or 5 s after that if some never come, or when the stream ends.
async fn collect_arrivals(
    mut events: BoxStream<'static, anyhow::Result<String>>,
    prefix: String,
    mut total: oneshot::Receiver<usize>,
) -> (HashMap<u64, Instant>, Option<String>) {
    let mut arrivals = HashMap::new();
    let mut expected = None;
    let give_up = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(give_up);
    loop {
        if expected.is_some_and(|n| arrivals.len() >= n) {
            return (arrivals, None);
        }
        tokio::select! {
            item = events.next() => match item {
                Some(Ok(key)) => {
                    let now = Instant::now();
                    if let Some(index) = key.strip_prefix(&prefix).and_then(|i| i.parse().ok()) {
                        arrivals.entry(index).or_insert(now);
                    }
                }
                Some(Err(e)) => return (arrivals, Some(format!("{e:#}"))),
                None => return (arrivals, Some("the stream ended".into())),
            },
            n = &mut total, if expected.is_none() => {
                expected = Some(n.unwrap_or(0));
                give_up.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(5));
            }
            () = &mut give_up => return (arrivals, None),
        }
    }
}

fn errors_warning(what: &str, run: &Run) -> Option<String> {
    (run.errors > 0).then(|| {
        format!(
            "{what}: {} ops failed (first: {})",
            run.errors,
            run.first_error.as_deref().unwrap_or("?")
        )
    })
}

/// One line on stderr per finished cell, so a long run shows it is alive.
fn progress(what: &str, cell: &Cell) {
    let rate = cell
        .ops_per_sec
        .map(|r| format!("{r:.0}/s, "))
        .unwrap_or_default();
    eprintln!(
        "  {what}: {rate}p50 {:.2} ms, p99 {:.2} ms",
        cell.p50_ms, cell.p99_ms
    );
}
