//! The parts of a pod spec that go beyond running a command, for real: env from values, a ConfigMap,
//! a Secret and the downward API; volumes (an emptyDir an init container fills, configMap, secret,
//! downwardAPI and hostPath, a configMap update reaching the files); probes (a failing liveness probe
//! restarts its container, readiness gates Ready); and the errors that keep containers from starting.
//!
//! Needs root, runc, the CNI plugins and busybox (scripts/setup.sh); skipped with a note otherwise.
//! Like tests/runc_runtime.rs, the node is a network namespace the test makes, with its own state
//! directory and cgroup parent, all removed by a Drop guard even when the test fails.

mod common;
use common::{helpers, which};

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use k8s_openapi::api::core::v1::{ConfigMap, Node as NodeObject, Pod, Secret};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use skiff_kubelet::{
    kubelet::{KubeletOptions, run_kubelet},
    node::NodeConfig,
    runc_runtime::{RuncConfig, RuncRuntime, remove_cgroup},
    runtime::ContainerRuntime,
};
use skiff_tests::{Component, InProcess, eventually};

fn missing() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not root".into());
    }
    for tool in ["runc", "ip", "busybox"] {
        if which(tool).is_none() {
            return Some(format!("{tool} not found"));
        }
    }
    if !Path::new("/usr/lib/cni/bridge").exists() {
        return Some("the CNI plugins (/usr/lib/cni) are not installed".into());
    }
    None
}

/// A node in its own network namespace, state directory and cgroup parent; dropping it stops every
/// pod (unmounting their volumes) and removes all of it.
struct Node {
    netns: String,
    dir: PathBuf,
    cfg: RuncConfig,
    /// The kubelet's runtime: cleaning up through it marks its pods killed, so a sync still in
    /// flight cannot bring a sandbox back.
    kubelet_runtime: Option<Arc<RuncRuntime>>,
}

