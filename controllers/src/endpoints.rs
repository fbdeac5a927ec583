//! The legacy Endpoints controller: one Endpoints object per Service with a selector, named like it,
//! listing the selected pods' addresses by readiness and the ports the Service's ports resolve to on
//! them, as upstream's pkg/controller/endpoint/endpoints_controller.go does (what `kubectl get
//! endpoints` and `kubectl describe svc` show).
//!
//! Services are the controller's objects (fed by our own watch, so a deleted Service's Endpoints
//! can be deleted too, as upstream's `syncService` does when the Service is gone). A pod event wakes
//! the Services selecting the pod and those it matched before; an Endpoints event wakes
//! the Service of that name (an Endpoints object deleted by hand is recreated). Services without a
//! selector are left alone: their Endpoints belong to the user. [`plan`] is the pure half
//! (`syncService`'s subsets, `RepackSubsets`, `truncateEndpoints` and the no-op check); the writes
//! are plain create and update with optimistic concurrency, so a stale cache only costs a retry.

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    sync::Arc,
};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::{
    api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Pod, Service},
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DeleteParams, PostParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config},
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};

use crate::{
    Error,
    backoff::Backoff,
    endpointslice::{
        memberships::Memberships,
        reconciler::format_time,
        trigger_time::TriggerTimeTracker,
        utils::{self, LABEL_HEADLESS, LAST_CHANGE_TRIGGER_TIME},
    },
    events::EventSink,
    pod_control, pod_util,
};

/// The name events are reported under (upstream's component name).
pub const CONTROLLER_NAME: &str = "endpoint-controller";
/// Services synced at once (upstream's `--concurrent-endpoint-syncs` default).
pub const CONCURRENT_SYNCS: u16 = 5;
/// The most addresses one Endpoints object lists (upstream's `maxCapacity`).
pub const MAX_CAPACITY: usize = 1000;
/// The annotation set when addresses were left out (`v1.EndpointsOverCapacity`).
pub const OVER_CAPACITY: &str = "endpoints.kubernetes.io/over-capacity";
/// Its value.
pub const TRUNCATED: &str = "truncated";

/// How the controller is tuned.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most addresses per Endpoints object (upstream: 1000, not configurable there).
    pub max_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_capacity: MAX_CAPACITY,
        }
    }
}

/// What to write for one Service.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The Endpoints object is as it should be.
    Nothing,
    /// Create this Endpoints object.
    Create(Endpoints),
    /// Replace the Endpoints object with this (it carries the resourceVersion it was read at).
    Update(Endpoints),
}

/// The pod's address for a Service (`podToEndpointAddressForService`); `None` without an IPv4.
fn pod_address(pod: &Pod, svc: &Service) -> Option<EndpointAddress> {
    let ip = utils::pod_ipv4s(pod).into_iter().next()?;
    let node = pod_util::node_name(pod);
    Some(EndpointAddress {
        ip,
        node_name: (!node.is_empty()).then(|| node.to_owned()),
        target_ref: Some(utils::pod_reference(pod)),
        hostname: utils::should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
    })
}

type PortKey = (String, i32, String, Option<String>);
/// An address's IP and pod UID, what identifies it across ports.
type AddressKey = (String, Option<String>);

fn address_key(a: &EndpointAddress) -> AddressKey {
    (a.ip.clone(), a.target_ref.as_ref().and_then(|t| t.uid.clone()))
}

