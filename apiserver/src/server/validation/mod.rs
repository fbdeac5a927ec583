//! Validation of the built-in kinds, as upstream's validation code checks them, over objects held
//! as JSON after defaulting. Mirrors, in miniature and in our own code:
//!
//! - kubernetes `pkg/apis/core/validation/validation.go` (and `events.go`): Pod, pod templates,
//!   Service, ConfigMap, Secret, Namespace, Node, ServiceAccount, Endpoints, Event;
//! - kubernetes `pkg/apis/apps/validation/validation.go`: Deployment, ReplicaSet, StatefulSet,
//!   DaemonSet, ControllerRevision;
//! - kubernetes `pkg/apis/batch/validation/validation.go`: Job;
//! - kubernetes `pkg/apis/discovery/validation` and `pkg/apis/coordination/validation`: EndpointSlice,
//!   Lease (basics);
//! - apimachinery `pkg/api/validation` (ObjectMeta), `pkg/apis/meta/v1/validation` (labels,
//!   selectors), `pkg/util/validation` (names, ports, keys, IPs) and `pkg/util/validation/field`
//!   (paths and the exact message of each error type);
//! - apimachinery `pkg/api/resource` (quantities).
//!
//! Each error is a [`FieldError`] `(field, reason, message)` whose message is upstream's
//! `field.Error.ErrorBody()`, e.g. `("spec.containers[0].image", "FieldValueRequired", "Required value")`,
//! ready for [`ApiError::invalid`](super::status::ApiError::invalid).

use serde_json::Value;

use super::registry::FieldError;

mod apps;
mod batch;
mod container;
mod field;
mod kinds;
mod meta;
mod names;
mod pod;
pub mod quantity;
mod service;
mod volume;

#[cfg(test)]
mod tests;

use field::Errs;
use meta::{Mode, Scope};
use names::NameFn;

/// Field errors of `obj`, a `kind` about to be created (after defaulting and name generation);
/// empty when it is valid.
pub fn validate_create(kind: &str, obj: &Value) -> Vec<FieldError> {
    let mut errs = Errs::new();
    validate(kind, obj, Mode::Create, &mut errs);
    errs
}

/// Field errors of `new`, an update of `old` (both after defaulting): the create rules (without
/// re-checking the name's format, as upstream), plus what may not change — name and namespace,
/// workload selectors, most of a StatefulSet's and a Pod's spec, the data of an immutable
/// ConfigMap or Secret, ….
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Vec<FieldError> {
    let mut errs = Errs::new();
    meta::object_meta_update(new, old, &mut errs);
    validate(kind, new, Mode::Update, &mut errs);
    match kind {
        "Pod" => pod::pod_update(new, old, &mut errs),
        "Deployment" | "ReplicaSet" | "DaemonSet" | "StatefulSet" | "ControllerRevision" => {
            apps::update(kind, new, old, &mut errs);
        }
        "Job" => batch::update(new, old, &mut errs),
        "ConfigMap" | "Secret" => kinds::config_update(kind, new, old, &mut errs),
        "Service" => service::service_update(new, old, &mut errs),
        "Node" => kinds::node_update(new, old, &mut errs),
        "Event" => kinds::event_update(new, old, &mut errs),
        "EndpointSlice" => kinds::endpoint_slice_update(new, old, &mut errs),
        _ => {}
    }
    errs
}

fn validate(kind: &str, obj: &Value, mode: Mode, errs: &mut Errs) {
    match kind {
        "Pod" => pod::pod(obj, mode, errs),
        "Service" => service::service(obj, mode, errs),
        "Deployment" => apps::deployment(obj, mode, errs),
        "ReplicaSet" => apps::replica_set(obj, mode, errs),
        "StatefulSet" => apps::stateful_set(obj, mode, errs),
        "DaemonSet" => apps::daemon_set(obj, mode, errs),
        "ControllerRevision" => apps::controller_revision(obj, mode, errs),
        "Job" => batch::job(obj, mode, errs),
        "ConfigMap" => kinds::config_map(obj, mode, errs),
        "Secret" => kinds::secret(obj, mode, errs),
        "Namespace" => kinds::namespace(obj, mode, errs),
        "ServiceAccount" => kinds::service_account(obj, mode, errs),
        "Node" => kinds::node(obj, mode, errs),
        "Endpoints" => kinds::endpoints(obj, mode, errs),
        "EndpointSlice" => kinds::endpoint_slice(obj, mode, errs),
        "Lease" => kinds::lease(obj, mode, errs),
        "Event" => kinds::event(obj, mode, errs),
        _ => meta::object_meta(obj, Scope::Unknown, NameFn::Subdomain, mode, errs),
    }
}
