//! Taint eviction: a pod on a node with a NoExecute taint it does not tolerate is deleted at once;
//! one that tolerates it for `tolerationSeconds` is deleted when that runs out, counted from the
//! taint's `timeAdded`; one that tolerates it without a limit stays. Upstream's
//! pkg/controller/tainteviction/taint_eviction.go (`processPodOnNode`, `getMinTolerationTime`,
//! `addConditionAndDeletePod`) and the toleration matching of `v1.Toleration.ToleratesTaint`.
//!
//! [`eviction`] decides for one pod from its node's taints and the time; [`run_loop`] looks at every
//! pod whenever a pod or node changes or a deadline comes, deletes the pods whose time is up (after
//! marking them with the `DisruptionTarget` condition), and reports `TaintManagerEviction` events:
//! "Marking for deletion" when it deletes, "Cancelling deletion" when a pending eviction is called
//! off (the taint went, or the pod now tolerates it).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    api::core::v1::{Node, Pod, Taint},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::reflector::Store,
};
use serde_json::json;
use tokio::sync::Notify;

use super::taints::NO_EXECUTE;
use crate::{events::EventSink, pod_util};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "taint-eviction-controller";
/// The reason of its events.
pub const REASON: &str = "TaintManagerEviction";

pub use crate::scheduling::tolerates;

/// When a pod is to be evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It tolerates every NoExecute taint of its node for good (or there is none).
    Never,
    /// It does not tolerate one of them, or its tolerations ran out.
    Now,
    /// When its tolerations run out.
    At(Timestamp),
}

/// The NoExecute taints among `taints`.
pub fn no_execute(taints: &[Taint]) -> Vec<&Taint> {
    taints.iter().filter(|t| t.effect == NO_EXECUTE).collect()
}

/// `processPodOnNode`: when `pod` must leave a node with `taints`. Each tolerated taint is
/// tolerated by the first toleration matching it; those with `tolerationSeconds` run from the
/// taint's `timeAdded` (or `now` when it has none), and the earliest end decides; `tolerationSeconds`
/// of zero or less means at once.
pub fn eviction(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    let mut deadline: Option<Timestamp> = None;
    for taint in no_execute(taints) {
        let Some(toleration) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        let Some(seconds) = toleration.toleration_seconds else {
            continue;
        };
        if seconds <= 0 {
            return Eviction::Now;
        }
        let since = taint.time_added.as_ref().map_or(now, |t| t.0);
        let end = since
            .saturating_add(SignedDuration::from_secs(seconds))
            .unwrap_or(Timestamp::MAX);
        deadline = Some(deadline.map_or(end, |d| d.min(end)));
    }
    match deadline {
        None => Eviction::Never,
        Some(end) if end <= now => Eviction::Now,
        Some(end) => Eviction::At(end),
    }
}

/// How long to wait for more changes before looking again (a burst of pod events is one look).
const DEBOUNCE: Duration = Duration::from_millis(20);
/// How long a deleted pod is not deleted again while the cache has not caught up.
const DELETE_MEMORY: Duration = Duration::from_secs(30);

/// Evicts pods as [`eviction`] says, until the task is dropped. `changed` is notified on every
/// pod or node change.
pub async fn run_loop(
    client: Client,
    nodes: Store<Node>,
    pods: Store<Pod>,
    changed: Arc<Notify>,
    events: EventSink,
) {
    let (Ok(()), Ok(())) = (
        crate::cache_ready::cache_ready(&nodes).await,
        crate::cache_ready::cache_ready(&pods).await,
    ) else {
        return;
    };
    // Pods whose eviction is pending: uid → (pod, when).
    let mut scheduled: HashMap<String, (Arc<Pod>, Timestamp)> = HashMap::new();
    let mut deleted: HashMap<String, tokio::time::Instant> = HashMap::new();
    loop {
        let now = Timestamp::now();
        let mut due = Vec::new();
        let mut pending = HashSet::new();
        // Only pods on tainted nodes, or with an eviction pending, need a look.
        let tainted: HashMap<String, Vec<Taint>> = nodes
            .state()
            .iter()
            .filter_map(|node| {
                let taints = node.spec.as_ref()?.taints.as_ref()?;
                let taints: Vec<Taint> = no_execute(taints).into_iter().cloned().collect();
                (!taints.is_empty()).then(|| (node.name_any(), taints))
            })
            .collect();
        let candidates = if tainted.is_empty() && scheduled.is_empty() {
            vec![]
        } else {
            pods.state()
        };
        for pod in candidates {
            if !pod_util::is_assigned(&pod) || pod_util::is_terminating(&pod) {
                continue;
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let taints = tainted
                .get(pod_util::node_name(&pod))
                .map(Vec::as_slice)
                .unwrap_or_default();
            match eviction(&pod, taints, now) {
                Eviction::Never => {
                    if scheduled.remove(&uid).is_some() {
                        events.normal(
                            &pod.object_ref(&()),
                            REASON,
                            "Cancel",
                            format!(
                                "Cancelling deletion of Pod {}/{}",
                                pod.namespace().unwrap_or_default(),
                                pod.name_any()
                            ),
                        );
                    }
                }
                Eviction::At(at) => {
                    pending.insert(uid.clone());
                    scheduled.insert(uid, (pod, at));
                }
                Eviction::Now => {
                    scheduled.remove(&uid);
                    if let std::collections::hash_map::Entry::Vacant(e) = deleted.entry(uid) {
                        e.insert(tokio::time::Instant::now());
                        due.push(pod);
                    }
                }
            }
        }
        // Pods that are gone need no cancelling.
        scheduled.retain(|uid, _| pending.contains(uid));
        deleted.retain(|_, at| at.elapsed() < DELETE_MEMORY);
        let evictions = due.iter().map(|pod| evict(&client, &events, pod));
        futures::future::join_all(evictions).await;

        let next = scheduled
            .values()
            .map(|(_, at)| *at)
            .min()
            .map(|at| Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or_default());
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(DEBOUNCE).await,
            () = tokio::time::sleep(next.unwrap_or(DELETE_MEMORY)) => {}
        }
    }
}

