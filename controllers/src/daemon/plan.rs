//! What a DaemonSet sync decides, pure: which nodes should run its pod (upstream's
//! `NodeShouldRunDaemonPod`), the pods to create and delete per node (`podsShouldBeOnNode`), the
//! old pods a rolling update replaces next (`rollingUpdate`, with and without surge), and the
//! status (`updateDaemonSetStatus`). The side effects live in the controller module.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::{DaemonSet, DaemonSetStatus},
        core::v1::{
            Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
            PodSpec, PodTemplateSpec, Toleration,
        },
    },
    apimachinery::pkg::util::intstr::IntOrString,
    jiff::Timestamp,
};

use crate::{pod_util, scheduling};

/// The label carrying the hash of the revision a daemon pod was made from.
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// The deprecated label carrying the DaemonSet generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The tolerations every daemon pod gets (upstream's `AddOrUpdateDaemonPodTolerations`): it stays
/// on a node that is not ready or unreachable, and goes to nodes under pressure or cordoned; a
/// hostNetwork pod also to nodes whose network is not set up (it does not need it).
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let ours = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // `AddOrUpdateTolerationInPodSpec`: one with the same key, operator, value and effect is
        // replaced (its tolerationSeconds dropped), otherwise ours is added.
        let same = |t: &Toleration| {
            t.key == ours.key
                && t.operator.as_deref().unwrap_or("Equal") == "Exists"
                && t.value.as_deref().unwrap_or("").is_empty()
                && t.effect == ours.effect
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(t) => *t = ours,
            None => tolerations.push(ours),
        }
    }
}

/// Whether a node should run the DaemonSet's pod, and whether one already there may stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// A pod should run there (`shouldRun`).
    pub should_run: bool,
    /// A pod already there may keep running (`shouldContinueRunning`): taints it tolerates for
    /// scheduling aside, no NoExecute taint throws it out.
    pub should_continue_running: bool,
}

/// `NodeShouldRunDaemonPod`: the pod's node name (if the template sets one), nodeSelector and
/// required node affinity must accept the node; its NoSchedule and NoExecute taints must be
/// tolerated (with the daemon tolerations added).
pub fn placement(spec: &PodSpec, node: &Node) -> Placement {
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let never = Placement {
        should_run: false,
        should_continue_running: false,
    };
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != name)
    {
        return never;
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !scheduling::required_node_affinity_matches(spec, &labels, name) {
        return never;
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let blocks = scheduling::untolerated_taint(taints, tolerations, |t| {
        t.effect == "NoSchedule" || t.effect == "NoExecute"
    })
    .is_some();
    let evicts = scheduling::untolerated_taint(taints, tolerations, |t| t.effect == "NoExecute").is_some();
    Placement {
        should_run: !blocks,
        should_continue_running: !evicts,
    }
}

/// The pod spec placement is judged with: the template's, with the daemon tolerations.
pub fn daemon_pod_spec(ds: &DaemonSet) -> PodSpec {
    let mut spec = template(ds).spec.unwrap_or_default();
    add_daemon_tolerations(&mut spec);
    spec
}

fn template(ds: &DaemonSet) -> PodTemplateSpec {
    ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
}

/// `CreatePodTemplate`: the template with the revision hash and generation labels and the daemon
/// tolerations, for the pods created now.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = template(ds);
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(Default::default);
    if let Some(generation) = ds.metadata.generation {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    labels.insert(REVISION_HASH_LABEL.into(), hash.into());
    add_daemon_tolerations(template.spec.get_or_insert_with(Default::default));
    template
}

/// `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity becomes the one term
/// `metadata.name In [node]`, so the scheduler binds the pod to that node and no other.
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        ..Default::default()
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity.node_affinity.get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// `GetTargetNodeName`: the pod's node, or for one not yet scheduled the node its affinity pins.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name.to_owned());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.iter().flatten().find_map(|r| {
            let values = r.values.as_deref().unwrap_or_default();
            (r.key == "metadata.name" && r.operator == "In" && values.len() == 1).then(|| values[0].clone())
        })
    })
}

/// `podByCreationTimestampAndPhase`: scheduled pods first, then the oldest, then by name.
pub fn sort_oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let scheduled = |p: &Pod| !pod_util::node_name(p).is_empty();
        scheduled(b)
            .cmp(&scheduled(a))
            .then_with(|| a.metadata.creation_timestamp.cmp(&b.metadata.creation_timestamp))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

