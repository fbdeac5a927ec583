//! The node's image store, content-addressed as containerd's content store and metadata are
//! (`core/content`, `core/images`), with its overlayfs snapshotter's one-directory-per-layer:
//!
//! ```text
//! <root>/blobs/sha256/<hex>     manifests, configs and layer tarballs, by digest (verified on write)
//! <root>/ingest/                blobs being written (renamed into blobs/ once their digest checks)
//! <root>/refs.json              image name (docker.io/library/busybox:latest) → ImageRecord
//! <root>/layers/<chain-id hex>/ each layer unpacked once, whiteouts as overlayfs markers
//! ```
//!
//! A layer directory is named by its chain id (`sha256(parent-chain-id + " " + diff-id)`, the OCI
//! spec's ChainID), so two images sharing bottom layers share their directories. refs.json is
//! rewritten whole (temp file + rename) under an flock, so `skiff images import` and a running agent
//! can both write it.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

use super::{
    ImageError,
    archive::{self, Hashing, Whiteouts},
    config::ImageConfig,
    manifest::{Descriptor, Manifest},
    reference::{Reference, valid_digest},
};

/// What the store knows of one image name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The name it is stored under (`docker.io/library/busybox:latest`).
    pub name: String,
    /// The digest of its image manifest (for this platform).
    pub target: String,
    /// The digest of its config (the image ID, as `crictl images` shows it).
    pub config: String,
    /// Its layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
    /// `repo@digest` of what was pulled or imported (the index's digest for a multi-platform image):
    /// `imageID` in container statuses.
    pub repo_digest: String,
    /// The layers' size.
    pub size: u64,
}

/// The image store.
pub struct Store {
    root: PathBuf,
    /// Unpacking a layer happens once, even when two containers of it start together.
    unpack: Mutex<()>,
    /// refs.json as last read, with the (inode, mtime, length) it had: every sync looks images up,
    /// and a write (by anyone) renames a new file in, which changes all three.
    refs: Mutex<Option<(RefsStamp, Arc<Refs>)>>,
}

type Refs = BTreeMap<String, ImageRecord>;
type RefsStamp = (u64, std::time::SystemTime, u64);

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
    move |e| ImageError::Store(format!("{what}: {e}"))
}

/// A blob being written: hashed as it goes, kept only if its digest is the one expected.
pub struct BlobWriter<'a> {
    store: &'a Store,
    path: PathBuf,
    file: std::fs::File,
    ctx: ring::digest::Context,
    len: u64,
}

