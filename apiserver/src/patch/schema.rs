//! The merge-key table: for each built-in kind, which fields of its type tree merge how under a
//! strategic merge patch.
//!
//! Upstream reads this from Go struct tags (`patchStrategy:"merge" patchMergeKey:"name"`) through
//! `apimachinery/pkg/util/strategicpatch/meta.go` (`PatchMetaFromStruct`), or from the OpenAPI
//! extensions `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key`. We have no reflection,
//! so the same facts are written down here once, as a small recursive type description: a
//! [`SchemaRef`] names a [`TypeDesc`], whose [`Field`]s say how they patch and which type their
//! values (or, for lists, their elements) have. Anything not listed patches with the default
//! strategy: maps merge key by key, lists are replaced whole. That default is also what an unknown
//! kind gets ([`SchemaRef::ANY`]).
//!
//! Sources, cross-checked by hand (the table is small and changes rarely):
//! - the struct tags in `k8s.io/api` (`core/v1`, `apps/v1`, `batch/v1`, `policy/v1`,
//!   `autoscaling/v2`) and `k8s.io/apimachinery/pkg/apis/meta/v1` (ObjectMeta);
//! - k8s-openapi 0.29's generated `DeepMerge` impls (`merge_strategies::list::map(.., |l, r| l.name ==
//!   r.name)`), which encode the server-side-apply list-map keys. Those agree with the patch merge
//!   keys below except where SSA uses a compound key (container and service `ports` add `protocol`,
//!   `topologySpreadConstraints` add `whenUnsatisfiable`); strategic merge patch uses only the first.
//!
//! Deliberately atomic (no entry), because upstream has no patch strategy on them: `tolerations`,
//! `envFrom`, `command`, `args`, `readinessGates`, `resizePolicy`, node `taints`, endpoint `subsets`,
//! EndpointSlice `endpoints`/`ports`, `containerStatuses`, StatefulSet `volumeClaimTemplates`.

use std::fmt;

/// How one field is patched: upstream's `patchStrategy` tag plus `patchMergeKey`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchStrategy {
    /// No tag: a map merges key by key, a list is replaced whole (atomic).
    Default,
    /// `patchStrategy:"replace"`: the patch value replaces the field, even when it is a map.
    Replace,
    /// `patchStrategy:"merge"`: a list of objects merges element-wise by `key`; a list of scalars
    /// (where upstream has no merge key, e.g. `finalizers`) is unioned.
    Merge {
        /// `patchMergeKey`; `None` for lists of scalars.
        key: Option<&'static str>,
    },
}

/// One field of a [`TypeDesc`] whose patch behaviour differs from the default, or whose value type
/// has such fields further down.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The JSON field name.
    pub name: &'static str,
    /// How the field merges.
    pub strategy: PatchStrategy,
    /// `retainKeys` is part of the field's strategy. Only clients use it (to build `$retainKeys`);
    /// the server applies a `$retainKeys` directive wherever it appears. Kept for completeness.
    pub retain_keys: bool,
    /// The type of the value, or of each element when the field is a list.
    pub schema: SchemaRef,
}

impl Field {
    /// A map-valued field that merges by default but has interesting fields inside.
    pub const fn object(name: &'static str, schema: SchemaRef) -> Self {
        Self {
            name,
            strategy: PatchStrategy::Default,
            retain_keys: false,
            schema,
        }
    }

    /// A list of objects merged element-wise by `key`.
    pub const fn merge_by(name: &'static str, key: &'static str, schema: SchemaRef) -> Self {
        Self {
            name,
            strategy: PatchStrategy::Merge { key: Some(key) },
            retain_keys: false,
            schema,
        }
    }

    /// A list of scalars merged as a set (union, de-duplicated).
    pub const fn merge_set(name: &'static str) -> Self {
        Self {
            name,
            strategy: PatchStrategy::Merge { key: None },
            retain_keys: false,
            schema: SchemaRef::ANY,
        }
    }

    /// A field the patch replaces wholesale.
    pub const fn replace(name: &'static str) -> Self {
        Self {
            name,
            strategy: PatchStrategy::Replace,
            retain_keys: false,
            schema: SchemaRef::ANY,
        }
    }

