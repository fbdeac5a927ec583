//! The watch fan-out cells of `skiff bench api`: one event delivered to many watchers at once.
//!
//! This is what a cluster does whenever a pod changes: every kubelet, controller and `kubectl get -w`
//! watching pods gets the event, and the slowest of them decides when the cluster has reacted. So the
//! figure is the time from the start of the write to the moment the **last** watcher has its event
//! (and, to show the spread, the median watcher).
//!
//! Through the API, each watcher is an HTTP watch (`?watch=true&resourceVersion=<rv>`) on one
//! namespace's pods, its own TLS connection, served by the watch cache; on the raw side each is a
//! `Store::watch` on the same prefix of a raw SQLite store. Watcher tasks only look for the pod's name
//! in what arrives (no JSON parsing), so the client adds as little as it can to the server's work.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{AsyncBufReadExt as _, StreamExt as _, TryStreamExt as _, stream::BoxStream};
use skiff_apiserver::storage::{Revision, Store};
use tokio::{sync::mpsc, task::JoinHandle};

use super::{PodBody, WATCH_NS, pod_key, post};

/// Watch requests in flight while opening them (each is a TLS handshake on a new connection).
const OPEN_CONCURRENCY: usize = 32;
/// How long a round waits for every watcher before counting the rest as missed.
const ROUND_WAIT: Duration = Duration::from_secs(10);
/// Pause between rounds, so one round's tail does not overlap the next write.
const ROUND_GAP: Duration = Duration::from_millis(100);

/// What the rounds of one fan-out cell measured.
pub(super) struct Fanout {
    /// Per round: write start → the last watcher has the event.
    pub last: Vec<Duration>,
    /// Per round: write start → the median watcher has the event.
    pub median: Vec<Duration>,
    /// Arrivals that never came (summed over rounds).
    pub missed: usize,
}

/// `watchers` HTTP watches on [`WATCH_NS`]'s pods from `rv`, then `rounds` pods created one at a time.
pub(super) async fn through_api(
    client: &kube::Client,
    rv: Revision,
    pod: &PodBody,
    watchers: usize,
    rounds: usize,
) -> anyhow::Result<Fanout> {
    let url = format!("/api/v1/namespaces/{WATCH_NS}/pods?watch=true&resourceVersion={rv}");
    let opened = Instant::now();
    // The server registers a watch with its cache before it answers the headers, so once every
    // request has its response, every watcher is live.
    let streams: Vec<BoxStream<'static, Option<usize>>> = futures::stream::iter(0..watchers)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let reader = client
                    .request_stream(http::Request::get(&url).body(Vec::new())?)
                    .await?;
                let rounds = reader
                    .lines()
                    .map(|line| line.ok().and_then(|l| round_in_line(&l)));
                anyhow::Ok(rounds.boxed())
            }
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .try_collect()
        .await?;
    eprintln!(
        "  opened {watchers} HTTP watches in {:.1} s",
        opened.elapsed().as_secs_f64()
    );
    let path = format!("/api/v1/namespaces/{WATCH_NS}/pods");
    run_rounds(streams, rounds, |round| {
        post(client, &path, pod.with_name(&name_of(round)))
    })
    .await
}

/// `watchers` `Store::watch`es on [`WATCH_NS`]'s pod prefix of `store`, then `rounds` keys created.
pub(super) async fn on_store(
    store: &Arc<dyn Store>,
    pod: &PodBody,
    watchers: usize,
    rounds: usize,
) -> anyhow::Result<Fanout> {
    let prefix = pod_key(WATCH_NS, "");
    let from = store.current_revision().await?;
    let mut streams = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let events = store.watch(&prefix, from).await?;
        let prefix = prefix.clone();
        streams.push(
            events
                .map(move |ev| {
                    let ev = ev.ok()?;
                    ev.kv
                        .key
                        .strip_prefix(&prefix)?
                        .strip_prefix("fanout-")?
                        .parse()
                        .ok()
                })
                .boxed(),
        );
    }
    run_rounds(streams, rounds, |round| {
        let name = name_of(round);
        let (key, body) = (pod_key(WATCH_NS, &name), pod.with_name(&name));
        async move { store.create(&key, body).await }
    })
    .await
}

/// The pod a round creates.
fn name_of(round: usize) -> String {
    format!("fanout-{round}")
}

/// The round of a watch event line: the number in its `"name":"fanout-<n>"`. Only the object's own
/// name has that form (containers and env vars are named otherwise).
fn round_in_line(line: &str) -> Option<usize> {
    const MARK: &str = "\"name\":\"fanout-";
    let rest = &line[line.find(MARK)? + MARK.len()..];
    rest[..rest.find('"')?].parse().ok()
}

/// Spawns one task per watcher stream, then for each round: `write(round)`, and wait until every
/// watcher has reported that round's event.
async fn run_rounds<W, Fut, T, E>(
    streams: Vec<BoxStream<'static, Option<usize>>>,
    rounds: usize,
    write: W,
) -> anyhow::Result<Fanout>
where
    W: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let mut watchers = Watchers::spawn(streams);
    let mut fanout = Fanout {
        last: Vec::new(),
        median: Vec::new(),
        missed: 0,
    };
    for round in 0..rounds {
        let start = Instant::now();
        write(round).await.map_err(Into::into)?;
        let arrivals = watchers.collect(round, start).await;
        fanout.missed += watchers.count - arrivals.len();
        if let Some(&last) = arrivals.last() {
            fanout.last.push(last);
            fanout.median.push(arrivals[arrivals.len() / 2]);
        }
        tokio::time::sleep(ROUND_GAP).await;
    }
    anyhow::ensure!(!fanout.last.is_empty(), "no watcher saw any event");
    Ok(fanout)
}

/// The watcher tasks and the channel they report arrivals on: (round, when it arrived).
struct Watchers {
    count: usize,
    arrivals: mpsc::UnboundedReceiver<(usize, Instant)>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watchers {
    fn spawn(streams: Vec<BoxStream<'static, Option<usize>>>) -> Self {
        let (tx, arrivals) = mpsc::unbounded_channel();
        let count = streams.len();
        let tasks = streams
            .into_iter()
            .map(|mut stream| {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(item) = stream.next().await {
                        // Timed here, as soon as the watcher has it, not when the collector gets to it.
                        if let Some(round) = item {
                            let _ = tx.send((round, Instant::now()));
                        }
                    }
                })
            })
            .collect();
        Self {
            count,
            arrivals,
            tasks,
        }
    }

    /// Arrivals of `round` as offsets from `start`, sorted; fewer than [`Watchers::count`] if some did
    /// not come within [`ROUND_WAIT`].
    async fn collect(&mut self, round: usize, start: Instant) -> Vec<Duration> {
        let mut got = Vec::with_capacity(self.count);
        let deadline = tokio::time::Instant::now() + ROUND_WAIT;
        while got.len() < self.count {
            match tokio::time::timeout_at(deadline, self.arrivals.recv()).await {
                Ok(Some((r, at))) if r == round => got.push(at.saturating_duration_since(start)),
                // A straggler of an earlier round.
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        got.sort_unstable();
        got
    }
}

impl Drop for Watchers {
    /// Ends every watch (dropping a stream closes its connection or store watch).
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_is_read_from_the_object_name_only() {
        let line = r#"{"object":{"metadata":{"name":"fanout-12","namespace":"x"},"spec":{"containers":[{"name":"web"}]}},"type":"ADDED"}"#;
        assert_eq!(round_in_line(line), Some(12));
        assert_eq!(
            round_in_line(r#"{"type":"BOOKMARK","object":{"metadata":{}}}"#),
            None
        );
    }
}
