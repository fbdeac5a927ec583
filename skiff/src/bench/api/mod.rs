//! `skiff bench api`: what the API server costs on top of the Store it sits on, and what a `skiff
//! server` process costs to start and to keep.
//!
//! The API server runs in this process (an [`ApiServer`] on embedded SQLite in a temp dir, served over
//! TLS on 127.0.0.1:0 with bearer-token auth, exactly as `skiff server` wires it); the client is kube-rs
//! (`kube::Client` from the admin kubeconfig the server would write), sending raw request bodies and
//! reading raw response bodies: the client's own (de)serialisation of typed objects is not the server's
//! cost, so it is left out. Beside it, in the same run, the same operation on a raw
//! [`Store`] (a second fresh SQLite store, or the API server's own store for reads of its data):
//!
//! - **creates**: POST of a realistic ~2 KB Pod by 1, 16 and 64 concurrent clients, beside
//!   `Store::create` of the same bytes (the API adds auth, decode, defaults, validation, a namespace
//!   check, an existence check and the response). Targets: API ≥ 0.7× raw, p99 ≤ 20 ms at 16 clients.
//! - **gets**: GET of one pod by 16 clients, beside `Store::get`; and GET /healthz, the floor of one
//!   HTTPS round trip through the same client, which tells the transport apart from the handler.
//! - **lists**: LIST of a namespace of 10,000 pods from the watch cache (`resourceVersion=0`, target
//!   ≤ 100 ms) and consistent (from the store), beside `Store::list` of the same prefix.
//! - **watch fan-out**: one pod created while 1,000 HTTP watches are open on its namespace; time until
//!   the last watcher has it (target ≤ 100 ms), beside 1,000 `Store::watch`es on a raw store.
//! - **the process**: `skiff server` (this binary) started in a fresh data dir; time until `/readyz`
//!   answers 200 (target ≤ 0.5 s) and its resident memory after 2 s idle (target ≤ 40 MB).
//!
//! Both sides share this machine's cores with the client, so the ratios compare like with like; the
//! absolute figures include the client's share.

use std::{
    future::Future,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use serde_json::{Value, json};
use skiff_apiserver::{
    server::{ApiServer, serve, tls},
    storage::{
        ListOptions, Store,
        sqlite::{SqliteOptions, SqliteStore},
    },
    watch_cache::WatchCacheOptions,
};
use tokio::{net::TcpListener, sync::oneshot};

use super::{Cell, READERS, Run, Sample, errors_warning, percentile, progress, summarize};

mod fanout;
mod pod;
pub(super) mod process;
mod report;

use pod::PodBody;
use report::{Results, Row, Side};

/// Options of `skiff bench api`.
#[derive(clap::Args, Debug)]
pub struct ApiBenchArgs {
    /// Seconds each throughput cell (one side, one operation, one concurrency) runs.
    #[arg(long, default_value_t = 3)]
    pub duration: u64,
    /// Numbers of concurrent clients creating pods, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub concurrency: Vec<usize>,
    /// Pods in the namespace the LIST cells read.
    #[arg(long, default_value_t = 10_000)]
    pub list_pods: usize,
    /// LISTs timed per way of listing.
    #[arg(long, default_value_t = 5)]
    pub list_runs: usize,
    /// Watches open during the fan-out cells.
    #[arg(long, default_value_t = 1000)]
    pub watchers: usize,
    /// Events (one pod create each) the fan-out cells time.
    #[arg(long, default_value_t = 10)]
    pub fanout_rounds: usize,
    /// How many times `skiff server` is started for the start-up and memory figures.
    #[arg(long, default_value_t = 3)]
    pub server_starts: usize,
}

/// Namespace of the create and get cells.
const NS: &str = "bench";
/// Namespace holding the pods the LIST cells read.
const LIST_NS: &str = "bench-list";
/// Namespace the fan-out watchers watch.
const WATCH_NS: &str = "bench-watch";
/// Clients filling the LIST namespace (not timed).
const FILL_CONCURRENCY: usize = 64;
/// The concurrency of the p99 create target.
const P99_CONCURRENCY: usize = 16;
/// How long `skiff server` sits idle before its memory is read.
const IDLE: Duration = Duration::from_secs(2);

/// Runs every cell and prints the table and the figures against their targets.
pub async fn run(args: ApiBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.concurrency.is_empty(),
        "--concurrency needs at least one value"
    );
    anyhow::ensure!(
        args.list_runs > 0 && args.fanout_rounds > 0 && args.server_starts > 0 && args.watchers > 0,
        "--list-runs, --watchers, --fanout-rounds and --server-starts must be at least 1"
    );
    let pod = Arc::new(PodBody::new());
    println!(
        "skiff bench api: {} B pod bodies, {} s per throughput cell, closed loop",
        pod.len(),
        args.duration
    );
    println!("  api: ApiServer on SQLite in a temp dir, HTTPS on 127.0.0.1, kube-rs client (raw bodies)");
    println!("  raw: Store on a second fresh SQLite store (reads: the API server's own store)");

    let mut results = Results::default();
    // The process first, while nothing else runs in this one.
    for i in 0..args.server_starts {
        let start = process::start_server(IDLE)
            .await
            .with_context(|| format!("skiff server start {}", i + 1))?;
        eprintln!(
            "  skiff server start {}: ready in {:.0} ms, idle RSS {:.1} MB",
            i + 1,
            start.ready.as_secs_f64() * 1e3,
            start.rss_bytes as f64 / 1e6
        );
        results.server.push(start);
    }

    let bench = Bench::start(pod).await?;
    measure_creates(&bench, &args, &mut results).await?;
    measure_gets(&bench, &args, &mut results).await?;
    measure_lists(&bench, &args, &mut results).await?;
    measure_fanout(&bench, &args, &mut results).await?;
    bench.stop();

    println!();
    report::print_table(&results, &args);
    println!();
    report::print_targets(&results, &args);
    for warning in &results.warnings {
        println!("warning: {warning}");
    }
    Ok(())
}

