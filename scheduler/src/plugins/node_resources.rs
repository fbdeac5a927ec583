//! NodeResourcesFit and NodeResourcesBalancedAllocation: a pod's requests must fit what the node has
//! left (CPU, memory, ephemeral storage, and one more pod); among the nodes it fits, the least
//! allocated (LeastAllocated) and the most balanced between CPU and memory score best.

use crate::framework::{FilterPlugin, MAX_NODE_SCORE, NodeInfo, PodInfo, Reason, ScorePlugin};

/// The Fit filter.
pub struct Fit;

impl FilterPlugin for Fit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn preemption_may_help(&self) -> bool {
        true
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Vec<Reason>> {
        let (want, used, has) = (&pod.requests, &node.requested, &node.allocatable);
        let mut reasons = Vec::new();
        if used.pods + 1 > has.pods {
            reasons.push("Too many pods".to_owned());
        }
        for (name, w, u, h) in [
            ("cpu", want.milli_cpu, used.milli_cpu, has.milli_cpu),
            ("memory", want.memory, used.memory, has.memory),
            (
                "ephemeral-storage",
                want.ephemeral_storage,
                used.ephemeral_storage,
                has.ephemeral_storage,
            ),
        ] {
            if w > 0 && w + u > h {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }
}

/// The fraction of `alloc` in use once `pod` joins, for CPU and memory (scoring defaults applied).
fn fractions(pod: &PodInfo, node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            node.nonzero_requested.milli_cpu + pod.nonzero.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (
            node.nonzero_requested.memory + pod.nonzero.memory,
            node.allocatable.memory,
        ),
    ]
}

/// NodeResourcesFit's default scoring strategy: the share left free, averaged over CPU and memory.
pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let scores: Vec<i64> = fractions(pod, node)
            .iter()
            .map(|(requested, alloc)| {
                if *alloc == 0 || requested > alloc {
                    0
                } else {
                    (alloc - requested) * MAX_NODE_SCORE / alloc
                }
            })
            .collect();
        scores.iter().sum::<i64>() / scores.len() as i64
    }
}

/// NodeResourcesBalancedAllocation: nodes whose CPU and memory are used in equal shares score best.
pub struct BalancedAllocation;

impl ScorePlugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let f: Vec<f64> = fractions(pod, node)
            .iter()
            .map(|(r, a)| {
                if *a == 0 {
                    1.0
                } else {
                    (*r as f64 / *a as f64).min(1.0)
                }
            })
            .collect();
        // The standard deviation of two shares is half their difference.
        let std = (f[0] - f[1]).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Resources;

    fn node(cpu: i64, mem: i64, pods: i64) -> NodeInfo {
        NodeInfo {
            allocatable: Resources {
                milli_cpu: cpu,
                memory: mem,
                ephemeral_storage: 0,
                pods,
            },
            ..Default::default()
        }
    }

    fn pod(cpu: i64, mem: i64) -> PodInfo {
        let r = Resources {
            milli_cpu: cpu,
            memory: mem,
            ephemeral_storage: 0,
            pods: 1,
        };
        PodInfo {
            requests: r,
            nonzero: r,
            uid: format!("{cpu}-{mem}"),
            ..Default::default()
        }
    }

    #[test]
    fn fit_lists_every_shortage() {
        let mut n = node(1000, 1000, 2);
        n.add_pod(&pod(800, 100));
        assert!(Fit.filter(&pod(200, 100), &n).is_ok());
        assert_eq!(
            Fit.filter(&pod(300, 1000), &n).unwrap_err(),
            vec!["Insufficient cpu", "Insufficient memory"]
        );
        n.add_pod(&pod(0, 0));
        assert_eq!(Fit.filter(&pod(0, 0), &n).unwrap_err(), vec!["Too many pods"]);
        n.remove_pod(&pod(800, 100));
        assert!(
            Fit.filter(&pod(900, 100), &n).is_ok(),
            "a removed pod frees its requests"
        );
    }

    #[test]
    fn emptier_and_balanced_nodes_score_higher() {
        let empty = node(4000, 4000, 110);
        let mut busy = node(4000, 4000, 110);
        busy.add_pod(&pod(2000, 2000));
        let p = pod(1000, 1000);
        assert!(LeastAllocated.score(&p, &empty) > LeastAllocated.score(&p, &busy));
        let mut skewed = node(4000, 4000, 110);
        skewed.add_pod(&pod(3000, 0));
        assert!(BalancedAllocation.score(&p, &busy) > BalancedAllocation.score(&p, &skewed));
        assert_eq!(BalancedAllocation.score(&p, &busy), 100);
    }
}
