//! Image references as Docker and containerd read them (distribution's `reference.ParseNormalizedNamed`):
//! `busybox` is `docker.io/library/busybox:latest`, `me/app:1` is `docker.io/me/app:1`, and a first
//! component with a `.` or a `:` (or `localhost`) is a registry host (`127.0.0.1:5000/app`). A digest
//! (`@sha256:…`) pins the manifest; with neither tag nor digest the tag is `latest`.

use super::ImageError;

/// The registry `docker.io` names (distribution's `DefaultDomain`).
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's v2 API.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The registry (`docker.io`, `127.0.0.1:5000`).
    pub domain: String,
    /// The repository in it (`library/busybox`).
    pub path: String,
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// The manifest digest, if pinned (`sha256:…`).
    pub digest: Option<String>,
}

impl Reference {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Self, ImageError> {
        let bad = |why: &str| ImageError::InvalidReference(format!("{s:?}: {why}"));
        if s.is_empty() {
            return Err(bad("empty"));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((name, digest)) => {
                if !valid_digest(digest) {
                    return Err(bad("invalid digest"));
                }
                (name, Some(digest.to_owned()))
            }
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
        let slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[slash..].rfind(':') {
            Some(i) => (&rest[..slash + i], Some(rest[slash + i + 1..].to_owned())),
            None => (rest, None),
        };
        if let Some(tag) = &tag
            && (tag.is_empty()
                || tag.len() > 128
                || !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
                || tag.starts_with(['.', '-']))
        {
            return Err(bad("invalid tag"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), name.to_owned()),
        };
        let domain = if domain == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            domain
        };
        let path = if domain == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        if path.is_empty() || path.len() > 255 {
            return Err(bad("invalid repository name"));
        }
        for component in path.split('/') {
            let ok = !component.is_empty()
                && component
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && component.starts_with(|c: char| c.is_ascii_alphanumeric())
                && component.ends_with(|c: char| c.is_ascii_alphanumeric());
            if !ok {
                return Err(bad(
                    "repository name must be lowercase alphanumerics and separators",
                ));
            }
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Ok(Self {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The host serving the registry API (`registry-1.docker.io` for Docker Hub).
    pub fn registry_host(&self) -> &str {
        if self.domain == DOCKER_HUB {
            DOCKER_HUB_REGISTRY
        } else {
            &self.domain
        }
    }

    /// What `GET /v2/<name>/manifests/<this>` asks for: the digest if pinned, else the tag.
    pub fn object(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// Whether the registry is on loopback, where plain HTTP is allowed (as Docker allows it).
    pub fn is_loopback(&self) -> bool {
        let host = match self.domain.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(v6),
            None => self.domain.split(':').next().unwrap_or(&self.domain),
        };
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The same repository at manifest `digest`.
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Reference {
    /// The fully qualified form the store keys images by: `docker.io/library/busybox:latest`, or
    /// `…@sha256:…` when pinned (a digest wins over a tag).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.digest, &self.tag) {
            (Some(d), _) => write!(f, "{}@{d}", self.name()),
            (None, Some(t)) => write!(f, "{}:{t}", self.name()),
            (None, None) => f.write_str(&self.name()),
        }
    }
}

/// Whether `d` is `sha256:<64 lowercase hex>` (the only algorithm the store takes).
pub fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:")
        .is_some_and(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("me/app"), "docker.io/me/app:latest");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(
            norm("index.docker.io/library/busybox:1"),
            "docker.io/library/busybox:1"
        );
        let r = Reference::parse("busybox").unwrap();
        assert_eq!((r.registry_host(), r.object()), (DOCKER_HUB_REGISTRY, "latest"));
        assert!(!r.is_loopback());
    }

    #[test]
    fn hosts_ports_tags_and_digests() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(
            (r.domain.as_str(), r.path.as_str(), r.tag.as_deref()),
            ("127.0.0.1:5000", "team/app", Some("v1"))
        );
        assert!(r.is_loopback());
        assert_eq!(r.registry_host(), "127.0.0.1:5000");
        let r = Reference::parse(&format!("localhost:5000/app@{d}")).unwrap();
        assert_eq!((r.tag.as_deref(), r.object()), (None, d.as_str()));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), format!("localhost:5000/app@{d}"));
        let r = Reference::parse(&format!("quay.io/x/y:2@{d}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("2"));
        assert_eq!(r.object(), d, "the digest wins");
        assert!(
            !Reference::parse("registry.example.com:443/app")
                .unwrap()
                .is_loopback()
        );
        assert!(Reference::parse("[::1]:5000/app").unwrap().is_loopback());
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox@sha256:12",
            "a//b",
            "busybox:-x",
            "-a/b",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(ImageError::InvalidReference(_))),
                "{bad:?}"
            );
        }
    }
}
