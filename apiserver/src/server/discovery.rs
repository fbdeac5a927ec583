//! API discovery: what kubectl and kube-rs ask first to learn which resources exist.
//!
//! Both forms upstream serves, from the one table in [`registry`]:
//! - **aggregated** (apidiscovery.k8s.io/v2): `/api` and `/apis` answer with every group, version and
//!   resource in one document when the client's Accept asks for `as=APIGroupDiscoveryList` (kubectl
//!   1.32 and kube-rs `Discovery::run_aggregated` do);
//! - **legacy**: `/api` (APIVersions), `/apis` (APIGroupList), `/api/v1` and `/apis/<g>/<v>`
//!   (APIResourceList).
//!
//! The aggregated response's Content-Type must be exactly the media type with its parameters, or
//! client-go reads it as the legacy shape and finds nothing (kubectl-compat.md §1.3).

use axum::{
    extract::Path,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    registry::{self, RESOURCES, ResourceInfo},
    status::ApiError,
};

/// The media type of aggregated discovery documents.
pub const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// The verbs of an ordinary resource.
const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn wants_aggregated(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.contains("as=APIGroupDiscoveryList") && t.contains("v=v2") && !t.contains("v=v2beta1"))
}

fn json_with_type(content_type: &'static str, body: &Value) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body.to_string()).into_response()
}

/// `GET /api`.
pub async fn core(headers: HeaderMap) -> Response {
    if wants_aggregated(&headers) {
        return json_with_type(AGGREGATED, &group_list(&[""]));
    }
    json_with_type(
        "application/json",
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": "" }],
        }),
    )
}

/// `GET /apis`.
pub async fn groups(headers: HeaderMap) -> Response {
    let groups = registry::groups();
    if wants_aggregated(&headers) {
        return json_with_type(AGGREGATED, &group_list(&groups));
    }
    let groups: Vec<Value> = groups
        .iter()
        .map(|g| {
            let gv = json!({ "groupVersion": format!("{g}/v1"), "version": "v1" });
            json!({ "name": g, "versions": [gv.clone()], "preferredVersion": gv })
        })
        .collect();
    json_with_type(
        "application/json",
        &json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }),
    )
}

/// `GET /api/v1`.
pub async fn core_resources() -> Response {
    json_with_type("application/json", &resource_list("", "v1"))
}

/// `GET /apis/<group>/<version>` (and `/apis/<group>`, which lists the group).
pub async fn group_resources(Path(segs): Path<Vec<String>>) -> Response {
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let path = segs.join("/");
    match segs.as_slice() {
        [g, v] if RESOURCES.iter().any(|r| r.group == *g && r.version == *v) => {
            json_with_type("application/json", &resource_list(g, v))
        }
        [g] if registry::groups().contains(g) => {
            let gv = json!({ "groupVersion": format!("{g}/v1"), "version": "v1" });
            json_with_type(
                "application/json",
                &json!({ "kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": [gv.clone()], "preferredVersion": gv }),
            )
        }
        _ => ApiError::no_route(&format!("/apis/{path}")).into_response(),
    }
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceInfo> {
    let (group, version) = (group.to_owned(), version.to_owned());
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

fn scope_name(r: &ResourceInfo) -> &'static str {
    if r.namespaced { "Namespaced" } else { "Cluster" }
}

/// Legacy APIResourceList of one group/version, subresources as `<resource>/<sub>` entries.
fn resource_list(group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for r in resources_of(group, version) {
        resources.push(json!({
            "name": r.resource,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
            "shortNames": r.short_names,
            "categories": r.categories,
        }));
        for sub in r.subresources {
            let (g, v, kind) = sub.kind(r);
            let mut entry = json!({
                "name": format!("{}/{}", r.resource, sub.name()), "singularName": "", "namespaced": r.namespaced,
                "kind": kind, "verbs": sub.verbs(),
            });
            if (g, v) != (r.group, r.version) {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources })
}

/// Aggregated APIGroupDiscoveryList of `groups` ("" = core).
fn group_list(groups: &[&str]) -> Value {
    let items: Vec<Value> = groups
        .iter()
        .map(|g| {
            let resources: Vec<Value> = resources_of(g, "v1").map(|r| aggregated_resource(g, r)).collect();
            json!({
                "metadata": { "name": g, "creationTimestamp": null },
                "versions": [{ "version": "v1", "freshness": "Current", "resources": resources }],
            })
        })
        .collect();
    json!({ "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items })
}

fn aggregated_resource(group: &str, r: &ResourceInfo) -> Value {
    let subresources: Vec<Value> = r
        .subresources
        .iter()
        .map(|sub| {
            let (g, v, kind) = sub.kind(r);
            json!({
                "subresource": sub.name(),
                "responseKind": { "group": g, "version": v, "kind": kind },
                "verbs": sub.verbs(),
            })
        })
        .collect();
    let mut res = json!({
        "resource": r.resource,
        "responseKind": { "group": group, "version": r.version, "kind": r.kind },
        "scope": scope_name(r),
        "singularResource": r.singular,
        "verbs": VERBS,
        "subresources": subresources,
    });
    if !r.short_names.is_empty() {
        res["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        res["categories"] = json!(r.categories);
    }
    res
}
