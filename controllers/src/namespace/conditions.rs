//! The status conditions a namespace being deleted reports, as upstream's
//! pkg/controller/namespace/deletion/status_condition_utils.go: what failed (discovery, deleting
//! content) and what remains (objects, and the finalizers holding them). Pure: the deleter collects
//! what it found and [`update_conditions`] merges it into the namespace's conditions.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::NamespaceCondition, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp,
};

/// Discovery of the namespaced resources failed.
pub const DELETION_DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
/// Group versions could not be parsed (never the case here: discovery gives them parsed).
pub const DELETION_GV_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
/// Deleting some resource's content failed.
pub const DELETION_CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
/// Objects remain in the namespace.
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
/// Objects remain because of their finalizers.
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

/// The condition types the namespace controller maintains, in upstream's order.
pub const CONDITION_TYPES: [&str; 5] = [
    DELETION_DISCOVERY_FAILURE,
    DELETION_GV_PARSING_FAILURE,
    DELETION_CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

/// The reason and message of a condition type when all is well (status False).
fn ok(condition_type: &str) -> (&'static str, &'static str) {
    match condition_type {
        DELETION_DISCOVERY_FAILURE => ("ResourcesDiscovered", "All resources successfully discovered"),
        DELETION_GV_PARSING_FAILURE => ("ParsedGroupVersions", "All legacy kube types successfully parsed"),
        DELETION_CONTENT_FAILURE => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        CONTENT_REMAINING => ("ContentRemoved", "All content successfully removed"),
        _ => (
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        ),
    }
}

/// What one deletion pass found (upstream's `namespaceConditionUpdater` inputs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeletionReport {
    /// Discovery failed with this message.
    pub discovery_error: Option<String>,
    /// Errors deleting content, one per resource.
    pub content_errors: Vec<String>,
    /// Objects remaining per resource, keyed `<resource>.<group>`.
    pub remaining: BTreeMap<String, usize>,
    /// Objects remaining per finalizer they carry.
    pub finalizers: BTreeMap<String, usize>,
}

fn condition(
    condition_type: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> NamespaceCondition {
    NamespaceCondition {
        type_: condition_type.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message),
        last_transition_time: Some(Time(now)),
    }
}