/// `addConditionAndDeletePod`: marks the pod with the `DisruptionTarget` condition, then deletes it.
async fn evict(client: &Client, events: &EventSink, pod: &Pod) {
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    events.normal(
        &pod.object_ref(&()),
        REASON,
        "Delete",
        format!("Marking for deletion Pod {namespace}/{name}"),
    );
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let condition = json!({ "status": { "conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": Timestamp::now().to_string(),
    }]}});
    if let Err(e) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(condition))
        .await
    {
        tracing::debug!(pod = %name, error = %e, "cannot set the DisruptionTarget condition");
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => tracing::info!(pod = %format!("{namespace}/{name}"), "evicted by NoExecute taint"),
        Err(kube::Error::Api(s)) if s.is_not_found() || s.is_conflict() => {}
        Err(e) => tracing::warn!(pod = %format!("{namespace}/{name}"), error = %e, "taint eviction failed"),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{PodSpec, Toleration},
        apimachinery::pkg::apis::meta::v1::Time,
    };

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("valid")
    }

    fn unreachable(added: i64) -> Taint {
        Taint {
            key: "node.kubernetes.io/unreachable".into(),
            effect: NO_EXECUTE.into(),
            time_added: Some(Time(at(added))),
            ..Default::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_by_effect_key_operator_and_value() {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: NO_EXECUTE.into(),
            ..Default::default()
        };
        let t = |key: Option<&str>, op: Option<&str>, value: Option<&str>, effect: Option<&str>| Toleration {
            key: key.map(Into::into),
            operator: op.map(Into::into),
            value: value.map(Into::into),
            effect: effect.map(Into::into),
            ..Default::default()
        };
        assert!(tolerates(&t(Some("k"), None, Some("v"), None), &taint));
        assert!(tolerates(
            &t(Some("k"), Some("Equal"), Some("v"), Some(NO_EXECUTE)),
            &taint
        ));
        assert!(!tolerates(&t(Some("k"), Some("Equal"), Some("w"), None), &taint));
        assert!(tolerates(&t(None, Some("Exists"), None, None), &taint));
        assert!(!tolerates(
            &t(Some("k"), Some("Exists"), None, Some("NoSchedule")),
            &taint
        ));
        assert!(!tolerates(&t(Some("other"), Some("Exists"), None, None), &taint));
    }

    #[test]
    fn eviction_follows_the_tolerations() {
        let taints = [unreachable(10)];
        assert_eq!(eviction(&pod(vec![]), &taints, at(11)), Eviction::Now);
        assert_eq!(
            eviction(
                &pod(vec![toleration("node.kubernetes.io/unreachable", None)]),
                &taints,
                at(11)
            ),
            Eviction::Never
        );
        let two = pod(vec![toleration("node.kubernetes.io/unreachable", Some(2))]);
        assert_eq!(eviction(&two, &taints, at(11)), Eviction::At(at(12)));
        assert_eq!(eviction(&two, &taints, at(12)), Eviction::Now);
        assert_eq!(
            eviction(
                &pod(vec![toleration("node.kubernetes.io/unreachable", Some(0))]),
                &taints,
                at(11)
            ),
            Eviction::Now
        );
        // NoSchedule taints and nodes without taints evict nothing.
        let no_schedule = Taint {
            effect: "NoSchedule".into(),
            ..unreachable(10)
        };
        assert_eq!(eviction(&pod(vec![]), &[no_schedule], at(11)), Eviction::Never);
        assert_eq!(eviction(&pod(vec![]), &[], at(11)), Eviction::Never);
    }

    #[test]
    fn the_earliest_end_decides_and_one_untolerated_taint_is_enough() {
        let other = Taint {
            key: "example.com/drain".into(),
            ..unreachable(20)
        };
        let both = pod(vec![
            toleration("node.kubernetes.io/unreachable", Some(300)),
            toleration("example.com/drain", Some(5)),
        ]);
        assert_eq!(
            eviction(&both, &[unreachable(10), other.clone()], at(21)),
            Eviction::At(at(25))
        );
        let one = pod(vec![toleration("node.kubernetes.io/unreachable", None)]);
        assert_eq!(eviction(&one, &[unreachable(10), other], at(21)), Eviction::Now);
    }
}