/// `IsPodUpdated`: the pod carries the current revision's hash or (a pod of an older controller)
/// the DaemonSet's current generation.
pub fn is_updated(ds: &DaemonSet, pod: &Pod, hash: &str) -> bool {
    let generation = ds.metadata.generation.map(|g| g.to_string());
    let labels = pod.metadata.labels.as_ref();
    hash_of(pod) == Some(hash)
        || (generation.is_some()
            && labels.and_then(|l| l.get(TEMPLATE_GENERATION_LABEL)) == generation.as_ref())
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn min_ready_seconds(ds: &DaemonSet) -> i32 {
    ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// What the sync found per node.
pub struct NodeView<'a> {
    /// The node.
    pub node: &'a Node,
    /// Its placement for this DaemonSet.
    pub placement: Placement,
}

/// What `manage` decided.
#[derive(Debug, Default, PartialEq)]
pub struct Manage {
    /// Nodes to create a daemon pod on.
    pub create_on: Vec<String>,
    /// Pods to delete, with why (for the events: `Failed` and `Succeeded` ones get their own).
    pub delete: Vec<(Arc<Pod>, Deletion)>,
}

/// Why a pod is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// A failed daemon pod (upstream's `FailedDaemonPod` warning).
    Failed,
    /// A daemon pod that ran to completion (`SucceededDaemonPod`).
    Succeeded,
    /// An extra pod on its node, one on a node it should not run on, or one waiting for a node
    /// that is gone.
    Excess,
}

/// Whether the DaemonSet may surge (run a new pod beside the old one on a node during an update).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    let (_, surge) = update_limits(ds, 1);
    surge > 0
}

/// `podsShouldBeOnNode` over every node, then the unscheduled pods of nodes that are gone.
/// `may_delete_failed(node)` says whether the failed-pod backoff lets a failed pod there go now
/// (a kubelet that rejects every daemon pod must not make the controller hot-loop).
pub fn manage(
    ds: &DaemonSet,
    nodes: &[NodeView<'_>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
    mut may_delete_failed: impl FnMut(&str) -> bool,
) -> Manage {
    let surge = allows_surge(ds);
    let mut out = Manage::default();
    for view in nodes {
        let name = view.node.metadata.name.clone().unwrap_or_default();
        let pods = by_node.get(&name).map(Vec::as_slice).unwrap_or_default();
        let Placement {
            should_run,
            should_continue_running,
        } = view.placement;
        if should_run && pods.is_empty() {
            out.create_on.push(name);
            continue;
        }
        if should_continue_running {
            let mut running = Vec::new();
            for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                match phase(pod) {
                    "Failed" => {
                        if may_delete_failed(&name) {
                            out.delete.push((pod.clone(), Deletion::Failed));
                        }
                    }
                    "Succeeded" => out.delete.push((pod.clone(), Deletion::Succeeded)),
                    _ => running.push(pod.clone()),
                }
            }
            sort_oldest_first(&mut running);
            if !surge {
                // All but the oldest go. (A node whose only pods are failed ones gets a new pod
                // once they are gone: the next sync sees it empty.)
                for pod in running.iter().skip(1) {
                    out.delete.push((pod.clone(), Deletion::Excess));
                }
                continue;
            }
            if running.len() <= 1 {
                if running.is_empty() && should_run {
                    out.create_on.push(name);
                }
                continue;
            }
            // Surging: an old and a new pod may share the node until the new one is available.
            let (mut oldest_new, mut oldest_old) = (None, None);
            for pod in &running {
                let slot = if hash_of(pod) == Some(hash) {
                    &mut oldest_new
                } else {
                    &mut oldest_old
                };
                if slot.is_none() {
                    *slot = Some(pod.clone());
                } else {
                    out.delete.push((pod.clone(), Deletion::Excess));
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                && (!pod_util::is_ready(&old) || pod_util::is_available(&new, min_ready_seconds(ds), now))
            {
                out.delete.push((old, Deletion::Excess));
            }
        } else {
            for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                out.delete.push((pod.clone(), Deletion::Excess));
            }
        }
    }
    // Pods waiting for a node that is gone would never be scheduled (nor collected).
    for (node, pods) in by_node {
        if nodes
            .iter()
            .any(|v| v.node.metadata.name.as_deref() == Some(node))
        {
            continue;
        }
        for pod in pods.iter().filter(|p| pod_util::node_name(p).is_empty()) {
            out.delete.push((pod.clone(), Deletion::Excess));
        }
    }
    out
}

/// `unavailableCount`'s limits: maxUnavailable and maxSurge as numbers of nodes out of `desired`
/// (percentages round up); both zero means one unavailable at a time.
pub fn update_limits(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let rolling = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref());
    let scaled = |v: Option<&IntOrString>, default: i32| match v {
        None => default,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map_or(default, |p| ((p * i64::from(desired) + 99) / 100) as i32),
    };
    let unavailable = scaled(rolling.and_then(|r| r.max_unavailable.as_ref()), 1);
    let surge = scaled(rolling.and_then(|r| r.max_surge.as_ref()), 0);
    if unavailable == 0 && surge == 0 {
        return (1, 0);
    }
    (unavailable, surge)
}

