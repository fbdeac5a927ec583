//! Pods, pod specs and pod templates, as upstream's `pkg/apis/core/validation/validation.go` checks
//! them (`ValidatePodCreate`, `ValidatePodSpec`, `ValidatePodTemplateSpec`, `ValidatePodUpdate`);
//! the containers themselves are in [`super::container`], the volumes in [`super::volume`].
//!
//! Objects arrive after skiff's defaulting, which fills fewer fields than upstream's; a field
//! upstream would have defaulted (`restartPolicy`, `dnsPolicy`, …) is read as its default when
//! absent, so it never shows up as a missing value.

use std::collections::BTreeSet;

use serde_json::Value;

use super::container::{self, apparmor_profile, id_range, seccomp_profile};
use super::field::{
    self, Bad, Errs, Path, at, duplicate, flag, forbidden, get, go_string_slice, has, int_of, invalid, list,
    not_supported, required, scalar_text, semantic_eq, str_of, text,
};
use super::meta::{self, Mode, NEGATIVE_MSG, Scope, label_name, labels};
use super::names::{
    NameFn, dns1123_label, dns1123_subdomain, dns1123_subdomain_with_underscore, inclusive_range_error,
    ip_error, label_value, qualified_name,
};
use super::volume;

const MAX_INT32: i64 = i32::MAX as i64;

