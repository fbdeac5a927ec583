//! TaintToleration: a node's NoSchedule and NoExecute taints keep out the pods that do not tolerate
//! them; PreferNoSchedule taints the pod does not tolerate lower the node's score.

use k8s_openapi::api::core::v1::Toleration;
pub use skiff_controllers::scheduling::tolerates;

use crate::framework::{FilterPlugin, NodeInfo, PodInfo, Reason, ScorePlugin, default_normalize};

/// The plugin.
pub struct TaintToleration;

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let untolerated = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .find(|t| !pod.tolerations.iter().any(|tol| tolerates(tol, t)));
        match untolerated {
            Some(t) => Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )]),
            None => Ok(()),
        }
    }
}

impl ScorePlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn weight(&self) -> i64 {
        3
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let prefer: Vec<&Toleration> = pod
            .tolerations
            .iter()
            .filter(|t| matches!(t.effect.as_deref(), None | Some("") | Some("PreferNoSchedule")))
            .collect();
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !prefer.iter().any(|tol| tolerates(tol, t)))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        // Fewer intolerable taints is better.
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Taint;

    use super::*;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn tol(key: &str, op: &str, value: &str, effect: &str) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some(op.into()),
            value: Some(value.into()),
            effect: Some(effect.into()),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let t = taint("dedicated", "gpu", "NoSchedule");
        assert!(tolerates(&tol("dedicated", "Equal", "gpu", "NoSchedule"), &t));
        assert!(tolerates(&tol("dedicated", "Exists", "", ""), &t));
        assert!(
            tolerates(&tol("", "Exists", "", ""), &t),
            "empty key + Exists tolerates everything"
        );
        assert!(!tolerates(&tol("dedicated", "Equal", "cpu", "NoSchedule"), &t));
        assert!(!tolerates(&tol("dedicated", "Equal", "gpu", "NoExecute"), &t));
    }

    #[test]
    fn untolerated_taints_filter_with_upstreams_message() {
        let node = NodeInfo {
            taints: vec![taint("node.kubernetes.io/not-ready", "", "NoExecute")],
            ..Default::default()
        };
        let err = TaintToleration.filter(&PodInfo::default(), &node).unwrap_err();
        assert_eq!(
            err,
            vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }".to_owned()]
        );
        let soft = NodeInfo {
            taints: vec![taint("a", "b", "PreferNoSchedule")],
            ..Default::default()
        };
        assert!(TaintToleration.filter(&PodInfo::default(), &soft).is_ok());
        let mut scores = vec![TaintToleration.score(&PodInfo::default(), &soft), 0];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
