//! Protobuf request bodies decode to the JSON the same object has in Go: the bodies kubectl 1.32 really
//! sends (captured in `fixtures/protobuf/*.pb`, with `kubectl … --dry-run=client -o json` of the same
//! command beside each as `*.json`), and objects encoded here the way Go's marshaller writes them.

mod common;

use std::path::Path;

use axum::{
    body::Body,
    http::{Method, Request},
};
use tower::ServiceExt;

use base64::Engine as _;
use serde_json::{Value as Json, json};
use skiff_apiserver::server::protobuf::{
    DecodeError, decode_object, is_protobuf,
    schema::{Message, Schema, Shape, Type, schema},
};

/// A JSON → protobuf encoder over the same schema table, written independently of the decoder, that
/// writes the wire the way Go's generated marshaller does: every non-pointer scalar, zero or not.
struct Encoder {
    schema: &'static Schema,
}

fn put_varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_key(tag: u32, wire_type: u8, out: &mut Vec<u8>) {
    put_varint(u64::from(tag) << 3 | u64::from(wire_type), out);
}

fn put_bytes(tag: u32, bytes: &[u8], out: &mut Vec<u8>) {
    put_key(tag, 2, out);
    put_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

impl Encoder {
    fn new() -> Self {
        Self {
            schema: schema().unwrap(),
        }
    }

    fn message_named(&self, name: &str) -> &'static Message {
        self.schema
            .message(name)
            .unwrap_or_else(|| panic!("no message {name}"))
    }

    /// `k8s\0` + `runtime.Unknown{typeMeta, raw}` for a JSON object with apiVersion and kind.
    fn body(&self, object: &Json) -> Vec<u8> {
        let (api_version, kind) = (
            object["apiVersion"].as_str().unwrap(),
            object["kind"].as_str().unwrap(),
        );
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("core", api_version));
        let group = group.strip_suffix(".k8s.io").unwrap_or(group);
        let name = if kind == "DeleteOptions" {
            format!("meta.v1.{kind}")
        } else {
            format!("{group}.{version}.{kind}")
        };
        let mut fields = object.as_object().unwrap().clone();
        fields.remove("apiVersion");
        fields.remove("kind");
        let raw = self.message(self.message_named(&name), &Json::Object(fields));
        let type_meta = self.message(
            self.message_named("runtime.TypeMeta"),
            &json!({"apiVersion": api_version, "kind": kind}),
        );
        let unknown = self.message_named("runtime.Unknown");
        let mut out = b"k8s\0".to_vec();
        let tag = |name: &str| unknown.field_named(name).unwrap().tag;
        put_bytes(tag("typeMeta"), &type_meta, &mut out);
        put_bytes(tag("raw"), &raw, &mut out);
        put_bytes(tag("contentEncoding"), b"", &mut out);
        put_bytes(tag("contentType"), b"", &mut out);
        out
    }

    /// The wire form of a JSON object as `desc`, fields in field-number order as Go writes them.
    fn message(&self, desc: &Message, json: &Json) -> Vec<u8> {
        let mut out = Vec::new();
        let mut object = json.as_object().cloned().unwrap_or_default();
        for field in &desc.fields {
            if field.inline {
                // The inline message takes the keys that are its own fields.
                let Type::Message(name) = field.ty else {
                    panic!("inline scalar")
                };
                let inner = self.message_named(name);
                let mut sub = serde_json::Map::new();
                for f in &inner.fields {
                    if let Some(v) = object.remove(f.name) {
                        sub.insert(f.name.to_owned(), v);
                    }
                }
                put_bytes(field.tag, &self.message(inner, &Json::Object(sub)), &mut out);
                continue;
            }
            match (object.remove(field.name), field.shape) {
                (Some(v), Shape::Single) => self.single(field.tag, field.ty, &v, &mut out),
                (Some(v), Shape::Repeated) => {
                    for item in v.as_array().unwrap() {
                        self.single(field.tag, field.ty, item, &mut out);
                    }
                }
                (Some(v), Shape::Map) => {
                    for (key, value) in v.as_object().unwrap() {
                        let mut entry = Vec::new();
                        put_bytes(1, key.as_bytes(), &mut entry);
                        self.single(2, field.ty, value, &mut entry);
                        put_bytes(field.tag, &entry, &mut out);
                    }
                }
                // Go writes a non-pointer scalar whatever its value; pointers only when set.
                (None, Shape::Single) if !matches!(field.ty, Type::Message(_)) && !field.keep_zero => {
                    let zero = match field.ty {
                        Type::String | Type::Bytes => json!(""),
                        Type::Bool => json!(false),
                        _ => json!(0),
                    };
                    self.single(field.tag, field.ty, &zero, &mut out);
                }
                (None, _) => {}
            }
        }
        assert!(
            object.is_empty(),
            "{} has no fields {:?}",
            desc.name,
            object.keys()
        );
        out
    }

    fn single(&self, tag: u32, ty: Type, json: &Json, out: &mut Vec<u8>) {
        match ty {
            Type::String => put_bytes(tag, json.as_str().unwrap().as_bytes(), out),
            Type::Int32 | Type::Int64 => {
                put_key(tag, 0, out);
                put_varint(json.as_i64().unwrap() as u64, out);
            }
            Type::Bool => {
                put_key(tag, 0, out);
                put_varint(u64::from(json.as_bool().unwrap()), out);
            }
            Type::Double => {
                put_key(tag, 1, out);
                out.extend(json.as_f64().unwrap().to_bits().to_le_bytes());
            }
            Type::Bytes => put_bytes(
                tag,
                &base64::engine::general_purpose::STANDARD
                    .decode(json.as_str().unwrap())
                    .unwrap(),
                out,
            ),
            Type::Message(name) => put_bytes(tag, &self.special(self.message_named(name), json), out),
        }
    }

    fn special(&self, desc: &Message, json: &Json) -> Vec<u8> {
        let mut fields = serde_json::Map::new();
        match desc.name {
            "meta.v1.Time" | "meta.v1.MicroTime" => {
                // The zero time (null) is an empty message (Go's `Time.Marshal` writes nothing).
                let Some(text) = json.as_str() else {
                    return Vec::new();
                };
                let t = chrono::DateTime::parse_from_rfc3339(text).unwrap();
                fields.insert("seconds".into(), json!(t.timestamp()));
                fields.insert("nanos".into(), json!(t.timestamp_subsec_nanos()));
            }
            "api.resource.Quantity" => {
                fields.insert("string".into(), json.clone());
            }
            "util.intstr.IntOrString" => match json {
                Json::String(s) => {
                    fields.insert("type".into(), json!(1));
                    fields.insert("strVal".into(), json!(s));
                }
                n => {
                    fields.insert("intVal".into(), n.clone());
                }
            },
            "runtime.RawExtension" | "meta.v1.FieldsV1" => {
                let raw = base64::engine::general_purpose::STANDARD.encode(json.to_string());
                fields.insert("raw".into(), json!(raw));
            }
            _ => return self.message(desc, json),
        }
        self.message(desc, &Json::Object(fields))
    }
}

