//! The kinds served and what differs between them: group/version, names, scope, subresources,
//! defaults and validation (upstream's `pkg/registry/<group>/<kind>/strategy.go`, in miniature).
//! Adding a kind is one entry in [`RESOURCES`] (plus its defaults in [`super::defaults`] and its
//! rules in [`super::validation`]).

use serde_json::Value;

use super::defaults;

/// A field error: (field path, reason, message), as in a 422's `details.causes`.
pub type FieldError = (String, String, String);

/// A subresource a kind has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: the status is written only through it.
    Status,
    /// `/scale`: an autoscaling/v1 Scale view of `spec.replicas`.
    Scale,
    /// `pods/binding`: the scheduler assigns a pod to a node.
    Binding,
    /// `pods/eviction`: a delete that honours disruption budgets (policy/v1 Eviction).
    Eviction,
    /// `pods/log`, proxied to the pod's kubelet.
    Log,
    /// `pods/exec`, proxied to the pod's kubelet.
    Exec,
    /// `pods/attach`, proxied to the pod's kubelet.
    Attach,
    /// `pods/portforward`, proxied to the pod's kubelet.
    PortForward,
    /// `namespaces/finalize`: the namespace controller removes `spec.finalizers` through it.
    Finalize,
}

impl Subresource {
    /// Every subresource, for parsing paths.
    pub const ALL: &[Subresource] = &[
        Self::Status,
        Self::Scale,
        Self::Binding,
        Self::Eviction,
        Self::Log,
        Self::Exec,
        Self::Attach,
        Self::PortForward,
        Self::Finalize,
    ];

    /// Its path segment.
    pub fn name(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::Scale => "scale",
            Self::Binding => "binding",
            Self::Eviction => "eviction",
            Self::Log => "log",
            Self::Exec => "exec",
            Self::Attach => "attach",
            Self::PortForward => "portforward",
            Self::Finalize => "finalize",
        }
    }

    /// The verbs discovery lists for it (upstream's).
    pub fn verbs(self) -> &'static [&'static str] {
        match self {
            Self::Status | Self::Scale => &["get", "patch", "update"],
            Self::Binding | Self::Eviction => &["create"],
            Self::Log => &["get"],
            Self::Exec | Self::Attach | Self::PortForward => &["create", "get"],
            Self::Finalize => &["update"],
        }
    }

    /// (group, version, kind) of what it takes and returns.
    pub fn kind(self, info: &ResourceInfo) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Status | Self::Finalize | Self::Log => (info.group, info.version, info.kind),
            Self::Scale => ("autoscaling", "v1", "Scale"),
            Self::Binding => ("", "v1", "Binding"),
            Self::Eviction => ("policy", "v1", "Eviction"),
            Self::Exec => ("", "v1", "PodExecOptions"),
            Self::Attach => ("", "v1", "PodAttachOptions"),
            Self::PortForward => ("", "v1", "PodPortForwardOptions"),
        }
    }
}

/// One served resource.
#[derive(Debug)]
pub struct ResourceInfo {
    /// API group ("" for core).
    pub group: &'static str,
    /// API version within the group.
    pub version: &'static str,
    /// Plural resource name in the URL, e.g. `configmaps`.
    pub resource: &'static str,
    /// Singular name (`kubectl get configmap`).
    pub singular: &'static str,
    /// Kind of its objects, e.g. `ConfigMap`.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// `kubectl get cm`.
    pub short_names: &'static [&'static str],
    /// `kubectl get all`.
    pub categories: &'static [&'static str],
    /// Subresources served.
    pub subresources: &'static [Subresource],
    /// Fills defaults on create and update (upstream's defaulting functions).
    pub default: fn(&mut Value),
}

const BASE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    resource: "",
    singular: "",
    kind: "",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    default: |_| {},
};

use Subresource::{Attach, Binding, Eviction, Exec, Finalize, Log, PortForward, Scale, Status};

