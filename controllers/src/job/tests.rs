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

use super::{
    indexed,
    plan::{self, conditions},
};

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

fn indexed_job(completions: i32, parallelism: i32, backoff: i32) -> Job {
    let mut j = job(Some(completions), parallelism, backoff);
    j.spec.as_mut().unwrap().completion_mode = Some("Indexed".into());
    j
}

/// A pod of `index` in `phase`, created `age` seconds before [`now`].
fn indexed_pod(index: &str, phase: &str, age: i64) -> Arc<Pod> {
    let mut p = (*pod(phase)).clone();
    p.metadata.name = Some(format!("x-{index}-{phase}-{age}"));
    p.metadata.uid = Some(format!("u-{index}-{phase}-{age}"));
    p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(1_000_000 - age).unwrap()));
    p.metadata.annotations = Some(
        [(indexed::COMPLETION_INDEX_KEY.to_owned(), index.to_owned())]
            .into_iter()
            .collect(),
    );
    Arc::new(p)
}

#[test]
fn completed_indexes_are_compressed_intervals() {
    let set = |v: &[i32]| v.iter().copied().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(indexed::format_indexes(&set(&[])), "");
    assert_eq!(indexed::format_indexes(&set(&[0, 1, 2, 5])), "0-2,5");
    assert_eq!(indexed::format_indexes(&set(&[1, 3, 4, 7])), "1,3-4,7");
    assert_eq!(indexed::parse_indexes("0-2,5", 10), set(&[0, 1, 2, 5]));
    // Indexes beyond completions and malformed parts are dropped.
    assert_eq!(indexed::parse_indexes("1,3-6,x,9", 5), set(&[1, 3, 4]));
    assert_eq!(indexed::parse_indexes("", 5), set(&[]));
}

#[test]
fn an_indexed_job_starts_the_lowest_missing_indexes_up_to_parallelism() {
    let p = plan::plan(&indexed_job(5, 2, 6), &[], now());
    assert_eq!((p.create, p.indexes.clone()), (2, vec![0, 1]));
    // 0 succeeded and 2 runs: 1 and 3 are next, but only one more may run.
    let pods = [indexed_pod("0", "Succeeded", 9), indexed_pod("2", "Running", 5)];
    let p = plan::plan(&indexed_job(5, 2, 6), &pods, now());
    assert_eq!(p.indexes, vec![1]);
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0"));
    assert_eq!(p.status.succeeded, Some(1));
    // Recorded indexes stay succeeded though their pods are gone.
    let mut j = indexed_job(5, 3, 6);
    j.status = Some(k8s_openapi::api::batch::v1::JobStatus {
        completed_indexes: Some("0-1,3".into()),
        ..Default::default()
    });
    let p = plan::plan(&j, &[], now());
    assert_eq!(p.indexes, vec![2, 4]);
    assert_eq!(p.status.succeeded, Some(3));
}

#[test]
fn a_failed_index_is_run_again_and_counts_toward_the_backoff_limit() {
    let pods = [
        indexed_pod("0", "Failed", 9),
        indexed_pod("1", "Running", 8),
        indexed_pod("2", "Succeeded", 7),
    ];
    let p = plan::plan(&indexed_job(3, 2, 6), &pods, now());
    assert_eq!(p.indexes, vec![0]);
    assert_eq!(p.status.failed, Some(1));
    assert_eq!(p.status.completed_indexes.as_deref(), Some("2"));
    let p = plan::plan(&indexed_job(3, 2, 0), &pods, now());
    assert!(plan::has_condition(&p.status, conditions::FAILURE_TARGET));
    assert!(p.indexes.is_empty());
}

#[test]
fn surplus_pods_of_an_indexed_job_go_and_a_succeeded_index_never_runs_again() {
    // Index 0 succeeded; its running duplicate is left to finish (as upstream) and not replaced.
    let pods = [
        indexed_pod("0", "Succeeded", 9),
        indexed_pod("0", "Running", 8),
        indexed_pod("1", "Running", 7),
        indexed_pod("1", "Running", 3),
        indexed_pod("7", "Running", 2),
        indexed_pod("x", "Running", 1),
    ];
    let p = plan::plan(&indexed_job(3, 3, 6), &pods, now());
    let mut deleted: Vec<_> = p
        .delete
        .iter()
        .map(|d| d.metadata.name.clone().unwrap())
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["x-1-Running-3", "x-7-Running-2", "x-x-Running-1"],
        "the older pod of index 1 stays"
    );
    assert!(p.indexes.is_empty(), "two active: parallelism 3 but 2 left");
    let p = plan::plan(&indexed_job(4, 3, 6), &pods[..4], now());
    assert_eq!(
        p.indexes,
        vec![2],
        "the lowest index neither succeeded nor running"
    );
}

