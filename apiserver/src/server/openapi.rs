//! `/openapi/v3`: the index of group/versions and, per group/version, its operations.
//!
//! kubectl's default `--validate=strict` asks this document whether the PATCH of a kind accepts the
//! `fieldValidation` parameter; when it does, kubectl leaves validation to the server (which rejects
//! unknown fields under Strict). So each served resource lists its item path with a PATCH operation
//! carrying that parameter and its group/version/kind (kubectl-compat.md §2.1). Component schemas
//! come from k8s-openapi's generated schemas (the same OpenAPI Kubernetes publishes), each top-level
//! kind tagged with `x-kubernetes-group-version-kind`, which is what `kubectl explain` looks for. The
//! PATCH operations deliberately declare no request body: kubectl then builds strategic merge patches
//! from its compiled-in types, as for every built-in kind (kubectl-compat.md §2.3).

use axum::{
    extract::Path,
    http::header,
    response::{IntoResponse, Response},
};
use k8s_openapi::schemars;
use serde_json::{Map, Value, json};

use super::{
    KUBERNETES_MINOR,
    registry::{RESOURCES, ResourceInfo},
    status::ApiError,
};

/// A version stamp for the hashed URLs: documents change only with the binary.
const HASH: &str = env!("CARGO_PKG_VERSION");

fn gv_path(r: &ResourceInfo) -> String {
    if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    }
}

/// `GET /openapi/v3`: one entry per served group/version.
pub async fn index() -> Response {
    let mut paths = Map::new();
    for r in RESOURCES {
        let gv = gv_path(r);
        let url = format!("/openapi/v3/{gv}?hash={HASH}");
        paths
            .entry(gv)
            .or_insert_with(|| json!({ "serverRelativeURL": url }));
    }
    axum::Json(json!({ "paths": paths })).into_response()
}

/// `GET /openapi/v3/<api/v1 | apis/g/v>`.
pub async fn group_version(Path(gv): Path<String>) -> Response {
    let resources: Vec<&ResourceInfo> = RESOURCES.iter().filter(|r| gv_path(r) == gv).collect();
    if resources.is_empty() {
        return ApiError::no_route(&format!("/openapi/v3/{gv}")).into_response();
    }
    let mut paths = Map::new();
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut tagged = Vec::new();
    for r in &resources {
        let schema_ref = crate::with_kind_type!(r, T => generator.subschema_for::<T>());
        if let Some(name) = schema_ref
            .as_ref()
            .and_then(|s| s.get("$ref"))
            .and_then(Value::as_str)
        {
            let name = name.rsplit('/').next().unwrap_or(name).to_owned();
            tagged.push((
                name,
                json!([{ "group": r.group, "version": r.version, "kind": r.kind }]),
            ));
        }
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true);
    for (name, gvk) in tagged {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert("x-kubernetes-group-version-kind".into(), gvk);
        }
    }
    for r in resources {
        let item = if r.namespaced {
            format!("/{gv}/namespaces/{{namespace}}/{}/{{name}}", r.resource)
        } else {
            format!("/{gv}/{}/{{name}}", r.resource)
        };
        paths.insert(item, json!({ "patch": patch_operation(r) }));
    }
    let doc = json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{KUBERNETES_MINOR}.0") },
        "paths": paths,
        "components": { "schemas": schemas },
    });
    ([(header::CACHE_CONTROL, "public, immutable")], axum::Json(doc)).into_response()
}

fn patch_operation(r: &ResourceInfo) -> Value {
    let group_title: String = r
        .group
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 0 { c.to_ascii_uppercase() } else { c })
        .collect();
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let version_title = r.version.replacen('v', "V", 1);
    let query = |name: &str, ty: &str| json!({ "name": name, "in": "query", "schema": { "type": ty } });
    json!({
        "operationId": format!("patch{}{version_title}{scope}{}", if group_title.is_empty() { "Core".to_owned() } else { group_title }, r.kind),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": { "group": r.group, "version": r.version, "kind": r.kind },
        "parameters": [
            query("dryRun", "string"),
            query("fieldManager", "string"),
            query("fieldValidation", "string"),
            query("force", "boolean"),
        ],
        "responses": { "200": { "description": "OK" } },
    })
}
