//! The image store for real: busybox images built by scripts/build-busybox-image.sh from Debian's
//! busybox-static, imported from tarballs and pulled from Debian's `docker-registry` on a loopback
//! port (pushed there with skopeo), run by runc on overlay root filesystems.
//!
//! Needs root, runc, busybox, the CNI plugins, docker-registry, skopeo and htpasswd (scripts/setup.sh
//! installs them); each test prints why and passes without doing anything when one is missing. Every
//! test has its own node network namespace, state directory, cgroup parent and registry, removed in
//! Drop guards even when it fails; the registry listens on 127.0.0.1 only.

mod common;
use common::{helpers, which};

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Arc,
    time::Duration,
};

use serde_json::json;
use skiff_kubelet::{
    images::{ImageService, manager::ImageManager, overlay, reference::Reference, registry::Credentials},
    kubelet::{KubeletOptions, run_kubelet},
    node::NodeConfig,
    runc_runtime::{RuncConfig, RuncRuntime, remove_cgroup},
    runtime::{ContainerRuntime, ContainerSpec, ContainerState, SandboxSpec},
};

fn is_root() -> bool {
    rustix_uid() == 0
}

fn rustix_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Why these tests cannot run here, if they cannot.
fn missing(tools: &[&str]) -> Option<String> {
    if !is_root() {
        return Some("not root".into());
    }
    for tool in tools {
        if which(tool).is_none() {
            return Some(format!("{tool} not found"));
        }
    }
    None
}

macro_rules! require {
    ($($tool:expr),*) => {
        if let Some(why) = missing(&[$($tool),*]) {
            eprintln!("skipped: {why} (run as root after scripts/setup.sh)");
            return;
        }
    };
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A unique tag for names and paths.
fn tag() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    )
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", tag()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = overlay::unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A busybox image tarball named `name`, with a second layer holding /www/index.html and a
/// whiteout of /etc/group.
fn build_image(dir: &Path, name: &str) -> PathBuf {
    let extra = dir.join("extra");
    std::fs::create_dir_all(extra.join("www")).unwrap();
    std::fs::create_dir_all(extra.join("etc")).unwrap();
    std::fs::write(extra.join("www/index.html"), "hello from an image layer\n").unwrap();
    std::fs::write(extra.join("etc/.wh.group"), "").unwrap();
    let out = dir.join("busybox.tar");
    let status = Command::new("bash")
        .arg(repo().join("scripts/build-busybox-image.sh"))
        .arg(&out)
        .arg(name)
        .arg(&extra)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "building the busybox image");
    out
}

/// A node: network namespace, state directory, cgroup parent, and a runtime over the image store.
struct Node {
    netns: String,
    dir: TempDir,
    cgroup_parent: String,
    cfg: RuncConfig,
    images: Arc<ImageManager>,
}

impl Node {
    fn new() -> Self {
        let t = tag();
        let netns = format!("skiff-img-{t}");
        let dir = TempDir::new(&netns);
        let images = Arc::new(
            ImageManager::open(dir.0.join("state/image-store"))
                .unwrap()
                .with_backoff_base(Duration::from_secs(2)),
        );
        let service: Arc<dyn ImageService> = Arc::new(Shared(images.clone()));
        let mut cfg = RuncConfig::new(dir.0.join("state"), service);
        let (pause, shim) = helpers().clone();
        cfg.pause = pause;
        cfg.shim = shim;
        cfg.node_netns = Some(PathBuf::from(format!("/run/netns/{netns}")));
        cfg.cgroup_parent = format!("/skiff-img-test-{t}");
        assert!(
            Command::new("ip")
                .args(["netns", "add", &netns])
                .status()
                .unwrap()
                .success()
        );
        let _ = Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status();
        Node {
            netns,
            cgroup_parent: cfg.cgroup_parent.clone(),
            dir,
            cfg,
            images,
        }
    }
}

/// The manager shared between the test and the runtime.
struct Shared(Arc<ImageManager>);

