//! The Node object the kubelet registers and keeps current (upstream's kubelet_node_status.go):
//! capacity and allocatable, addresses, nodeInfo, and the four conditions with upstream's reasons and
//! messages.
//!
//! Registration creates the Node (or finds the one this node registered before: a restarted kubelet
//! keeps its Node, uid and pod CIDR) and then writes its status through `nodes/status`, the only way
//! status is written.

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::eviction::Pressure;

/// What a node offers and how it calls itself.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The Node's name.
    pub name: String,
    /// Its InternalIP.
    pub address: String,
    /// `capacity.cpu` (also allocatable).
    pub cpu: String,
    /// `capacity.memory`.
    pub memory: String,
    /// `capacity.pods` (upstream's `--max-pods`, 110).
    pub pods: u32,
    /// `capacity.ephemeral-storage`.
    pub ephemeral_storage: String,
    /// `nodeInfo.containerRuntimeVersion`.
    pub runtime_version: String,
    /// Extra labels (hollow nodes carry `skiff.dev/hollow=true`).
    pub labels: Vec<(String, String)>,
}

/// The kubelet's version as nodes report it: the Kubernetes minor of the compiled types.
pub const KUBELET_VERSION: &str = "v1.36.0-skiff";

/// The Node as first created: metadata and spec (status follows through `nodes/status`).
pub fn node_object(cfg: &NodeConfig) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": cfg.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
    });
    for (k, v) in &cfg.labels {
        labels[k] = json!(v);
    }
    json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": cfg.name, "labels": labels }, "spec": {} })
}

