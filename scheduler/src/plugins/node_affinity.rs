//! NodeAffinity: `spec.nodeSelector` and required node affinity filter nodes; preferred node affinity
//! scores them by the summed weights of the terms they match.

use skiff_controllers::scheduling::term_matches;

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Reason, ScorePlugin, default_normalize};

/// The plugin.
pub struct NodeAffinity;

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let fail = || {
            Err(vec![
                "node(s) didn't match Pod's node affinity/selector".to_owned(),
            ])
        };
        if pod
            .node_selector
            .iter()
            .any(|(k, v)| node.labels.get(k) != Some(v))
        {
            return fail();
        }
        let required = pod
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
        if let Some(selector) = required
            && !selector
                .node_selector_terms
                .iter()
                .any(|t| term_matches(t, &node.labels, &node.name))
        {
            return fail();
        }
        Ok(())
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        pod.affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref())
            .into_iter()
            .flatten()
            .filter(|p| term_matches(&p.preference, &node.labels, &node.name))
            .map(|p| p.weight as i64)
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Affinity, Pod};
    use serde_json::json;

    use super::*;

    fn pod(spec: serde_json::Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap();
        PodInfo::new(&pod)
    }

    fn node(name: &str, labels: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn selectors_and_required_terms() {
        let p = pod(json!({ "containers": [], "nodeSelector": { "disk": "ssd" } }));
        assert!(NodeAffinity.filter(&p, &node("a", &[("disk", "ssd")])).is_ok());
        assert!(NodeAffinity.filter(&p, &node("a", &[("disk", "hdd")])).is_err());

        let p = pod(
            json!({ "containers": [], "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a", "b"] },
                                       { "key": "cores", "operator": "Gt", "values": ["4"] }] },
                { "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["special"] }] }
            ] } } } }),
        );
        assert!(
            NodeAffinity
                .filter(&p, &node("x", &[("zone", "a"), ("cores", "8")]))
                .is_ok()
        );
        assert!(
            NodeAffinity
                .filter(&p, &node("x", &[("zone", "a"), ("cores", "2")]))
                .is_err()
        );
        assert!(
            NodeAffinity
                .filter(&p, &node("x", &[("zone", "c"), ("cores", "8")]))
                .is_err()
        );
        assert!(
            NodeAffinity.filter(&p, &node("special", &[])).is_ok(),
            "terms are ORed"
        );
        let _: Option<Affinity> = None;
    }

    #[test]
    fn preferred_terms_score_by_weight() {
        let p = pod(
            json!({ "containers": [], "affinity": { "nodeAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [
            { "weight": 80, "preference": { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a"] }] } },
            { "weight": 20, "preference": { "matchExpressions": [{ "key": "gpu", "operator": "Exists" }] } }
        ] } } }),
        );
        let mut scores = vec![
            NodeAffinity.score(&p, &node("1", &[("zone", "a"), ("gpu", "1")])),
            NodeAffinity.score(&p, &node("2", &[("zone", "a")])),
            NodeAffinity.score(&p, &node("3", &[])),
        ];
        assert_eq!(scores, vec![100, 80, 0]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, vec![100, 80, 0]);
    }
}
