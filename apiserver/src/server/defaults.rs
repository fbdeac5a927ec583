//! Defaulting, as upstream's `pkg/apis/<group>/v1/defaults.go` does it, on objects held as JSON.
//!
//! kubectl's describe, rollout status and undo compare and print these fields, so they must be there
//! exactly as Kubernetes fills them. Only absent fields are filled; what the client set is kept.

use serde_json::{Map, Value, json};

/// Sets `obj[key] = value` unless `key` is already present.
fn or_insert(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        map.entry(key.to_owned()).or_insert(value);
    }
}

/// The object at `obj[key]`, created empty if missing.
fn child<'a>(obj: &'a mut Value, key: &str) -> &'a mut Value {
    if !obj.get(key).is_some_and(Value::is_object) {
        obj[key] = Value::Object(Map::new());
    }
    &mut obj[key]
}

/// New namespaces are Active and carry the `kubernetes` finalizer.
pub fn namespace(obj: &mut Value) {
    or_insert(child(obj, "spec"), "finalizers", json!(["kubernetes"]));
    or_insert(child(obj, "status"), "phase", json!("Active"));
}

/// Secrets default to type Opaque.
pub fn secret(obj: &mut Value) {
    or_insert(obj, "type", json!("Opaque"));
}

/// A pod: its spec, and phase Pending until a kubelet says otherwise.
pub fn pod(obj: &mut Value) {
    pod_spec(child(obj, "spec"));
    or_insert(child(obj, "status"), "phase", json!("Pending"));
    let qos = qos_class(&obj["spec"]);
    or_insert(child(obj, "status"), "qosClass", json!(qos));
}

/// Defaults of a PodSpec (also inside every pod template).
pub fn pod_spec(spec: &mut Value) {
    or_insert(spec, "restartPolicy", json!("Always"));
    or_insert(spec, "dnsPolicy", json!("ClusterFirst"));
    or_insert(spec, "terminationGracePeriodSeconds", json!(30));
    or_insert(spec, "schedulerName", json!("default-scheduler"));
    or_insert(spec, "securityContext", json!({}));
    or_insert(spec, "enableServiceLinks", json!(true));
    or_insert(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    or_insert(spec, "priority", json!(0));
    for v in spec
        .get_mut("volumes")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        volume(v);
    }
    for list in ["initContainers", "containers"] {
        if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
            containers.iter_mut().for_each(container);
        }
    }
}

fn container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    // The last path segment decides whether there is a tag (a registry port has a ':' too).
    let last = image.rsplit('/').next().unwrap_or("");
    let untagged_or_latest = !image.contains('@') && (!last.contains(':') || last.ends_with(":latest"));
    or_insert(
        c,
        "imagePullPolicy",
        json!(if untagged_or_latest {
            "Always"
        } else {
            "IfNotPresent"
        }),
    );
    or_insert(c, "terminationMessagePath", json!("/dev/termination-log"));
    or_insert(c, "terminationMessagePolicy", json!("File"));
    or_insert(c, "resources", json!({}));
    if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            or_insert(p, "protocol", json!("TCP"));
        }
    }
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(probe) = c.get_mut(key).filter(|p| p.is_object()) {
            // SetDefaults_Probe.
            or_insert(probe, "timeoutSeconds", json!(1));
            or_insert(probe, "periodSeconds", json!(10));
            or_insert(probe, "successThreshold", json!(1));
            or_insert(probe, "failureThreshold", json!(3));
            handler(probe);
        }
    }
    for hook in ["postStart", "preStop"] {
        if let Some(h) = c.get_mut("lifecycle").and_then(|l| l.get_mut(hook)) {
            handler(h);
        }
    }
    for env in c
        .get_mut("env")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if let Some(field_ref) = env.get_mut("valueFrom").and_then(|v| v.get_mut("fieldRef")) {
            // SetDefaults_ObjectFieldSelector.
            or_insert(field_ref, "apiVersion", json!("v1"));
        }
    }
}

/// SetDefaults_HTTPGetAction: path `/`, scheme HTTP (probes and lifecycle hooks).
fn handler(h: &mut Value) {
    if let Some(get) = h.get_mut("httpGet").filter(|g| g.is_object()) {
        or_insert(get, "path", json!("/"));
        or_insert(get, "scheme", json!("HTTP"));
    }
}

/// Volume sources' defaults: file modes 0644 for projected content, as upstream's defaults.go.
fn volume(v: &mut Value) {
    for source in ["configMap", "secret", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(source).filter(|s| s.is_object()) {
            or_insert(src, "defaultMode", json!(420));
        }
    }
    if let Some(host_path) = v.get_mut("hostPath").filter(|h| h.is_object()) {
        or_insert(host_path, "type", json!(""));
    }
}