/// Every resource the server serves.
pub static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        resource: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short_names: &["ns"],
        subresources: &[Status, Finalize],
        default: defaults::namespace,
        ..BASE
    },
    ResourceInfo {
        resource: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        short_names: &["cm"],
        ..BASE
    },
    ResourceInfo {
        resource: "secrets",
        singular: "secret",
        kind: "Secret",
        default: defaults::secret,
        ..BASE
    },
    ResourceInfo {
        resource: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        short_names: &["sa"],
        ..BASE
    },
    ResourceInfo {
        resource: "pods",
        singular: "pod",
        kind: "Pod",
        short_names: &["po"],
        categories: &["all"],
        subresources: &[Status, Binding, Eviction, Log, Exec, Attach, PortForward],
        default: defaults::pod,
        ..BASE
    },
    ResourceInfo {
        resource: "services",
        singular: "service",
        kind: "Service",
        short_names: &["svc"],
        categories: &["all"],
        subresources: &[Status],
        default: defaults::service,
        ..BASE
    },
    ResourceInfo {
        resource: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        short_names: &["ep"],
        ..BASE
    },
    ResourceInfo {
        resource: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short_names: &["no"],
        subresources: &[Status],
        ..BASE
    },
    ResourceInfo {
        resource: "events",
        singular: "event",
        kind: "Event",
        short_names: &["ev"],
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        resource: "deployments",
        singular: "deployment",
        kind: "Deployment",
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[Status, Scale],
        default: defaults::deployment,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        resource: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[Status, Scale],
        default: defaults::replicaset,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        resource: "statefulsets",
        singular: "statefulset",
        kind: "StatefulSet",
        short_names: &["sts"],
        categories: &["all"],
        subresources: &[Status, Scale],
        default: defaults::statefulset,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        resource: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        short_names: &["ds"],
        categories: &["all"],
        subresources: &[Status],
        default: defaults::daemonset,
        ..BASE
    },
    ResourceInfo {
        group: "batch",
        resource: "jobs",
        singular: "job",
        kind: "Job",
        categories: &["all"],
        subresources: &[Status],
        default: defaults::job,
        ..BASE
    },
    ResourceInfo {
        group: "apps",
        resource: "controllerrevisions",
        singular: "controllerrevision",
        kind: "ControllerRevision",
        ..BASE
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        resource: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        ..BASE
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        resource: "leases",
        singular: "lease",
        kind: "Lease",
        ..BASE
    },
    // The same objects as core events, in the newer shape (see conversion.rs).
    ResourceInfo {
        group: "events.k8s.io",
        resource: "events",
        singular: "event",
        kind: "Event",
        ..BASE
    },
];

/// Looks up a resource by group, version and plural name.
pub fn find(group: &str, version: &str, resource: &str) -> Option<&'static ResourceInfo> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.resource == resource)
}

/// The groups served (other than core), in the order discovery lists them.
pub fn groups() -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    groups
}

impl ResourceInfo {
    /// `apiVersion` of its objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The qualified resource as upstream's messages print it: `configmaps`, `deployments.apps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_owned()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    /// Whether the kind has `sub`.
    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key prefix of every object of this resource (in `namespace`, if given).
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/registry/{}/{ns}/", self.resource),
            _ => format!("/registry/{}/", self.resource),
        }
    }

    /// The storage key of one object: `/registry/<resource>/[<namespace>/]<name>`.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        format!("{}{name}", self.prefix(namespace))
    }

    /// The kind of this resource's list (`ConfigMapList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The fields `fieldSelector` may name for this kind (upstream's per-kind field label conversion).
    pub fn selectable_fields(&self) -> &'static [&'static str] {
        match self.kind {
            "Pod" => &[
                "metadata.name",
                "metadata.namespace",
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.podIPs",
                "status.nominatedNodeName",
            ],
            "Event" => &[
                "metadata.name",
                "metadata.namespace",
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ],
            "Secret" => &["metadata.name", "metadata.namespace", "type"],
            "Node" => &["metadata.name", "spec.unschedulable"],
            "Namespace" => &["metadata.name", "status.phase"],
            "ReplicaSet" => &["metadata.name", "metadata.namespace", "status.replicas"],
            _ => &["metadata.name", "metadata.namespace"],
        }
    }

    /// The value of a selectable field of `obj`, as a field selector compares it.
    pub fn field_value(&self, obj: &Value, field: &str) -> Option<String> {
        let v = match field {
            // An event's source is `source.component`; status.podIPs compares the first IP.
            "source" => &obj["source"]["component"],
            "status.podIPs" => &obj["status"]["podIPs"][0]["ip"],
            _ => field.split('.').fold(obj, |v, part| &v[part]),
        };
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            // Upstream's field sets hold "" for an absent string and "false" for an absent bool.
            Value::Null if matches!(field, "spec.hostNetwork" | "spec.unschedulable") => Some("false".into()),
            _ => Some(String::new()),
        }
    }

    /// Whether objects are converted between the stored shape and this version (see conversion.rs).
    pub fn converts(&self) -> bool {
        self.group == "events.k8s.io"
    }

    /// Whether `metadata.generation` counts spec changes (the workloads controllers roll out).
    pub fn tracks_generation(&self) -> bool {
        (self.group == "apps" && self.kind != "ControllerRevision") || self.kind == "Job"
    }
}
