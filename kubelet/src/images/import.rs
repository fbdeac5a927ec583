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
    let root = dir
        .canonicalize()
        .map_err(io("resolving the scratch directory"))?;
    for entry in entries {
        // A file of the archive, never one it links to outside (`Layers: ["evil/x"]`, evil → /etc).
        let inside = |p: &str| -> Result<PathBuf, ImageError> {
            let path = dir
                .join(p)
                .canonicalize()
                .map_err(io(format!("{p:?} of the archive")))?;
            if !path.starts_with(&root) || !path.is_file() {
                return Err(ImageError::Import(format!("{p:?} points outside the archive")));
            }
            Ok(path)
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
        // Files only: a symlink out of the layout is not a blob.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar of `files` (path, contents) and `links` (path, target) as `docker save` might write.
    fn archive(files: &[(&str, &[u8])], links: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        for (path, target) in links {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            b.append_link(&mut h, path, target).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn layer() -> Vec<u8> {
        archive(&[("hello", b"hi")], &[])
    }

    #[test]
    fn a_docker_archive_imports_and_names_its_image() {
        let dir = std::env::temp_dir().join(format!("skiff-import-unit-{}", std::process::id()));
        let store = Store::open(dir.join("store")).unwrap();
        let layer = layer();
        let config = serde_json::json!({ "architecture": "amd64", "os": "linux", "config": { "Cmd": ["sh"] },
            "rootfs": { "type": "layers", "diff_ids": [archive::sha256(&layer)] } })
        .to_string();
        let manifest =
            r#"[{"Config":"c.json","RepoTags":["app:1","registry.test/app:1"],"Layers":["l/layer.tar"]}]"#;
        let tarball = archive(
            &[
                ("manifest.json", manifest.as_bytes()),
                ("c.json", config.as_bytes()),
                ("l/layer.tar", &layer),
            ],
            &[],
        );
        std::fs::write(dir.join("app.tar"), &tarball).unwrap();
        let images = import_tarball(&store, &dir.join("app.tar")).unwrap();
        let names: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["docker.io/library/app:1", "registry.test/app:1"]);
        let record = store.get("app:1").unwrap().unwrap();
        assert_eq!(record.layers[0].digest, archive::sha256(&layer));
        assert_eq!(
            record.repo_digest,
            format!("docker.io/library/app@{}", record.target)
        );
        assert!(
            store.get(&record.repo_digest).unwrap().is_some(),
            "pinned by digest too"
        );
        assert_eq!(
            store.config_of(&record.config).unwrap().config.cmd,
            Some(vec!["sh".to_owned()])
        );

        // A layer path through a symlink out of the archive is refused.
        let evil = archive(
            &[
                (
                    "manifest.json",
                    br#"[{"Config":"c.json","RepoTags":["evil:1"],"Layers":["out/hostname"]}]"#,
                ),
                ("c.json", config.as_bytes()),
            ],
            &[("out", "/etc")],
        );
        std::fs::write(dir.join("evil.tar"), &evil).unwrap();
        let err = import_tarball(&store, &dir.join("evil.tar")).unwrap_err();
        assert!(err.to_string().contains("outside the archive"), "{err}");
        assert!(store.get("evil:1").unwrap().is_none());
        std::fs::write(dir.join("junk.tar"), archive(&[("x", b"y")], &[])).unwrap();
        assert!(
            import_tarball(&store, &dir.join("junk.tar"))
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
