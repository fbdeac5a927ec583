//! Manifests and indexes of the OCI image spec and their Docker (schema 2) twins, and picking the
//! node's platform out of an index or manifest list (containerd's `platforms.Only` for the
//! running platform: os and architecture must match, `unknown` entries — attestations — never do).

use serde::{Deserialize, Serialize};

/// An OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// An OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// An OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// An OCI layer, uncompressed.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// A Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// A Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a registry is asked for, in the order Docker and containerd ask.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A platform.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`.
    #[serde(default)]
    pub architecture: String,
    /// `linux`.
    #[serde(default)]
    pub os: String,
    /// `v8` for arm64 and the like.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this node runs (`linux/amd64` on x86-64).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: None,
        }
    }
}

/// A content descriptor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What it points at.
    #[serde(default)]
    pub media_type: String,
    /// `sha256:…`.
    pub digest: String,
    /// Its size in bytes.
    #[serde(default)]
    pub size: u64,
    /// For index entries: the platform it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (`org.opencontainers.image.ref.name`, `io.containerd.image.name`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// A manifest or an index (they share the envelope; which it is shows in `mediaType` or in which
/// of `manifests` and `layers` it has).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    #[serde(default)]
    pub schema_version: u32,
    /// Its media type (optional in OCI).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// An image manifest's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Descriptor>,
    /// An image manifest's layers, bottom first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<Descriptor>,
    /// An index's manifests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<Descriptor>,
}

impl Manifest {
    /// Whether it is an index (or manifest list).
    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_str(), OCI_INDEX | DOCKER_LIST)
            || (self.config.is_none() && !self.manifests.is_empty())
    }
}

/// The entry of an index for `platform`, if there is one.
pub fn select_platform<'a>(index: &'a Manifest, platform: &Platform) -> Option<&'a Descriptor> {
    let matches = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
    };
    let candidates: Vec<&Descriptor> = index.manifests.iter().filter(matches).collect();
    // The variant asked for, else the first of the right os and architecture (amd64 has none).
    candidates
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_ref()) == platform.variant.as_ref())
        .or(candidates.first())
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nodes_platform_is_picked_from_a_manifest_list() {
        let list: Manifest = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                { "mediaType": DOCKER_MANIFEST, "digest": "sha256:arm", "size": 1,
                  "platform": { "architecture": "arm64", "os": "linux", "variant": "v8" } },
                { "mediaType": OCI_MANIFEST, "digest": "sha256:att", "size": 1,
                  "platform": { "architecture": "unknown", "os": "unknown" } },
                { "mediaType": DOCKER_MANIFEST, "digest": "sha256:win", "size": 1,
                  "platform": { "architecture": "amd64", "os": "windows" } },
                { "mediaType": DOCKER_MANIFEST, "digest": "sha256:amd", "size": 1,
                  "platform": { "architecture": "amd64", "os": "linux" } },
            ]
        }))
        .unwrap();
        assert!(list.is_index());
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(select_platform(&list, &amd64).unwrap().digest, "sha256:amd");
        let arm = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(select_platform(&list, &arm).unwrap().digest, "sha256:arm");
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        assert!(select_platform(&list, &s390).is_none());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Platform::host(), amd64);
        }
        let image: Manifest = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2, "config": { "digest": "sha256:c", "size": 2 }, "layers": [] }))
        .unwrap();
        assert!(!image.is_index());
    }
}
