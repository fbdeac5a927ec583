//! Mutating admission on create: what upstream's admission plugins add to an object after defaulting
//! and before validation. One plugin so far:
//!
//! - **DefaultTolerationSeconds** (plugin/pkg/admission/defaulttolerationseconds): a pod that does not
//!   tolerate the `node.kubernetes.io/not-ready` and `node.kubernetes.io/unreachable` NoExecute taints
//!   gets tolerations for them with `tolerationSeconds: 300`, so when its node stops answering the
//!   taint eviction moves it after five minutes rather than at once.

use serde_json::{Value, json};

/// How long a pod stays on a not-ready or unreachable node by default (upstream's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// Admits a new object of `kind`, changing it as the plugins do.
pub fn admit_create(kind: &str, obj: &mut Value) {
    if kind == "Pod" {
        default_toleration_seconds(obj);
    }
}

fn default_toleration_seconds(pod: &mut Value) {
    let tolerates = |pod: &Value, key: &str| {
        pod["spec"]["tolerations"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                let k = t["key"].as_str().unwrap_or("");
                let effect = t["effect"].as_str().unwrap_or("");
                (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
            })
    };
    let missing: Vec<&str> = [NOT_READY, UNREACHABLE]
        .into_iter()
        .filter(|key| !tolerates(pod, key))
        .collect();
    if missing.is_empty() || !pod["spec"].is_object() {
        return;
    }
    if !pod["spec"]["tolerations"].is_array() {
        pod["spec"]["tolerations"] = json!([]);
    }
    let tolerations = pod["spec"]["tolerations"].as_array_mut().expect("set above");
    for key in missing {
        tolerations.push(json!({
            "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_both_default_tolerations() {
        let mut pod = json!({ "spec": { "containers": [] } });
        admit_create("Pod", &mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["key"], NOT_READY);
        assert_eq!(t[1]["key"], UNREACHABLE);
        assert_eq!(t[1]["tolerationSeconds"], 300);
        assert_eq!(t[1]["effect"], "NoExecute");
    }

    #[test]
    fn existing_tolerations_are_kept_and_not_doubled() {
        let mut pod = json!({ "spec": { "tolerations": [
            { "key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5 }] } });
        admit_create("Pod", &mut pod);
        let t = pod["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t[0]["tolerationSeconds"], 5);
        assert_eq!(t[1]["key"], UNREACHABLE);
        // A toleration of every taint (empty key, Exists) covers both.
        let mut all = json!({ "spec": { "tolerations": [{ "operator": "Exists" }] } });
        admit_create("Pod", &mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
        // Other kinds are untouched.
        let mut cm = json!({ "data": {} });
        admit_create("ConfigMap", &mut cm);
        assert_eq!(cm, json!({ "data": {} }));
    }
}
