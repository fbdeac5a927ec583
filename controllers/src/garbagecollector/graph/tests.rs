//! The graph's event processing, event by event, as upstream's graph_builder tests do.

use super::*;

fn id(kind: &str, ns: &str, name: &str, uid: &str) -> Identity {
    let api_version = if kind == "ReplicaSet" { "apps/v1" } else { "v1" };
    Identity {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
    }
}

fn owner_ref(owner: &Identity, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: owner.api_version.clone(),
        kind: owner.kind.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        controller: Some(true),
        block_owner_deletion: block.then_some(true),
    }
}

fn observed(identity: &Identity, owners: Vec<OwnerReference>) -> Observed {
    Observed {
        identity: identity.clone(),
        owners,
        being_deleted: false,
        finalizers: vec![],
    }
}

fn deleting(identity: &Identity, owners: Vec<OwnerReference>, finalizer: &str) -> Observed {
    Observed {
        being_deleted: true,
        finalizers: vec![finalizer.into()],
        ..observed(identity, owners)
    }
}

fn uids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn a_dependent_seen_first_makes_a_virtual_owner_to_verify() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    let pod = id("Pod", "ns", "p", "pod-1");
    let work = g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, true)])));
    assert_eq!(work.attempt_to_delete, uids(&["rs-1"]));
    let owner = g.node("rs-1").expect("virtual owner");
    assert!(owner.virtual_);
    assert_eq!(owner.identity, rs);
    assert!(owner.dependents.contains("pod-1"));

    // The owner observed: no longer virtual, and nothing to do.
    let work = g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    assert_eq!(work, Work::default());
    assert!(!g.node("rs-1").expect("owner").virtual_);
}

#[test]
fn an_owner_seen_first_gets_its_dependents_without_work() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    let pod = id("Pod", "ns", "p", "pod-1");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    let work = g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, true)])));
    assert_eq!(work, Work::default());
    assert_eq!(
        g.view("rs-1").expect("rs").dependents,
        vec![("pod-1".to_string(), false)]
    );
}

#[test]
fn deleting_an_owner_queues_its_dependents_and_remembers_it_absent() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    for n in ["a", "b"] {
        g.apply(GraphEvent::Upsert(observed(
            &id("Pod", "ns", n, n),
            vec![owner_ref(&rs, true)],
        )));
    }
    let work = g.apply(GraphEvent::Delete(observed(&rs, vec![])));
    assert_eq!(work.attempt_to_delete, uids(&["a", "b"]));
    assert!(g.node("rs-1").is_none());
    assert!(g.absent.has(&rs));

    // Deleting a dependent removes it from the graph and queues nothing (its owner is gone).
    let work = g.apply(GraphEvent::Delete(observed(
        &id("Pod", "ns", "a", "a"),
        vec![owner_ref(&rs, true)],
    )));
    assert_eq!(work, Work::default());
    assert!(g.node("a").is_none());
    assert_eq!(g.len(), 1);
}

#[test]
fn a_virtual_delete_removes_a_virtual_owner_and_queues_its_dependents() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "ghost", "never");
    let pod = id("Pod", "ns", "p", "pod-1");
    g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, false)])));
    let work = g.apply(GraphEvent::VirtualDelete(rs.clone()));
    assert_eq!(work.attempt_to_delete, uids(&["pod-1"]));
    assert!(g.node("never").is_none());
    assert!(g.absent.has(&rs));
}

#[test]
fn a_chain_is_collected_link_by_link() {
    let mut g = Graph::new();
    let a = id("ConfigMap", "ns", "a", "a");
    let b = id("ConfigMap", "ns", "b", "b");
    let c = id("ConfigMap", "ns", "c", "c");
    g.apply(GraphEvent::Upsert(observed(&a, vec![])));
    g.apply(GraphEvent::Upsert(observed(&b, vec![owner_ref(&a, false)])));
    g.apply(GraphEvent::Upsert(observed(&c, vec![owner_ref(&b, false)])));
    assert_eq!(
        g.apply(GraphEvent::Delete(observed(&a, vec![])))
            .attempt_to_delete,
        uids(&["b"])
    );
    let work = g.apply(GraphEvent::Delete(observed(&b, vec![owner_ref(&a, false)])));
    assert_eq!(work.attempt_to_delete, uids(&["c"]));
}

#[test]
fn foreground_deletion_marks_the_owner_and_queues_it_with_its_dependents() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    let pod = id("Pod", "ns", "p", "pod-1");
    let other = id("Pod", "ns", "q", "pod-2");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, true)])));
    g.apply(GraphEvent::Upsert(observed(&other, vec![owner_ref(&rs, false)])));

    let work = g.apply(GraphEvent::Upsert(deleting(&rs, vec![], FOREGROUND_FINALIZER)));
    assert_eq!(work.attempt_to_delete, uids(&["pod-1", "pod-2", "rs-1"]));
    let view = g.view("rs-1").expect("rs");
    assert!(view.deleting_dependents && view.being_deleted);
    // Only a blockOwnerDeletion reference blocks.
    assert_eq!(g.blocking_dependents("rs-1"), uids(&["pod-1"]));

    // The same state again is no transition.
    assert_eq!(
        g.apply(GraphEvent::Upsert(deleting(&rs, vec![], FOREGROUND_FINALIZER))),
        Work::default()
    );

    // A dependent gone: the owner is looked at again.
    let work = g.apply(GraphEvent::Delete(observed(&pod, vec![owner_ref(&rs, true)])));
    assert_eq!(work.attempt_to_delete, uids(&["rs-1"]));
    assert!(g.blocking_dependents("rs-1").is_empty());
}

