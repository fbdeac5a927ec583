//! Jobs with the real kubectl against `skiff server` and two hollow nodes. Hollow nodes keep pods
//! Running forever, so the test ends each pod itself by patching its status to Succeeded or
//! Failed, as a kubelet would. A Job of 3 completions and parallelism 2 never runs more than two
//! pods and completes after three successes (`kubectl wait --for=condition=complete`, `kubectl get
//! jobs` showing `Complete 3/3`); a Job whose pods fail beyond its backoffLimit ends Failed with
//! BackoffLimitExceeded; deleting a Job deletes its pods. An Indexed Job of 3 completions runs
//! one pod per index (annotation, label, `JOB_COMPLETION_INDEX` and hostname) and completes with
//! `completedIndexes` "0-2"; a Job with `ttlSecondsAfterFinished: 1` is deleted with its pods soon
//! after it completes. With `backoffLimitPerIndex: 0` a failed index is not run again and the Job
//! ends Failed with `FailedIndexes` once the other index succeeded.

use std::time::{Duration, Instant};

use skiff_tests::{Server, hollow_nodes, kubectl, kubectl_ok as ok, poll_until};

const WORK: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: work
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
"#;

const DOOMED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: doomed
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: doomed
        image: busybox:1.36
"#;

const INDEXED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
"#;

const PER_INDEX: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: per-index
spec:
  completionMode: Indexed
  completions: 2
  parallelism: 2
  backoffLimitPerIndex: 0
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
"#;

const SHORT_LIVED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata:
  name: short-lived
spec:
  ttlSecondsAfterFinished: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: busybox:1.36
"#;

/// The job's pods as (name, phase, being deleted).
fn pods(server: &Server, job: &str) -> Vec<(String, String, bool)> {
    let out = ok(
        server,
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}"),
            "-o",
            r#"jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{"\n"}{end}"#,
        ],
    );
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split(' ');
            let name = parts.next()?.to_owned();
            let phase = parts.next().unwrap_or("").to_owned();
            let deleting = !parts.next().unwrap_or("").is_empty();
            Some((name, phase, deleting))
        })
        .collect()
}

