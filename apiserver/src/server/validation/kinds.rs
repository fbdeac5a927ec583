//! The smaller kinds: ConfigMap, Secret, Namespace, ServiceAccount, Node, Endpoints (upstream's
//! `pkg/apis/core/validation/validation.go` and `events.go`), EndpointSlice
//! (`pkg/apis/discovery/validation`), Lease (`pkg/apis/coordination/validation`) and Event.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use serde_json::Value;

use super::container::resource_quantity;
use super::field::{
    Bad, Errs, Path, at, duplicate, forbidden, get, go_quote, go_string_slice, has, int_of, invalid, list,
    map_of, not_supported, required, scalar_text, semantic_eq, str_of, text, too_long, too_many,
};
use super::meta::{self, IMMUTABLE_MSG, Mode, Scope, label_name};
use super::names::{
    NameFn, cidr_error, config_map_key, dns1123_label, dns1123_subdomain, fully_qualified_domain_name,
    ip_error, label_value, non_special_ip, parse_ip_sloppy, port_num, qualified_name,
};
use super::pod::taint_effect;

/// Largest total data of a ConfigMap or Secret (`core.MaxSecretSize`).
pub const MAX_DATA_SIZE: usize = 1024 * 1024;

/// `ValidateConfigMap`: keys are config keys, present in one of `data`/`binaryData`, at most 1 MiB in all.
pub fn config_map(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let mut total = 0;
    let binary = map_of(obj, "binaryData");
    for (key, value) in map_of(obj, "data").into_iter().flatten() {
        let p = Path::new("data").key(key);
        errs.extend(config_map_key(key).iter().map(|m| invalid(&p, key, m)));
        if binary.is_some_and(|b| b.contains_key(key)) {
            errs.push(invalid(&p, key, "duplicate of key present in binaryData"));
        }
        total += scalar_text(value).len();
    }
    for (key, value) in binary.into_iter().flatten() {
        let p = Path::new("binaryData").key(key);
        errs.extend(config_map_key(key).iter().map(|m| invalid(&p, key, m)));
        total += decoded_len(value);
    }
    if total > MAX_DATA_SIZE {
        // "" names the whole object, as upstream.
        errs.push(too_long(&Path::new(""), MAX_DATA_SIZE));
    }
}

/// The byte length of base64 data (its text length if it does not decode).
fn decoded_len(v: &Value) -> usize {
    let s = scalar_text(v);
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .map_or(s.len(), |b| b.len())
}

fn decode(v: &Value) -> Vec<u8> {
    let s = scalar_text(v);
    base64::engine::general_purpose::STANDARD
        .decode(s.as_bytes())
        .unwrap_or_else(|_| s.into_bytes())
}

/// A Secret's data as upstream validates it: `data` with `stringData` merged in (the v1 conversion
/// does that before validation).
fn secret_data(obj: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut data: BTreeMap<String, Vec<u8>> = map_of(obj, "data")
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), decode(v)))
        .collect();
    for (k, v) in map_of(obj, "stringData").into_iter().flatten() {
        data.insert(k.clone(), scalar_text(v).into_bytes());
    }
    data
}

