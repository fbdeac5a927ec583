//! Spreading the pods of one controller over nodes: the fewer pods of the same owner a node already
//! has, the better it scores (what upstream's PodTopologySpread does by default over hostnames, and
//! SelectorSpread did before it).

use crate::framework::{NodeInfo, PodInfo, ScorePlugin, default_normalize};

/// The plugin.
pub struct SelectorSpread;

impl ScorePlugin for SelectorSpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        // A pod with constraints of its own is spread by them instead (upstream applies the
        // default constraints only to pods that declare none).
        if !pod.spread.is_empty() {
            return 0;
        }
        pod.owner
            .as_ref()
            .and_then(|o| node.owners.get(o))
            .copied()
            .unwrap_or(0)
    }

    fn normalize(&self, scores: &mut [i64]) {
        default_normalize(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_with_fewer_siblings_score_higher() {
        let owner = Some("rs-1".to_owned());
        let mut crowded = NodeInfo::default();
        for i in 0..3 {
            crowded.add_pod(&PodInfo {
                uid: format!("p{i}"),
                owner: owner.clone(),
                ..Default::default()
            });
        }
        let pod = PodInfo {
            owner,
            ..Default::default()
        };
        let mut scores = vec![
            SelectorSpread.score(&pod, &crowded),
            SelectorSpread.score(&pod, &NodeInfo::default()),
        ];
        SelectorSpread.normalize(&mut scores);
        assert_eq!(scores, vec![0, 100]);
    }
}
