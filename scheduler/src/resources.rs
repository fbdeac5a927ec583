//! The resources the scheduler accounts: cpu, memory, ephemeral-storage and the pod count, and a pod's
//! effective requests. Mirrors framework.Resource and component-helpers' resource.PodRequests
//! (init containers, restartable sidecars, overhead) plus the non-zero defaults used for scoring
//! (pkg/scheduler/util: DefaultMilliCPURequest 100m, DefaultMemoryRequest 200Mi).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Container, Pod},
    apimachinery::pkg::api::resource::Quantity,
};

use crate::quantity::parse;

/// cpu in millicores, memory and ephemeral storage in bytes, and a pod count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    /// Millicores.
    pub milli_cpu: i64,
    /// Bytes.
    pub memory: i64,
    /// Bytes.
    pub ephemeral_storage: i64,
    /// Pods (allowed, or placed).
    pub pods: i64,
}

/// Upstream's DefaultMilliCPURequest, used for scoring pods that request no cpu.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Upstream's DefaultMemoryRequest (200 MiB), used for scoring pods that request no memory.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

impl Resource {
    /// From a ResourceList (allocatable or requests).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let get = |k: &str, scale| list.get(k).map(|q| parse(q, scale)).unwrap_or(0);
        Self {
            milli_cpu: get("cpu", 1000),
            memory: get("memory", 1),
            ephemeral_storage: get("ephemeral-storage", 1),
            pods: get("pods", 1),
        }
    }

    /// Adds `o` into self.
    pub fn add(&mut self, o: &Resource) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
    }

    /// Subtracts `o` from self.
    pub fn sub(&mut self, o: &Resource) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
    }

    /// The element-wise maximum.
    fn max(&mut self, o: &Resource) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
    }
}

fn container_requests(c: &Container) -> Resource {
    c.resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resource::from_list)
        .unwrap_or_default()
}

/// A pod's effective requests, with `pods: 1`: max(sum of containers + sidecars, the largest init
/// step), plus spec.overhead, as upstream's PodRequests.
pub fn pod_requests(pod: &Pod) -> Resource {
    let mut reqs = Resource::default();
    if let Some(spec) = &pod.spec {
        for c in &spec.containers {
            reqs.add(&container_requests(c));
        }
        let mut sidecars = Resource::default();
        let mut init_max = Resource::default();
        for c in spec.init_containers.iter().flatten() {
            let r = container_requests(c);
            if c.restart_policy.as_deref() == Some("Always") {
                // A sidecar keeps running: it adds to everything started after it.
                sidecars.add(&r);
                init_max.max(&sidecars);
            } else {
                let mut step = r;
                step.add(&sidecars);
                init_max.max(&step);
            }
        }
        reqs.add(&sidecars);
        reqs.max(&init_max);
        if let Some(o) = &spec.overhead {
            reqs.add(&Resource::from_list(o));
        }
    }
    reqs.pods = 1;
    reqs
}

/// Requests for scoring: cpu and memory of zero become upstream's defaults, per container
/// (GetNonzeroRequests), so empty pods still spread.
pub fn pod_requests_nonzero(pod: &Pod) -> Resource {
    let mut r = Resource::default();
    if let Some(spec) = &pod.spec {
        for c in &spec.containers {
            let cr = container_requests(c);
            r.milli_cpu += if cr.milli_cpu == 0 {
                DEFAULT_MILLI_CPU_REQUEST
            } else {
                cr.milli_cpu
            };
            r.memory += if cr.memory == 0 {
                DEFAULT_MEMORY_REQUEST
            } else {
                cr.memory
            };
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn init_containers_count_as_their_max() {
        let p = pod(json!({"spec": {
            "initContainers": [
                {"name": "i1", "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}},
                {"name": "i2", "resources": {"requests": {"cpu": "500m"}}}
            ],
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "2Gi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
            ]
        }}));
        let r = pod_requests(&p);
        assert_eq!(r.milli_cpu, 2000);
        assert_eq!(r.memory, 2 << 30);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn sidecars_add_to_containers_and_overhead_adds() {
        let p = pod(json!({"spec": {
            "initContainers": [
                {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                {"name": "i", "resources": {"requests": {"cpu": "1"}}}
            ],
            "containers": [{"name": "a", "resources": {"requests": {"cpu": "300m"}}}],
            "overhead": {"cpu": "10m"}
        }}));
        // max(300+200, 1000+200) + 10
        assert_eq!(pod_requests(&p).milli_cpu, 1210);
    }

    #[test]
    fn nonzero_defaults_for_scoring() {
        let p = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        let r = pod_requests_nonzero(&p);
        assert_eq!((r.milli_cpu, r.memory), (100, 200 * 1024 * 1024));
    }
}