/// `ValidateSecret`: keys, total size, and the keys each type requires.
pub fn secret(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let data = secret_data(obj);
    let dp = Path::new("data");
    let mut total = 0;
    for (key, value) in &data {
        errs.extend(
            config_map_key(key)
                .iter()
                .map(|m| invalid(&dp.key(key), key.as_str(), m)),
        );
        total += value.len();
    }
    if total > MAX_DATA_SIZE {
        errs.push(too_long(&dp, MAX_DATA_SIZE));
    }
    let json_key = |key: &str, errs: &mut Errs| match data.get(key) {
        None => errs.push(required(&dp.key(key), "")),
        Some(bytes) => {
            if let Err(e) = serde_json::from_slice::<serde_json::Map<String, Value>>(bytes) {
                errs.push(invalid(
                    &dp.key(key),
                    "<secret contents redacted>",
                    &e.to_string(),
                ));
            }
        }
    };
    match text(obj, "type").as_str() {
        "kubernetes.io/service-account-token" => {
            let name = str_of(
                at(at(obj, "metadata"), "annotations"),
                "kubernetes.io/service-account.name",
            );
            if name.is_none_or(str::is_empty) {
                errs.push(required(
                    &Path::new("metadata")
                        .child("annotations")
                        .key("kubernetes.io/service-account.name"),
                    "",
                ));
            }
        }
        "kubernetes.io/dockercfg" => json_key(".dockercfg", errs),
        "kubernetes.io/dockerconfigjson" => json_key(".dockerconfigjson", errs),
        "kubernetes.io/basic-auth" if !data.contains_key("username") && !data.contains_key("password") => {
            errs.push(required(&dp.key("username"), ""));
            errs.push(required(&dp.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if data.get("ssh-privatekey").is_none_or(Vec::is_empty) => {
            errs.push(required(&dp.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !data.contains_key(key) {
                    errs.push(required(&dp.key(key), ""));
                }
            }
        }
        _ => {}
    }
}

/// `immutable: true` freezes the data (and itself); a Secret's type never changes.
pub fn config_update(kind: &str, new: &Value, old: &Value, errs: &mut Errs) {
    if kind == "Secret" {
        let (n, o) = (text(new, "type"), text(old, "type"));
        if n != o {
            errs.push(invalid(&Path::new("type"), n.as_str(), IMMUTABLE_MSG));
        }
    }
    if at(old, "immutable").as_bool() != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if at(new, "immutable").as_bool() != Some(true) {
        errs.push(forbidden(&Path::new("immutable"), MSG));
    }
    if kind == "Secret" {
        if secret_data(new) != secret_data(old) {
            errs.push(forbidden(&Path::new("data"), MSG));
        }
    } else {
        for field in ["data", "binaryData"] {
            if !semantic_eq(at(new, field), at(old, field)) {
                errs.push(forbidden(&Path::new(field), MSG));
            }
        }
    }
}

/// `ValidateNamespace`: a DNS label; `spec.finalizers` are finalizer names.
pub fn namespace(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Cluster, NameFn::Label, mode, errs);
    let p = Path::new("spec").child("finalizers");
    for f in list(at(obj, "spec"), "finalizers") {
        let f = scalar_text(f);
        errs.extend(qualified_name(&f).iter().map(|m| invalid(&p, f.as_str(), m)));
        meta::kube_finalizer_name(&f, &p, errs);
    }
}

/// `ValidateServiceAccount`.
pub fn service_account(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
}

/// `ValidateNode`: taints, pod CIDRs, capacity and allocatable quantities.
pub fn node(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Cluster, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    // Upstream prints taints under metadata.
    let tp = Path::new("metadata").child("taints");
    let mut unique: BTreeSet<(String, String)> = BTreeSet::new();
    for (i, taint) in list(spec, "taints").iter().enumerate() {
        let ip = tp.index(i);
        let (key, value, effect) = (text(taint, "key"), text(taint, "value"), text(taint, "effect"));
        label_name(&key, &ip.child("key"), errs);
        let msgs = label_value(&value);
        if !msgs.is_empty() {
            errs.push(invalid(&ip.child("value"), value.as_str(), &msgs.join(";")));
        }
        if effect.is_empty() {
            errs.push(required(&ip.child("effect"), ""));
        } else {
            taint_effect(&effect, &ip.child("effect"), errs);
        }
        if !unique.insert((effect.clone(), key.clone())) {
            let shown = format!(
                "core.Taint{{Key:{}, Value:{}, Effect:{}, TimeAdded:{}}}",
                go_quote(&key),
                go_quote(&value),
                go_quote(&effect),
                if has(taint, "timeAdded") {
                    "<time>"
                } else {
                    "<nil>"
                }
            );
            let mut e = duplicate(&ip, Bad::Raw(shown));
            e.2.push_str(": taints must be unique by key and effect pair");
            errs.push(e);
        }
    }
    let cidrs = list(spec, "podCIDRs");
    let cp = Path::new("spec").child("podCIDRs");
    for (i, c) in cidrs.iter().enumerate() {
        let c = scalar_text(c);
        if let Some(msg) = cidr_error(&c) {
            errs.push(invalid(&cp.index(i), c.as_str(), msg));
        }
    }
    if cidrs.len() > 1 {
        let families: Vec<bool> = cidrs
            .iter()
            .filter_map(|c| {
                parse_ip_sloppy(scalar_text(c).split('/').next().unwrap_or("")).map(|ip| ip.is_ipv4())
            })
            .collect();
        let dual = families.len() == 2 && families[0] != families[1];
        if !dual || cidrs.len() > 2 {
            errs.push(invalid(
                &cp,
                Bad::Raw(go_string_slice(get(spec, "podCIDRs"))),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        let mut seen = BTreeSet::new();
        for (i, c) in cidrs.iter().enumerate() {
            let c = scalar_text(c);
            if !seen.insert(c.clone()) {
                errs.push(duplicate(&cp.index(i), c.as_str()));
            }
        }
    }
    let status = at(obj, "status");
    for field in ["capacity", "allocatable"] {
        for (name, q) in map_of(status, field).into_iter().flatten() {
            resource_quantity(name, q, &Path::new("status").child(field).child(name), errs);
        }
    }
}

/// `ValidateNodeUpdate`'s own rules: pod CIDRs and provider ID are set once.
pub fn node_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (ns, os) = (at(new, "spec"), at(old, "spec"));
    let old_cidrs = list(os, "podCIDRs");
    if !old_cidrs.is_empty() {
        let new_cidrs = list(ns, "podCIDRs");
        let msg = "node updates may not change podCIDR except from \"\" to valid";
        let p = Path::new("spec").child("podCIDRs");
        if old_cidrs.len() != new_cidrs.len() {
            errs.push(forbidden(&p, msg));
        } else {
            for (o, n) in old_cidrs.iter().zip(new_cidrs) {
                if o != n {
                    errs.push(forbidden(&p, msg));
                }
            }
        }
    }
    let old_provider = text(os, "providerID");
    if !old_provider.is_empty() && old_provider != text(ns, "providerID") {
        errs.push(forbidden(
            &Path::new("spec").child("providerID"),
            "node updates may not change providerID except from \"\" to valid",
        ));
    }
}

/// `ValidateEndpoints`.
pub fn endpoints(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    for (i, subset) in list(obj, "subsets").iter().enumerate() {
        let sp = Path::new("subsets").index(i);
        if list(subset, "addresses").is_empty() && list(subset, "notReadyAddresses").is_empty() {
            errs.push(required(&sp, "must specify `addresses` or `notReadyAddresses`"));
        }
        for field in ["addresses", "notReadyAddresses"] {
            for (j, addr) in list(subset, field).iter().enumerate() {
                let ap = sp.child(field).index(j);
                let ip = text(addr, "ip");
                if let Some(msg) = ip_error(&ip) {
                    errs.push(invalid(&ap.child("ip"), ip.as_str(), msg));
                }
                let hostname = text(addr, "hostname");
                if !hostname.is_empty() {
                    errs.extend(
                        dns1123_label(&hostname)
                            .iter()
                            .map(|m| invalid(&ap.child("hostname"), hostname.as_str(), m)),
                    );
                }
                if let Some(node) = str_of(addr, "nodeName") {
                    errs.extend(
                        dns1123_subdomain(node)
                            .iter()
                            .map(|m| invalid(&ap.child("nodeName"), node, m)),
                    );
                }
                let special = non_special_ip(&ip);
                errs.extend(special.iter().map(|m| invalid(&ap.child("ip"), ip.as_str(), m)));
            }
        }
        let ports = list(subset, "ports");
        for (j, port) in ports.iter().enumerate() {
            let pp = sp.child("ports").index(j);
            let name = text(port, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(required(&pp.child("name"), ""));
            } else if !name.is_empty() {
                errs.extend(
                    dns1123_label(&name)
                        .iter()
                        .map(|m| invalid(&pp.child("name"), name.as_str(), m)),
                );
            }
            let number = int_of(port, "port").unwrap_or(0);
            errs.extend(
                port_num(number)
                    .iter()
                    .map(|m| invalid(&pp.child("port"), number, m)),
            );
            let protocol = str_of(port, "protocol")
                .filter(|s| !s.is_empty())
                .unwrap_or("TCP");
            if !["SCTP", "TCP", "UDP"].contains(&protocol) {
                errs.push(not_supported(
                    &pp.child("protocol"),
                    protocol,
                    &["SCTP", "TCP", "UDP"],
                ));
            }
        }
    }
}

/// `ValidateEndpointSlice`.
pub fn endpoint_slice(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let address_type = text(obj, "addressType");
    let ap = Path::new("addressType");
    if address_type.is_empty() {
        errs.push(required(&ap, ""));
    } else if !["FQDN", "IPv4", "IPv6"].contains(&address_type.as_str()) {
        errs.push(not_supported(
            &ap,
            address_type.as_str(),
            &["FQDN", "IPv4", "IPv6"],
        ));
    }
    let endpoints = list(obj, "endpoints");
    let ep = Path::new("endpoints");
    if endpoints.len() > 1000 {
        errs.push(too_many(&ep, endpoints.len(), 1000));
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        let ip = ep.index(i);
        let addresses = list(endpoint, "addresses");
        let ap = ip.child("addresses");
        if addresses.is_empty() {
            errs.push(required(&ap, "must contain at least 1 address"));
        } else if addresses.len() > 100 {
            errs.push(too_many(&ap, addresses.len(), 100));
        }
        for (j, a) in addresses.iter().enumerate() {
            let a = scalar_text(a);
            let p = ap.index(j);
            match address_type.as_str() {
                "IPv4" | "IPv6" => {
                    let v4 = address_type == "IPv4";
                    match parse_ip_sloppy(&a) {
                        Some(addr) if addr.is_ipv4() == v4 => {
                            errs.extend(non_special_ip(&a).iter().map(|m| invalid(&p, a.as_str(), m)));
                        }
                        _ => errs.push(invalid(
                            &p,
                            a.as_str(),
                            if v4 {
                                "must be a valid IPv4 address"
                            } else {
                                "must be a valid IPv6 address"
                            },
                        )),
                    }
                }
                "FQDN" => {
                    if a.is_empty() {
                        errs.push(required(&p, ""));
                    } else if let Some((value, msg)) = fully_qualified_domain_name(&a) {
                        errs.push(invalid(&p, value, &msg));
                    }
                }
                _ => {}
            }
        }
        if let Some(node) = str_of(endpoint, "nodeName") {
            errs.extend(
                dns1123_subdomain(node)
                    .iter()
                    .map(|m| invalid(&ip.child("nodeName"), node, m)),
            );
        }
        if let Some(h) = str_of(endpoint, "hostname") {
            errs.extend(
                dns1123_label(h)
                    .iter()
                    .map(|m| invalid(&ip.child("hostname"), h, m)),
            );
        }
    }
    let ports = list(obj, "ports");
    let pp = Path::new("ports");
    if ports.len() > 20000 {
        errs.push(too_many(&pp, ports.len(), 20000));
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let ip = pp.index(i);
        let name = text(port, "name");
        if !name.is_empty() {
            errs.extend(
                dns1123_label(&name)
                    .iter()
                    .map(|m| invalid(&ip.child("name"), name.as_str(), m)),
            );
        }
        if !names.insert(name.clone()) {
            errs.push(duplicate(&ip.child("name"), name.as_str()));
        }
        let protocol = str_of(port, "protocol").unwrap_or("TCP");
        if !["SCTP", "TCP", "UDP"].contains(&protocol) {
            errs.push(not_supported(
                &ip.child("protocol"),
                protocol,
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if let Some(app) = str_of(port, "appProtocol") {
            errs.extend(
                qualified_name(app)
                    .iter()
                    .map(|m| invalid(&ip.child("appProtocol"), app, m)),
            );
        }
    }
}

/// `ValidateLease`.
pub fn lease(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    let spec = at(obj, "spec");
    let p = Path::new("spec");
    if let Some(d) = int_of(spec, "leaseDurationSeconds").filter(|d| *d <= 0) {
        errs.push(invalid(
            &p.child("leaseDurationSeconds"),
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = int_of(spec, "leaseTransitions").filter(|t| *t < 0) {
        errs.push(invalid(
            &p.child("leaseTransitions"),
            t,
            "must be greater than or equal to 0",
        ));
    }
}

/// An Event in the core shape, whichever group it came in (events.k8s.io renames some fields;
/// upstream validates the internal object and prints the core names).
fn core_event(obj: &Value) -> (Value, bool) {
    let strict = str_of(obj, "apiVersion").is_some_and(|v| v.starts_with("events.k8s.io/"));
    if !strict {
        return (obj.clone(), false);
    }
    let mut e = obj.clone();
    if let Some(m) = e.as_object_mut() {
        for (from, to) in [
            ("regarding", "involvedObject"),
            ("note", "message"),
            ("deprecatedCount", "count"),
            ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
        ] {
            if let Some(v) = m.remove(from) {
                m.insert(to.into(), v);
            }
        }
    }
    (e, true)
}

/// `ValidateEventCreate`: the legacy rules for every event; events.k8s.io/v1 ones get the strict rules.
pub fn event(obj: &Value, mode: Mode, errs: &mut Errs) {
    let (e, strict) = core_event(obj);
    let namespace = text(at(&e, "metadata"), "namespace");
    let involved_ns = text(at(&e, "involvedObject"), "namespace");
    let inp = Path::new("involvedObject").child("namespace");
    let event_time = str_of(&e, "eventTime").is_some_and(|t| !t.is_empty());
    if !event_time {
        let ok = if involved_ns.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            namespace == involved_ns
        };
        if !ok {
            errs.push(invalid(
                &inp,
                involved_ns.as_str(),
                "does not match event.namespace",
            ));
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            errs.push(invalid(
                &inp,
                involved_ns.as_str(),
                "does not match event.namespace",
            ));
        }
        let controller = text(&e, "reportingComponent");
        let controller = if controller.is_empty() {
            text(&e, "reportingController")
        } else {
            controller
        };
        let cp = Path::new("reportingController");
        if controller.is_empty() {
            errs.push(required(&cp, ""));
        }
        errs.extend(
            qualified_name(&controller)
                .iter()
                .map(|m| invalid(&cp, controller.as_str(), m)),
        );
        for (field, limit) in [("reportingInstance", 128), ("action", 128), ("reason", 128)] {
            let v = text(&e, field);
            if v.is_empty() {
                errs.push(required(&Path::new(field), ""));
            }
            if v.len() > limit {
                errs.push(invalid(
                    &Path::new(field),
                    "",
                    &format!("can have at most {limit} characters"),
                ));
            }
        }
        if text(&e, "message").len() > 1024 {
            errs.push(invalid(
                &Path::new("message"),
                "",
                "can have at most 1024 characters",
            ));
        }
    }
    for msg in dns1123_subdomain(&namespace) {
        errs.push(invalid(&Path::new("namespace"), namespace.as_str(), &msg));
    }
    if !strict {
        return;
    }
    meta::object_meta(&e, Scope::Namespaced, NameFn::Subdomain, mode, errs);
    if let Some(series) = get(&e, "series") {
        if int_of(series, "count").unwrap_or(0) < 2 {
            errs.push(invalid(&Path::new("series.count"), "", "should be at least 2"));
        }
        if str_of(series, "lastObservedTime").is_none_or(str::is_empty) {
            errs.push(required(&Path::new("series.lastObservedTime"), ""));
        }
    }
    if !event_time {
        errs.push(required(&Path::new("eventTime"), ""));
    }
    let kind = text(&e, "type");
    if kind != "Normal" && kind != "Warning" {
        errs.push(invalid(
            &Path::new("type"),
            "",
            &format!("has invalid value: {kind}"),
        ));
    }
    for field in ["firstTimestamp", "lastTimestamp"] {
        if str_of(&e, field).is_some_and(|t| !t.is_empty()) {
            errs.push(invalid(&Path::new(field), "", "needs to be unset"));
        }
    }
    if int_of(&e, "count").unwrap_or(0) != 0 {
        errs.push(invalid(&Path::new("count"), "", "needs to be unset"));
    }
    let source = at(&e, "source");
    if !text(source, "component").is_empty() || !text(source, "host").is_empty() {
        errs.push(invalid(&Path::new("source"), "", "needs to be unset"));
    }
}

/// `ValidateEventUpdate`'s strict part (events.k8s.io/v1): what was reported stays.
pub fn event_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (n, strict) = core_event(new);
    if !strict {
        return;
    }
    let (o, _) = core_event(old);
    for field in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingController",
        "reportingInstance",
    ] {
        let (nv, ov) = (at(&n, field), at(&o, field));
        if !semantic_eq(nv, ov) {
            let shown = match nv {
                Value::String(s) => Bad::Str(s.clone()),
                Value::Number(num) => Bad::Raw(num.to_string()),
                other => Bad::Raw(other.to_string()),
            };
            errs.push(invalid(&Path::new(field), shown, IMMUTABLE_MSG));
        }
    }
}

/// `ValidateEndpointSliceUpdate`: the address type is fixed.
pub fn endpoint_slice_update(new: &Value, old: &Value, errs: &mut Errs) {
    let (n, o) = (text(new, "addressType"), text(old, "addressType"));
    if n != o {
        errs.push(invalid(&Path::new("addressType"), n.as_str(), IMMUTABLE_MSG));
    }
}
