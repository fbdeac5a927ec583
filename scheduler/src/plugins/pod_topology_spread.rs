//! PodTopologySpread (upstream's plugins/podtopologyspread) for pods that declare
//! `topologySpreadConstraints`: the pods a constraint selects, in the pod's namespace, are counted
//! per topology domain (the value of `topologyKey`) over the nodes the pod could use (its node
//! selector and required node affinity, upstream's default `nodeAffinityPolicy: Honor`; taints are
//! ignored, `nodeTaintsPolicy: Ignore`).
//!
//! `whenUnsatisfiable: DoNotSchedule` filters: placing the pod in a node's domain must not make that
//! domain exceed the least-loaded one by more than `maxSkew` (the minimum is 0 while fewer domains
//! exist than `minDomains`); a node without the key is out. `ScheduleAnyway` scores: fewer selected
//! pods in the node's domain is better. Pods without constraints are spread by owner over nodes
//! ([`super::selector_spread`], upstream's system default constraints).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::{
    api::core::v1::TopologySpreadConstraint, apimachinery::pkg::apis::meta::v1::LabelSelector,
};
use kube::core::{Selector, SelectorExt};

use super::node_affinity::NodeAffinity;
use crate::framework::{CyclePlugin, FilterPlugin, MAX_NODE_SCORE, NodeInfo, PodInfo, Prepared, Reason};

/// The plugin.
pub struct PodTopologySpread;

/// One constraint with its counts.
#[derive(Debug)]
struct Counted {
    key: String,
    max_skew: i64,
    hard: bool,
    /// Its selector with `matchLabelKeys` folded in; None selects nothing.
    selector: Option<Selector>,
    /// Selected pods per domain value, over the eligible nodes (domains with none count 0).
    counts: HashMap<String, i64>,
    /// The smallest count (0 while there are fewer domains than minDomains).
    min: i64,
}

#[derive(Debug)]
struct State {
    constraints: Vec<Counted>,
}

/// The constraint's selector plus `key in (pod's value)` for each of its `matchLabelKeys`.
fn selector_of(c: &TopologySpreadConstraint, labels: &BTreeMap<String, String>) -> Option<LabelSelector> {
    let mut selector = c.label_selector.clone()?;
    for key in c.match_label_keys.iter().flatten() {
        if let Some(value) = labels.get(key) {
            selector
                .match_labels
                .get_or_insert_with(BTreeMap::new)
                .insert(key.clone(), value.clone());
        }
    }
    Some(selector)
}

impl CyclePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn prepare(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Box<dyn Prepared>> {
        if pod.spread.is_empty() {
            return None;
        }
        let me = &pod.meta;
        let keys: Vec<&str> = pod.spread.iter().map(|c| c.topology_key.as_str()).collect();
        // Nodes the pod could use that carry every constraint's key (upstream counts only those).
        let eligible: Vec<&&NodeInfo> = nodes
            .iter()
            .filter(|n| keys.iter().all(|k| n.labels.contains_key(*k)))
            .filter(|n| NodeAffinity.filter(pod, n).is_ok())
            .collect();
        let constraints = pod
            .spread
            .iter()
            .map(|c| {
                let selector = selector_of(c, &me.labels).and_then(|s| Selector::try_from(s).ok());
                let mut counts: HashMap<String, i64> = HashMap::new();
                for node in &eligible {
                    let value = node.labels[&c.topology_key].clone();
                    let selected = node
                        .pods
                        .values()
                        .filter(|p| p.namespace == me.namespace)
                        .filter(|p| selector.as_ref().is_some_and(|s| s.matches(&p.labels)))
                        .count() as i64;
                    *counts.entry(value).or_default() += selected;
                }
                let min_domains = c.min_domains.unwrap_or(1).max(1) as usize;
                let min = if counts.len() < min_domains {
                    0
                } else {
                    counts.values().copied().min().unwrap_or(0)
                };
                Counted {
                    key: c.topology_key.clone(),
                    max_skew: i64::from(c.max_skew),
                    hard: c.when_unsatisfiable != "ScheduleAnyway",
                    selector,
                    counts,
                    min,
                }
            })
            .collect();
        Some(Box::new(State { constraints }))
    }
}