impl ImageService for Shared {
    fn prepare(
        &self,
        image: &str,
        dir: &Path,
    ) -> Result<skiff_kubelet::images::PreparedImage, skiff_kubelet::runtime::RuntimeError> {
        self.0.prepare(image, dir)
    }
    fn manager(&self) -> Option<&ImageManager> {
        Some(&self.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(rt) = RuncRuntime::new(self.cfg.clone()) {
            for uid in rt.pods() {
                let _ = rt.kill_pod(&uid, 0);
            }
            for c in rt.runc().list().unwrap_or_default() {
                let _ = rt.runc().delete_force(&c.id);
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        remove_cgroup(&self.cgroup_parent);
        // The directory goes with `dir` (its mounts first).
    }
}

fn sandbox(uid: &str) -> SandboxSpec {
    SandboxSpec {
        uid: uid.into(),
        name: uid.into(),
        namespace: "default".into(),
        hostname: uid.into(),
        pod_cidr: Some("10.244.31.0/24".into()),
        ..Default::default()
    }
}

fn wait_exit(rt: &RuncRuntime, uid: &str, name: &str) -> i32 {
    for _ in 0..200 {
        let (_, containers) = rt.pod_status(uid).unwrap();
        if let Some(ContainerState::Exited { exit_code, .. }) = containers
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.state.clone())
        {
            return exit_code;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("container {name} did not exit");
}

fn log_of(rt: &RuncRuntime, uid: &str, name: &str) -> String {
    skiff_kubelet::logs::read_log_text(&rt.log_path(uid, name))
}

#[test]
fn an_imported_image_runs_on_an_overlay_rootfs_with_its_config() {
    require!("runc", "nsenter", "ip", "busybox");
    if !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipped: no CNI plugins");
        return;
    }
    let node = Node::new();
    let tarball = build_image(&node.dir.0, "skiff.test/busybox:v1");
    let imported = node.images.import(&tarball).unwrap();
    assert_eq!(imported[0].name, "skiff.test/busybox:v1");
    assert_eq!(imported[0].layers.len(), 2);
    let record = node.images.store().get("skiff.test/busybox:v1").unwrap().unwrap();
    assert!(record.repo_digest.starts_with("skiff.test/busybox@sha256:"));
    if let Err(e) = node.images.overlay_works() {
        panic!("overlayfs should work on this machine's data dir: {e}");
    }

    let rt = RuncRuntime::new(node.cfg.clone()).unwrap();
    rt.run_sandbox(&sandbox("img-a")).unwrap();
    // args alone replace the image's CMD ["sh"]; env from the image (PATH) and the pod (GREETING).
    let spec = ContainerSpec {
        name: "main".into(),
        image: "skiff.test/busybox:v1".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo greeting=$GREETING path=$PATH; cat /www/index.html; test -e /etc/group || echo group-whited-out; \
             test -e /etc/passwd && echo passwd-kept; echo scribble > /bin/busybox-note; echo cwd=$(pwd)"
                .into(),
        ],
        env: vec![("GREETING".into(), "hi".into())],
        ..Default::default()
    };
    rt.start_container("img-a", &spec).unwrap();
    assert_eq!(
        wait_exit(&rt, "img-a", "main"),
        0,
        "log: {}",
        log_of(&rt, "img-a", "main")
    );
    let log = log_of(&rt, "img-a", "main");
    assert!(
        log.contains("greeting=hi path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{log}"
    );
    assert!(
        log.contains("hello from an image layer"),
        "the upper layer shows: {log}"
    );
    assert!(
        log.contains("group-whited-out"),
        "the whiteout hides the lower layer's file: {log}"
    );
    assert!(log.contains("passwd-kept") && log.contains("cwd=/"), "{log}");

    // The rootfs is an overlay in the container's bundle; its writes stay out of the layers.
    let bundle = rt.pod_dir("img-a").join("main");
    assert!(
        overlay::mounts_under(&bundle).contains(&bundle.join("rootfs")),
        "an overlay mount"
    );
    assert!(
        bundle.join("upper/bin/busybox-note").exists(),
        "writes land in the upper dir"
    );
    let layers = node.images.store().unpack(&record).unwrap();
    assert!(
        layers.iter().all(|l| !l.join("bin/busybox-note").exists()),
        "layers untouched"
    );

    // A container with no command runs the image's CMD; one whose image is absent fails clearly.
    let cmd_only = ContainerSpec {
        name: "cmd".into(),
        image: "skiff.test/busybox:v1".into(),
        ..Default::default()
    };
    rt.start_container("img-a", &cmd_only).unwrap();
    assert_eq!(wait_exit(&rt, "img-a", "cmd"), 0, "sh with no stdin exits 0");
    let absent = ContainerSpec {
        name: "absent".into(),
        image: "skiff.test/nothing:v1".into(),
        ..Default::default()
    };
    let err = rt.start_container("img-a", &absent).unwrap_err();
    assert!(err.0.contains("not present"), "{err}");

    // Killing the pod unmounts and removes its rootfs; the unpacked layers stay for the next one.
    rt.kill_pod("img-a", 0).unwrap();
    assert!(overlay::mounts_under(&rt.pod_dir("img-a")).is_empty());
    assert!(!rt.pod_dir("img-a").exists());
    assert!(layers[0].join("bin/busybox").exists() && layers[1].join("www").exists());
}

/// Debian's docker-registry on a free loopback port, with basic auth if `users` is given.
struct Registry {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Registry {
    fn start(users: Option<(&str, &str)>) -> Self {
        Self::start_with(users, None)
    }

    /// With `token`: `(realm, cert.pem)` of a token server the registry trusts (bearer auth).
    fn start_with(users: Option<(&str, &str)>, token: Option<(&str, &Path)>) -> Self {
        let dir = TempDir::new("skiff-registry");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.0.join("data").display()
        );
        if let Some((user, password)) = users {
            let out = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .unwrap();
            std::fs::write(dir.0.join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                dir.0.join("htpasswd").display()
            ));
        }
        if let Some((realm, bundle)) = token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: skiff-registry\n    issuer: skiff-token-issuer\n    rootcertbundle: {}\n",
                bundle.display()
            ));
        }
        std::fs::write(dir.0.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.0.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.0.join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let registry = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the registry did not listen on {port}");
    }

