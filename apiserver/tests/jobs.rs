//! batch/v1 Jobs through the router in-process: upstream's defaults, the generated selector and
//! labels of the Job strategy, the restartPolicy rule, the Table kubectl prints, and discovery.

mod common;

use axum::http::Method;
use common::{call, server};
use serde_json::{Value, json};

fn job(name: &str, restart: Option<&str>) -> Value {
    let mut spec = json!({ "containers": [{ "name": "pi", "image": "perl:5.34" }] });
    if let Some(r) = restart {
        spec["restartPolicy"] = json!(r);
    }
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": { "name": name },
        "spec": { "template": { "spec": spec } },
    })
}

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";

#[tokio::test]
async fn a_job_gets_upstream_defaults_a_generated_selector_and_labels() {
    let (_api, r) = server().await;
    let (code, created) = call(&r, Method::POST, JOBS, Some(job("pi", Some("Never")))).await;
    assert_eq!(code, 201, "{created}");
    let uid = created["metadata"]["uid"].as_str().expect("uid").to_owned();
    let spec = &created["spec"];
    assert_eq!(spec["completions"], 1);
    assert_eq!(spec["parallelism"], 1);
    assert_eq!(spec["backoffLimit"], 6);
    assert_eq!(spec["completionMode"], "NonIndexed");
    assert_eq!(spec["suspend"], false);
    assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
    assert_eq!(
        spec["selector"],
        json!({ "matchLabels": { "batch.kubernetes.io/controller-uid": uid } })
    );
    let want = json!({
        "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi",
        "controller-uid": uid, "job-name": "pi",
    });
    assert_eq!(spec["template"]["metadata"]["labels"], want);
    assert_eq!(
        created["metadata"]["labels"], want,
        "a Job without labels takes its template's"
    );
    assert_eq!(created["metadata"]["generation"], 1);

    // Parallelism alone leaves completions unset (a work-queue Job).
    let mut queue = job("queue", Some("OnFailure"));
    queue["spec"]["parallelism"] = json!(3);
    let (code, created) = call(&r, Method::POST, JOBS, Some(queue)).await;
    assert_eq!(code, 201, "{created}");
    assert!(created["spec"].get("completions").is_none(), "{created}");

    // The selector cannot change.
    let mut changed = created.clone();
    changed["spec"]["selector"] = json!({ "matchLabels": { "a": "b" } });
    let (code, status) = call(&r, Method::PUT, &format!("{JOBS}/queue"), Some(changed)).await;
    assert_eq!(code, 422, "{status}");
}

#[tokio::test]
async fn a_bad_restart_policy_is_refused_with_upstreams_message() {
    let (_api, r) = server().await;
    let (code, status) = call(&r, Method::POST, JOBS, Some(job("pi", None))).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (422, Some("Invalid")),
        "{status}"
    );
    // Upstream's field error, word for word (upstream qualifies the kind as `Job.batch`; skiff's
    // Invalid statuses name the bare kind for every group).
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.ends_with(
            "\"pi\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
        ),
        "{status}"
    );
    let (code, status) = call(&r, Method::POST, JOBS, Some(job("pi", Some("Sometimes")))).await;
    assert_eq!(code, 422, "{status}");
    assert!(
        status["message"].as_str().unwrap_or_default().contains(
            "spec.template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"OnFailure\", \"Never\""
        ),
        "{status}"
    );
    let mut manual = job("pi", Some("Never"));
    manual["spec"]["manualSelector"] = json!(true);
    let (code, status) = call(&r, Method::POST, JOBS, Some(manual)).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["field"], "spec.selector",
        "a manual selector must be given: {status}"
    );
}

#[tokio::test]
async fn discovery_lists_jobs_in_batch_v1() {
    let (_api, r) = server().await;
    let (code, list) = call(&r, Method::GET, "/apis/batch/v1", None).await;
    assert_eq!(code, 200, "{list}");
    let jobs = list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "jobs")
        .cloned()
        .unwrap_or_default();
    assert_eq!(jobs["kind"], "Job", "{list}");
    assert_eq!(jobs["namespaced"], true);
    assert_eq!(jobs["categories"], json!(["all"]));
    assert!(
        list["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["name"] == "jobs/status")
    );
}