/// `syncService`'s subsets, repacked (`RepackSubsets`): every address with the set of ports it
/// serves, then one subset per distinct set of ports, ready and not-ready addresses apart. Sorted,
/// so equal inputs give equal subsets.
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = utils::publish_not_ready(svc);
    let svc_ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let headless = !utils::is_service_ip_set(svc);
    // address key → (address, ready, ports)
    let mut addresses: BTreeMap<AddressKey, (EndpointAddress, bool, BTreeSet<PortKey>)> = BTreeMap::new();
    for pod in pods {
        if !utils::should_pod_be_in_endpoints(pod, publish) {
            continue;
        }
        let Some(address) = pod_address(pod, svc) else {
            continue;
        };
        let ready = publish || pod_util::is_ready(pod);
        let key = address_key(&address);
        if svc_ports.is_empty() {
            // Only a headless Service may have no ports: its addresses are listed without any.
            if headless {
                addresses.entry(key).or_insert((address, ready, BTreeSet::new()));
            }
            continue;
        }
        for sp in &svc_ports {
            let Some(port) = utils::find_port(pod, sp) else {
                continue;
            };
            let entry = addresses
                .entry(key.clone())
                .or_insert_with(|| (address.clone(), ready, BTreeSet::new()));
            entry.2.insert((
                sp.name.clone().unwrap_or_default(),
                port,
                sp.protocol.clone().unwrap_or_else(|| "TCP".into()),
                sp.app_protocol.clone(),
            ));
        }
    }
    let mut groups: BTreeMap<Vec<PortKey>, (Vec<EndpointAddress>, Vec<EndpointAddress>)> = BTreeMap::new();
    for (_, (address, ready, ports)) in addresses {
        let group = groups.entry(ports.into_iter().collect()).or_default();
        if ready {
            group.0.push(address);
        } else {
            group.1.push(address);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: (!ports.is_empty()).then(|| {
                ports
                    .into_iter()
                    .map(|(name, port, protocol, app_protocol)| EndpointPort {
                        name: (!name.is_empty()).then_some(name),
                        port,
                        protocol: Some(protocol),
                        app_protocol,
                    })
                    .collect()
            }),
        })
        .collect()
}

fn count(subsets: &[EndpointSubset]) -> (usize, usize) {
    subsets.iter().fold((0, 0), |(r, n), s| {
        (
            r + s.addresses.as_ref().map_or(0, Vec::len),
            n + s.not_ready_addresses.as_ref().map_or(0, Vec::len),
        )
    })
}

/// `truncateEndpoints`: at most `max` addresses, ready ones first, each subset keeping its share
/// (rounded up, so a small subset keeps at least one). Returns whether anything was cut.
pub fn truncate(subsets: &mut [EndpointSubset], max: usize) -> bool {
    let (ready, not_ready) = count(subsets);
    if ready + not_ready <= max {
        return false;
    }
    let truncate_ready = ready > max;
    let (room, total) = if truncate_ready {
        (max, ready)
    } else {
        (max - ready, not_ready)
    };
    let mut left = room;
    for subset in subsets.iter_mut() {
        let list = if truncate_ready {
            subset.not_ready_addresses = None;
            &mut subset.addresses
        } else {
            &mut subset.not_ready_addresses
        };
        let have = list.as_ref().map_or(0, Vec::len);
        let share = (have * room).div_ceil(total.max(1)).min(left);
        if let Some(addresses) = list.as_mut() {
            addresses.truncate(share);
            if addresses.is_empty() {
                *list = None;
            }
        }
        left -= list.as_ref().map_or(0, Vec::len);
    }
    true
}

/// The labels the Endpoints object carries: the Service's, plus the headless marker.
fn desired_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if utils::is_service_ip_set(svc) {
        labels.remove(LABEL_HEADLESS);
    } else {
        labels.insert(LABEL_HEADLESS.into(), String::new());
    }
    labels
}

fn none_if_empty<T: Clone>(v: &Option<Vec<T>>) -> Option<Vec<T>> {
    v.clone().filter(|v| !v.is_empty())
}

/// Subsets as compared: missing and empty lists are the same.
fn normalized(subsets: Option<&Vec<EndpointSubset>>) -> Vec<EndpointSubset> {
    subsets
        .into_iter()
        .flatten()
        .map(|s| EndpointSubset {
            addresses: none_if_empty(&s.addresses),
            not_ready_addresses: none_if_empty(&s.not_ready_addresses),
            ports: none_if_empty(&s.ports),
        })
        .filter(|s| s.addresses.is_some() || s.not_ready_addresses.is_some())
        .collect()
}