/// `ValidatePodCreate` (and, for an update, `validatePodMetadataAndSpec`).
pub fn pod(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    let sp = Path::new("spec");
    pod_spec(spec, &sp, true, errs);
    if text(spec, "serviceAccountName").is_empty() {
        for (i, vol) in list(spec, "volumes").iter().enumerate() {
            for (j, src) in list(at(vol, "projected"), "sources").iter().enumerate() {
                if has(src, "serviceAccountToken") {
                    let p = sp
                        .child("volumes")
                        .index(i)
                        .child("projected")
                        .child("sources")
                        .index(j);
                    errs.push(forbidden(
                        &p.child("serviceAccountToken"),
                        "must not be specified when serviceAccountName is not set",
                    ));
                }
            }
        }
    }
    for key in ["containers", "initContainers"] {
        for (i, c) in list(spec, key).iter().enumerate() {
            let image = text(c, "image");
            if image.len() != image.trim().len() {
                errs.push(invalid(
                    &sp.child(key).index(i).child("image"),
                    image.as_str(),
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
    if mode == Mode::Create {
        if !list(spec, "ephemeralContainers").is_empty() {
            errs.push(forbidden(
                &sp.child("ephemeralContainers"),
                "cannot be set on create",
            ));
        }
        if !text(spec, "nodeName").is_empty() && !list(spec, "schedulingGates").is_empty() {
            errs.push(forbidden(
                &sp.child("nodeName"),
                "cannot be set until all schedulingGates have been cleared",
            ));
        }
    }
}

/// `ValidatePodTemplateSpec`: a workload's `spec.template` (labels print as `<path>.labels`).
pub fn pod_template(template: &Value, path: &Path, errs: &mut Errs) {
    let meta = at(template, "metadata");
    labels(get(meta, "labels"), &path.child("labels"), errs);
    meta::annotations(get(meta, "annotations"), &path.child("annotations"), errs);
    let spec = at(template, "spec");
    pod_spec(spec, &path.child("spec"), false, errs);
    if !list(spec, "ephemeralContainers").is_empty() {
        errs.push(forbidden(
            &path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
}

/// `ValidatePodSpec`; `is_pod` for a Pod's own spec (not a template).
pub fn pod_spec(spec: &Value, p: &Path, is_pod: bool, errs: &mut Errs) {
    let grace = int_of(spec, "terminationGracePeriodSeconds");
    // Upstream turns a negative grace period into 1 on pod creation; we refuse it instead.
    if let Some(g) = grace.filter(|g| *g < 0) {
        errs.push(invalid(
            &p.child("terminationGracePeriodSeconds"),
            g,
            NEGATIVE_MSG,
        ));
    }
    let grace = grace.unwrap_or(30);
    let vols = volume::volumes(list(spec, "volumes"), &p.child("volumes"), is_pod, errs);
    container::containers(
        list(spec, "containers"),
        &vols,
        grace,
        &p.child("containers"),
        errs,
    );
    container::init_containers(spec, &vols, grace, &p.child("initContainers"), errs);
    host_network_deps(spec, p, errs);
    let restart = field::defaulted(spec, "restartPolicy", "Always");
    if !["Always", "OnFailure", "Never"].contains(&restart.as_str()) {
        errs.push(not_supported(
            &p.child("restartPolicy"),
            restart.as_str(),
            &["Always", "OnFailure", "Never"],
        ));
    }
    let dns_policy = field::defaulted(spec, "dnsPolicy", "ClusterFirst");
    const DNS_POLICIES: &[&str] = &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    if !DNS_POLICIES.contains(&dns_policy.as_str()) {
        errs.push(not_supported(
            &p.child("dnsPolicy"),
            dns_policy.as_str(),
            DNS_POLICIES,
        ));
    }
    labels(get(spec, "nodeSelector"), &p.child("nodeSelector"), errs);
    pod_security_context(spec, &p.child("securityContext"), errs);
    dns_config(spec, &dns_policy, &p.child("dnsConfig"), errs);
    for (i, gate) in list(spec, "readinessGates").iter().enumerate() {
        let ct = text(gate, "conditionType");
        for msg in qualified_name(&ct) {
            errs.push(invalid(
                &p.child("readinessGates").index(i).child("conditionType"),
                ct.as_str(),
                &msg,
            ));
        }
    }
    let mut gates = BTreeSet::new();
    for (i, gate) in list(spec, "schedulingGates").iter().enumerate() {
        let name = text(gate, "name");
        let gp = p.child("schedulingGates").index(i);
        for msg in qualified_name(&name) {
            errs.push(invalid(&gp, name.as_str(), &msg));
        }
        if !gates.insert(name.clone()) {
            errs.push(duplicate(&gp, name.as_str()));
        }
    }
    host_users(spec, p, errs);
    for (field, rule) in [
        ("serviceAccountName", NameFn::Subdomain),
        ("nodeName", NameFn::Subdomain),
    ] {
        let v = text(spec, field);
        if !v.is_empty() {
            for msg in rule.check(&v, false) {
                errs.push(invalid(&p.child(field), v.as_str(), &msg));
            }
        }
    }
    if let Some(v) = int_of(spec, "activeDeadlineSeconds").filter(|v| !(1..=MAX_INT32).contains(v)) {
        errs.push(invalid(
            &p.child("activeDeadlineSeconds"),
            v,
            &inclusive_range_error(1, MAX_INT32),
        ));
    }
    for field in ["hostname", "subdomain"] {
        let v = text(spec, field);
        if !v.is_empty() {
            for msg in dns1123_label(&v) {
                errs.push(invalid(&p.child(field), v.as_str(), &msg));
            }
        }
    }
    tolerations(list(spec, "tolerations"), &p.child("tolerations"), errs);
    for (i, alias) in list(spec, "hostAliases").iter().enumerate() {
        let ap = p.child("hostAliases").index(i);
        let ip = text(alias, "ip");
        if let Some(msg) = ip_error(&ip) {
            errs.push(invalid(&ap.child("ip"), ip.as_str(), msg));
        }
        for (j, h) in list(alias, "hostnames").iter().enumerate() {
            let h = scalar_text(h);
            for msg in dns1123_subdomain(&h) {
                errs.push(invalid(&ap.child("hostnames").index(j), h.as_str(), &msg));
            }
        }
    }
    for field in ["priorityClassName", "runtimeClassName"] {
        if let Some(v) = str_of(spec, field).filter(|v| field == "runtimeClassName" || !v.is_empty()) {
            for msg in dns1123_subdomain(v) {
                errs.push(invalid(&p.child(field), v, &msg));
            }
        }
    }
    if let Some(pp) = str_of(spec, "preemptionPolicy") {
        match pp {
            "PreemptLowerPriority" | "Never" => {}
            "" => errs.push(required(&p.child("preemptionPolicy"), "")),
            other => errs.push(not_supported(
                &p.child("preemptionPolicy"),
                other,
                &["PreemptLowerPriority", "Never"],
            )),
        }
    }
    if let Some(os) = get(spec, "os") {
        match text(os, "name").as_str() {
            "" => errs.push(required(&p.child("os").child("name"), "")),
            "linux" | "windows" => {}
            other => errs.push(not_supported(&p.child("os"), other, &["linux", "windows"])),
        }
    }
}

/// `validatePodHostNetworkDeps`: with `hostNetwork`, a set hostPort must equal the containerPort.
fn host_network_deps(spec: &Value, p: &Path, errs: &mut Errs) {
    if !flag(spec, "hostNetwork") {
        return;
    }
    for (i, c) in list(spec, "containers").iter().enumerate() {
        for (j, port) in list(c, "ports").iter().enumerate() {
            let (hp, cp) = (
                int_of(port, "hostPort").unwrap_or(0),
                int_of(port, "containerPort").unwrap_or(0),
            );
            // Upstream defaults an unset hostPort to the containerPort for pods; skiff does not, so unset is fine.
            if hp != 0 && hp != cp {
                errs.push(invalid(
                    &p.child("containers")
                        .index(i)
                        .child("ports")
                        .index(j)
                        .child("hostPort"),
                    hp,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
}

/// `validatePodSpecSecurityContext` (the pod-level one; in v1 some of its fields live on the spec).
fn pod_security_context(spec: &Value, p: &Path, errs: &mut Errs) {
    let sc = at(spec, "securityContext");
    id_range(sc, "fsGroup", p, errs);
    id_range(sc, "runAsUser", p, errs);
    id_range(sc, "runAsGroup", p, errs);
    for (i, g) in list(sc, "supplementalGroups").iter().enumerate() {
        if let Some(g) = g.as_i64().filter(|g| !(0..=u32::MAX as i64).contains(g)) {
            errs.push(invalid(
                &p.child("supplementalGroups").index(i),
                g,
                &inclusive_range_error(0, u32::MAX as i64),
            ));
        }
    }
    if flag(spec, "shareProcessNamespace") && flag(spec, "hostPID") {
        errs.push(invalid(
            &p.child("shareProcessNamespace"),
            Bad::Raw("true".into()),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
    let mut sysctls = BTreeSet::new();
    for (i, s) in list(sc, "sysctls").iter().enumerate() {
        let name = text(s, "name");
        let np = p.child("sysctls").index(i).child("name");
        if name.is_empty() {
            errs.push(required(&np, ""));
        } else if !valid_sysctl_name(&name) {
            errs.push(invalid(
                &np,
                name.as_str(),
                "must have at most 253 characters and match regex ^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$",
            ));
        } else if sysctls.contains(&name) {
            errs.push(duplicate(&np, name.as_str()));
        }
        sysctls.insert(name);
    }
    for (field, supported) in [
        ("fsGroupChangePolicy", &["Always", "OnRootMismatch"][..]),
        ("supplementalGroupsPolicy", &["Merge", "Strict"][..]),
        ("seLinuxChangePolicy", &["MountOption", "Recursive"][..]),
    ] {
        if let Some(v) = str_of(sc, field)
            && !supported.contains(&v)
        {
            errs.push(not_supported(&p.child(field), v, supported));
        }
    }
    seccomp_profile(get(sc, "seccompProfile"), &p.child("seccompProfile"), errs);
    apparmor_profile(get(sc, "appArmorProfile"), &p.child("appArmorProfile"), errs);
}

fn valid_sysctl_name(name: &str) -> bool {
    name.len() <= 253
        && name.split(['.', '/']).all(|seg| {
            let b = seg.as_bytes();
            let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
            !b.is_empty()
                && ok(b[0])
                && ok(b[b.len() - 1])
                && b.iter().all(|&c| ok(c) || c == b'-' || c == b'_')
        })
}

/// `validateHostUsers`: without host user namespaces, no host network/PID/IPC.
fn host_users(spec: &Value, p: &Path, errs: &mut Errs) {
    if at(spec, "hostUsers").as_bool() != Some(false) {
        return;
    }
    // Upstream's paths, capitals included.
    for (field, printed) in [
        ("hostNetwork", "hostNetwork"),
        ("hostPID", "HostPID"),
        ("hostIPC", "HostIPC"),
    ] {
        if flag(spec, field) {
            errs.push(forbidden(&p.child(printed), "when `pod.Spec.HostUsers` is false"));
        }
    }
}

/// `validatePodDNSConfig`.
fn dns_config(spec: &Value, policy: &str, p: &Path, errs: &mut Errs) {
    let config = get(spec, "dnsConfig");
    if policy == "None" {
        let Some(config) = config else {
            errs.push(required(p, "must provide `dnsConfig` when `dnsPolicy` is None"));
            return;
        };
        if list(config, "nameservers").is_empty() {
            errs.push(required(
                &p.child("nameservers"),
                "must provide at least one DNS nameserver when `dnsPolicy` is None",
            ));
            return;
        }
    }
    let Some(config) = config else { return };
    let nameservers = list(config, "nameservers");
    if nameservers.len() > 3 {
        errs.push(invalid(
            &p.child("nameservers"),
            Bad::Raw(go_string_slice(get(config, "nameservers"))),
            "must not have more than 3 nameservers",
        ));
    }
    for (i, ns) in nameservers.iter().enumerate() {
        let ns = scalar_text(ns);
        if let Some(msg) = ip_error(&ns) {
            errs.push(invalid(&p.child("nameservers").index(i), ns.as_str(), msg));
        }
    }
    let searches: Vec<String> = list(config, "searches").iter().map(scalar_text).collect();
    if searches.len() > 32 {
        errs.push(invalid(
            &p.child("searches"),
            Bad::Raw(go_string_slice(get(config, "searches"))),
            "must not have more than 32 search paths",
        ));
    }
    if searches.join(" ").len() > 2048 {
        errs.push(invalid(
            &p.child("searches"),
            Bad::Raw(go_string_slice(get(config, "searches"))),
            "must not have more than 2048 characters (including spaces) in the search list",
        ));
    }
    for (i, search) in searches.iter().enumerate() {
        if search != "." {
            let s = search.strip_suffix('.').unwrap_or(search);
            for msg in dns1123_subdomain_with_underscore(s) {
                errs.push(invalid(&p.child("searches").index(i), s, &msg));
            }
        }
    }
    for (i, opt) in list(config, "options").iter().enumerate() {
        if text(opt, "name").is_empty() {
            errs.push(required(&p.child("options").index(i), "must not be empty"));
        }
    }
}

/// `ValidateTolerations`.
pub fn tolerations(ts: &[Value], p: &Path, errs: &mut Errs) {
    for (i, t) in ts.iter().enumerate() {
        let ip = p.index(i);
        let (key, op, value, effect) = (
            text(t, "key"),
            text(t, "operator"),
            text(t, "value"),
            text(t, "effect"),
        );
        if !key.is_empty() {
            label_name(&key, &ip.child("key"), errs);
        }
        if key.is_empty() && op != "Exists" {
            errs.push(invalid(
                &ip.child("operator"),
                op.as_str(),
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if has(t, "tolerationSeconds") && effect != "NoExecute" {
            errs.push(invalid(
                &ip.child("effect"),
                effect.as_str(),
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match op.as_str() {
            "Equal" | "" => {
                let msgs = label_value(&value);
                if !msgs.is_empty() {
                    errs.push(invalid(&ip.child("operator"), value.as_str(), &msgs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => {
                errs.push(invalid(
                    &ip.child("operator"),
                    value.as_str(),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
            "Exists" => {}
            other => errs.push(not_supported(&ip.child("operator"), other, &["Equal", "Exists"])),
        }
        if !effect.is_empty() {
            taint_effect(&effect, &ip.child("effect"), errs);
        }
    }
}

/// `validateTaintEffect` for a non-empty effect.
pub fn taint_effect(effect: &str, p: &Path, errs: &mut Errs) {
    const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];
    if !EFFECTS.contains(&effect) {
        errs.push(not_supported(p, effect, EFFECTS));
    }
}

/// What a pod update may change (`updatablePodSpecFields`).
const UPDATABLE: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// `ValidatePodUpdate`'s own checks: only images, `activeDeadlineSeconds` (lowered), tolerations
/// (added) and scheduling gates (removed) may change.
pub fn pod_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    let sp = Path::new("spec");
    for key in ["containers", "initContainers"] {
        let (nc, oc) = (list(ns, key), list(os, key));
        if nc.len() != oc.len() {
            errs.push(forbidden(
                &sp.child(key),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in nc.iter().enumerate() {
            if text(c, "image").is_empty() {
                errs.push(required(&sp.child(key).index(i).child("image"), ""));
            }
        }
    }
    let adp = sp.child("activeDeadlineSeconds");
    match (
        int_of(ns, "activeDeadlineSeconds"),
        int_of(os, "activeDeadlineSeconds"),
    ) {
        (Some(n), _) if !(0..=MAX_INT32).contains(&n) => {
            errs.push(invalid(&adp, n, &inclusive_range_error(0, MAX_INT32)));
            return;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(invalid(&adp, n, "must be less than or equal to previous value"));
            return;
        }
        (None, Some(_)) => {
            errs.push(invalid(
                &adp,
                Bad::Raw("null".into()),
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }
    only_added_tolerations(
        list(ns, "tolerations"),
        list(os, "tolerations"),
        &sp.child("tolerations"),
        errs,
    );
    let old_gates: BTreeSet<String> = list(os, "schedulingGates")
        .iter()
        .map(|g| text(g, "name"))
        .collect();
    for (i, g) in list(ns, "schedulingGates").iter().enumerate() {
        let name = text(g, "name");
        if !old_gates.contains(&name) {
            errs.push(forbidden(
                &sp.child("schedulingGates").index(i).child("name"),
                &format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }
    if semantic_eq(ns, os) {
        return;
    }
    let mut munged = ns.clone();
    if let Some(m) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            if let Some(cs) = m.get_mut(key).and_then(Value::as_array_mut) {
                for (c, old_c) in cs.iter_mut().zip(list(os, key)) {
                    if let Some(c) = c.as_object_mut() {
                        c.insert("image".into(), at(old_c, "image").clone());
                    }
                }
            }
        }
        for key in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            m.insert(key.into(), at(os, key).clone());
        }
        let old_grace = int_of(os, "terminationGracePeriodSeconds");
        if old_grace.is_some_and(|g| g < 0) && int_of(ns, "terminationGracePeriodSeconds") == Some(1) {
            m.insert(
                "terminationGracePeriodSeconds".into(),
                at(os, "terminationGracePeriodSeconds").clone(),
            );
        }
    }
    if !semantic_eq(&munged, os) {
        let mut diff = Vec::new();
        json_diff(os, &munged, "", &mut diff);
        errs.push(forbidden(
            &sp,
            &format!(
                "pod updates may not change fields other than {UPDATABLE}\n  core.PodSpec{{\n{}  }}\n",
                diff.concat()
            ),
        ));
    }
}

/// `validateOnlyAddedTolerations`: existing tolerations stay (their `tolerationSeconds` may change).
fn only_added_tolerations(new: &[Value], old: &[Value], p: &Path, errs: &mut Errs) {
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(m) = t.as_object_mut() {
            m.remove("tolerationSeconds");
        }
        t
    };
    for o in old {
        if !new.iter().any(|n| semantic_eq(&strip(n), &strip(o))) {
            errs.push(forbidden(
                p,
                "existing toleration can not be modified except its tolerationSeconds",
            ));
            return;
        }
    }
}

/// A readable stand-in for upstream's `cmp.Diff` of the two specs: one `-`/`+` pair per changed field.
fn json_diff(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if semantic_eq(old, new) {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_diff(
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    &sub,
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                json_diff(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.push(format!("- \t{path}: {old},\n"));
            out.push(format!("+ \t{path}: {new},\n"));
        }
    }
}
