//! Services, as upstream's `ValidateService` (`pkg/apis/core/validation/validation.go`) checks them.
//! The cluster IP fields are the allocator's business (`allocator.rs`) and are not checked here.

use std::collections::BTreeSet;

use serde_json::Value;

use super::container::port_num_or_name;
use super::field::{
    Bad, Errs, Path, at, duplicate, forbidden, get, go_int_or_string, go_quote, has, int_of, invalid, list,
    not_supported, or_default, required, scalar_text, str_of, text,
};
use super::meta::{self, Mode, Scope, labels};
use super::names::{
    NameFn, cidr_error, dns1123_label, dns1123_subdomain, ip_error, non_special_ip, port_num, qualified_name,
};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// `ValidateService`.
pub fn service(obj: &Value, mode: Mode, errs: &mut Errs) {
    meta::object_meta(obj, Scope::Namespaced, NameFn::Dns1035, mode, errs);
    let spec = at(obj, "spec");
    let p = Path::new("spec");
    let kind = or_default(spec, "type", "ClusterIP");
    let cluster_ips: Vec<String> = match list(spec, "clusterIPs") {
        [] => str_of(spec, "clusterIP")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .into_iter()
            .collect(),
        ips => ips.iter().map(scalar_text).collect(),
    };
    let headless = cluster_ips.len() == 1 && cluster_ips[0] == "None";
    let ports = list(spec, "ports");
    if ports.is_empty() && !headless && kind != "ExternalName" {
        errs.push(required(&p.child("ports"), ""));
    }
    match kind {
        "LoadBalancer" | "NodePort" if headless => errs.push(invalid(
            &p.child("clusterIPs").index(0),
            "None",
            &format!("may not be set to 'None' for {kind} services"),
        )),
        "ExternalName" => {
            let external = text(spec, "externalName");
            let cname = external.strip_suffix('.').unwrap_or(&external);
            if cname.is_empty() {
                errs.push(required(&p.child("externalName"), ""));
            } else {
                for msg in dns1123_subdomain(cname) {
                    errs.push(invalid(&p.child("externalName"), cname, &msg));
                }
            }
        }
        _ => {}
    }
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        service_port(
            port,
            ports.len() > 1,
            &mut names,
            &p.child("ports").index(i),
            errs,
        );
    }
    if let Some(sel) = get(spec, "selector") {
        labels(Some(sel), &p.child("selector"), errs);
    }
    let affinity = or_default(spec, "sessionAffinity", "None");
    match affinity {
        "ClientIP" => {
            // The timeout is defaulted (10800 s); a given one must be in range.
            let tp = p
                .child("sessionAffinityConfig")
                .child("clientIP")
                .child("timeoutSeconds");
            if let Some(t) = int_of(
                at(at(spec, "sessionAffinityConfig"), "clientIP"),
                "timeoutSeconds",
            ) && !(1..=86400).contains(&t)
            {
                errs.push(invalid(&tp, t, "must be greater than 0 and less than 86400"));
            }
        }
        "None" => {
            if has(spec, "sessionAffinityConfig") {
                errs.push(forbidden(
                    &p.child("sessionAffinityConfig"),
                    "must not be set when session affinity is None",
                ));
            }
        }
        other => errs.push(not_supported(
            &p.child("sessionAffinity"),
            other,
            &["ClientIP", "None"],
        )),
    }
    for (i, ip) in list(spec, "externalIPs").iter().enumerate() {
        let ip = scalar_text(ip);
        let ipp = p.child("externalIPs").index(i);
        match ip_error(&ip) {
            Some(msg) => errs.push(invalid(&ipp, ip.as_str(), msg)),
            None => errs.extend(non_special_ip(&ip).iter().map(|m| invalid(&ipp, ip.as_str(), m))),
        }
    }
    if !TYPES.contains(&kind) {
        errs.push(not_supported(&p.child("type"), kind, TYPES));
    }
    if kind == "ClusterIP" {
        for (i, port) in ports.iter().enumerate() {
            if int_of(port, "nodePort").unwrap_or(0) != 0 {
                errs.push(forbidden(
                    &p.child("ports").index(i).child("nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    let mut node_ports = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let node_port = int_of(port, "nodePort").unwrap_or(0);
        if node_port != 0 && !node_ports.insert((or_default(port, "protocol", "TCP").to_owned(), node_port)) {
            errs.push(duplicate(&p.child("ports").index(i).child("nodePort"), node_port));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = or_default(port, "protocol", "TCP");
        let number = int_of(port, "port").unwrap_or(0);
        if !seen.insert((protocol.to_owned(), number)) {
            let key = format!(
                "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{number}, TargetPort:{}, NodePort:0}}",
                go_quote(protocol),
                go_int_or_string(&Value::from(0))
            );
            errs.push(duplicate(&p.child("ports").index(i), Bad::Raw(key)));
        }
    }
    let ranges = list(spec, "loadBalancerSourceRanges");
    if !ranges.is_empty() {
        // Upstream prints this path capitalised.
        let rp = p.child("LoadBalancerSourceRanges");
        if kind != "LoadBalancer" {
            errs.push(forbidden(&rp, "may only be used when `type` is 'LoadBalancer'"));
        }
        for (i, r) in ranges.iter().enumerate() {
            let r = scalar_text(r);
            let r = r.trim();
            if let Some(msg) = cidr_error(r) {
                errs.push(invalid(&rp.index(i), r, msg));
            }
        }
    }
    if has(spec, "allocateLoadBalancerNodePorts") && kind != "LoadBalancer" {
        errs.push(forbidden(
            &p.child("allocateLoadBalancerNodePorts"),
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if let Some(class) = str_of(spec, "loadBalancerClass") {
        if kind != "LoadBalancer" {
            errs.push(forbidden(
                &p.child("loadBalancerClass"),
                "may only be used when `type` is 'LoadBalancer'",
            ));
        } else {
            for msg in qualified_name(class) {
                errs.push(invalid(&p.child("loadBalancerClass"), class, &msg));
            }
        }
    }
    traffic_policies(spec, kind, &p, errs);
}

/// `validateServicePort`.
fn service_port(port: &Value, require_name: bool, names: &mut BTreeSet<String>, p: &Path, errs: &mut Errs) {
    let name = text(port, "name");
    if require_name && name.is_empty() {
        errs.push(required(&p.child("name"), ""));
    } else if !name.is_empty() {
        for msg in dns1123_label(&name) {
            errs.push(invalid(&p.child("name"), name.as_str(), &msg));
        }
        if !names.insert(name.clone()) {
            errs.push(duplicate(&p.child("name"), name.as_str()));
        }
    }
    let number = int_of(port, "port").unwrap_or(0);
    for msg in port_num(number) {
        errs.push(invalid(&p.child("port"), number, &msg));
    }
    let protocol = or_default(port, "protocol", "TCP");
    if !PROTOCOLS.contains(&protocol) {
        errs.push(not_supported(&p.child("protocol"), protocol, PROTOCOLS));
    }
    // An unset (0 or "") targetPort is defaulted to the port.
    let target = match get(port, "targetPort") {
        None => Value::from(number),
        Some(Value::String(s)) if s.is_empty() => Value::from(number),
        Some(t) if t.as_i64() == Some(0) => Value::from(number),
        Some(t) => t.clone(),
    };
    port_num_or_name(&target, &p.child("targetPort"), errs);
    if let Some(app) = str_of(port, "appProtocol") {
        for msg in qualified_name(app) {
            errs.push(invalid(&p.child("appProtocol"), app, &msg));
        }
    }
}

/// External and internal traffic policies and traffic distribution.
fn traffic_policies(spec: &Value, kind: &str, p: &Path, errs: &mut Errs) {
    let externally_accessible = kind == "LoadBalancer"
        || kind == "NodePort"
        || (kind == "ClusterIP" && !list(spec, "externalIPs").is_empty());
    if let Some(etp) = str_of(spec, "externalTrafficPolicy").filter(|s| !s.is_empty()) {
        if !externally_accessible {
            errs.push(invalid(
                &p.child("externalTrafficPolicy"),
                etp,
                "may only be set for externally-accessible services",
            ));
        } else if !["Cluster", "Local"].contains(&etp) {
            errs.push(not_supported(
                &p.child("externalTrafficPolicy"),
                etp,
                &["Cluster", "Local"],
            ));
        }
    }
    let needs_health_check = kind == "LoadBalancer" && str_of(spec, "externalTrafficPolicy") == Some("Local");
    if let Some(hc) = int_of(spec, "healthCheckNodePort").filter(|hc| *hc != 0) {
        if !needs_health_check {
            errs.push(invalid(
                &p.child("healthCheckNodePort"),
                hc,
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        } else {
            for msg in port_num(hc) {
                errs.push(invalid(&p.child("healthCheckNodePort"), hc, &msg));
            }
        }
    }
    if let Some(itp) = str_of(spec, "internalTrafficPolicy")
        && !["Cluster", "Local"].contains(&itp)
    {
        errs.push(not_supported(
            &p.child("internalTrafficPolicy"),
            itp,
            &["Cluster", "Local"],
        ));
    }
    if let Some(td) = str_of(spec, "trafficDistribution") {
        const DISTRIBUTIONS: &[&str] = &["PreferClose", "PreferSameZone", "PreferSameNode"];
        if !DISTRIBUTIONS.contains(&td) {
            errs.push(not_supported(&p.child("trafficDistribution"), td, DISTRIBUTIONS));
        }
    }
}

/// `ValidateServiceUpdate`'s own rule besides the cluster IPs: a needed health-check node port stays.
pub fn service_update(new: &Value, old: &Value, errs: &mut Errs) {
    let needs = |s: &Value| {
        let spec = at(s, "spec");
        str_of(spec, "type") == Some("LoadBalancer") && str_of(spec, "externalTrafficPolicy") == Some("Local")
    };
    if needs(new) && needs(old) {
        let (n, o) = (
            int_of(at(new, "spec"), "healthCheckNodePort"),
            int_of(at(old, "spec"), "healthCheckNodePort"),
        );
        if n != o {
            errs.push(forbidden(
                &Path::new("spec").child("healthCheckNodePort"),
                "field is immutable",
            ));
        }
    }
}