    /// The same field with `retainKeys` added to its strategy.
    pub const fn retain_keys(mut self) -> Self {
        self.retain_keys = true;
        self
    }
}

/// A named object type and its noteworthy fields.
#[derive(Debug)]
pub struct TypeDesc {
    /// The upstream type name, used in error messages.
    pub name: &'static str,
    /// Fields whose patch metadata matters; every other field patches with the default strategy.
    pub fields: &'static [Field],
}

/// A reference to the type of a value being patched; [`SchemaRef::ANY`] when nothing is known.
#[derive(Clone, Copy)]
pub struct SchemaRef(Option<&'static TypeDesc>);

/// What [`SchemaRef::field`] finds out about one field.
#[derive(Debug, Clone, Copy)]
pub struct FieldMeta {
    /// How the field merges.
    pub strategy: PatchStrategy,
    /// Whether `retainKeys` is part of the field's strategy.
    pub retain_keys: bool,
    /// The type of the value, or of each list element.
    pub schema: SchemaRef,
}

impl FieldMeta {
    /// The metadata of a field nothing is known about.
    pub const DEFAULT: Self = Self {
        strategy: PatchStrategy::Default,
        retain_keys: false,
        schema: SchemaRef::ANY,
    };

    /// The merge key, when the field is a keyed merge list.
    pub fn merge_key(&self) -> Option<&'static str> {
        match self.strategy {
            PatchStrategy::Merge { key } => key,
            _ => None,
        }
    }
}

impl SchemaRef {
    /// No type information: maps merge recursively, lists are replaced.
    pub const ANY: Self = Self(None);

    /// A reference to a described type.
    pub const fn of(desc: &'static TypeDesc) -> Self {
        Self(Some(desc))
    }

    /// The type's name, for error messages ("any" when unknown).
    pub fn name(&self) -> &'static str {
        self.0.map_or("any", |d| d.name)
    }

    /// How the field `name` of this type patches.
    pub fn field(&self, name: &str) -> FieldMeta {
        let Some(desc) = self.0 else {
            return FieldMeta::DEFAULT;
        };
        desc.fields
            .iter()
            .find(|f| f.name == name)
            .map_or(FieldMeta::DEFAULT, |f| FieldMeta {
                strategy: f.strategy,
                retain_keys: f.retain_keys,
                schema: f.schema,
            })
    }
}

// Only the name: the type graph may be recursive, so a derived Debug could loop forever.
impl fmt::Debug for SchemaRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SchemaRef({})", self.name())
    }
}

/// The schema for a built-in kind, by its `kind` name; [`SchemaRef::ANY`] for kinds not listed.
///
/// The API group is not needed: no two built-in kinds of the same name patch differently
/// (`Event` in `v1` and `events.k8s.io/v1` both have no merge lists).
pub fn schema_for(kind: &str) -> SchemaRef {
    let desc: &'static TypeDesc = match kind {
        "Pod" => &POD,
        "PodTemplate" => &POD_TEMPLATE,
        "Deployment" => &DEPLOYMENT,
        "ReplicaSet" => &REPLICA_SET,
        "StatefulSet" => &STATEFUL_SET,
        "DaemonSet" => &DAEMON_SET,
        "Job" => &JOB,
        "CronJob" => &CRON_JOB,
        "ReplicationController" => &REPLICATION_CONTROLLER,
        "Service" => &SERVICE,
        "Namespace" => &NAMESPACE,
        "Node" => &NODE,
        "ServiceAccount" => &SERVICE_ACCOUNT,
        "PersistentVolumeClaim" => &PERSISTENT_VOLUME_CLAIM,
        "PodDisruptionBudget" => &POD_DISRUPTION_BUDGET,
        "HorizontalPodAutoscaler" => &HORIZONTAL_POD_AUTOSCALER,
        // Kinds whose only merge lists are in ObjectMeta (ownerReferences, finalizers).
        "ConfigMap"
        | "Secret"
        | "Endpoints"
        | "EndpointSlice"
        | "Event"
        | "Lease"
        | "ControllerRevision"
        | "PersistentVolume"
        | "LimitRange"
        | "ResourceQuota"
        | "Ingress"
        | "NetworkPolicy"
        | "Role"
        | "ClusterRole"
        | "RoleBinding"
        | "ClusterRoleBinding"
        | "PriorityClass"
        | "StorageClass"
        | "CustomResourceDefinition" => &METADATA_ONLY,
        _ => return SchemaRef::ANY,
    };
    SchemaRef::of(desc)
}