    /// Pushes `tarball` as `repo:tag`; returns the manifest digest skopeo reports.
    fn push(&self, tarball: &Path, image: &str, creds: Option<&str>) -> String {
        let dest = format!("docker://127.0.0.1:{}/{image}", self.port);
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let digest_file = self._dir.0.join("digest");
        cmd.arg("--digestfile").arg(&digest_file);
        let out = cmd
            .arg(format!("docker-archive:{}", tarball.display()))
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(digest_file).unwrap().trim().to_owned()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_from_a_registry_anonymously_and_with_basic_auth() {
    require!("docker-registry", "skopeo", "htpasswd", "busybox");
    let dir = TempDir::new("skiff-pull");
    let tarball = build_image(&dir.0, "busybox:v1");
    let images = ImageManager::open(dir.0.join("store")).unwrap();
    let none = Vec::new();

    let open = Registry::start(None);
    let digest = open.push(&tarball, "team/busybox:v1", None);
    let image = format!("127.0.0.1:{}/team/busybox:v1", open.port);
    let pulled = tokio::time::timeout(Duration::from_secs(30), images.pull(&image, &none))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pulled.repo_digest,
        format!("127.0.0.1:{}/team/busybox@{digest}", open.port)
    );
    assert_eq!(pulled.layers.len(), 2);
    let by_digest = format!("127.0.0.1:{}/team/busybox@{digest}", open.port);
    assert!(
        images.store().get(&by_digest).unwrap().is_some(),
        "pinned by digest too"
    );
    let layers = images.store().unpack(&pulled).unwrap();
    assert!(layers[0].join("bin/busybox").is_file());
    // Pulling by digest works too, and a missing tag is an error naming the image.
    tokio::time::timeout(Duration::from_secs(30), images.pull(&by_digest, &none))
        .await
        .unwrap()
        .unwrap();
    let missing = format!("127.0.0.1:{}/team/busybox:nope", open.port);
    let err = tokio::time::timeout(Duration::from_secs(30), images.pull(&missing, &none))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not found") && err.contains("team/busybox:nope"),
        "{err}"
    );

    let locked = Registry::start(Some(("alice", "s3cret")));
    locked.push(&tarball, "private/busybox:v2", Some("alice:s3cret"));
    let private = format!("127.0.0.1:{}/private/busybox:v2", locked.port);
    let err = tokio::time::timeout(Duration::from_secs(30), images.pull(&private, &none))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(err.contains("unauthorized"), "{err}");
    let domain = Reference::parse(&private).unwrap().domain;
    let wrong = vec![(
        domain.clone(),
        Credentials {
            username: "alice".into(),
            password: "nope".into(),
        },
    )];
    assert!(
        tokio::time::timeout(Duration::from_secs(30), images.pull(&private, &wrong))
            .await
            .unwrap()
            .is_err()
    );
    let right = vec![(
        domain,
        Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        },
    )];
    let pulled = tokio::time::timeout(Duration::from_secs(30), images.pull(&private, &right))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pulled.name,
        format!("127.0.0.1:{}/private/busybox:v2", locked.port)
    );
}

