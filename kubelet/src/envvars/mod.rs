//! A container's environment as the kubelet computes it: upstream's `makeEnvironmentVariables`
//! (pkg/kubelet/kubelet_pods.go), the downward API's field and resource lookups
//! (`podFieldSelectorRuntimeValue`, pkg/api/v1/resource `ExtractContainerResourceValue`) and the
//! `$(VAR)` expansion of env values, command and args (third_party/forked/golang/expansion).
//!
//! The objects a pod refers to (ConfigMaps, Secrets, Services, the node's allocatable) are fetched
//! first into [`Sources`] ([`sources`], through the API); everything after that is pure, so the
//! rules are tested without a cluster. Service environment variables (`FOO_SERVICE_HOST`, the Docker link
//! style `FOO_PORT_80_TCP…`, upstream's pkg/kubelet/envvars) come from the `kubernetes` Service and,
//! unless `enableServiceLinks: false`, the Services of the pod's namespace.

pub mod services;
pub mod sources;

use std::collections::BTreeMap;

use serde_json::Value;

pub use self::{
    services::service_env,
    sources::{Fetched, ObjectData, References, Sources, references},
};
use crate::runtime::parse_quantity;

/// Environment variables, in order.
pub type EnvList = Vec<(String, String)>;

/// Whether `name` is a valid environment variable name (upstream `IsEnvVarName`:
/// `[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    let ok = |c: char, first: bool| {
        c == '-' || c == '.' || c == '_' || c.is_ascii_alphabetic() || (!first && c.is_ascii_digit())
    };
    chars.next().is_some_and(|c| ok(c, true)) && chars.all(|c| ok(c, false))
}

/// Expands `$(VAR)` references in `input` with `lookup`, as upstream's expansion package: `$$` is a
/// literal `$`, a reference to an unknown variable and an unterminated `$(` stay as written, a `$`
/// before anything else stays.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(end) => {
                        let name = &rest[1..end];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        end + 1
                    }
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // The operator and the character after it, as written (a whole UTF-8 char).
                    let c = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// Formats labels or annotations as the downward API does: sorted `key="value"` lines.
