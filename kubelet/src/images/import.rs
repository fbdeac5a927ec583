//! Importing image tarballs (`ctr images import`, k3s's airgap images), gzipped or not:
//!
//! - docker-archive, as `docker save` writes it: `manifest.json` (`[{Config, RepoTags, Layers}]`),
//!   the config and one tar per layer. The store keeps them as an OCI image manifest it writes
//!   itself (containerd does the same), named by the RepoTags.
//! - OCI image layout: `oci-layout`, `index.json` and `blobs/sha256/…`; each index entry is named by
//!   its `io.containerd.image.name` or `org.opencontainers.image.ref.name` annotation, and an entry
//!   that is itself an index is resolved to the node's platform.
//!
//! Every blob is checked against its digest on the way into the store.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    ImageError,
    archive::{self, maybe_gunzip},
    manifest::{self, Descriptor, Manifest, Platform},
    reference::Reference,
    store::{ImageRecord, Store},
};

/// One entry of a docker archive's manifest.json.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> ImageError {
    move |e| ImageError::Import(format!("{what}: {e}"))
}

/// Removes the unpacked tarball whatever happens.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Imports the tarball at `path`; returns the images it named.
pub fn import_tarball(store: &Store, path: &Path) -> Result<Vec<ImageRecord>, ImageError> {
    let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    let tmp = TempDir(store.root().join("ingest").join(format!(
        "import-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    )));
    std::fs::create_dir_all(&tmp.0).map_err(io("creating a scratch directory"))?;
    let mut tar = tar::Archive::new(maybe_gunzip(file).map_err(io(path.display()))?);
    tar.set_preserve_permissions(false);
    tar.unpack(&tmp.0)
        .map_err(io(format!("unpacking {}", path.display())))?;
    let dir = &tmp.0;
    if dir.join("manifest.json").is_file() {
        import_docker_archive(store, dir)
    } else if dir.join("index.json").is_file() && dir.join("oci-layout").is_file() {
        import_oci_layout(store, dir)
    } else {
        Err(ImageError::Import(format!(
            "{} is neither a docker archive (manifest.json) nor an OCI layout (oci-layout, index.json)",
            path.display()
        )))
    }
}

fn put_file(store: &Store, path: &Path, expected: Option<&str>) -> Result<(String, u64), ImageError> {
    let file = std::fs::File::open(path).map_err(io(format!("opening {}", path.display())))?;
    store.put(file, expected)
}

fn import_docker_archive(store: &Store, dir: &Path) -> Result<Vec<ImageRecord>, ImageError> {
    let text = std::fs::read(dir.join("manifest.json")).map_err(io("reading manifest.json"))?;
    let entries: Vec<ArchiveEntry> =
        serde_json::from_slice(&text).map_err(|e| ImageError::Import(format!("manifest.json: {e}")))?;
    let mut records = Vec::new();
    for entry in entries {
        let inside = |p: &str| -> Result<PathBuf, ImageError> {
            if p.split('/').any(|c| c == "..") {
                return Err(ImageError::Import(format!("{p:?} points outside the archive")));
            }
            Ok(dir.join(p))
        };
        let (config_digest, config_size) = put_file(store, &inside(&entry.config)?, None)?;
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let path = inside(layer)?;
            let mut head = [0u8; 2];
            let gzipped =
                std::io::Read::read_exact(&mut std::fs::File::open(&path).map_err(io(layer))?, &mut head)
                    .is_ok()
                    && head == [0x1f, 0x8b];
            let (digest, size) = put_file(store, &path, None)?;
            layers.push(Descriptor {
                media_type: if gzipped {
                    format!("{}+gzip", manifest::OCI_LAYER)
                } else {
                    manifest::OCI_LAYER.to_owned()
                },
                digest,
                size,
                ..Default::default()
            });
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: manifest::OCI_MANIFEST.into(),
            config: Some(Descriptor {
                media_type: manifest::OCI_CONFIG.into(),
                digest: config_digest,
                size: config_size,
                ..Default::default()
            }),
            layers,
            manifests: Vec::new(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::Import(e.to_string()))?;
        let (target, _) = store.put(&bytes[..], Some(&archive::sha256(&bytes)))?;
        let names = names_of(entry.repo_tags.unwrap_or_default().iter().map(String::as_str))?;
        records.extend(commit(store, &names, &target, &target)?);
    }
    Ok(records)
}

fn import_oci_layout(store: &Store, dir: &Path) -> Result<Vec<ImageRecord>, ImageError> {
    // Every blob in, each checked against its name.
    let blobs = dir.join("blobs/sha256");
    for entry in std::fs::read_dir(&blobs).map_err(io("reading blobs/sha256"))? {
        let entry = entry.map_err(io("reading blobs/sha256"))?;
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        if !store.has_blob(&digest) {
            put_file(store, &entry.path(), Some(&digest))?;
        }
    }
    let index: Manifest =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).map_err(io("reading index.json"))?)
            .map_err(|e| ImageError::Import(format!("index.json: {e}")))?;
    let mut records = Vec::new();
    for desc in &index.manifests {
        let name = desc
            .annotations
            .get("io.containerd.image.name")
            .or_else(|| desc.annotations.get("org.opencontainers.image.ref.name"));
        // skopeo's `oci:dir:v1` names an entry by its tag alone: no repository to name it after.
        if let Some(n) = name
            && !n.contains(['/', ':'])
        {
            return Err(ImageError::Import(format!(
                "index entry {} is named only by the tag {n:?}: give it a full name \
                 (org.opencontainers.image.ref.name or io.containerd.image.name like busybox:{n})",
                desc.digest
            )));
        }
        let names = names_of(name.map(String::as_str))?;
        let target = resolve_platform(store, desc, &Platform::host())?;
        records.extend(commit(store, &names, &target, &desc.digest)?);
    }
    Ok(records)
}

/// The image manifest `desc` stands for on `platform` (itself, or its index's entry).
pub fn resolve_platform(store: &Store, desc: &Descriptor, platform: &Platform) -> Result<String, ImageError> {
    let mut digest = desc.digest.clone();
    // Indexes may nest; a few levels are plenty.
    for _ in 0..4 {
        let m: Manifest = serde_json::from_slice(&store.read_blob(&digest)?)
            .map_err(|e| ImageError::Import(format!("manifest {digest}: {e}")))?;
        if !m.is_index() {
            return Ok(digest);
        }
        digest = manifest::select_platform(&m, platform)
            .ok_or_else(|| {
                ImageError::Import(format!(
                    "no manifest for {}/{} in {digest}",
                    platform.os, platform.architecture
                ))
            })?
            .digest
            .clone();
    }
    Err(ImageError::Import(format!("indexes nested too deep at {digest}")))
}

/// Normalised names (`busybox:1` → `docker.io/library/busybox:1`).
fn names_of<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Vec<Reference>, ImageError> {
    names.into_iter().map(Reference::parse).collect()
}

/// Names `target` (from `source`, the digest that was imported) after each of `names`.
fn commit(
    store: &Store,
    names: &[Reference],
    target: &str,
    source: &str,
) -> Result<Vec<ImageRecord>, ImageError> {
    let Some(first) = names.first() else {
        return Err(ImageError::Import(format!(
            "image {target} has no name (no RepoTags or ref.name)"
        )));
    };
    let mut keys: Vec<String> = names.iter().map(Reference::to_string).collect();
    // Pinned by digest too, as a pull records it.
    keys.push(first.with_digest(source).to_string());
    let repo_digest = first.with_digest(source).to_string();
    let record = store.commit(&keys, target, &repo_digest)?;
    Ok(names
        .iter()
        .map(|n| ImageRecord {
            name: n.to_string(),
            ..record.clone()
        })
        .collect())
}

/// Imports every tarball (`*.tar`, `*.tar.gz`, `*.tgz`) in `dir`, k3s's airgap images directory;
/// one that fails does not stop the others. Returns what each gave.
pub fn import_dir(store: &Store, dir: &Path) -> Vec<(PathBuf, Result<Vec<ImageRecord>, ImageError>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            p.is_file() && [".tar", ".tar.gz", ".tgz"].iter().any(|ext| name.ends_with(ext))
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let result = import_tarball(store, &f);
            (f, result)
        })
        .collect()
}
