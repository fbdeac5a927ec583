//! The dependency graph of the garbage collector: every object the monitors see, keyed by UID, with
//! its owners (its ownerReferences) and its dependents (the objects naming it as an owner), as
//! upstream's pkg/controller/garbagecollector/graph.go and the event processing of graph_builder.go
//! (`processGraphChanges`).
//!
//! This module is pure: [`Graph::apply`] takes one event (an object observed, an object deleted, or a
//! virtual delete that a worker produced after the API server said an object does not exist) and
//! returns the [`Work`] it causes, the UIDs to put on the attemptToDelete and attemptToOrphan
//! queues. An owner named by a dependent but not (yet) observed gets a *virtual* node, which a worker
//! then verifies against the API server.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

/// The finalizer of an object deleted with `propagationPolicy: Foreground` (`metav1.FinalizerDeleteDependents`).
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The finalizer of an object deleted with `propagationPolicy: Orphan` (`metav1.FinalizerOrphanDependents`).
pub const ORPHAN_FINALIZER: &str = "orphan";
/// How many owners known to be absent are remembered (upstream's `absentOwnerCache` size).
pub const ABSENT_OWNER_CACHE_SIZE: usize = 500;

/// Who an object is: the coordinates an ownerReference uses, plus the namespace (upstream's
/// `objectReference`). The namespace is empty for cluster-scoped objects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    /// `apiVersion` (`v1`, `apps/v1`).
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
}

impl Identity {
    /// The identity an ownerReference points at, guessing the dependent's namespace for the owner.
    pub fn of_owner(owner: &OwnerReference, namespace: &str) -> Self {
        Self {
            api_version: owner.api_version.clone(),
            kind: owner.kind.clone(),
            namespace: namespace.to_owned(),
            name: owner.name.clone(),
            uid: owner.uid.clone(),
        }
    }

    /// Whether `owner` names this object by all its coordinates (uid, name, kind, apiVersion).
    pub fn matches_coordinates(&self, owner: &OwnerReference) -> bool {
        owner.uid == self.uid
            && owner.name == self.name
            && owner.kind == self.kind
            && owner.api_version == self.api_version
    }

    /// Upstream's `referenceLessThan`: kind, apiVersion, namespace, name, uid.
    fn sort_key(&self) -> (&str, &str, &str, &str, &str) {
        (
            &self.kind,
            &self.api_version,
            &self.namespace,
            &self.name,
            &self.uid,
        )
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}/{}, namespace: {}, name: {}, uid: {}]",
            self.api_version, self.kind, self.namespace, self.name, self.uid
        )
    }
}

/// The part of an object the graph keeps: what a metadata-only watch delivers.
#[derive(Clone, Debug, Default)]
pub struct Observed {
    /// Who it is (apiVersion and kind are those of the watched resource).
    pub identity: Identity,
    /// `metadata.ownerReferences`.
    pub owners: Vec<OwnerReference>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub being_deleted: bool,
    /// `metadata.finalizers`.
    pub finalizers: Vec<String>,
}

impl Observed {
    fn state(&self) -> DeletionState {
        DeletionState {
            being_deleted: self.being_deleted,
            orphan: self.finalizers.iter().any(|f| f == ORPHAN_FINALIZER),
            foreground: self.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER),
        }
    }
}

/// One change to the graph.
#[derive(Clone, Debug)]
pub enum GraphEvent {
    /// An object was added or updated (an informer's add and update events).
    Upsert(Observed),
    /// A monitor saw an object deleted.
    Delete(Observed),
    /// A worker found that this identity does not exist at the API server (upstream's virtual
    /// delete event).
    VirtualDelete(Identity),
}

/// The deletion-related state of an object at its last observation, to detect transitions
/// (upstream compares the informer's old and new objects).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct DeletionState {
    being_deleted: bool,
    orphan: bool,
    foreground: bool,
}

