//! The EndpointSlice and Endpoints controllers against the real API server (in process) through
//! kube-rs: a Service's slices and Endpoints follow its pods' readiness, deletion and named ports,
//! slices split at 100 endpoints, and a Service without a selector is left to its owner.
//!
//! No kubelet runs here: the tests create the Node the pods are bound to and write the pods' IPs and
//! Ready conditions through `/status`, as a kubelet would.

use std::{collections::BTreeMap, future::Future, time::Duration};

use k8s_openapi::{
    api::{
        core::v1::{Endpoints, Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use skiff_apiserver::watch_cache::WatchCacheOptions;
use skiff_controllers::{endpoints, endpointslice};
use skiff_tests::{Component, InProcess, eventually};

/// The bound on any single API call.
const T: Duration = Duration::from_secs(10);

/// An API server with both endpoint controllers running against it; all stop when dropped.
struct Cluster {
    server: InProcess,
    _slices: Component,
    _endpoints: Component,
}

impl Cluster {
    async fn start() -> Self {
        let server = tokio::time::timeout(
            Duration::from_secs(60),
            InProcess::start(WatchCacheOptions::default()),
        )
        .await
        .expect("server in time")
        .expect("server");
        let client = server.client.clone();
        let slices = Component::spawn(|shutdown| endpointslice::run(client, Default::default(), shutdown));
        let client = server.client.clone();
        let endpoints = Component::spawn(|shutdown| endpoints::run(client, Default::default(), shutdown));
        let cluster = Self {
            server,
            _slices: slices,
            _endpoints: endpoints,
        };
        // The pods run on n1 (the EndpointSlice controller leaves out pods of unknown nodes).
        let node: Node = serde_json::from_value(json!({
            "metadata": { "name": "n1", "labels": { "topology.kubernetes.io/zone": "zone-a" } }
        }))
        .expect("node");
        t(Api::<Node>::all(cluster.client()).create(&PostParams::default(), &node))
            .await
            .expect("create node");
        cluster
    }

    fn client(&self) -> Client {
        self.server.client.clone()
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client(), "default")
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client(), "default")
    }

    fn slices(&self) -> Api<EndpointSlice> {
        Api::namespaced(self.client(), "default")
    }

    fn endpoints(&self) -> Api<Endpoints> {
        Api::namespaced(self.client(), "default")
    }
}

/// Bounds one API call.
async fn t<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(T, f).await.expect("API call in time")
}

fn service(name: &str, app: Option<&str>, target_port: serde_json::Value) -> Service {
    let mut spec = json!({ "ports": [{ "name": "http", "port": 80, "targetPort": target_port }] });
    if let Some(app) = app {
        spec["selector"] = json!({ "app": app });
    }
    serde_json::from_value(
        json!({ "metadata": { "name": name, "labels": { "team": "blue" } }, "spec": spec }),
    )
    .expect("service")
}

/// Creates a pod labelled `app` on n1 whose container names port `http` = `http_port`, then gives
/// it an IP and a Ready condition, as its kubelet would.
async fn running_pod(api: &Api<Pod>, name: &str, app: &str, http_port: i32, ip: &str, ready: bool) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": name, "labels": { "app": app } },
        "spec": {
            "nodeName": "n1",
            "containers": [{ "name": "c", "image": "busybox:1.36",
                             "ports": [{ "name": "http", "containerPort": http_port }] }]
        }
    }))
    .expect("pod");
    t(api.create(&PostParams::default(), &pod))
        .await
        .expect("create pod");
    set_status(api, name, ip, ready).await
}

async fn set_status(api: &Api<Pod>, name: &str, ip: &str, ready: bool) -> Pod {
    let status = json!({ "status": {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{ "ip": ip }],
        "conditions": [{ "type": "Ready", "status": if ready { "True" } else { "False" },
                         "lastTransitionTime": Timestamp::now().to_string() }],
    }});
    t(api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)))
        .await
        .expect("pod status")
}

