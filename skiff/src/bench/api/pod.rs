//! The request body of `skiff bench api`: one realistic Pod, as a workload controller would POST it.

use serde_json::{Value, json};

/// The JSON of a Pod as a workload controller would send it, about 2 KB: labels and annotations, an
/// app container and a log-shipping sidecar with env, ports, resources, mounts and a probe, and a
/// ConfigMap volume. Held split around the name so each op's body costs two copies, on both sides.
pub(super) struct PodBody {
    head: String,
    tail: String,
}

impl PodBody {
    const NAME_MARK: &str = "@@NAME@@";

    pub(super) fn new() -> Self {
        let json = pod_manifest(Self::NAME_MARK).to_string();
        let (head, tail) = json
            .split_once(Self::NAME_MARK)
            .expect("the manifest holds its name");
        Self {
            head: head.to_owned(),
            tail: tail.to_owned(),
        }
    }

    /// The body of pod `name` (a DNS label: nothing to escape).
    pub(super) fn with_name(&self, name: &str) -> Vec<u8> {
        [self.head.as_bytes(), name.as_bytes(), self.tail.as_bytes()].concat()
    }

    /// Size of a body, name excluded.
    pub(super) fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }
}

fn pod_manifest(name: &str) -> Value {
    let resources = |cpu: &str, mem: &str, cpu_limit: &str, mem_limit: &str| {
        json!({
            "requests": { "cpu": cpu, "memory": mem },
            "limits": { "cpu": cpu_limit, "memory": mem_limit },
        })
    };
    let field_env =
        |name: &str, path: &str| json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } });
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                "app.kubernetes.io/name": "storefront",
                "app.kubernetes.io/component": "web",
                "app.kubernetes.io/version": "2.14.3",
                "pod-template-hash": "5d8f9c7b6d",
            },
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": "9102",
                "kubectl.kubernetes.io/default-container": "web",
            },
        },
        "spec": {
            "containers": [
                {
                    "name": "web",
                    "image": "registry.example.com/shop/storefront:2.14.3",
                    "args": ["--listen=:8080", "--metrics=:9102", "--config=/etc/storefront/config.yaml"],
                    "ports": [
                        { "name": "http", "containerPort": 8080, "protocol": "TCP" },
                        { "name": "metrics", "containerPort": 9102, "protocol": "TCP" },
                    ],
                    "env": [
                        { "name": "LOG_LEVEL", "value": "info" },
                        { "name": "CACHE_URL", "value": "redis://cache.shop.svc.cluster.local:6379/0" },
                        { "name": "CHECKOUT_URL", "value": "http://checkout.shop.svc.cluster.local:8080" },
                        field_env("POD_NAME", "metadata.name"),
                        field_env("POD_IP", "status.podIP"),
                    ],
                    "resources": resources("250m", "256Mi", "1", "512Mi"),
                    "volumeMounts": [{ "name": "config", "mountPath": "/etc/storefront", "readOnly": true }],
                    "readinessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 5 },
                    "livenessProbe": {
                        "httpGet": { "path": "/livez", "port": "http" },
                        "initialDelaySeconds": 10,
                        "periodSeconds": 10,
                    },
                },
                {
                    "name": "log-shipper",
                    "image": "registry.example.com/infra/log-shipper:1.6.0",
                    "args": ["--input=/var/log/storefront", "--output=tcp://logs.infra.svc.cluster.local:5170"],
                    "env": [
                        { "name": "BUFFER_SIZE", "value": "8MiB" },
                        field_env("NODE_NAME", "spec.nodeName"),
                    ],
                    "resources": resources("50m", "64Mi", "200m", "128Mi"),
                    "volumeMounts": [
                        {
                            "name": "config",
                            "mountPath": "/etc/log-shipper",
                            "subPath": "log-shipper",
                            "readOnly": true,
                        },
                    ],
                },
            ],
            "volumes": [{ "name": "config", "configMap": { "name": "storefront-config" } }],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "nodeSelector": { "kubernetes.io/os": "linux" },
        },
    })
}