/// One object in the graph (upstream's `node`).
#[derive(Clone, Debug)]
pub struct Node {
    /// Who it is; for a virtual node, as its first dependent named it.
    pub identity: Identity,
    /// Its ownerReferences as last observed.
    pub owners: Vec<OwnerReference>,
    /// UIDs of the objects naming it as an owner.
    pub dependents: BTreeSet<String>,
    /// Being deleted with the foregroundDeletion finalizer: waiting for its dependents.
    pub deleting_dependents: bool,
    /// `deletionTimestamp` is set (a one-way trip).
    pub being_deleted: bool,
    /// Never observed by a monitor: only known as somebody's owner.
    pub virtual_: bool,
    last: Option<DeletionState>,
}

/// What a worker needs to know about a node, copied out of the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// Who it is.
    pub identity: Identity,
    /// Never observed by a monitor.
    pub virtual_: bool,
    /// `deletionTimestamp` is set.
    pub being_deleted: bool,
    /// Waiting for its dependents (foreground deletion).
    pub deleting_dependents: bool,
    /// Its dependents: UID, and whether that dependent is itself deleting its dependents.
    pub dependents: Vec<(String, bool)>,
}

/// The queue work an event causes: UIDs to attempt to delete, and owners to orphan.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Work {
    /// UIDs for the attemptToDelete queue.
    pub attempt_to_delete: Vec<String>,
    /// UIDs for the attemptToDelete queue, after the item's backoff delay.
    pub attempt_to_delete_later: Vec<String>,
    /// UIDs for the attemptToOrphan queue.
    pub attempt_to_orphan: Vec<String>,
    /// Dependents naming an observed owner that lives in another namespace, with the reference
    /// (upstream reports each as an `OwnerRefInvalidNamespace` warning event).
    pub invalid_namespace: Vec<(Identity, OwnerReference)>,
}

impl Work {
    fn delete(&mut self, uid: &str) {
        if !self.attempt_to_delete.iter().any(|u| u == uid) {
            self.attempt_to_delete.push(uid.to_owned());
        }
    }
}

/// Owners verified absent, remembered (least recently added evicted first) so that a dependent's
/// dangling references need no GET each (upstream's `ReferenceCache`).
#[derive(Debug, Default)]
pub struct AbsentOwnerCache {
    set: HashSet<Identity>,
    order: VecDeque<Identity>,
}

impl AbsentOwnerCache {
    /// Remembers `identity` as absent.
    pub fn add(&mut self, identity: Identity) {
        if self.set.insert(identity.clone()) {
            self.order.push_back(identity);
            if self.order.len() > ABSENT_OWNER_CACHE_SIZE
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }

    /// Whether `identity` is known to be absent.
    pub fn has(&self, identity: &Identity) -> bool {
        self.set.contains(identity)
    }
}

/// The graph: nodes by UID, and the owners known to be absent.
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owners verified absent.
    pub absent: AbsentOwnerCache,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// The node of `uid`.
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// How many nodes the graph holds.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// A copy of what a worker needs about `uid`.
    pub fn view(&self, uid: &str) -> Option<NodeView> {
        let node = self.nodes.get(uid)?;
        Some(NodeView {
            identity: node.identity.clone(),
            virtual_: node.virtual_,
            being_deleted: node.being_deleted,
            deleting_dependents: node.deleting_dependents,
            dependents: node
                .dependents
                .iter()
                .map(|d| {
                    let deleting = self.nodes.get(d).is_some_and(|n| n.deleting_dependents);
                    (d.clone(), deleting)
                })
                .collect(),
        })
    }

    /// The dependents that block the deletion of `uid`: their reference to it has
    /// `blockOwnerDeletion: true` (upstream's `blockingDependents`).
    pub fn blocking_dependents(&self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.get(uid) else {
            return vec![];
        };
        node.dependents
            .iter()
            .filter(|d| {
                self.nodes.get(*d).is_some_and(|dep| {
                    dep.owners
                        .iter()
                        .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                })
            })
            .cloned()
            .collect()
    }

    /// Applies one event and returns the work it causes (upstream's `processGraphChanges`).
    pub fn apply(&mut self, event: GraphEvent) -> Work {
        let mut work = Work::default();
        match event {
            GraphEvent::Upsert(observed) => self.upsert(observed, &mut work),
            GraphEvent::Delete(observed) => {
                if self.nodes.contains_key(&observed.identity.uid) {
                    self.remove(&observed.identity, &mut work);
                }
            }
            GraphEvent::VirtualDelete(identity) => self.virtual_delete(identity, &mut work),
        }
        work
    }