// ---- metav1 -------------------------------------------------------------------------------------

static OBJECT_META: TypeDesc = TypeDesc {
    name: "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
    fields: &[
        Field::merge_by("ownerReferences", "uid", SchemaRef::ANY),
        Field::merge_set("finalizers"),
    ],
};

const META: Field = Field::object("metadata", SchemaRef::of(&OBJECT_META));

static METADATA_ONLY: TypeDesc = TypeDesc {
    name: "object",
    fields: &[META],
};

/// `status` of every kind whose status has only a `conditions` list keyed by `type`.
static CONDITIONS_STATUS: TypeDesc = TypeDesc {
    name: "status",
    fields: &[Field::merge_by("conditions", "type", SchemaRef::ANY)],
};

const CONDITIONS: Field = Field::object("status", SchemaRef::of(&CONDITIONS_STATUS));

// ---- core/v1: pods ------------------------------------------------------------------------------

/// Container and EphemeralContainer carry the same tags.
static CONTAINER: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.Container",
    fields: &[
        Field::merge_by("ports", "containerPort", SchemaRef::ANY),
        Field::merge_by("env", "name", SchemaRef::ANY),
        Field::merge_by("volumeMounts", "mountPath", SchemaRef::ANY),
        Field::merge_by("volumeDevices", "devicePath", SchemaRef::ANY),
    ],
};

static POD_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.PodSpec",
    fields: &[
        Field::merge_by("volumes", "name", SchemaRef::ANY).retain_keys(),
        Field::merge_by("initContainers", "name", SchemaRef::of(&CONTAINER)),
        Field::merge_by("containers", "name", SchemaRef::of(&CONTAINER)),
        Field::merge_by("ephemeralContainers", "name", SchemaRef::of(&CONTAINER)),
        Field::merge_by("imagePullSecrets", "name", SchemaRef::ANY),
        Field::merge_by("hostAliases", "ip", SchemaRef::ANY),
        Field::merge_by("topologySpreadConstraints", "topologyKey", SchemaRef::ANY),
        Field::merge_by("schedulingGates", "name", SchemaRef::ANY),
        Field::merge_by("resourceClaims", "name", SchemaRef::ANY).retain_keys(),
    ],
};

static POD_STATUS: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.PodStatus",
    fields: &[
        Field::merge_by("conditions", "type", SchemaRef::ANY),
        Field::merge_by("podIPs", "ip", SchemaRef::ANY),
        Field::merge_by("hostIPs", "ip", SchemaRef::ANY),
        Field::merge_by("resourceClaimStatuses", "name", SchemaRef::ANY).retain_keys(),
    ],
};

static POD: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.Pod",
    fields: &[
        META,
        Field::object("spec", SchemaRef::of(&POD_SPEC)),
        Field::object("status", SchemaRef::of(&POD_STATUS)),
    ],
};

static POD_TEMPLATE_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.PodTemplateSpec",
    fields: &[META, Field::object("spec", SchemaRef::of(&POD_SPEC))],
};

const TEMPLATE: Field = Field::object("template", SchemaRef::of(&POD_TEMPLATE_SPEC));

static POD_TEMPLATE: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.PodTemplate",
    fields: &[META, TEMPLATE],
};

// ---- workloads ----------------------------------------------------------------------------------

/// The spec of ReplicaSet, StatefulSet, DaemonSet, Job and ReplicationController: only the pod
/// template matters for patching.
static TEMPLATED_SPEC: TypeDesc = TypeDesc {
    name: "spec",
    fields: &[TEMPLATE],
};

/// The fields of workloads whose spec holds a pod template and whose status holds conditions.
const TEMPLATED_WORKLOAD: &[Field] = &[
    META,
    Field::object("spec", SchemaRef::of(&TEMPLATED_SPEC)),
    CONDITIONS,
];

