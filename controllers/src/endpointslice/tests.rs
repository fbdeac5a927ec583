//! Table tests of the EndpointSlice controller's pure half: which slices a Service gets from its pods.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::{
    api::{
        core::v1::{
            Container, ContainerPort, Node, Pod, PodCondition, PodIP, PodSpec, PodStatus, Service,
            ServicePort, ServiceSpec,
        },
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::{
        apis::meta::v1::{ObjectMeta, Time},
        util::intstr::IntOrString,
    },
    jiff::Timestamp,
};

use super::{
    reconciler::{Input, Plan, reconcile},
    utils::{LABEL_MANAGED_BY, LABEL_SERVICE_NAME, LAST_CHANGE_TRIGGER_TIME, MANAGED_BY},
};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn service(target: IntOrString) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("svc-uid".into()),
            labels: Some(labels(&[("team", "a")])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(labels(&[("app", "web")])),
            cluster_ip: Some("10.96.0.10".into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(target),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod(i: usize, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("web-{i}")),
            namespace: Some("ns".into()),
            uid: Some(format!("uid-{i}")),
            labels: Some(labels(&[("app", "web")])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some("n1".into()),
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(format!("10.244.{}.{}", i / 250, i % 250 + 2)),
            pod_ips: Some(vec![PodIP {
                ip: format!("10.244.{}.{}", i / 250, i % 250 + 2),
            }]),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn node(name: &str) -> Arc<Node> {
    Arc::new(Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels(&[("topology.kubernetes.io/zone", "z1")])),
            ..Default::default()
        },
        ..Default::default()
    })
}

fn plan_with(svc: &Service, pods: &[Pod], existing: &[EndpointSlice], max: usize) -> Plan {
    let pods: Vec<Arc<Pod>> = pods.iter().cloned().map(Arc::new).collect();
    let existing: Vec<Arc<EndpointSlice>> = existing.iter().cloned().map(Arc::new).collect();
    let lookup = |name: &str| (name == "n1").then(|| node("n1"));
    reconcile(&Input {
        service: svc,
        pods: &pods,
        existing: &existing,
        node: &lookup,
        max_endpoints_per_slice: max,
        trigger_time: None,
    })
}

fn plan(svc: &Service, pods: &[Pod], existing: &[EndpointSlice]) -> Plan {
    plan_with(svc, pods, existing, 100)
}

/// The slices as the API server would hold them after the plan ran against `existing`.
fn apply(existing: &[EndpointSlice], plan: &Plan) -> Vec<EndpointSlice> {
    let mut out: Vec<EndpointSlice> = existing
        .iter()
        .filter(|s| {
            !plan.delete.iter().any(|d| d.metadata.name == s.metadata.name)
                && !plan.update.iter().any(|u| u.metadata.name == s.metadata.name)
        })
        .cloned()
        .collect();
    out.extend(plan.update.iter().cloned());
    for (i, s) in plan.create.iter().enumerate() {
        let mut s = s.clone();
        s.metadata.name = Some(format!("web-created-{i}-{}", existing.len()));
        out.push(s);
    }
    out
}

fn ready_flags(slice: &EndpointSlice) -> Vec<(String, bool, bool, bool)> {
    let mut v: Vec<_> = slice
        .endpoints
        .iter()
        .flatten()
        .map(|ep| {
            let c = ep.conditions.clone().unwrap_or_default();
            (
                ep.target_ref
                    .as_ref()
                    .and_then(|t| t.name.clone())
                    .unwrap_or_default(),
                c.ready.unwrap_or_default(),
                c.serving.unwrap_or_default(),
                c.terminating.unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn three_ready_pods_make_one_slice_and_a_resync_writes_nothing() {
    let svc = service(IntOrString::String("http".into()));
    let pods: Vec<Pod> = (0..3).map(|i| pod(i, true)).collect();
    let p = plan(&svc, &pods, &[]);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 0));
    let slice = &p.create[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.metadata.generate_name.as_deref(), Some("web-"));
    let l = slice.metadata.labels.clone().unwrap_or_default();
    assert_eq!(l.get(LABEL_SERVICE_NAME).map(String::as_str), Some("web"));
    assert_eq!(l.get(LABEL_MANAGED_BY).map(String::as_str), Some(MANAGED_BY));
    assert_eq!(l.get("team").map(String::as_str), Some("a"));
    let owner = &slice.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("Service", "svc-uid", Some(true))
    );
    let ports = slice.ports.clone().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].port),
        (Some("http"), Some(8080))
    );
    assert!(ready_flags(slice).iter().all(|(_, r, s, t)| *r && *s && !*t));
    let ep = &slice.endpoints.as_ref().unwrap()[0];
    assert_eq!(ep.node_name.as_deref(), Some("n1"));
    assert_eq!(ep.zone.as_deref(), Some("z1"));
    assert_eq!(
        ep.target_ref.as_ref().and_then(|t| t.kind.as_deref()),
        Some("Pod")
    );

    let existing = apply(&[], &p);
    assert!(
        plan(&svc, &pods, &existing).is_empty(),
        "no churn when nothing changed"
    );
}

