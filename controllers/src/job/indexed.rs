//! Indexed Jobs (upstream's pkg/controller/job/indexed_job_utils.go): each pod of a Job with
//! `completionMode: Indexed` carries a completion index in `[0, completions)`, the Job is done once
//! every index has a Succeeded pod, and `status.completedIndexes` lists the succeeded indexes as
//! upstream's compressed interval string (`"0-2,5"`).
//!
//! Here: reading a pod's index, parsing and formatting the interval string, which indexes to start
//! next (lowest first), which active pods are surplus (an invalid or out-of-range index, a failed
//! index, or a second pod of one index), and the pod template of one index.
//!
//! With `backoffLimitPerIndex` each index has its own budget of failures: a replacement pod
//! carries its index's failures so far in `batch.kubernetes.io/job-index-failure-count`, an index
//! whose failures exceed the limit is failed for good (`status.failedIndexes`, same format) and not
//! run again, and the Job fails once more than `maxFailedIndexes` indexes failed
//! (`MaxFailedIndexesExceeded`) or once every index succeeded or failed with some failed
//! (`FailedIndexes`); the Job-wide `backoffLimit` is not applied. Not mirrored: the ignored-failure
//! count of pod failure policies, and delaying a failed pod's deletion until its replacement exists
//! (here finished pods are never deleted by the controller).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use k8s_openapi::api::{
    batch::v1::Job,
    core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodTemplateSpec},
};

use crate::pod_util;

/// The annotation (and, as upstream since 1.28, the label) holding a pod's completion index.
pub const COMPLETION_INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
/// The annotation with the number of earlier failures of a pod's index (`backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT_KEY: &str = "batch.kubernetes.io/job-index-failure-count";
/// The environment variable every container of an Indexed Job's pod gets its index in.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's `MaxGeneratedNameLength`: the longest `generateName` prefix it keeps whole.
const MAX_GENERATED_NAME_LENGTH: usize = 58;

/// Whether the Job runs in Indexed completion mode.
pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The completion index of `pod` from its annotation (upstream's `getCompletionIndex`): `None`
/// when missing or not a non-negative number.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let value = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX_KEY)?;
    value.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// The indexes listed in `completedIndexes` below `completions` (upstream's
/// `parseIndexesFromString`); malformed parts are skipped, as upstream logs and skips them.
pub fn parse_indexes(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(first), Ok(last)) = (first, last) else {
            continue;
        };
        set.extend(first.max(0)..=last.min(completions - 1));
    }
    set
}

