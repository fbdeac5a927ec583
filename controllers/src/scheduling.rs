//! Whether a pod may go to a node, as upstream's component-helpers/scheduling/corev1 says it for the
//! scheduler and the controllers alike: `ToleratesTaint`, `FindMatchingUntoleratedTaint`, and the
//! node affinity matcher (`nodeSelector` and the required node selector terms, with `matchFields`
//! on `metadata.name`). The scheduler's TaintToleration and NodeAffinity plugins, the taint
//! eviction controller and the DaemonSet controller all ask these.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration};

/// `ToleratesTaint`: the effect and key match (empty matches any), and the value is equal (operator
/// `Equal`, the default) or anything (`Exists`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    let key = toleration.key.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// `FindMatchingUntoleratedTaint`: the first of `taints` that `filter` keeps and no toleration
/// tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    filter: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| filter(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// Whether a node's label (or its name, for `matchFields`) satisfies one requirement.
fn requirement(req: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        // Gt/Lt compare integers; a value that is not one never matches.
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|b| b.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// A node selector term matches when all its expressions and fields do (an empty term matches
/// nothing, as upstream).
pub fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement(r, labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| requirement(r, (r.key == "metadata.name").then_some(name)))
}

/// `GetRequiredNodeAffinity(pod).Match(node)`: the pod's `nodeSelector` and its required node
/// affinity (any one term) both accept the node with `labels` and `name`.
pub fn required_node_affinity_matches(spec: &PodSpec, labels: &BTreeMap<String, String>, name: &str) -> bool {
    if spec
        .node_selector
        .iter()
        .flatten()
        .any(|(k, v)| labels.get(k) != Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    required.is_none_or(|selector| {
        selector
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, name))
    })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use serde_json::json;

    use super::*;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            ..Default::default()
        }
    }

    #[test]
    fn tolerations_match_as_upstream() {
        let gpu = taint("gpu", Some("a100"), "NoSchedule");
        assert!(tolerates(
            &toleration(json!({ "key": "gpu", "value": "a100" })),
            &gpu
        ));
        assert!(!tolerates(
            &toleration(json!({ "key": "gpu", "value": "t4" })),
            &gpu
        ));
        assert!(tolerates(
            &toleration(json!({ "key": "gpu", "operator": "Exists" })),
            &gpu
        ));
        assert!(tolerates(&toleration(json!({ "operator": "Exists" })), &gpu));
        assert!(!tolerates(
            &toleration(json!({ "key": "gpu", "operator": "Exists", "effect": "NoExecute" })),
            &gpu
        ));
        let taints = [taint("a", None, "PreferNoSchedule"), gpu.clone()];
        let none: [Toleration; 0] = [];
        assert_eq!(
            untolerated_taint(&taints, &none, |t| t.effect != "PreferNoSchedule").map(|t| &t.key),
            Some(&"gpu".to_string())
        );
    }

    #[test]
    fn node_selector_and_required_affinity_both_apply() {
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [],
            "nodeSelector": { "disk": "ssd" },
            "affinity": { "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{ "matchFields": [{ "key": "metadata.name", "operator": "In", "values": ["n1"] }] }] } } }
        }))
        .unwrap();
        let ssd = BTreeMap::from([("disk".to_string(), "ssd".to_string())]);
        assert!(required_node_affinity_matches(&spec, &ssd, "n1"));
        assert!(!required_node_affinity_matches(&spec, &ssd, "n2"));
        assert!(!required_node_affinity_matches(&spec, &BTreeMap::new(), "n1"));
    }
}
