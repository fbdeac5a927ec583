//! Table tests with upstream's exact messages, realistic objects that must pass, update rules, the
//! quantity parser, and a property test that no JSON makes validation panic.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::{quantity, validate_create, validate_update};
use crate::server::{defaults, registry::FieldError};

/// Applies skiff's defaulting for `kind`, as the handlers do before validating.
fn defaulted(kind: &str, mut obj: Value) -> Value {
    match kind {
        "Pod" => defaults::pod(&mut obj),
        "Deployment" => defaults::deployment(&mut obj),
        "ReplicaSet" => defaults::replicaset(&mut obj),
        "StatefulSet" => defaults::statefulset(&mut obj),
        "DaemonSet" => defaults::daemonset(&mut obj),
        "Service" => defaults::service(&mut obj),
        "Secret" => defaults::secret(&mut obj),
        "Namespace" => defaults::namespace(&mut obj),
        _ => {}
    }
    obj
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "web", "namespace": "default", "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
    })
}

fn template() -> Value {
    json!({
        "metadata": { "labels": { "app": "web" } },
        "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
    })
}

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": template() },
    })
}

fn stateful_set() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "db", "namespace": "default" },
        "spec": { "serviceName": "db", "selector": { "matchLabels": { "app": "web" } }, "template": template() },
    })
}

fn daemon_set() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "agent", "namespace": "default" },
        "spec": { "selector": { "matchLabels": { "app": "web" } }, "template": template() },
    })
}

fn service() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "default" },
        "spec": { "selector": { "app": "web" }, "ports": [{ "port": 80 }] },
    })
}

fn config_map() -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cfg", "namespace": "default" }, "data": { "a": "1" } })
}

fn secret() -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "s", "namespace": "default" }, "data": { "a": "MQ==" } })
}

fn base(kind: &str) -> Value {
    match kind {
        "Pod" => pod(),
        "Deployment" => deployment(),
        "ReplicaSet" => {
            let mut rs = deployment();
            rs["kind"] = json!("ReplicaSet");
            rs
        }
        "StatefulSet" => stateful_set(),
        "DaemonSet" => daemon_set(),
        "Service" => service(),
        "ConfigMap" => config_map(),
        "Secret" => secret(),
        "Namespace" => json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "team-a" } }),
        "Node" => json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "node-1" } }),
        "Lease" => json!({ "metadata": { "name": "l", "namespace": "kube-node-lease" }, "spec": {} }),
        "Event" => json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": { "name": "e.1", "namespace": "default" },
            "involvedObject": { "kind": "Pod", "name": "web", "namespace": "default" },
            "reason": "Started", "message": "started",
        }),
        "EndpointSlice" => json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": "web-abc", "namespace": "default" },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": ["10.0.0.5"] }],
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP" }],
        }),
        other => panic!("no base object for {other}"),
    }
}

/// Sets (or, with `None`, removes) the value at a JSON pointer, creating what is missing on the way.
fn set(obj: &mut Value, pointer: &str, value: Option<Value>) {
    let unescape = |s: &str| s.replace("~1", "/").replace("~0", "~");
    let (parent, last) = pointer.rsplit_once('/').expect("a pointer");
    let last = unescape(last);
    let last = last.as_str();
    let mut cur = &mut *obj;
    for part in parent.split('/').skip(1).map(unescape) {
        let index = part.parse::<usize>().ok().filter(|_| cur.is_array());
        cur = match index {
            Some(i) => {
                let a = cur.as_array_mut().expect("an array");
                if i >= a.len() {
                    a.push(json!({}));
                }
                let i = i.min(a.len() - 1);
                &mut a[i]
            }
            None => {
                if !cur.is_object() {
                    *cur = json!({});
                }
                cur.as_object_mut()
                    .expect("an object")
                    .entry(part)
                    .or_insert(json!({}))
            }
        };
    }
    match (cur, value) {
        (Value::Array(a), Some(v)) if last.parse::<usize>().is_ok() => {
            let i: usize = last.parse().expect("an index");
            if i >= a.len() { a.push(v) } else { a[i] = v }
        }
        (Value::Array(a), None) if last.parse::<usize>().is_ok_and(|i| i < a.len()) => {
            a.remove(last.parse::<usize>().expect("an index"));
        }
        (other, v) => {
            if !other.is_object() {
                *other = json!({});
            }
            let map = other.as_object_mut().expect("an object");
            match v {
                Some(v) => {
                    map.insert(last.to_owned(), v);
                }
                None => {
                    map.remove(last);
                }
            }
        }
    }
}

fn errors(kind: &str, obj: Value) -> Vec<FieldError> {
    validate_create(kind, &defaulted(kind, obj))
}

