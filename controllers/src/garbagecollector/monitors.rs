//! What the garbage collector watches: discovery of the resources that support list, watch and
//! delete (upstream's `GetDeletableResources`), a REST mapper from an ownerReference's
//! apiVersion/kind to a resource, and one metadata-only watch per resource feeding the graph
//! (upstream's `monitors` in graph_builder.go, `resyncMonitors`), as upstream's metadata informers.
//!
//! A watch that restarts relists: objects that vanished meanwhile are reported as deleted, as an
//! informer's `Replace` does, so the graph never keeps a node for an object that is gone.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, PartialObjectMeta},
    discovery::{Discovery, Scope, verbs},
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::mpsc::UnboundedSender;

use super::graph::{GraphEvent, Identity, Observed};

/// Resources the collector never watches (upstream's `DefaultIgnoredResources`): events, which
/// are many, short-lived and never owners.
pub const IGNORED_RESOURCES: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A resource as discovery describes it.
#[derive(Clone, Debug)]
pub struct Resource {
    /// Group, version, kind and plural.
    pub api: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

impl Resource {
    /// A key naming the resource (group/version/plural).
    pub fn key(&self) -> String {
        format!("{}/{}", self.api.api_version, self.api.plural)
    }

    /// The dynamic API for objects of this resource in `namespace` (ignored when cluster-scoped).
    pub fn api(&self, client: &Client, namespace: &str) -> Api<DynamicObject> {
        if self.namespaced {
            Api::namespaced_with(client.clone(), namespace, &self.api)
        } else {
            Api::all_with(client.clone(), &self.api)
        }
    }
}

/// Maps apiVersion + kind to a resource, for every version the server serves (upstream's
/// `restMapper`).
#[derive(Clone, Debug, Default)]
pub struct RestMapper {
    by_kind: HashMap<(String, String), Resource>,
}

impl RestMapper {
    /// The resource serving `kind` at `api_version`.
    pub fn resolve(&self, api_version: &str, kind: &str) -> Option<&Resource> {
        self.by_kind.get(&(api_version.to_owned(), kind.to_owned()))
    }
}

/// What one discovery found: the mapper, and the resources to watch (preferred versions that
/// support list, watch and delete, less the ignored ones).
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    /// Every resource by apiVersion and kind.
    pub mapper: RestMapper,
    /// The resources to watch.
    pub deletable: Vec<Resource>,
}

/// Runs discovery (aggregated when the server offers it, per group otherwise).
pub async fn discover(client: &Client) -> Result<Discovery, kube::Error> {
    match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => Ok(d),
        Err(_) => Discovery::new(client.clone()).run().await,
    }
}

/// Turns a discovery into the mapper and the resources to watch.
pub fn deletable_resources(discovery: &Discovery) -> Discovered {
    let mut out = Discovered::default();
    for group in discovery.groups() {
        for version in group.versions() {
            for (api, caps) in group.versioned_resources(version) {
                let resource = Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    api,
                };
                out.mapper
                    .by_kind
                    .entry((resource.api.api_version.clone(), resource.api.kind.clone()))
                    .or_insert(resource);
            }
        }
        for (api, caps) in group.recommended_resources() {
            let ignored = IGNORED_RESOURCES
                .iter()
                .any(|(g, r)| *g == api.group && *r == api.plural);
            let verbs_ok = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if !ignored && verbs_ok {
                out.deletable.push(Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    api,
                });
            }
        }
    }
    out
}

/// What the graph keeps of an object seen by the monitor of `resource`.
pub fn observed(resource: &Resource, obj: &PartialObjectMeta<DynamicObject>) -> Option<Observed> {
    let meta = &obj.metadata;
    Some(Observed {
        identity: Identity {
            api_version: resource.api.api_version.clone(),
            kind: resource.api.kind.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone()?,
        },
        owners: meta.owner_references.clone().unwrap_or_default(),
        being_deleted: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

/// Watches `resource` (metadata only) and sends every change to the graph until the receiver is
/// gone. Watch errors are retried with kube-runtime's default backoff.
pub async fn monitor(client: Client, resource: Resource, graph: UnboundedSender<GraphEvent>) {
    // An `Api` of `PartialObjectMeta` asks for metadata-only lists and watches.
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource.api);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    // What this monitor last saw of each object, to report those gone after a relist.
    let mut known: HashMap<String, Observed> = HashMap::new();
    let mut relisted: HashSet<String> = HashSet::new();
    while let Some(event) = stream.next().await {
        let sends = match event {
            Ok(watcher::Event::Init) => {
                relisted.clear();
                vec![]
            }
            Ok(watcher::Event::InitApply(obj)) => observed(&resource, &obj)
                .map(|o| {
                    relisted.insert(o.identity.uid.clone());
                    known.insert(o.identity.uid.clone(), o.clone());
                    GraphEvent::Upsert(o)
                })
                .into_iter()
                .collect(),
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<String> = known.keys().filter(|u| !relisted.contains(*u)).cloned().collect();
                gone.into_iter()
                    .filter_map(|uid| known.remove(&uid))
                    .map(GraphEvent::Delete)
                    .collect()
            }
            Ok(watcher::Event::Apply(obj)) => observed(&resource, &obj)
                .map(|o| {
                    known.insert(o.identity.uid.clone(), o.clone());
                    GraphEvent::Upsert(o)
                })
                .into_iter()
                .collect(),
            Ok(watcher::Event::Delete(obj)) => observed(&resource, &obj)
                .map(|o| {
                    known.remove(&o.identity.uid);
                    GraphEvent::Delete(o)
                })
                .into_iter()
                .collect(),
            Err(e) => {
                tracing::debug!(resource = %resource.key(), error = %e, "garbage collector watch failed");
                vec![]
            }
        };
        for event in sends {
            if graph.send(event).is_err() {
                return;
            }
        }
    }
}