/// Encodes `object` as Go would and checks it decodes back to exactly `object`, and that the result
/// is also what the k8s-openapi type of the kind makes of it (no field the JSON form does not have).
fn round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(object: Json) {
    let encoder = Encoder::new();
    let body = encoder.body(&object);
    let decoded = decode_object(&body).unwrap();
    assert_eq!(decoded, object, "\n{decoded:#}\n!=\n{object:#}");
    assert_eq!(strip_nulls(typed_round_trip::<K>(&decoded)), strip_nulls(object));
}

fn typed_round_trip<K: serde::de::DeserializeOwned + serde::Serialize>(v: &Json) -> Json {
    serde_json::to_value(serde_json::from_value::<K>(v.clone()).unwrap()).unwrap()
}

/// Without `null`s (k8s-openapi leaves `creationTimestamp: null` out), and without the `{}` Go writes
/// for empty non-pointer structs that k8s-openapi leaves out only when they are empty.
fn strip_nulls(v: Json) -> Json {
    match v {
        Json::Object(map) => Json::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

fn fixture(name: &str) -> (Vec<u8>, Json) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protobuf");
    let pb = std::fs::read(dir.join(format!("{name}.pb"))).unwrap();
    let json = serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    (pb, json)
}

#[test]
fn kubectl_create_bodies_decode_to_what_kubectl_prints_as_json() {
    for name in [
        "create-configmap",
        "create-deployment",
        "create-deployment-zero-replicas",
        "create-secret-generic",
        "create-namespace",
        "create-serviceaccount",
        "create-job",
        "create-service",
        "create-quota",
        "create-pdb",
    ] {
        let (pb, json) = fixture(name);
        assert!(pb.starts_with(b"k8s\0"), "{name}");
        let decoded = decode_object(&pb).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(decoded, json, "{name}:\n{decoded:#}");
    }
}

#[test]
fn kubectl_bodies_spot_checks() {
    let deployment = decode_object(&fixture("create-deployment").0).unwrap();
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert!(deployment["metadata"].get("generateName").is_none());
    let zero = decode_object(&fixture("create-deployment-zero-replicas").0).unwrap();
    assert_eq!(zero["spec"]["replicas"], 0, "a pointer's zero is kept");
    let secret = decode_object(&fixture("create-secret-generic").0).unwrap();
    // The file's bytes were 00 01 fe ff "hello": not UTF-8, carried as base64 as in JSON.
    assert_eq!(secret["data"]["blob"], "AAH+/2hlbGxv");
    assert_eq!(secret["data"]["user"], "YWRtaW4=");
    let service = decode_object(&fixture("create-service").0).unwrap();
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
    assert_eq!(service["spec"]["ports"][1]["targetPort"], "https");
    let quota = decode_object(&fixture("create-quota").0).unwrap();
    assert_eq!(
        quota["spec"]["hard"],
        json!({"cpu": "1500m", "memory": "1Gi", "pods": "10"})
    );
}

#[test]
fn deployment_with_a_full_pod_template() {
    round_trip::<k8s_openapi::api::apps::v1::Deployment>(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "web",
            "namespace": "prod",
            "labels": {"app": "web", "tier": ""},
            "annotations": {"deployment.kubernetes.io/revision": "3"},
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "generation": 4,
        },
        "spec": {
            "replicas": 3,
            "selector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}],
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            "revisionHistoryLimit": 0,
            "progressDeadlineSeconds": 600,
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "automountServiceAccountToken": false,
                    "securityContext": {"runAsUser": 0, "runAsNonRoot": false, "fsGroup": 2000},
                    "volumes": [
                        {"name": "config", "configMap": {"name": "web-config", "defaultMode": 420}},
                        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    ],
                    "containers": [{
                        "name": "web",
                        "image": "nginx:1.27",
                        "args": ["--port", "8080"],
                        "ports": [
                            {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                            {"containerPort": 9090},
                        ],
                        "env": [
                            {"name": "MODE", "value": "prod"},
                            {"name": "EMPTY"},
                            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw", "optional": false}}},
                            {"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                        ],
                        "resources": {
                            "limits": {"cpu": "500m", "memory": "256Mi"},
                            "requests": {"cpu": "250m", "memory": "128974848", "ephemeral-storage": "1Gi"},
                        },
                        "volumeMounts": [{"name": "config", "mountPath": "/etc/web", "readOnly": true}],
                        "livenessProbe": {
                            "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                            "initialDelaySeconds": 5,
                            "periodSeconds": 10,
                        },
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "failureThreshold": 3},
                        "startupProbe": {"exec": {"command": ["true"]}},
                        "imagePullPolicy": "IfNotPresent",
                    }],
                    "restartPolicy": "Always",
                    "dnsPolicy": "ClusterFirst",
                    "nodeSelector": {"disk": "ssd"},
                    "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 0}],
                },
            },
        },
        "status": {"replicas": 3, "conditions": [{
            "type": "Available",
            "status": "True",
            "lastUpdateTime": "2026-01-02T03:04:05Z",
            "lastTransitionTime": "2026-01-02T03:04:06Z",
            "reason": "MinimumReplicasAvailable",
        }]},
    }));
}

