//! Server-side printing: the `Table` kubectl asks for (`Accept: …;as=Table;g=meta.k8s.io;v=v1`) so
//! `kubectl get` shows upstream's columns (upstream's `pkg/printers/internalversion/printers.go`).
//!
//! Every row carries every column; kubectl hides priority-1 columns unless `-o wide`. Each row's
//! object is the object's metadata (a PartialObjectMetadata), or the whole object when the client asks
//! `includeObject=Object` (`--sort-by`).

use serde_json::{Value, json};

use super::registry::ResourceInfo;

/// Whether the Accept header asks for a Table.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| {
        a.split(',')
            .any(|t| t.contains("as=Table") && t.contains("g=meta.k8s.io"))
    })
}

/// What each row's `object` holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncludeObject {
    /// PartialObjectMetadata (the default).
    Metadata,
    /// The whole object.
    Object,
    /// Nothing.
    None,
}

impl IncludeObject {
    /// From the `includeObject` query parameter.
    pub fn parse(v: Option<&str>) -> Self {
        match v {
            Some("Object") => Self::Object,
            Some("None") => Self::None,
            _ => Self::Metadata,
        }
    }
}

type Column = (&'static str, &'static str, u8);

/// A Table of `objects` (the body of a list or get, or of one watch event).
pub fn table(
    info: &ResourceInfo,
    objects: &[Value],
    metadata: Value,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let columns = columns(info.resource);
    let definitions: Vec<Value> = if headers {
        columns
            .iter()
            .map(|(name, description, priority)| {
                json!({ "name": name, "type": "string", "format": if *name == "Name" { "name" } else { "" },
                        "description": description, "priority": priority })
            })
            .collect()
    } else {
        Vec::new()
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = json!({ "cells": cells(info.resource, obj) });
            match include {
                IncludeObject::Object => row["object"] = obj.clone(),
                IncludeObject::Metadata => row["object"] = super::object::partial_metadata(obj),
                IncludeObject::None => {}
            }
            row
        })
        .collect();
    json!({ "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": definitions, "rows": rows })
}

const NAME: Column = ("Name", "Name must be unique within a namespace.", 0);
const AGE: Column = (
    "Age",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
);
const CONTAINERS: Column = ("Containers", "Names of each container in the template.", 1);
const IMAGES: Column = (
    "Images",
    "Images referenced by each container in the template.",
    1,
);
const SELECTOR: Column = ("Selector", "Label selector for pods.", 1);

