//! The kubelet's image manager (pkg/kubelet/images: `EnsureImageExists` and its pull back-off) over
//! the node's store, and the store as the runtime's [`ImageService`].
//!
//! Before a sync starts containers, [`ImageManager::ensure`] makes sure each one's image is there as
//! its `imagePullPolicy` says (unset: `Always` for `:latest` or no tag, else `IfNotPresent`, as API
//! defaulting does). A container whose image is not there waits, and the status says why, with
//! upstream's reasons and messages:
//!
//! - `ErrImageNeverPull`: policy `Never` and the image is absent;
//! - `ErrImagePull`: a pull failed; the image then backs off, per pod and image, 10 s doubling to
//!   5 min (upstream's `flowcontrol.Backoff`, forgotten after twice the maximum without failures);
//! - `ImagePullBackOff`: a sync during that back-off (no pull is tried);
//! - `InvalidImageName`: the reference does not parse.
//!
//! Pulls are serialised (upstream's default `serializeImagePulls: true`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    ImageError, ImageService, PreparedImage,
    archive::{self, Whiteouts},
    import::{self, import_tarball},
    manifest::Platform,
    overlay,
    reference::Reference,
    registry::RegistryClient,
    secrets::{self, Keyring},
    store::{ImageRecord, Store},
};
use crate::runtime::{ContainerSpec, RuntimeError};

/// The first pull back-off (upstream's `backOffPeriod`).
pub const PULL_BACKOFF_BASE: Duration = Duration::from_secs(10);
/// The longest pull back-off (upstream's `MaxContainerBackOff`).
pub const PULL_BACKOFF_MAX: Duration = Duration::from_secs(300);
/// How long a failed pull is reported as ErrImagePull before ImagePullBackOff (at most half the
/// back-off).
const REPORT_BACKOFF_AFTER: Duration = Duration::from_secs(2);

/// Why a container waits for its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting {
    /// `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName`.
    pub reason: String,
    /// What went wrong.
    pub message: String,
}

#[derive(Default)]
struct State {
    /// Pull back-off by `<pod uid>/<image>`: the current delay and the last failure.
    backoff: HashMap<String, (Duration, Instant)>,
    /// Containers waiting for their image, by pod uid and container name.
    waiting: HashMap<(String, String), Waiting>,
}

/// The node's images.
pub struct ImageManager {
    store: Store,
    /// Whether overlay mounts work on the store's filesystem (else rootfs are unpacked copies).
    /// Checked when first needed (listing or importing images does not mount anything).
    overlay: std::sync::OnceLock<Result<(), String>>,
    registry: Result<RegistryClient, String>,
    pulls: tokio::sync::Mutex<()>,
    backoff_base: Duration,
    state: Mutex<State>,
}

/// `imagePullPolicy` of container `name` in `pod`, defaulted as the API server defaults it.
pub fn pull_policy(pod: &Value, name: &str, image: &str) -> String {
    let set = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| pod["spec"][f].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
        .and_then(|c| c["imagePullPolicy"].as_str())
        .filter(|p| !p.is_empty());
    if let Some(p) = set {
        return p.to_owned();
    }
    // Upstream defaults on the tag as written: `busybox` and `busybox:latest` are Always.
    let latest = match Reference::parse(image) {
        Ok(r) => r.digest.is_none() && r.tag.as_deref() == Some("latest"),
        Err(_) => false,
    };
    if latest { "Always" } else { "IfNotPresent" }.to_owned()
}

