//! What a pod asks of its node, as kubectl's describers add it up (upstream's
//! component-helpers/resource `PodRequests` and `PodLimits`): the app containers' requests (or
//! limits) summed, restartable init containers (sidecars) added to them, each ordinary init
//! container counted with the sidecars started before it and the largest such step taken if it is
//! more than the sum, pod-level resources (CPU, memory) in place of the containers' where set, and
//! the pod's overhead on top (on limits only where a limit exists).
//!
//! Quantities keep upstream's formatting: a sum prints in the format of its first non-zero part, so
//! `describe node` shows `350m` and `128Mi` exactly as kubectl does.

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_apiserver::server::validation::quantity::{self, Quantity};

/// A resource list: resource name → quantity.
pub type ResourceList = BTreeMap<String, Quantity>;

/// Which side of `resources` to read.
#[derive(Clone, Copy)]
enum Side {
    Requests,
    Limits,
}

impl Side {
    fn key(self) -> &'static str {
        match self {
            Side::Requests => "requests",
            Side::Limits => "limits",
        }
    }
}

/// A `{name: quantity}` object as a resource list (unparseable quantities are left out: the API
/// server validated them).
pub fn resource_list(v: &Value) -> ResourceList {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), quantity::from_json(q).ok()?)))
        .collect()
}

/// `addResourceList`.
fn add_list(to: &mut ResourceList, from: &ResourceList) {
    for (name, q) in from {
        let sum = to.get(name).map_or(*q, |have| *have + *q);
        to.insert(name.clone(), sum);
    }
}

/// `maxResourceList`.
fn max_list(to: &mut ResourceList, from: &ResourceList) {
    for (name, q) in from {
        if to.get(name).is_none_or(|have| q > have) {
            to.insert(name.clone(), *q);
        }
    }
}

fn aggregate(pod: &Value, side: Side) -> ResourceList {
    let spec = &pod["spec"];
    let of = |c: &Value| resource_list(&c["resources"][side.key()]);
    let mut total = ResourceList::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        add_list(&mut total, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = of(c);
        let step = if c["restartPolicy"] == "Always" {
            add_list(&mut total, &own);
            add_list(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut step = own;
            add_list(&mut step, &sidecars);
            step
        };
        max_list(&mut init_max, &step);
    }
    max_list(&mut total, &init_max);
    // Pod-level resources replace the containers' sum for the resources they may set.
    for (name, q) in resource_list(&spec["resources"][side.key()]) {
        if name == "cpu" || name == "memory" {
            total.insert(name, q);
        }
    }
    total
}

/// `PodRequests`: what the pod requests of its node, overhead included.
pub fn pod_requests(pod: &Value) -> ResourceList {
    let mut requests = aggregate(pod, Side::Requests);
    add_list(&mut requests, &resource_list(&pod["spec"]["overhead"]));
    requests
}

/// `PodLimits`: the pod's limits, with its overhead added to those that are set.
pub fn pod_limits(pod: &Value) -> ResourceList {
    let mut limits = aggregate(pod, Side::Limits);
    for (name, q) in resource_list(&pod["spec"]["overhead"]) {
        if let Some(have) = limits.get(&name) {
            let sum = *have + q;
            limits.insert(name, sum);
        }
    }
    limits
}

/// `getPodsTotalRequestsAndLimits`: the requests and the limits of `pods`, summed.
pub fn total_requests_and_limits<'a>(
    pods: impl IntoIterator<Item = &'a Value>,
) -> (ResourceList, ResourceList) {
    let (mut requests, mut limits) = (ResourceList::new(), ResourceList::new());
    for pod in pods {
        add_list(&mut requests, &pod_requests(pod));
        add_list(&mut limits, &pod_limits(pod));
    }
    (requests, limits)
}

/// `int64(float64(part) / float64(whole) * 100)`, as kubectl computes a share (Go's conversion of
/// the infinity or NaN of a zero whole gives the smallest int64 on amd64).
pub fn percent(part: i128, whole: i128) -> i64 {
    let share = part as f64 / whole as f64 * 100.0;
    if share.is_finite() { share as i64 } else { i64::MIN }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn printed(list: &ResourceList) -> Vec<(String, String)> {
        list.iter().map(|(k, q)| (k.clone(), q.canonical())).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn containers_add_up_and_init_containers_count_at_their_largest() {
        let pod = json!({ "spec": {
            "initContainers": [
                { "name": "setup", "resources": { "requests": { "cpu": "1", "memory": "10Mi" } } },
                { "name": "proxy", "restartPolicy": "Always",
                  "resources": { "requests": { "cpu": "100m" }, "limits": { "memory": "32Mi" } } },
                { "name": "migrate", "resources": { "requests": { "cpu": "500m" } } },
            ],
            "containers": [
                { "name": "a", "resources": { "requests": { "cpu": "100m", "memory": "64Mi" },
                                              "limits": { "cpu": "200m", "memory": "128Mi" } } },
                { "name": "b", "resources": { "requests": { "cpu": "250m", "memory": "64Mi" } } },
            ],
            "overhead": { "cpu": "10m", "memory": "1Mi" },
        }});
        // Containers 350m + the sidecar's 100m = 450m < the first init container's 1 (no sidecar
        // had started yet); the second init step is 500m + 100m = 600m. Then the overhead.
        assert_eq!(
            printed(&pod_requests(&pod)),
            pairs(&[("cpu", "1010m"), ("memory", "129Mi")])
        );
        // Limits: 200m, and 128Mi + the sidecar's 32Mi, each plus the overhead.
        assert_eq!(
            printed(&pod_limits(&pod)),
            pairs(&[("cpu", "210m"), ("memory", "161Mi")])
        );
    }

    #[test]
    fn pods_without_resources_ask_nothing_and_shares_truncate() {
        let pod = json!({ "spec": { "containers": [{ "name": "a" }] } });
        assert!(pod_requests(&pod).is_empty());
        let (requests, _) = total_requests_and_limits([&pod, &pod]);
        assert!(requests.is_empty());
        assert_eq!(percent(250, 1000), 25);
        assert_eq!(percent(999, 100_000), 0);
        assert_eq!(percent(0, 0), i64::MIN);
    }
}
