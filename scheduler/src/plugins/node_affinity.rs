//! NodeAffinity (plugins/nodeaffinity) with NodeSelector folded in, as upstream: the pod's
//! spec.nodeSelector and required node affinity filter; preferred terms score by summed weight.
//! Term matching mirrors component-helpers/scheduling/corev1/nodeaffinity.

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::framework::{CycleState, FilterPlugin, FilterResult, NodeInfo, ScorePlugin};

/// The NodeAffinity plugin.
pub struct NodeAffinity;

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        op @ ("Gt" | "Lt") => {
            let (Some(v), [x]) = (value.and_then(|v| v.parse::<i64>().ok()), values) else {
                return false;
            };
            let Ok(x) = x.parse::<i64>() else { return false };
            if op == "Gt" { v > x } else { v < x }
        }
        _ => false,
    }
}

/// Whether `term` matches the node: every expression and field requirement holds; an empty term
/// matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.node.metadata.labels.as_ref();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_matches(r, Some(node.name())))
}

/// Whether the pod's nodeSelector and required node affinity both match (upstream's
/// RequiredNodeAffinity.Match).
pub fn required_matches(pod: &Pod, node: &NodeInfo) -> bool {
    let Some(spec) = &pod.spec else { return true };
    if let Some(sel) = &spec.node_selector {
        let labels = node.node.metadata.labels.as_ref();
        if !sel.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| na.required_during_scheduling_ignored_during_execution.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, node)))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult {
        (!required_matches(pod, node))
            .then(|| vec!["node(s) didn't match Pod's node affinity/selector".into()])
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        let preferred = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| na.preferred_during_scheduling_ignored_during_execution.as_deref())
            .unwrap_or_default();
        preferred
            .iter()
            .filter(|p| term_matches(&p.preference, node))
            .map(|p| p.weight as i64)
            .sum()
    }
    fn normalize(&self, scores: &mut [i64]) {
        super::default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{node, pod};
    use serde_json::json;

    fn labelled(name: &str, labels: serde_json::Value) -> NodeInfo {
        node(name, "1", "1Gi", json!({"metadata": {"labels": labels}}))
    }

    fn required(exprs: serde_json::Value) -> Pod {
        pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}}),
        )
    }

    #[test]
    fn node_selector_filters() {
        let s = CycleState::default();
        let p = pod("p", json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            NodeAffinity.filter(&s, &p, &labelled("a", json!({"disk": "ssd"}))),
            None
        );
        assert_eq!(
            NodeAffinity.filter(&s, &p, &labelled("b", json!({"disk": "hdd"}))),
            Some(vec![
                "node(s) didn't match Pod's node affinity/selector".to_string()
            ])
        );
    }

    #[test]
    fn required_affinity_operators() {
        let s = CycleState::default();
        let n = labelled("a", json!({"zone": "z1", "cores": "8"}));
        let fits = |e| NodeAffinity.filter(&s, &required(e), &n).is_none();
        assert!(fits(
            json!([{"key": "zone", "operator": "In", "values": ["z1", "z2"]}])
        ));
        assert!(!fits(
            json!([{"key": "zone", "operator": "NotIn", "values": ["z1"]}])
        ));
        assert!(fits(json!([{"key": "gpu", "operator": "DoesNotExist"}])));
        assert!(!fits(json!([{"key": "gpu", "operator": "Exists"}])));
        assert!(fits(json!([{"key": "cores", "operator": "Gt", "values": ["4"]}])));
        assert!(!fits(
            json!([{"key": "cores", "operator": "Lt", "values": ["4"]}])
        ));
        assert!(!fits(json!([])));
        let by_name = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a"]}]}]}}}}),
        );
        assert!(NodeAffinity.filter(&s, &by_name, &n).is_none());
    }

    #[test]
    fn preferred_affinity_scores_by_weight() {
        let s = CycleState::default();
        let p = pod(
            "p",
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}},
            {"weight": 30, "preference": {"matchExpressions": [{"key": "ssd", "operator": "Exists"}]}}]}}}),
        );
        let nodes = [
            labelled("a", json!({"zone": "z1"})),
            labelled("b", json!({"ssd": "y", "zone": "z1"})),
            labelled("c", json!({})),
        ];
        let mut scores: Vec<i64> = nodes.iter().map(|n| NodeAffinity.score(&s, &p, n)).collect();
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![25, 100, 0]);
    }
}
