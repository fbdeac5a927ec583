//! InterPodAffinity (upstream's plugins/interpodaffinity): a pod that wants to be near pods
//! (`podAffinity`) or away from them (`podAntiAffinity`), where "near" is one topology domain: the
//! nodes sharing the value of the term's `topologyKey` label.
//!
//! Filter, as upstream, three rules in this order: the pod's required affinity terms need a matching
//! pod in the node's domain (unless no pod anywhere matches and the pod matches its own terms: the
//! first of a group); its required anti-affinity terms need none; and no pod already placed may have
//! a required anti-affinity term matching the newcomer within that term's domain. Score: the
//! preferred terms' weights of the pods in each domain, both ways (the newcomer's terms matching
//! them, theirs matching it), normalized between the lowest and highest node.
//!
//! Namespaces: a term looks in its `namespaces`, or the pod's own namespace when it names none and
//! has no `namespaceSelector`; an empty `namespaceSelector` means every namespace. Namespace labels
//! are not in the scheduler's view, so a non-empty `namespaceSelector` is matched only through the
//! `kubernetes.io/metadata.name` label every namespace carries.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::PodAffinityTerm;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};

use crate::framework::{CyclePlugin, MAX_NODE_SCORE, NodeInfo, PodInfo, PodMeta, Prepared, Reason};

// Affinity failures cannot be fixed by evicting pods (upstream: UnschedulableAndUnresolvable);
// anti-affinity ones can (Unschedulable).

/// The plugin.
pub struct InterPodAffinity;

/// Upstream's weight of an existing pod's *required* affinity term matching the newcomer, in scoring
/// (`hardPodAffinityWeight`, default 1).
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Whether a label selector selects `labels` (an invalid selector selects nothing).
pub fn selects(selector: &LabelSelector, labels: &std::collections::BTreeMap<String, String>) -> bool {
    Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
}

/// Whether `term`, written by a pod in `owner_ns`, selects `pod`.
pub fn term_matches(term: &PodAffinityTerm, owner_ns: &str, pod: &PodMeta) -> bool {
    let in_namespace = match (&term.namespaces, &term.namespace_selector) {
        (names, None) if names.as_ref().is_none_or(|n| n.is_empty()) => pod.namespace == owner_ns,
        (names, selector) => {
            names.iter().flatten().any(|n| *n == pod.namespace)
                || selector.as_ref().is_some_and(|s| {
                    let labels = [("kubernetes.io/metadata.name".to_owned(), pod.namespace.clone())].into();
                    selects(s, &labels)
                })
        }
    };
    in_namespace
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| selects(s, &pod.labels))
}

/// (topology key, value): one topology domain.
type Domain = (String, String);

/// What one cycle computed over every placed pod.
#[derive(Debug, Default)]
struct State {
    /// Domains holding a pod that matches all the newcomer's required affinity terms, per term key.
    affinity: HashMap<Domain, usize>,
    /// Domains holding a pod matching one of the newcomer's required anti-affinity terms.
    anti_affinity: HashSet<Domain>,
    /// Domains where a placed pod's required anti-affinity term matches the newcomer.
    existing_anti_affinity: HashSet<Domain>,
    /// Preferred-term weights per domain.
    scores: HashMap<Domain, i64>,
}