fn format_map(m: &Value) -> String {
    let sorted: BTreeMap<&String, &Value> = m.as_object().into_iter().flatten().collect();
    sorted
        .into_iter()
        .map(|(k, v)| format!("{k}={}", go_quote(v.as_str().unwrap_or_default())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `%q` of a string (for the common characters).
fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a downward API `fieldPath` of `pod` (upstream `podFieldSelectorRuntimeValue` and
/// `ExtractFieldPathAsString`); whole `metadata.labels`/`annotations` only where `whole_maps` (volumes).
pub fn field_value(pod: &Value, path: &str, sources: &Sources, whole_maps: bool) -> Result<String, String> {
    let meta = &pod["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let subscript = |path: &str, prefix: &str| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")?;
        Some(key.to_owned())
    };
    Ok(match path {
        "metadata.name" => text(&meta["name"]),
        "metadata.namespace" => text(&meta["namespace"]),
        "metadata.uid" => text(&meta["uid"]),
        "spec.nodeName" => text(&pod["spec"]["nodeName"]),
        "spec.serviceAccountName" => text(&pod["spec"]["serviceAccountName"]),
        "status.hostIP" | "status.hostIPs" => sources.host_ip.clone(),
        "status.podIP" | "status.podIPs" => sources.pod_ip.clone(),
        "metadata.labels" if whole_maps => format_map(&meta["labels"]),
        "metadata.annotations" if whole_maps => format_map(&meta["annotations"]),
        p => {
            if let Some(k) = subscript(p, "metadata.labels") {
                text(&meta["labels"][k])
            } else if let Some(k) = subscript(p, "metadata.annotations") {
                text(&meta["annotations"][k])
            } else {
                return Err(format!("unsupported fieldPath: {p}"));
            }
        }
    })
}

/// The value of a `resourceFieldRef` for `container` of `pod` (upstream
/// `ExtractContainerResourceValue` over the container's limits merged with the node's allocatable):
/// `limits.*` and `requests.*` of cpu, memory and ephemeral-storage, divided by `divisor` (rounded up).
pub fn resource_value(container: &Value, reference: &Value, sources: &Sources) -> Result<String, String> {
    let resource = reference["resource"].as_str().unwrap_or_default();
    let divisor = match &reference["divisor"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "1".into(),
    };
    let divisor = parse_quantity(&divisor).filter(|d| *d > 0.0).unwrap_or(1.0);
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource : {resource}"))?;
    let quantity = |v: &Value| match v {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    let value = match kind {
        "limits" => quantity(&container["resources"]["limits"][name])
            .or_else(|| sources.allocatable.get(name).and_then(|q| parse_quantity(q))),
        "requests" => quantity(&container["resources"]["requests"][name]),
        _ => return Err(format!("unsupported container resource : {resource}")),
    }
    .unwrap_or(0.0);
    let n = match name {
        // Quantity.MilliValue() over the divisor's, rounded up.
        "cpu" => ((value * 1000.0).ceil() / (divisor * 1000.0).ceil()).ceil(),
        "memory" | "ephemeral-storage" => (value.ceil() / divisor.ceil()).ceil(),
        _ => return Err(format!("unsupported container resource : {resource}")),
    };
    Ok(format!("{}", n as i64))
}

/// The container named `name` of `pod` (init or app).
pub fn find_container<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    ["containers", "initContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
}

/// A ConfigMap or Secret `name` from `fetched`, or None when it is missing and `optional`; an error
/// (upstream's message) when it is missing and required.
fn object(fetched: Option<&Fetched>, optional: bool) -> Result<Option<&ObjectData>, String> {
    match fetched {
        Some(Fetched::Found(o)) => Ok(Some(o)),
        Some(Fetched::NotFound(_)) if optional => Ok(None),
        Some(Fetched::NotFound(e) | Fetched::Failed(e)) => Err(e.clone()),
        None => Err("the object was not fetched".into()),
    }
}

/// The environment of `container` of `pod`, in order (envFrom sources first, then env; a later
/// definition of a name replaces the earlier value in its place), or the error that keeps it from
/// starting (`CreateContainerConfigError`). Also returns, per envFrom source, upstream's note on the
/// keys skipped as invalid names.
pub fn make_environment(
    pod: &Value,
    container: &Value,
    sources: &Sources,
) -> Result<(EnvList, Vec<String>), String> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    if let Some(e) = &sources.service_error {
        return Err(e.clone());
    }
    let mut env: Vec<(String, String)> = Vec::new();
    let set =
        |env: &mut Vec<(String, String)>, k: String, v: String| match env.iter_mut().find(|(n, _)| *n == k) {
            Some(slot) => slot.1 = v,
            None => env.push((k, v)),
        };
    let mut invalid = Vec::new();
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or_default();
        let (r, fetched, kind) = if from["configMapRef"].is_object() {
            let r = &from["configMapRef"];
            (
                r,
                sources.config_maps.get(r["name"].as_str().unwrap_or_default()),
                "configMap",
            )
        } else if from["secretRef"].is_object() {
            let r = &from["secretRef"];
            (
                r,
                sources.secrets.get(r["name"].as_str().unwrap_or_default()),
                "secret",
            )
        } else {
            continue;
        };
        let Some(obj) = object(fetched, r["optional"].as_bool().unwrap_or(false))? else {
            continue;
        };
        let mut skipped = Vec::new();
        for (k, v) in &obj.data {
            let k = format!("{prefix}{k}");
            if !is_env_var_name(&k) {
                skipped.push(k);
                continue;
            }
            set(&mut env, k, String::from_utf8_lossy(v).into_owned());
        }
        if !skipped.is_empty() {
            skipped.sort();
            let name = r["name"].as_str().unwrap_or_default();
            invalid.push(format!(
                "Keys [{}] from the EnvFrom {kind} {ns}/{name} were skipped since they are considered invalid environment variable names.",
                skipped.join(", ")
            ));
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let Some(name) = e["name"].as_str() else {
            continue;
        };
        let from = &e["valueFrom"];
        let value = if !from.is_object() {
            let raw = e["value"].as_str().unwrap_or_default();
            expand(raw, |var| {
                env.iter()
                    .find(|(n, _)| n == var)
                    .map(|(_, v)| v.clone())
                    .or_else(|| sources.service_env.get(var).cloned())
            })
        } else if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
            field_value(pod, path, sources, false)?
        } else if from["resourceFieldRef"].is_object() {
            let r = &from["resourceFieldRef"];
            let target = match r["containerName"].as_str().filter(|n| !n.is_empty()) {
                Some(n) => find_container(pod, n).ok_or_else(|| format!("container {n} not found"))?,
                None => container,
            };
            resource_value(target, r, sources)?
        } else if from["configMapKeyRef"].is_object() || from["secretKeyRef"].is_object() {
            let (r, fetched, kind) = if from["configMapKeyRef"].is_object() {
                let r = &from["configMapKeyRef"];
                (
                    r,
                    sources.config_maps.get(r["name"].as_str().unwrap_or_default()),
                    "ConfigMap",
                )
            } else {
                let r = &from["secretKeyRef"];
                (
                    r,
                    sources.secrets.get(r["name"].as_str().unwrap_or_default()),
                    "Secret",
                )
            };
            let optional = r["optional"].as_bool().unwrap_or(false);
            let key = r["key"].as_str().unwrap_or_default();
            let Some(obj) = object(fetched, optional)? else {
                continue;
            };
            match obj.data.get(key) {
                Some(v) => String::from_utf8_lossy(v).into_owned(),
                None if optional => continue,
                None => {
                    let name = r["name"].as_str().unwrap_or_default();
                    return Err(format!("couldn't find key {key} in {kind} {ns}/{name}"));
                }
            }
        } else {
            continue;
        };
        set(&mut env, name.to_owned(), value);
    }
    // Service variables last, where the pod does not define the name itself.
    for (k, v) in &sources.service_env {
        if !env.iter().any(|(n, _)| n == k) {
            env.push((k.clone(), v.clone()));
        }
    }
    Ok((env, invalid))
}

/// `command` and `args` with `$(VAR)` references to `env` expanded (upstream
/// `ExpandContainerCommandAndArgs`).
pub fn expand_command(strings: &[String], env: &[(String, String)]) -> Vec<String> {
    let lookup = |var: &str| env.iter().rev().find(|(n, _)| n == var).map(|(_, v)| v.clone());
    strings.iter().map(|s| expand(s, lookup)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn lookup(var: &str) -> Option<String> {
        match var {
            "VAR_A" => Some("A".into()),
            "VAR_B" => Some("B".into()),
            "VAR_EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion_follows_upstream() {
        for (input, want) in [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_B)", "A-B"),
            ("$(VAR_EMPTY)", ""),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("foo$", "foo$"),
            ("$", "$"),
            ("$$", "$"),
            ("$()", "$()"),
            ("f$(VAR_A)ö$ü", "fAö$ü"),
            ("no refs", "no refs"),
        ] {
            assert_eq!(expand(input, lookup), want, "{input}");
        }
    }

    #[test]
    fn env_var_names() {
        assert!(is_env_var_name("A_B") && is_env_var_name("a.b-c") && is_env_var_name("_1"));
        assert!(!is_env_var_name("1A") && !is_env_var_name("") && !is_env_var_name("a b"));
    }

    fn pod() -> Value {
        json!({
            "metadata": { "name": "p", "namespace": "ns", "uid": "u-1",
                          "labels": { "app": "web", "tier": "front" }, "annotations": { "note": "a\"b" } },
            "spec": { "nodeName": "n1", "serviceAccountName": "sa", "containers": [{
                "name": "c",
                "resources": { "limits": { "memory": "64Mi" }, "requests": { "cpu": "250m" } },
                "envFrom": [{ "configMapRef": { "name": "cm" } },
                            { "prefix": "S_", "secretRef": { "name": "sec" } },
                            { "configMapRef": { "name": "absent", "optional": true } }],
                "env": [
                    { "name": "LITERAL", "value": "x-$(PLAIN)-$(LATER)-$$(PLAIN)" },
                    { "name": "LATER", "value": "late" },
                    { "name": "POD", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "NS", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                    { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                    { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                    { "name": "SA", "valueFrom": { "fieldRef": { "fieldPath": "spec.serviceAccountName" } } },
                    { "name": "IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "HOST", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIPs" } } },
                    { "name": "MEM", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                    { "name": "CPU_LIMIT", "valueFrom": { "resourceFieldRef": { "resource": "limits.cpu" } } },
                    { "name": "CPU_REQ", "valueFrom": { "resourceFieldRef": { "resource": "requests.cpu", "divisor": "1m" } } },
                    { "name": "KEY", "valueFrom": { "configMapKeyRef": { "name": "cm", "key": "color" } } },
                    { "name": "PASS", "valueFrom": { "secretKeyRef": { "name": "sec", "key": "password" } } },
                    { "name": "OPT", "valueFrom": { "secretKeyRef": { "name": "sec", "key": "nope", "optional": true } } },
                    { "name": "PLAIN", "value": "replaced" }
                ]
            }] }
        })
    }

    fn sources() -> Sources {
        let data = |pairs: &[(&str, &str)]| ObjectData {
            data: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect(),
            binary_data: BTreeMap::new(),
        };
        Sources {
            config_maps: [
                (
                    "cm".to_owned(),
                    Fetched::Found(data(&[("color", "blue"), ("PLAIN", "p"), ("bad key", "x")])),
                ),
                (
                    "absent".to_owned(),
                    Fetched::NotFound("configmap \"absent\" not found".into()),
                ),
            ]
            .into(),
            secrets: [("sec".to_owned(), Fetched::Found(data(&[("password", "s3cret")])))].into(),
            allocatable: [("cpu".to_owned(), "2".to_owned())].into(),
            pod_ip: "10.244.1.5".into(),
            host_ip: "192.168.1.2".into(),
            service_env: BTreeMap::new(),
            service_error: None,
        }
    }

    #[test]
    fn the_environment_comes_from_every_source() {
        let pod = pod();
        let (env, invalid) = make_environment(&pod, &pod["spec"]["containers"][0], &sources()).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(
            invalid,
            vec!["Keys [bad key] from the EnvFrom configMap ns/cm were skipped since they are considered invalid environment variable names.".to_owned()]
        );
        // PLAIN came from the ConfigMap and keeps its place when env redefines it.
        assert_eq!(env[0], ("PLAIN".to_owned(), "replaced".to_owned()));
        assert_eq!(get("color"), Some("blue"));
        assert_eq!(get("S_password"), Some("s3cret"));
        assert_eq!(
            get("LITERAL"),
            Some("x-p-$(LATER)-$(PLAIN)"),
            "only names defined before expand"
        );
        assert_eq!(
            [
                get("POD"),
                get("NS"),
                get("APP"),
                get("NODE"),
                get("SA"),
                get("IP"),
                get("HOST")
            ],
            [
                Some("p"),
                Some("ns"),
                Some("web"),
                Some("n1"),
                Some("sa"),
                Some("10.244.1.5"),
                Some("192.168.1.2")
            ]
        );
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(get("CPU_LIMIT"), Some("2"), "no limit: the node's allocatable");
        assert_eq!(get("CPU_REQ"), Some("250"));
        assert_eq!(
            (get("KEY"), get("PASS"), get("OPT")),
            (Some("blue"), Some("s3cret"), None)
        );
    }

    #[test]
    fn missing_required_sources_fail_with_upstreams_messages() {
        let mut pod = pod();
        let c = |pod: &Value| pod["spec"]["containers"][0].clone();
        pod["spec"]["containers"][0]["env"] =
            json!([{ "name": "K", "valueFrom": { "configMapKeyRef": { "name": "cm", "key": "nope" } } }]);
        assert_eq!(
            make_environment(&pod, &c(&pod), &sources()).unwrap_err(),
            "couldn't find key nope in ConfigMap ns/cm"
        );
        pod["spec"]["containers"][0]["env"] =
            json!([{ "name": "K", "valueFrom": { "secretKeyRef": { "name": "sec", "key": "nope" } } }]);
        assert_eq!(
            make_environment(&pod, &c(&pod), &sources()).unwrap_err(),
            "couldn't find key nope in Secret ns/sec"
        );
        pod["spec"]["containers"][0]["envFrom"] = json!([{ "configMapRef": { "name": "absent" } }]);
        assert_eq!(
            make_environment(&pod, &c(&pod), &sources()).unwrap_err(),
            "configmap \"absent\" not found"
        );
    }

    #[test]
    fn commands_expand_with_the_environment() {
        let env = vec![
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "two".to_owned()),
        ];
        assert_eq!(
            expand_command(&["echo $(A) $$(B) $(C) $B".into()], &env),
            vec!["echo 1 $(B) $(C) $B".to_owned()]
        );
    }

    #[test]
    fn services_become_variables_as_upstream() {
        let svc = json!({ "metadata": { "name": "redis-primary" }, "spec": { "clusterIP": "10.96.0.11",
            "ports": [{ "port": 6379 }, { "name": "metrics", "port": 9121, "protocol": "TCP" }] } });
        let headless = json!({ "metadata": { "name": "h" }, "spec": { "clusterIP": "None", "ports": [{ "port": 80 }] } });
        let env = service_env(&[svc, headless]);
        let want = [
            ("REDIS_PRIMARY_SERVICE_HOST", "10.96.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_METRICS", "9121"),
            ("REDIS_PRIMARY_PORT", "tcp://10.96.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.96.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.96.0.11"),
            ("REDIS_PRIMARY_PORT_9121_TCP", "tcp://10.96.0.11:9121"),
            ("REDIS_PRIMARY_PORT_9121_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_9121_TCP_PORT", "9121"),
            ("REDIS_PRIMARY_PORT_9121_TCP_ADDR", "10.96.0.11"),
        ];
        assert_eq!(env.len(), want.len(), "{env:?}");
        for (k, v) in want {
            assert_eq!(env.get(k).map(String::as_str), Some(v), "{k}");
        }
        // The pod's own definitions win; values may refer to service variables.
        let mut s = sources();
        s.service_env = env;
        let pod = json!({ "metadata": { "namespace": "ns" }, "spec": { "containers": [{ "name": "c", "env": [
            { "name": "REDIS_PRIMARY_SERVICE_PORT", "value": "1" },
            { "name": "URL", "value": "redis://$(REDIS_PRIMARY_SERVICE_HOST)" }] }] } });
        let (out, _) = make_environment(&pod, &pod["spec"]["containers"][0], &s).unwrap();
        let get = |k: &str| out.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("REDIS_PRIMARY_SERVICE_PORT"), Some("1"));
        assert_eq!(get("URL"), Some("redis://10.96.0.11"));
        assert_eq!(get("REDIS_PRIMARY_PORT"), Some("tcp://10.96.0.11:6379"));
    }

    #[test]
    fn whole_label_maps_are_for_volumes() {
        let pod = pod();
        let s = sources();
        assert_eq!(
            field_value(&pod, "metadata.labels", &s, true).unwrap(),
            "app=\"web\"\ntier=\"front\""
        );
        assert_eq!(
            field_value(&pod, "metadata.annotations", &s, true).unwrap(),
            "note=\"a\\\"b\""
        );
        assert!(field_value(&pod, "metadata.labels", &s, false).is_err());
        assert_eq!(field_value(&pod, "metadata.uid", &s, false).unwrap(), "u-1");
        assert_eq!(
            field_value(&pod, "metadata.labels['none']", &s, false).unwrap(),
            ""
        );
    }
}