/// What a rolling update does this sync.
#[derive(Debug, Default, PartialEq)]
pub struct Rollout {
    /// Old pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// Nodes to create a new pod on (beside the old one: surge).
    pub create_on: Vec<String>,
}

/// A node's pod of the current revision and its pod of an older one.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// `findUpdatedPodsOnNode`: the node's new and old pod, or None when it has more than one of
/// either (the manage loop cleans that up first).
fn updated_and_old(
    ds: &DaemonSet,
    pods: &[Arc<Pod>],
    hash: &str,
) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if is_updated(ds, pod, hash) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod.clone());
    }
    Some((new, old))
}

/// `rollingUpdate`: with no surge, old pods are deleted (unavailable ones at once, available ones
/// while fewer than maxUnavailable nodes are unavailable) and the manage loop replaces them; with
/// surge, new pods start beside old ones (at most maxSurge at a time) and an old pod goes once its
/// node's new pod is available.
pub fn rolling_update(
    ds: &DaemonSet,
    desired: i32,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> Rollout {
    let (max_unavailable, max_surge) = update_limits(ds, desired);
    let min_ready = min_ready_seconds(ds);
    let available = |p: &Pod| pod_util::is_available(p, min_ready, now);
    let mut out = Rollout::default();
    if max_surge == 0 {
        let mut unavailable = 0;
        let (mut replace_now, mut candidates) = (Vec::new(), Vec::new());
        for pods in by_node.values() {
            match updated_and_old(ds, pods, hash) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(&old) {
                        replace_now.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i32) as usize;
        out.delete = replace_now;
        out.delete.extend(candidates.into_iter().take(room));
        return out;
    }
    let mut surging = 0;
    let (mut replace_now, mut candidates) = (Vec::new(), Vec::new());
    for (node, pods) in by_node {
        match updated_and_old(ds, pods, hash) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !available(&old) {
                    replace_now.push(node.clone());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                if available(&new) {
                    out.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).clamp(0, candidates.len() as i32) as usize;
    out.create_on = replace_now;
    out.create_on.extend(candidates.into_iter().take(room));
    out
}

/// `updateDaemonSetStatus`'s counts: per node that should run the pod, whether it has one, and of
/// its oldest pod whether it is ready, available and of the current revision.
pub fn status(
    ds: &DaemonSet,
    nodes: &[NodeView<'_>],
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let mut st = DaemonSetStatus {
        collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
        observed_generation: ds.status.as_ref().and_then(|s| s.observed_generation),
        ..Default::default()
    };
    for view in nodes {
        let name = view.node.metadata.name.as_deref().unwrap_or_default();
        let mut pods = by_node.get(name).cloned().unwrap_or_default();
        let scheduled = !pods.is_empty();
        if !view.placement.should_run {
            if scheduled {
                st.number_misscheduled += 1;
            }
            continue;
        }
        st.desired_number_scheduled += 1;
        if !scheduled {
            continue;
        }
        st.current_number_scheduled += 1;
        sort_oldest_first(&mut pods);
        let pod = &pods[0];
        if pod_util::is_ready(pod) {
            st.number_ready += 1;
            if pod_util::is_available(pod, min_ready_seconds(ds), now) {
                *st.number_available.get_or_insert(0) += 1;
            }
        }
        if is_updated(ds, pod, hash) {
            *st.updated_number_scheduled.get_or_insert(0) += 1;
        }
    }
    let unavailable = st.desired_number_scheduled - st.number_available.unwrap_or(0);
    if unavailable > 0 {
        st.number_unavailable = Some(unavailable);
    }
    st
}
