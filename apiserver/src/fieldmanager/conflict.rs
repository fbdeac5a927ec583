//! Apply errors, worded as upstream's so that kubectl prints them the same.
//!
//! Mirrors `apimachinery/pkg/util/managedfields/internal/conflict.go` (`NewConflictError`,
//! `printManager`) and `errors.NewApplyConflict`; the other failures are worded as the apply path
//! of `fieldmanager` and the patch handler word theirs.

use serde_json::{Value, json};

use super::fieldpath::{Path, go_quote};
use super::managed::Operation;

/// A field the applied configuration changes that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name (`fieldManager`).
    pub manager: String,
    /// How the other manager wrote the field.
    pub operation: Operation,
    /// The API version of an `Update` manager (part of its identity); `None` for appliers.
    pub api_version: Option<String>,
    /// The subresource the other manager wrote through, if any.
    pub subresource: Option<String>,
    /// The field, as upstream prints paths: `.spec.containers[name="web"].image`.
    pub field: String,
    pub(crate) path: Path,
}

impl Conflict {
    /// The manager as upstream's `printManager` shows it: `"kubectl"`, `"kubectl" with subresource
    /// "scale" using apps/v1`, `"kube-controller-manager" using apps/v1`. The time of an update is
    /// never part of it (the identifier conflicts are reported by has none).
    pub fn manager_description(&self) -> String {
        let mut out = go_quote(&self.manager);
        if let Some(sub) = &self.subresource {
            out.push_str(&format!(" with subresource {}", go_quote(sub)));
        }
        if let Some(version) = self
            .api_version
            .as_ref()
            .filter(|_| self.operation == Operation::Update)
        {
            out.push_str(&format!(" using {version}"));
        }
        out
    }

    /// The field as a path, for callers that compare paths rather than strings.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The message of this conflict's `StatusCause`: `conflict with "m" using apps/v1`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.manager_description())
    }
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change: 409 Conflict, unless retried with `force`.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// The configuration cannot be applied as sent (no apiVersion or kind, managedFields set):
    /// 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// The configuration or the live object does not fit the kind's list keys (a duplicate key, an
    /// item without one). Upstream answers 500 with no reason, which kubectl prints as
    /// `Error from server: failed to create typed patch object (...): ...`.
    #[error("{0}")]
    InvalidObject(String),
}

/// `Apply failed with 1 conflict: conflict with "m" using v: .path`, or for several:
/// `Apply failed with N conflicts: conflicts with "m" using v:\n- .a\n- .b\nconflicts with ...`,
/// grouped by manager in identifier order.
fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.cause_message(),
            only.field
        );
    }
    let mut lines: Vec<String> = Vec::new();
    let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
    for c in conflicts {
        let manager = c.manager_description();
        match groups.iter_mut().find(|(m, _)| *m == manager) {
            Some((_, fields)) => fields.push(&c.field),
            None => groups.push((manager, vec![&c.field])),
        }
    }
    for (manager, fields) in groups {
        lines.push(format!("conflicts with {manager}:"));
        lines.extend(fields.into_iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

impl ApplyError {
    /// The `Status` message.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The HTTP status code upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            Self::Conflicts(_) => 409,
            Self::BadRequest(_) => 400,
            Self::InvalidObject(_) => 500,
        }
    }

    /// The `Status` reason (empty for the 500, which upstream leaves unset).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Conflicts(_) => "Conflict",
            Self::BadRequest(_) => "BadRequest",
            Self::InvalidObject(_) => "",
        }
    }

    /// The `details.causes` of a conflict: one `FieldManagerConflict` per field.
    pub fn causes(&self) -> Vec<Value> {
        match self {
            Self::Conflicts(conflicts) => conflicts
                .iter()
                .map(|c| json!({"reason": "FieldManagerConflict", "message": c.cause_message(), "field": c.field}))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The whole `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message(), "code": self.code(),
        });
        if !self.reason().is_empty() {
            status["reason"] = json!(self.reason());
        }
        if let Self::Conflicts(_) = self {
            status["details"] = json!({"causes": self.causes()});
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldmanager::fieldpath::PathElement;

    fn conflict(
        manager: &str,
        operation: Operation,
        version: Option<&str>,
        sub: Option<&str>,
        field: &[&str],
    ) -> Conflict {
        let path = Path(
            field
                .iter()
                .map(|f| PathElement::Field((*f).to_owned()))
                .collect(),
        );
        Conflict {
            manager: manager.to_owned(),
            operation,
            api_version: version.map(str::to_owned),
            subresource: sub.map(str::to_owned),
            field: path.to_string(),
            path,
        }
    }

    #[test]
    fn messages_match_upstream() {
        let csa = conflict(
            "kubectl-client-side-apply",
            Operation::Update,
            Some("apps/v1"),
            None,
            &["spec", "replicas"],
        );
        let single = ApplyError::Conflicts(vec![csa.clone()]);
        assert_eq!(
            single.message(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
        assert_eq!(
            single.to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","reason":"Conflict","code":409,
                "message":"Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas",
                "details":{"causes":[{"reason":"FieldManagerConflict","message":"conflict with \"kubectl-client-side-apply\" using apps/v1","field":".spec.replicas"}]}})
        );
        let many = ApplyError::Conflicts(vec![
            csa,
            conflict(
                "kubectl-client-side-apply",
                Operation::Update,
                Some("apps/v1"),
                None,
                &["spec", "paused"],
            ),
            conflict(
                "kubectl",
                Operation::Update,
                Some("apps/v1"),
                Some("scale"),
                &["spec", "replicas"],
            ),
            conflict(
                "other",
                Operation::Apply,
                None,
                None,
                &["metadata", "labels", "a"],
            ),
        ]);
        assert_eq!(
            many.message(),
            "Apply failed with 4 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.paused\nconflicts with \"kubectl\" with subresource \"scale\" using apps/v1:\n- .spec.replicas\nconflicts with \"other\":\n- .metadata.labels.a"
        );
        assert_eq!(many.causes().len(), 4);
        let bad = ApplyError::InvalidObject("failed to create typed patch object (x)".into());
        assert_eq!(bad.to_status()["code"], 500);
        assert!(bad.to_status().get("reason").is_none());
    }
}
