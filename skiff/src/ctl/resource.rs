//! The resource types the server serves, from its aggregated discovery (`/api` and `/apis` as
//! `apidiscovery.k8s.io/v2`, one request each, as kubectl fetches them), and how a name typed on the
//! command line resolves to one: plural, singular, kind or short name, optionally qualified by group
//! (`deployments.apps`, `deploy`, `Deployment`, `po`).

use anyhow::{Context, bail};
use serde_json::Value;

/// One served resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub short_names: Vec<String>,
    pub namespaced: bool,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
    pub subresources: Vec<String>,
}

impl ResourceType {
    /// `pod`, `deployment.apps`: how kubectl names the type in `-o name` and its messages.
    pub fn display(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_lowercase()
        } else {
            format!("{}.{}", self.kind.to_lowercase(), self.group)
        }
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection's URL path: in `namespace` for namespaced types (all namespaces when `None`).
    pub fn collection_path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace.filter(|_| self.namespaced) {
            Some(ns) => format!("{prefix}/namespaces/{ns}/{}", self.plural),
            None => format!("{prefix}/{}", self.plural),
        }
    }

    /// One object's URL path.
    pub fn object_path(&self, namespace: &str, name: &str) -> String {
        format!("{}/{name}", self.collection_path(Some(namespace)))
    }
}

/// Every served type, core first, then the groups in the server's order (which is how kubectl breaks
/// ties such as `events`: core/v1 before events.k8s.io).
#[derive(Debug, Default)]
pub struct Catalog {
    pub types: Vec<ResourceType>,
}

const AGGREGATED: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

impl Catalog {
    pub async fn discover(client: &kube::Client) -> anyhow::Result<Catalog> {
        let mut catalog = Catalog::default();
        for path in ["/api", "/apis"] {
            let request = http::Request::get(path)
                .header(http::header::ACCEPT, AGGREGATED)
                .body(Vec::new())?;
            let list: Value = client
                .request(request)
                .await
                .with_context(|| format!("cannot read the server's discovery ({path})"))?;
            catalog.add_discovery(&list)?;
        }
        Ok(catalog)
    }

    /// Adds the types of one `APIGroupDiscoveryList` (the preferred, i.e. first, version of each group).
    pub fn add_discovery(&mut self, list: &Value) -> anyhow::Result<()> {
        if list["kind"] != "APIGroupDiscoveryList" {
            bail!(
                "the server does not serve aggregated discovery (got kind {})",
                list["kind"]
            );
        }
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        for group in list["items"].as_array().into_iter().flatten() {
            let group_name = group["metadata"]["name"].as_str().unwrap_or("");
            let Some(version) = group["versions"].as_array().and_then(|v| v.first()) else {
                continue;
            };
            let version_name = version["version"].as_str().unwrap_or("v1");
            for r in version["resources"].as_array().into_iter().flatten() {
                let plural = r["resource"].as_str().unwrap_or_default().to_string();
                let kind = r["responseKind"]["kind"].as_str().unwrap_or_default().to_string();
                self.types.push(ResourceType {
                    group: group_name.to_string(),
                    version: version_name.to_string(),
                    singular: r["singularResource"]
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| kind.to_lowercase()),
                    kind,
                    plural,
                    short_names: strings(&r["shortNames"]),
                    namespaced: r["scope"] == "Namespaced",
                    verbs: strings(&r["verbs"]),
                    categories: strings(&r["categories"]),
                    subresources: r["subresources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s["subresource"].as_str().map(String::from))
                        .collect(),
                });
            }
        }
        Ok(())
    }

    /// The type a command-line name means: `pods`, `pod`, `po`, `Pod`, `deployments.apps`,
    /// `deployment.v1.apps`.
    pub fn resolve(&self, name: &str) -> anyhow::Result<&ResourceType> {
        let lower = name.to_lowercase();
        let (resource, group, version) = match lower.split_once('.') {
            None => (lower.as_str(), None, None),
            Some((resource, rest)) => match rest.split_once('.') {
                // `deployment.v1.apps`: a version then the group, when the first part looks like one.
                Some((v, g)) if v.starts_with('v') && v[1..].starts_with(|c: char| c.is_ascii_digit()) => {
                    (resource, Some(g), Some(v))
                }
                _ => (resource, Some(rest), None),
            },
        };
        let matches = |t: &&ResourceType| {
            (t.plural == resource
                || t.singular == resource
                || t.kind.to_lowercase() == resource
                || t.short_names.iter().any(|s| s == resource))
                && group.is_none_or(|g| t.group == g)
                && version.is_none_or(|v| t.version == v)
        };
        self.types
            .iter()
            .find(matches)
            .with_context(|| format!("the server doesn't have a resource type \"{name}\""))
    }