/// The kubelet pulls as the pod says: a private image with an imagePullSecret runs (its imageID
/// the repo digest); a bad reference waits in ErrImagePull, then ImagePullBackOff; `Never` with an
/// absent image is ErrImageNeverPull. Nothing crashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_pulls_with_pull_secrets_and_backs_off_on_bad_images() {
    use base64::Engine as _;
    use k8s_openapi::api::core::v1::{Node as NodeObject, Pod, Secret};
    use kube::{
        Api,
        api::{Patch, PatchParams, PostParams},
    };
    use skiff_tests::{Component, InProcess, eventually};
    require!(
        "runc",
        "nsenter",
        "ip",
        "busybox",
        "docker-registry",
        "skopeo",
        "htpasswd"
    );
    if !Path::new("/usr/lib/cni/bridge").exists() {
        eprintln!("skipped: no CNI plugins");
        return;
    }
    let node = Node::new();
    let tarball = build_image(&node.dir.0, "busybox:v1");
    let registry = Registry::start(Some(("bob", "hunter2")));
    let digest = registry.push(&tarball, "private/app:v1", Some("bob:hunter2"));
    let host = format!("127.0.0.1:{}", registry.port);

    let api = tokio::time::timeout(
        Duration::from_secs(30),
        InProcess::start(skiff_apiserver::watch_cache::WatchCacheOptions::default()),
    )
    .await
    .expect("the API server starts in time")
    .expect("the API server starts");
    let client = api.client.clone();
    let runtime = Arc::new(RuncRuntime::new(node.cfg.clone()).unwrap());
    let options = KubeletOptions {
        lease_interval: Duration::from_secs(1),
        restart_backoff: Duration::from_millis(500),
        status_interval: Duration::from_secs(5),
        ..KubeletOptions::new(NodeConfig {
            name: "img-node".into(),
            address: "127.0.0.1".into(),
            cpu: "2".into(),
            memory: "4Gi".into(),
            pods: 110,
            ephemeral_storage: "10Gi".into(),
            runtime_version: runtime.version(),
            labels: Vec::new(),
        })
    };
    let (kc, kr) = (client.clone(), runtime.clone());
    let _kubelet = Component::spawn(move |shutdown| async move {
        let _ = run_kubelet(kc, options, kr, shutdown).await;
    });
    let nodes: Api<NodeObject> = Api::all(client.clone());
    eventually("the node registers", Duration::from_secs(20), || {
        let nodes = nodes.clone();
        async move { nodes.get_opt("img-node").await.ok().flatten() }
    })
    .await;
    let cidr = json!({ "spec": { "podCIDR": "10.244.32.0/24", "podCIDRs": ["10.244.32.0/24"] } });
    tokio::time::timeout(
        Duration::from_secs(10),
        nodes.patch("img-node", &PatchParams::default(), &Patch::Merge(cidr)),
    )
    .await
    .unwrap()
    .unwrap();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let auth = base64::engine::general_purpose::STANDARD.encode("bob:hunter2");
    let config = json!({ "auths": { host.clone(): { "auth": auth } } }).to_string();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "regcred" },
        "type": "kubernetes.io/dockerconfigjson",
        "data": { ".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config) }
    }))
    .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        secrets.create(&PostParams::default(), &secret),
    )
    .await
    .unwrap()
    .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let create = |name: &str, image: String, extra: serde_json::Value| {
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": { "name": name },
            "spec": { "nodeName": "img-node", "terminationGracePeriodSeconds": 0,
                      "containers": [{ "name": "app", "image": image, "command": ["sleep", "300"] }] }
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            pod["spec"][k] = v.clone();
        }
        let pods = pods.clone();
        async move {
            let pod: Pod = serde_json::from_value(pod).unwrap();
            tokio::time::timeout(Duration::from_secs(10), pods.create(&PostParams::default(), &pod))
                .await
                .unwrap()
                .unwrap();
        }
    };
    create(
        "private",
        format!("{host}/private/app:v1"),
        json!({ "imagePullSecrets": [{ "name": "regcred" }] }),
    )
    .await;
    create(
        "bad",
        format!("{host}/private/nosuch:v1"),
        json!({ "imagePullSecrets": [{ "name": "regcred" }] }),
    )
    .await;
    let mut never = json!({ "containers": [{ "name": "app", "image": "skiff.test/absent:v1",
        "imagePullPolicy": "Never", "command": ["sleep", "300"] }] });
    never["nodeName"] = json!("img-node");
    create("never", String::new(), never).await;

    let waiting = |name: &'static str| {
        let pods = pods.clone();
        async move {
            let status = pods.get(name).await.ok()?.status?.container_statuses?.pop()?;
            let w = status.state?.waiting?;
            Some((w.reason.unwrap_or_default(), w.message.unwrap_or_default()))
        }
    };
    let status = eventually(
        "the private image is pulled and runs",
        Duration::from_secs(60),
        || {
            let pods = pods.clone();
            async move {
                let s = pods
                    .get("private")
                    .await
                    .ok()?
                    .status?
                    .container_statuses?
                    .pop()?;
                s.state.as_ref()?.running.as_ref()?;
                Some(s)
            }
        },
    )
    .await;
    assert_eq!(
        status.image_id,
        format!("{host}/private/app@{digest}"),
        "imageID is the repo digest"
    );

    let (reason, message) = eventually("the bad image fails to pull", Duration::from_secs(30), || {
        let w = waiting("bad");
        async move { w.await.filter(|(r, _)| r == "ErrImagePull") }
    })
    .await;
    assert!(message.contains("not found"), "{reason}: {message}");
    let (_, message) = eventually("then backs off", Duration::from_secs(30), || {
        let w = waiting("bad");
        async move { w.await.filter(|(r, _)| r == "ImagePullBackOff") }
    })
    .await;
    assert!(message.contains("Back-off pulling image"), "{message}");
    // After the back-off, it is tried again (and fails again).
    eventually("and is tried again", Duration::from_secs(30), || {
        let w = waiting("bad");
        async move { w.await.filter(|(r, _)| r == "ErrImagePull") }
    })
    .await;
    let (_, message) = eventually("Never with an absent image", Duration::from_secs(30), || {
        let w = waiting("never");
        async move { w.await.filter(|(r, _)| r == "ErrImageNeverPull") }
    })
    .await;
    assert!(message.contains("pull policy of Never"), "{message}");
    let phase = pods.get("bad").await.unwrap().status.unwrap().phase;
    assert_eq!(phase.as_deref(), Some("Pending"));
}

