//! Rollouts on the one-binary cluster end to end (issue 7), with the real kubectl: `skiff server` and
//! its embedded node in a network namespace of the test's own (see `skiff_tests::cluster`), a
//! Deployment of busybox httpd replicas behind a Service, and requests to the Service's ClusterIP from
//! inside the node's namespace.
//!
//! - a rolling update under continuous requests loses none of them (readiness probes, a preStop
//!   pause, maxUnavailable 0), and the new version answers at the end;
//! - `rollout undo`, and `scale --replicas=0` then 3;
//! - the server (every component, the node too) SIGKILLed in the middle of a rollout and started
//!   again: the rollout completes with exactly the desired pods, and the containers that ran before
//!   are adopted, not restarted;
//! - cluster DNS from inside a pod (`kubectl exec … nslookup`).
//!
//! Needs root (CI runs as root); skipped otherwise. Run with `--test-threads=1`: each test runs a
//! whole cluster.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::Value;
use skiff_tests::{
    cluster::{Cluster, NODE_NAME, enter_netns, http_get_once},
    node::is_root,
};

/// The Deployment `web` (busybox httpd answering `version $VERSION pod $POD_NAME`, ready when it
/// answers, gone at once on SIGTERM, a preStop pause as users write them) and its Service.
fn manifest(replicas: u32, min_ready_seconds: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{ app: web }}
spec:
  replicas: {replicas}
  minReadySeconds: {min_ready_seconds}
  selector:
    matchLabels: {{ app: web }}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{ maxSurge: 1, maxUnavailable: 0 }}
  template:
    metadata:
      labels: {{ app: web }}
    spec:
      terminationGracePeriodSeconds: 15
      containers:
      - name: httpd
        image: busybox
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c"]
        args:
        # Like real servers, it stops at SIGTERM (httpd as PID 1 would ignore it).
        - echo "version $VERSION pod $POD_NAME" > /www/index.html; httpd -f -p 8080 -h /www &
          trap 'kill $!; exit 0' TERM; wait
        env:
        - {{ name: VERSION, value: v1 }}
        - name: POD_NAME
          valueFrom:
            fieldRef: {{ fieldPath: metadata.name }}
        ports:
        - {{ name: http, containerPort: 8080 }}
        readinessProbe:
          httpGet: {{ path: /, port: http }}
          periodSeconds: 1
        lifecycle:
          preStop:
            exec:
              command: ["sleep", "3"]
        volumeMounts:
        - {{ name: www, mountPath: /www }}
      volumes:
      - name: www
        emptyDir: {{}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  labels: {{ app: web }}
spec:
  selector: {{ app: web }}
  ports:
  - {{ name: http, port: 80, targetPort: http }}
"#
    )
}

/// The strategic merge patch that sets the template's VERSION (and so starts a rollout).
fn version_patch(version: &str) -> String {
    format!(
        r#"{{"spec":{{"template":{{"spec":{{"containers":[{{"name":"httpd","env":[{{"name":"VERSION","value":"{version}"}}]}}]}}}}}}}}"#
    )
}

/// Starts a cluster, applies [`manifest`] and waits for the rollout and the Service VIP.
async fn cluster_with_web(tag: &str, replicas: u32, min_ready_seconds: u32) -> (Cluster, SocketAddr) {
    let cluster = Cluster::start(tag).await;
    cluster.ok(
        &["apply", "-f", "-"],
        Some(&manifest(replicas, min_ready_seconds)),
    );
    cluster.ok(
        &[
            "wait",
            "--for=condition=Ready",
            &format!("node/{NODE_NAME}"),
            "--timeout=30s",
        ],
        None,
    );
    cluster.rolled_out("web", 90);
    let vip: SocketAddr = format!("{}:80", cluster.cluster_ip("web"))
        .parse()
        .expect("ClusterIP");
    (cluster, vip)
}

