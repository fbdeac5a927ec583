//! TaintToleration (plugins/tainttoleration): filters nodes with an untolerated NoSchedule or
//! NoExecute taint, and scores by the number of untolerated PreferNoSchedule taints (fewer is better).

use k8s_openapi::api::core::v1::{Pod, Taint, Toleration};

use crate::framework::{CycleState, FilterPlugin, FilterResult, NodeInfo, ScorePlugin};

/// The TaintToleration plugin.
pub struct TaintToleration;

/// Whether `t` tolerates `taint`, as upstream's Toleration.ToleratesTaint.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default(),
        _ => false,
    }
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn taints(node: &NodeInfo) -> &[Taint] {
    node.node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn filter(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> FilterResult {
        let tols = tolerations(pod);
        let untolerated = taints(node).iter().find(|taint| {
            (taint.effect == "NoSchedule" || taint.effect == "NoExecute")
                && !tols.iter().any(|t| tolerates(t, taint))
        })?;
        Some(vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            untolerated.key,
            untolerated.value.as_deref().unwrap_or_default()
        )])
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }
    fn weight(&self) -> i64 {
        3
    }
    fn score(&self, _: &CycleState, pod: &Pod, node: &NodeInfo) -> i64 {
        // Only tolerations that apply to PreferNoSchedule count (upstream's getAllTolerationPreferNoSchedule).
        let tols: Vec<&Toleration> = tolerations(pod)
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .collect();
        taints(node)
            .iter()
            .filter(|taint| taint.effect == "PreferNoSchedule" && !tols.iter().any(|t| tolerates(t, taint)))
            .count() as i64
    }
    fn normalize(&self, scores: &mut [i64]) {
        super::default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{node, pod};
    use serde_json::json;

    fn tainted(key: &str, value: &str, effect: &str) -> NodeInfo {
        node(
            "n",
            "1",
            "1Gi",
            json!({"spec": {"taints": [{"key": key, "value": value, "effect": effect}]}}),
        )
    }

    #[test]
    fn untolerated_noschedule_and_noexecute_filter_with_upstream_reason() {
        let s = CycleState::default();
        let p = pod("p", json!({}));
        assert_eq!(
            TaintToleration.filter(&s, &p, &tainted("node.kubernetes.io/not-ready", "", "NoExecute")),
            Some(vec![
                "node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_string()
            ])
        );
        assert!(
            TaintToleration
                .filter(&s, &p, &tainted("k", "v", "NoSchedule"))
                .is_some()
        );
        assert_eq!(
            TaintToleration.filter(&s, &p, &tainted("k", "v", "PreferNoSchedule")),
            None
        );
    }

    #[test]
    fn tolerations_match_by_key_value_effect_and_operator() {
        let s = CycleState::default();
        let n = tainted("k", "v", "NoSchedule");
        let ok = |tol| {
            TaintToleration
                .filter(&s, &pod("p", json!({"tolerations": [tol]})), &n)
                .is_none()
        };
        assert!(ok(json!({"key": "k", "value": "v", "effect": "NoSchedule"})));
        assert!(ok(json!({"key": "k", "operator": "Exists"})));
        assert!(ok(json!({"operator": "Exists"})));
        assert!(!ok(json!({"key": "k", "value": "w"})));
        assert!(!ok(json!({"key": "k", "value": "v", "effect": "NoExecute"})));
    }

    #[test]
    fn prefer_no_schedule_scores_lower() {
        let s = CycleState::default();
        let p = pod("p", json!({}));
        let mut scores = vec![
            TaintToleration.score(&s, &p, &tainted("k", "v", "PreferNoSchedule")),
            TaintToleration.score(&s, &p, &node("m", "1", "1Gi", json!({}))),
        ];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