/// BestEffort without any request or limit, Guaranteed when every container's limits equal its
/// requests for CPU and memory, Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .collect();
    let resources = |c: &Value, kind: &str| {
        c["resources"]
            .get(kind)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if containers
        .iter()
        .all(|c| resources(c, "requests").is_empty() && resources(c, "limits").is_empty())
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        let limits = resources(c, "limits");
        let requests = resources(c, "requests");
        ["cpu", "memory"].iter().all(|r| {
            limits.get(*r).is_some() && requests.get(*r).is_none_or(|req| Some(req) == limits.get(*r))
        })
    });
    if guaranteed { "Guaranteed" } else { "Burstable" }
}

/// `spec.template.spec` defaults of a workload.
fn template(obj: &mut Value) {
    let spec = child(obj, "spec");
    let template = child(spec, "template");
    pod_spec(child(template, "spec"));
}

/// Deployment: one replica, RollingUpdate 25%/25%, 10 revisions kept, 600 s progress deadline.
pub fn deployment(obj: &mut Value) {
    template(obj);
    let spec = child(obj, "spec");
    or_insert(spec, "replicas", json!(1));
    or_insert(spec, "revisionHistoryLimit", json!(10));
    or_insert(spec, "progressDeadlineSeconds", json!(600));
    let strategy = child(spec, "strategy");
    or_insert(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        or_insert(ru, "maxSurge", json!("25%"));
        or_insert(ru, "maxUnavailable", json!("25%"));
    }
}

/// ReplicaSet: one replica.
pub fn replicaset(obj: &mut Value) {
    template(obj);
    or_insert(child(obj, "spec"), "replicas", json!(1));
}

/// StatefulSet: one replica, OrderedReady, RollingUpdate with partition 0, claims retained (upstream's
/// StatefulSetAutoDeletePVC defaults, on since 1.27).
pub fn statefulset(obj: &mut Value) {
    template(obj);
    let spec = child(obj, "spec");
    or_insert(spec, "replicas", json!(1));
    or_insert(spec, "podManagementPolicy", json!("OrderedReady"));
    or_insert(spec, "revisionHistoryLimit", json!(10));
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    or_insert(retention, "whenDeleted", json!("Retain"));
    or_insert(retention, "whenScaled", json!("Retain"));
    let strategy = child(spec, "updateStrategy");
    or_insert(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        or_insert(child(strategy, "rollingUpdate"), "partition", json!(0));
    }
}

/// DaemonSet: RollingUpdate with maxUnavailable 1, maxSurge 0.
pub fn daemonset(obj: &mut Value) {
    template(obj);
    let spec = child(obj, "spec");
    or_insert(spec, "revisionHistoryLimit", json!(10));
    let strategy = child(spec, "updateStrategy");
    or_insert(strategy, "type", json!("RollingUpdate"));
    if strategy["type"] == "RollingUpdate" {
        let ru = child(strategy, "rollingUpdate");
        or_insert(ru, "maxUnavailable", json!(1));
        or_insert(ru, "maxSurge", json!(0));
    }
}