    fn upsert(&mut self, observed: Observed, work: &mut Work) {
        let uid = observed.identity.uid.clone();
        let new_state = observed.state();
        let Some(existing) = self.nodes.get(&uid) else {
            self.nodes.insert(
                uid.clone(),
                Node {
                    identity: observed.identity.clone(),
                    owners: observed.owners.clone(),
                    dependents: BTreeSet::new(),
                    deleting_dependents: new_state.being_deleted && new_state.foreground,
                    being_deleted: new_state.being_deleted,
                    virtual_: false,
                    last: Some(new_state),
                },
            );
            self.add_dependent_to_owners(&uid, &observed.owners, work);
            // A creation and a deletion may arrive as one event: look for transitions at once.
            self.process_transitions(None, new_state, &uid, work);
            return;
        };

        if existing.virtual_ {
            // Observed at last. Dependents that named it by other coordinates may be wrong: let
            // attemptToDelete check them (if their owners are solid it does nothing).
            if existing.identity != observed.identity {
                let (_, nonmatching) = self.partition_dependents(&existing.dependents, &observed.identity);
                for dep in nonmatching {
                    if !observed.identity.namespace.is_empty() {
                        self.report_invalid_namespace(&dep, &observed.identity, work);
                    }
                    work.delete(&dep);
                }
            }
        }
        let node = self.nodes.get_mut(&uid).expect("checked above");
        if node.virtual_ {
            node.identity = observed.identity.clone();
            node.virtual_ = false;
        }
        // apiVersion or kind may change (another version of the resource was watched).
        node.identity.api_version = observed.identity.api_version.clone();
        node.identity.kind = observed.identity.kind.clone();
        let old_state = node.last;
        node.last = Some(new_state);
        if new_state.being_deleted {
            node.being_deleted = true;
        }

        let (added, removed, changed) = references_diffs(&node.owners, &observed.owners);
        if !added.is_empty() || !removed.is_empty() || !changed.is_empty() {
            node.owners = observed.owners.clone();
            self.add_unblocked_owners_to_delete_queue(&removed, &changed, work);
            self.add_dependent_to_owners(&uid, &added, work);
            for owner in &removed {
                if let Some(owner_node) = self.nodes.get_mut(&owner.uid) {
                    owner_node.dependents.remove(&uid);
                }
            }
        }
        self.process_transitions(old_state, new_state, &uid, work);
    }

    /// Adds `uid` to its owners' dependents, creating virtual nodes for owners not seen yet (and
    /// queueing them to be verified). A dependent whose reference disagrees with an owner's known
    /// coordinates is queued too (upstream's `addDependentToOwners`).
    fn add_dependent_to_owners(&mut self, uid: &str, owners: &[OwnerReference], work: &mut Work) {
        let Some(dependent) = self.nodes.get(uid).map(|n| n.identity.clone()) else {
            return;
        };
        let mut potentially_invalid = false;
        for owner in owners {
            match self.nodes.get_mut(&owner.uid) {
                Some(owner_node) => {
                    owner_node.dependents.insert(uid.to_owned());
                    if potentially_invalid {
                        continue;
                    }
                    let owner_namespaced = !owner_node.identity.namespace.is_empty();
                    let other_namespace = owner_node.identity.namespace != dependent.namespace;
                    // A namespaced owner in another namespace, a reference disagreeing with the
                    // owner's coordinates, or a virtual cluster-scoped owner named from another
                    // namespace (maybe a namespaced owner wrongly named by a cluster-scoped
                    // dependent): let attemptToDelete verify the dependent's references.
                    potentially_invalid = (other_namespace && (owner_namespaced || owner_node.virtual_))
                        || !owner_node.identity.matches_coordinates(owner);
                    if owner_namespaced && other_namespace && !owner_node.virtual_ {
                        // Observed in another namespace: definitely wrong.
                        work.invalid_namespace.push((dependent.clone(), owner.clone()));
                    }
                }
                None => {
                    self.nodes.insert(
                        owner.uid.clone(),
                        Node {
                            identity: Identity::of_owner(owner, &dependent.namespace),
                            owners: vec![],
                            dependents: BTreeSet::from([uid.to_owned()]),
                            deleting_dependents: false,
                            being_deleted: false,
                            virtual_: true,
                            last: None,
                        },
                    );
                    // A worker asks the API server whether this owner exists.
                    work.delete(&owner.uid);
                }
            }
        }
        if potentially_invalid {
            work.delete(uid);
        }
    }