/// `syncService` for a Service with a selector: the Endpoints object it should have, written only
/// when its subsets, labels or over-capacity annotation differ from `current`. The trigger time is
/// stamped on what is written (and removed when there is none).
pub fn plan(
    svc: &Service,
    pods: &[Arc<Pod>],
    current: Option<&Endpoints>,
    trigger_time: Option<Timestamp>,
    max_capacity: usize,
) -> Plan {
    let mut subsets = desired_subsets(svc, pods);
    let over_capacity = truncate(&mut subsets, max_capacity);
    let labels = desired_labels(svc);

    if let Some(current) = current {
        let current_over = current.annotations().get(OVER_CAPACITY).is_some();
        let mut current_labels = current.labels().clone();
        let mut compare_labels = labels.clone();
        current_labels.remove(LABEL_HEADLESS);
        compare_labels.remove(LABEL_HEADLESS);
        let headless_ok =
            current.labels().contains_key(LABEL_HEADLESS) == labels.contains_key(LABEL_HEADLESS);
        if normalized(current.subsets.as_ref()) == normalized(Some(&subsets))
            && current_labels == compare_labels
            && headless_ok
            && current_over == over_capacity
        {
            return Plan::Nothing;
        }
    }

    let mut endpoints = current.cloned().unwrap_or_else(|| Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            ..Default::default()
        },
        ..Default::default()
    });
    endpoints.subsets = (!subsets.is_empty()).then_some(subsets);
    endpoints.metadata.labels = Some(labels);
    let annotations = endpoints.metadata.annotations.get_or_insert_default();
    match trigger_time {
        Some(t) => annotations.insert(LAST_CHANGE_TRIGGER_TIME.into(), format_time(t)),
        None => annotations.remove(LAST_CHANGE_TRIGGER_TIME),
    };
    if over_capacity {
        annotations.insert(OVER_CAPACITY.into(), TRUNCATED.into());
    } else {
        annotations.remove(OVER_CAPACITY);
    }
    if current.is_some() {
        Plan::Update(endpoints)
    } else {
        Plan::Create(endpoints)
    }
}

/// What every sync shares.
struct Context {
    client: Client,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    triggers: TriggerTimeTracker,
    backoff: Backoff,
    events: EventSink,
    options: Options,
}

fn key_of(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Runs the Endpoints controller until `shutdown` completes, then lets running syncs finish.
pub async fn run(client: Client, options: Options, shutdown: impl Future<Output = ()> + Send + 'static) {
    let events = EventSink::new(client.clone(), CONTROLLER_NAME);

    let (pods, pod_writer) = reflector::store::<Pod>();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|p| p.managed_fields_mut().clear())
        .reflect(pod_writer)
        .touched_objects();

    let (endpoints, endpoints_writer) = reflector::store::<Endpoints>();
    let endpoints_events = watcher(Api::<Endpoints>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|e| e.managed_fields_mut().clear())
        .reflect(endpoints_writer)
        .touched_objects();

    // Deleted Services: their Endpoints go too (there is no owner reference to collect them by).
    let (gone_tx, mut gone_rx) = tokio::sync::mpsc::unbounded_channel::<Service>();
    let (services, services_writer) = reflector::store::<Service>();
    let service_events = watcher(Api::<Service>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(|s| s.managed_fields_mut().clear())
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(svc) = event {
                let _ = gone_tx.send(svc.clone());
            }
        })
        .reflect(services_writer)
        .touched_objects();

    let context = Arc::new(Context {
        client: client.clone(),
        pods,
        endpoints: endpoints.clone(),
        triggers: TriggerTimeTracker::new(),
        backoff: Backoff::new(),
        events,
        options,
    });
    let deleter = {
        let services = services.clone();
        let ctx = context.clone();
        async move {
            while let Some(svc) = gone_rx.recv().await {
                delete_endpoints_of(&svc, &services, &ctx).await;
            }
        }
    };

    let service_cache = services.clone();
    let pod_cache = context.pods.clone();
    let memberships = Memberships::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = Controller::for_stream(service_events, services)
        .with_config(Config::default().concurrency(CONCURRENT_SYNCS))
        .watches_stream(pod_events, move |pod| {
            memberships.services_for_pod(&service_cache, &pod_cache, &pod)
        })
        .watches_stream(endpoints_events, |ep| {
            Some(ObjectRef::<Service>::new(&ep.name_any()).within(&ep.namespace().unwrap_or_default()))
        })
        .graceful_shutdown_on(async move {
            let _ = stopped.await;
        })
        .run(reconcile, error_policy, context)
        .for_each(|result| {
            if let Err(e) = result {
                tracing::debug!(error = %e, "endpoints controller");
            }
            std::future::ready(())
        });
    tokio::pin!(running);
    tokio::pin!(deleter);
    tokio::select! {
        () = &mut running => return,
        () = &mut deleter => {}
        () = shutdown => {}
    }
    let _ = stop.send(());
    running.await;
}