struct Case {
    kind: &'static str,
    edits: Vec<(&'static str, Option<Value>)>,
    field: &'static str,
    reason: &'static str,
    message: String,
}

fn case(
    kind: &'static str,
    edits: Vec<(&'static str, Option<Value>)>,
    field: &'static str,
    reason: &'static str,
    message: impl Into<String>,
) -> Case {
    Case {
        kind,
        edits,
        field,
        reason,
        message: message.into(),
    }
}

fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for c in cases {
        let mut obj = base(c.kind);
        for (pointer, value) in &c.edits {
            set(&mut obj, pointer, value.clone());
        }
        let errs = errors(c.kind, obj);
        let want: FieldError = (c.field.into(), c.reason.into(), c.message);
        if !errs.contains(&want) {
            failures.push(format!(
                "{} {:?}\n  want {want:?}\n  got  {errs:#?}",
                c.kind, c.edits
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

#[test]
fn metadata_rules() {
    run(vec![
        case(
            "Pod",
            vec![("/metadata/name", Some(json!("Bad_Name")))],
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
        case(
            "Namespace",
            vec![("/metadata/name", Some(json!("Bad_Name")))],
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        case(
            "Namespace",
            vec![("/metadata/name", Some(json!("team.a")))],
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"team.a\": must not contain dots",
        ),
        case(
            "Service",
            vec![("/metadata/name", Some(json!("1web")))],
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        case(
            "Pod",
            vec![("/metadata/name", None)],
            "metadata.name",
            "FieldValueRequired",
            "Required value: name or generateName is required",
        ),
        case(
            "Pod",
            vec![("/metadata/generateName", Some(json!("Web-")))],
            "metadata.generateName",
            "FieldValueInvalid",
            format!("Invalid value: \"Web-\": {SUBDOMAIN_MSG}"),
        ),
        case(
            "Pod",
            vec![("/metadata/namespace", None)],
            "metadata.namespace",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Node",
            vec![("/metadata/namespace", Some(json!("default")))],
            "metadata.namespace",
            "FieldValueForbidden",
            "Forbidden: not allowed on this type",
        ),
        case(
            "Pod",
            vec![("/metadata/labels/bad key", Some(json!("x")))],
            "metadata.labels",
            "FieldValueInvalid",
            "Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        case(
            "Pod",
            vec![("/metadata/labels/Example.com~1app", Some(json!("x")))],
            "metadata.labels",
            "FieldValueInvalid",
            format!("Invalid value: \"Example.com/app\": prefix part {SUBDOMAIN_MSG}"),
        ),
        case(
            "Pod",
            vec![("/metadata/labels/app", Some(json!("-x")))],
            "metadata.labels",
            "FieldValueInvalid",
            "Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        case(
            "Pod",
            vec![("/metadata/labels/app", Some(json!("x".repeat(64))))],
            "metadata.labels",
            "FieldValueInvalid",
            format!(
                "Invalid value: \"{}\": must be no more than 63 bytes",
                "x".repeat(64)
            ),
        ),
        case(
            "ConfigMap",
            vec![("/metadata/annotations/big", Some(json!("x".repeat(256 * 1024))))],
            "metadata.annotations",
            "FieldValueTooLong",
            "Too long: may not be more than 262144 bytes",
        ),
        case(
            "ConfigMap",
            vec![("/metadata/finalizers", Some(json!(["foo"])))],
            "metadata.finalizers[0]",
            "FieldValueInvalid",
            "Invalid value: \"foo\": name is neither a standard finalizer name nor is it fully qualified",
        ),
    ]);
}

#[test]
fn pod_spec_rules() {
    run(vec![
        case(
            "Pod",
            vec![("/spec/containers", Some(json!([])))],
            "spec.containers",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Pod",
            vec![("/spec/containers/0/name", Some(json!("Web_1")))],
            "spec.containers[0].name",
            "FieldValueInvalid",
            format!("Invalid value: \"Web_1\": {LABEL_MSG}"),
        ),
        case(
            "Pod",
            vec![("/spec/containers/0/image", None)],
            "spec.containers[0].image",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Pod",
            vec![("/spec/containers/1", Some(json!({ "name": "web", "image": "x" })))],
            "spec.containers[1].name",
            "FieldValueDuplicate",
            "Duplicate value: \"web\"",
        ),
        case(
            "Pod",
            vec![(
                "/spec/initContainers",
                Some(json!([{ "name": "web", "image": "busybox" }])),
            )],
            "spec.initContainers[0].name",
            "FieldValueDuplicate",
            "Duplicate value: \"web\"",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/ports",
                Some(json!([{ "containerPort": 70000 }])),
            )],
            "spec.containers[0].ports[0].containerPort",
            "FieldValueInvalid",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        case(
            "Pod",
            vec![("/spec/containers/0/ports", Some(json!([{ "name": "http" }])))],
            "spec.containers[0].ports[0].containerPort",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/ports",
                Some(json!([{ "containerPort": 80, "protocol": "HTTP" }])),
            )],
            "spec.containers[0].ports[0].protocol",
            "FieldValueNotSupported",
            "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/ports",
                Some(json!([{ "containerPort": 80, "name": "a-very-long-name" }])),
            )],
            "spec.containers[0].ports[0].name",
            "FieldValueInvalid",
            "Invalid value: \"a-very-long-name\": must be no more than 15 characters",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/ports",
                Some(json!([{ "containerPort": 80, "name": "8080" }])),
            )],
            "spec.containers[0].ports[0].name",
            "FieldValueInvalid",
            "Invalid value: \"8080\": must contain at least one letter (a-z)",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/ports",
                Some(
                    json!([{ "containerPort": 80, "name": "http" }, { "containerPort": 81, "name": "http" }]),
                ),
            )],
            "spec.containers[0].ports[1].name",
            "FieldValueDuplicate",
            "Duplicate value: \"http\"",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/env",
                Some(json!([{ "name": "A=B", "value": "1" }])),
            )],
            "spec.containers[0].env[0].name",
            "FieldValueInvalid",
            "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
        ),
        case(
            "Pod",
            vec![("/spec/containers/0/env", Some(json!([{ "value": "1" }])))],
            "spec.containers[0].env[0].name",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/env",
                Some(json!([{ "name": "A", "valueFrom": {} }])),
            )],
            "spec.containers[0].env[0].valueFrom",
            "FieldValueInvalid",
            "Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/env",
                Some(json!([{ "name": "A", "valueFrom": {
                    "fieldRef": { "fieldPath": "metadata.name" },
                    "secretKeyRef": { "name": "s", "key": "k" },
                } }])),
            )],
            "spec.containers[0].env[0].valueFrom",
            "FieldValueInvalid",
            "Invalid value: \"\": may not have more than one field specified at a time",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/env",
                Some(
                    json!([{ "name": "A", "valueFrom": { "fieldRef": { "fieldPath": "spec.restartPolicy" } } }]),
                ),
            )],
            "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath",
            "FieldValueNotSupported",
            "Unsupported value: \"spec.restartPolicy\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/env",
                Some(
                    json!([{ "name": "A", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "a/b" } } }]),
                ),
            )],
            "spec.containers[0].env[0].valueFrom.configMapKeyRef.key",
            "FieldValueInvalid",
            "Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/resources",
                Some(json!({ "requests": { "cpu": "2" }, "limits": { "cpu": "1" } })),
            )],
            "spec.containers[0].resources.requests",
            "FieldValueInvalid",
            "Invalid value: \"2\": must be less than or equal to cpu limit of 1",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/resources",
                Some(json!({ "requests": { "memory": "1.5Gi" }, "limits": { "memory": "1Gi" } })),
            )],
            "spec.containers[0].resources.requests",
            "FieldValueInvalid",
            "Invalid value: \"1536Mi\": must be less than or equal to memory limit of 1Gi",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/resources",
                Some(json!({ "limits": { "cpu": "two" } })),
            )],
            "spec.containers[0].resources.limits[cpu]",
            "FieldValueInvalid",
            "Invalid value: \"two\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/resources",
                Some(json!({ "limits": { "memory": "-1Gi" } })),
            )],
            "spec.containers[0].resources.limits[memory]",
            "FieldValueInvalid",
            "Invalid value: \"-1Gi\": must be greater than or equal to 0",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/resources",
                Some(json!({ "limits": { "gpu": "1" } })),
            )],
            "spec.containers[0].resources.limits[gpu]",
            "FieldValueInvalid",
            "Invalid value: \"gpu\": must be a standard resource for containers",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/resources",
                Some(json!({ "requests": { "example.com/gpu": "1" } })),
            )],
            "spec.containers[0].resources.limits",
            "FieldValueRequired",
            "Required value: Limit must be set for non overcommitable resources",
        ),
        case(
            "Pod",
            vec![("/spec/restartPolicy", Some(json!("Sometimes")))],
            "spec.restartPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ),
        case(
            "Pod",
            vec![("/spec/dnsPolicy", Some(json!("Cluster")))],
            "spec.dnsPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
        ),
        case(
            "Pod",
            vec![("/spec/dnsPolicy", Some(json!("None")))],
            "spec.dnsConfig",
            "FieldValueRequired",
            "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
        ),
        case(
            "Pod",
            vec![("/spec/terminationGracePeriodSeconds", Some(json!(-1)))],
            "spec.terminationGracePeriodSeconds",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        case(
            "Pod",
            vec![("/spec/activeDeadlineSeconds", Some(json!(0)))],
            "spec.activeDeadlineSeconds",
            "FieldValueInvalid",
            "Invalid value: 0: must be between 1 and 2147483647, inclusive",
        ),
        case(
            "Pod",
            vec![(
                "/spec/tolerations",
                Some(json!([{ "key": "k", "operator": "Is", "value": "v" }])),
            )],
            "spec.tolerations[0].operator",
            "FieldValueNotSupported",
            "Unsupported value: \"Is\": supported values: \"Equal\", \"Exists\"",
        ),
        case(
            "Pod",
            vec![("/spec/nodeSelector", Some(json!({ "disk": "ssd!" })))],
            "spec.nodeSelector",
            "FieldValueInvalid",
            "Invalid value: \"ssd!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        case(
            "Pod",
            vec![("/spec/containers/0/image", Some(json!(" nginx")))],
            "spec.containers[0].image",
            "FieldValueInvalid",
            "Invalid value: \" nginx\": must not have leading or trailing whitespace",
        ),
        case(
            "Pod",
            vec![("/spec/containers/0/imagePullPolicy", Some(json!("Sometimes")))],
            "spec.containers[0].imagePullPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
        ),
    ]);
}

