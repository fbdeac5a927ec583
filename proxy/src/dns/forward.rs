//! Forwarding of names outside the cluster to the node's upstream resolvers, with a small cache:
//! CoreDNS's `forward . /etc/resolv.conf` and `cache 30` from the default Corefile.
//!
//! A query goes to one upstream over UDP with a fresh random id (and over TCP when the UDP answer
//! comes back truncated); when an upstream does not answer in time the next one is tried, and when
//! none does the client gets SERVFAIL. Answers are cached per (name, type, class) for the smallest
//! TTL among their records (negative answers: the SOA's, RFC 2308), at most `max_ttl` seconds
//! (CoreDNS's `cache 30`); a cached answer is served with its TTLs counted down.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hickory_proto::{
    op::{Message, MessageType, Query, ResponseCode},
    rr::{DNSClass, Name, RData, RecordType},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpStream, UdpSocket},
};

/// The forwarding half of the cluster DNS.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    timeout: Duration,
    next: AtomicUsize,
    cache: Mutex<Cache>,
}

impl Forwarder {
    /// Forwards to `upstreams` (tried in turn, each for `timeout`), caching up to `capacity`
    /// answers for at most `max_ttl` seconds.
    pub fn new(upstreams: Vec<SocketAddr>, timeout: Duration, capacity: usize, max_ttl: u32) -> Self {
        Self {
            upstreams,
            timeout,
            next: AtomicUsize::new(0),
            cache: Mutex::new(Cache {
                entries: HashMap::new(),
                capacity,
                max_ttl,
            }),
        }
    }

    /// Whether there is anywhere to forward to.
    pub fn has_upstreams(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// The answer to `req` from the cache or an upstream, with `req`'s id and question; `None`
    /// when no upstream answered.
    pub async fn forward(&self, req: &Message) -> Option<Message> {
        let query = req.queries.first()?;
        let key = CacheKey::of(query);
        let cached = self.cache.lock().ok()?.get(&key);
        let mut answer = match cached {
            Some(answer) => answer,
            None => {
                let answer = self.exchange(req).await?;
                if let Ok(mut cache) = self.cache.lock() {
                    cache.put(key, &answer);
                }
                answer
            }
        };
        answer.metadata.id = req.metadata.id;
        answer.queries = req.queries.clone();
        Some(answer)
    }

    /// A recursive lookup of `name`/`qtype` (an ExternalName's CNAME target).
    pub async fn lookup(&self, name: Name, qtype: RecordType) -> Option<Message> {
        let mut req = Message::query();
        req.metadata.recursion_desired = true;
        req.add_query(Query::query(name, qtype));
        self.forward(&req).await
    }

    /// Asks the upstreams in turn, starting with the next in rotation.
    async fn exchange(&self, req: &Message) -> Option<Message> {
        let n = self.upstreams.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            let upstream = self.upstreams[(start + i) % n];
            match tokio::time::timeout(self.timeout, exchange_one(upstream, req)).await {
                Ok(Ok(answer)) => return Some(answer),
                Ok(Err(e)) => tracing::debug!(%upstream, error = %e, "upstream DNS failed"),
                Err(_) => tracing::debug!(%upstream, "upstream DNS timed out"),
            }
        }
        None
    }
}

/// One exchange with one upstream: UDP, then TCP if the UDP answer is truncated.
async fn exchange_one(upstream: SocketAddr, req: &Message) -> std::io::Result<Message> {
    let mut query = req.clone();
    // A fresh random id per upstream query (hickory draws one for every new query message).
    query.metadata.id = Message::query().metadata.id;
    let bytes = query.to_vec().map_err(std::io::Error::other)?;
    let local: SocketAddr = match upstream.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(upstream).await?;
    socket.send(&bytes).await?;
    let mut buf = vec![0u8; 65535];
    let answer = loop {
        let n = socket.recv(&mut buf).await?;
        // Anything that is not the answer to this query (a stale or forged packet) is ignored.
        if let Ok(answer) = Message::from_vec(&buf[..n])
            && answers(&query, &answer)
        {
            break answer;
        }
    };
    if !answer.metadata.truncation {
        return Ok(answer);
    }
    let mut stream = TcpStream::connect(upstream).await?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await? as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await?;
    let answer = Message::from_vec(&body).map_err(std::io::Error::other)?;
    if !answers(&query, &answer) {
        return Err(std::io::Error::other("TCP answer does not match the query"));
    }
    Ok(answer)
}