/// Deletes the Endpoints of a deleted Service unless a Service of that name exists again.
async fn delete_endpoints_of(svc: &Service, services: &Store<Service>, ctx: &Context) {
    let (namespace, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    ctx.triggers.forget(&key_of(&namespace, &name));
    if services.get(&ObjectRef::new(&name).within(&namespace)).is_some() {
        return;
    }
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.is_not_found() => {}
        Err(e) => tracing::warn!(service = %key_of(&namespace, &name), error = %e, "cannot delete endpoints"),
    }
}

/// One sync (upstream's `syncService`).
async fn reconcile(svc: Arc<Service>, ctx: Arc<Context>) -> Result<Action, Error> {
    crate::cache_ready::cache_ready(&ctx.pods)
        .await
        .map_err(|_| Error::CacheGone)?;
    crate::cache_ready::cache_ready(&ctx.endpoints)
        .await
        .map_err(|_| Error::CacheGone)?;
    let Some(selector) = utils::service_selector(&svc) else {
        return Ok(Action::await_change());
    };
    // ExternalName Services have no endpoints (upstream: issues.k8s.io/105986).
    if svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Ok(Action::await_change());
    }
    let (namespace, name) = (svc.namespace().unwrap_or_default(), svc.name_any());
    let key = key_of(&namespace, &name);
    let pods = ctx.pods.state_filter(|p| {
        p.metadata.namespace.as_deref() == Some(namespace.as_str())
            && utils::selects(selector, p.metadata.labels.as_ref())
    });
    let current = ctx.endpoints.get(&ObjectRef::new(&name).within(&namespace));
    let trigger_time = ctx.triggers.compute(&key, &svc, pods.iter().map(AsRef::as_ref));
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let result = match plan(
        &svc,
        &pods,
        current.as_deref(),
        trigger_time,
        ctx.options.max_capacity,
    ) {
        Plan::Nothing => Ok(()),
        // A Service being deleted gets no new Endpoints.
        Plan::Create(_) if svc.metadata.deletion_timestamp.is_some() => Ok(()),
        Plan::Create(ep) => match api.create(&PostParams::default(), &ep).await {
            Ok(_) => Ok(()),
            Err(e) if pod_control::is_namespace_terminating(&e) => Ok(()),
            Err(e) => Err((
                "FailedToCreateEndpoint",
                format!("Failed to create endpoint for service {key}: "),
                e,
            )),
        },
        Plan::Update(ep) => match api.replace(&name, &PostParams::default(), &ep).await {
            Ok(_) => Ok(()),
            Err(e) => Err((
                "FailedToUpdateEndpoint",
                format!("Failed to update endpoint {key}: "),
                e,
            )),
        },
    };
    if let Err((reason, message, e)) = result {
        // A conflict only means the cache was behind; the retry sorts it out.
        if !pod_control::is_gone(&e) && !matches!(&e, kube::Error::Api(s) if s.code == 409) {
            ctx.events.warning(
                &svc.object_ref(&()),
                reason,
                "UpdateEndpoints",
                format!("{message}{}", pod_control::error_message(&e)),
            );
        }
        return Err(e.into());
    }
    ctx.backoff.forget(&key);
    Ok(Action::await_change())
}