#[test]
fn probe_rules() {
    let probe = |p: Value| vec![("/spec/containers/0/livenessProbe", Some(p))];
    run(vec![
        case(
            "Pod",
            probe(json!({ "exec": { "command": ["true"] }, "tcpSocket": { "port": 80 } })),
            "spec.containers[0].livenessProbe.tcpSocket",
            "FieldValueForbidden",
            "Forbidden: may not specify more than 1 handler type",
        ),
        case(
            "Pod",
            probe(json!({ "periodSeconds": 5 })),
            "spec.containers[0].livenessProbe",
            "FieldValueRequired",
            "Required value: must specify a handler type",
        ),
        case(
            "Pod",
            probe(json!({ "httpGet": { "port": 80 }, "periodSeconds": -1 })),
            "spec.containers[0].livenessProbe.periodSeconds",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        case(
            "Pod",
            probe(json!({ "httpGet": { "port": 80 }, "successThreshold": 2 })),
            "spec.containers[0].livenessProbe.successThreshold",
            "FieldValueInvalid",
            "Invalid value: 2: must be 1",
        ),
        case(
            "Pod",
            probe(json!({ "httpGet": { "port": 0 } })),
            "spec.containers[0].livenessProbe.httpGet.port",
            "FieldValueInvalid",
            "Invalid value: 0: must be between 1 and 65535, inclusive",
        ),
        case(
            "Pod",
            probe(json!({ "exec": {} })),
            "spec.containers[0].livenessProbe.exec.command",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/readinessProbe",
                Some(json!({ "tcpSocket": { "port": "http" }, "terminationGracePeriodSeconds": 5 })),
            )],
            "spec.containers[0].readinessProbe.terminationGracePeriodSeconds",
            "FieldValueInvalid",
            "Invalid value: 5: must not be set for readinessProbes",
        ),
        case(
            "Pod",
            vec![(
                "/spec/initContainers",
                Some(
                    json!([{ "name": "init", "image": "x", "livenessProbe": { "exec": { "command": ["x"] } } }]),
                ),
            )],
            "spec.initContainers[0].livenessProbe",
            "FieldValueForbidden",
            "Forbidden: may not be set for init containers without restartPolicy=Always",
        ),
        case(
            "Pod",
            vec![(
                "/spec/containers/0/lifecycle",
                Some(json!({ "preStop": { "sleep": { "seconds": 60 } } })),
            )],
            "spec.containers[0].lifecycle.preStop.sleep",
            "FieldValueInvalid",
            "Invalid value: 60: must be non-negative and less than terminationGracePeriodSeconds (30)",
        ),
    ]);
}