/// `digest` of `bytes`, written into the OCI layout at `dir`.
fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let digest = skiff_kubelet::images::archive::sha256(bytes);
    std::fs::write(
        dir.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
        bytes,
    )
    .unwrap();
    digest
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// OCI layouts (with an index of two platforms, gzipped) and gzipped docker archives import; the
/// same index pushed to a registry pulls the node's platform, named by the index's digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_layouts_gzipped_archives_and_multi_platform_indexes() {
    require!("docker-registry", "skopeo", "busybox", "tar", "gzip");
    let dir = TempDir::new("skiff-oci");
    let tarball = build_image(&dir.0, "busybox:v1");
    let images = ImageManager::open(dir.0.join("store")).unwrap();

    // A gzipped docker archive.
    run_ok(Command::new("gzip").arg("-k").arg(&tarball));
    let gz = PathBuf::from(format!("{}.gz", tarball.display()));
    let imported = images.import(&gz).unwrap();
    assert_eq!(imported[0].name, "docker.io/library/busybox:v1");

    // An OCI layout whose one entry is an index: an arm64 manifest (the amd64 one with an
    // annotation, so its digest differs) and the amd64 one.
    let layout = dir.0.join("layout");
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("docker-archive:{}", tarball.display()))
            .arg(format!("oci:{}:v1", layout.display())),
    );
    let tag_only = dir.0.join("tag-only.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tag_only)
            .arg("."),
    );
    let err = images.import(&tag_only).unwrap_err().to_string();
    assert!(err.contains("named only by the tag \"v1\""), "{err}");
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let amd64 = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let amd64_size = index["manifests"][0]["size"].as_u64().unwrap();
    let mut other: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(amd64.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    other["annotations"] = json!({ "skiff.test/platform": "arm64" });
    let other_bytes = serde_json::to_vec(&other).unwrap();
    let arm64 = put_blob(&layout, &other_bytes);
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let list = serde_json::to_vec(
        &json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": manifest_type, "digest": arm64, "size": other_bytes.len(),
              "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" } },
            { "mediaType": manifest_type, "digest": amd64, "size": amd64_size,
              "platform": { "architecture": "amd64", "os": "linux" } },
        ] }),
    )
    .unwrap();
    let list_digest = put_blob(&layout, &list);
    let top = json!({ "schemaVersion": 2, "manifests": [{ "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": list_digest, "size": list.len(),
        "annotations": { "org.opencontainers.image.ref.name": "skiff.test/multi:v1" } }] });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let oci_tgz = dir.0.join("multi.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-czf")
            .arg(&oci_tgz)
            .arg("."),
    );
    let imported = images.import(&oci_tgz).unwrap();
    assert_eq!(imported[0].name, "skiff.test/multi:v1");
    let on_amd64 = cfg!(target_arch = "x86_64");
    if on_amd64 {
        assert_eq!(imported[0].target, amd64, "the node's platform");
    }
    assert_eq!(imported[0].repo_digest, format!("skiff.test/multi@{list_digest}"));

    // The same index through a registry.
    let registry = Registry::start(None);
    let dest = format!("docker://127.0.0.1:{}/multi/busybox:v1", registry.port);
    run_ok(
        Command::new("skopeo")
            .args(["copy", "--quiet", "--all", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:skiff.test/multi:v1", layout.display()))
            .arg(&dest),
    );
    let image = format!("127.0.0.1:{}/multi/busybox:v1", registry.port);
    let pulled = tokio::time::timeout(Duration::from_secs(30), images.pull(&image, &Vec::new()))
        .await
        .unwrap()
        .unwrap();
    if on_amd64 {
        assert_eq!(pulled.target, amd64);
    }
    assert_eq!(
        pulled.repo_digest,
        format!("127.0.0.1:{}/multi/busybox@{list_digest}", registry.port)
    );
}

/// A token server as Docker Hub's auth.docker.io: basic credentials in, a JWT (ES256, signed by a
/// self-signed certificate the registry trusts, carried in `x5c`) granting the scopes asked for out;
/// without (right) credentials, a token granting nothing.
struct TokenServer {
    port: u16,
    cert_pem: PathBuf,
    /// Tokens handed out with access, and without.
    granted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenServer {
    async fn start(dir: &Path, user: &'static str, password: &'static str) -> Self {
        use base64::Engine as _;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["skiff-token-issuer".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_pem = dir.join("token-cert.pem");
        std::fs::write(&cert_pem, cert.pem()).unwrap();
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
        let rng = ring::rand::SystemRandom::new();
        let signer = Arc::new(
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &rng,
            )
            .unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let granted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = granted.clone();
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let (signer, x5c, expected, counter) =
                    (signer.clone(), x5c.clone(), expected.clone(), counter.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tokio::time::timeout(Duration::from_secs(5), conn.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).into_owned();
                    let path = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    let authorized = head.lines().any(|l| {
                        l.split_once(':').is_some_and(|(k, v)| {
                            k.eq_ignore_ascii_case("authorization") && v.trim() == expected
                        })
                    });
                    let query = path
                        .split_once('?')
                        .map(|(_, q)| q.to_owned())
                        .unwrap_or_default();
                    let decode = |v: &str| {
                        v.replace("%3A", ":")
                            .replace("%2F", "/")
                            .replace("%2C", ",")
                            .replace("%3a", ":")
                            .replace("%2f", "/")
                            .replace("%2c", ",")
                    };
                    let mut access = Vec::new();
                    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
                        if k == "scope" && authorized {
                            let scope = decode(v);
                            let mut parts = scope.splitn(3, ':');
                            let (kind, name, actions) = (
                                parts.next().unwrap_or_default(),
                                parts.next().unwrap_or_default(),
                                parts.next().unwrap_or_default(),
                            );
                            access.push(json!({ "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>() }));
                        }
                    }
                    if !access.is_empty() {
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let header = json!({ "typ": "JWT", "alg": "ES256", "x5c": [x5c] });
                    let claims = json!({ "iss": "skiff-token-issuer", "sub": if authorized { user } else { "" },
                        "aud": "skiff-registry", "exp": now + 300, "nbf": now - 10, "iat": now,
                        "jti": format!("{now}-{}", tag()), "access": access });
                    let signing_input = format!(
                        "{}.{}",
                        b64url(header.to_string().as_bytes()),
                        b64url(claims.to_string().as_bytes())
                    );
                    let sig = signer
                        .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
                        .unwrap();
                    let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
                    let body =
                        json!({ "token": token, "access_token": token, "expires_in": 300 }).to_string();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.shutdown().await;
                });
            }
        });
        Self {
            port,
            cert_pem,
            granted,
            task,
        }
    }
}

/// Bearer-token auth as Docker Hub does it, against the real registry: the 401's challenge names
/// the token realm, the client gets a token there with its basic credentials and retries with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_are_pulled_from_a_registry_with_bearer_tokens() {
    require!("docker-registry", "skopeo", "busybox");
    let dir = TempDir::new("skiff-bearer");
    let tarball = build_image(&dir.0, "busybox:v1");
    let tokens = TokenServer::start(&dir.0, "carol", "pa55").await;
    let realm = format!("http://127.0.0.1:{}/token", tokens.port);
    let registry = Registry::start_with(None, Some((&realm, &tokens.cert_pem)));
    let digest = registry.push(&tarball, "sealed/busybox:v1", Some("carol:pa55"));
    let pushes = tokens.granted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(pushes > 0, "skopeo pushed with a token");

    let images = ImageManager::open(dir.0.join("store")).unwrap();
    let image = format!("127.0.0.1:{}/sealed/busybox:v1", registry.port);
    let err = tokio::time::timeout(Duration::from_secs(30), images.pull(&image, &Vec::new()))
        .await
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unauthorized") || err.contains("401"),
        "an anonymous token grants nothing: {err}"
    );
    let domain = Reference::parse(&image).unwrap().domain;
    let keyring = vec![(
        domain,
        Credentials {
            username: "carol".into(),
            password: "pa55".into(),
        },
    )];
    let pulled = tokio::time::timeout(Duration::from_secs(30), images.pull(&image, &keyring))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pulled.repo_digest,
        format!("127.0.0.1:{}/sealed/busybox@{digest}", registry.port)
    );
    assert!(
        tokens.granted.load(std::sync::atomic::Ordering::SeqCst) > pushes,
        "the pull got its own token"
    );
}