/// Job (`SetDefaults_Job`): completions and parallelism 1 when both are unset, else parallelism 1;
/// backoffLimit 6 (the largest int32 with a per-index limit); NonIndexed; not suspended; pods
/// replaced once TerminatingOrFailed (Failed with a pod failure policy); a Job without labels
/// takes its template's.
pub fn job(obj: &mut Value) {
    template(obj);
    let spec = child(obj, "spec");
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec["completions"] = json!(1);
    }
    or_insert(spec, "parallelism", json!(1));
    let per_index = spec.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    or_insert(spec, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    or_insert(spec, "completionMode", json!("NonIndexed"));
    or_insert(spec, "suspend", json!(false));
    let failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    or_insert(
        spec,
        "podReplacementPolicy",
        json!(if failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    job_labels_from_template(obj);
}

fn job_labels_from_template(obj: &mut Value) {
    let template_labels = obj["spec"]["template"]["metadata"]["labels"].clone();
    let empty = obj["metadata"]["labels"].as_object().is_none_or(|m| m.is_empty());
    if template_labels.is_object() && empty {
        child(obj, "metadata")["labels"] = template_labels;
    }
}

/// What upstream's Job strategy does on create (`PrepareForCreate` and `generateSelector`): unless
/// `spec.manualSelector`, the template gets the `controller-uid` and `job-name` labels (both the
/// `batch.kubernetes.io/` and the legacy keys, unless already set: validation then rejects a
/// wrong value) and the selector matches `batch.kubernetes.io/controller-uid`. Needs the uid, so
/// it runs after the server assigned one.
pub fn job_prepare_for_create(obj: &mut Value) {
    if obj["spec"]["manualSelector"] == json!(true) {
        return;
    }
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    let spec = child(obj, "spec");
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for key in ["job-name", "batch.kubernetes.io/job-name"] {
        or_insert(labels, key, name.clone());
    }
    for key in ["controller-uid", "batch.kubernetes.io/controller-uid"] {
        or_insert(labels, key, uid.clone());
    }
    let match_labels = child(child(spec, "selector"), "matchLabels");
    or_insert(match_labels, "batch.kubernetes.io/controller-uid", uid);
    // Upstream's defaulting runs again when the stored object is read back, so a Job created
    // without labels shows its template's, generated ones included.
    job_labels_from_template(obj);
}

/// Service: ClusterIP, no session affinity, ports TCP with targetPort = port.
pub fn service(obj: &mut Value) {
    let spec = child(obj, "spec");
    or_insert(spec, "type", json!("ClusterIP"));
    or_insert(spec, "sessionAffinity", json!("None"));
    or_insert(spec, "internalTrafficPolicy", json!("Cluster"));
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            or_insert(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            or_insert(p, "targetPort", port);
        }
    }
    or_insert(child(obj, "status"), "loadBalancer", json!({}));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_gets_upstream_defaults_and_keeps_what_was_set() {
        let mut d = json!({ "spec": { "replicas": 3, "template": { "spec": { "containers": [
            { "name": "a", "image": "nginx" }, { "name": "b", "image": "reg:5000/x:1.2", "ports": [{ "containerPort": 80 }] }
        ] } } } });
        deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["imagePullPolicy"], "Always", "untagged means latest");
        assert_eq!(
            c[1]["imagePullPolicy"], "IfNotPresent",
            "a registry port is not a tag"
        );
        assert_eq!(c[1]["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn probes_handlers_field_refs_and_volumes_get_upstream_defaults() {
        let mut pod = json!({ "spec": {
            "volumes": [{ "name": "c", "configMap": { "name": "x" } }, { "name": "h", "hostPath": { "path": "/x" } }],
            "containers": [{ "name": "a", "image": "x:1",
                "readinessProbe": { "httpGet": { "port": 80 }, "periodSeconds": 2 },
                "livenessProbe": { "tcpSocket": { "port": 80 } },
                "lifecycle": { "preStop": { "httpGet": { "port": 80, "path": "/stop" } } },
                "env": [{ "name": "N", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } }] }] } });
        super::pod(&mut pod);
        let c = &pod["spec"]["containers"][0];
        let r = &c["readinessProbe"];
        assert_eq!(
            (&r["timeoutSeconds"], &r["periodSeconds"]),
            (&json!(1), &json!(2))
        );
        assert_eq!(
            (&r["successThreshold"], &r["failureThreshold"]),
            (&json!(1), &json!(3))
        );
        assert_eq!(
            (&r["httpGet"]["path"], &r["httpGet"]["scheme"]),
            (&json!("/"), &json!("HTTP"))
        );
        assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["path"], "/stop");
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["scheme"], "HTTP");
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(pod["spec"]["volumes"][0]["configMap"]["defaultMode"], 420);
        assert_eq!(pod["spec"]["volumes"][1]["hostPath"]["type"], "");
    }

    #[test]
    fn recreate_strategy_gets_no_rolling_update_block() {
        let mut d = json!({ "spec": { "strategy": { "type": "Recreate" }, "template": { "spec": {} } } });
        deployment(&mut d);
        assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn service_ports_default_target_port_and_protocol() {
        let mut s = json!({ "spec": { "ports": [{ "port": 80 }, { "port": 53, "protocol": "UDP", "targetPort": "dns" }] } });
        service(&mut s);
        assert_eq!(s["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(s["spec"]["ports"][1]["targetPort"], "dns");
        assert_eq!(s["spec"]["ports"][1]["protocol"], "UDP");
        assert_eq!(s["spec"]["type"], "ClusterIP");
    }

    #[test]
    fn qos_classes() {
        let best = json!({ "containers": [{ "name": "a" }] });
        let guaranteed =
            json!({ "containers": [{ "resources": { "limits": { "cpu": "1", "memory": "1Gi" } } }] });
        let burstable = json!({ "containers": [{ "resources": { "requests": { "cpu": "1" } } }] });
        assert_eq!(qos_class(&best), "BestEffort");
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        assert_eq!(qos_class(&burstable), "Burstable");
    }
}
