//! What the EndpointSlice and Endpoints controllers ask of a Pod and a Service, as upstream answers
//! it in staging/src/k8s.io/endpointslice/utils.go and util/controller_utils.go: whether a pod
//! belongs in the endpoints at all (`ShouldPodBeInEndpoints`), its endpoint (`podToEndpoint`), the
//! ports a service's named target ports resolve to on it (`FindPort`, `getEndpointPorts`), and the
//! labels and owner of a new slice (`newEndpointSlice`, `setEndpointSliceLabels`).

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        core::v1::{Node, ObjectReference, Pod, Service, ServicePort},
        discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString},
};
use kube::Resource;

use crate::pod_util;

/// The label naming a slice's Service (`discovery.LabelServiceName`).
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// The label naming a slice's manager (`discovery.LabelManagedBy`).
pub const LABEL_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of [`LABEL_MANAGED_BY`] on the slices this controller manages.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label marking the endpoints of a headless Service (`v1.IsHeadlessService`).
pub const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";
/// When the change that led to this endpoints object happened (`v1.EndpointsLastChangeTriggerTime`).
pub const LAST_CHANGE_TRIGGER_TIME: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// The node label carrying its zone (`v1.LabelTopologyZone`).
pub const LABEL_TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// The only address type skiff serves (single-stack IPv4 clusters).
pub const ADDRESS_TYPE_IPV4: &str = "IPv4";

/// The Service's selector; `None` when it has none (or an empty one, which protobuf storage makes
/// indistinguishable from none upstream): such a Service's endpoints belong to the user.
pub fn service_selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec.as_ref()?.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `labels` carry every key and value of `selector` (a Service's equality-based selector).
pub fn selects(selector: &BTreeMap<String, String>, labels: Option<&BTreeMap<String, String>>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// `IsPodTerminal`: the pod has finished (Succeeded or Failed).
pub fn is_pod_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// The pod's IPv4 addresses: `status.podIPs`, or `status.podIP` when the list is empty.
pub fn pod_ipv4s(pod: &Pod) -> Vec<String> {
    let Some(status) = pod.status.as_ref() else {
        return vec![];
    };
    let mut ips: Vec<String> = status.pod_ips.iter().flatten().map(|ip| ip.ip.clone()).collect();
    if ips.is_empty() {
        ips.extend(status.pod_ip.clone());
    }
    ips.into_iter()
        .filter_map(|ip| ip.trim().parse::<std::net::Ipv4Addr>().ok())
        .map(|ip| ip.to_string())
        .collect()
}

/// `ShouldPodBeInEndpoints`: not terminal, has an IP, and (unless `include_terminating`) is not being
/// deleted.
pub fn should_pod_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    if is_pod_terminal(pod) {
        return false;
    }
    let status = pod.status.as_ref();
    let has_ip = status
        .and_then(|s| s.pod_ip.as_deref())
        .is_some_and(|ip| !ip.is_empty())
        || status
            .and_then(|s| s.pod_ips.as_ref())
            .is_some_and(|ips| !ips.is_empty());
    if !has_ip {
        return false;
    }
    include_terminating || !pod_util::is_terminating(pod)
}

/// `ShouldSetHostname`: the pod names a hostname and sits in the Service's subdomain.
pub fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.hostname.as_deref().is_some_and(|h| !h.is_empty())
        && spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace
}

/// `IsServiceIPSet`: a cluster IP that is neither empty nor `None` (not headless).
pub fn is_service_ip_set(svc: &Service) -> bool {
    let ip = svc
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .unwrap_or("");
    !ip.is_empty() && ip != "None"
}

/// Whether the Service publishes not-ready addresses (`spec.publishNotReadyAddresses`).
pub fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn protocol(p: Option<&str>) -> &str {
    p.unwrap_or("TCP")
}

/// `FindPort`: the container port a service port targets on `pod`. A number is taken as is; a name
/// is looked up among the named ports (with the service port's protocol) of the pod's containers and
/// of its sidecars (init containers that restart always). `None` when the name is not found.
pub fn find_port(pod: &Pod, svc_port: &ServicePort) -> Option<i32> {
    match &svc_port.target_port {
        None => Some(svc_port.port),
        Some(IntOrString::Int(port)) => Some(*port),
        Some(IntOrString::String(name)) => {
            // A numeric string is a number (intstr's IntValue).
            if let Ok(port) = name.parse::<i32>() {
                return Some(port);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && protocol(p.protocol.as_deref()) == protocol(svc_port.protocol.as_deref())
                })
                .map(|p| p.container_port)
        }
    }
}