/// After a failed sync, retry with a per-Service exponential backoff.
fn error_policy(svc: Arc<Service>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = key_of(&svc.namespace().unwrap_or_default(), &svc.name_any());
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(service = %key, %error, ?delay, "endpoints sync failed, retrying");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::{
        api::core::v1::{
            Container, ContainerPort, PodCondition, PodSpec, PodStatus, ServicePort, ServiceSpec,
        },
        apimachinery::pkg::{apis::meta::v1::Time, util::intstr::IntOrString},
    };

    use super::*;

    fn service(ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("team".to_string(), "a".to_string())])),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
                cluster_ip: Some("10.96.0.20".into()),
                ports: Some(ports),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn http_port() -> ServicePort {
        ServicePort {
            name: Some("http".into()),
            port: 80,
            target_port: Some(IntOrString::String("http".into())),
            ..Default::default()
        }
    }

    fn pod(i: usize, ready: bool, http_port: i32) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(format!("web-{i}")),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{i}")),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: http_port,
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some(format!("10.244.{}.{}", i / 200, i % 200 + 2)),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        })
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<String> {
        list.iter().flatten().map(|a| a.ip.clone()).collect()
    }

    #[test]
    fn ready_and_unready_pods_are_listed_apart_and_resyncs_write_nothing() {
        let svc = service(vec![http_port()]);
        let pods = [pod(0, true, 8080), pod(1, false, 8080), pod(2, true, 8080)];
        let Plan::Create(ep) = plan(&svc, &pods, None, None, MAX_CAPACITY) else {
            panic!("expected a create");
        };
        assert_eq!(ep.metadata.name.as_deref(), Some("web"));
        assert_eq!(ep.labels().get("team").map(String::as_str), Some("a"));
        let subsets = ep.subsets.clone().unwrap();
        assert_eq!(subsets.len(), 1);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.0.2", "10.244.0.4"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.244.0.3"]);
        let address = &subsets[0].addresses.as_ref().unwrap()[0];
        assert_eq!(address.node_name.as_deref(), Some("n1"));
        assert_eq!(
            address.target_ref.as_ref().and_then(|t| t.name.as_deref()),
            Some("web-0")
        );
        let ports = subsets[0].ports.clone().unwrap();
        assert_eq!((ports[0].name.as_deref(), ports[0].port), (Some("http"), 8080));
        assert!(!ep.annotations().contains_key(OVER_CAPACITY));
        assert_eq!(plan(&svc, &pods, Some(&ep), None, MAX_CAPACITY), Plan::Nothing);
    }

    #[test]
    fn pods_with_different_named_ports_form_different_subsets() {
        let svc = service(vec![http_port()]);
        let pods = [pod(0, true, 8080), pod(1, true, 9090)];
        let Plan::Create(ep) = plan(&svc, &pods, None, None, MAX_CAPACITY) else {
            panic!("expected a create");
        };
        let ports: Vec<i32> = ep
            .subsets
            .unwrap()
            .iter()
            .map(|s| s.ports.as_ref().unwrap()[0].port)
            .collect();
        assert_eq!(ports, [8080, 9090]);
    }

    #[test]
    fn terminating_pods_leave_unless_not_ready_addresses_are_published() {
        let mut svc = service(vec![http_port()]);
        let mut p = pod(0, false, 8080).as_ref().clone();
        p.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
        let pods = [Arc::new(p)];
        assert!(desired_subsets(&svc, &pods).is_empty());
        svc.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let subsets = desired_subsets(&svc, &pods);
        assert_eq!(ips(&subsets[0].addresses), ["10.244.0.2"]);
    }

    #[test]
    fn over_capacity_truncates_and_annotates() {
        let svc = service(vec![http_port()]);
        let pods: Vec<Arc<Pod>> = (0..1100).map(|i| pod(i, i % 2 == 0, 8080)).collect();
        let Plan::Create(ep) = plan(&svc, &pods, None, None, MAX_CAPACITY) else {
            panic!("expected a create");
        };
        let (ready, not_ready) = count(ep.subsets.as_ref().unwrap());
        assert_eq!((ready, not_ready), (550, 450));
        assert_eq!(
            ep.annotations().get(OVER_CAPACITY).map(String::as_str),
            Some(TRUNCATED)
        );
        assert_eq!(plan(&svc, &pods, Some(&ep), None, MAX_CAPACITY), Plan::Nothing);
        // Back under capacity: the annotation goes.
        let Plan::Update(ep) = plan(&svc, &pods[..10], Some(&ep), None, MAX_CAPACITY) else {
            panic!("expected an update");
        };
        assert!(!ep.annotations().contains_key(OVER_CAPACITY));
    }

    #[test]
    fn headless_services_are_labelled_and_may_have_no_ports() {
        let mut svc = service(vec![]);
        svc.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let at = Timestamp::from_second(1_800_000_000).unwrap();
        let Plan::Create(ep) = plan(&svc, &[pod(0, true, 80)], None, Some(at), MAX_CAPACITY) else {
            panic!("expected a create");
        };
        assert_eq!(ep.labels().get(LABEL_HEADLESS).map(String::as_str), Some(""));
        let subsets = ep.subsets.clone().unwrap();
        assert_eq!(
            (ips(&subsets[0].addresses).len(), subsets[0].ports.is_none()),
            (1, true)
        );
        assert_eq!(
            ep.annotations().get(LAST_CHANGE_TRIGGER_TIME).map(String::as_str),
            Some("2027-01-15T08:00:00Z")
        );
    }
}