static DEPLOYMENT_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.apps.v1.DeploymentSpec",
    // `strategy` is `retainKeys`: switching to Recreate sends `$retainKeys: [type]`, which drops
    // `rollingUpdate` (kubectl-compat §2.4).
    fields: &[TEMPLATE, Field::object("strategy", SchemaRef::ANY).retain_keys()],
};

static DEPLOYMENT: TypeDesc = TypeDesc {
    name: "io.k8s.api.apps.v1.Deployment",
    fields: &[
        META,
        Field::object("spec", SchemaRef::of(&DEPLOYMENT_SPEC)),
        CONDITIONS,
    ],
};

static REPLICA_SET: TypeDesc = TypeDesc {
    name: "io.k8s.api.apps.v1.ReplicaSet",
    fields: TEMPLATED_WORKLOAD,
};
static STATEFUL_SET: TypeDesc = TypeDesc {
    name: "io.k8s.api.apps.v1.StatefulSet",
    fields: TEMPLATED_WORKLOAD,
};
static DAEMON_SET: TypeDesc = TypeDesc {
    name: "io.k8s.api.apps.v1.DaemonSet",
    fields: TEMPLATED_WORKLOAD,
};
static JOB: TypeDesc = TypeDesc {
    name: "io.k8s.api.batch.v1.Job",
    fields: TEMPLATED_WORKLOAD,
};
static REPLICATION_CONTROLLER: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.ReplicationController",
    fields: TEMPLATED_WORKLOAD,
};

static JOB_TEMPLATE_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.batch.v1.JobTemplateSpec",
    fields: &[META, Field::object("spec", SchemaRef::of(&TEMPLATED_SPEC))],
};

static CRON_JOB_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.batch.v1.CronJobSpec",
    fields: &[Field::object("jobTemplate", SchemaRef::of(&JOB_TEMPLATE_SPEC))],
};

static CRON_JOB: TypeDesc = TypeDesc {
    name: "io.k8s.api.batch.v1.CronJob",
    fields: &[META, Field::object("spec", SchemaRef::of(&CRON_JOB_SPEC))],
};

// ---- services, namespaces, nodes, accounts ------------------------------------------------------

static SERVICE_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.ServiceSpec",
    fields: &[Field::merge_by("ports", "port", SchemaRef::ANY)],
};

static SERVICE: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.Service",
    fields: &[
        META,
        Field::object("spec", SchemaRef::of(&SERVICE_SPEC)),
        CONDITIONS,
    ],
};

static NAMESPACE: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.Namespace",
    fields: &[META, CONDITIONS],
};

static NODE_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.NodeSpec",
    fields: &[Field::merge_set("podCIDRs")],
};

static NODE_STATUS: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.NodeStatus",
    fields: &[
        Field::merge_by("conditions", "type", SchemaRef::ANY),
        Field::merge_by("addresses", "type", SchemaRef::ANY),
    ],
};

static NODE: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.Node",
    fields: &[
        META,
        Field::object("spec", SchemaRef::of(&NODE_SPEC)),
        Field::object("status", SchemaRef::of(&NODE_STATUS)),
    ],
};

static SERVICE_ACCOUNT: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.ServiceAccount",
    // `imagePullSecrets` of a ServiceAccount has no strategy upstream (unlike the PodSpec field).
    fields: &[META, Field::merge_by("secrets", "name", SchemaRef::ANY)],
};

static PERSISTENT_VOLUME_CLAIM: TypeDesc = TypeDesc {
    name: "io.k8s.api.core.v1.PersistentVolumeClaim",
    fields: &[META, CONDITIONS],
};

static PDB_SPEC: TypeDesc = TypeDesc {
    name: "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
    fields: &[Field::replace("selector")],
};

static POD_DISRUPTION_BUDGET: TypeDesc = TypeDesc {
    name: "io.k8s.api.policy.v1.PodDisruptionBudget",
    fields: &[META, Field::object("spec", SchemaRef::of(&PDB_SPEC)), CONDITIONS],
};