fn columns(resource: &str) -> Vec<Column> {
    match resource {
        "namespaces" => vec![NAME, ("Status", "The status of the namespace", 0), AGE],
        "configmaps" => vec![NAME, ("Data", "Number of data entries", 0), AGE],
        "secrets" => vec![
            NAME,
            ("Type", "The type of the secret", 0),
            ("Data", "Number of data entries", 0),
            AGE,
        ],
        "serviceaccounts" => vec![NAME, ("Secrets", "Number of secrets", 0), AGE],
        "endpoints" => vec![NAME, ("Endpoints", "Endpoints of the service", 0), AGE],
        "pods" => vec![
            NAME,
            (
                "Ready",
                "The aggregate readiness state of this pod for accepting traffic.",
                0,
            ),
            ("Status", "The aggregate status of the containers in this pod.", 0),
            (
                "Restarts",
                "The number of times the containers in this pod have been restarted.",
                0,
            ),
            AGE,
            ("IP", "IP address allocated to the pod.", 1),
            ("Node", "Name of the node the pod is assigned to.", 1),
            ("Nominated Node", "Name of the node the pod is nominated to.", 1),
            ("Readiness Gates", "Pod readiness gates.", 1),
        ],
        "deployments" => vec![
            NAME,
            ("Ready", "Number of the pod with ready state", 0),
            (
                "Up-to-date",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            (
                "Available",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "replicasets" => vec![
            NAME,
            ("Desired", "Number of desired pods.", 0),
            ("Current", "Number of actually running pods.", 0),
            ("Ready", "Number of ready pods.", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "statefulsets" => vec![
            NAME,
            ("Ready", "Number of the pod with ready state", 0),
            AGE,
            CONTAINERS,
            IMAGES,
        ],
        "daemonsets" => vec![
            NAME,
            (
                "Desired",
                "The desired number of nodes that should be running the daemon pod.",
                0,
            ),
            (
                "Current",
                "The number of nodes that are running at least one daemon pod.",
                0,
            ),
            (
                "Ready",
                "The number of nodes that should be running the daemon pod and have one ready.",
                0,
            ),
            (
                "Up-to-date",
                "The total number of nodes that are running updated daemon pod.",
                0,
            ),
            (
                "Available",
                "The number of nodes that should be running the daemon pod and have one available.",
                0,
            ),
            (
                "Node Selector",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                0,
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "services" => vec![
            NAME,
            ("Type", "The type of service.", 0),
            ("Cluster-IP", "Cluster IP of the service.", 0),
            ("External-IP", "External IP of the service.", 0),
            ("Port(s)", "The ports of the service.", 0),
            AGE,
            SELECTOR,
        ],
        "nodes" => vec![
            NAME,
            ("Status", "The status of the node", 0),
            ("Roles", "The roles of the node", 0),
            AGE,
            ("Version", "Kubelet Version reported by the node.", 0),
            ("Internal-IP", "List of internal IPs of the node.", 1),
            ("External-IP", "List of external IPs of the node.", 1),
            ("OS-Image", "OS image reported by the node.", 1),
            ("Kernel-Version", "Kernel version reported by the node.", 1),
            (
                "Container-Runtime",
                "Container runtime version reported by the node.",
                1,
            ),
        ],
        "jobs" => vec![
            NAME,
            ("Status", "Status of the job.", 0),
            (
                "Completions",
                "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.",
                0,
            ),
            ("Duration", "Time required to complete the job.", 0),
            AGE,
            CONTAINERS,
            IMAGES,
            SELECTOR,
        ],
        "controllerrevisions" => vec![
            NAME,
            ("Controller", "Controller of the object.", 0),
            ("Revision", "Revision of the ControllerRevision.", 0),
            AGE,
        ],
        _ => vec![NAME, AGE],
    }
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn count(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len()) + v.as_array().map_or(0, Vec::len)
}

fn or_none(s: String) -> String {
    if s.is_empty() { "<none>".to_owned() } else { s }
}

fn cells(resource: &str, obj: &Value) -> Vec<Value> {
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    let age = age(obj["metadata"]["creationTimestamp"].as_str());
    let spec = &obj["spec"];
    let status = &obj["status"];
    let cells: Vec<String> = match resource {
        "namespaces" => vec![name, status["phase"].as_str().unwrap_or("").to_owned(), age],
        "configmaps" => vec![
            name,
            (count(&obj["data"]) + count(&obj["binaryData"])).to_string(),
            age,
        ],
        "secrets" => vec![
            name,
            obj["type"].as_str().unwrap_or("").to_owned(),
            count(&obj["data"]).to_string(),
            age,
        ],
        "serviceaccounts" => vec![name, count(&obj["secrets"]).to_string(), age],
        "endpoints" => vec![name, endpoints(obj), age],
        "pods" => pod_cells(name, obj, age),
        "deployments" => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                format!("{}/{}", int(&status["readyReplicas"]), int(&spec["replicas"])),
                int(&status["updatedReplicas"]).to_string(),
                int(&status["availableReplicas"]).to_string(),
                age,
                c,
                i,
                selector(&spec["selector"]),
            ]
        }
        "replicasets" => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                int(&spec["replicas"]).to_string(),
                int(&status["replicas"]).to_string(),
                int(&status["readyReplicas"]).to_string(),
                age,
                c,
                i,
                selector(&spec["selector"]),
            ]
        }
        "statefulsets" => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                format!("{}/{}", int(&status["readyReplicas"]), int(&spec["replicas"])),
                age,
                c,
                i,
            ]
        }
        "daemonsets" => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            let node_selector = spec["template"]["spec"]["nodeSelector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                int(&status["desiredNumberScheduled"]).to_string(),
                int(&status["currentNumberScheduled"]).to_string(),
                int(&status["numberReady"]).to_string(),
                int(&status["updatedNumberScheduled"]).to_string(),
                int(&status["numberAvailable"]).to_string(),
                or_none(node_selector),
                age,
                c,
                i,
                selector(&spec["selector"]),
            ]
        }
        "services" => service_cells(name, obj, age),
        "nodes" => node_cells(name, obj, age),
        "jobs" => {
            let (c, i) = containers_images(&spec["template"]["spec"]);
            vec![
                name,
                job_status(obj),
                job_completions(obj),
                job_duration(status),
                age,
                c,
                i,
                selector(&spec["selector"]),
            ]
        }
        "controllerrevisions" => {
            let owner = obj["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|o| o.iter().find(|r| r["controller"] == true))
                .map(|r| {
                    let group = r["apiVersion"]
                        .as_str()
                        .unwrap_or("")
                        .split('/')
                        .next()
                        .unwrap_or("");
                    format!(
                        "{}.{group}/{}",
                        r["kind"].as_str().unwrap_or("").to_lowercase(),
                        r["name"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| "<none>".into());
            vec![name, owner, int(&obj["revision"]).to_string(), age]
        }
        _ => vec![name, age],
    };
    cells.into_iter().map(Value::String).collect()
}

/// `printJob`'s Status column: the first true condition that decides it, in upstream's order.
fn job_status(job: &Value) -> String {
    let has = |t: &str| {
        job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == t && c["status"] == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    status.to_owned()
}

/// `printJob`'s Completions column: `succeeded/completions`, or `succeeded/1 of parallelism` for a
/// work-queue Job.
fn job_completions(job: &Value) -> String {
    let succeeded = int(&job["status"]["succeeded"]);
    let spec = &job["spec"];
    match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// `printJob`'s Duration column: from startTime to completionTime, or to now while running.
fn job_duration(status: &Value) -> String {
    let time = |f: &str| {
        status[f]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    match (time("startTime"), time("completionTime")) {
        (None, _) => String::new(),
        (Some(start), None) => human_duration((chrono::Utc::now() - start).num_seconds()),
        (Some(start), Some(end)) => human_duration((end - start).num_seconds()),
    }
}

fn containers_images(pod_spec: &Value) -> (String, String) {
    let containers = pod_spec["containers"].as_array().cloned().unwrap_or_default();
    let field = |f: &str| {
        containers
            .iter()
            .map(|c| c[f].as_str().unwrap_or("").to_owned())
            .collect::<Vec<_>>()
            .join(",")
    };
    (field("name"), field("image"))
}

/// A metav1 LabelSelector printed the way kubectl prints one.
fn selector(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match e["operator"].as_str().unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            op => format!("{key} {op}"),
        });
    }
    or_none(parts.join(","))
}

fn pod_cells(name: String, pod: &Value, age: String) -> Vec<String> {
    let status = &pod["status"];
    let statuses = status["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = pod["spec"]["containers"].as_array().map_or(0, Vec::len);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
    let mut reason = status["reason"]
        .as_str()
        .or(status["phase"].as_str())
        .unwrap_or("Pending")
        .to_owned();
    for c in &statuses {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            reason = r.to_owned();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            reason = r.to_owned();
        }
    }
    if pod["metadata"]
        .get("deletionTimestamp")
        .is_some_and(|d| !d.is_null())
    {
        reason = "Terminating".to_owned();
    }
    let gates = pod["spec"]["readinessGates"].as_array().map_or(0, Vec::len);
    vec![
        name,
        format!("{ready}/{total}"),
        reason,
        restarts.to_string(),
        age,
        or_none(status["podIP"].as_str().unwrap_or("").to_owned()),
        or_none(pod["spec"]["nodeName"].as_str().unwrap_or("").to_owned()),
        or_none(status["nominatedNodeName"].as_str().unwrap_or("").to_owned()),
        if gates == 0 {
            "<none>".to_owned()
        } else {
            format!("0/{gates}")
        },
    ]
}

fn service_cells(name: String, svc: &Value, age: String) -> Vec<String> {
    let spec = &svc["spec"];
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) => format!("{}:{np}/{proto}", int(&p["port"])),
                None => format!("{}/{proto}", int(&p["port"])),
            }
        })
        .collect();
    let external: Vec<&str> = spec["externalIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let selector = spec["selector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    vec![
        name,
        spec["type"].as_str().unwrap_or("ClusterIP").to_owned(),
        or_none(spec["clusterIP"].as_str().unwrap_or("").to_owned()),
        or_none(external.join(",")),
        or_none(ports.join(",")),
        age,
        or_none(selector),
    ]
}

fn node_cells(name: String, node: &Value, age: String) -> Vec<String> {
    let status = &node["status"];
    let ready = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready");
    let mut state = match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready".to_owned(),
        Some(_) => "NotReady".to_owned(),
        None => "Unknown".to_owned(),
    };
    if node["spec"]["unschedulable"] == true {
        state.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = node["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(str::to_owned))
        .collect();
    let address = |t: &str| {
        status["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == t)
            .filter_map(|a| a["address"].as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let info = &status["nodeInfo"];
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    vec![
        name,
        state,
        or_none(roles.join(",")),
        age,
        s(&info["kubeletVersion"]),
        or_none(address("InternalIP")),
        or_none(address("ExternalIP")),
        or_none(s(&info["osImage"])),
        or_none(s(&info["kernelVersion"])),
        or_none(s(&info["containerRuntimeVersion"])),
    ]
}

fn endpoints(ep: &Value) -> String {
    let mut out = Vec::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        for addr in subset["addresses"].as_array().into_iter().flatten() {
            for port in subset["ports"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}:{}",
                    addr["ip"].as_str().unwrap_or(""),
                    int(&port["port"])
                ));
            }
        }
    }
    or_none(out.join(","))
}

/// How long ago `created` was, as kubectl prints ages (apimachinery's `duration.HumanDuration`).
fn age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "<unknown>".into();
    };
    human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