async fn slices_of(api: &Api<EndpointSlice>, svc: &str) -> Vec<EndpointSlice> {
    t(api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"))))
        .await
        .expect("list slices")
        .items
}

/// (pod name, ready, serving, terminating) of every endpoint of the Service's slices, sorted.
fn endpoint_states(slices: &[EndpointSlice]) -> Vec<(String, bool, bool, bool)> {
    let mut states: Vec<_> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .map(|ep| {
            let c = ep.conditions.clone().unwrap_or_default();
            (
                ep.target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                c.ready == Some(true),
                c.serving == Some(true),
                c.terminating == Some(true),
            )
        })
        .collect();
    states.sort();
    states
}

/// (ready IPs, not-ready IPs) of an Endpoints object, each sorted.
fn endpoint_ips(ep: &Endpoints) -> (Vec<String>, Vec<String>) {
    let (mut ready, mut not_ready) = (vec![], vec![]);
    for subset in ep.subsets.iter().flatten() {
        ready.extend(subset.addresses.iter().flatten().map(|a| a.ip.clone()));
        not_ready.extend(subset.not_ready_addresses.iter().flatten().map(|a| a.ip.clone()));
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

/// Waits until the Service's slices show exactly `want` endpoint states.
async fn wait_slices(
    api: &Api<EndpointSlice>,
    svc: &str,
    want: Vec<(&str, bool, bool, bool)>,
) -> Vec<EndpointSlice> {
    let want: Vec<(String, bool, bool, bool)> = want
        .into_iter()
        .map(|(n, r, s, t)| (n.to_owned(), r, s, t))
        .collect();
    eventually(
        &format!("slices of {svc} to be {want:?}"),
        Duration::from_secs(10),
        || async {
            let slices = slices_of(api, svc).await;
            (endpoint_states(&slices) == want).then_some(slices)
        },
    )
    .await
}

/// Waits until the Endpoints object shows exactly these ready and not-ready IPs.
async fn wait_endpoints(api: &Api<Endpoints>, svc: &str, ready: &[&str], not_ready: &[&str]) -> Endpoints {
    let want = (
        ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        not_ready.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
    );
    eventually(
        &format!("endpoints {svc} to be {want:?}"),
        Duration::from_secs(10),
        || async {
            let ep = api.get_opt(svc).await.ok().flatten()?;
            (endpoint_ips(&ep) == want).then_some(ep)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_follows_its_pods_readiness_termination_and_deletion() {
    let cluster = Cluster::start().await;
    let (pods, slices, endpoints) = (cluster.pods(), cluster.slices(), cluster.endpoints());
    let svc = t(cluster.services().create(
        &PostParams::default(),
        &service("web", Some("web"), json!("http")),
    ))
    .await
    .expect("create service");
    for i in 0..3 {
        running_pod(
            &pods,
            &format!("web-{i}"),
            "web",
            8080,
            &format!("10.244.0.{}", 10 + i),
            true,
        )
        .await;
    }

    // Three ready pods: one slice with three ready endpoints, and the Endpoints object.
    let ready = vec![
        ("web-0", true, true, false),
        ("web-1", true, true, false),
        ("web-2", true, true, false),
    ];
    let found = wait_slices(&slices, "web", ready.clone()).await;
    assert_eq!(found.len(), 1);
    let slice = &found[0];
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(
        slice
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(slice.labels().get("team").map(String::as_str), Some("blue"));
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), Some(&owner.uid)),
        ("Service", svc.metadata.uid.as_ref())
    );
    let port = &slice.ports.as_ref().expect("ports")[0];
    assert_eq!((port.name.as_deref(), port.port), (Some("http"), Some(8080)));
    let first = &slice.endpoints.as_ref().expect("endpoints")[0];
    assert_eq!(first.node_name.as_deref(), Some("n1"));
    assert_eq!(first.zone.as_deref(), Some("zone-a"));
    let ep = wait_endpoints(
        &endpoints,
        "web",
        &["10.244.0.10", "10.244.0.11", "10.244.0.12"],
        &[],
    )
    .await;
    assert!(
        ep.annotations()
            .contains_key("endpoints.kubernetes.io/last-change-trigger-time")
    );
    let address = &ep.subsets.as_ref().expect("subsets")[0]
        .addresses
        .as_ref()
        .expect("addresses")[0];
    assert_eq!(address.node_name.as_deref(), Some("n1"));
    assert_eq!(
        address.target_ref.as_ref().and_then(|r| r.kind.as_deref()),
        Some("Pod")
    );

    // Nothing changes: nothing is written.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = slices_of(&slices, "web").await;
    assert_eq!(
        again[0].resource_version(),
        slice.resource_version(),
        "a slice was rewritten without a change"
    );

    // web-0 goes unready: not ready in the slice, a not-ready address in the Endpoints.
    set_status(&pods, "web-0", "10.244.0.10", false).await;
    wait_slices(
        &slices,
        "web",
        vec![
            ("web-0", false, false, false),
            ("web-1", true, true, false),
            ("web-2", true, true, false),
        ],
    )
    .await;
    wait_endpoints(
        &endpoints,
        "web",
        &["10.244.0.11", "10.244.0.12"],
        &["10.244.0.10"],
    )
    .await;

    // web-2 is deleted gracefully (no kubelet finishes it): terminating in the slice, gone from the
    // Endpoints; then removed for good: gone from the slice too.
    t(pods.delete("web-2", &DeleteParams::default()))
        .await
        .expect("delete web-2");
    wait_slices(
        &slices,
        "web",
        vec![
            ("web-0", false, false, false),
            ("web-1", true, true, false),
            ("web-2", false, true, true),
        ],
    )
    .await;
    wait_endpoints(&endpoints, "web", &["10.244.0.11"], &["10.244.0.10"]).await;
    t(pods.delete("web-2", &DeleteParams::default().grace_period(0)))
        .await
        .expect("remove web-2");
    wait_slices(
        &slices,
        "web",
        vec![("web-0", false, false, false), ("web-1", true, true, false)],
    )
    .await;

    // A pod relabelled away from the selector leaves too.
    t(pods.patch(
        "web-1",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "labels": { "app": "other" } } })),
    ))
    .await
    .expect("relabel");
    wait_slices(&slices, "web", vec![("web-0", false, false, false)]).await;
    wait_endpoints(&endpoints, "web", &[], &["10.244.0.10"]).await;

    // A slice deleted by hand is put back.
    let name = slices_of(&slices, "web").await[0].name_any();
    t(slices.delete(&name, &DeleteParams::default()))
        .await
        .expect("delete slice");
    wait_slices(&slices, "web", vec![("web-0", false, false, false)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_resolving_a_named_port_differently_land_in_different_slices() {
    let cluster = Cluster::start().await;
    let (pods, slices, endpoints) = (cluster.pods(), cluster.slices(), cluster.endpoints());
    t(cluster.services().create(
        &PostParams::default(),
        &service("named", Some("named"), json!("http")),
    ))
    .await
    .expect("create service");
    running_pod(&pods, "old", "named", 8080, "10.244.0.20", true).await;
    running_pod(&pods, "new", "named", 9090, "10.244.0.21", true).await;

    let found = wait_slices(
        &slices,
        "named",
        vec![("new", true, true, false), ("old", true, true, false)],
    )
    .await;
    let mut by_port: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    for slice in &found {
        let port = slice.ports.as_ref().expect("ports")[0].port.expect("port");
        by_port.entry(port).or_default().extend(
            slice
                .endpoints
                .iter()
                .flatten()
                .filter_map(|e| e.target_ref.as_ref()?.name.clone()),
        );
    }
    assert_eq!(
        by_port,
        BTreeMap::from([(8080, vec!["old".to_string()]), (9090, vec!["new".to_string()])])
    );

    let ep = wait_endpoints(&endpoints, "named", &["10.244.0.20", "10.244.0.21"], &[]).await;
    let mut subset_ports: Vec<(i32, Vec<String>)> = ep
        .subsets
        .iter()
        .flatten()
        .map(|s| {
            (
                s.ports.as_ref().expect("ports")[0].port,
                s.addresses.iter().flatten().map(|a| a.ip.clone()).collect(),
            )
        })
        .collect();
    subset_ports.sort();
    assert_eq!(
        subset_ports,
        [
            (8080, vec!["10.244.0.20".to_string()]),
            (9090, vec!["10.244.0.21".to_string()])
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_fifty_pods_fill_three_slices() {
    let cluster = Cluster::start().await;
    let (pods, slices, endpoints) = (cluster.pods(), cluster.slices(), cluster.endpoints());
    t(cluster
        .services()
        .create(&PostParams::default(), &service("big", Some("big"), json!(8080))))
    .await
    .expect("create service");
    for chunk in (0..250).collect::<Vec<usize>>().chunks(25) {
        let creates = chunk.iter().map(|&i| {
            let pods = pods.clone();
            async move {
                running_pod(
                    &pods,
                    &format!("big-{i}"),
                    "big",
                    8080,
                    &format!("10.244.{}.{}", 1 + i / 200, 2 + i % 200),
                    true,
                )
                .await
            }
        });
        futures::future::join_all(creates).await;
    }

    let found = eventually(
        "250 endpoints in the slices of big",
        Duration::from_secs(30),
        || async {
            let found = slices_of(&slices, "big").await;
            let states = endpoint_states(&found);
            (states.len() == 250 && states.iter().all(|s| s.1)).then_some(found)
        },
    )
    .await;
    let mut sizes: Vec<usize> = found
        .iter()
        .map(|s| s.endpoints.as_ref().map_or(0, Vec::len))
        .collect();
    sizes.sort();
    assert_eq!(sizes.len(), 3, "slices of sizes {sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 100), "slices of sizes {sizes:?}");

    eventually(
        "250 addresses in endpoints big",
        Duration::from_secs(20),
        || async {
            let ep = endpoints.get_opt("big").await.ok().flatten()?;
            (endpoint_ips(&ep).0.len() == 250).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_selector_is_left_alone() {
    let cluster = Cluster::start().await;
    let (pods, slices, endpoints) = (cluster.pods(), cluster.slices(), cluster.endpoints());
    t(cluster
        .services()
        .create(&PostParams::default(), &service("manual", None, json!(8080))))
    .await
    .expect("create service");
    let mine: Endpoints = serde_json::from_value(json!({
        "metadata": { "name": "manual" },
        "subsets": [{ "addresses": [{ "ip": "192.0.2.7" }], "ports": [{ "name": "http", "port": 8080 }] }]
    }))
    .expect("endpoints");
    let mine = t(endpoints.create(&PostParams::default(), &mine))
        .await
        .expect("create endpoints");
    // A pod that a selector would match, and a Service with a selector as a witness that the
    // controllers have had their go.
    running_pod(&pods, "manual-0", "manual", 8080, "10.244.0.30", true).await;
    t(cluster.services().create(
        &PostParams::default(),
        &service("witness", Some("manual"), json!(8080)),
    ))
    .await
    .expect("create witness");
    wait_slices(&slices, "witness", vec![("manual-0", true, true, false)]).await;
    wait_endpoints(&endpoints, "witness", &["10.244.0.30"], &[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let after = t(endpoints.get("manual")).await.expect("get endpoints");
    assert_eq!(
        after.resource_version(),
        mine.resource_version(),
        "the user's Endpoints were rewritten"
    );
    assert!(
        slices_of(&slices, "manual").await.is_empty(),
        "slices made for a selectorless service"
    );

    // A deleted selector Service takes its Endpoints along.
    t(cluster.services().delete("witness", &DeleteParams::default()))
        .await
        .expect("delete witness");
    eventually(
        "endpoints witness to be deleted",
        Duration::from_secs(10),
        || async {
            endpoints
                .get_opt("witness")
                .await
                .ok()
                .map(|e| e.is_none())
                .filter(|gone| *gone)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_service_publishing_not_ready_addresses_lists_unready_pods_as_ready() {
    let cluster = Cluster::start().await;
    let (pods, slices, endpoints) = (cluster.pods(), cluster.slices(), cluster.endpoints());
    let svc: Service = serde_json::from_value(json!({
        "metadata": { "name": "peers" },
        "spec": { "clusterIP": "None", "publishNotReadyAddresses": true, "selector": { "app": "peers" } }
    }))
    .expect("service");
    t(cluster.services().create(&PostParams::default(), &svc))
        .await
        .expect("create service");
    running_pod(&pods, "peer-0", "peers", 8080, "10.244.0.40", false).await;

    // Not ready, but published: ready in the slice (serving tells the truth), an address in the
    // Endpoints; no ports, and the headless label on both.
    let found = wait_slices(&slices, "peers", vec![("peer-0", true, false, false)]).await;
    assert!(found[0].ports.as_ref().is_none_or(Vec::is_empty));
    assert_eq!(
        found[0]
            .labels()
            .get("service.kubernetes.io/headless")
            .map(String::as_str),
        Some("")
    );
    let ep = wait_endpoints(&endpoints, "peers", &["10.244.0.40"], &[]).await;
    assert_eq!(
        ep.labels()
            .get("service.kubernetes.io/headless")
            .map(String::as_str),
        Some("")
    );
    assert!(
        ep.subsets.as_ref().expect("subsets")[0]
            .ports
            .as_ref()
            .is_none_or(Vec::is_empty)
    );
}