    /// Records that dependent `uid` names `owner` (observed in another namespace) in vain.
    fn report_invalid_namespace(&self, uid: &str, owner: &Identity, work: &mut Work) {
        let Some(dep) = self.nodes.get(uid) else {
            return;
        };
        if dep.identity.namespace == owner.namespace {
            return;
        }
        if let Some(reference) = dep.owners.iter().find(|r| r.uid == owner.uid) {
            work.invalid_namespace
                .push((dep.identity.clone(), reference.clone()));
        }
    }

    /// A blocking reference removed or turned non-blocking may unblock a foreground deletion.
    fn add_unblocked_owners_to_delete_queue(
        &self,
        removed: &[OwnerReference],
        changed: &[(OwnerReference, OwnerReference)],
        work: &mut Work,
    ) {
        let unblocked = removed
            .iter()
            .filter(|r| r.block_owner_deletion == Some(true))
            .chain(
                changed
                    .iter()
                    .filter(|(old, new)| {
                        old.block_owner_deletion == Some(true) && new.block_owner_deletion != Some(true)
                    })
                    .map(|(_, new)| new),
            );
        for r in unblocked {
            if self.nodes.contains_key(&r.uid) {
                work.delete(&r.uid);
            }
        }
    }

    /// An object that starts being deleted with the orphan finalizer goes to attemptToOrphan; with
    /// the foregroundDeletion finalizer, it and its dependents go to attemptToDelete.
    fn process_transitions(
        &mut self,
        old: Option<DeletionState>,
        new: DeletionState,
        uid: &str,
        work: &mut Work,
    ) {
        let starts = |has: fn(&DeletionState) -> bool| {
            new.being_deleted && has(&new) && old.is_none_or(|o| !o.being_deleted || !has(&o))
        };
        if starts(|s| s.orphan) {
            work.attempt_to_orphan.push(uid.to_owned());
            return;
        }
        if starts(|s| s.foreground) {
            let Some(node) = self.nodes.get_mut(uid) else {
                return;
            };
            node.deleting_dependents = true;
            for dep in &node.dependents {
                work.delete(dep);
            }
            work.delete(uid);
        }
    }

    fn virtual_delete(&mut self, deleted: Identity, work: &mut Work) {
        let Some(existing) = self.nodes.get(&deleted.uid) else {
            return;
        };
        let mut remove = true;
        if existing.virtual_ {
            // Not observed either: we are not sure of its coordinates. Dependents that name it by
            // other coordinates keep it in the graph.
            let (matching, nonmatching) = self.partition_dependents(&existing.dependents, &deleted);
            if !nonmatching.is_empty() {
                remove = false;
                if !matching.is_empty() {
                    self.absent.add(deleted.clone());
                    for dep in &matching {
                        work.delete(dep);
                    }
                }
                if existing.identity == deleted {
                    // Try another identity the remaining dependents use.
                    if let Some(replacement) = self.alternate_owner_identity(&nonmatching, &deleted) {
                        if let Some(node) = self.nodes.get_mut(&deleted.uid) {
                            node.identity = replacement;
                        }
                        work.attempt_to_delete_later.push(deleted.uid.clone());
                    }
                }
            }
        } else if existing.identity != deleted {
            // An observed object is not removed on a virtual event for other coordinates; only the
            // dependents using those coordinates are dangling.
            remove = false;
            let (matching, _) = self.partition_dependents(&existing.dependents, &deleted);
            if !matching.is_empty() {
                self.absent.add(deleted.clone());
                for dep in &matching {
                    work.delete(dep);
                }
            }
        }
        if remove {
            self.remove(&deleted, work);
        }
    }

