//! The garbage collector's writes and reads of arbitrary objects, through the dynamic API (upstream's
//! operations.go and patch.go): GET metadata, DELETE with preconditions, the ownerReference
//! patches, and finalizer removal.
//!
//! Patches are JSON merge patches carrying the `resourceVersion` they were computed from, so they
//! work for every resource (strategic merge needs per-kind schemas) and a concurrent change turns
//! into a 409 that is retried from a fresh read, as upstream's `deleteOwnerRefJSONMergePatch` does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{
    Client,
    api::{DeleteParams, Patch, PatchParams, Preconditions, PropagationPolicy},
};
use serde_json::{Value, json};

use super::{graph::Identity, monitors::Resource};

/// Whether `e` is a 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Whether `e` is a 409.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict())
}

/// The live metadata of `item`, or `None` when the API server has no object of that name.
pub async fn get_metadata(
    client: &Client,
    resource: &Resource,
    item: &Identity,
) -> Result<Option<ObjectMeta>, kube::Error> {
    match resource
        .api(client, &item.namespace)
        .get_metadata(&item.name)
        .await
    {
        Ok(obj) => Ok(Some(obj.metadata)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Deletes `item` guarded by its UID and the resourceVersion it was judged at. If only the
/// resourceVersion no longer matches but the ownerReferences are unchanged, the judgement still
/// holds and the delete is retried with the UID alone (upstream's `deleteObject`).
pub async fn delete_object(
    client: &Client,
    resource: &Resource,
    item: &Identity,
    resource_version: Option<&str>,
    owners_at_version: &[OwnerReference],
    policy: PropagationPolicy,
) -> Result<(), kube::Error> {
    let api = resource.api(client, &item.namespace);
    let params = |rv: Option<&str>| DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(item.uid.clone()),
            resource_version: rv.map(str::to_owned),
        }),
        propagation_policy: Some(policy.clone()),
        ..DeleteParams::default()
    };
    match api.delete(&item.name, &params(resource_version)).await {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) && resource_version.is_some() => {
            let live = match api.get_metadata(&item.name).await {
                Ok(live) => live.metadata,
                Err(_) => return Err(e),
            };
            let same_owners = live.owner_references.as_deref().unwrap_or_default() == owners_at_version;
            if live.uid.as_deref() == Some(item.uid.as_str())
                && live.resource_version.as_deref() != resource_version
                && same_owners
            {
                api.delete(&item.name, &params(None)).await.map(|_| ())
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}

/// A merge patch setting `ownerReferences` to `refs`, guarded by `resource_version`.
fn owner_refs_patch(refs: &[OwnerReference], resource_version: Option<&str>) -> Value {
    let refs = if refs.is_empty() { Value::Null } else { json!(refs) };
    json!({ "metadata": { "resourceVersion": resource_version, "ownerReferences": refs } })
}

/// Rewrites `item`'s ownerReferences with `edit` (from a fresh read, guarded by its
/// resourceVersion). Returns false when the object is gone or has another UID; a 409 is returned
/// to be retried.
async fn edit_owner_refs(
    client: &Client,
    resource: &Resource,
    item: &Identity,
    edit: impl Fn(Vec<OwnerReference>) -> Vec<OwnerReference>,
) -> Result<bool, kube::Error> {
    let Some(meta) = get_metadata(client, resource, item).await? else {
        return Ok(false);
    };
    if meta.uid.as_deref() != Some(item.uid.as_str()) {
        return Ok(false);
    }
    let before = meta.owner_references.unwrap_or_default();
    let after = edit(before.clone());
    if after == before {
        return Ok(true);
    }
    let patch = owner_refs_patch(&after, meta.resource_version.as_deref());
    match resource
        .api(client, &item.namespace)
        .patch(&item.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes the references to `owner_uids` from `item` (upstream's
/// `GenerateDeleteOwnerRefStrategicMergeBytes` / `deleteOwnerRefJSONMergePatch`).
pub async fn delete_owner_refs(
    client: &Client,
    resource: &Resource,
    item: &Identity,
    owner_uids: &[String],
) -> Result<bool, kube::Error> {
    edit_owner_refs(client, resource, item, |refs| {
        refs.into_iter()
            .filter(|r| !owner_uids.contains(&r.uid))
            .collect()
    })
    .await
}

/// Sets `blockOwnerDeletion: false` on every reference of `item` that blocks (upstream's
/// `unblockOwnerReferencesJSONMergePatch`), to break a cycle of foreground deletions.
pub async fn unblock_owner_refs(
    client: &Client,
    resource: &Resource,
    item: &Identity,
) -> Result<bool, kube::Error> {
    edit_owner_refs(client, resource, item, |refs| {
        refs.into_iter()
            .map(|mut r| {
                if r.block_owner_deletion == Some(true) {
                    r.block_owner_deletion = Some(false);
                }
                r
            })
            .collect()
    })
    .await
}

/// Conflicts retried at once before giving the item back to the queue (client-go's
/// `retry.DefaultBackoff` has 4 steps).
const FINALIZER_RETRIES: usize = 4;

/// Removes `finalizer` from `owner` (upstream's `removeFinalizer`): a fresh read, then a merge patch
/// of the remaining finalizers guarded by its resourceVersion, retried on conflict. An object
/// already gone, or without the finalizer, is fine.
pub async fn remove_finalizer(
    client: &Client,
    resource: &Resource,
    owner: &Identity,
    finalizer: &str,
) -> Result<(), kube::Error> {
    let api = resource.api(client, &owner.namespace);
    let mut attempt = 0;
    loop {
        let Some(meta) = get_metadata(client, resource, owner).await? else {
            return Ok(());
        };
        if meta.uid.as_deref() != Some(owner.uid.as_str()) {
            return Ok(());
        }
        let finalizers = meta.finalizers.unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let remaining: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let remaining = if remaining.is_empty() {
            Value::Null
        } else {
            json!(remaining)
        };
        let patch =
            json!({ "metadata": { "resourceVersion": meta.resource_version, "finalizers": remaining } });
        match api
            .patch(&owner.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) if is_conflict(&e) && attempt + 1 < FINALIZER_RETRIES => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(
                    10 * 5u64.pow(attempt as u32 - 1),
                ))
                .await;
            }
            Err(e) => return Err(e),
        }
    }
}