impl ImageManager {
    /// The store at `root`. Overlayfs is checked there when a container first needs it (without it,
    /// containers get unpacked copies of their layers, as containerd's native snapshotter does).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let store = Store::open(root)?;
        Ok(Self {
            store,
            overlay: std::sync::OnceLock::new(),
            registry: RegistryClient::new(Platform::host()).map_err(|e| e.to_string()),
            pulls: tokio::sync::Mutex::new(()),
            backoff_base: PULL_BACKOFF_BASE,
            state: Mutex::default(),
        })
    }

    /// Sets the first pull back-off (tests shorten it).
    pub fn with_backoff_base(mut self, base: Duration) -> Self {
        self.backoff_base = base;
        self
    }

    /// Gives containers copies of their layers even where overlayfs works (containerd's native
    /// snapshotter; what happens by itself where overlayfs does not work).
    pub fn without_overlay(self) -> Self {
        let _ = self.overlay.set(Err("overlay mounts turned off".into()));
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether containers get overlay mounts (else: copies).
    pub fn overlay_works(&self) -> Result<(), String> {
        self.overlay
            .get_or_init(|| {
                let works = overlay::check(self.store.root()).map_err(|e| e.to_string());
                if let Err(e) = &works {
                    tracing::warn!(error = %e, "falling back to copying image layers into each container");
                }
                works
            })
            .clone()
    }

    /// Imports every tarball in `dir` (k3s's `agent/images/`), logging what each gave.
    pub fn import_dir(&self, dir: &Path) {
        for (file, result) in import::import_dir(&self.store, dir) {
            match result {
                Ok(images) => {
                    let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
                    tracing::info!(file = %file.display(), images = ?names, "imported images");
                }
                Err(e) => {
                    tracing::warn!(file = %file.display(), error = %e, "cannot import an image tarball")
                }
            }
        }
    }

    /// Imports one tarball.
    pub fn import(&self, file: &Path) -> Result<Vec<ImageRecord>, ImageError> {
        import_tarball(&self.store, file)
    }

    /// Pulls `image` with the credentials `keyring` has for its registry.
    pub async fn pull(&self, image: &str, keyring: &Keyring) -> Result<ImageRecord, ImageError> {
        let r = Reference::parse(image)?;
        let registry = self
            .registry
            .as_ref()
            .map_err(|e| ImageError::Registry(e.clone()))?;
        let _one_at_a_time = self.pulls.lock().await;
        registry
            .pull(&self.store, &r, secrets::lookup(keyring, &r.domain))
            .await
            .map_err(|e| ImageError::Registry(format!("failed to pull and unpack image \"{r}\": {e}")))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the images of the containers a sync is about to start are there, pulling as their
    /// policies say. Containers whose image is not there are taken out of `start` (and, after an
    /// init container, everything behind it); why is kept for [`Self::annotate`]. Returns when to
    /// sync again for them.
    pub async fn ensure(
        &self,
        client: &kube::Client,
        pod: &Value,
        start: &mut Vec<ContainerSpec>,
    ) -> Option<Duration> {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
        let mut keyring: Option<Keyring> = None;
        let mut retry: Option<Duration> = None;
        let mut kept = Vec::new();
        for spec in std::mem::take(start) {
            let key = (uid.clone(), spec.name.clone());
            match self.ensure_one(client, pod, &uid, &spec, &mut keyring).await {
                Ok(()) => {
                    self.state().waiting.remove(&key);
                    kept.push(spec);
                }
                Err((waiting, after)) => {
                    self.state().waiting.insert(key, waiting);
                    if let Some(after) = after {
                        retry = Some(retry.map_or(after, |r| r.min(after)));
                    }
                    if spec.init {
                        break; // The containers after it wait for it.
                    }
                }
            }
        }
        *start = kept;
        retry
    }

    async fn ensure_one(
        &self,
        client: &kube::Client,
        pod: &Value,
        uid: &str,
        spec: &ContainerSpec,
        keyring: &mut Option<Keyring>,
    ) -> Result<(), (Waiting, Option<Duration>)> {
        let image = spec.image.as_str();
        let wait = |reason: &str, message: String, after: Option<Duration>| {
            (
                Waiting {
                    reason: reason.into(),
                    message,
                },
                after,
            )
        };
        let present = match self.store.get(image) {
            Ok(found) => found.is_some(),
            Err(ImageError::InvalidReference(e)) => {
                return Err(wait(
                    "InvalidImageName",
                    format!(
                        "Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {e}"
                    ),
                    None,
                ));
            }
            Err(e) => return Err(wait("ErrImagePull", e.to_string(), Some(REPORT_BACKOFF_AFTER))),
        };
        let policy = pull_policy(pod, &spec.name, image);
        match (policy.as_str(), present) {
            ("Never", true) | ("IfNotPresent", true) => return Ok(()),
            ("Never", false) => {
                return Err(wait(
                    "ErrImageNeverPull",
                    format!("Container image \"{image}\" is not present with pull policy of Never"),
                    None,
                ));
            }
            _ => {}
        }
        let key = format!("{uid}/{image}");
        let now = Instant::now();
        // (Copied out: the guard must not live through the block, which locks again.)
        let backoff = self.state().backoff.get(&key).copied();
        if let Some((delay, at)) = backoff
            && now.duration_since(at) < delay
        {
            let since = now.duration_since(at);
            // The failure stays reported as such for a moment (a sync comes at once, woken by the
            // status write), then the back-off is.
            let report = REPORT_BACKOFF_AFTER.min(delay / 2);
            let failed = self
                .state()
                .waiting
                .get(&(uid.to_owned(), spec.name.clone()))
                .filter(|w| w.reason == "ErrImagePull")
                .cloned();
            if since < report
                && let Some(failed) = failed
            {
                return Err((failed, Some(report - since)));
            }
            return Err(wait(
                "ImagePullBackOff",
                format!("Back-off pulling image \"{image}\""),
                Some(delay - now.duration_since(at)),
            ));
        }
        if keyring.is_none() {
            *keyring = Some(secrets::pod_keyring(client, pod).await);
        }
        match self.pull(image, keyring.as_ref().unwrap_or(&Vec::new())).await {
            Ok(_) => {
                self.state().backoff.remove(&key);
                Ok(())
            }
            Err(e) => {
                let mut state = self.state();
                let delay = match state.backoff.get(&key) {
                    // Forgotten after a long quiet spell, as upstream's GC of back-off entries.
                    Some((delay, at)) if now.duration_since(*at) < 2 * PULL_BACKOFF_MAX => {
                        (*delay * 2).min(PULL_BACKOFF_MAX)
                    }
                    _ => self.backoff_base,
                };
                state.backoff.insert(key, (delay, now));
                tracing::warn!(image = %image, error = %e, "image pull failed");
                Err(wait(
                    "ErrImagePull",
                    e.to_string(),
                    Some(REPORT_BACKOFF_AFTER.min(delay / 2)),
                ))
            }
        }
    }

    /// Puts what [`Self::ensure`] found into the status of pod `uid`: the waiting reason of a
    /// container that has no image yet, and `imageID` (the repo digest) of those that run.
    pub fn annotate(&self, uid: &str, status: &mut Value) {
        let state = self.state();
        for field in ["initContainerStatuses", "containerStatuses"] {
            let Some(list) = status[field].as_array_mut() else {
                continue;
            };
            for c in list {
                let name = c["name"].as_str().unwrap_or_default().to_owned();
                let creating = matches!(
                    c["state"]["waiting"]["reason"].as_str(),
                    Some("ContainerCreating" | "PodInitializing")
                );
                if creating && let Some(w) = state.waiting.get(&(uid.to_owned(), name)) {
                    c["state"]["waiting"] = serde_json::json!({ "reason": w.reason, "message": w.message });
                }
                let has_container = c["containerID"].as_str().is_some_and(|id| !id.is_empty());
                if has_container
                    && let Some(image) = c["image"].as_str()
                    && let Ok(Some(record)) = self.store.get(image)
                {
                    c["imageID"] = Value::String(record.repo_digest);
                }
            }
        }
    }

    /// Forgets pod `uid` (it is gone).
    pub fn forget_pod(&self, uid: &str) {
        let mut state = self.state();
        state.waiting.retain(|(u, _), _| u != uid);
        let prefix = format!("{uid}/");
        state.backoff.retain(|k, _| !k.starts_with(&prefix));
    }
}

impl ImageService for ImageManager {
    fn prepare(&self, image: &str, container_dir: &Path) -> Result<PreparedImage, RuntimeError> {
        let record = self
            .store
            .get(image)?
            .ok_or_else(|| ImageError::NotFound(image.to_owned()))?;
        let rootfs = container_dir.join("rootfs");
        let (upper, work) = (container_dir.join("upper"), container_dir.join("work"));
        // A fresh rootfs each run: the last run's writes go.
        overlay::unmount(&rootfs)?;
        for dir in [&rootfs, &upper, &work] {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| RuntimeError(format!("clearing {}: {e}", dir.display())))?;
            }
        }
        let config = self.store.config_of(&record.config)?;
        match self.overlay_works() {
            Ok(()) => {
                let lowers = self.store.unpack(&record)?;
                overlay::mount(&lowers, &upper, &work, &rootfs)?;
            }
            Err(_) => {
                // No overlayfs: the layers applied one over the other into a copy of its own.
                for layer in &record.layers {
                    let file = std::fs::File::open(self.store.blob_path(&layer.digest))
                        .map_err(|e| RuntimeError(format!("opening layer {}: {e}", layer.digest)))?;
                    let tar = archive::maybe_gunzip(file).map_err(|e| RuntimeError(e.to_string()))?;
                    archive::apply_layer(tar, &rootfs, Whiteouts::Apply)?;
                }
            }
        }
        Ok(PreparedImage {
            rootfs,
            config: Some(config),
            image_id: Some(record.repo_digest),
        })
    }

    fn manager(&self) -> Option<&ImageManager> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_default_on_the_tag() {
        let pod = serde_json::json!({ "spec": { "containers": [
            { "name": "a", "image": "busybox" },
            { "name": "b", "image": "busybox:1.36" },
            { "name": "c", "image": "busybox", "imagePullPolicy": "Never" },
        ], "initContainers": [{ "name": "i", "image": "x:latest" }] } });
        assert_eq!(pull_policy(&pod, "a", "busybox"), "Always");
        assert_eq!(pull_policy(&pod, "b", "busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy(&pod, "c", "busybox"), "Never");
        assert_eq!(pull_policy(&pod, "i", "x:latest"), "Always");
        let pinned = format!("busybox@sha256:{}", "a".repeat(64));
        assert_eq!(pull_policy(&pod, "z", &pinned), "IfNotPresent");
    }

    fn spec(name: &str, image: &str, init: bool) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            init,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn failed_pulls_wait_in_err_image_pull_then_back_off_and_never_means_never() {
        let dir = std::env::temp_dir().join(format!("skiff-manager-unit-{}", std::process::id()));
        let images = ImageManager::open(&dir)
            .unwrap()
            .with_backoff_base(Duration::from_millis(400));
        // Nothing listens on port 1 of loopback: the pull fails at once. No secrets: no API call.
        let client =
            kube::Client::try_from(kube::Config::new("http://127.0.0.1:1".parse().unwrap())).unwrap();
        let bad = "127.0.0.1:1/nosuch:v1";
        let pod = serde_json::json!({ "metadata": { "uid": "u1" }, "spec": {
            "initContainers": [{ "name": "init", "image": bad }],
            "containers": [{ "name": "app", "image": "skiff.test/absent:v1", "imagePullPolicy": "Never" },
                           { "name": "typo", "image": "Bad:Name" }] } });
        let reason = |images: &ImageManager, name: &str| {
            images
                .state()
                .waiting
                .get(&("u1".to_owned(), name.to_owned()))
                .map(|w| w.reason.clone())
        };

        let mut start = vec![
            spec("init", bad, true),
            spec("app", "skiff.test/absent:v1", false),
        ];
        let retry = images.ensure(&client, &pod, &mut start).await;
        assert!(
            start.is_empty(),
            "the init container waits, and everything after it"
        );
        assert_eq!(
            retry,
            Some(Duration::from_millis(200)),
            "half the back-off reports the failure"
        );
        assert_eq!(reason(&images, "init").as_deref(), Some("ErrImagePull"));
        assert_eq!(
            reason(&images, "app"),
            None,
            "not looked at behind a waiting init container"
        );

        let mut start = vec![spec("init", bad, true)];
        images.ensure(&client, &pod, &mut start).await;
        assert_eq!(
            reason(&images, "init").as_deref(),
            Some("ErrImagePull"),
            "still reported as such"
        );
        tokio::time::sleep(Duration::from_millis(220)).await;
        let mut start = vec![spec("init", bad, true)];
        let retry = images.ensure(&client, &pod, &mut start).await.unwrap();
        assert_eq!(reason(&images, "init").as_deref(), Some("ImagePullBackOff"));
        assert!(
            retry <= Duration::from_millis(180),
            "until the back-off ends: {retry:?}"
        );
        tokio::time::sleep(retry + Duration::from_millis(20)).await;
        let mut start = vec![spec("init", bad, true)];
        images.ensure(&client, &pod, &mut start).await;
        assert_eq!(
            reason(&images, "init").as_deref(),
            Some("ErrImagePull"),
            "tried again"
        );
        let (delay, _) = images.state().backoff["u1/127.0.0.1:1/nosuch:v1"];
        assert_eq!(delay, Duration::from_millis(800), "the back-off doubled");

        let mut start = vec![
            spec("app", "skiff.test/absent:v1", false),
            spec("typo", "Bad:Name", false),
        ];
        assert_eq!(
            images.ensure(&client, &pod, &mut start).await,
            None,
            "nothing to retry"
        );
        assert!(start.is_empty());
        assert_eq!(reason(&images, "app").as_deref(), Some("ErrImageNeverPull"));
        assert_eq!(reason(&images, "typo").as_deref(), Some("InvalidImageName"));

        let mut status = serde_json::json!({ "initContainerStatuses": [
            { "name": "init", "image": bad, "state": { "waiting": { "reason": "PodInitializing" } } }],
            "containerStatuses": [{ "name": "app", "image": "x", "state": { "waiting": { "reason": "ContainerCreating" } } }] });
        images.annotate("u1", &mut status);
        assert_eq!(
            status["initContainerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImagePull"
        );
        assert_eq!(
            status["containerStatuses"][0]["state"]["waiting"]["reason"],
            "ErrImageNeverPull"
        );
        images.forget_pod("u1");
        assert!(images.state().waiting.is_empty() && images.state().backoff.is_empty());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
