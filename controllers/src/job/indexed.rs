//! Indexed Jobs (upstream's pkg/controller/job/indexed_job_utils.go): each pod of a Job with
//! `completionMode: Indexed` carries a completion index in `[0, completions)`, the Job is done once
//! every index has a Succeeded pod, and `status.completedIndexes` lists the succeeded indexes as
//! upstream's compressed interval string (`"0-2,5"`).
//!
//! Here: reading a pod's index, parsing and formatting the interval string, which indexes to start
//! next (lowest first), which active pods are surplus (an invalid or out-of-range index, or a
//! second pod of one index), and the pod template of one index.

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
/// pods without a valid index below `completions` go, and of several pods of one index the most
/// advanced stays (ready, then running, then the oldest; upstream's `ActivePods` order, in short),
/// so the work furthest along is kept. An active pod of an index that already succeeded is left
/// to finish, as upstream; it is never replaced.
pub fn surplus(active: &[Arc<Pod>], completions: i32) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut rm = Vec::new();
    let mut by_index: BTreeMap<i32, Vec<Arc<Pod>>> = BTreeMap::new();
    for pod in active {
        match completion_index(pod) {
            Some(i) if i < completions => by_index.entry(i).or_default().push(pod.clone()),
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

/// Up to `count` indexes below `completions` that neither succeeded nor have an active pod, lowest
/// first (upstream's `firstPendingIndexes`).
pub fn first_pending(
    count: usize,
    completions: i32,
    succeeded: &BTreeSet<i32>,
    active: &[Arc<Pod>],
) -> Vec<i32> {
    let running: BTreeSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
    (0..completions)
        .filter(|i| !succeeded.contains(i) && !running.contains(i))
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
/// label, and `hostname` `<job>-<index>` (the subdomain is left to the user, as upstream).
pub fn template_for(job_name: &str, template: &PodTemplateSpec, index: i32) -> PodTemplateSpec {
    let mut template = template.clone();
    let meta = template.metadata.get_or_insert_with(Default::default);
    meta.annotations
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX_KEY.to_owned(), index.to_string());
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
