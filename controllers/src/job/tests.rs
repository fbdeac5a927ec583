//! The pure plan of a Job sync: how many pods, when it ends, and with which conditions.

use std::sync::Arc;

use k8s_openapi::{
    api::{
        batch::v1::{Job, JobSpec},
        core::v1::{Pod, PodStatus},
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};

use super::plan::{self, conditions};

fn job(completions: Option<i32>, parallelism: i32, backoff: i32) -> Job {
    Job {
        metadata: ObjectMeta {
            name: Some("x".into()),
            uid: Some("u".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(backoff),
            ..Default::default()
        }),
        status: None,
    }
}

fn pod(phase: &str) -> Arc<Pod> {
    Arc::new(Pod {
        metadata: ObjectMeta {
            name: Some(format!("p-{phase}")),
            uid: Some(format!("u-{phase}")),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    })
}

fn pods(phases: &[&str]) -> Vec<Arc<Pod>> {
    phases.iter().map(|p| pod(p)).collect()
}

fn now() -> Timestamp {
    Timestamp::from_second(1_000_000).unwrap()
}

#[test]
fn starts_parallelism_pods_and_no_more_than_remain() {
    let p = plan::plan(&job(Some(3), 2, 6), &[], now());
    assert_eq!(p.create, 2);
    assert_eq!(p.status.start_time, Some(Time(now())));
    // Two succeeded: one left to run, and one runs already.
    let p = plan::plan(
        &job(Some(3), 2, 6),
        &pods(&["Succeeded", "Succeeded", "Running"]),
        now(),
    );
    assert_eq!((p.create, p.delete.len()), (0, 0));
    assert_eq!(p.status.succeeded, Some(2));
    assert_eq!(p.status.active, Some(1));
    // Too many active for what is left: the extra goes.
    let p = plan::plan(
        &job(Some(3), 3, 6),
        &pods(&["Succeeded", "Succeeded", "Running", "Pending"]),
        now(),
    );
    assert_eq!(p.delete.len(), 1);
}

#[test]
fn success_sets_success_criteria_met_then_complete_once_no_pod_runs() {
    let mut j = job(Some(2), 2, 6);
    let p = plan::plan(&j, &pods(&["Succeeded", "Succeeded"]), now());
    let types: Vec<_> = p
        .status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.reason.clone()))
        .collect();
    assert_eq!(
        types,
        vec![
            (
                conditions::SUCCESS_CRITERIA_MET,
                Some("CompletionsReached".into())
            ),
            (conditions::COMPLETE, Some("CompletionsReached".into())),
        ]
    );
    assert_eq!(p.status.completion_time, Some(Time(now())));
    // A finished Job is left alone.
    j.status = Some(p.status);
    let p = plan::plan(&j, &pods(&["Succeeded", "Succeeded"]), now());
    assert_eq!((p.create, p.delete.len()), (0, 0));
}

#[test]
fn a_work_queue_job_completes_when_one_succeeded_and_none_runs() {
    let j = job(None, 2, 6);
    let p = plan::plan(&j, &pods(&["Succeeded", "Running"]), now());
    assert_eq!(p.create, 0, "no new pods once one succeeded");
    assert!(!plan::finished(&p.status));
    let p = plan::plan(&j, &pods(&["Succeeded", "Succeeded"]), now());
    assert!(plan::has_condition(&p.status, conditions::COMPLETE));
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let j = job(Some(1), 1, 1);
    let p = plan::plan(&j, &pods(&["Failed"]), now());
    assert_eq!(p.create, 1, "one failure is within the limit");
    let p = plan::plan(&j, &pods(&["Failed", "Failed", "Running"]), now());
    assert_eq!(p.delete.len(), 1, "the running pod goes");
    assert!(plan::has_condition(&p.status, conditions::FAILURE_TARGET));
    assert!(
        !plan::has_condition(&p.status, conditions::FAILED),
        "not while a pod runs"
    );
    let mut j = j;
    j.status = Some(p.status);
    let p = plan::plan(&j, &pods(&["Failed", "Failed"]), now());
    let failed = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == conditions::FAILED)
        .expect("Failed");
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(p.status.failed, Some(2));
    assert_eq!(p.status.completion_time, None);
}

#[test]
fn the_active_deadline_fails_the_job_and_deletes_its_pods() {
    let mut j = job(Some(5), 2, 6);
    j.spec.as_mut().unwrap().active_deadline_seconds = Some(10);
    j.status = Some(k8s_openapi::api::batch::v1::JobStatus {
        start_time: Some(Time(Timestamp::from_second(1_000_000 - 5).unwrap())),
        ..Default::default()
    });
    let p = plan::plan(&j, &pods(&["Running"]), now());
    assert_eq!(p.requeue, Some(std::time::Duration::from_secs(5)));
    j.status.as_mut().unwrap().start_time = Some(Time(Timestamp::from_second(1_000_000 - 11).unwrap()));
    let p = plan::plan(&j, &pods(&["Running", "Running"]), now());
    assert_eq!(p.delete.len(), 2);
    let target = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == conditions::FAILURE_TARGET)
        .expect("target");
    assert_eq!(target.reason.as_deref(), Some("DeadlineExceeded"));
}

#[test]
fn suspend_deletes_active_pods_and_resume_starts_them_again() {
    let mut j = job(Some(3), 2, 6);
    j.spec.as_mut().unwrap().suspend = Some(true);
    let p = plan::plan(&j, &pods(&["Running", "Running"]), now());
    assert_eq!((p.create, p.delete.len()), (0, 2));
    assert!(plan::has_condition(&p.status, conditions::SUSPENDED));
    assert_eq!(p.status.start_time, None);
    j.status = Some(p.status);
    j.spec.as_mut().unwrap().suspend = Some(false);
    let p = plan::plan(&j, &[], now());
    assert_eq!(p.create, 2);
    let s = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == conditions::SUSPENDED)
        .expect("kept");
    assert_eq!(
        (s.status.as_str(), s.reason.as_deref()),
        ("False", Some("JobResumed"))
    );
}

#[test]
fn counts_never_go_down_and_deleted_running_pods_count_as_failed() {
    let mut j = job(Some(5), 1, 6);
    j.status = Some(k8s_openapi::api::batch::v1::JobStatus {
        succeeded: Some(2),
        ..Default::default()
    });
    let p = plan::plan(&j, &pods(&["Succeeded"]), now());
    assert_eq!(p.status.succeeded, Some(2));
    let mut deleted = (*pod("Running")).clone();
    deleted.metadata.deletion_timestamp = Some(Time(now()));
    let p = plan::plan(&job(Some(5), 1, 6), &[Arc::new(deleted)], now());
    assert_eq!((p.status.failed, p.status.terminating), (Some(1), Some(1)));
    assert_eq!(p.create, 1, "TerminatingOrFailed replaces it at once");
}