/// The failing conditions the report calls for (types not listed are fine).
pub fn failing_conditions(report: &DeletionReport, now: Timestamp) -> Vec<NamespaceCondition> {
    let mut out = Vec::new();
    if let Some(message) = &report.discovery_error {
        out.push(condition(
            DELETION_DISCOVERY_FAILURE,
            "True",
            "DiscoveryFailed",
            message.clone(),
            now,
        ));
    }
    let remaining: Vec<String> = report
        .remaining
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(resource, n)| format!("{resource} has {n} resource instances"))
        .collect();
    if !remaining.is_empty() {
        out.push(condition(
            CONTENT_REMAINING,
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", sorted(remaining).join(", ")),
            now,
        ));
    }
    let finalizers: Vec<String> = report
        .finalizers
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(finalizer, n)| format!("{finalizer} in {n} resource instances"))
        .collect();
    if !finalizers.is_empty() {
        out.push(condition(
            FINALIZERS_REMAINING,
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                sorted(finalizers).join(", ")
            ),
            now,
        ));
    }
    if !report.content_errors.is_empty() {
        out.push(condition(
            DELETION_CONTENT_FAILURE,
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                report.content_errors.len(),
                sorted(report.content_errors.clone()).join(", ")
            ),
            now,
        ));
    }
    out
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Merges the report into `conditions` (upstream's `updateConditions`): each maintained type is set
/// to its failing condition or its "ok" variant; a condition keeps its lastTransitionTime unless its
/// status changes; other types are left alone. Returns whether anything changed.
pub fn update_conditions(
    conditions: &mut Vec<NamespaceCondition>,
    report: &DeletionReport,
    now: Timestamp,
) -> bool {
    let failing = failing_conditions(report, now);
    let mut changed = false;
    for condition_type in CONDITION_TYPES {
        let new = failing
            .iter()
            .find(|c| c.type_ == condition_type)
            .cloned()
            .unwrap_or_else(|| {
                let (reason, message) = ok(condition_type);
                condition(condition_type, "False", reason, message.to_owned(), now)
            });
        match conditions.iter_mut().find(|c| c.type_ == condition_type) {
            None => {
                conditions.push(new);
                changed = true;
            }
            Some(old)
                if old.status != new.status || old.message != new.message || old.reason != new.reason =>
            {
                if old.status != new.status {
                    old.last_transition_time = new.last_transition_time;
                }
                old.status = new.status;
                old.reason = new.reason;
                old.message = new.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_000).expect("time")
    }

    fn find<'a>(conditions: &'a [NamespaceCondition], t: &str) -> &'a NamespaceCondition {
        conditions.iter().find(|c| c.type_ == t).expect(t)
    }

    #[test]
    fn remaining_content_and_finalizers_are_reported_sorted() {
        let report = DeletionReport {
            remaining: BTreeMap::from([
                ("deployments.apps".to_owned(), 5),
                ("daemonsets.apps".to_owned(), 5),
                ("pods.".to_owned(), 0),
            ]),
            finalizers: BTreeMap::from([("service-catalog".to_owned(), 6), ("kubedb".to_owned(), 5)]),
            ..Default::default()
        };
        let conditions = failing_conditions(&report, now());
        let remaining = find(&conditions, CONTENT_REMAINING);
        assert_eq!(remaining.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            remaining.message.as_deref(),
            Some(
                "Some resources are remaining: daemonsets.apps has 5 resource instances, \
                 deployments.apps has 5 resource instances"
            )
        );
        let finalizers = find(&conditions, FINALIZERS_REMAINING);
        assert_eq!(finalizers.reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(
            finalizers.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: kubedb in 5 resource instances, \
                 service-catalog in 6 resource instances"
            )
        );
        assert_eq!(conditions.len(), 2);
    }

    #[test]
    fn nothing_remaining_means_no_failing_condition() {
        assert!(failing_conditions(&DeletionReport::default(), now()).is_empty());
    }

    #[test]
    fn content_errors_make_one_condition() {
        let report = DeletionReport {
            content_errors: vec!["b failed".into(), "a failed".into()],
            ..Default::default()
        };
        let conditions = failing_conditions(&report, now());
        let failure = find(&conditions, DELETION_CONTENT_FAILURE);
        assert_eq!(failure.reason.as_deref(), Some("ContentDeletionFailed"));
        assert_eq!(
            failure.message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: a failed, b failed")
        );
    }

    #[test]
    fn update_fills_every_type_keeps_others_and_only_moves_time_on_status_change() {
        let mut conditions = vec![NamespaceCondition {
            type_: "Unknown".into(),
            status: "True".into(),
            ..Default::default()
        }];
        let failing = DeletionReport {
            remaining: BTreeMap::from([("configmaps.".to_owned(), 1)]),
            ..Default::default()
        };
        assert!(update_conditions(&mut conditions, &failing, now()));
        assert_eq!(conditions.len(), 6);
        assert_eq!(conditions[0].type_, "Unknown");
        let types: Vec<&str> = conditions[1..].iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, CONDITION_TYPES);
        assert_eq!(find(&conditions, CONTENT_REMAINING).status, "True");
        let ok = find(&conditions, DELETION_DISCOVERY_FAILURE);
        assert_eq!(ok.status, "False");
        assert_eq!(ok.reason.as_deref(), Some("ResourcesDiscovered"));
        assert_eq!(
            find(&conditions, FINALIZERS_REMAINING).reason.as_deref(),
            Some("ContentHasNoFinalizers")
        );

        // The same report again changes nothing.
        let later = Timestamp::from_second(1_700_000_100).expect("time");
        assert!(!update_conditions(&mut conditions, &failing, later));

        // A new message with the same status keeps the transition time; a new status moves it.
        let more = DeletionReport {
            remaining: BTreeMap::from([("configmaps.".to_owned(), 2)]),
            ..Default::default()
        };
        assert!(update_conditions(&mut conditions, &more, later));
        assert_eq!(
            find(&conditions, CONTENT_REMAINING).last_transition_time,
            Some(Time(now()))
        );
        assert!(update_conditions(
            &mut conditions,
            &DeletionReport::default(),
            later
        ));
        let removed = find(&conditions, CONTENT_REMAINING);
        assert_eq!(removed.status, "False");
        assert_eq!(removed.reason.as_deref(), Some("ContentRemoved"));
        assert_eq!(removed.last_transition_time, Some(Time(later)));
    }
}