/// Requests from inside the node's namespace, each on a connection of its own.
fn get_from_node(cluster: &Cluster, vip: SocketAddr, n: usize) -> Vec<Result<String, String>> {
    let netns = cluster.netns.path();
    std::thread::spawn(move || {
        enter_netns(&netns).expect("setns");
        (0..n).map(|_| http_get_once(vip)).collect()
    })
    .join()
    .expect("client thread")
}

/// Waits until `n` requests in a row are answered and every answer contains `text`.
async fn answers_with(cluster: &Cluster, vip: SocketAddr, text: &str, within: Duration) {
    skiff_tests::eventually(
        &format!("{n} answers in a row from {vip} with {text:?}", n = 10),
        within,
        || async {
            get_from_node(cluster, vip, 10)
                .iter()
                .all(|r| r.as_ref().is_ok_and(|body| body.contains(text)))
                .then_some(())
        },
    )
    .await;
}

/// Every request of a [`Client`]: when it started (since the client did) and what it got.
type Requests = Vec<(Duration, Result<String, String>)>;

/// A client asking the Service in a loop (a thread inside the node's namespace) until stopped.
struct Client {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<Requests>>,
}

impl Client {
    fn start(cluster: &Cluster, vip: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let netns = cluster.netns.path();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            enter_netns(&netns).expect("setns");
            let started = Instant::now();
            let mut results = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                results.push((started.elapsed(), http_get_once(vip)));
                std::thread::sleep(Duration::from_millis(20));
            }
            results
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the loop; every request with when it started and what it got.
    fn finish(mut self) -> Requests {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().expect("client").join().expect("client thread")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The pods of `app=web` as JSON.
fn web_pods(cluster: &Cluster) -> Vec<Value> {
    let out = cluster.ok(&["get", "pods", "-l", "app=web", "-o", "json"], None);
    let list: Value = serde_json::from_str(&out).expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn owner(pod: &Value) -> String {
    pod["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .unwrap_or("(none)")
        .to_owned()
}

fn is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn terminating(pod: &Value) -> bool {
    !pod["metadata"]["deletionTimestamp"].is_null()
}

/// A pod's container as its status says: (containerID, restartCount, when it started). The id
/// names the container slot (pod uid and name), so the start time tells a restarted one apart.
fn container_of(pod: &Value) -> (String, i64, String) {
    let status = &pod["status"]["containerStatuses"][0];
    (
        status["containerID"].as_str().unwrap_or_default().to_owned(),
        status["restartCount"].as_i64().unwrap_or(-1),
        status["state"]["running"]["startedAt"]
            .as_str()
            .unwrap_or("(not running)")
            .to_owned(),
    )
}

fn name(pod: &Value) -> String {
    pod["metadata"]["name"].as_str().unwrap_or_default().to_owned()
}

/// The name of the ReplicaSet of Deployment web whose template has `VERSION=version`.
fn replica_set_of(cluster: &Cluster, version: &str) -> Option<String> {
    let out = cluster.ok(&["get", "replicasets", "-l", "app=web", "-o", "json"], None);
    let list: Value = serde_json::from_str(&out).expect("replicaset list");
    list["items"].as_array()?.iter().find_map(|rs| {
        let env = rs["spec"]["template"]["spec"]["containers"][0]["env"].as_array()?;
        env.iter()
            .any(|e| e["name"] == "VERSION" && e["value"] == version)
            .then(|| rs["metadata"]["name"].as_str().map(str::to_owned))?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_loses_no_request() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let started = Instant::now();
    let (cluster, vip) = cluster_with_web("e2e-roll", 3, 0).await;
    // Every replica behind the VIP before the clients start.
    skiff_tests::eventually("three replicas answer", Duration::from_secs(20), || async {
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for body in get_from_node(&cluster, vip, 30).into_iter().flatten() {
            *seen.entry(body).or_default() += 1;
        }
        (seen.len() == 3).then_some(())
    })
    .await;

    let client = Client::start(&cluster, vip);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let patched_at = Instant::now();
    cluster.ok(&["patch", "deployment", "web", "-p", &version_patch("v2")], None);
    cluster.rolled_out("web", 120);
    let rolled_in = patched_at.elapsed();
    // The old pods finish terminating (their preStop pause, then SIGTERM) under the client's load.
    skiff_tests::eventually("the old pods are gone", Duration::from_secs(40), || async {
        let pods = web_pods(&cluster);
        (pods.len() == 3 && pods.iter().all(|p| !terminating(p))).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let results = client.finish();

    let failed: Vec<String> = results
        .iter()
        .filter_map(|(at, r)| r.as_ref().err().map(|e| format!("{:.2}s: {e}", at.as_secs_f64())))
        .collect();
    let mut versions: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, body) in &results {
        if let Ok(body) = body {
            let version = if body.contains("version v2") {
                "v2"
            } else if body.contains("version v1") {
                "v1"
            } else {
                "other"
            };
            *versions.entry(version).or_default() += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} requests failed during the rollout: {failed:?}\nserver log (end):\n{}",
        failed.len(),
        results.len(),
        cluster.log_tail(80)
    );
    assert!(results.len() > 100, "only {} requests", results.len());
    assert_eq!(versions.get("other"), None, "{versions:?}");
    assert!(
        versions.contains_key("v1") && versions.contains_key("v2"),
        "{versions:?}"
    );
    let last = results.last().and_then(|(_, r)| r.as_ref().ok()).expect("last");
    assert!(last.contains("version v2"), "the last answer: {last}");
    answers_with(&cluster, vip, "version v2", Duration::from_secs(10)).await;
    eprintln!(
        "rolled out in {rolled_in:?} under {} requests ({versions:?}), none failed; test took {:?}",
        results.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_scale_to_zero_and_back() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let started = Instant::now();
    let (cluster, vip) = cluster_with_web("e2e-undo", 3, 0).await;
    let images = |cluster: &Cluster| -> Vec<String> {
        web_pods(cluster)
            .iter()
            .filter(|p| !terminating(p))
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    };
    let deployment_image = |cluster: &Cluster| {
        cluster.ok(
            &[
                "get",
                "deployment",
                "web",
                "-o",
                "jsonpath={.spec.template.spec.containers[0].image}",
            ],
            None,
        )
    };

    // A new image (the images dir maps busybox:v2 to the same busybox), then back.
    cluster.ok(&["set", "image", "deployment/web", "httpd=busybox:v2"], None);
    cluster.rolled_out("web", 120);
    assert_eq!(deployment_image(&cluster), "busybox:v2");
    skiff_tests::eventually("three pods of busybox:v2", Duration::from_secs(40), || async {
        (images(&cluster) == ["busybox:v2"; 3]).then_some(())
    })
    .await;
    let history = cluster.ok(&["rollout", "history", "deployment/web"], None);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    cluster.ok(&["rollout", "undo", "deployment/web"], None);
    cluster.rolled_out("web", 120);
    assert_eq!(deployment_image(&cluster), "busybox");
    skiff_tests::eventually("three pods of busybox again", Duration::from_secs(40), || async {
        (images(&cluster) == ["busybox"; 3]).then_some(())
    })
    .await;
    let revision = cluster.ok(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
        ],
        None,
    );
    assert_eq!(revision, "3", "the undo is revision 3");
    answers_with(&cluster, vip, "version v1", Duration::from_secs(15)).await;

    // Scale to 0: no pod, and the VIP refuses; then back to 3: it answers again.
    cluster.ok(&["scale", "deployment/web", "--replicas=0"], None);
    cluster.rolled_out("web", 60);
    skiff_tests::eventually("no pods", Duration::from_secs(40), || async {
        web_pods(&cluster).is_empty().then_some(())
    })
    .await;
    skiff_tests::eventually("the VIP refuses", Duration::from_secs(10), || async {
        get_from_node(&cluster, vip, 1)[0].is_err().then_some(())
    })
    .await;
    cluster.ok(&["scale", "deployment/web", "--replicas=3"], None);
    cluster.rolled_out("web", 120);
    skiff_tests::eventually("three ready pods", Duration::from_secs(30), || async {
        let pods = web_pods(&cluster);
        (pods.len() == 3 && pods.iter().all(is_ready)).then_some(())
    })
    .await;
    answers_with(&cluster, vip, "version v1", Duration::from_secs(15)).await;
    eprintln!("test took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_survives_a_sigkill_of_the_server() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let started = Instant::now();
    // minReadySeconds stretches the rollout, so the kill lands in its middle.
    let (mut cluster, vip) = cluster_with_web("e2e-kill", 3, 4).await;
    assert_eq!(web_pods(&cluster).len(), 3);

    cluster.ok(&["patch", "deployment", "web", "-p", &version_patch("v2")], None);
    // The middle of the rollout: a new pod ready (an old one on its way out), not all of them.
    let new_rs = skiff_tests::eventually("the new ReplicaSet", Duration::from_secs(20), || async {
        replica_set_of(&cluster, "v2")
    })
    .await;
    let running_new = skiff_tests::eventually(
        "a ready pod of the new ReplicaSet and an old one on its way out",
        Duration::from_secs(60),
        || async {
            let pods = web_pods(&cluster);
            let ready: BTreeMap<String, (String, i64, String)> = pods
                .iter()
                .filter(|p| owner(p) == new_rs && is_ready(p) && !terminating(p))
                .map(|p| (name(p), container_of(p)))
                .collect();
            let old_running = pods
                .iter()
                .filter(|p| owner(p) != new_rs && !terminating(p))
                .count();
            (!ready.is_empty() && ready.len() < 3 && old_running < 3).then_some(ready)
        },
    )
    .await;
    let killed_at = Instant::now();
    cluster.kill_and_restart().await;
    let back_in = killed_at.elapsed();

    cluster.rolled_out("web", 120);
    skiff_tests::eventually(
        "exactly three pods, all of the new ReplicaSet",
        Duration::from_secs(60),
        || async {
            let pods = web_pods(&cluster);
            (pods.len() == 3 && pods.iter().all(|p| owner(p) == new_rs && !terminating(p))).then_some(())
        },
    )
    .await;
    let pods = web_pods(&cluster);
    let mut by_owner: BTreeMap<String, usize> = BTreeMap::new();
    for p in &pods {
        *by_owner.entry(owner(p)).or_default() += 1;
    }
    assert_eq!(by_owner, BTreeMap::from([(new_rs.clone(), 3)]), "pods by owner");
    let status = cluster.ok(
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.status.updatedReplicas} {.status.readyReplicas} {.status.availableReplicas}",
        ],
        None,
    );
    assert_eq!(
        status, "3 3 3 3 3",
        "spec.replicas and status replicas/updated/ready/available"
    );
    let replica_sets = cluster.ok(
        &[
            "get",
            "replicasets",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.spec.replicas}/{.status.replicas} {end}",
        ],
        None,
    );
    let mut sets: Vec<&str> = replica_sets.split_whitespace().collect();
    sets.sort();
    let old_rs = replica_set_of(&cluster, "v1").expect("the old ReplicaSet");
    let mut expected = vec![format!("{new_rs}=3/3"), format!("{old_rs}=0/0")];
    expected.sort();
    assert_eq!(sets, expected, "ReplicaSets");

    // The new pods that ran before the kill run the same containers, never restarted.
    let now: BTreeMap<String, (String, i64, String)> =
        pods.iter().map(|p| (name(p), container_of(p))).collect();
    for (pod, container) in &running_new {
        assert_eq!(
            now.get(pod),
            Some(container),
            "pod {pod} kept its container (id, restartCount, startedAt) across the restart; now {now:?}"
        );
    }
    for (pod, (_, restarts, _)) in &now {
        assert_eq!(*restarts, 0, "pod {pod} never restarted its container: {now:?}");
    }
    answers_with(&cluster, vip, "version v2", Duration::from_secs(20)).await;
    eprintln!(
        "ready again {back_in:?} after the SIGKILL; adopted {running_new:?}; test took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolve_services_through_cluster_dns() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let started = Instant::now();
    let (cluster, _vip) = cluster_with_web("e2e-dns", 1, 0).await;
    let ip = cluster.cluster_ip("web");
    let pod = web_pods(&cluster)
        .iter()
        .find(|p| is_ready(p) && !terminating(p))
        .map(name)
        .expect("a ready pod");
    let resolv = cluster.ok(&["exec", &pod, "--", "cat", "/etc/resolv.conf"], None);
    // busybox's nslookup (1.29 on) asks every search domain and exits 1 when any of them is
    // NXDOMAIN, even once one answered (why Kubernetes' DNS debugging page uses busybox:1.28): what
    // counts is the answer it prints. It applies the search list only to names without a dot.
    let nslookup = |name: &str| {
        let (success, out, err) =
            skiff_tests::kubectl(cluster.server(), &["exec", &pod, "--", "nslookup", name], None);
        (success, out + &err)
    };
    let fqdn = "web.default.svc.cluster.local";
    for name in ["web", fqdn, "web.default.svc.cluster.local."] {
        let (_, out) = nslookup(name);
        let answer = out
            .split_once(&format!("Name:\t{fqdn}\n"))
            .map(|(_, a)| a.lines().next().unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(
            answer,
            format!("Address: {ip}"),
            "nslookup {name} gives {fqdn}'s ClusterIP {ip}:\n{out}\nresolv.conf:\n{resolv}"
        );
    }
    // A name in another namespace: the kube-dns Service itself.
    let (_, out) = nslookup("kube-dns.kube-system.svc.cluster.local");
    assert!(
        out.contains("Name:\tkube-dns.kube-system.svc.cluster.local\nAddress: 10.96.0.10"),
        "a Service of another namespace resolves:\n{out}"
    );
    // A headless Service: its name gives the ready pods' IPs, and a pod with hostname and subdomain
    // gets a name of its own.
    let headless = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples/headless.yaml"),
    )
    .expect("manifests/examples/headless.yaml");
    cluster.ok(&["apply", "-f", "-"], Some(&headless));
    cluster.ok(
        &["wait", "--for=condition=Ready", "pod/db-0", "--timeout=60s"],
        None,
    );
    let db_ip = cluster.ok(&["get", "pod", "db-0", "-o", "jsonpath={.status.podIP}"], None);
    for name in [
        "db.default.svc.cluster.local",
        "db-0.db.default.svc.cluster.local",
    ] {
        // The EndpointSlice follows the pod's readiness; the DNS follows the slice within a second.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, out) = nslookup(name);
            if out.contains(&format!("Name:\t{name}\nAddress: {db_ip}")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} gives db-0's IP {db_ip}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let (success, out) = nslookup("no-such-service.default.svc.cluster.local.");
    assert!(
        !success && !out.contains("Name:") && out.contains("NXDOMAIN"),
        "an unknown name does not resolve:\n{out}"
    );

    // The other examples on a real node: a Job's pods run to completion; a DaemonSet's pod runs on
    // the node and knows which.
    for example in ["job.yaml", "daemonset.yaml"] {
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../manifests/examples")
                .join(example),
        )
        .expect("an example");
        cluster.ok(&["apply", "-f", "-"], Some(&text));
    }
    cluster.ok(
        &[
            "wait",
            "--for=condition=complete",
            "job/countdown",
            "--timeout=90s",
        ],
        None,
    );
    assert_eq!(
        cluster.ok(
            &["get", "job", "countdown", "-o", "jsonpath={.status.succeeded}"],
            None
        ),
        "5"
    );
    let logs = cluster.ok(&["logs", "job/countdown"], None);
    assert!(logs.contains("3\n2\n1\ndone on countdown-"), "{logs}");
    cluster.ok(
        &["rollout", "status", "daemonset/node-logger", "--timeout=60s"],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let logs = cluster
            .try_ok(&["logs", "daemonset/node-logger"])
            .unwrap_or_default();
        if logs.contains(&format!("alive on {NODE_NAME}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the DaemonSet's pod never logged: {logs}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("test took {:?}", started.elapsed());
}