impl BlobWriter<'_> {
    /// Appends `chunk`.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ImageError> {
        self.ctx.update(chunk);
        self.len += chunk.len() as u64;
        self.file.write_all(chunk).map_err(io("writing a blob"))
    }

    /// Keeps the blob if it is `expected` (when given); returns its digest and size.
    pub fn commit(self, expected: Option<&str>) -> Result<(String, u64), ImageError> {
        let digest = format!("sha256:{}", archive::hex(self.ctx.clone().finish().as_ref()));
        if let Some(want) = expected
            && want != digest
        {
            let _ = std::fs::remove_file(&self.path);
            return Err(ImageError::DigestMismatch {
                expected: want.to_owned(),
                got: digest,
            });
        }
        self.file.sync_all().map_err(io("syncing a blob"))?;
        std::fs::rename(&self.path, self.store.blob_path(&digest)).map_err(io("committing a blob"))?;
        Ok((digest, self.len))
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        // Gone already once committed; an abandoned write leaves nothing behind.
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "ingest", "layers"] {
            std::fs::create_dir_all(root.join(dir)).map_err(io(format!("creating {}", root.display())))?;
        }
        Ok(Self {
            root,
            unpack: Mutex::new(()),
            refs: Mutex::new(None),
        })
    }

    /// Where the store is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where blob `digest` is kept.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// Whether blob `digest` is there.
    pub fn has_blob(&self, digest: &str) -> bool {
        valid_digest(digest) && self.blob_path(digest).is_file()
    }

    /// Starts writing a blob.
    pub fn ingest(&self) -> Result<BlobWriter<'_>, ImageError> {
        let name = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let path = self.root.join("ingest").join(name);
        let file = std::fs::File::create(&path).map_err(io("starting a blob"))?;
        Ok(BlobWriter {
            store: self,
            path,
            file,
            ctx: ring::digest::Context::new(&ring::digest::SHA256),
            len: 0,
        })
    }

    /// Stores what `r` gives, checked against `expected` if given.
    pub fn put(&self, mut r: impl Read, expected: Option<&str>) -> Result<(String, u64), ImageError> {
        let mut w = self.ingest()?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = r.read(&mut buf).map_err(io("reading a blob"))?;
            if n == 0 {
                break;
            }
            w.write(&buf[..n])?;
        }
        w.commit(expected)
    }

    /// Blob `digest`, whole (manifests and configs).
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        if !valid_digest(digest) {
            return Err(ImageError::Store(format!("invalid digest {digest:?}")));
        }
        std::fs::read(self.blob_path(digest)).map_err(io(format!("reading blob {digest}")))
    }

    fn refs_path(&self) -> PathBuf {
        self.root.join("refs.json")
    }

    fn read_refs(&self) -> Result<Arc<Refs>, ImageError> {
        let path = self.refs_path();
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Arc::default()),
            Err(e) => return Err(io("reading refs.json")(e)),
        };
        let stamp = (
            std::os::unix::fs::MetadataExt::ino(&meta),
            meta.modified().map_err(io("reading refs.json"))?,
            meta.len(),
        );
        let mut cache = self.refs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, refs)) = cache.as_ref()
            && *cached == stamp
        {
            return Ok(refs.clone());
        }
        let bytes = std::fs::read(&path).map_err(io("reading refs.json"))?;
        let refs: Arc<Refs> = Arc::new(
            serde_json::from_slice(&bytes).map_err(|e| ImageError::Store(format!("refs.json: {e}")))?,
        );
        *cache = Some((stamp, refs.clone()));
        Ok(refs)
    }

    /// Changes refs.json under an exclusive flock (other processes may write it too).
    fn update_refs(&self, f: impl FnOnce(&mut BTreeMap<String, ImageRecord>)) -> Result<(), ImageError> {
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.root.join("refs.lock"))
            .map_err(io("opening refs.lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("locking refs.json")(e.into()))?;
        let mut refs = (*self.read_refs()?).clone();
        f(&mut refs);
        let tmp = self.root.join(format!("refs.json.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&refs).map_err(|e| ImageError::Store(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(io("writing refs.json"))?;
        std::fs::rename(&tmp, self.refs_path()).map_err(io("writing refs.json"))
        // The flock goes with `lock`.
    }

    /// The image `image` (any reference form) names, if stored.
    pub fn get(&self, image: &str) -> Result<Option<ImageRecord>, ImageError> {
        let name = Reference::parse(image)?.to_string();
        Ok(self.read_refs()?.get(&name).cloned())
    }

    /// Every stored name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, ImageError> {
        Ok(self.read_refs()?.values().cloned().collect())
    }

    /// Records image manifest `manifest_digest` (stored already, as are its config and layers) under
    /// `names`; `repo_digest` says where it came from.
    pub fn commit(
        &self,
        names: &[String],
        manifest_digest: &str,
        repo_digest: &str,
    ) -> Result<ImageRecord, ImageError> {
        let manifest: Manifest = serde_json::from_slice(&self.read_blob(manifest_digest)?)
            .map_err(|e| ImageError::Store(format!("manifest {manifest_digest}: {e}")))?;
        let config = manifest
            .config
            .as_ref()
            .ok_or_else(|| ImageError::Store(format!("{manifest_digest} is not an image manifest")))?;
        let image_config = self.config_of(&config.digest)?;
        if image_config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::Store(format!(
                "manifest {manifest_digest} has {} layers, its config {}",
                manifest.layers.len(),
                image_config.rootfs.diff_ids.len()
            )));
        }
        for layer in &manifest.layers {
            if !self.has_blob(&layer.digest) {
                return Err(ImageError::Store(format!("layer {} is missing", layer.digest)));
            }
        }
        let mut record = ImageRecord {
            name: String::new(),
            target: manifest_digest.to_owned(),
            config: config.digest.clone(),
            size: manifest.layers.iter().map(|l| l.size).sum(),
            layers: manifest.layers,
            repo_digest: repo_digest.to_owned(),
        };
        self.update_refs(|refs| {
            for name in names {
                record.name = name.clone();
                refs.insert(name.clone(), record.clone());
            }
        })?;
        record.name = names.first().cloned().unwrap_or_default();
        Ok(record)
    }

    /// The config blob `digest`.
    pub fn config_of(&self, digest: &str) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(&self.read_blob(digest)?)
            .map_err(|e| ImageError::Store(format!("image config {digest}: {e}")))
    }

    /// The unpacked layer directories of `image`, bottom first, unpacking what is not yet.
    pub fn unpack(&self, image: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        let config = self.config_of(&image.config)?;
        let mut dirs = Vec::new();
        let mut chain: Option<String> = None;
        for (layer, diff_id) in image.layers.iter().zip(&config.rootfs.diff_ids) {
            let id = match &chain {
                None => diff_id.clone(),
                Some(parent) => archive::sha256(format!("{parent} {diff_id}").as_bytes()),
            };
            let dir = self.layer_dir(&id);
            if !dir.is_dir() {
                let _guard = self.unpack.lock().unwrap_or_else(|e| e.into_inner());
                if !dir.is_dir() {
                    self.unpack_layer(layer, diff_id, &dir)?;
                }
            }
            dirs.push(dir);
            chain = Some(id);
        }
        Ok(dirs)
    }

    /// Where the layer of chain id `chain_id` is unpacked.
    pub fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(chain_id.strip_prefix("sha256:").unwrap_or(chain_id))
    }

    fn unpack_layer(&self, layer: &Descriptor, diff_id: &str, dir: &Path) -> Result<(), ImageError> {
        let tmp = dir.with_extension("unpacking");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io("clearing a half-unpacked layer"))?;
        }
        let file = std::fs::File::open(self.blob_path(&layer.digest))
            .map_err(io(format!("opening layer {}", layer.digest)))?;
        let mut hashing =
            Hashing::new(archive::maybe_gunzip(file).map_err(io(format!("layer {}", layer.digest)))?);
        let applied = archive::apply_layer(&mut hashing, &tmp, Whiteouts::Overlay).and_then(|()| {
            hashing
                .finish()
                .map_err(io(format!("reading layer {}", layer.digest)))
        });
        match applied {
            Ok((got, _)) if got == diff_id => {
                std::fs::rename(&tmp, dir).map_err(io("committing an unpacked layer"))
            }
            other => {
                let _ = std::fs::remove_dir_all(&tmp);
                match other {
                    Err(e) => Err(e),
                    Ok((got, _)) => Err(ImageError::DigestMismatch {
                        expected: diff_id.to_owned(),
                        got,
                    }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_kept_by_digest_and_refused_when_the_digest_is_wrong() {
        let dir = std::env::temp_dir().join(format!("skiff-store-unit-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let (d, n) = store.put(&b"hello"[..], None).unwrap();
        assert_eq!(
            (d.as_str(), n),
            (
                "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
                5
            )
        );
        assert!(store.has_blob(&d));
        assert_eq!(store.read_blob(&d).unwrap(), b"hello");
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            store.put(&b"other"[..], Some(&wrong)),
            Err(ImageError::DigestMismatch { .. })
        ));
        assert!(!store.has_blob(&wrong));
        assert_eq!(
            std::fs::read_dir(dir.join("ingest")).unwrap().count(),
            0,
            "nothing left half written"
        );
        assert!(store.get("busybox").unwrap().is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