impl CyclePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn prepare(&self, pod: &PodInfo, nodes: &[&NodeInfo]) -> Option<Box<dyn Prepared>> {
        let me = &pod.meta;
        let own_terms = !me.required_affinity.is_empty()
            || !me.required_anti_affinity.is_empty()
            || !me.preferred_affinity.is_empty()
            || !me.preferred_anti_affinity.is_empty();
        let others_have_terms = nodes.iter().any(|n| n.anti_affinity_pods > 0);
        // Others' *preferred* terms also score the newcomer (symmetry); looking for them costs a
        // pass over every pod, so it is done only when something else already requires that pass.
        if !own_terms && !others_have_terms {
            return None;
        }
        let mut state = State::default();
        for node in nodes {
            for placed in node.pods.values() {
                let domain = |key: &str| Some((key.to_owned(), node.labels.get(key)?.clone()));
                if !me.required_affinity.is_empty()
                    && me
                        .required_affinity
                        .iter()
                        .all(|t| term_matches(t, &me.namespace, placed))
                {
                    for t in &me.required_affinity {
                        if let Some(d) = domain(&t.topology_key) {
                            *state.affinity.entry(d).or_default() += 1;
                        }
                    }
                }
                for t in &me.required_anti_affinity {
                    if term_matches(t, &me.namespace, placed)
                        && let Some(d) = domain(&t.topology_key)
                    {
                        state.anti_affinity.insert(d);
                    }
                }
                for t in &placed.required_anti_affinity {
                    if term_matches(t, &placed.namespace, me)
                        && let Some(d) = domain(&t.topology_key)
                    {
                        state.existing_anti_affinity.insert(d);
                    }
                }
                let mut add = |t: &PodAffinityTerm, weight: i64| {
                    if let Some(d) = domain(&t.topology_key) {
                        *state.scores.entry(d).or_default() += weight;
                    }
                };
                for w in &me.preferred_affinity {
                    if term_matches(&w.pod_affinity_term, &me.namespace, placed) {
                        add(&w.pod_affinity_term, i64::from(w.weight));
                    }
                }
                for w in &me.preferred_anti_affinity {
                    if term_matches(&w.pod_affinity_term, &me.namespace, placed) {
                        add(&w.pod_affinity_term, -i64::from(w.weight));
                    }
                }
                for w in &placed.preferred_affinity {
                    if term_matches(&w.pod_affinity_term, &placed.namespace, me) {
                        add(&w.pod_affinity_term, i64::from(w.weight));
                    }
                }
                for w in &placed.preferred_anti_affinity {
                    if term_matches(&w.pod_affinity_term, &placed.namespace, me) {
                        add(&w.pod_affinity_term, -i64::from(w.weight));
                    }
                }
                for t in &placed.required_affinity {
                    if term_matches(t, &placed.namespace, me) {
                        add(t, HARD_POD_AFFINITY_WEIGHT);
                    }
                }
            }
        }
        Some(Box::new(state))
    }
}