#[test]
fn secret_with_binary_data() {
    round_trip::<k8s_openapi::api::core::v1::Secret>(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "default", "creationTimestamp": null},
        "type": "kubernetes.io/tls",
        "immutable": false,
        "data": {
            "tls.key": base64::engine::general_purpose::STANDARD.encode([0u8, 159, 146, 150, 255, 10]),
            "empty": "",
        },
    }));
}

#[test]
fn configmap_with_data_and_binary_data() {
    round_trip::<k8s_openapi::api::core::v1::ConfigMap>(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "creationTimestamp": null},
        "data": {"a": "b", "empty": "", "multi": "line 1\nline 2\n"},
        "binaryData": {"blob": "AAEC"},
    }));
}

#[test]
fn namespace() {
    round_trip::<k8s_openapi::api::core::v1::Namespace>(json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "team-a", "creationTimestamp": null, "labels": {"team": "a"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }));
}

#[test]
fn eviction_with_delete_options() {
    round_trip::<k8s_openapi::api::policy::v1::Eviction>(json!({
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "p1", "namespace": "default", "creationTimestamp": null},
        "deleteOptions": {
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": "6b1d7a5e-0000-4000-8000-000000000001"},
            "propagationPolicy": "Background",
            "dryRun": ["All"],
        },
    }));
}