/// The API server under test (in this process), a client for it, and the raw store beside it.
struct Bench {
    /// The server's state (its store is wrapped in the server's metrics).
    api: Arc<ApiServer>,
    /// The SQLite store under the API server, unwrapped: what raw reads of the server's data use.
    api_store: Arc<dyn Store>,
    /// A second, fresh SQLite store: what raw writes go to.
    raw: Arc<dyn Store>,
    /// kube-rs with the admin token and the cluster CA.
    client: kube::Client,
    pod: Arc<PodBody>,
    stop: oneshot::Sender<()>,
    /// Holds both stores and the PKI; removed when the bench ends.
    _dir: tempfile::TempDir,
}

impl Bench {
    /// Starts the API server as `skiff server` does (minus the process), and the namespaces the cells use.
    async fn start(pod: Arc<PodBody>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("skiff-bench-api-").tempdir()?;
        let api_store = open_sqlite(&dir.path().join("api/state.db"))?;
        let raw = open_sqlite(&dir.path().join("raw/state.db"))?;
        let (api, client, stop) = serve_in_process(dir.path(), api_store.clone()).await?;
        for ns in [NS, LIST_NS, WATCH_NS] {
            let body = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } });
            post(&client, "/api/v1/namespaces", serde_json::to_vec(&body)?)
                .await
                .with_context(|| format!("cannot create namespace {ns}"))?;
        }
        Ok(Self {
            api,
            api_store,
            raw,
            client,
            pod,
            stop,
            _dir: dir,
        })
    }

    /// Stops serving (open connections end with their requests).
    fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// Serves an API server over `store` on a loopback port as `skiff server` does (minus the process),
/// with its PKI and kubeconfig under `dir`; returns it, an admin client, and its stop switch.
pub async fn serve_in_process(
    dir: &Path,
    store: Arc<dyn Store>,
) -> anyhow::Result<(Arc<ApiServer>, kube::Client, oneshot::Sender<()>)> {
    let pki =
        tls::load_or_create(&dir.join("tls"), &["127.0.0.1".to_owned()]).context("cannot set up TLS")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let kubeconfig = dir.join("kubeconfig.yaml");
    tls::write_kubeconfig(
        &kubeconfig,
        &format!("https://127.0.0.1:{port}"),
        &pki.ca_pem,
        &pki.admin_token,
    )?;
    let api = ApiServer::new(store, WatchCacheOptions::default());
    api.bootstrap(port)
        .await
        .context("cannot create the bootstrap objects")?;
    let router = serve::with_auth(api.router(), vec![pki.admin_token.clone()]);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve::serve_tls(
        listener,
        pki.server_config,
        router,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = client_from_kubeconfig(&kubeconfig).await?;
    Ok((api, client, stop))
}

/// A SQLite store without periodic compaction, as `bench store` opens it: a compaction in the middle
/// of a cell would be noise.
pub fn open_sqlite(path: &Path) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(path.parent().expect("a file path"))?;
    let store = SqliteStore::open(
        path,
        SqliteOptions {
            compact_interval: None,
            ..Default::default()
        },
    )
    .with_context(|| format!("cannot open SQLite at {}", path.display()))?;
    Ok(store)
}