#[test]
fn volume_rules() {
    let mount = (
        "/spec/containers/0/volumeMounts",
        Some(json!([{ "name": "data", "mountPath": "/data" }])),
    );
    run(vec![
        case(
            "Pod",
            vec![(
                "/spec/volumes",
                Some(json!([{ "name": "a", "emptyDir": {} }, { "name": "a", "emptyDir": {} }])),
            )],
            "spec.volumes[1].name",
            "FieldValueDuplicate",
            "Duplicate value: \"a\"",
        ),
        case(
            "Pod",
            vec![("/spec/volumes", Some(json!([{ "name": "a" }])))],
            "spec.volumes[0]",
            "FieldValueRequired",
            "Required value: must specify a volume type",
        ),
        case(
            "Pod",
            vec![(
                "/spec/volumes",
                Some(json!([{ "name": "a", "emptyDir": {}, "configMap": { "name": "c" } }])),
            )],
            "spec.volumes[0].configMap",
            "FieldValueForbidden",
            "Forbidden: may not specify more than 1 volume type",
        ),
        case(
            "Pod",
            vec![("/spec/volumes", Some(json!([{ "name": "Data", "emptyDir": {} }])))],
            "spec.volumes[0].name",
            "FieldValueInvalid",
            format!("Invalid value: \"Data\": {LABEL_MSG}"),
        ),
        case(
            "Pod",
            vec![mount.clone()],
            "spec.containers[0].volumeMounts[0].name",
            "FieldValueNotFound",
            "Not found: \"data\"",
        ),
        case(
            "Pod",
            vec![
                ("/spec/volumes", Some(json!([{ "name": "data", "emptyDir": {} }]))),
                (
                    "/spec/containers/0/volumeMounts",
                    Some(
                        json!([{ "name": "data", "mountPath": "/d" }, { "name": "data", "mountPath": "/d" }]),
                    ),
                ),
            ],
            "spec.containers[0].volumeMounts[1].mountPath",
            "FieldValueInvalid",
            "Invalid value: \"/d\": must be unique",
        ),
        case(
            "Pod",
            vec![(
                "/spec/volumes",
                Some(
                    json!([{ "name": "c", "configMap": { "name": "cfg", "items": [{ "key": "a", "path": "../x" }] } }]),
                ),
            )],
            "spec.volumes[0].configMap.items[0].path",
            "FieldValueInvalid",
            "Invalid value: \"../x\": must not contain '..'",
        ),
        case(
            "Pod",
            vec![(
                "/spec/volumes",
                Some(json!([{ "name": "s", "secret": { "secretName": "s", "defaultMode": 1000 } }])),
            )],
            "spec.volumes[0].secret.defaultMode",
            "FieldValueInvalid",
            "Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive",
        ),
        case(
            "Pod",
            vec![(
                "/spec/volumes",
                Some(json!([{ "name": "h", "hostPath": { "path": "/x", "type": "Dir" } }])),
            )],
            "spec.volumes[0].hostPath.type",
            "FieldValueNotSupported",
            "Unsupported value: \"Dir\": supported values: \"\", \"BlockDevice\", \"CharDevice\", \"Directory\", \"DirectoryOrCreate\", \"File\", \"FileOrCreate\", \"Socket\"",
        ),
    ]);
}