#[test]
fn delete_options_under_any_group_version() {
    let encoder = Encoder::new();
    for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        let object = json!({
            "apiVersion": api_version,
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 30,
            "orphanDependents": false,
        });
        assert_eq!(decode_object(&encoder.body(&object)).unwrap(), object);
    }
}

#[test]
fn a_kind_without_schema_is_its_own_error() {
    let encoder = Encoder::new();
    let mut body = encoder.body(&json!({"apiVersion": "v1", "kind": "ConfigMap"}));
    // Rewrite the kind in the envelope's typeMeta: "ConfigMap" -> "ConfigMaq".
    let at = body.windows(9).position(|w| w == b"ConfigMap").unwrap();
    body[at + 8] = b'q';
    assert_eq!(
        decode_object(&body).unwrap_err(),
        DecodeError::NoSchema {
            api_version: "v1".into(),
            kind: "ConfigMaq".into()
        }
    );
}

#[test]
fn pod_with_timestamps_managed_fields_and_status() {
    round_trip::<k8s_openapi::api::core::v1::Pod>(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "p",
            "namespace": "default",
            "uid": "6b1d7a5e-0000-4000-8000-000000000002",
            "resourceVersion": "42",
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "deletionTimestamp": "2026-01-02T03:05:00Z",
            "deletionGracePeriodSeconds": 0,
            "finalizers": ["example.com/keep"],
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-1",
                "uid": "6b1d7a5e-0000-4000-8000-000000000003",
                "controller": true,
                "blockOwnerDeletion": true,
            }],
            "managedFields": [{
                "manager": "kubectl",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2026-01-02T03:04:05Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
            }],
        },
        "spec": {
            "containers": [{"name": "c", "image": "busybox", "resources": {}}],
            "nodeName": "n1",
            "priority": 0,
        },
        "status": {
            "phase": "Running",
            "startTime": "2026-01-02T03:04:05Z",
            "podIP": "10.0.0.5",
            "podIPs": [{"ip": "10.0.0.5"}],
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null,
                            "lastTransitionTime": "2026-01-02T03:04:07Z"}],
            "containerStatuses": [{
                "name": "c",
                "ready": true,
                "restartCount": 0,
                "image": "busybox",
                "imageID": "",
                "started": true,
                "state": {"running": {"startedAt": "2026-01-02T03:04:06Z"}},
                "lastState": {},
            }],
        },
    }));
}