/// The node's status: resources, addresses, info, and Ready with the pressure conditions. Conditions
/// keep the stored `lastTransitionTime` while their status holds.
pub fn node_status(cfg: &NodeConfig, stored: &Value, now: &str, pressure: Pressure) -> Value {
    let resources = json!({
        "cpu": cfg.cpu, "memory": cfg.memory, "pods": cfg.pods.to_string(), "ephemeral-storage": cfg.ephemeral_storage,
    });
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        let previous = stored["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == kind));
        let since = previous
            .filter(|p| p["status"] == status)
            .and_then(|p| p["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({ "type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": since })
    };
    json!({
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{ "type": "InternalIP", "address": cfg.address }, { "type": "Hostname", "address": cfg.name }],
        // The port the kubelet API really listens on is reported once it does
        // ([`report_kubelet_port`]); later status updates keep it.
        "daemonEndpoints": { "kubeletEndpoint": { "Port": stored["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64().unwrap_or(10250) } },
        "nodeInfo": {
            "machineID": format!("{:032x}", fnv(&cfg.name)),
            "systemUUID": format!("{:032x}", fnv(&cfg.address)),
            "bootID": "",
            "kernelVersion": kernel_version(),
            "osImage": os_image(cfg),
            "containerRuntimeVersion": cfg.runtime_version,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        },
        "conditions": [
            match pressure.memory {
                true => cond("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
                false => cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            },
            match pressure.disk {
                true => cond("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure"),
                false => cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            },
            match pressure.pid {
                true => cond("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
                false => cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            },
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
    })
}

fn fnv(s: &str) -> u128 {
    s.bytes().fold(0x6c62272e07bb014262b821756295c58d_u128, |h, b| {
        (h ^ b as u128).wrapping_mul(0x0000000001000000000000000000013B)
    })
}

/// `nodeInfo.osImage`: the machine's `PRETTY_NAME` from /etc/os-release, as upstream reads it; hollow
/// nodes say what they are.
fn os_image(cfg: &NodeConfig) -> String {
    if cfg.labels.iter().any(|(k, _)| k == crate::hollow::HOLLOW_LABEL) {
        return "skiff hollow node".into();
    }
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "Linux".into())
}

fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Registers the node (or adopts the Node it registered before) and writes its status; returns the
/// Node as stored (with its uid and, once node IPAM has run, its pod CIDR).
pub async fn register(client: &Client, cfg: &NodeConfig) -> Result<Value, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(node_object(cfg)).map_err(kube::Error::SerdeError)?;
    let stored = match nodes.create(&PostParams::default(), &node).await {
        Ok(node) => node,
        Err(kube::Error::Api(e)) if e.code == 409 => nodes.get(&cfg.name).await?,
        Err(e) => return Err(e),
    };
    update_status(
        client,
        cfg,
        &serde_json::to_value(stored).map_err(kube::Error::SerdeError)?,
        Pressure::default(),
    )
    .await
}

/// Writes the node's status (a heartbeat when nothing else changed), with the pressure conditions
/// `pressure` says.
pub async fn update_status(
    client: &Client,
    cfg: &NodeConfig,
    stored: &Value,
    pressure: Pressure,
) -> Result<Value, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let status = node_status(cfg, stored, &crate::now(), pressure);
    let node = nodes
        .patch_status(
            &cfg.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await?;
    serde_json::to_value(node).map_err(kube::Error::SerdeError)
}

/// Reports where the kubelet API listens (`status.daemonEndpoints.kubeletEndpoint.Port`), which the
/// API server reads to reach it.
pub async fn report_kubelet_port(client: &Client, node: &str, port: u16) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let patch = json!({ "status": { "daemonEndpoints": { "kubeletEndpoint": { "Port": port } } } });
    nodes
        .patch_status(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NodeConfig {
        NodeConfig {
            name: "hollow-0".into(),
            address: "10.254.0.1".into(),
            cpu: "4".into(),
            memory: "16Gi".into(),
            pods: 110,
            ephemeral_storage: "100Gi".into(),
            runtime_version: "fake://0.1.0".into(),
            labels: vec![("skiff.dev/hollow".into(), "true".into())],
        }
    }

    #[test]
    fn status_reports_resources_addresses_and_a_ready_node() {
        let s = node_status(&cfg(), &json!({}), "2026-01-01T00:00:00Z", Pressure::default());
        assert_eq!(s["allocatable"]["pods"], "110");
        assert_eq!(s["capacity"]["cpu"], "4");
        assert_eq!(
            s["addresses"][0],
            json!({ "type": "InternalIP", "address": "10.254.0.1" })
        );
        let ready = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("True"), Some("KubeletReady"))
        );
        assert_eq!(s["nodeInfo"]["kubeletVersion"], KUBELET_VERSION);
        let node = node_object(&cfg());
        assert_eq!(node["metadata"]["labels"]["skiff.dev/hollow"], "true");
        assert_eq!(node["metadata"]["labels"]["kubernetes.io/hostname"], "hollow-0");
    }

    #[test]
    fn pressure_conditions_say_so_as_upstream() {
        let find = |s: &Value, t: &str| {
            let c = s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone();
            (
                c["status"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
                c,
            )
        };
        let calm = node_status(&cfg(), &json!({}), "2026-01-01T00:00:00Z", Pressure::default());
        let pressed = Pressure {
            memory: true,
            disk: true,
            pid: true,
        };
        let s = node_status(
            &cfg(),
            &json!({ "status": calm }),
            "2026-01-01T00:01:00Z",
            pressed,
        );
        let (status, reason, memory) = find(&s, "MemoryPressure");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("True", "KubeletHasInsufficientMemory")
        );
        assert_eq!(memory["message"], "kubelet has insufficient memory available");
        assert_eq!(memory["lastTransitionTime"], "2026-01-01T00:01:00Z");
        assert_eq!(find(&s, "DiskPressure").1, "KubeletHasDiskPressure");
        assert_eq!(find(&s, "PIDPressure").1, "KubeletHasInsufficientPID");
        assert_eq!(find(&s, "Ready").0, "True");
    }

    #[test]
    fn heartbeats_move_but_transition_times_hold() {
        let first = node_status(&cfg(), &json!({}), "2026-01-01T00:00:00Z", Pressure::default());
        let later = node_status(
            &cfg(),
            &json!({ "status": first }),
            "2026-01-01T00:01:00Z",
            Pressure::default(),
        );
        let ready = later["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(ready["lastHeartbeatTime"], "2026-01-01T00:01:00Z");
    }
}