    /// The type of a manifest's `apiVersion` and `kind`.
    pub fn for_kind(&self, api_version: &str, kind: &str) -> anyhow::Result<&ResourceType> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.kind == kind)
            .with_context(|| {
                format!(
                    "resource mapping not found for kind \"{kind}\" in version \"{api_version}\": \
                     ensure the kind is served by the cluster"
                )
            })
    }

    /// The types of a category (`all`), as kubectl expands `kubectl get all`.
    pub fn category(&self, category: &str) -> Vec<&ResourceType> {
        self.types
            .iter()
            .filter(|t| t.categories.iter().any(|c| c == category))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.add_discovery(&serde_json::json!({
            "kind": "APIGroupDiscoveryList",
            "items": [{"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                {"resource": "pods", "responseKind": {"kind": "Pod"}, "scope": "Namespaced",
                 "singularResource": "pod", "shortNames": ["po"], "categories": ["all"],
                 "subresources": [{"subresource": "log"}, {"subresource": "exec"}]},
                {"resource": "events", "responseKind": {"kind": "Event"}, "scope": "Namespaced",
                 "singularResource": "event", "shortNames": ["ev"]},
                {"resource": "nodes", "responseKind": {"kind": "Node"}, "scope": "Cluster",
                 "singularResource": "node", "shortNames": ["no"]}]}]}]
        }))
        .unwrap();
        c.add_discovery(&serde_json::json!({
            "kind": "APIGroupDiscoveryList",
            "items": [
                {"metadata": {"name": "apps"}, "versions": [{"version": "v1", "resources": [
                    {"resource": "deployments", "responseKind": {"kind": "Deployment"},
                     "scope": "Namespaced", "singularResource": "deployment",
                     "shortNames": ["deploy"], "categories": ["all"]}]}]},
                {"metadata": {"name": "events.k8s.io"}, "versions": [{"version": "v1", "resources": [
                    {"resource": "events", "responseKind": {"kind": "Event"}, "scope": "Namespaced",
                     "singularResource": "event", "shortNames": ["ev"]}]}]}]
        }))
        .unwrap();
        c
    }

    #[test]
    fn names_resolve_as_in_kubectl() {
        let c = catalog();
        for name in ["pods", "pod", "po", "Pod", "PODS"] {
            assert_eq!(c.resolve(name).unwrap().plural, "pods", "{name}");
        }
        for name in [
            "deployments",
            "deploy",
            "deployment.apps",
            "deployments.v1.apps",
            "Deployment",
        ] {
            assert_eq!(c.resolve(name).unwrap().display(), "deployment.apps", "{name}");
        }
        // Core wins a tie, as kubectl's priority order does; a group picks the other.
        assert_eq!(c.resolve("events").unwrap().group, "");
        assert_eq!(c.resolve("events.events.k8s.io").unwrap().group, "events.k8s.io");
        assert_eq!(
            c.resolve("widgets").unwrap_err().to_string(),
            "the server doesn't have a resource type \"widgets\""
        );
        assert!(c.resolve("deployments.extensions").is_err());
    }

    #[test]
    fn paths_and_names_follow_the_api_layout() {
        let c = catalog();
        let deploy = c.resolve("deploy").unwrap();
        assert_eq!(
            deploy.object_path("web", "a"),
            "/apis/apps/v1/namespaces/web/deployments/a"
        );
        assert_eq!(deploy.collection_path(None), "/apis/apps/v1/deployments");
        let node = c.resolve("no").unwrap();
        assert_eq!(node.collection_path(Some("default")), "/api/v1/nodes");
        assert_eq!(node.display(), "node");
        assert_eq!(c.for_kind("apps/v1", "Deployment").unwrap().plural, "deployments");
        assert!(c.for_kind("apps/v2", "Deployment").is_err());
        let all: Vec<_> = c.category("all").iter().map(|t| t.plural.as_str()).collect();
        assert_eq!(all, ["pods", "deployments"]);
    }
}