/// `getEndpointPorts`: the service's ports as resolved on `pod`; a port whose name the pod does not
/// have is left out for that pod.
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            let port = find_port(pod, sp)?;
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(port),
                protocol: Some(protocol(sp.protocol.as_deref()).to_owned()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// The reference from an endpoint to its pod.
pub fn pod_reference(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// `podToEndpoint`: the pod's endpoint for `svc`. `serving` is the pod's readiness; `ready` is the
/// same but false while terminating (true anyway when the Service publishes not-ready addresses);
/// the zone comes from the pod's node.
pub fn pod_to_endpoint(pod: &Pod, node: Option<&Node>, svc: &Service) -> Endpoint {
    let serving = pod_util::is_ready(pod);
    let terminating = pod_util::is_terminating(pod);
    let ready = publish_not_ready(svc) || (serving && !terminating);
    let node_name = pod_util::node_name(pod);
    Endpoint {
        addresses: pod_ipv4s(pod),
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        target_ref: Some(pod_reference(pod)),
        node_name: (!node_name.is_empty()).then(|| node_name.to_owned()),
        zone: node
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get(LABEL_TOPOLOGY_ZONE))
            .filter(|z| !z.is_empty())
            .cloned(),
        hostname: should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        ..Default::default()
    }
}

fn is_reserved_label(key: &str) -> bool {
    key == LABEL_SERVICE_NAME || key == LABEL_MANAGED_BY || key == LABEL_HEADLESS
}

/// `setEndpointSliceLabels`: the labels a slice of `svc` should carry (the Service's own, minus the
/// reserved ones, plus the service name, the manager and the headless marker), and whether the
/// slice's current non-reserved labels differ from the Service's.
pub fn slice_labels(slice: &EndpointSlice, svc: &Service) -> (BTreeMap<String, String>, bool) {
    let current: BTreeMap<&String, &String> = slice
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved_label(k))
        .collect();
    let mut wanted: BTreeMap<String, String> = svc
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| !is_reserved_label(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let changed = current.len() != wanted.len() || current.iter().any(|(k, v)| wanted.get(*k) != Some(*v));
    if !is_service_ip_set(svc) {
        wanted.insert(LABEL_HEADLESS.into(), String::new());
    }
    wanted.insert(
        LABEL_SERVICE_NAME.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    wanted.insert(LABEL_MANAGED_BY.into(), MANAGED_BY.into());
    (wanted, changed)
}

/// The controller reference a slice carries to its Service (`metav1.NewControllerRef`).
pub fn service_controller_ref(
    svc: &Service,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        controller: Some(true),
        block_owner_deletion: Some(true),
        ..svc.controller_owner_ref(&()).unwrap_or_default()
    }
}

/// Whether `slice` is owned by `svc` (`ownedBy`: same UID, kind Service, apiVersion v1).
pub fn owned_by(slice: &EndpointSlice, svc: &Service) -> bool {
    slice
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| Some(&o.uid) == svc.metadata.uid.as_ref() && o.kind == "Service" && o.api_version == "v1")
}

/// `getEndpointSlicePrefix`: `<service>-`, the generateName of its slices.
pub fn slice_prefix(service_name: &str) -> String {
    // The API server shortens an over-long generateName itself.
    format!("{service_name}-")
}

/// `newEndpointSlice`: an empty slice of `svc` with `ports`, named by the API server.
pub fn new_slice(svc: &Service, ports: Vec<EndpointPort>) -> EndpointSlice {
    let mut slice = EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(slice_prefix(svc.metadata.name.as_deref().unwrap_or(""))),
            namespace: svc.metadata.namespace.clone(),
            owner_references: Some(vec![service_controller_ref(svc)]),
            ..Default::default()
        },
        address_type: ADDRESS_TYPE_IPV4.into(),
        endpoints: Some(vec![]),
        ports: Some(ports),
    };
    slice.metadata.labels = Some(slice_labels(&slice, svc).0);
    slice
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus, ServiceSpec};

    use super::*;

    fn pod_with_ports(ports: &[(&str, i32, &str)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(n, p, proto)| ContainerPort {
                                name: Some((*n).into()),
                                container_port: *p,
                                protocol: Some((*proto).into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("10.244.0.5".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn svc_port(target: IntOrString, proto: Option<&str>) -> ServicePort {
        ServicePort {
            port: 80,
            target_port: Some(target),
            protocol: proto.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn named_target_ports_resolve_per_pod_and_protocol() {
        let pod = pod_with_ports(&[("http", 8080, "TCP"), ("dns", 53, "UDP")]);
        assert_eq!(
            find_port(&pod, &svc_port(IntOrString::String("http".into()), None)),
            Some(8080)
        );
        assert_eq!(
            find_port(&pod, &svc_port(IntOrString::String("dns".into()), Some("UDP"))),
            Some(53)
        );
        assert_eq!(
            find_port(&pod, &svc_port(IntOrString::String("dns".into()), Some("TCP"))),
            None
        );
        assert_eq!(
            find_port(&pod, &svc_port(IntOrString::String("nope".into()), None)),
            None
        );
        assert_eq!(
            find_port(&pod, &svc_port(IntOrString::Int(9000), None)),
            Some(9000)
        );
    }

    #[test]
    fn terminal_and_ipless_pods_are_not_endpoints() {
        let mut pod = pod_with_ports(&[]);
        assert!(should_pod_be_in_endpoints(&pod, false));
        pod.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        ));
        assert!(!should_pod_be_in_endpoints(&pod, false));
        assert!(should_pod_be_in_endpoints(&pod, true));
        pod.status.as_mut().unwrap().phase = Some("Failed".into());
        assert!(!should_pod_be_in_endpoints(&pod, true));
        let ipless = Pod::default();
        assert!(!should_pod_be_in_endpoints(&ipless, true));
    }

    #[test]
    fn slice_labels_mirror_the_service_and_mark_headless() {
        let svc = Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                labels: Some(BTreeMap::from([
                    ("app".to_string(), "web".to_string()),
                    (LABEL_MANAGED_BY.to_string(), "someone-else".to_string()),
                ])),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (labels, changed) = slice_labels(&EndpointSlice::default(), &svc);
        assert!(changed);
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_MANAGED_BY).map(String::as_str), Some(MANAGED_BY));
        assert_eq!(labels.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
        assert_eq!(labels.get(LABEL_HEADLESS).map(String::as_str), Some(""));
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                labels: Some(labels),
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(!slice_labels(&slice, &svc).1);
    }
}