/// A kube-rs client from a kubeconfig, as the end-to-end tests build one, but without kube's retry of
/// 429/503 replies: a refused request must count as an error here, not as a slow success.
pub(super) async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}

/// POSTs a JSON `body`; the reply is read whole but not parsed. Non-2xx replies are errors.
async fn post(client: &kube::Client, path: &str, body: Vec<u8>) -> anyhow::Result<String> {
    let req = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)?;
    Ok(client.request_text(req).await?)
}

/// GETs `path`; the reply is read whole but not parsed. Non-2xx replies are errors.
pub(super) async fn get(client: &kube::Client, path: &str) -> anyhow::Result<String> {
    Ok(client
        .request_text(http::Request::get(path).body(Vec::new())?)
        .await?)
}

/// GETs `path` and reads the reply to its last byte without keeping it: the time until the client has
/// the whole response, not the client's own copying and UTF-8 checking of a 20 MB body (which
/// `request_text` adds, about as much again as the server's part). Returns the bytes read.
async fn get_drained(client: &kube::Client, path: &str) -> anyhow::Result<usize> {
    use http_body_util::BodyExt;
    let req = http::Request::get(path).body(kube::client::Body::empty())?;
    let resp = client.send(req).await?;
    anyhow::ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
    let mut body = resp.into_body();
    let mut read = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            read += data.len();
        }
    }
    Ok(read)
}

/// The storage key of pod `name` in `ns` (what the API server writes for it).
fn pod_key(ns: &str, name: &str) -> String {
    format!("/registry/pods/{ns}/{name}")
}

/// `concurrency` tasks each running `op(index)` in a loop until `duration` has passed: the closed loop
/// of `bench store`, over any async op (`index` is unique per op and names what it creates).
async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, op: F) -> anyhow::Result<Run>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let begin = Instant::now();
    let deadline = begin + duration;
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let (mut samples, mut errors, mut first_error) = (Vec::new(), 0, None);
                while Instant::now() < deadline {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let start = Instant::now();
                    match op(index).await {
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

/// Creates: POST through the API, then `Store::create` of the same bytes, at each concurrency (the
/// two sides of one concurrency run back to back, so they see the same machine).
async fn measure_creates(bench: &Bench, args: &ApiBenchArgs, results: &mut Results) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration);
    for &n in &args.concurrency {
        let (client, pod) = (bench.client.clone(), bench.pod.clone());
        let path = format!("/api/v1/namespaces/{NS}/pods");
        let run = closed_loop(n, duration, move |i| {
            let (client, body, path) = (
                client.clone(),
                pod.with_name(&format!("c{n}-{i:08}")),
                path.clone(),
            );
            async move { post(&client, &path, body).await.map(drop) }
        })
        .await?;
        results.record(Side::Api, Row::Create(n), &format!("api create c={n}"), &run)?;

        let (raw, pod) = (bench.raw.clone(), bench.pod.clone());
        let run = closed_loop(n, duration, move |i| {
            let (raw, name) = (raw.clone(), format!("c{n}-{i:08}"));
            let body = pod.with_name(&name);
            async move {
                raw.create(&pod_key(NS, &name), body)
                    .await
                    .map(drop)
                    .map_err(Into::into)
            }
        })
        .await?;
        results.record(Side::Raw, Row::Create(n), &format!("raw create c={n}"), &run)?;
    }
    Ok(())
}

/// Gets: one existing pod read by [`READERS`] clients, through the API and from a raw store; and
/// `/healthz` through the API, the cost of the HTTPS round trip alone.
async fn measure_gets(bench: &Bench, args: &ApiBenchArgs, results: &mut Results) -> anyhow::Result<()> {
    let duration = Duration::from_secs(args.duration);
    let name = "get-target";
    post(
        &bench.client,
        &format!("/api/v1/namespaces/{NS}/pods"),
        bench.pod.with_name(name),
    )
    .await?;
    bench
        .raw
        .create(&pod_key(NS, name), bench.pod.with_name(name))
        .await?;

    let client = bench.client.clone();
    let path: Arc<str> = format!("/api/v1/namespaces/{NS}/pods/{name}").into();
    let run = closed_loop(READERS, duration, move |_| {
        let (client, path) = (client.clone(), path.clone());
        async move { get(&client, &path).await.map(drop) }
    })
    .await?;
    results.record(Side::Api, Row::Get, &format!("api get c={READERS}"), &run)?;

    let (raw, key): (_, Arc<str>) = (bench.raw.clone(), pod_key(NS, name).into());
    let run = closed_loop(READERS, duration, move |_| {
        let (raw, key) = (raw.clone(), key.clone());
        async move {
            let (kv, _) = raw.get(&key, 0).await?;
            anyhow::ensure!(kv.is_some(), "{key} is missing");
            Ok(())
        }
    })
    .await?;
    results.record(Side::Raw, Row::Get, &format!("raw get c={READERS}"), &run)?;

    let client = bench.client.clone();
    let run = closed_loop(READERS, duration, move |_| {
        let client = client.clone();
        async move { get(&client, "/healthz").await.map(drop) }
    })
    .await?;
    results.record(
        Side::Api,
        Row::Healthz,
        &format!("api /healthz c={READERS}"),
        &run,
    )
}

