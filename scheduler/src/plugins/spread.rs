//! Spreading one owner's pods over nodes: the hostname part of PodTopologySpread's system default
//! constraints (plugins/podtopologyspread, maxSkew 3 ScheduleAnyway on kubernetes.io/hostname), scored
//! as upstream's normalize does: nodes holding fewer of the owner's pods score higher.

use k8s_openapi::api::core::v1::Pod;

use crate::framework::{CycleState, MAX_NODE_SCORE, NodeInfo, ScorePlugin};

/// Scores nodes by how few pods of the pod's controller they already hold.
pub struct OwnerSpread;

impl ScorePlugin for OwnerSpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
    fn weight(&self) -> i64 {
        2
    }
    fn score(&self, state: &CycleState, _: &Pod, node: &NodeInfo) -> i64 {
        state.owner_pods_per_node.get(node.name()).copied().unwrap_or(0)
    }
    fn normalize(&self, scores: &mut [i64]) {
        // upstream: MaxNodeScore * (max + min - s) / max
        let max = scores.iter().copied().max().unwrap_or(0);
        let min = scores.iter().copied().min().unwrap_or(0);
        for s in scores.iter_mut() {
            *s = if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *s) / max
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::fixtures::{node, pod};
    use serde_json::json;

    fn owned(name: &str) -> Pod {
        let mut p = pod(name, json!({}));
        p.metadata.owner_references = Some(vec![
            serde_json::from_value(json!({"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "rs", "uid": "u1", "controller": true}))
            .unwrap(),
        ]);
        p
    }

    #[test]
    fn fewer_owner_pods_score_higher() {
        let mut a = node("a", "4", "4Gi", json!({}));
        a.add_pod(&owned("x"));
        a.add_pod(&owned("y"));
        let b = node("b", "4", "4Gi", json!({}));
        let nodes = vec![a, b];
        let p = owned("p");
        let state = CycleState::build(&p, &nodes);
        let mut scores: Vec<i64> = nodes.iter().map(|n| OwnerSpread.score(&state, &p, n)).collect();
        OwnerSpread.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