fn finish(server: &Server, pod: &str, phase: &str) {
    let patch = format!(r#"{{"status":{{"phase":"{phase}"}}}}"#);
    ok(
        server,
        &[
            "patch",
            "pod",
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ],
    );
}

fn condition(server: &Server, job: &str, type_: &str, field: &str) -> String {
    ok(
        server,
        &[
            "get",
            "job",
            job,
            "-o",
            &format!(r#"jsonpath={{.status.conditions[?(@.type=="{type_}")].{field}}}"#),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_fail_past_their_backoff_limit_and_take_their_pods_along() {
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let _nodes = hollow_nodes(&server, 2);
    poll_until("two nodes", Duration::from_secs(30), || {
        ok(&server, &["get", "nodes", "-o", "name"]).lines().count() == 2
    });
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(WORK));
    assert!(success, "{out}{err}");

    // Succeed one running pod at a time; never more than parallelism pods run.
    let started = Instant::now();
    let mut succeeded = 0;
    while succeeded < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "stuck at {succeeded}: {:?}",
            pods(&server, "work")
        );
        let all = pods(&server, "work");
        let active: Vec<_> = all
            .iter()
            .filter(|(_, phase, deleting)| !deleting && phase != "Succeeded" && phase != "Failed")
            .collect();
        assert!(active.len() <= 2, "more than parallelism pods active: {all:?}");
        if let Some((name, _, _)) = active.iter().find(|(_, phase, _)| phase == "Running") {
            finish(&server, name, "Succeeded");
            succeeded += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    ok(
        &server,
        &["wait", "--for=condition=complete", "job/work", "--timeout=30s"],
    );
    let row = ok(&server, &["get", "jobs", "work", "--no-headers"]);
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[..3], ["work", "Complete", "3/3"], "{row}");
    let header = ok(&server, &["get", "jobs", "-o", "wide"]);
    assert!(
        header.lines().next().unwrap_or("").split_whitespace().eq([
            "NAME",
            "STATUS",
            "COMPLETIONS",
            "DURATION",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]),
        "{header}"
    );
    assert_eq!(
        condition(&server, "work", "SuccessCriteriaMet", "reason"),
        "CompletionsReached"
    );
    assert_eq!(pods(&server, "work").len(), 3, "finished pods stay");
    assert_eq!(
        ok(
            &server,
            &["get", "job", "work", "-o", "jsonpath={.status.succeeded}"]
        ),
        "3"
    );

    // Failures beyond backoffLimit 1: the second failed pod ends the Job.
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(DOOMED));
    assert!(success, "{out}{err}");
    let started = Instant::now();
    let mut failed = 0;
    while failed < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stuck at {failed}: {:?}",
            pods(&server, "doomed")
        );
        if let Some((name, _, _)) = pods(&server, "doomed")
            .iter()
            .find(|(_, phase, deleting)| phase == "Running" && !deleting)
        {
            finish(&server, name, "Failed");
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    ok(
        &server,
        &["wait", "--for=condition=failed", "job/doomed", "--timeout=30s"],
    );
    assert_eq!(
        condition(&server, "doomed", "Failed", "reason"),
        "BackoffLimitExceeded"
    );
    let row = ok(&server, &["get", "jobs", "doomed", "--no-headers"]);
    assert!(
        row.split_whitespace().eq(["doomed", "Failed", "0/1"]
            .into_iter()
            .chain(row.split_whitespace().skip(3))),
        "{row}"
    );
    assert_eq!(
        pods(&server, "doomed").len(),
        2,
        "no pod after the limit: {:?}",
        pods(&server, "doomed")
    );

    // Deleting a Job deletes its pods.
    ok(&server, &["delete", "job", "work", "--wait=false"]);
    poll_until("the work pods gone", Duration::from_secs(30), || {
        pods(&server, "work").is_empty()
    });
}

/// The pods of `job` as JSON.
fn pod_objects(server: &Server, job: &str) -> Vec<serde_json::Value> {
    let out = ok(
        server,
        &[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-name={job}"),
            "-o",
            "json",
        ],
    );
    let list: serde_json::Value = serde_json::from_str(&out).expect("pod list");
    list["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexed_jobs_run_each_index_once_and_finished_jobs_expire_after_their_ttl() {
    const KEY: &str = "batch.kubernetes.io/job-completion-index";
    let server = Server::start(&["--disable-agent"]).await.expect("start server");
    let _nodes = hollow_nodes(&server, 2);
    poll_until("two nodes", Duration::from_secs(30), || {
        ok(&server, &["get", "nodes", "-o", "name"]).lines().count() == 2
    });
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(INDEXED));
    assert!(success, "{out}{err}");

    // Succeed one running pod at a time; each pod carries its index every way upstream gives it.
    let started = Instant::now();
    let mut done = Vec::new();
    while done.len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "stuck at {done:?}: {:?}",
            pods(&server, "indexed")
        );
        let all = pod_objects(&server, "indexed");
        let active = all
            .iter()
            .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
            .count();
        assert!(active <= 2, "more than parallelism pods active: {all:?}");
        for pod in &all {
            let name = pod["metadata"]["name"].as_str().unwrap_or_default();
            let index = pod["metadata"]["annotations"][KEY]
                .as_str()
                .expect("index annotation");
            assert_eq!(pod["metadata"]["labels"][KEY].as_str(), Some(index), "{pod}");
            assert!(name.starts_with(&format!("indexed-{index}-")), "{name}");
            assert_eq!(
                pod["spec"]["hostname"].as_str(),
                Some(format!("indexed-{index}").as_str())
            );
            let env = &pod["spec"]["containers"][0]["env"][0];
            assert_eq!(env["name"], "JOB_COMPLETION_INDEX", "{pod}");
            assert_eq!(
                env["valueFrom"]["fieldRef"]["fieldPath"],
                format!("metadata.annotations['{KEY}']")
            );
        }
        if let Some(pod) = all
            .iter()
            .find(|p| p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null())
        {
            let index = pod["metadata"]["annotations"][KEY].as_str().unwrap_or_default();
            assert!(!done.contains(&index.to_owned()), "index {index} ran twice");
            done.push(index.to_owned());
            finish(
                &server,
                pod["metadata"]["name"].as_str().unwrap_or_default(),
                "Succeeded",
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    done.sort();
    assert_eq!(done, ["0", "1", "2"]);
    ok(
        &server,
        &["wait", "--for=condition=complete", "job/indexed", "--timeout=30s"],
    );
    assert_eq!(
        ok(
            &server,
            &[
                "get",
                "job",
                "indexed",
                "-o",
                "jsonpath={.status.completedIndexes}"
            ]
        ),
        "0-2"
    );
    assert_eq!(pod_objects(&server, "indexed").len(), 3, "one pod per index");

    // A Job with a TTL goes, with its pods, once it finished; the Indexed one without stays.
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(SHORT_LIVED));
    assert!(success, "{out}{err}");
    let mut pod = String::new();
    poll_until(
        "the short-lived pod running",
        Duration::from_secs(30),
        || match pods(&server, "short-lived")
            .into_iter()
            .find(|(_, phase, _)| phase == "Running")
        {
            Some((name, _, _)) => {
                pod = name;
                true
            }
            None => false,
        },
    );
    finish(&server, &pod, "Succeeded");
    let finished = Instant::now();
    poll_until("the short-lived job gone", Duration::from_secs(20), || {
        !kubectl(&server, &["get", "job", "short-lived"], None).0
    });
    assert!(
        finished.elapsed() < Duration::from_secs(10),
        "took {:?}",
        finished.elapsed()
    );
    poll_until("the short-lived pods gone", Duration::from_secs(30), || {
        pods(&server, "short-lived").is_empty()
    });
    ok(&server, &["get", "job", "indexed"]);

    // backoffLimitPerIndex 0: index 0 fails once and is done for; index 1 succeeds.
    let (success, out, err) = kubectl(&server, &["apply", "-f", "-"], Some(PER_INDEX));
    assert!(success, "{out}{err}");
    let index_of = |pod: &serde_json::Value| {
        pod["metadata"]["annotations"][KEY]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    poll_until("both per-index pods running", Duration::from_secs(30), || {
        pod_objects(&server, "per-index")
            .iter()
            .filter(|p| p["status"]["phase"] == "Running")
            .count()
            == 2
    });
    for pod in pod_objects(&server, "per-index") {
        assert_eq!(
            pod["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"], "0",
            "{pod}"
        );
        let phase = if index_of(&pod) == "0" {
            "Failed"
        } else {
            "Succeeded"
        };
        finish(
            &server,
            pod["metadata"]["name"].as_str().unwrap_or_default(),
            phase,
        );
    }
    ok(
        &server,
        &["wait", "--for=condition=failed", "job/per-index", "--timeout=30s"],
    );
    assert_eq!(
        condition(&server, "per-index", "Failed", "reason"),
        "FailedIndexes"
    );
    let field = |path: &str| {
        ok(
            &server,
            &[
                "get",
                "job",
                "per-index",
                "-o",
                &format!("jsonpath={{.status.{path}}}"),
            ],
        )
    };
    assert_eq!(field("failedIndexes"), "0");
    assert_eq!(field("completedIndexes"), "1");
    assert_eq!(
        pod_objects(&server, "per-index").len(),
        2,
        "index 0 not run again"
    );
}