    /// Removes a node: its dependents are now possibly orphans, and owners waiting for their
    /// dependents to go may be done.
    fn remove(&mut self, identity: &Identity, work: &mut Work) {
        let Some(node) = self.nodes.remove(&identity.uid) else {
            return;
        };
        for owner in &node.owners {
            if let Some(owner_node) = self.nodes.get_mut(&owner.uid) {
                owner_node.dependents.remove(&identity.uid);
            }
        }
        if !node.dependents.is_empty() {
            self.absent.add(identity.clone());
        }
        for dep in &node.dependents {
            work.delete(dep);
        }
        for owner in &node.owners {
            if self.nodes.get(&owner.uid).is_some_and(|o| o.deleting_dependents) {
                work.delete(&owner.uid);
            }
        }
    }

    /// Splits `dependents` into those whose reference to `owner.uid` matches `owner`'s coordinates
    /// and those with a reference that does not (a dependent may be in both).
    fn partition_dependents(
        &self,
        dependents: &BTreeSet<String>,
        owner: &Identity,
    ) -> (Vec<String>, Vec<String>) {
        let (mut matching, mut nonmatching) = (vec![], vec![]);
        let owner_namespaced = !owner.namespace.is_empty();
        for uid in dependents {
            let Some(dep) = self.nodes.get(uid) else {
                continue;
            };
            let (mut found_match, mut found_mismatch) = (false, false);
            if owner_namespaced && owner.namespace != dep.identity.namespace {
                found_mismatch = true;
            } else {
                for r in dep.owners.iter().filter(|r| r.uid == owner.uid) {
                    if owner.matches_coordinates(r) {
                        found_match = true;
                    } else {
                        found_mismatch = true;
                    }
                }
            }
            if found_match {
                matching.push(uid.clone());
            }
            if found_mismatch {
                nonmatching.push(uid.clone());
            }
        }
        (matching, nonmatching)
    }

    /// Another identity the dependents use for `absent.uid`: the first that sorts after `absent`,
    /// else the first (upstream's `getAlternateOwnerIdentity`).
    fn alternate_owner_identity(&self, dependents: &[String], absent: &Identity) -> Option<Identity> {
        let cluster_scoped = absent.namespace.is_empty();
        let mut seen: HashSet<Identity> = HashSet::from([absent.clone()]);
        let mut first: Option<Identity> = None;
        let mut first_following: Option<Identity> = None;
        for dep in dependents.iter().filter_map(|d| self.nodes.get(d)) {
            for r in dep.owners.iter().filter(|r| r.uid == absent.uid) {
                if absent.matches_coordinates(r)
                    && (cluster_scoped || absent.namespace == dep.identity.namespace)
                {
                    continue;
                }
                let mut candidate = Identity::of_owner(r, &dep.identity.namespace);
                if cluster_scoped
                    && candidate.api_version == absent.api_version
                    && candidate.kind == absent.kind
                {
                    candidate.namespace.clear();
                }
                if !seen.insert(candidate.clone()) {
                    continue;
                }
                if first.as_ref().is_none_or(|f| candidate.sort_key() < f.sort_key()) {
                    first = Some(candidate.clone());
                }
                if absent.sort_key() < candidate.sort_key()
                    && first_following
                        .as_ref()
                        .is_none_or(|f| candidate.sort_key() < f.sort_key())
                {
                    first_following = Some(candidate);
                }
            }
        }
        first_following.or(first)
    }
}

/// The ownerReferences added, removed and changed (same UID, other fields) between two lists.
fn references_diffs(
    old: &[OwnerReference],
    new: &[OwnerReference],
) -> (
    Vec<OwnerReference>,
    Vec<OwnerReference>,
    Vec<(OwnerReference, OwnerReference)>,
) {
    let (mut added, mut changed) = (vec![], vec![]);
    for r in new {
        match old.iter().find(|o| o.uid == r.uid) {
            Some(o) if o != r => changed.push((o.clone(), r.clone())),
            Some(_) => {}
            None => added.push(r.clone()),
        }
    }
    let removed = old
        .iter()
        .filter(|o| !new.iter().any(|r| r.uid == o.uid))
        .cloned()
        .collect();
    (added, removed, changed)
}

#[cfg(test)]
mod tests;