#[test]
fn an_indexed_job_completes_once_every_index_succeeded() {
    let j = indexed_job(3, 2, 6);
    let pods = [
        indexed_pod("0", "Succeeded", 9),
        indexed_pod("1", "Succeeded", 8),
        indexed_pod("1", "Succeeded", 7),
    ];
    let p = plan::plan(&j, &pods, now());
    assert!(!plan::has_condition(&p.status, conditions::SUCCESS_CRITERIA_MET));
    assert_eq!(p.indexes, vec![2], "two pods of one index are one completion");
    let mut pods = pods.to_vec();
    pods.push(indexed_pod("2", "Succeeded", 1));
    let p = plan::plan(&j, &pods, now());
    assert!(plan::has_condition(&p.status, conditions::COMPLETE));
    assert_eq!(p.status.completed_indexes.as_deref(), Some("0-2"));
    assert_eq!(p.status.succeeded, Some(3));
}

#[test]
fn an_index_pod_template_carries_its_index() {
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
    let mut template = PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "i".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    indexed::add_env(&mut template);
    indexed::add_env(&mut template);
    let t = indexed::template_for("work", &template, 4, None);
    let spec = t.spec.unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("work-4"));
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let env = c.env.as_ref().unwrap();
        assert_eq!(env.len(), 1, "added once");
        let path = &env[0]
            .value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path;
        assert_eq!(
            path,
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
    }
    let meta = t.metadata.unwrap();
    assert_eq!(meta.annotations.unwrap()[indexed::COMPLETION_INDEX_KEY], "4");
    assert_eq!(meta.labels.unwrap()[indexed::COMPLETION_INDEX_KEY], "4");
    assert_eq!(indexed::generate_name("work", 12), "work-12-");
    let long = "a".repeat(60);
    assert_eq!(indexed::generate_name(&long, 3), format!("{}-3-", "a".repeat(55)));
}

/// A failed pod of `index` that carried `failures` earlier failures of its index.
fn failed_pod(index: &str, failures: i32, age: i64) -> Arc<Pod> {
    let mut p = (*indexed_pod(index, "Failed", age)).clone();
    p.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert(indexed::INDEX_FAILURE_COUNT_KEY.to_owned(), failures.to_string());
    Arc::new(p)
}

fn per_index_job(completions: i32, parallelism: i32, limit: i32, max: Option<i32>) -> Job {
    let mut j = indexed_job(completions, parallelism, i32::MAX);
    let spec = j.spec.as_mut().unwrap();
    spec.backoff_limit_per_index = Some(limit);
    spec.max_failed_indexes = max;
    j
}

#[test]
fn with_a_backoff_limit_per_index_a_replacement_carries_its_index_failures() {
    let p = plan::plan(&per_index_job(3, 2, 1, None), &[], now());
    assert_eq!(p.status.failed_indexes.as_deref(), Some(""));
    assert_eq!(p.failure_counts, [(0, 0), (1, 0)].into_iter().collect());
    // Index 0 failed once (within the limit of 1): run again, carrying the one failure.
    let pods = [failed_pod("0", 0, 9), indexed_pod("1", "Running", 8)];
    let p = plan::plan(&per_index_job(3, 2, 1, None), &pods, now());
    assert_eq!(p.indexes, vec![0]);
    assert_eq!(p.failure_counts, [(0, 1)].into_iter().collect());
    assert_eq!(p.status.failed_indexes.as_deref(), Some(""));
}

#[test]
fn an_index_past_its_limit_fails_for_good_and_fails_the_job_in_the_end() {
    // Index 0 failed twice (limit 1): failed, not run again; the others go on.
    let pods = [
        failed_pod("0", 0, 9),
        failed_pod("0", 1, 8),
        indexed_pod("1", "Succeeded", 7),
    ];
    let j = per_index_job(3, 3, 1, None);
    let p = plan::plan(&j, &pods, now());
    assert_eq!(p.status.failed_indexes.as_deref(), Some("0"));
    assert_eq!(p.indexes, vec![2]);
    assert!(!plan::has_condition(&p.status, conditions::FAILURE_TARGET));
    // Index 2 succeeds: every index done, one failed.
    let mut all = pods.to_vec();
    all.push(indexed_pod("2", "Succeeded", 1));
    let p = plan::plan(&j, &all, now());
    assert!(plan::has_condition(&p.status, conditions::FAILED));
    let failed = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == conditions::FAILED);
    assert_eq!(failed.unwrap().reason.as_deref(), Some("FailedIndexes"));
    assert_eq!(p.status.completed_indexes.as_deref(), Some("1-2"));
    // With maxFailedIndexes 0 the first failed index ends the Job, and its running pods go.
    let pods = [failed_pod("0", 1, 9), indexed_pod("1", "Running", 7)];
    let p = plan::plan(&per_index_job(3, 3, 1, Some(0)), &pods, now());
    let target = p
        .status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == conditions::FAILURE_TARGET);
    assert_eq!(
        target.unwrap().reason.as_deref(),
        Some("MaxFailedIndexesExceeded")
    );
    assert_eq!(p.delete.len(), 1);
    assert!(p.indexes.is_empty());
}
