//! A probe's settings (with upstream's defaults) and the counting that turns single probe outcomes
//! into a result: `successThreshold` successes in a row to succeed, `failureThreshold` failures in a
//! row to fail, as upstream's prober worker (pkg/kubelet/prober/worker.go) counts them.

use std::time::Duration;

use serde_json::Value;

/// Which probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    /// `livenessProbe`: the container is restarted when it fails.
    Liveness,
    /// `readinessProbe`: the container is ready only while it succeeds.
    Readiness,
    /// `startupProbe`: the others wait until it succeeded; the container is restarted when it fails.
    Startup,
}

impl ProbeKind {
    /// All kinds, with the pod spec field of each.
    pub const ALL: [(ProbeKind, &'static str); 3] = [
        (ProbeKind::Liveness, "livenessProbe"),
        (ProbeKind::Readiness, "readinessProbe"),
        (ProbeKind::Startup, "startupProbe"),
    ];

    /// The name upstream's events use (`Liveness probe failed: …`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// What a container has before its first probe (upstream's `initialValue`): live, not ready,
    /// not known to have started.
    pub fn initial(self) -> Outcome {
        match self {
            ProbeKind::Liveness => Outcome::Success,
            ProbeKind::Readiness => Outcome::Failure,
            ProbeKind::Startup => Outcome::Unknown,
        }
    }
}

/// A probe result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It passed.
    Success,
    /// It failed.
    Failure,
    /// Not known yet (a startup probe before it ran).
    Unknown,
}

/// What a probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run a command in the container; exit 0 passes.
    Exec(Vec<String>),
    /// An HTTP GET; 200–399 passes.
    HttpGet {
        /// `HTTP` or `HTTPS`.
        scheme: String,
        /// The host (the pod IP when empty).
        host: Option<String>,
        /// The port.
        port: u16,
        /// The path.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A TCP connect; connecting passes.
    TcpSocket {
        /// The host (the pod IP when empty).
        host: Option<String>,
        /// The port.
        port: u16,
    },
    /// A gRPC health check (`grpc.health.v1.Health/Check`); `SERVING` passes.
    Grpc {
        /// The host (the pod IP when empty).
        host: Option<String>,
        /// The port.
        port: u16,
        /// The service asked about (`""`: the server as a whole).
        service: String,
    },
    /// A probe this kubelet cannot run: reported as a probe error, never counted.
    Unsupported(String),
}

/// One probe of a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeSpec {
    /// What it does.
    pub action: Action,
    /// Wait this long after the container started before probing.
    pub initial_delay: Duration,
    /// How often.
    pub period: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
    /// Successes in a row to pass.
    pub success_threshold: u32,
    /// Failures in a row to fail.
    pub failure_threshold: u32,
    /// The probe's own `terminationGracePeriodSeconds` (liveness and startup).
    pub termination_grace: Option<i64>,
}

/// A port as a probe names it: a number, or the name of one of `container`'s ports.
fn port(v: &Value, container: &Value) -> Result<u16, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .map(|p| p as u16)
            .ok_or_else(|| format!("invalid port {n}")),
        Value::String(s) => match s.parse::<u16>() {
            Ok(p) => Ok(p),
            Err(_) => container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == s.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .map(|p| p as u16)
                .ok_or_else(|| format!("couldn't find port: {s} in {}", container["name"])),
        },
        _ => Err("no port".into()),
    }
}

impl ProbeSpec {
    /// The probe `probe` (JSON) of `container`, with upstream's defaults for what it leaves out
    /// (period 10 s, timeout 1 s, thresholds 1 and 3).
    pub fn parse(probe: &Value, container: &Value) -> Self {
        let int = |field: &str, default: u64, min: u64| probe[field].as_u64().unwrap_or(default).max(min);
        let host = |v: &Value| v["host"].as_str().filter(|h| !h.is_empty()).map(str::to_owned);
        let action = if let Some(cmd) = probe["exec"]["command"].as_array() {
            Action::Exec(cmd.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        } else if probe["httpGet"].is_object() {
            let h = &probe["httpGet"];
            match port(&h["port"], container) {
                Ok(port) => {
                    let path = h["path"].as_str().unwrap_or("/");
                    Action::HttpGet {
                        scheme: h["scheme"].as_str().unwrap_or("HTTP").to_ascii_uppercase(),
                        host: host(h),
                        port,
                        path: if path.starts_with('/') {
                            path.to_owned()
                        } else {
                            format!("/{path}")
                        },
                        headers: h["httpHeaders"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| {
                                Some((x["name"].as_str()?.to_owned(), x["value"].as_str()?.to_owned()))
                            })
                            .collect(),
                    }
                }
                Err(e) => Action::Unsupported(e),
            }
        } else if probe["tcpSocket"].is_object() {
            let t = &probe["tcpSocket"];
            match port(&t["port"], container) {
                Ok(port) => Action::TcpSocket { host: host(t), port },
                Err(e) => Action::Unsupported(e),
            }
        } else if probe["grpc"].is_object() {
            let g = &probe["grpc"];
            match g["port"].as_u64() {
                Some(port) => Action::Grpc {
                    host: None,
                    port: port as u16,
                    service: g["service"].as_str().unwrap_or_default().to_owned(),
                },
                None => Action::Unsupported("a gRPC probe needs a port number".into()),
            }
        } else {
            Action::Unsupported("the probe has no handler".into())
        };
        Self {
            action,
            initial_delay: Duration::from_secs(int("initialDelaySeconds", 0, 0)),
            period: Duration::from_secs(int("periodSeconds", 10, 1)),
            timeout: Duration::from_secs(int("timeoutSeconds", 1, 1)),
            success_threshold: int("successThreshold", 1, 1) as u32,
            failure_threshold: int("failureThreshold", 3, 1) as u32,
            termination_grace: probe["terminationGracePeriodSeconds"].as_i64(),
        }
    }
}

/// The result of one probe as it is counted.
#[derive(Clone, Debug)]
pub struct Counter {
    kind: ProbeKind,
    success_threshold: u32,
    failure_threshold: u32,
    /// The last outcome and how many times in a row it came.
    last: Option<Outcome>,
    run: u32,
    /// The result others see.
    pub result: Outcome,
    /// A liveness or startup probe that failed stops until the container is restarted.
    pub on_hold: bool,
}

impl Counter {
    /// A counter at `kind`'s initial result.
    pub fn new(kind: ProbeKind, spec: &ProbeSpec) -> Self {
        Self {
            kind,
            success_threshold: spec.success_threshold,
            failure_threshold: spec.failure_threshold,
            last: None,
            run: 0,
            result: kind.initial(),
            on_hold: false,
        }
    }