/// apimachinery's `HumanDuration`: two significant units while they matter.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    let s = seconds.max(0);
    let (m, h) = (s / 60, s / 3600);
    let (d, y) = (h / 24, h / (24 * 365));
    let two = |big: i64, unit: &str, small: i64, sunit: &str| {
        if small == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{small}{sunit}")
        }
    };
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => two(m, "m", s % 60, "s"),
        _ if m < 180 => format!("{m}m"),
        _ if h < 8 => two(h, "h", m % 60, "m"),
        _ if h < 48 => format!("{h}h"),
        _ if h < 24 * 8 => two(d, "d", h % 24, "h"),
        _ if h < 24 * 365 * 2 => format!("{d}d"),
        _ if h < 24 * 365 * 8 => two(y, "y", d % 365, "d"),
        _ => format!("{y}y"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_print_like_kubectl() {
        for (s, want) in [
            (5, "5s"),
            (119, "119s"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600 + 120, "3h2m"),
            (30 * 3600, "30h"),
            (3 * 86400, "3d"),
            (400 * 86400, "400d"),
        ] {
            assert_eq!(human_duration(s), want, "{s}s");
        }
    }

    #[test]
    fn deployment_row_has_every_column_including_wide_ones() {
        let info = super::super::registry::find("apps", "v1", "deployments").expect("served");
        let d = json!({ "metadata": { "name": "web", "creationTimestamp": "2020-01-01T00:00:00Z" },
            "spec": { "replicas": 3, "selector": { "matchLabels": { "app": "web" } },
                      "template": { "spec": { "containers": [{ "name": "c", "image": "busybox" }] } } },
            "status": { "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2 } });
        let t = table(info, &[d], json!({}), IncludeObject::Metadata, true);
        assert_eq!(t["columnDefinitions"].as_array().expect("columns").len(), 8);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[5], "c");
        assert_eq!(cells[7], "app=web");
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