#[test]
fn other_served_kinds() {
    use k8s_openapi::api::{apps, autoscaling, coordination, core, discovery, events};
    round_trip::<apps::v1::ControllerRevision>(json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {"name": "rev", "creationTimestamp": null},
        "data": {"spec": {"template": {"metadata": {"labels": {"a": "b"}}}}},
        "revision": 0,
    }));
    round_trip::<events::v1::Event>(json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default", "creationTimestamp": null},
        "eventTime": "2026-01-02T03:04:05.123456Z",
        "series": {"count": 2, "lastObservedTime": "2026-01-02T03:04:09.000001Z"},
        "reportingController": "skiff/scheduler",
        "reportingInstance": "skiff-1",
        "action": "Binding",
        "reason": "Scheduled",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"},
        "note": "ok",
        "type": "Normal",
        "deprecatedFirstTimestamp": null,
        "deprecatedLastTimestamp": null,
    }));
    round_trip::<coordination::v1::Lease>(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "n1", "namespace": "kube-node-lease", "creationTimestamp": null},
        "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": "2026-01-02T03:04:05.500000Z"},
    }));
    round_trip::<discovery::v1::EndpointSlice>(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "creationTimestamp": null},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": false, "serving": true}, "nodeName": "n1"}],
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
    }));
    round_trip::<autoscaling::v1::Scale>(json!({
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {"name": "web", "creationTimestamp": null, "resourceVersion": "7"},
        "spec": {"replicas": 5},
        "status": {"replicas": 3, "selector": "app=web"},
    }));
    round_trip::<core::v1::Binding>(json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": null},
        "target": {"kind": "Node", "name": "n1"},
    }));
    round_trip::<core::v1::Node>(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "creationTimestamp": null},
        "spec": {"unschedulable": true, "taints": [{"key": "k", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-02T03:04:05Z",
                            "lastTransitionTime": null}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                         "containerRuntimeVersion": "", "kubeletVersion": "v1.32.0", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64"},
        },
    }));
}

#[test]
fn scale_to_zero_is_left_out_as_go_json_leaves_it_out() {
    // Scale.spec.replicas is `int32 json:"replicas,omitempty"`: Go's JSON of a scale to 0 has no
    // replicas either, so the server must read a missing one as 0 whichever way the body came.
    let encoder = Encoder::new();
    let body = encoder.body(&json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": "web", "creationTimestamp": null}, "spec": {"replicas": 0}, "status": {"replicas": 0},
    }));
    let decoded = decode_object(&body).unwrap();
    assert_eq!(decoded["spec"], json!({}));
    assert_eq!(
        decoded["status"],
        json!({"replicas": 0}),
        "status.replicas has no omitempty"
    );
}

#[test]
fn media_type_matching() {
    assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
    assert!(is_protobuf("application/vnd.kubernetes.protobuf; charset=utf-8"));
    assert!(!is_protobuf(""));
    assert!(!is_protobuf("application/json"));
}