#[test]
fn workload_rules() {
    let mismatch =
        "Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`";
    run(vec![
        case(
            "Deployment",
            vec![("/spec/selector", None)],
            "spec.selector",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Deployment",
            vec![("/spec/selector", None)],
            "spec.template.metadata.labels",
            "FieldValueInvalid",
            mismatch,
        ),
        case(
            "Deployment",
            vec![("/spec/selector/matchLabels/app", Some(json!("api")))],
            "spec.template.metadata.labels",
            "FieldValueInvalid",
            mismatch,
        ),
        case(
            "Deployment",
            vec![("/spec/template/metadata/labels", None)],
            "spec.template.metadata.labels",
            "FieldValueInvalid",
            "Invalid value: map[string]string(nil): `selector` does not match template `labels`",
        ),
        case(
            "Deployment",
            vec![("/spec/selector", Some(json!({ "matchLabels": {} })))],
            "spec.selector",
            "FieldValueInvalid",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
        ),
        case(
            "Deployment",
            vec![("/spec/template/spec/restartPolicy", Some(json!("Never")))],
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"Never\": supported values: \"Always\"",
        ),
        case(
            "Deployment",
            vec![("/spec/replicas", Some(json!(-1)))],
            "spec.replicas",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        case(
            "Deployment",
            vec![("/spec/template/spec/containers/0/image", None)],
            "spec.template.spec.containers[0].image",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Deployment",
            vec![("/spec/template/metadata/labels/bad key", Some(json!("x")))],
            "spec.template.labels",
            "FieldValueInvalid",
            "Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        ),
        case(
            "Deployment",
            vec![(
                "/spec/strategy",
                Some(
                    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 0, "maxUnavailable": 0 } }),
                ),
            )],
            "spec.strategy.rollingUpdate.maxUnavailable",
            "FieldValueInvalid",
            "Invalid value: intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}: may not be 0 when `maxSurge` is 0",
        ),
        case(
            "Deployment",
            vec![(
                "/spec/strategy",
                Some(json!({ "rollingUpdate": { "maxUnavailable": "110%" } })),
            )],
            "spec.strategy.rollingUpdate.maxUnavailable",
            "FieldValueInvalid",
            "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"110%\"}: must not be greater than 100%",
        ),
        case(
            "Deployment",
            vec![(
                "/spec/strategy",
                Some(json!({ "rollingUpdate": { "maxSurge": "lots" } })),
            )],
            "spec.strategy.rollingUpdate.maxSurge",
            "FieldValueInvalid",
            "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"lots\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
        ),
        case(
            "Deployment",
            vec![("/spec/strategy", Some(json!({ "type": "Blue" })))],
            "spec.strategy",
            "FieldValueNotSupported",
            "Unsupported value: apps.DeploymentStrategy{Type:\"Blue\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"",
        ),
        case(
            "Deployment",
            vec![(
                "/spec/strategy",
                Some(json!({ "type": "Recreate", "rollingUpdate": { "maxSurge": 1 } })),
            )],
            "spec.strategy.rollingUpdate",
            "FieldValueForbidden",
            "Forbidden: may not be specified when strategy `type` is 'Recreate'",
        ),
        case(
            "Deployment",
            vec![("/spec/revisionHistoryLimit", Some(json!(-1)))],
            "spec.revisionHistoryLimit",
            "FieldValueInvalid",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        case(
            "Deployment",
            vec![
                ("/spec/minReadySeconds", Some(json!(10))),
                ("/spec/progressDeadlineSeconds", Some(json!(5))),
            ],
            "spec.progressDeadlineSeconds",
            "FieldValueInvalid",
            "Invalid value: 5: must be greater than minReadySeconds",
        ),
        case(
            "Deployment",
            vec![(
                "/spec/selector/matchExpressions",
                Some(json!([{ "key": "tier", "operator": "In" }])),
            )],
            "spec.selector.matchExpressions[0].values",
            "FieldValueRequired",
            "Required value: must be specified when `operator` is 'In' or 'NotIn'",
        ),
        case(
            "ReplicaSet",
            vec![("/spec/template/spec/activeDeadlineSeconds", Some(json!(10)))],
            "spec.template.spec.activeDeadlineSeconds",
            "FieldValueForbidden",
            "Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
        ),
        case(
            "StatefulSet",
            vec![("/spec/podManagementPolicy", Some(json!("Random")))],
            "spec.podManagementPolicy",
            "FieldValueInvalid",
            "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
        ),
        case(
            "StatefulSet",
            vec![("/metadata/name", Some(json!("db.primary")))],
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"db.primary\": must not contain dots",
        ),
        case(
            "StatefulSet",
            vec![("/spec/template/spec/restartPolicy", Some(json!("OnFailure")))],
            "spec.template.spec.restartPolicy",
            "FieldValueNotSupported",
            "Unsupported value: \"OnFailure\": supported values: \"Always\"",
        ),
        case(
            "DaemonSet",
            vec![(
                "/spec/updateStrategy",
                Some(
                    json!({ "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1, "maxSurge": 1 } }),
                ),
            )],
            "spec.updateStrategy.rollingUpdate.maxSurge",
            "FieldValueInvalid",
            "Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero",
        ),
        case(
            "DaemonSet",
            vec![("/spec/updateStrategy", Some(json!({ "type": "Sometimes" })))],
            "spec.updateStrategy",
            "FieldValueNotSupported",
            "Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Sometimes\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\"",
        ),
    ]);
}

#[test]
fn service_rules() {
    run(vec![
        case(
            "Service",
            vec![("/spec/ports", Some(json!([])))],
            "spec.ports",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Service",
            vec![("/spec/ports/0/port", Some(json!(70000)))],
            "spec.ports[0].port",
            "FieldValueInvalid",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        case(
            "Service",
            vec![("/spec/ports/1", Some(json!({ "port": 443 })))],
            "spec.ports[0].name",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Service",
            vec![(
                "/spec/ports",
                Some(json!([{ "name": "web", "port": 80 }, { "name": "web", "port": 443 }])),
            )],
            "spec.ports[1].name",
            "FieldValueDuplicate",
            "Duplicate value: \"web\"",
        ),
        case(
            "Service",
            vec![("/spec/ports/0/targetPort", Some(json!("Http_Port")))],
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
            "Invalid value: \"Http_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
        ),
        case(
            "Service",
            vec![("/spec/ports/0/targetPort", Some(json!(70000)))],
            "spec.ports[0].targetPort",
            "FieldValueInvalid",
            "Invalid value: 70000: must be between 1 and 65535, inclusive",
        ),
        case(
            "Service",
            vec![("/spec/ports/0/protocol", Some(json!("HTTP")))],
            "spec.ports[0].protocol",
            "FieldValueNotSupported",
            "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
        ),
        case(
            "Service",
            vec![("/spec/type", Some(json!("Internal")))],
            "spec.type",
            "FieldValueNotSupported",
            "Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
        ),
        case(
            "Service",
            vec![("/spec/sessionAffinity", Some(json!("Sticky")))],
            "spec.sessionAffinity",
            "FieldValueNotSupported",
            "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
        ),
        case(
            "Service",
            vec![("/spec/selector/app", Some(json!("web!")))],
            "spec.selector",
            "FieldValueInvalid",
            "Invalid value: \"web!\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
        ),
        case(
            "Service",
            vec![(
                "/spec/ports",
                Some(json!([{ "name": "a", "port": 80 }, { "name": "b", "port": 80 }])),
            )],
            "spec.ports[1]",
            "FieldValueDuplicate",
            "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
        ),
        case(
            "Service",
            vec![("/spec/ports/0/nodePort", Some(json!(30080)))],
            "spec.ports[0].nodePort",
            "FieldValueForbidden",
            "Forbidden: may not be used when `type` is 'ClusterIP'",
        ),
        case(
            "Service",
            vec![("/spec/type", Some(json!("ExternalName"))), ("/spec/ports", None)],
            "spec.externalName",
            "FieldValueRequired",
            "Required value",
        ),
    ]);
    // Headless services need no ports; ExternalName ones neither.
    let mut headless = service();
    set(&mut headless, "/spec/clusterIP", Some(json!("None")));
    set(&mut headless, "/spec/ports", None);
    assert_eq!(errors("Service", headless), vec![]);
}

#[test]
fn config_and_other_kinds() {
    run(vec![
        case(
            "ConfigMap",
            vec![("/data/..", Some(json!("x")))],
            "data[..]",
            "FieldValueInvalid",
            "Invalid value: \"..\": must not be '..'",
        ),
        case(
            "ConfigMap",
            vec![("/data/a b", Some(json!("x")))],
            "data[a b]",
            "FieldValueInvalid",
            "Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
        case(
            "ConfigMap",
            vec![("/data/big", Some(json!("x".repeat(1024 * 1024 + 1))))],
            "",
            "FieldValueTooLong",
            "Too long: may not be more than 1048576 bytes",
        ),
        case(
            "Secret",
            vec![("/type", Some(json!("kubernetes.io/tls")))],
            "data[tls.key]",
            "FieldValueRequired",
            "Required value",
        ),
        case(
            "Secret",
            vec![("/stringData/bad key", Some(json!("x")))],
            "data[bad key]",
            "FieldValueInvalid",
            "Invalid value: \"bad key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
        ),
        case(
            "Namespace",
            vec![("/spec/finalizers", Some(json!(["custom"])))],
            "spec.finalizers",
            "FieldValueInvalid",
            "Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified",
        ),
        case(
            "Node",
            vec![(
                "/spec/taints",
                Some(json!([{ "key": "k", "effect": "NoSchedule" }, { "key": "k", "effect": "NoSchedule" }])),
            )],
            "metadata.taints[1]",
            "FieldValueDuplicate",
            "Duplicate value: core.Taint{Key:\"k\", Value:\"\", Effect:\"NoSchedule\", TimeAdded:<nil>}: taints must be unique by key and effect pair",
        ),
        case(
            "Node",
            vec![("/spec/taints", Some(json!([{ "key": "k", "effect": "Never" }])))],
            "metadata.taints[0].effect",
            "FieldValueNotSupported",
            "Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        ),
        case(
            "Lease",
            vec![("/spec/leaseDurationSeconds", Some(json!(0)))],
            "spec.leaseDurationSeconds",
            "FieldValueInvalid",
            "Invalid value: 0: must be greater than 0",
        ),
        case(
            "Event",
            vec![("/involvedObject/namespace", Some(json!("other")))],
            "involvedObject.namespace",
            "FieldValueInvalid",
            "Invalid value: \"other\": does not match event.namespace",
        ),
        case(
            "EndpointSlice",
            vec![("/endpoints/0/addresses/0", Some(json!("fe80::1")))],
            "endpoints[0].addresses[0]",
            "FieldValueInvalid",
            "Invalid value: \"fe80::1\": must be a valid IPv4 address",
        ),
        case(
            "EndpointSlice",
            vec![("/addressType", Some(json!("IPv5")))],
            "addressType",
            "FieldValueNotSupported",
            "Unsupported value: \"IPv5\": supported values: \"FQDN\", \"IPv4\", \"IPv6\"",
        ),
    ]);
}

/// Realistic manifests (as `kubectl apply` sends them) pass once defaulted.
#[test]
fn realistic_objects_are_valid() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": "web", "namespace": "prod", "labels": { "app.kubernetes.io/name": "web" },
                      "annotations": { "kubectl.kubernetes.io/last-applied-configuration": "{}" } },
        "spec": {
            "replicas": 3,
            "selector": { "matchLabels": { "app": "web" }, "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["front"] }] },
            "strategy": { "type": "RollingUpdate", "rollingUpdate": { "maxSurge": 1, "maxUnavailable": "50%" } },
            "template": {
                "metadata": { "labels": { "app": "web", "tier": "front" } },
                "spec": {
                    "initContainers": [{ "name": "migrate", "image": "registry.local:5000/web:1.2", "command": ["./migrate"] }],
                    "containers": [{
                        "name": "web", "image": "nginx:1.27",
                        "ports": [{ "name": "http", "containerPort": 8080 }, { "containerPort": 9090, "protocol": "UDP" }],
                        "env": [
                            { "name": "MODE", "value": "prod" },
                            { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                            { "name": "MEM", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                            { "name": "TOKEN", "valueFrom": { "secretKeyRef": { "name": "web-secrets", "key": "token" } } },
                        ],
                        "envFrom": [{ "configMapRef": { "name": "web-config" }, "prefix": "CFG_" }],
                        "resources": { "requests": { "cpu": "250m", "memory": "64Mi" }, "limits": { "cpu": "1", "memory": "128Mi" } },
                        "readinessProbe": { "httpGet": { "path": "/healthz", "port": "http" }, "periodSeconds": 5 },
                        "livenessProbe": { "tcpSocket": { "port": 8080 }, "initialDelaySeconds": 10 },
                        "lifecycle": { "preStop": { "sleep": { "seconds": 5 } } },
                        "volumeMounts": [{ "name": "config", "mountPath": "/etc/web" }, { "name": "cache", "mountPath": "/cache", "subPath": "web" }],
                        "securityContext": { "runAsUser": 1000, "allowPrivilegeEscalation": false },
                    }],
                    "volumes": [
                        { "name": "config", "configMap": { "name": "web-config", "items": [{ "key": "nginx.conf", "path": "nginx.conf" }] } },
                        { "name": "cache", "emptyDir": { "sizeLimit": "1Gi" } },
                    ],
                    "tolerations": [{ "key": "dedicated", "operator": "Equal", "value": "web", "effect": "NoSchedule" }],
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                },
            },
        },
    });
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "debug-7f9c", "namespace": "default", "generateName": "debug-" },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{ "name": "sh", "image": "busybox", "command": ["sleep", "3600"], "stdin": true, "tty": true }],
            "hostAliases": [{ "ip": "10.0.0.1", "hostnames": ["db.local"] }],
        },
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": "web", "namespace": "prod" },
        "spec": {
            "type": "NodePort", "selector": { "app": "web" },
            "ports": [
                { "name": "http", "port": 80, "targetPort": "http", "nodePort": 30080 },
                { "name": "metrics", "port": 9090, "protocol": "UDP" },
            ],
            "externalTrafficPolicy": "Local",
        },
    });
    let stateful_set = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": "db", "namespace": "prod" },
        "spec": {
            "serviceName": "db", "replicas": 3, "selector": { "matchLabels": { "app": "db" } },
            "template": { "metadata": { "labels": { "app": "db" } },
                          "spec": { "containers": [{ "name": "pg", "image": "postgres:16", "volumeMounts": [{ "name": "data", "mountPath": "/var/lib/pg" }] }] } },
            "volumeClaimTemplates": [{ "metadata": { "name": "data" }, "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": "1Gi" } } } }],
        },
    });
    let daemon_set = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": { "name": "agent", "namespace": "kube-system" },
        "spec": { "selector": { "matchLabels": { "app": "agent" } },
                  "template": { "metadata": { "labels": { "app": "agent" } },
                                "spec": { "hostNetwork": true, "containers": [{ "name": "agent", "image": "agent:1", "ports": [{ "containerPort": 9100, "hostPort": 9100 }] }] } } },
    });
    let config_map = json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "web-config", "namespace": "prod" },
                             "data": { "nginx.conf": "server {}", "MODE": "prod" }, "binaryData": { "logo.png": "iVBORw0KGgo=" } });
    let secret = json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "tls", "namespace": "prod" },
                         "type": "kubernetes.io/tls", "data": { "tls.crt": "Y2VydA==", "tls.key": "a2V5" } });
    let namespace = json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "prod", "labels": { "team": "web" } } });
    for (kind, obj) in [
        ("Deployment", deployment),
        ("Pod", pod),
        ("Service", service),
        ("StatefulSet", stateful_set),
        ("DaemonSet", daemon_set),
        ("ConfigMap", config_map),
        ("Secret", secret),
        ("Namespace", namespace),
    ] {
        assert_eq!(errors(kind, obj), vec![], "{kind} should be valid");
    }
    for kind in [
        "Pod",
        "Deployment",
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Service",
        "ConfigMap",
        "Secret",
        "Namespace",
        "Node",
        "Lease",
        "Event",
        "EndpointSlice",
    ] {
        assert_eq!(errors(kind, base(kind)), vec![], "base {kind} should be valid");
    }
}