impl Node {
    fn new() -> Self {
        let tag = format!(
            "{:x}{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let netns = format!("skiff-ps-{tag}");
        let dir = std::env::temp_dir().join(&netns);
        let rootfs = dir.join("busybox");
        let images = rootfs.clone();
        let mut cfg = RuncConfig::new(
            dir.join("state"),
            Arc::new(move |image: &str| match image {
                "busybox" => Ok(images.clone()),
                other => Err(skiff_kubelet::runtime::RuntimeError(format!("no image {other}"))),
            }),
        );
        let (pause, shim) = helpers().clone();
        cfg.pause = pause;
        cfg.shim = shim;
        cfg.node_netns = Some(PathBuf::from(format!("/run/netns/{netns}")));
        cfg.cgroup_parent = format!("/skiff-test-{tag}");
        let node = Node {
            netns: netns.clone(),
            dir,
            cfg,
            kubelet_runtime: None,
        };
        assert!(
            Command::new("ip")
                .args(["netns", "add", &netns])
                .status()
                .unwrap()
                .success()
        );
        let lo = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status();
        assert!(lo.unwrap().success());
        let bin = rootfs.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for d in ["proc", "dev", "sys", "tmp", "www"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy(which("busybox").unwrap(), bin.join("busybox")).unwrap();
        for applet in [
            "sh", "sleep", "httpd", "env", "cat", "echo", "touch", "grep", "mount", "true", "false",
        ] {
            std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
        }
        std::fs::write(rootfs.join("www/index.html"), "ok\n").unwrap();
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The kubelet's blocking tasks may still finish an operation: clean up twice, a moment apart.
        for round in 0..2 {
            if round > 0 {
                std::thread::sleep(Duration::from_secs(2));
            }
            let rt = match &self.kubelet_runtime {
                Some(rt) => Ok(rt.clone()),
                None => RuncRuntime::new(self.cfg.clone()).map(Arc::new),
            };
            if let Ok(rt) = rt {
                for uid in rt.pods() {
                    let _ = rt.kill_pod(&uid, 0);
                }
                for c in rt.runc().list().unwrap_or_default() {
                    let _ = rt.runc().delete_force(&c.id);
                }
            }
            skiff_kubelet::volumes::unmount_all(&self.dir);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_cgroup(&self.cfg.cgroup_parent);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Mount points under `dir` (the node's view).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&dir))
        .collect()
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .unwrap_or_else(|_| panic!("{what} took too long"))
}

async fn pod_json(pods: &Api<Pod>, name: &str) -> Option<Value> {
    serde_json::to_value(pods.get(name).await.ok()?).ok()
}

fn condition(pod: &Value, kind: &str) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_volumes_and_probes_work_on_a_real_node() {
    if let Some(why) = missing() {
        eprintln!("skipped: {why} (run as root after scripts/setup.sh)");
        return;
    }
    let mut node = Node::new();
    let out = node.dir.join("out");
    let api = within(
        "the API server start",
        InProcess::start(skiff_apiserver::watch_cache::WatchCacheOptions::default()),
    )
    .await
    .expect("the API server starts");
    let client = api.client.clone();
    let runtime = Arc::new(RuncRuntime::new(node.cfg.clone()).unwrap());
    node.kubelet_runtime = Some(runtime.clone());
    let options = KubeletOptions {
        lease_interval: Duration::from_secs(1),
        restart_backoff: Duration::from_millis(500),
        status_interval: Duration::from_secs(5),
        volume_resync: Duration::from_secs(1),
        ..KubeletOptions::new(NodeConfig {
            name: "ps-node".into(),
            address: "127.0.0.1".into(),
            cpu: "2".into(),
            memory: "4Gi".into(),
            pods: 110,
            ephemeral_storage: "10Gi".into(),
            runtime_version: runtime.version(),
            labels: Vec::new(),
        })
    };
    let (kubelet_client, kubelet_runtime) = (client.clone(), runtime.clone());
    let _kubelet = Component::spawn(move |shutdown| async move {
        let _ = run_kubelet(kubelet_client, options, kubelet_runtime, shutdown).await;
    });
    let nodes: Api<NodeObject> = Api::all(client.clone());
    eventually("the node registers", Duration::from_secs(20), || {
        let nodes = nodes.clone();
        async move { nodes.get_opt("ps-node").await.ok().flatten() }
    })
    .await;
    let cidr = json!({ "spec": { "podCIDR": "10.244.21.0/24", "podCIDRs": ["10.244.21.0/24"] } });
    within(
        "the pod CIDR patch",
        nodes.patch("ps-node", &PatchParams::default(), &Patch::Merge(cidr)),
    )
    .await
    .unwrap();

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({ "metadata": { "name": "cfg" },
        "data": { "color": "blue", "size": "L", "1st": "skipped" } }))
    .unwrap();
    within("a ConfigMap create", cms.create(&PostParams::default(), &cm))
        .await
        .unwrap();
    let secret: Secret = serde_json::from_value(json!({ "metadata": { "name": "sec" },
        "data": { "password": "czNjcmV0" } }))
    .unwrap();
    within("a Secret create", secrets.create(&PostParams::default(), &secret))
        .await
        .unwrap();

    // A Service in the namespace: its variables reach the containers (service links).
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let svc = serde_json::from_value(json!({ "metadata": { "name": "backend" },
        "spec": { "ports": [{ "name": "http", "port": 80 }] } }))
    .unwrap();
    let svc = within("a Service create", services.create(&PostParams::default(), &svc))
        .await
        .unwrap();
    let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).unwrap_or_default();

    let create = |spec: Value| {
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(spec).unwrap();
            within("a pod create", pods.create(&PostParams::default(), &pod))
                .await
                .unwrap();
        }
    };
    // A plain pod first, timed (printed, not asserted: the figure is the benchmark's business).
    let created = std::time::Instant::now();
    create(json!({
        "metadata": { "name": "plain" },
        "spec": { "nodeName": "ps-node", "terminationGracePeriodSeconds": 1,
                  "containers": [{ "name": "app", "image": "busybox", "command": ["sleep", "1000"] }] }
    }))
    .await;
    eventually("the plain pod runs", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move { (pod_json(&pods, "plain").await?["status"]["phase"] == "Running").then_some(()) }
    })
    .await;
    eprintln!(
        "plain pod create → Running (polled every 50 ms): {:?}",
        created.elapsed()
    );

    // Env from every source and every kind of volume; the app container copies what it sees to a
    // hostPath directory the test reads, and keeps copying the configMap file.
    create(json!({
        "metadata": { "name": "env-vol", "labels": { "app": "demo" } },
        "spec": {
            "nodeName": "ps-node", "terminationGracePeriodSeconds": 1,
            "initContainers": [{ "name": "fill", "image": "busybox",
                "command": ["sh", "-c", "echo filled-by-init > /work/init.txt"],
                "volumeMounts": [{ "name": "work", "mountPath": "/work" }] }],
            "containers": [{
                "name": "app", "image": "busybox",
                "command": ["sh", "-c"],
                "args": ["env > /out/env; echo $(GREETING) > /out/expanded; cat /work/init.txt > /out/init; \
                          cat /etc/sec/password > /out/password; cat /etc/podinfo/labels > /out/labels; \
                          grep /etc/sec /proc/mounts > /out/secret-mount; grep ' /mem ' /proc/mounts > /out/mem-mount; \
                          while true; do cat /etc/cfg/color > /out/color.tmp; cat /out/color.tmp > /out/color; sleep 0.2; done"],
                "resources": { "limits": { "memory": "64Mi" } },
                "env": [
                    { "name": "GREETING", "value": "hello" },
                    { "name": "MESSAGE", "value": "$(GREETING) from $(POD_NAME) $$(GREETING)" },
                    { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                    { "name": "POD_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.podIP" } } },
                    { "name": "NODE", "valueFrom": { "fieldRef": { "fieldPath": "spec.nodeName" } } },
                    { "name": "APP", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['app']" } } },
                    { "name": "MEM_MI", "valueFrom": { "resourceFieldRef": { "resource": "limits.memory", "divisor": "1Mi" } } },
                    { "name": "COLOR", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "color" } } },
                    { "name": "PASSWORD", "valueFrom": { "secretKeyRef": { "name": "sec", "key": "password" } } }
                ],
                "envFrom": [{ "prefix": "CFG_", "configMapRef": { "name": "cfg" } }, { "configMapRef": { "name": "cfg" } }],
                "volumeMounts": [
                    { "name": "work", "mountPath": "/work", "readOnly": true },
                    { "name": "cfg", "mountPath": "/etc/cfg" },
                    { "name": "sec", "mountPath": "/etc/sec" },
                    { "name": "podinfo", "mountPath": "/etc/podinfo" },
                    { "name": "out", "mountPath": "/out" },
                    { "name": "mem", "mountPath": "/mem" }
                ]
            }],
            "volumes": [
                { "name": "work", "emptyDir": {} },
                { "name": "cfg", "configMap": { "name": "cfg" } },
                { "name": "sec", "secret": { "secretName": "sec", "defaultMode": 0o400 } },
                { "name": "podinfo", "downwardAPI": { "items": [{ "path": "labels", "fieldRef": { "fieldPath": "metadata.labels" } }] } },
                { "name": "out", "hostPath": { "path": out.to_string_lossy(), "type": "DirectoryOrCreate" } },
                { "name": "mem", "emptyDir": { "medium": "Memory", "sizeLimit": "16Mi" } }
            ]
        }
    }))
    .await;
    // A liveness probe that always fails: the container is stopped and started again.
    create(json!({
        "metadata": { "name": "unhealthy" },
        "spec": { "nodeName": "ps-node", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": "busybox", "command": ["sleep", "1000"],
            "livenessProbe": { "exec": { "command": ["false"] }, "periodSeconds": 1, "failureThreshold": 2 } }] }
    }))
    .await;
    // Ready only once its server answers (six seconds after it starts); a TCP liveness probe
    // that passes.
    create(json!({
        "metadata": { "name": "slow-web" },
        "spec": { "nodeName": "ps-node", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "web", "image": "busybox", "command": ["sh", "-c", "sleep 6; exec httpd -f -p 8080 -h /www"],
            "ports": [{ "name": "http", "containerPort": 8080 }],
            "readinessProbe": { "httpGet": { "port": "http", "path": "/index.html" }, "periodSeconds": 1 },
            "livenessProbe": { "tcpSocket": { "port": 8080 }, "initialDelaySeconds": 8, "periodSeconds": 1 } }] }
    }))
    .await;
    // A startup probe holds back a liveness probe that would fail until the container started.
    create(json!({
        "metadata": { "name": "starter" },
        "spec": { "nodeName": "ps-node", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": "busybox", "command": ["sh", "-c", "sleep 3; touch /tmp/started; exec sleep 1000"],
            "startupProbe": { "exec": { "command": ["cat", "/tmp/started"] }, "periodSeconds": 1, "failureThreshold": 30 },
            "livenessProbe": { "exec": { "command": ["cat", "/tmp/started"] }, "periodSeconds": 1, "failureThreshold": 1 },
            "readinessProbe": { "exec": { "command": ["true"] }, "periodSeconds": 1 } }] }
    }))
    .await;
    // A key that is not there keeps the container from starting; a missing ConfigMap volume keeps
    // the whole pod from starting.
    create(json!({
        "metadata": { "name": "bad-env" },
        "spec": { "nodeName": "ps-node", "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "app", "image": "busybox", "command": ["sleep", "1000"],
            "env": [{ "name": "X", "valueFrom": { "configMapKeyRef": { "name": "cfg", "key": "nope" } } }] }] }
    }))
    .await;
    create(json!({
        "metadata": { "name": "bad-volume" },
        "spec": { "nodeName": "ps-node", "terminationGracePeriodSeconds": 1,
            "containers": [{ "name": "app", "image": "busybox", "command": ["sleep", "1000"],
                             "volumeMounts": [{ "name": "v", "mountPath": "/v" }] }],
            "volumes": [{ "name": "v", "configMap": { "name": "absent" } }] }
    }))
    .await;

    // Readiness: running but not ready while its server does not answer.
    let unready = eventually("the web pod runs, not ready", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let pod = pod_json(&pods, "slow-web").await?;
            pod["status"]["containerStatuses"][0]["state"]["running"]
                .is_object()
                .then_some(pod)
        }
    })
    .await;
    assert_eq!(
        condition(&unready, "Ready").as_deref(),
        Some("False"),
        "{}",
        unready["status"]
    );
    assert_eq!(unready["status"]["containerStatuses"][0]["ready"], false);

    let starting = eventually("the starter runs", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let pod = pod_json(&pods, "starter").await?;
            let s = pod["status"]["containerStatuses"][0].clone();
            s["state"]["running"].is_object().then_some(s)
        }
    })
    .await;
    assert_eq!(
        (&starting["started"], &starting["ready"]),
        (&json!(false), &json!(false)),
        "{starting}"
    );

    // Env and volumes.
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    eventually(
        "the app container writes what it sees",
        Duration::from_secs(30),
        || {
            let ready = !read("color").is_empty();
            async move { ready.then_some(()) }
        },
    )
    .await;
    let env = read("env");
    let pod_ip = eventually("the pod IP is reported", Duration::from_secs(10), || {
        let pods = pods.clone();
        async move {
            pod_json(&pods, "env-vol").await?["status"]["podIP"]
                .as_str()
                .map(str::to_owned)
        }
    })
    .await;
    for want in [
        "GREETING=hello".to_owned(),
        // Only names defined before it expand; `$$` escapes.
        "MESSAGE=hello from $(POD_NAME) $(GREETING)".to_owned(),
        "POD_NAME=env-vol".to_owned(),
        format!("POD_IP={pod_ip}"),
        "NODE=ps-node".to_owned(),
        "APP=demo".to_owned(),
        "MEM_MI=64".to_owned(),
        "COLOR=blue".to_owned(),
        "PASSWORD=s3cret".to_owned(),
        "CFG_color=blue".to_owned(),
        "CFG_size=L".to_owned(),
        format!("BACKEND_SERVICE_HOST={cluster_ip}"),
        "BACKEND_SERVICE_PORT_HTTP=80".to_owned(),
        format!("BACKEND_PORT=tcp://{cluster_ip}:80"),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} in the container's env:\n{env}"
        );
    }
    assert!(
        !env.lines().any(|l| l.starts_with("1st=")),
        "invalid envFrom names are skipped"
    );
    assert!(
        env.lines().any(|l| l == "CFG_1st=skipped"),
        "a prefix can make them valid"
    );
    assert_eq!(read("expanded"), "hello\n", "$(VAR) in args expands");
    assert_eq!(
        read("init"),
        "filled-by-init\n",
        "the init container filled the emptyDir"
    );
    assert_eq!(read("password"), "s3cret");
    assert_eq!(read("labels"), "app=\"demo\"");
    assert!(
        read("secret-mount").contains(" ro,") || read("secret-mount").contains(" ro "),
        "{}",
        read("secret-mount")
    );
    assert_eq!(read("color"), "blue");
    let mem = read("mem-mount");
    assert!(
        mem.starts_with("tmpfs /mem tmpfs") && mem.contains("size=16384k"),
        "a sized tmpfs: {mem}"
    );
    let state = node.dir.join("state");
    let uid = pod_json(&pods, "env-vol").await.unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_owned();
    let password = state.join(format!("pods/{uid}/volumes/kubernetes.io~secret/sec/password"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&password).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o400, "the secret's defaultMode");
    let on_node = mounts_under(&state);
    assert!(
        on_node.iter().any(|m| m.ends_with("kubernetes.io~secret/sec")),
        "the secret is a tmpfs: {on_node:?}"
    );

    // A ConfigMap update reaches the volume (not the env).
    let patch = json!({ "data": { "color": "green" } });
    within(
        "a ConfigMap patch",
        cms.patch("cfg", &PatchParams::default(), &Patch::Merge(patch)),
    )
    .await
    .unwrap();
    eventually(
        "the configMap volume follows the update",
        Duration::from_secs(20),
        || {
            let green = read("color") == "green";
            async move { green.then_some(()) }
        },
    )
    .await;

    // Liveness: restarted, counted, its last run kept.
    let restarted = eventually(
        "the unhealthy container is restarted",
        Duration::from_secs(30),
        || {
            let pods = pods.clone();
            async move {
                let pod = pod_json(&pods, "unhealthy").await?;
                let s = pod["status"]["containerStatuses"][0].clone();
                (s["restartCount"].as_i64()? >= 1 && s["state"]["running"].is_object()).then_some(s)
            }
        },
    )
    .await;
    assert!(restarted["lastState"]["terminated"].is_object(), "{restarted}");

    let ready = eventually("the web pod becomes Ready", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let pod = pod_json(&pods, "slow-web").await?;
            (condition(&pod, "Ready").as_deref() == Some("True")).then_some(pod)
        }
    })
    .await;
    assert_eq!(condition(&ready, "ContainersReady").as_deref(), Some("True"));
    assert_eq!(ready["status"]["containerStatuses"][0]["ready"], true);
    assert_eq!(
        ready["status"]["containerStatuses"][0]["restartCount"], 0,
        "its TCP liveness probe passes"
    );

    // The startup probe passed: started, then ready, never restarted.
    let started = eventually("the starter starts and is ready", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let pod = pod_json(&pods, "starter").await?;
            let s = pod["status"]["containerStatuses"][0].clone();
            (s["started"] == true && s["ready"] == true).then_some(s)
        }
    })
    .await;
    assert_eq!(
        started["restartCount"], 0,
        "the liveness probe waited for the startup probe"
    );

    // Errors that keep containers from starting.
    let bad = eventually("the bad env is reported", Duration::from_secs(20), || {
        let pods = pods.clone();
        async move {
            let pod = pod_json(&pods, "bad-env").await?;
            let waiting = pod["status"]["containerStatuses"][0]["state"]["waiting"].clone();
            (waiting["reason"] == "CreateContainerConfigError").then_some(pod)
        }
    })
    .await;
    assert_eq!(
        bad["status"]["containerStatuses"][0]["state"]["waiting"]["message"],
        "couldn't find key nope in ConfigMap default/cfg"
    );
    assert_eq!(bad["status"]["phase"], "Pending");
    let stuck = pod_json(&pods, "bad-volume").await.unwrap();
    assert_eq!(stuck["status"]["phase"], "Pending", "{}", stuck["status"]);
    assert_eq!(
        stuck["status"]["containerStatuses"][0]["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    // What kept them, and the failed probes, are events `kubectl describe` shows.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    for (pod, reason, note) in [
        (
            "bad-volume",
            "FailedMount",
            "MountVolume.SetUp failed for volume \"v\" : configmap \"absent\" not found",
        ),
        (
            "bad-env",
            "Failed",
            "Error: couldn't find key nope in ConfigMap default/cfg",
        ),
        ("unhealthy", "Unhealthy", "Liveness probe failed: "),
        (
            "unhealthy",
            "Killing",
            "Container app failed liveness probe, will be restarted",
        ),
    ] {
        eventually(
            &format!("a {reason} event about {pod}"),
            Duration::from_secs(10),
            || {
                let events = events.clone();
                async move {
                    let list = events.list(&Default::default()).await.ok()?;
                    list.items
                        .into_iter()
                        .find(|e| {
                            e.involved_object.name.as_deref() == Some(pod)
                                && e.reason.as_deref() == Some(reason)
                                && e.message.as_deref().unwrap_or_default().starts_with(note)
                        })
                        .map(|_| ())
                }
            },
        )
        .await;
    }
    // Made, the ConfigMap lets it start.
    let absent: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "absent" }, "data": { "k": "v" } })).unwrap();
    within("a ConfigMap create", cms.create(&PostParams::default(), &absent))
        .await
        .unwrap();
    eventually(
        "the pod starts once its ConfigMap exists",
        Duration::from_secs(20),
        || {
            let pods = pods.clone();
            async move {
                let pod = pod_json(&pods, "bad-volume").await?;
                (pod["status"]["phase"] == "Running").then_some(())
            }
        },
    )
    .await;

    // Deleting the pods unmounts and removes everything.
    for name in [
        "plain",
        "env-vol",
        "unhealthy",
        "slow-web",
        "starter",
        "bad-env",
        "bad-volume",
    ] {
        within("a pod delete", pods.delete(name, &DeleteParams::default()))
            .await
            .unwrap();
    }
    eventually("the kubelet stops every pod", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            pods.list(&Default::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        }
    })
    .await;
    let rt = runtime.clone();
    eventually("nothing runs", Duration::from_secs(10), || {
        let empty = rt.pods().is_empty();
        async move { empty.then_some(()) }
    })
    .await;
    assert!(
        mounts_under(&state).is_empty(),
        "volumes are unmounted: {:?}",
        mounts_under(&state)
    );
    assert!(out.join("env").exists(), "a hostPath's files stay on the node");
}