/// Sends `body` with `content_type`, returning the status code and the JSON answer.
async fn send(
    router: &axum::Router,
    method: Method,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Json) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = tokio::time::timeout(common::T, router.clone().oneshot(req))
        .await
        .expect("in time")
        .expect("infallible");
    let code = resp.status().as_u16();
    let bytes = tokio::time::timeout(common::T, axum::body::to_bytes(resp.into_body(), usize::MAX))
        .await
        .expect("in time")
        .expect("body");
    (code, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

/// What differs between two creates of the same object under different names.
fn without_identity(mut object: Json) -> Json {
    let meta = object["metadata"].as_object_mut().unwrap();
    for key in ["name", "uid", "resourceVersion", "creationTimestamp"] {
        meta.remove(key);
    }
    for entry in meta
        .get_mut("managedFields")
        .and_then(Json::as_array_mut)
        .into_iter()
        .flatten()
    {
        entry.as_object_mut().unwrap().remove("time");
    }
    object
}

#[tokio::test]
async fn kubectl_bodies_create_over_http_what_their_json_creates() {
    let (_api, router) = common::server().await;
    for (name, path) in [
        (
            "create-deployment-zero-replicas",
            "/apis/apps/v1/namespaces/default/deployments",
        ),
        (
            "create-deployment",
            "/apis/apps/v1/namespaces/default/deployments",
        ),
        ("create-configmap", "/api/v1/namespaces/default/configmaps"),
        ("create-secret-generic", "/api/v1/namespaces/default/secrets"),
        ("create-namespace", "/api/v1/namespaces"),
        (
            "create-serviceaccount",
            "/api/v1/namespaces/default/serviceaccounts",
        ),
        ("create-service", "/api/v1/namespaces/default/services"),
    ] {
        let (pb, mut json) = fixture(name);
        let (code, from_pb) = send(
            &router,
            Method::POST,
            path,
            "application/vnd.kubernetes.protobuf",
            pb,
        )
        .await;
        assert_eq!(code, 201, "{name}: {from_pb}");
        let json_name = format!("{}-json", json["metadata"]["name"].as_str().unwrap());
        json["metadata"]["name"] = json!(json_name);
        let (code, from_json) = common::call(&router, Method::POST, path, Some(json)).await;
        assert_eq!(code, 201, "{name}: {from_json}");
        if name == "create-service" {
            // Each create allocates its own cluster IP.
            continue;
        }
        assert_eq!(without_identity(from_pb), without_identity(from_json), "{name}");
    }
    let (_, stored) = common::call(
        &router,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/web0",
        None,
    )
    .await;
    assert_eq!(
        stored["spec"]["replicas"], 0,
        "a pointer's zero is kept, not defaulted to 1"
    );
}

#[tokio::test]
async fn protobuf_bodies_that_cannot_be_read_are_400_or_415() {
    let (_api, router) = common::server().await;
    let pb = "application/vnd.kubernetes.protobuf";
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, status) = send(&router, Method::POST, path, pb, b"k8s\0\x12\x05ab".to_vec()).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (400, Some("BadRequest")),
        "{status}"
    );
    let (code, status) = send(&router, Method::POST, path, pb, b"{}".to_vec()).await;
    assert_eq!(code, 400, "{status}");
    // A kind the schema table does not have: upstream's answer to a custom resource in protobuf.
    let encoder = Encoder::new();
    let mut body = encoder.body(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}));
    let at = body.windows(9).position(|w| w == b"ConfigMap").unwrap();
    body[at + 8] = b'q';
    let (code, status) = send(&router, Method::POST, path, pb, body).await;
    assert_eq!(
        (code, status["reason"].as_str()),
        (415, Some("UnsupportedMediaType")),
        "{status}"
    );
    assert_eq!(
        status["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
    );
    let (_, list) = common::call(&router, Method::GET, path, None).await;
    assert_eq!(list["items"], json!([]), "nothing stored");
}

#[tokio::test]
async fn protobuf_update_and_delete_options() {
    let (_api, router) = common::server().await;
    let encoder = Encoder::new();
    let pb = "application/vnd.kubernetes.protobuf";
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, created) = common::call(&router, Method::POST, path, Some(common::cm("c"))).await;
    assert_eq!(code, 201, "{created}");
    let update = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "resourceVersion": created["metadata"]["resourceVersion"]},
        "data": {"k": "changed"},
    });
    let (code, updated) = send(
        &router,
        Method::PUT,
        &format!("{path}/c"),
        pb,
        encoder.body(&update),
    )
    .await;
    assert_eq!(
        (code, &updated["data"]),
        (200, &json!({"k": "changed"})),
        "{updated}"
    );
    // A precondition that does not hold refuses the delete: the DeleteOptions body was read.
    let options =
        json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": "not-this-one"}});
    let (code, status) = send(
        &router,
        Method::DELETE,
        &format!("{path}/c"),
        pb,
        encoder.body(&options),
    )
    .await;
    assert_eq!(code, 409, "{status}");
    let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
    let options = json!({"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": {"uid": uid}});
    let (code, status) = send(
        &router,
        Method::DELETE,
        &format!("{path}/c"),
        pb,
        encoder.body(&options),
    )
    .await;
    assert_eq!(code, 200, "{status}");
}
