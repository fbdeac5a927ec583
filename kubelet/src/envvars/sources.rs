//! What a pod's env and volumes refer to, fetched through the API before anything is resolved:
//! the ConfigMaps and Secrets of its namespace, the node's allocatable, and the Services whose
//! variables it gets (upstream reads them from its configMap, secret and service managers).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Node, Secret, Service};
use kube::{Api, Client};
use serde_json::Value;

use super::services::service_env;

/// The keys of a ConfigMap or Secret, as bytes (Secret data decoded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectData {
    /// `data` (a Secret's, base64-decoded).
    pub data: BTreeMap<String, Vec<u8>>,
    /// A ConfigMap's `binaryData` (volumes project it; env does not read it).
    pub binary_data: BTreeMap<String, Vec<u8>>,
}

/// What fetching one object gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// It exists.
    Found(ObjectData),
    /// It does not: upstream's message (`configmap "x" not found`).
    NotFound(String),
    /// It could not be read (the API is unreachable…).
    Failed(String),
}

/// The ConfigMaps and Secrets of the pod's namespace it refers to, and the node's allocatable.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// ConfigMaps by name.
    pub config_maps: HashMap<String, Fetched>,
    /// Secrets by name.
    pub secrets: HashMap<String, Fetched>,
    /// The node's `status.allocatable` (limits default to it).
    pub allocatable: BTreeMap<String, String>,
    /// The pod's IP (`status.podIP`); the node's for host-network pods.
    pub pod_ip: String,
    /// The node's IP (`status.hostIP`).
    pub host_ip: String,
    /// The service environment variables ([`service_env`]).
    pub service_env: BTreeMap<String, String>,
    /// Why the services could not be read: no container is configured without their variables
    /// (upstream fails the same way until its service informer has synced).
    pub service_error: Option<String>,
}

impl Sources {
    /// Fetches what `pod`'s containers (env, envFrom) and volumes refer to, in the pod's namespace,
    /// and the allocatable of `node` when a resource reference may need it.
    pub async fn fetch(client: &Client, pod: &Value, node: &str, pod_ip: &str, host_ip: &str) -> Self {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        let refs = references(pod);
        let mut sources = Sources {
            pod_ip: pod_ip.to_owned(),
            host_ip: host_ip.to_owned(),
            ..Default::default()
        };
        let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for name in refs.config_maps {
            let fetched = match config_maps.get_opt(&name).await {
                Ok(Some(cm)) => Fetched::Found(ObjectData {
                    data: cm
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    binary_data: cm
                        .binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                }),
                Ok(None) => Fetched::NotFound(format!("configmap \"{name}\" not found")),
                Err(e) => Fetched::Failed(format!("couldn't get configMap {ns}/{name}: {e}")),
            };
            sources.config_maps.insert(name, fetched);
        }
        let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
        for name in refs.secrets {
            let fetched = match secrets.get_opt(&name).await {
                Ok(Some(s)) => {
                    let mut data: BTreeMap<String, Vec<u8>> = s
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    // stringData is write-only upstream; an API that kept it still means the same.
                    for (k, v) in s.string_data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    Fetched::Found(ObjectData {
                        data,
                        binary_data: BTreeMap::new(),
                    })
                }
                Ok(None) => Fetched::NotFound(format!("secret \"{name}\" not found")),
                Err(e) => Fetched::Failed(format!("couldn't get secret {ns}/{name}: {e}")),
            };
            sources.secrets.insert(name, fetched);
        }
        // The namespace's services unless the pod opts out, and the master service `kubernetes` of
        // the default namespace always (a namesake in the pod's namespace wins, as upstream).
        let services: Api<Service> = Api::namespaced(client.clone(), ns);
        let mut listed: Vec<Value> = Vec::new();
        if pod["spec"]["enableServiceLinks"].as_bool() != Some(false) {
            match services.list(&Default::default()).await {
                Ok(list) => listed.extend(
                    list.items
                        .into_iter()
                        .filter_map(|s| serde_json::to_value(s).ok()),
                ),
                Err(e) => sources.service_error = Some(format!("couldn't list services: {e}")),
            }
        }
        if !listed.iter().any(|s| s["metadata"]["name"] == "kubernetes") {
            let defaults: Api<Service> = Api::namespaced(client.clone(), "default");
            match defaults.get_opt("kubernetes").await {
                Ok(master) => listed.extend(master.and_then(|m| serde_json::to_value(m).ok())),
                Err(e) => sources.service_error = Some(format!("couldn't get the kubernetes service: {e}")),
            }
        }
        sources.service_env = service_env(&listed);
        if refs.resources
            && let Ok(n) = Api::<Node>::all(client.clone()).get(node).await
        {
            sources.allocatable = n
                .status
                .and_then(|s| s.allocatable)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
        }
        sources
    }
}

/// The names a pod refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct References {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
    /// Whether the node's allocatable may be needed (a resourceFieldRef, a memory emptyDir).
    pub resources: bool,
}

/// The ConfigMaps and Secrets `pod` refers to from env, envFrom and volumes (projected ones too).
pub fn references(pod: &Value) -> References {
    let mut refs = References::default();
    let name = |v: &Value| v["name"].as_str().map(str::to_owned);
    for field in ["initContainers", "containers"] {
        for c in pod["spec"][field].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                let from = &e["valueFrom"];
                refs.config_maps.extend(name(&from["configMapKeyRef"]));
                refs.secrets.extend(name(&from["secretKeyRef"]));
                refs.resources |= from["resourceFieldRef"].is_object();
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                refs.config_maps.extend(name(&e["configMapRef"]));
                refs.secrets.extend(name(&e["secretRef"]));
            }
        }
    }
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        refs.config_maps.extend(name(&v["configMap"]));
        refs.secrets
            .extend(v["secret"]["secretName"].as_str().map(str::to_owned));
        let downward = |items: &Value| {
            items
                .as_array()
                .into_iter()
                .flatten()
                .any(|i| i["resourceFieldRef"].is_object())
        };
        refs.resources |= downward(&v["downwardAPI"]["items"]);
        // A memory emptyDir is sized by the node's allocatable memory at most.
        refs.resources |= v["emptyDir"]["medium"] == "Memory";
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            refs.config_maps.extend(name(&s["configMap"]));
            refs.secrets.extend(name(&s["secret"]));
            refs.resources |= downward(&s["downwardAPI"]["items"]);
        }
    }
    refs
}