impl Prepared for State {
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), (Vec<Reason>, bool)> {
        for c in self.constraints.iter().filter(|c| c.hard) {
            let Some(value) = node.labels.get(&c.key) else {
                return Err((
                    vec![
                        "node(s) didn't match pod topology spread constraints (missing required label)"
                            .into(),
                    ],
                    false,
                ));
            };
            let itself = i64::from(c.selector.as_ref().is_some_and(|s| s.matches(&pod.meta.labels)));
            let skew = c.counts.get(value).copied().unwrap_or(0) + itself - c.min;
            if skew > c.max_skew {
                // Evicting pods of the crowded domain could bring the skew down (upstream: Unschedulable).
                return Err((
                    vec!["node(s) didn't match pod topology spread constraints".into()],
                    true,
                ));
            }
        }
        Ok(())
    }

    /// Selected pods in the node's domains, summed over the soft constraints (lower is better); a
    /// node missing a key scores worst.
    fn score(&self, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let mut sum = 0;
        for c in self.constraints.iter().filter(|c| !c.hard) {
            match node.labels.get(&c.key) {
                Some(value) => sum += c.counts.get(value).copied().unwrap_or(0),
                None => return i64::MAX,
            }
        }
        sum
    }

    fn normalize(&self, scores: &mut [i64]) {
        let known = scores.iter().copied().filter(|s| *s != i64::MAX);
        let (min, max) = (known.clone().min().unwrap_or(0), known.max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = match *s {
                i64::MAX => 0,
                _ if max == 0 => MAX_NODE_SCORE,
                v => MAX_NODE_SCORE * (max + min - v) / max,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;
    use crate::framework::Profile;

    fn node(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut labels = BTreeMap::from([("kubernetes.io/hostname".to_owned(), name.to_owned())]);
        if let Some(z) = zone {
            labels.insert("zone".into(), z.into());
        }
        NodeInfo {
            name: name.into(),
            labels,
            ..Default::default()
        }
    }

    fn pod(uid: &str, when: &str, max_skew: i32) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": uid, "namespace": "ns", "uid": uid, "labels": { "app": "web" } },
            "spec": { "containers": [{ "name": "c" }], "topologySpreadConstraints": [{
                "maxSkew": max_skew, "topologyKey": "zone", "whenUnsatisfiable": when,
                "labelSelector": { "matchLabels": { "app": "web" } } }] },
        }))
        .unwrap();
        PodInfo::new(&pod)
    }

    fn profile() -> Profile {
        Profile {
            filters: vec![],
            scores: vec![],
            cycle: vec![Box::new(PodTopologySpread)],
        }
    }

    #[test]
    fn do_not_schedule_keeps_the_skew() {
        let mut nodes = [
            node("a", Some("z1")),
            node("b", Some("z1")),
            node("c", Some("z2")),
            node("d", None),
        ];
        nodes[0].add_pod(&pod("w1", "DoNotSchedule", 1));
        nodes[1].add_pod(&pod("w2", "DoNotSchedule", 1));
        nodes[2].add_pod(&pod("w3", "DoNotSchedule", 1));
        // z1 has 2, z2 has 1: another in z1 would make the skew 2.
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let out = profile().filter(&pod("w4", "DoNotSchedule", 1), &refs, 0);
        let names: Vec<&str> = out.feasible.iter().map(|i| nodes[*i].name.as_str()).collect();
        assert_eq!(names, ["c"]);
        assert_eq!(
            out.reasons
                .get("node(s) didn't match pod topology spread constraints"),
            Some(&2)
        );
        assert_eq!(
            out.reasons
                .get("node(s) didn't match pod topology spread constraints (missing required label)"),
            Some(&1)
        );
        // A larger maxSkew allows z1 again.
        let out = profile().filter(&pod("w4", "DoNotSchedule", 2), &refs, 0);
        assert_eq!(out.feasible.len(), 3);
    }

    #[test]
    fn schedule_anyway_prefers_the_emptier_domain() {
        let mut nodes = [node("a", Some("z1")), node("b", Some("z2"))];
        nodes[0].add_pod(&pod("w1", "ScheduleAnyway", 1));
        nodes[0].add_pod(&pod("w2", "ScheduleAnyway", 1));
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let p = profile();
        let newcomer = pod("w3", "ScheduleAnyway", 1);
        let filtered = p.filter(&newcomer, &refs, 0);
        assert_eq!(filtered.feasible.len(), 2, "soft constraints filter nothing");
        let scores = p.score(&newcomer, &refs, &filtered);
        assert!(scores[1] > scores[0], "{scores:?}");
    }
}