    /// Back to the initial result (a new container instance).
    pub fn reset(&mut self) {
        self.last = None;
        self.run = 0;
        self.result = self.kind.initial();
        self.on_hold = false;
    }

    /// Counts one probe's `outcome`; returns whether the result changed.
    pub fn observe(&mut self, outcome: Outcome) -> bool {
        if outcome == Outcome::Unknown {
            return false;
        }
        if self.last == Some(outcome) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(outcome);
            self.run = 1;
        }
        let threshold = match outcome {
            Outcome::Success => self.success_threshold,
            _ => self.failure_threshold,
        };
        if self.run < threshold {
            return false;
        }
        let changed = self.result != outcome;
        self.result = outcome;
        if outcome == Outcome::Failure && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            // Upstream stops probing until the container restarts, and starts counting afresh.
            self.on_hold = true;
            self.run = 0;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn probes_parse_with_upstream_defaults() {
        let c = json!({ "name": "web", "ports": [{ "name": "http", "containerPort": 8080 }] });
        let p = ProbeSpec::parse(
            &json!({ "httpGet": { "port": "http", "path": "healthz",
            "httpHeaders": [{ "name": "X-A", "value": "1" }] } }),
            &c,
        );
        assert_eq!(
            p.action,
            Action::HttpGet {
                scheme: "HTTP".into(),
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-A".into(), "1".into())]
            }
        );
        assert_eq!(
            (
                p.initial_delay,
                p.period,
                p.timeout,
                p.success_threshold,
                p.failure_threshold
            ),
            (
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(1),
                1,
                3
            )
        );
        let t = ProbeSpec::parse(
            &json!({ "tcpSocket": { "port": 53 }, "periodSeconds": 2, "failureThreshold": 1 }),
            &c,
        );
        assert_eq!(t.action, Action::TcpSocket { host: None, port: 53 });
        assert_eq!((t.period, t.failure_threshold), (Duration::from_secs(2), 1));
        let bad = ProbeSpec::parse(&json!({ "tcpSocket": { "port": "nope" } }), &c);
        assert!(matches!(bad.action, Action::Unsupported(_)));
        let g = ProbeSpec::parse(&json!({ "grpc": { "port": 9090, "service": "db" } }), &c);
        assert_eq!(
            g.action,
            Action::Grpc {
                host: None,
                port: 9090,
                service: "db".into()
            }
        );
        let e = ProbeSpec::parse(&json!({ "exec": { "command": ["cat", "/tmp/ok"] } }), &c);
        assert_eq!(e.action, Action::Exec(vec!["cat".into(), "/tmp/ok".into()]));
    }

    fn spec(success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            success_threshold: success,
            failure_threshold: failure,
            ..ProbeSpec::parse(&json!({ "exec": { "command": ["true"] } }), &json!({}))
        }
    }

    #[test]
    fn readiness_needs_its_thresholds_in_a_row() {
        let mut c = Counter::new(ProbeKind::Readiness, &spec(2, 3));
        assert_eq!(c.result, Outcome::Failure, "not ready before the first probe");
        assert!(!c.observe(Outcome::Success), "one success of two");
        assert!(c.observe(Outcome::Success));
        assert_eq!(c.result, Outcome::Success);
        assert!(!c.observe(Outcome::Failure) && !c.observe(Outcome::Failure));
        assert!(!c.observe(Outcome::Success), "the run of failures is broken");
        assert!(!c.observe(Outcome::Failure) && !c.observe(Outcome::Failure));
        assert!(c.observe(Outcome::Failure), "three failures in a row");
        assert_eq!(c.result, Outcome::Failure);
        assert!(!c.on_hold, "readiness keeps probing");
        assert!(!c.observe(Outcome::Unknown));
    }

    #[test]
    fn liveness_failures_put_the_probe_on_hold_until_a_reset() {
        let mut c = Counter::new(ProbeKind::Liveness, &spec(1, 2));
        assert_eq!(c.result, Outcome::Success, "live until proven otherwise");
        assert!(!c.observe(Outcome::Failure));
        assert!(c.observe(Outcome::Failure));
        assert!(c.on_hold);
        c.reset();
        assert_eq!((c.result, c.on_hold), (Outcome::Success, false));
        let mut s = Counter::new(ProbeKind::Startup, &spec(1, 1));
        assert_eq!(s.result, Outcome::Unknown);
        assert!(s.observe(Outcome::Success));
        assert_eq!(s.result, Outcome::Success);
    }
}