#[test]
fn an_object_first_seen_in_foreground_deletion_is_processed_at_once() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    let work = g.apply(GraphEvent::Upsert(deleting(&rs, vec![], FOREGROUND_FINALIZER)));
    assert_eq!(work.attempt_to_delete, uids(&["rs-1"]));
    assert!(g.node("rs-1").expect("rs").deleting_dependents);
}

#[test]
fn orphan_deletion_queues_the_owner_once() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    let work = g.apply(GraphEvent::Upsert(deleting(&rs, vec![], ORPHAN_FINALIZER)));
    assert_eq!(work.attempt_to_orphan, uids(&["rs-1"]));
    assert!(work.attempt_to_delete.is_empty());
    let work = g.apply(GraphEvent::Upsert(deleting(&rs, vec![], ORPHAN_FINALIZER)));
    assert_eq!(work, Work::default());
}

#[test]
fn removing_or_unblocking_a_blocking_reference_queues_the_owner() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    let pod = id("Pod", "ns", "p", "pod-1");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, true)])));

    let work = g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, false)])));
    assert_eq!(work.attempt_to_delete, uids(&["rs-1"]));
    assert!(g.node("rs-1").expect("rs").dependents.contains("pod-1"));

    g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, true)])));
    let work = g.apply(GraphEvent::Upsert(observed(&pod, vec![])));
    assert_eq!(work.attempt_to_delete, uids(&["rs-1"]));
    assert!(g.node("rs-1").expect("rs").dependents.is_empty());
}

#[test]
fn a_reference_across_namespaces_queues_the_dependent() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns-a", "rs", "rs-1");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    let pod = id("Pod", "ns-b", "p", "pod-1");
    let work = g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, false)])));
    assert_eq!(work.attempt_to_delete, uids(&["pod-1"]));
    assert_eq!(work.invalid_namespace, vec![(pod, owner_ref(&rs, false))]);
}

#[test]
fn an_owner_observed_in_another_namespace_than_its_dependent_expected_is_reported() {
    let mut g = Graph::new();
    let pod = id("Pod", "ns-b", "p", "pod-1");
    // The pod comes first: its owner is guessed to live in ns-b.
    let rs = id("ReplicaSet", "ns-a", "rs", "rs-1");
    g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&rs, false)])));
    let work = g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    assert_eq!(work.attempt_to_delete, uids(&["pod-1"]));
    assert_eq!(work.invalid_namespace, vec![(pod, owner_ref(&rs, false))]);
}

#[test]
fn a_virtual_delete_with_other_coordinates_keeps_an_observed_owner() {
    let mut g = Graph::new();
    let rs = id("ReplicaSet", "ns", "rs", "rs-1");
    g.apply(GraphEvent::Upsert(observed(&rs, vec![])));
    // A pod names the same UID by a wrong name.
    let wrong = Identity {
        name: "wrong".into(),
        ..rs.clone()
    };
    let pod = id("Pod", "ns", "p", "pod-1");
    g.apply(GraphEvent::Upsert(observed(&pod, vec![owner_ref(&wrong, false)])));
    let work = g.apply(GraphEvent::VirtualDelete(wrong.clone()));
    assert_eq!(work.attempt_to_delete, uids(&["pod-1"]));
    assert!(g.node("rs-1").is_some());
    assert!(g.absent.has(&wrong));
}

#[test]
fn a_virtual_owner_named_two_ways_tries_the_other_identity() {
    let mut g = Graph::new();
    let first = id("ReplicaSet", "ns", "a", "x");
    let second = Identity {
        name: "b".into(),
        ..first.clone()
    };
    g.apply(GraphEvent::Upsert(observed(
        &id("Pod", "ns", "p", "p"),
        vec![owner_ref(&first, false)],
    )));
    g.apply(GraphEvent::Upsert(observed(
        &id("Pod", "ns", "q", "q"),
        vec![owner_ref(&second, false)],
    )));
    assert_eq!(g.node("x").expect("virtual").identity, first);

    let work = g.apply(GraphEvent::VirtualDelete(first.clone()));
    assert_eq!(work.attempt_to_delete, uids(&["p"]));
    assert_eq!(work.attempt_to_delete_later, uids(&["x"]));
    assert_eq!(g.node("x").expect("still virtual").identity, second);
}

#[test]
fn the_absent_owner_cache_forgets_the_oldest() {
    let mut cache = AbsentOwnerCache::default();
    for i in 0..=ABSENT_OWNER_CACHE_SIZE {
        cache.add(id("Pod", "ns", "p", &i.to_string()));
    }
    assert!(!cache.has(&id("Pod", "ns", "p", "0")));
    assert!(cache.has(&id("Pod", "ns", "p", "1")));
    assert!(cache.has(&id("Pod", "ns", "p", &ABSENT_OWNER_CACHE_SIZE.to_string())));
}
