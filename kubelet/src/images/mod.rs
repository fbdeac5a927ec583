//! Images on the node: what containerd's image service and snapshotter do for the kubelet, and the
//! kubelet's own image manager (pkg/kubelet/images).
//!
//! - [`store`]: blobs by digest, names → manifests, layers unpacked once per chain id
//!   ([`archive`] applies them with whiteouts).
//! - [`import`]: docker-archive (`docker save`) and OCI-layout tarballs, gzipped or not
//!   (`skiff images import`, and every tarball in `<data-dir>/agent/images/` when the agent starts,
//!   k3s's airgap convention).
//! - [`registry`]: pulls over the Docker Registry v2 API, with bearer-token and basic auth.
//! - [`overlay`]: a container's rootfs is an overlay of its image's layers with its own upper dir.
//! - [`config`]: the image config combined with the pod's command, args, env, workingDir and user.
//! - [`manager`]: imagePullPolicy, pull secrets, ErrImagePull / ImagePullBackOff with back-off.
//!
//! The runtime asks an [`ImageService`] for a container's root filesystem. The store's is
//! [`manager::ImageManager`]; a plain function from image name to directory is one too (the old
//! `--images-dir` layout and tests that bring their own rootfs), without an image config.

pub mod archive;
pub mod config;
pub mod import;
pub mod manager;
pub mod manifest;
pub mod overlay;
pub mod reference;
pub mod registry;
pub mod secrets;
pub mod store;

use std::path::{Path, PathBuf};

use crate::runtime::RuntimeError;

/// Where the store of a node whose state directory is `agent_dir` (`<data-dir>/agent`) lives.
pub fn store_dir(agent_dir: &Path) -> PathBuf {
    agent_dir.join("image-store")
}

/// Where tarballs to import at start are put (`<data-dir>/agent/images`, k3s's airgap directory).
pub fn airgap_dir(agent_dir: &Path) -> PathBuf {
    agent_dir.join("images")
}

/// What can go wrong with images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    /// The image is not on the node.
    #[error("image {0:?} is not present on the node")]
    NotFound(String),
    /// A blob's content is not what its digest says.
    #[error("digest mismatch: expected {expected}, got {got}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// What the content hashes to.
        got: String,
    },
    /// The store's files.
    #[error("image store: {0}")]
    Store(String),
    /// Unpacking a layer.
    #[error("layer: {0}")]
    Layer(String),
    /// Mounting a rootfs.
    #[error("overlay: {0}")]
    Overlay(String),
    /// The image config does not give a runnable process.
    #[error("image config: {0}")]
    Config(String),
    /// A tarball that is neither a docker archive nor an OCI layout.
    #[error("import: {0}")]
    Import(String),
    /// Talking to a registry.
    #[error("{0}")]
    Registry(String),
}

impl From<ImageError> for RuntimeError {
    fn from(e: ImageError) -> Self {
        RuntimeError(e.to_string())
    }
}

/// A container's root filesystem, ready for runc.
#[derive(Clone, Debug)]
pub struct PreparedImage {
    /// The directory runc uses as root.
    pub rootfs: PathBuf,
    /// The image config, when the image has one (a plain directory has none).
    pub config: Option<config::ImageConfig>,
    /// The image's repo digest (`imageID` in the status).
    pub image_id: Option<String>,
}

/// Gives containers their root filesystems.
pub trait ImageService: Send + Sync {
    /// The root filesystem for a container of `image` whose bundle is `container_dir`, made fresh
    /// (a restarted container starts from the image again). What it mounts there goes away with
    /// [`overlay::unmount_under`] on the directory.
    fn prepare(&self, image: &str, container_dir: &Path) -> Result<PreparedImage, RuntimeError>;

    /// The image manager behind it, if it pulls (pull policies, back-off, statuses).
    fn manager(&self) -> Option<&manager::ImageManager> {
        None
    }
}

/// A function from image name to a directory is an image service: containers run on that directory
/// itself, with no image config.
impl<F> ImageService for F
where
    F: Fn(&str) -> Result<PathBuf, RuntimeError> + Send + Sync,
{
    fn prepare(&self, image: &str, _container_dir: &Path) -> Result<PreparedImage, RuntimeError> {
        Ok(PreparedImage {
            rootfs: self(image)?,
            config: None,
            image_id: None,
        })
    }
}
