//! What every cluster has from its first start, created by the API server itself (upstream's
//! `bootstrap-controller` and endpoint reconciler in pkg/controlplane): the namespaces default,
//! kube-system, kube-public and kube-node-lease, the `kubernetes` Service on the first address of the
//! service CIDR, and, once the server knows where it and the cluster DNS answer, their endpoints.
//!
//! Everything here goes through the same create and update paths as a client's request (defaults,
//! validation, the ClusterIP allocator), and leaves objects that already exist alone: a restart or a
//! second server never changes what is there.

use serde_json::{Value, json};

use super::{
    ApiServer,
    handlers::{self, Scope, WriteQuery},
    status::ApiError,
};

/// One port of a Service the server publishes endpoints for.
#[derive(Clone, Debug)]
pub struct EndpointPort {
    /// The port's name in the Service (`https`, `dns`, `dns-tcp`).
    pub name: &'static str,
    /// Where it answers.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}

impl ApiServer {
    /// Creates the namespaces every cluster has and the `kubernetes` Service on the first address of
    /// the service CIDR, leaving existing ones alone. `https_port` is the port the API server listens on.
    pub async fn bootstrap(&self, https_port: u16) -> Result<(), ApiError> {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            self.create_if_absent(
                "/api/v1/namespaces",
                json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns } }),
            )
            .await?;
        }
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "kubernetes", "labels": { "component": "apiserver", "provider": "kubernetes" } },
            "spec": {
                "clusterIP": self.ranges.kubernetes_ip().to_string(),
                "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": https_port }],
                "sessionAffinity": "None", "type": "ClusterIP",
            },
        });
        self.create_if_absent("/api/v1/namespaces/default/services", service)
            .await
    }

    /// Creates the `kube-dns` Service in kube-system on `cluster_ip` (the kubelets' `--cluster-dns`),
    /// with the labels and ports upstream's cluster DNS add-on gives it. It has no selector: the
    /// server that runs the DNS publishes its endpoints ([`ApiServer::publish_endpoints`]).
    pub async fn bootstrap_cluster_dns(&self, cluster_ip: &str) -> Result<(), ApiError> {
        let service = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "kube-dns", "namespace": "kube-system",
                "labels": { "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS", "kubernetes.io/cluster-service": "true" },
            },
            "spec": {
                "clusterIP": cluster_ip,
                "ports": [
                    { "name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53 },
                    { "name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53 },
                ],
                "sessionAffinity": "None", "type": "ClusterIP",
            },
        });
        self.create_if_absent("/api/v1/namespaces/kube-system/services", service)
            .await
    }

    /// Makes the Endpoints and the EndpointSlice of the selector-less Service `namespace/name` say
    /// that it answers at `ip` on `ports` (upstream's apiserver does this for `kubernetes` with its
    /// advertise address). Written only when different from what is stored.
    pub async fn publish_endpoints(
        &self,
        namespace: &str,
        name: &str,
        ip: &str,
        ports: &[EndpointPort],
    ) -> Result<(), ApiError> {
        let endpoints = json!({
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": { "name": name, "namespace": namespace },
            "subsets": [{
                "addresses": [{ "ip": ip }],
                "ports": ports.iter().map(|p| json!({ "name": p.name, "port": p.port, "protocol": p.protocol })).collect::<Vec<_>>(),
            }],
        });
        self.put(
            &format!("/api/v1/namespaces/{namespace}/endpoints/{name}"),
            endpoints,
            &["subsets"],
        )
        .await?;
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": { "name": name, "namespace": namespace, "labels": { "kubernetes.io/service-name": name } },
            "addressType": "IPv4",
            "endpoints": [{ "addresses": [ip], "conditions": { "ready": true } }],
            "ports": ports.iter().map(|p| json!({ "name": p.name, "port": p.port, "protocol": p.protocol })).collect::<Vec<_>>(),
        });
        self.put(
            &format!("/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices/{name}"),
            slice,
            &["endpoints", "ports"],
        )
        .await
    }

    async fn create_if_absent(&self, path: &str, obj: Value) -> Result<(), ApiError> {
        self.create_if_absent_in(&Scope::parse(path)?, obj).await
    }

    /// Creates the object at `path`, or updates it when any of `fields` differ from what is stored.
    async fn put(&self, path: &str, obj: Value, fields: &[&str]) -> Result<(), ApiError> {
        let scope = Scope::parse(path)?;
        let current = match handlers::update::read_current(self, &scope).await {
            Ok(current) => current,
            Err(e) if e.reason == "NotFound" => {
                let collection = Scope::parse(path.rsplit_once('/').map_or(path, |(c, _)| c))?;
                return self.create_if_absent_in(&collection, obj).await;
            }
            Err(e) => return Err(e),
        };
        let stored: Value = serde_json::from_slice(&current.value).unwrap_or_default();
        if fields.iter().all(|f| stored[*f] == obj[*f]) {
            return Ok(());
        }
        handlers::update::write(
            self,
            &scope,
            &current,
            obj,
            current.mod_revision,
            &WriteQuery::default(),
        )
        .await
        .map(|_| ())
    }

    async fn create_if_absent_in(&self, collection: &Scope, obj: Value) -> Result<(), ApiError> {
        match handlers::create::create(self, collection, obj, &WriteQuery::default()).await {
            Ok(_) => Ok(()),
            Err(e) if e.reason == "AlreadyExists" => Ok(()),
            Err(e) => Err(e),
        }
    }
}