static HORIZONTAL_POD_AUTOSCALER: TypeDesc = TypeDesc {
    name: "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    fields: &[META, CONDITIONS],
};

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows a dotted path of fields, the last one being the field asked about.
    fn meta_at(kind: &str, path: &str) -> FieldMeta {
        let mut schema = schema_for(kind);
        let mut parts = path.split('.').peekable();
        loop {
            let meta = schema.field(parts.next().unwrap_or_default());
            if parts.peek().is_none() {
                return meta;
            }
            schema = meta.schema;
        }
    }

    #[test]
    fn merge_keys_of_built_in_kinds_follow_upstream_struct_tags() {
        let keyed = [
            ("Pod", "metadata.ownerReferences", "uid"),
            ("Pod", "spec.containers", "name"),
            ("Pod", "spec.initContainers", "name"),
            ("Pod", "spec.ephemeralContainers", "name"),
            ("Pod", "spec.volumes", "name"),
            ("Pod", "spec.imagePullSecrets", "name"),
            ("Pod", "spec.hostAliases", "ip"),
            ("Pod", "spec.topologySpreadConstraints", "topologyKey"),
            ("Pod", "spec.resourceClaims", "name"),
            ("Pod", "status.conditions", "type"),
            ("Pod", "status.podIPs", "ip"),
            ("Deployment", "spec.template.spec.containers", "name"),
            ("StatefulSet", "spec.template.spec.volumes", "name"),
            ("DaemonSet", "spec.template.spec.containers", "name"),
            ("ReplicaSet", "status.conditions", "type"),
            ("Job", "spec.template.spec.initContainers", "name"),
            (
                "CronJob",
                "spec.jobTemplate.spec.template.spec.containers",
                "name",
            ),
            ("Service", "spec.ports", "port"),
            ("Node", "status.addresses", "type"),
            ("Node", "status.conditions", "type"),
            ("ServiceAccount", "secrets", "name"),
            ("ConfigMap", "metadata.ownerReferences", "uid"),
            ("Lease", "metadata.ownerReferences", "uid"),
        ];
        for (kind, path, key) in keyed {
            assert_eq!(meta_at(kind, path).merge_key(), Some(key), "{kind} {path}");
        }
        let container = schema_for("Deployment")
            .field("spec")
            .schema
            .field("template")
            .schema;
        let container = container.field("spec").schema.field("containers").schema;
        for (field, key) in [
            ("ports", "containerPort"),
            ("env", "name"),
            ("volumeMounts", "mountPath"),
            ("volumeDevices", "devicePath"),
        ] {
            assert_eq!(container.field(field).merge_key(), Some(key), "{field}");
        }
    }

    #[test]
    fn primitive_sets_atomic_lists_and_replace_maps() {
        let set = PatchStrategy::Merge { key: None };
        assert_eq!(meta_at("Secret", "metadata.finalizers").strategy, set);
        assert_eq!(meta_at("Node", "spec.podCIDRs").strategy, set);
        for (kind, path) in [
            ("Pod", "spec.tolerations"),
            ("Pod", "spec.readinessGates"),
            ("Node", "spec.taints"),
            ("Endpoints", "subsets"),
            ("ServiceAccount", "imagePullSecrets"),
        ] {
            assert_eq!(
                meta_at(kind, path).strategy,
                PatchStrategy::Default,
                "{kind} {path}"
            );
        }
        assert_eq!(
            meta_at("PodDisruptionBudget", "spec.selector").strategy,
            PatchStrategy::Replace
        );
        assert!(meta_at("Deployment", "spec.strategy").retain_keys);
        assert!(meta_at("Pod", "spec.volumes").retain_keys);
    }

    #[test]
    fn unknown_kinds_and_fields_have_no_metadata() {
        let any = schema_for("Widget");
        assert_eq!(any.name(), "any");
        assert_eq!(any.field("spec").strategy, PatchStrategy::Default);
        assert_eq!(
            meta_at("Pod", "spec.nodeSelector").strategy,
            PatchStrategy::Default
        );
        assert_eq!(
            format!("{:?}", schema_for("Pod")),
            "SchemaRef(io.k8s.api.core.v1.Pod)"
        );
    }
}