fn update_errors(kind: &str, old: &Value, edits: &[(&str, Option<Value>)]) -> Vec<FieldError> {
    let old = defaulted(kind, old.clone());
    let mut new = old.clone();
    for (pointer, value) in edits {
        set(&mut new, pointer, value.clone());
    }
    validate_update(kind, &old, &new)
}

#[test]
fn update_rules() {
    let e = |f: &str, r: &str, m: &str| -> FieldError { (f.into(), r.into(), m.into()) };
    // Unchanged objects are fine.
    for kind in [
        "Pod",
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Service",
        "ConfigMap",
        "Secret",
        "Namespace",
    ] {
        assert_eq!(update_errors(kind, &base(kind), &[]), vec![], "{kind}");
    }
    assert_eq!(
        update_errors(
            "Deployment",
            &deployment(),
            &[
                ("/spec/selector/matchLabels/app", Some(json!("api"))),
                ("/spec/template/metadata/labels/app", Some(json!("api")))
            ]
        ),
        vec![e(
            "spec.selector",
            "FieldValueInvalid",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"api\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
        )]
    );
    assert_eq!(
        update_errors("Deployment", &deployment(), &[("/spec/replicas", Some(json!(5)))]),
        vec![]
    );
    assert!(
        update_errors(
            "DaemonSet",
            &daemon_set(),
            &[("/spec/selector/matchLabels/tier", Some(json!("x")))]
        )
        .iter()
        .any(|(f, _, m)| f == "spec.selector" && m.ends_with("field is immutable"))
    );
    assert_eq!(
        update_errors(
            "StatefulSet",
            &stateful_set(),
            &[("/spec/serviceName", Some(json!("other")))]
        ),
        vec![e(
            "spec",
            "FieldValueForbidden",
            "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        )]
    );
    assert_eq!(
        update_errors(
            "StatefulSet",
            &stateful_set(),
            &[
                ("/spec/replicas", Some(json!(4))),
                ("/spec/template/spec/containers/0/image", Some(json!("pg:17")))
            ]
        ),
        vec![]
    );
    // Pods: images and activeDeadlineSeconds may change, other fields not.
    assert_eq!(
        update_errors(
            "Pod",
            &pod(),
            &[("/spec/containers/0/image", Some(json!("nginx:1.28")))]
        ),
        vec![]
    );
    assert_eq!(
        update_errors(
            "Pod",
            &pod(),
            &[(
                "/spec/tolerations",
                Some(json!([{ "key": "a", "operator": "Exists" }]))
            )]
        ),
        vec![]
    );
    let errs = update_errors(
        "Pod",
        &pod(),
        &[("/spec/containers/0/ports", Some(json!([{ "containerPort": 80 }])))],
    );
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert_eq!(
        (errs[0].0.as_str(), errs[0].1.as_str()),
        ("spec", "FieldValueForbidden")
    );
    assert!(errs[0].2.starts_with(
        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"
    ));
    assert!(errs[0].2.contains("containers[0].ports"), "{}", errs[0].2);
    assert_eq!(
        update_errors(
            "Pod",
            &pod(),
            &[(
                "/spec/containers/1",
                Some(json!({ "name": "side", "image": "x" }))
            )]
        ),
        vec![e(
            "spec.containers",
            "FieldValueForbidden",
            "Forbidden: pod updates may not add or remove containers"
        )]
    );
    let mut tolerated = pod();
    set(
        &mut tolerated,
        "/spec/tolerations",
        Some(json!([{ "key": "a", "operator": "Exists" }])),
    );
    assert_eq!(
        update_errors(
            "Pod",
            &tolerated,
            &[("/spec/tolerations/0/key", Some(json!("b")))]
        ),
        vec![e(
            "spec.tolerations",
            "FieldValueForbidden",
            "Forbidden: existing toleration can not be modified except its tolerationSeconds"
        )]
    );
    // Names and namespaces never change.
    assert_eq!(
        update_errors(
            "ConfigMap",
            &config_map(),
            &[
                ("/metadata/name", Some(json!("other"))),
                ("/metadata/namespace", Some(json!("kube-system")))
            ]
        ),
        vec![
            e(
                "metadata.name",
                "FieldValueInvalid",
                "Invalid value: \"other\": field is immutable"
            ),
            e(
                "metadata.namespace",
                "FieldValueInvalid",
                "Invalid value: \"kube-system\": field is immutable"
            ),
        ]
    );
    // Immutable ConfigMaps and Secrets keep their data.
    let mut frozen = config_map();
    set(&mut frozen, "/immutable", Some(json!(true)));
    assert_eq!(
        update_errors("ConfigMap", &frozen, &[("/data/a", Some(json!("2")))]),
        vec![e(
            "data",
            "FieldValueForbidden",
            "Forbidden: field is immutable when `immutable` is set"
        )]
    );
    assert_eq!(
        update_errors("ConfigMap", &frozen, &[("/immutable", Some(json!(false)))]),
        vec![e(
            "immutable",
            "FieldValueForbidden",
            "Forbidden: field is immutable when `immutable` is set"
        )]
    );
    assert_eq!(
        update_errors("ConfigMap", &config_map(), &[("/data/a", Some(json!("2")))]),
        vec![]
    );
    let mut frozen_secret = secret();
    set(&mut frozen_secret, "/immutable", Some(json!(true)));
    assert_eq!(
        update_errors("Secret", &frozen_secret, &[("/data/a", Some(json!("Mg==")))]),
        vec![e(
            "data",
            "FieldValueForbidden",
            "Forbidden: field is immutable when `immutable` is set"
        )]
    );
    assert_eq!(
        update_errors(
            "Secret",
            &secret(),
            &[
                ("/type", Some(json!("kubernetes.io/basic-auth"))),
                ("/data/username", Some(json!("dQ==")))
            ]
        ),
        vec![e(
            "type",
            "FieldValueInvalid",
            "Invalid value: \"kubernetes.io/basic-auth\": field is immutable"
        )]
    );
    // A name valid under older rules is not re-checked on update.
    let mut old_named = service();
    set(&mut old_named, "/metadata/name", Some(json!("1web")));
    assert_eq!(
        update_errors("Service", &old_named, &[("/spec/ports/0/port", Some(json!(81)))]),
        vec![]
    );
}

#[test]
fn quantities_parse_compare_and_print_like_upstream() {
    let canonical = |s: &str| quantity::parse(s).map(|q| q.canonical());
    for (input, want) in [
        ("1000m", "1"),
        ("1.5", "1500m"),
        ("0.1", "100m"),
        ("250m", "250m"),
        ("1000", "1k"),
        ("1k", "1k"),
        ("1024Mi", "1Gi"),
        ("0.5Gi", "512Mi"),
        ("1.5Ki", "1536"),
        ("100Mi", "100Mi"),
        ("1Ki", "1Ki"),
        ("512", "512"),
        ("1e3", "1e3"),
        ("1E3", "1e3"),
        ("1e-3", "1e-3"),
        ("2E", "2E"),
        ("3Ei", "3Ei"),
        ("1n", "1n"),
        ("0.0000000001", "1n"),
        ("0", "0"),
        ("00", "0"),
        ("-1", "-1"),
        ("+5", "5"),
        (".5", "500m"),
        ("5.", "5"),
        ("12345678901234567890", "9223372036854775807"),
    ] {
        assert_eq!(canonical(input).as_deref(), Ok(want), "{input}");
    }
    for bad in ["", "abc", "1.2.3", "1 Gi", "1Gib"] {
        assert_eq!(canonical(bad), Err(quantity::FORMAT_ERR), "{bad:?}");
    }
    for bad in ["1ki", "1e", "1kk"] {
        assert_eq!(canonical(bad), Err(quantity::SUFFIX_ERR), "{bad:?}");
    }
    let q = |s: &str| quantity::parse(s).unwrap();
    assert!(q("1Gi") > q("1G"));
    assert!(q("500m") < q("1"));
    assert!(q("1024Mi") == q("1Gi"));
    assert!(q("2").is_integer() && !q("1500m").is_integer());
    assert_eq!(
        quantity::from_json(&json!(2)).map(|q| q.canonical()),
        Ok("2".into())
    );
    assert_eq!(
        quantity::from_json(&json!(0.5)).map(|q| q.canonical()),
        Ok("500m".into())
    );
}

/// JSON built from the field names the validators look at, so the search reaches deep paths.
fn any_json() -> impl Strategy<Value = Value> {
    const KEYS: &[&str] = &[
        "metadata",
        "name",
        "namespace",
        "generateName",
        "labels",
        "annotations",
        "finalizers",
        "ownerReferences",
        "spec",
        "template",
        "selector",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
        "containers",
        "initContainers",
        "ports",
        "containerPort",
        "hostPort",
        "protocol",
        "env",
        "valueFrom",
        "fieldRef",
        "fieldPath",
        "resourceFieldRef",
        "divisor",
        "resource",
        "envFrom",
        "configMapRef",
        "resources",
        "limits",
        "requests",
        "cpu",
        "memory",
        "volumes",
        "volumeMounts",
        "volumeDevices",
        "mountPath",
        "subPath",
        "emptyDir",
        "sizeLimit",
        "configMap",
        "secret",
        "items",
        "path",
        "projected",
        "sources",
        "downwardAPI",
        "hostPath",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "httpGet",
        "tcpSocket",
        "exec",
        "grpc",
        "lifecycle",
        "preStop",
        "sleep",
        "seconds",
        "port",
        "targetPort",
        "nodePort",
        "type",
        "strategy",
        "rollingUpdate",
        "maxSurge",
        "maxUnavailable",
        "updateStrategy",
        "replicas",
        "tolerations",
        "effect",
        "value",
        "data",
        "binaryData",
        "stringData",
        "immutable",
        "taints",
        "podCIDRs",
        "securityContext",
        "sysctls",
        "dnsConfig",
        "dnsPolicy",
        "restartPolicy",
        "clusterIP",
        "externalName",
        "sessionAffinity",
        "addressType",
        "endpoints",
        "addresses",
        "subsets",
        "apiVersion",
        "involvedObject",
        "eventTime",
        "series",
        "capacity",
        "status",
        "activeDeadlineSeconds",
        "terminationGracePeriodSeconds",
        "seccompProfile",
        "os",
        "hostAliases",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-3i64..70000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        prop::sample::select(
            &[
                "",
                "x",
                "None",
                "Always",
                "RollingUpdate",
                "TCP",
                "1Gi",
                "-1",
                "1.5e3",
                "..",
                "a/b/c",
                "10.0.0.1",
                "fe80::1",
                "OnDelete",
                "Exists",
                "In",
                "ExternalName",
                "events.k8s.io/v1",
                "v1",
                "25%",
                "Bad_Name",
            ][..]
        )
        .prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS).prop_map(String::from), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const KINDS: &[&str] = &[
    "Pod",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
    "DaemonSet",
    "ControllerRevision",
    "Service",
    "ConfigMap",
    "Secret",
    "Namespace",
    "ServiceAccount",
    "Node",
    "Endpoints",
    "EndpointSlice",
    "Lease",
    "Event",
    "Unknown",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn validation_never_panics(obj in any_json(), other in any_json()) {
        for kind in KINDS {
            let _ = validate_create(kind, &obj);
            let _ = validate_update(kind, &obj, &other);
            let _ = validate_update(kind, &other, &obj);
        }
    }

    #[test]
    fn validation_never_panics_on_mutated_objects(edits in prop::collection::vec((0usize..40, any_json()), 1..4)) {
        const POINTERS: &[&str] = &[
            "/metadata", "/metadata/name", "/metadata/labels", "/spec", "/spec/containers", "/spec/containers/0",
            "/spec/containers/0/ports", "/spec/containers/0/resources", "/spec/containers/0/env",
            "/spec/containers/0/livenessProbe", "/spec/volumes", "/spec/selector", "/spec/template",
            "/spec/template/spec", "/spec/template/metadata", "/spec/strategy", "/spec/updateStrategy",
            "/spec/ports", "/spec/ports/0", "/spec/ports/0/targetPort", "/data", "/stringData", "/type",
            "/spec/tolerations", "/spec/securityContext", "/spec/dnsConfig", "/spec/taints", "/endpoints",
            "/addressType", "/involvedObject", "/eventTime", "/spec/template/spec/containers",
            "/spec/template/spec/containers/0", "/spec/containers/0/volumeMounts", "/spec/initContainers",
            "/spec/containers/0/lifecycle", "/spec/containers/0/securityContext", "/binaryData", "/immutable",
            "/spec/template/metadata/labels",
        ];
        for kind in ["Pod", "Deployment", "StatefulSet", "DaemonSet", "Service", "ConfigMap", "Secret", "Node", "EndpointSlice", "Event"] {
            let old = defaulted(kind, base(kind));
            let mut new = old.clone();
            for (i, v) in &edits {
                set(&mut new, POINTERS[i % POINTERS.len()], Some(v.clone()));
            }
            let _ = validate_create(kind, &new);
            let _ = validate_update(kind, &old, &new);
        }
    }
}