/// Whether `answer` is the response to `query`: same id, a response, the same question.
fn answers(query: &Message, answer: &Message) -> bool {
    answer.metadata.id == query.metadata.id
        && answer.metadata.message_type == MessageType::Response
        && match (query.queries.first(), answer.queries.first()) {
            (Some(q), Some(a)) => q.query_type() == a.query_type() && q.name().eq_ignore_root(a.name()),
            (None, None) => true,
            _ => false,
        }
}

/// The upstream resolvers named in a resolv.conf (`nameserver` lines, port 53). A file that names
/// only systemd-resolved's stub (127.0.0.53) is replaced by the real list systemd-resolved keeps in
/// `/run/systemd/resolve/resolv.conf`, as Kubernetes' advice for the kubelet's `--resolv-conf` and
/// CoreDNS's `forward` goes: the stub is only reachable from the node's own network namespace, and
/// a node whose stub forwards to the cluster DNS would make a loop.
pub fn upstreams_from_resolv_conf(path: &Path) -> std::io::Result<Vec<SocketAddr>> {
    let text = std::fs::read_to_string(path)?;
    let servers = parse_resolv_conf(&text);
    let stub: IpAddr = Ipv4Addr::new(127, 0, 0, 53).into();
    if !servers.is_empty() && servers.iter().all(|s| s.ip() == stub) {
        let real = Path::new("/run/systemd/resolve/resolv.conf");
        if path != real
            && let Ok(text) = std::fs::read_to_string(real)
        {
            return Ok(parse_resolv_conf(&text));
        }
    }
    Ok(servers)
}

/// The `nameserver` addresses of resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A link-local IPv6 server may carry a zone (`fe80::1%eth0`), which we cannot use.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: Name,
    qtype: RecordType,
    class: DNSClass,
}

impl CacheKey {
    fn of(query: &Query) -> Self {
        Self {
            name: query.name().to_lowercase(),
            qtype: query.query_type(),
            class: query.query_class(),
        }
    }
}

#[derive(Debug)]
struct Entry {
    answer: Message,
    stored: Instant,
    ttl: u32,
}

#[derive(Debug)]
struct Cache {
    entries: HashMap<CacheKey, Entry>,
    capacity: usize,
    max_ttl: u32,
}

impl Cache {
    /// A cached answer with every TTL set to what is left of the entry's (as CoreDNS's cache does).
    fn get(&mut self, key: &CacheKey) -> Option<Message> {
        let entry = self.entries.get(key)?;
        let age = entry.stored.elapsed().as_secs() as u32;
        if age >= entry.ttl {
            self.entries.remove(key);
            return None;
        }
        let left = entry.ttl - age;
        let mut answer = entry.answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            r.ttl = r.ttl.min(left);
        }
        Some(answer)
    }

    fn put(&mut self, key: CacheKey, answer: &Message) {
        let Some(ttl) = cache_ttl(answer).map(|t| t.min(self.max_ttl)) else {
            return;
        };
        if ttl == 0 || self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries
                .retain(|_, e| e.stored.elapsed().as_secs() < u64::from(e.ttl));
        }
        if self.entries.len() >= self.capacity {
            // Still full of live entries: drop an arbitrary one (a small cache, not an LRU).
            if let Some(victim) = self.entries.keys().next().cloned() {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(
            key,
            Entry {
                answer: answer.clone(),
                stored: Instant::now(),
                ttl,
            },
        );
    }
}

/// How long an answer may be cached: the smallest answer TTL, or for NXDOMAIN/NODATA the SOA's
/// negative TTL (RFC 2308); `None` for errors, truncated answers and negative answers without SOA.
fn cache_ttl(answer: &Message) -> Option<u32> {
    if answer.metadata.truncation {
        return None;
    }
    match answer.metadata.response_code {
        ResponseCode::NoError if !answer.answers.is_empty() => answer.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => {
            answer.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })
        }
        _ => None,
    }
}