/// Lists: fills a namespace with `--list-pods` pods through the API, then times LISTs of it from the
/// watch cache and from the store, and `Store::list` of the same prefix on the API server's store.
async fn measure_lists(bench: &Bench, args: &ApiBenchArgs, results: &mut Results) -> anyhow::Result<()> {
    let started = Instant::now();
    let path = format!("/api/v1/namespaces/{LIST_NS}/pods");
    futures::stream::iter(0..args.list_pods)
        .map(|i| post(&bench.client, &path, bench.pod.with_name(&format!("p-{i:06}"))))
        .buffer_unordered(FILL_CONCURRENCY)
        .try_for_each(|_| async { Ok(()) })
        .await
        .context("cannot fill the LIST namespace")?;
    eprintln!(
        "  filled {LIST_NS} with {} pods in {:.1} s",
        args.list_pods,
        started.elapsed().as_secs_f64()
    );

    for (row, query) in [(Row::ListCache, "?resourceVersion=0"), (Row::ListConsistent, "")] {
        let url = format!("{path}{query}");
        // Untimed: the cache may trail the last create by a moment, and the count is checked once.
        wait_for_count(&bench.client, &url, args.list_pods).await?;
        let mut times = Vec::with_capacity(args.list_runs);
        for _ in 0..args.list_runs {
            let start = Instant::now();
            get_drained(&bench.client, &url).await?;
            times.push(start.elapsed());
        }
        results.record_times(Side::Api, row, &format!("api list {url}"), times);
    }

    let prefix = format!("/registry/pods/{LIST_NS}/");
    let mut times = Vec::with_capacity(args.list_runs);
    for _ in 0..args.list_runs {
        let start = Instant::now();
        let page = bench.api_store.list(&prefix, ListOptions::default()).await?;
        times.push(start.elapsed());
        anyhow::ensure!(
            page.kvs.len() == args.list_pods,
            "Store::list found {} pods",
            page.kvs.len()
        );
    }
    // One raw figure for both rows: both API lists serve the same data Store::list reads.
    results.record_times(Side::Raw, Row::ListCache, "raw list", times.clone());
    results.record_times(Side::Raw, Row::ListConsistent, "raw list", times);
    Ok(())
}

/// Waits (a few seconds at most) until a LIST at `url` holds `expected` items.
async fn wait_for_count(client: &kube::Client, url: &str, expected: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Value = serde_json::from_str(&get(client, url).await?)?;
        let found = list["items"].as_array().map_or(0, Vec::len);
        if found == expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "LIST {url} holds {found} pods, not {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watch fan-out: through the API (HTTP watches on the watch cache), then on a raw store.
async fn measure_fanout(bench: &Bench, args: &ApiBenchArgs, results: &mut Results) -> anyhow::Result<()> {
    let rv = bench.api.store.current_revision().await?;
    let api = fanout::through_api(&bench.client, rv, &bench.pod, args.watchers, args.fanout_rounds).await?;
    results.record_fanout(Side::Api, "api fan-out", api);
    let raw = fanout::on_store(&bench.raw, &bench.pod, args.watchers, args.fanout_rounds).await?;
    results.record_fanout(Side::Raw, "raw fan-out", raw);
    Ok(())
}

/// A cell of latencies only (no rate): p50 and p99 of `times` (with few runs, p99 is the slowest).
fn latency_cell(mut times: Vec<Duration>) -> Cell {
    times.sort_unstable();
    let ms = |p| percentile(&times, p).map_or(f64::NAN, |d: Duration| d.as_secs_f64() * 1e3);
    Cell {
        ops_per_sec: None,
        p50_ms: ms(0.50),
        p99_ms: ms(0.99),
    }
}
