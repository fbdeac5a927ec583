//! Containers (regular, init and sidecar), as upstream's `pkg/apis/core/validation/validation.go`
//! checks them: `validateContainers`, `validateInitContainers`, `validateContainerCommon`, ports,
//! `ValidateEnv`/`ValidateEnvFrom` and the downward API selectors, resource requirements, probes,
//! lifecycle handlers and `ValidateSecurityContext`.
//!
//! Fields upstream defaults (probe periods, `httpGet.path`/`scheme`, `fieldRef.apiVersion`, port
//! protocols, …) are read as their defaults when absent: skiff's defaulting fills fewer of them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::field::{
    self, Bad, Errs, Path, at, duplicate, forbidden, get, go_quote, has, int_of, invalid, list, map_of,
    not_supported, required, scalar_text, str_of, text,
};
use super::meta::{NEGATIVE_MSG, non_negative};
use super::names::{
    NameFn, config_map_key, dns1123_label, http_header_name, inclusive_range_error, port_name, port_num,
    qualified_name, relaxed_env_var_name,
};
use super::quantity::{self, Quantity};
use super::volume::{self, Volumes};

/// `validateContainers`: at least one, names unique, probes and lifecycle valid.
pub fn containers(cs: &[Value], vols: &Volumes, grace: i64, p: &Path, errs: &mut Errs) {
    if cs.is_empty() {
        errs.push(required(p, ""));
        return;
    }
    let mut names = BTreeSet::new();
    for (i, c) in cs.iter().enumerate() {
        let cp = p.index(i);
        container_common(c, vols, &cp, errs);
        let name = text(c, "name");
        if !names.insert(name.clone()) {
            errs.push(duplicate(&cp.child("name"), name.as_str()));
        }
        if let Some(lc) = get(c, "lifecycle") {
            lifecycle(lc, grace, &cp.child("lifecycle"), errs);
        }
        probes(c, grace, &cp, errs);
        if has(c, "restartPolicy") {
            errs.push(forbidden(
                &cp.child("restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    host_port_conflicts(cs, p, errs);
}

/// `validateInitContainers`: names unique across init and regular containers; probes only for
/// sidecars (`restartPolicy: Always`).
pub fn init_containers(spec: &Value, vols: &Volumes, grace: i64, p: &Path, errs: &mut Errs) {
    let mut names: BTreeSet<String> = list(spec, "containers").iter().map(|c| text(c, "name")).collect();
    for (i, c) in list(spec, "initContainers").iter().enumerate() {
        let cp = p.index(i);
        container_common(c, vols, &cp, errs);
        let mut sidecar = false;
        if let Some(rp) = get(c, "restartPolicy") {
            let rp = scalar_text(rp);
            if rp != "Always" {
                errs.push(not_supported(
                    &cp.child("restartPolicy"),
                    rp.as_str(),
                    &["Always"],
                ));
            }
            sidecar = rp == "Always";
        }
        let name = text(c, "name");
        if names.contains(&name) {
            errs.push(duplicate(&cp.child("name"), name.as_str()));
        } else if !name.is_empty() {
            names.insert(name);
        }
        // Upstream checks each init container alone, printing it as index 0.
        host_port_conflicts(std::slice::from_ref(c), p, errs);
        if sidecar {
            if let Some(lc) = get(c, "lifecycle") {
                lifecycle(lc, grace, &cp.child("lifecycle"), errs);
            }
            probes(c, grace, &cp, errs);
        } else {
            for field in ["lifecycle", "livenessProbe", "readinessProbe", "startupProbe"] {
                if has(c, field) {
                    errs.push(forbidden(
                        &cp.child(field),
                        "may not be set for init containers without restartPolicy=Always",
                    ));
                }
            }
        }
    }
}

/// `validateContainerCommon`.
fn container_common(c: &Value, vols: &Volumes, p: &Path, errs: &mut Errs) {
    let name = text(c, "name");
    if name.is_empty() {
        errs.push(required(&p.child("name"), ""));
    } else {
        for msg in dns1123_label(&name) {
            errs.push(invalid(&p.child("name"), name.as_str(), &msg));
        }
    }
    if text(c, "image").is_empty() {
        errs.push(required(&p.child("image"), ""));
    }
    let tmp = field::defaulted(c, "terminationMessagePolicy", "File");
    if !["File", "FallbackToLogsOnError"].contains(&tmp.as_str()) {
        errs.push(not_supported(
            &p.child("terminationMessagePolicy"),
            tmp.as_str(),
            &["File", "FallbackToLogsOnError"],
        ));
    }
    container_ports(list(c, "ports"), &p.child("ports"), errs);
    env(list(c, "env"), &p.child("env"), errs);
    env_from(list(c, "envFrom"), &p.child("envFrom"), errs);
    volume::volume_mounts(c, vols, &p.child("volumeMounts"), errs);
    volume::volume_devices(c, vols, &p.child("volumeDevices"), errs);
    if let Some(policy) = str_of(c, "imagePullPolicy").filter(|s| !s.is_empty())
        && !["Always", "IfNotPresent", "Never"].contains(&policy)
    {
        errs.push(not_supported(
            &p.child("imagePullPolicy"),
            policy,
            &["Always", "IfNotPresent", "Never"],
        ));
    }
    resources(at(c, "resources"), &p.child("resources"), errs);
    if let Some(sc) = get(c, "securityContext") {
        security_context(sc, &p.child("securityContext"), errs);
    }
}

/// `validateContainerPorts`.
fn container_ports(ports: &[Value], p: &Path, errs: &mut Errs) {
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let pp = p.index(i);
        let name = text(port, "name");
        if !name.is_empty() {
            let msgs = port_name(&name);
            if !msgs.is_empty() {
                errs.extend(msgs.iter().map(|m| invalid(&pp.child("name"), name.as_str(), m)));
            } else if !names.insert(name.clone()) {
                errs.push(duplicate(&pp.child("name"), name.as_str()));
            }
        }
        match int_of(port, "containerPort").unwrap_or(0) {
            0 => errs.push(required(&pp.child("containerPort"), "")),
            n => errs.extend(
                port_num(n)
                    .iter()
                    .map(|m| invalid(&pp.child("containerPort"), n, m)),
            ),
        }
        let host_port = int_of(port, "hostPort").unwrap_or(0);
        if host_port != 0 {
            errs.extend(
                port_num(host_port)
                    .iter()
                    .map(|m| invalid(&pp.child("hostPort"), host_port, m)),
            );
        }
        let protocol = field::defaulted(port, "protocol", "TCP");
        if !["SCTP", "TCP", "UDP"].contains(&protocol.as_str()) {
            errs.push(not_supported(
                &pp.child("protocol"),
                protocol.as_str(),
                &["SCTP", "TCP", "UDP"],
            ));
        }
    }
}

/// `AccumulateUniqueHostPorts`: a protocol/hostIP/hostPort is used once.
fn host_port_conflicts(cs: &[Value], p: &Path, errs: &mut Errs) {
    let mut seen = BTreeSet::new();
    for (ci, c) in cs.iter().enumerate() {
        for (pi, port) in list(c, "ports").iter().enumerate() {
            let host_port = int_of(port, "hostPort").unwrap_or(0);
            if host_port == 0 {
                continue;
            }
            let key = format!(
                "{}/{}/{host_port}",
                field::defaulted(port, "protocol", "TCP"),
                text(port, "hostIP")
            );
            if !seen.insert(key.clone()) {
                errs.push(duplicate(
                    &p.index(ci).child("ports").index(pi).child("hostPort"),
                    key,
                ));
            }
        }
    }
}

/// `ValidateEnv`: names (the relaxed rule, GA since 1.34) and `valueFrom`.
fn env(vars: &[Value], p: &Path, errs: &mut Errs) {
    for (i, ev) in vars.iter().enumerate() {
        let ip = p.index(i);
        let name = text(ev, "name");
        if name.is_empty() {
            errs.push(required(&ip.child("name"), ""));
        } else {
            for msg in relaxed_env_var_name(&name) {
                errs.push(invalid(&ip.child("name"), name.as_str(), &msg));
            }
        }
        let Some(from) = get(ev, "valueFrom") else {
            continue;
        };
        let fp = ip.child("valueFrom");
        let mut sources = 0;
        if let Some(fr) = get(from, "fieldRef") {
            sources += 1;
            object_field_selector(fr, ENV_FIELD_PATHS, &fp.child("fieldRef"), errs);
        }
        if let Some(rf) = get(from, "resourceFieldRef") {
            sources += 1;
            resource_field_selector(rf, &fp.child("resourceFieldRef"), false, errs);
        }
        for key in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(ks) = get(from, key) {
                sources += 1;
                key_selector(ks, &fp.child(key), errs);
            }
        }
        if sources == 0 {
            errs.push(invalid(
                &fp,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !text(ev, "value").is_empty() {
            errs.push(invalid(&fp, "", "may not be specified when `value` is not empty"));
        } else if sources > 1 {
            errs.push(invalid(
                &fp,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

/// The pod fields an environment variable may take its value from.
const ENV_FIELD_PATHS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// The paths `ConvertDownwardAPIFieldLabel` accepts for `v1`.
const CONVERTIBLE_FIELD_PATHS: &[&str] = &[
    "metadata.annotations",
    "metadata.labels",
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.serviceAccountName",
    "spec.schedulerName",
    "status.phase",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

/// `fieldpath.SplitMaybeSubscriptedPath`: `metadata.labels['app']` → (`metadata.labels`, `app`).
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let (head, key) = path.strip_suffix("']")?.split_once("['")?;
    (!head.is_empty()).then_some((head, key))
}

/// `validateObjectFieldSelector` (downward API `fieldRef`).
pub fn object_field_selector(fs: &Value, allowed: &[&str], p: &Path, errs: &mut Errs) {
    // apiVersion defaults to v1.
    let api_version = field::defaulted(fs, "apiVersion", "v1");
    let field_path = text(fs, "fieldPath");
    if field_path.is_empty() {
        errs.push(required(&p.child("fieldPath"), ""));
        return;
    }
    let conversion_error = if api_version != "v1" {
        Some(format!("unsupported pod version: {api_version}"))
    } else if let Some((head, _)) = split_subscript(&field_path) {
        (!["metadata.annotations", "metadata.labels"].contains(&head))
            .then(|| format!("field label does not support subscript: {field_path}"))
    } else if !CONVERTIBLE_FIELD_PATHS.contains(&field_path.as_str()) && field_path != "spec.host" {
        Some(format!("field label not supported: {field_path}"))
    } else {
        None
    };
    if let Some(e) = conversion_error {
        errs.push(invalid(
            &p.child("fieldPath"),
            field_path.as_str(),
            &format!("error converting fieldPath: {e}"),
        ));
        return;
    }
    let internal = if field_path == "spec.host" {
        "spec.nodeName".to_owned()
    } else {
        field_path.clone()
    };
    if let Some((head, key)) = split_subscript(&internal) {
        match head {
            "metadata.annotations" => {
                let key = key.to_lowercase();
                errs.extend(qualified_name(&key).iter().map(|m| invalid(p, key.as_str(), m)));
            }
            _ => errs.extend(qualified_name(key).iter().map(|m| invalid(p, key, m))),
        }
    } else if !allowed.contains(&internal.as_str()) {
        let mut sorted = allowed.to_vec();
        sorted.sort_unstable();
        errs.push(not_supported(&p.child("fieldPath"), internal.as_str(), &sorted));
    }
}

/// `validateContainerResourceFieldSelector` (downward API `resourceFieldRef`).
pub fn resource_field_selector(fs: &Value, p: &Path, volume: bool, errs: &mut Errs) {
    const EXPRS: &[&str] = &[
        "limits.cpu",
        "limits.ephemeral-storage",
        "limits.memory",
        "requests.cpu",
        "requests.ephemeral-storage",
        "requests.memory",
    ];
    let resource = text(fs, "resource");
    if volume && text(fs, "containerName").is_empty() {
        errs.push(required(&p.child("containerName"), ""));
    } else if resource.is_empty() {
        errs.push(required(&p.child("resource"), ""));
    } else if !EXPRS.contains(&resource.as_str())
        && !resource.starts_with("requests.hugepages-")
        && !resource.starts_with("limits.hugepages-")
    {
        errs.push(not_supported(&p.child("resource"), resource.as_str(), EXPRS));
    }
    let Some(divisor) = get(fs, "divisor")
        .and_then(|d| quantity::from_json(d).ok())
        .filter(|q| !q.is_zero())
    else {
        return;
    };
    const MEMORY: &[&str] = &[
        "1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei",
    ];
    let d = divisor.canonical();
    let ok = |set: &[&str]| set.contains(&d.as_str());
    let msg = match resource.as_str() {
        "limits.cpu" | "requests.cpu" if !ok(&["1m", "1"]) => {
            Some("only divisor's values 1m and 1 are supported with the cpu resource")
        }
        "limits.memory" | "requests.memory" if !ok(MEMORY) => Some(
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the memory resource",
        ),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" if !ok(MEMORY) => Some(
            "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the local ephemeral storage resource",
        ),
        r if (r.starts_with("requests.hugepages-") || r.starts_with("limits.hugepages-")) && !ok(MEMORY) => {
            Some(
                "only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported with the hugepages resource",
            )
        }
        _ => None,
    };
    if let Some(msg) = msg {
        errs.push(invalid(&p.child("divisor"), resource.as_str(), msg));
    }
}

/// `validateConfigMapKeySelector` / `validateSecretKeySelector`.
fn key_selector(ks: &Value, p: &Path, errs: &mut Errs) {
    let name = text(ks, "name");
    for msg in NameFn::Subdomain.check(&name, false) {
        errs.push(invalid(&p.child("name"), name.as_str(), &msg));
    }
    let key = text(ks, "key");
    if key.is_empty() {
        errs.push(required(&p.child("key"), ""));
    } else {
        for msg in config_map_key(&key) {
            errs.push(invalid(&p.child("key"), key.as_str(), &msg));
        }
    }
}

/// `ValidateEnvFrom`.
fn env_from(sources: &[Value], p: &Path, errs: &mut Errs) {
    for (i, ev) in sources.iter().enumerate() {
        let ip = p.index(i);
        let prefix = text(ev, "prefix");
        if !prefix.is_empty() {
            for msg in relaxed_env_var_name(&prefix) {
                errs.push(invalid(&ip.child("prefix"), prefix.as_str(), &msg));
            }
        }
        let mut count = 0;
        for key in ["configMapRef", "secretRef"] {
            let Some(r) = get(ev, key) else { continue };
            count += 1;
            let name = text(r, "name");
            if name.is_empty() {
                errs.push(required(&ip.child(key).child("name"), ""));
            } else {
                for msg in NameFn::Subdomain.check(&name, true) {
                    errs.push(invalid(&ip.child(key).child("name"), name.as_str(), &msg));
                }
            }
        }
        if count == 0 {
            errs.push(invalid(
                p,
                "",
                "must specify one of: `configMapRef` or `secretRef`",
            ));
        } else if count > 1 {
            errs.push(invalid(
                p,
                "",
                "may not have more than one field specified at a time",
            ));
        }
    }
}

fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name)
        && !name.starts_with("requests.")
        && qualified_name(&format!("requests.{name}")).is_empty()
}

fn is_standard_resource(name: &str) -> bool {
    const STANDARD: &[&str] = &[
        "cpu",
        "memory",
        "ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "pods",
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
    ];
    STANDARD.contains(&name)
        || is_hugepages(name)
        || name.starts_with("requests.hugepages-")
        || name.starts_with("limits.hugepages-")
}

/// `validateContainerResourceName`.
fn container_resource_name(name: &str, p: &Path, errs: &mut Errs) {
    let msgs = qualified_name(name);
    if !msgs.is_empty() {
        errs.extend(msgs.iter().map(|m| invalid(p, name, m)));
    } else if !name.contains('/') && !is_standard_resource(name) {
        errs.push(invalid(
            p,
            name,
            "must be a standard resource type or fully qualified",
        ));
    }
    if !name.contains('/') {
        if !matches!(name, "cpu" | "memory" | "ephemeral-storage") && !is_hugepages(name) {
            errs.push(invalid(p, name, "must be a standard resource for containers"));
        }
    } else if !is_native_resource(name) && !is_extended_resource(name) {
        errs.push(invalid(p, name, "doesn't follow extended resource name standard"));
    }
}

/// Parses one quantity of a resource list, reporting a malformed one (a 400 upstream, where the
/// decoder rejects it) and `ValidateResourceQuantityValue`'s rules.
pub fn resource_quantity(name: &str, raw: &Value, p: &Path, errs: &mut Errs) -> Option<Quantity> {
    match quantity::from_json(raw) {
        Err(msg) => {
            errs.push(invalid(p, scalar_text(raw), msg));
            None
        }
        Ok(q) => {
            if q.is_negative() {
                errs.push(invalid(p, q.canonical(), NEGATIVE_MSG));
            }
            if is_extended_resource(name) && !q.is_integer() {
                errs.push(invalid(p, q.canonical(), "must be an integer"));
            }
            Some(q)
        }
    }
}

/// `ValidateContainerResourceRequirements`: names, quantities, and requests ≤ limits.
fn resources(r: &Value, p: &Path, errs: &mut Errs) {
    let (lim_path, req_path) = (p.child("limits"), p.child("requests"));
    let mut limits = BTreeMap::new();
    let (mut cpu_or_memory, mut hugepages) = (false, false);
    for (name, raw) in map_of(r, "limits").into_iter().flatten() {
        let fp = lim_path.key(name);
        container_resource_name(name, &fp, errs);
        if let Some(q) = resource_quantity(name, raw, &fp, errs) {
            limits.insert(name.clone(), q);
        }
        hugepages |= is_hugepages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    for (name, raw) in map_of(r, "requests").into_iter().flatten() {
        let fp = req_path.key(name);
        container_resource_name(name, &fp, errs);
        let q = resource_quantity(name, raw, &fp, errs);
        let overcommit = is_native_resource(name) && !is_hugepages(name);
        let limit_set = map_of(r, "limits").is_some_and(|l| l.contains_key(name));
        match (q, limits.get(name)) {
            (Some(q), Some(limit)) if !overcommit && q != *limit => errs.push(invalid(
                &req_path,
                q.canonical(),
                &format!("must be equal to {name} limit of {}", limit.canonical()),
            )),
            (Some(q), Some(limit)) if q > *limit => errs.push(invalid(
                &req_path,
                q.canonical(),
                &format!(
                    "must be less than or equal to {name} limit of {}",
                    limit.canonical()
                ),
            )),
            _ if !limit_set && !overcommit => {
                errs.push(required(
                    &lim_path,
                    "Limit must be set for non overcommitable resources",
                ));
            }
            _ => {}
        }
        hugepages |= is_hugepages(name);
        cpu_or_memory |= name == "cpu" || name == "memory";
    }
    if hugepages && !cpu_or_memory {
        errs.push(forbidden(p, "HugePages require cpu or memory"));
    }
}

/// The probes of a container (regular or sidecar).
fn probes(c: &Value, grace: i64, p: &Path, errs: &mut Errs) {
    for field in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(probe) = get(c, field) else { continue };
        let pp = p.child(field);
        handler(probe, grace, &pp, false, errs);
        for n in [
            "initialDelaySeconds",
            "timeoutSeconds",
            "periodSeconds",
            "successThreshold",
            "failureThreshold",
        ] {
            non_negative(int_of(probe, n), &pp.child(n), errs);
        }
        let tgps = int_of(probe, "terminationGracePeriodSeconds");
        if let Some(t) = tgps.filter(|t| *t <= 0) {
            errs.push(invalid(
                &pp.child("terminationGracePeriodSeconds"),
                t,
                "must be greater than 0",
            ));
        }
        if field == "readinessProbe" {
            if let Some(t) = tgps {
                errs.push(invalid(
                    &pp.child("terminationGracePeriodSeconds"),
                    t,
                    "must not be set for readinessProbes",
                ));
            }
        } else {
            // 0 (unset) is defaulted to 1.
            let success = int_of(probe, "successThreshold").filter(|s| *s != 0).unwrap_or(1);
            if success != 1 {
                errs.push(invalid(&pp.child("successThreshold"), success, "must be 1"));
            }
        }
    }
}

/// `validateLifecycle`.
fn lifecycle(lc: &Value, grace: i64, p: &Path, errs: &mut Errs) {
    for field in ["postStart", "preStop"] {
        if let Some(h) = get(lc, field) {
            handler(h, grace, &p.child(field), true, errs);
        }
    }
}

/// `validateHandler`: exactly one of exec, httpGet, tcpSocket, grpc (probes) or sleep (lifecycle).
fn handler(h: &Value, grace: i64, p: &Path, lifecycle: bool, errs: &mut Errs) {
    let kinds: &[&str] = if lifecycle {
        &["exec", "httpGet", "tcpSocket", "sleep"]
    } else {
        &["exec", "httpGet", "tcpSocket", "grpc"]
    };
    let mut count = 0;
    for kind in kinds {
        let Some(action) = get(h, kind) else { continue };
        let ap = p.child(kind);
        if count > 0 {
            errs.push(forbidden(&ap, "may not specify more than 1 handler type"));
            continue;
        }
        count += 1;
        match *kind {
            "exec" if list(action, "command").is_empty() => errs.push(required(&ap.child("command"), "")),
            "httpGet" => {
                // path and scheme are defaulted ("/" and HTTP).
                port_num_or_name(at(action, "port"), &ap.child("port"), errs);
                let scheme = field::defaulted(action, "scheme", "HTTP");
                if !["HTTP", "HTTPS"].contains(&scheme.as_str()) {
                    errs.push(not_supported(
                        &ap.child("scheme"),
                        scheme.as_str(),
                        &["HTTP", "HTTPS"],
                    ));
                }
                for header in list(action, "httpHeaders") {
                    let name = text(header, "name");
                    for msg in http_header_name(&name) {
                        errs.push(invalid(&ap.child("httpHeaders"), name.as_str(), &msg));
                    }
                }
            }
            "tcpSocket" => port_num_or_name(at(action, "port"), &ap.child("port"), errs),
            "grpc" => {
                let port = int_of(action, "port").unwrap_or(0);
                errs.extend(port_num(port).iter().map(|m| invalid(&ap.child("port"), port, m)));
            }
            "sleep" => {
                let seconds = int_of(action, "seconds").unwrap_or(0);
                if seconds < 0 || seconds > grace {
                    errs.push(invalid(
                        &ap,
                        seconds,
                        &format!(
                            "must be non-negative and less than terminationGracePeriodSeconds ({grace})"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    if count == 0 {
        errs.push(required(p, "must specify a handler type"));
    }
}

/// `ValidatePortNumOrName`: an int 1–65535 or an IANA service name.
pub fn port_num_or_name(port: &Value, p: &Path, errs: &mut Errs) {
    match port {
        Value::String(name) => errs.extend(port_name(name).iter().map(|m| invalid(p, name.as_str(), m))),
        other => {
            let n = other.as_i64().unwrap_or(0);
            errs.extend(port_num(n).iter().map(|m| invalid(p, n, m)));
        }
    }
}

pub fn id_range(v: &Value, key: &str, p: &Path, errs: &mut Errs) {
    if let Some(id) = int_of(v, key).filter(|id| !(0..=u32::MAX as i64).contains(id)) {
        errs.push(invalid(
            &p.child(key),
            id,
            &inclusive_range_error(0, u32::MAX as i64),
        ));
    }
}

/// `ValidateSecurityContext` (a container's).
fn security_context(sc: &Value, p: &Path, errs: &mut Errs) {
    id_range(sc, "runAsUser", p, errs);
    id_range(sc, "runAsGroup", p, errs);
    if let Some(pm) = str_of(sc, "procMount")
        && !["Default", "Unmasked"].contains(&pm)
    {
        errs.push(not_supported(&p.child("procMount"), pm, &["Default", "Unmasked"]));
    }
    seccomp_profile(get(sc, "seccompProfile"), &p.child("seccompProfile"), errs);
    apparmor_profile(get(sc, "appArmorProfile"), &p.child("appArmorProfile"), errs);
}

pub fn seccomp_profile(sp: Option<&Value>, p: &Path, errs: &mut Errs) {
    let Some(sp) = sp else { return };
    let kind = text(sp, "type");
    match kind.as_str() {
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        "" => errs.push(required(
            &p.child("type"),
            "type is required when seccompProfile is set",
        )),
        other => {
            errs.push(not_supported(
                &p.child("type"),
                other,
                &["Localhost", "RuntimeDefault", "Unconfined"],
            ));
        }
    }
    match (kind.as_str(), str_of(sp, "localhostProfile")) {
        ("Localhost", None) => errs.push(required(
            &p.child("localhostProfile"),
            "must be set when seccomp type is Localhost",
        )),
        ("Localhost", Some(lp)) => volume::local_descending_path(lp, &p.child("localhostProfile"), errs),
        (_, Some(_)) => errs.push(invalid(
            &p.child("localhostProfile"),
            Bad::Raw(format!(
                "core.SeccompProfile{{Type:{}, LocalhostProfile:(*string)(0xc000010000)}}",
                go_quote(&kind)
            )),
            "can only be set when seccomp type is Localhost",
        )),
        _ => {}
    }
}

pub fn apparmor_profile(ap: Option<&Value>, p: &Path, errs: &mut Errs) {
    let Some(ap) = ap else { return };
    let lp = str_of(ap, "localhostProfile");
    match text(ap, "type").as_str() {
        "Localhost" => match lp {
            None => errs.push(required(
                &p.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(l) if l.trim() != l => {
                errs.push(invalid(
                    &p.child("localhostProfile"),
                    l,
                    "must not be padded with whitespace",
                ));
            }
            Some("") => errs.push(required(
                &p.child("localhostProfile"),
                "must be set when AppArmor type is Localhost",
            )),
            Some(_) => {}
        },
        "RuntimeDefault" | "Unconfined" => {
            if let Some(l) = lp {
                errs.push(invalid(
                    &p.child("localhostProfile"),
                    l,
                    "can only be set when AppArmor type is Localhost",
                ));
            }
        }
        "" => errs.push(required(
            &p.child("type"),
            "type is required when appArmorProfile is set",
        )),
        other => {
            errs.push(not_supported(
                &p.child("type"),
                other,
                &["Localhost", "RuntimeDefault", "Unconfined"],
            ));
        }
    }
}