impl Prepared for State {
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), (Vec<Reason>, bool)> {
        let me = &pod.meta;
        let domain = |key: &str| Some((key.to_owned(), node.labels.get(key)?.clone()));
        if !me.required_affinity.is_empty() {
            let mut all_present = true;
            for t in &me.required_affinity {
                match domain(&t.topology_key) {
                    // Every term's topology label must be on the node.
                    None => return Err((vec!["node(s) didn't match pod affinity rules".into()], false)),
                    Some(d) => all_present &= self.affinity.get(&d).is_some_and(|n| *n > 0),
                }
            }
            let first_of_its_group = self.affinity.is_empty()
                && me
                    .required_affinity
                    .iter()
                    .all(|t| term_matches(t, &me.namespace, me));
            if !all_present && !first_of_its_group {
                return Err((vec!["node(s) didn't match pod affinity rules".into()], false));
            }
        }
        if me
            .required_anti_affinity
            .iter()
            .any(|t| domain(&t.topology_key).is_some_and(|d| self.anti_affinity.contains(&d)))
        {
            return Err((vec!["node(s) didn't match pod anti-affinity rules".into()], true));
        }
        if node
            .labels
            .iter()
            .any(|(k, v)| self.existing_anti_affinity.contains(&(k.clone(), v.clone())))
        {
            return Err((
                vec!["node(s) didn't satisfy existing pods anti-affinity rules".into()],
                true,
            ));
        }
        Ok(())
    }

    fn score(&self, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        if self.scores.is_empty() {
            return 0;
        }
        node.labels
            .iter()
            .filter_map(|(k, v)| self.scores.get(&(k.clone(), v.clone())))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = (
            scores.iter().copied().min().unwrap_or(0),
            scores.iter().copied().max().unwrap_or(0),
        );
        for s in scores.iter_mut() {
            *s = if max > min {
                MAX_NODE_SCORE * (*s - min) / (max - min)
            } else {
                0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    use super::*;
    use crate::framework::Profile;

    fn node(name: &str, zone: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("zone".to_owned(), zone.to_owned()),
            ]),
            ..Default::default()
        }
    }

    fn pod(uid: &str, labels: serde_json::Value, affinity: serde_json::Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": uid, "namespace": "ns", "uid": uid, "labels": labels },
            "spec": { "containers": [{ "name": "c" }], "affinity": affinity },
        }))
        .unwrap();
        PodInfo::new(&pod)
    }

    fn profile() -> Profile {
        Profile {
            filters: vec![],
            scores: vec![],
            cycle: vec![Box::new(InterPodAffinity)],
        }
    }

    fn feasible(p: &PodInfo, nodes: &[NodeInfo]) -> (Vec<String>, Vec<String>) {
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let out = profile().filter(p, &refs, 0);
        (
            out.feasible.iter().map(|i| nodes[*i].name.clone()).collect(),
            out.reasons.keys().cloned().collect(),
        )
    }

    fn term(key: &str, app: &str) -> serde_json::Value {
        json!({ "topologyKey": key, "labelSelector": { "matchLabels": { "app": app } } })
    }

    #[test]
    fn required_affinity_follows_the_matching_pods_domain() {
        let mut nodes = vec![node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let cache = pod("cache-1", json!({ "app": "cache" }), json!(null));
        nodes[0].add_pod(&cache);
        let web = pod(
            "web-1",
            json!({ "app": "web" }),
            json!({ "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "cache")] } }),
        );
        let (ok, reasons) = feasible(&web, &nodes);
        assert_eq!(ok, ["a", "b"]);
        assert_eq!(reasons, ["node(s) didn't match pod affinity rules"]);
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let nodes = vec![node("a", "z1"), node("b", "z2")];
        let first = pod(
            "web-1",
            json!({ "app": "web" }),
            json!({ "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "web")] } }),
        );
        assert_eq!(feasible(&first, &nodes).0, ["a", "b"]);
        // …but a pod whose terms select others, none of which exist, goes nowhere.
        let lonely = pod(
            "x",
            json!({ "app": "x" }),
            json!({ "podAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")] } }),
        );
        assert!(feasible(&lonely, &nodes).0.is_empty());
    }

    #[test]
    fn anti_affinity_both_ways() {
        let mut nodes = vec![node("a", "z1"), node("b", "z2"), node("c", "z3")];
        let anti = json!({ "podAntiAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": [
            term("kubernetes.io/hostname", "web")] } });
        nodes[0].add_pod(&pod("web-1", json!({ "app": "web" }), anti.clone()));
        // The newcomer's own anti-affinity keeps it off node a.
        let (ok, reasons) = feasible(&pod("web-2", json!({ "app": "web" }), anti), &nodes);
        assert_eq!(ok, ["b", "c"]);
        assert_eq!(reasons, ["node(s) didn't match pod anti-affinity rules"]);
        // A pod without terms is kept off node a by web-1's anti-affinity, if web-1's term selects it.
        let (ok, reasons) = feasible(&pod("web-3", json!({ "app": "web" }), json!(null)), &nodes);
        assert_eq!(ok, ["b", "c"]);
        assert_eq!(
            reasons,
            ["node(s) didn't satisfy existing pods anti-affinity rules"]
        );
        assert_eq!(
            feasible(&pod("db-1", json!({ "app": "db" }), json!(null)), &nodes).0,
            ["a", "b", "c"]
        );
        // Another namespace is out of a term's reach unless it names it.
        let mut other = pod("web-4", json!({ "app": "web" }), json!(null));
        std::sync::Arc::make_mut(&mut other.meta).namespace = "other".into();
        assert_eq!(feasible(&other, &nodes).0, ["a", "b", "c"]);
    }

    #[test]
    fn preferred_terms_score_domains() {
        let mut nodes = [node("a", "z1"), node("b", "z2")];
        nodes[1].add_pod(&pod("cache-1", json!({ "app": "cache" }), json!(null)));
        let web = pod(
            "web-1",
            json!({ "app": "web" }),
            json!({ "podAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
                { "weight": 50, "podAffinityTerm": term("zone", "cache") }] } }),
        );
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let p = profile();
        let filtered = p.filter(&web, &refs, 0);
        assert_eq!(p.score(&web, &refs, &filtered), vec![0, 200]);
    }

    #[test]
    fn nothing_to_do_costs_nothing() {
        let nodes = [node("a", "z1")];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        assert!(
            InterPodAffinity
                .prepare(&pod("p", json!({}), json!(null)), &refs)
                .is_none()
        );
    }
}