#[test]
fn unready_terminating_and_deleted_pods_update_the_slice_in_place() {
    let svc = service(IntOrString::Int(8080));
    let mut pods: Vec<Pod> = (0..3).map(|i| pod(i, true)).collect();
    let existing = apply(&[], &plan(&svc, &pods, &[]));

    pods[0] = pod(0, false);
    pods[1].metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    pods.pop();
    let p = plan(&svc, &pods, &existing);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert_eq!(p.update[0].metadata.name, existing[0].metadata.name);
    assert_eq!(
        ready_flags(&p.update[0]),
        vec![
            ("web-0".into(), false, false, false),
            ("web-1".into(), false, true, true)
        ]
    );
}

#[test]
fn publish_not_ready_addresses_makes_every_endpoint_ready() {
    let mut svc = service(IntOrString::Int(8080));
    svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
    let p = plan(&svc, &[pod(0, false)], &[]);
    assert_eq!(
        ready_flags(&p.create[0]),
        vec![("web-0".into(), true, false, false)]
    );
}

#[test]
fn pods_resolving_a_named_port_differently_get_their_own_slices() {
    let svc = service(IntOrString::String("http".into()));
    let mut other = pod(1, true);
    other.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].container_port = 9090;
    let p = plan(&svc, &[pod(0, true), other], &[]);
    let mut ports: Vec<i32> = p
        .create
        .iter()
        .map(|s| {
            assert_eq!(s.endpoints.as_ref().map(Vec::len), Some(1));
            s.ports.as_ref().unwrap()[0].port.unwrap()
        })
        .collect();
    ports.sort();
    assert_eq!(ports, [8080, 9090]);
}

#[test]
fn slices_hold_at_most_max_endpoints_and_fill_before_creating() {
    let svc = service(IntOrString::Int(8080));
    let pods: Vec<Pod> = (0..250).map(|i| pod(i, true)).collect();
    let p = plan(&svc, &pods, &[]);
    let mut sizes: Vec<usize> = p
        .create
        .iter()
        .map(|s| s.endpoints.as_ref().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes, [50, 100, 100]);

    // Ten more pods go into the slice with room rather than a new one.
    let existing = apply(&[], &p);
    let more: Vec<Pod> = (0..260).map(|i| pod(i, true)).collect();
    let p2 = plan(&svc, &more, &existing);
    assert_eq!((p2.create.len(), p2.update.len(), p2.delete.len()), (0, 1, 0));
    assert_eq!(p2.update[0].endpoints.as_ref().unwrap().len(), 60);
}

#[test]
fn a_service_without_endpoints_keeps_one_placeholder() {
    let svc = service(IntOrString::Int(8080));
    let p = plan(&svc, &[], &[]);
    assert_eq!(p.create.len(), 1);
    assert!(p.create[0].endpoints.as_ref().is_none_or(Vec::is_empty));
    let existing = apply(&[], &p);
    assert!(plan(&svc, &[], &existing).is_empty());

    // When the last pod goes, its slice becomes the placeholder (an update, not delete + create).
    let full = apply(&[], &plan(&svc, &[pod(0, true)], &[]));
    let p = plan(&svc, &[], &full);
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (0, 1, 0));
    assert!(p.update[0].ports.as_ref().is_none_or(Vec::is_empty));
}

#[test]
fn pods_on_unknown_nodes_are_left_out_and_reported() {
    let svc = service(IntOrString::Int(8080));
    let mut stray = pod(1, true);
    stray.spec.as_mut().unwrap().node_name = Some("gone".into());
    let mut ipless = pod(2, true);
    ipless.status.as_mut().unwrap().pod_ip = None;
    ipless.status.as_mut().unwrap().pod_ips = None;
    let p = plan(&svc, &[pod(0, true), stray, ipless], &[]);
    assert_eq!(ready_flags(&p.create[0]).len(), 1);
    assert_eq!(p.pods_without_node, ["web-1"]);
}

#[test]
fn headless_services_without_ports_get_portless_slices() {
    let mut svc = service(IntOrString::Int(8080));
    let spec = svc.spec.as_mut().unwrap();
    spec.cluster_ip = Some("None".into());
    spec.ports = None;
    let p = plan(&svc, &[pod(0, true)], &[]);
    assert!(p.create[0].ports.as_ref().is_some_and(Vec::is_empty));
    let l = p.create[0].metadata.labels.clone().unwrap();
    assert_eq!(
        l.get("service.kubernetes.io/headless").map(String::as_str),
        Some("")
    );
}

#[test]
fn slices_of_a_replaced_service_are_reused_and_trigger_time_is_stamped() {
    let svc = service(IntOrString::Int(8080));
    let mut old = apply(&[], &plan(&svc, &[pod(0, true)], &[]));
    old[0].metadata.owner_references.as_mut().unwrap()[0].uid = "old-uid".into();
    old[0].metadata.resource_version = Some("7".into());
    let pods = [Arc::new(pod(0, true))];
    let existing = [Arc::new(old[0].clone())];
    let lookup = |name: &str| (name == "n1").then(|| node("n1"));
    let at = Timestamp::from_second(1_800_000_000).unwrap();
    let p = reconcile(&Input {
        service: &svc,
        pods: &pods,
        existing: &existing,
        node: &lookup,
        max_endpoints_per_slice: 100,
        trigger_time: Some(at),
    });
    // Not ours: deleted rather than updated (the garbage collector may be removing it).
    assert_eq!((p.create.len(), p.update.len(), p.delete.len()), (1, 0, 1));
    let annotations = p.create[0].metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations.get(LAST_CHANGE_TRIGGER_TIME).map(String::as_str),
        Some("2027-01-15T08:00:00Z")
    );
}