/// Each run of a container starts from the image again, on an overlay or (where overlayfs does not
/// work) on a copy of the layers with the whiteouts applied.
#[test]
fn a_fresh_rootfs_each_run_on_overlays_and_on_copies() {
    require!("busybox");
    let dir = TempDir::new("skiff-rootfs");
    let tarball = build_image(&dir.0, "busybox:v1");
    for copies in [false, true] {
        let mut images = ImageManager::open(dir.0.join(format!("store-{copies}"))).unwrap();
        if copies {
            images = images.without_overlay();
        }
        images.import(&tarball).unwrap();
        let container = dir.0.join(format!("container-{copies}"));
        let prepared = images.prepare("busybox:v1", &container).unwrap();
        let rootfs = &prepared.rootfs;
        assert!(rootfs.join("bin/busybox").is_file() && rootfs.join("www/index.html").is_file());
        assert!(
            rootfs.join("etc/passwd").is_file() && !rootfs.join("etc/group").exists(),
            "whited out"
        );
        let config = prepared.config.unwrap();
        assert_eq!(config.config.cmd, Some(vec!["sh".to_owned()]));
        assert!(
            prepared
                .image_id
                .unwrap()
                .starts_with("docker.io/library/busybox@sha256:")
        );
        assert_eq!(
            overlay::mounts_under(&container).contains(&container.join("rootfs")),
            !copies
        );
        std::fs::write(rootfs.join("tmp/left-over"), "x").unwrap();
        let again = images.prepare("busybox:v1", &container).unwrap();
        assert!(
            !again.rootfs.join("tmp/left-over").exists(),
            "a restart starts from the image"
        );
        overlay::unmount_under(&container).unwrap();
        assert!(overlay::mounts_under(&container).is_empty());
    }
}
