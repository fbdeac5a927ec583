//! The node's heartbeat: a Lease named like the node in `kube-node-lease`, renewed every 10 s
//! (upstream's pkg/kubelet/nodelease and component-helpers' lease controller). The node lifecycle
//! controller marks a node whose Lease is not renewed within its grace period (40 s) as Unknown.
//! The Lease is owned by the Node, so it goes with it.

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

/// The namespace of node Leases.
pub const NAMESPACE: &str = "kube-node-lease";
/// `leaseDurationSeconds` (upstream's `--node-lease-duration-seconds`).
pub const DURATION_SECONDS: i64 = 40;

/// The Lease of `node` (whose uid makes it the owner), renewed `now`.
pub fn lease_object(node: &str, node_uid: &str, now: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": node, "namespace": NAMESPACE,
                      "ownerReferences": [{ "apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid }] },
        "spec": { "holderIdentity": node, "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now },
    })
}

fn leases(client: &Client) -> Api<Lease> {
    Api::namespaced(client.clone(), NAMESPACE)
}

/// Renews the node's Lease, creating it the first time.
pub async fn renew(client: &Client, node: &str, node_uid: &str) -> Result<(), kube::Error> {
    let now = crate::now_micro();
    let api = leases(client);
    let patch = json!({ "spec": { "holderIdentity": node, "leaseDurationSeconds": DURATION_SECONDS, "renewTime": now } });
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => {
            let lease: Lease = serde_json::from_value(lease_object(node, node_uid, &now))
                .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(()),
                // Created meanwhile (a second renewal racing the first): it is renewed.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_owned_by_its_node() {
        let l = lease_object("n1", "uid-1", "2026-01-01T00:00:00.000000Z");
        assert_eq!(l["metadata"]["namespace"], NAMESPACE);
        assert_eq!(l["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(l["spec"]["holderIdentity"], "n1");
        assert_eq!(l["spec"]["leaseDurationSeconds"], 40);
    }
}