/// The compressed interval string of `indexes` (upstream's `orderedIntervals.String`): runs of
/// consecutive indexes as `first-last`, single ones alone, comma-separated in order.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut runs: Vec<(i32, i32)> = Vec::new();
    for &i in indexes {
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == i => *last = i,
            _ => runs.push((i, i)),
        }
    }
    runs.iter()
        .map(|&(first, last)| {
            if first == last {
                first.to_string()
            } else {
                format!("{first}-{last}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The succeeded indexes: those recorded in `completedIndexes` plus those of Succeeded pods
/// (upstream's `calculateSucceededIndexes`), all below `completions`.
pub fn succeeded_indexes(recorded: &str, pods: &[Arc<Pod>], completions: i32) -> BTreeSet<i32> {
    let mut set = parse_indexes(recorded, completions);
    set.extend(
        pods.iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Succeeded"))
            .filter_map(|p| completion_index(p))
            .filter(|i| *i < completions),
    );
    set
}

/// Splits active pods into (surplus, kept) (upstream's `appendDuplicatedIndexPodsForRemoval`):
/// pods without a valid index below `completions` or of a `failed` index go, and of several pods
/// of one index the most advanced stays (ready, then running, then the oldest; upstream's
/// `ActivePods` order, in short), so the work furthest along is kept. An active pod of an index that already succeeded is left
/// to finish, as upstream; it is never replaced.
pub fn surplus(
    active: &[Arc<Pod>],
    completions: i32,
    failed: &BTreeSet<i32>,
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut rm = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in active {
        match completion_index(pod) {
            Some(i) if i < completions && !failed.contains(&i) => {
                by_index.entry(i).or_default().push(pod.clone())
            }
            _ => rm.push(pod.clone()),
        }
    }
    let mut kept = Vec::new();
    for (_, mut pods) in by_index {
        pods.sort_by_key(|p| {
            (
                std::cmp::Reverse(pod_util::is_ready(p)),
                p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running"),
                p.metadata.creation_timestamp.clone().map(|t| t.0),
            )
        });
        let mut pods = pods.into_iter();
        kept.extend(pods.next());
        rm.extend(pods);
    }
    (rm, kept)
}

/// The number of earlier failures of `pod`'s index its annotation records (0 when absent).
fn failure_count(pod: &Pod) -> i32 {
    let annotations = pod.metadata.annotations.as_ref();
    annotations
        .and_then(|a| a.get(INDEX_FAILURE_COUNT_KEY))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
        .max(0)
}

fn is_failed(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
}

/// The failures so far of each index with a Failed pod: one more than the count its latest failed
/// pod carried (upstream's `getNewIndexFailureCounts`), so the replacement carries it on.
pub fn failure_counts(pods: &[Arc<Pod>]) -> BTreeMap<i32, i32> {
    let mut counts = BTreeMap::new();
    for pod in pods.iter().filter(|p| is_failed(p)) {
        if let Some(i) = completion_index(pod) {
            let n = failure_count(pod).saturating_add(1);
            let entry = counts.entry(i).or_insert(n);
            *entry = (*entry).max(n);
        }
    }
    counts
}

/// The failed indexes with `backoffLimitPerIndex` = `limit`: those recorded in `failedIndexes`
/// plus those whose failures exceed the limit (upstream's `isIndexFailed`), below `completions`.
pub fn failed_indexes(recorded: &str, pods: &[Arc<Pod>], completions: i32, limit: i32) -> BTreeSet<i32> {
    let mut set = parse_indexes(recorded, completions);
    set.extend(
        failure_counts(pods)
            .into_iter()
            .filter(|&(i, n)| i < completions && n > limit)
            .map(|(i, _)| i),
    );
    set
}

/// Up to `count` indexes below `completions` that are neither `done` (succeeded or failed) nor
/// have an active pod, lowest first (upstream's `firstPendingIndexes`).
pub fn first_pending(count: usize, completions: i32, done: &BTreeSet<i32>, active: &[Arc<Pod>]) -> Vec<i32> {
    let running: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    (0..completions)
        .filter(|i| !done.contains(i) && !running.contains(i))
        .take(count)
        .collect()
}

/// `JOB_COMPLETION_INDEX` in every container and init container that does not set it already,
/// read from the pod's annotation (upstream's `addCompletionIndexEnvVariables`), so the value comes
/// from the pod itself rather than being copied into each container.
pub fn add_env(template: &mut PodTemplateSpec) {
    let Some(spec) = template.spec.as_mut() else {
        return;
    };
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for container in containers {
        let env = container.env.get_or_insert_with(Vec::new);
        if env.iter().any(|e| e.name == COMPLETION_INDEX_ENV) {
            continue;
        }
        env.push(EnvVar {
            name: COMPLETION_INDEX_ENV.to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX_KEY}']"),
                }),
                ..Default::default()
            }),
        });
    }
}

/// The template of the pod for `index` (upstream's `manageJob` for an index): the annotation and
/// label, and `hostname` `<job>-<index>` (the subdomain is left to the user, as upstream); with
/// `backoffLimitPerIndex`, the index's `failures` so far.
pub fn template_for(
    job_name: &str,
    template: &PodTemplateSpec,
    index: i32,
    failures: Option<i32>,
) -> PodTemplateSpec {
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(COMPLETION_INDEX_KEY.to_owned(), index.to_string());
    if let Some(n) = failures {
        annotations.insert(INDEX_FAILURE_COUNT_KEY.to_owned(), n.to_string());
    }
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX_KEY.to_owned(), index.to_string());
    if let Some(spec) = template.spec.as_mut() {
        spec.hostname = Some(format!("{job_name}-{index}"));
    }
    template
}

/// The `generateName` of the pod for `index`: `<job>-<index>-`, the job name cut so the whole
/// stays within upstream's limit (upstream's `podGenerateNameWithIndex`).
pub fn generate_name(job_name: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let mut name = job_name.to_owned();
    if name.len() + suffix.len() > MAX_GENERATED_NAME_LENGTH {
        let mut cut = MAX_GENERATED_NAME_LENGTH.saturating_sub(suffix.len());
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
    }
    name + &suffix
}
