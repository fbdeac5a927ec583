//! Pulls over the Docker Registry HTTP API v2 (the distribution spec), as containerd's
//! `remotes/docker` resolver and fetcher do:
//!
//! - `GET /v2/<repo>/manifests/<tag|digest>` asking for OCI indexes, Docker manifest lists and both
//!   kinds of image manifest; an index is resolved to the node's platform; manifests fetched by
//!   digest are checked against it.
//! - `GET /v2/<repo>/blobs/<digest>` for the config and the layers (redirects followed), each
//!   checked against its digest as it is written into the store.
//! - Auth: a 401's `WWW-Authenticate` says how. `Bearer realm=…,service=…,scope=…` → a token from
//!   the realm (with basic credentials if there are any), cached per registry and repository;
//!   `Basic` → the credentials themselves.
//! - HTTPS (system roots), except for registries on loopback, which get plain HTTP as Docker allows
//!   (`127.0.0.0/8` and `localhost` are insecure registries by default).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};

use super::{
    ImageError,
    archive::sha256,
    manifest::{self, Manifest, Platform},
    reference::Reference,
    store::{ImageRecord, Store},
};

/// A user name and password for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password (or identity token).
    pub password: String,
}

impl Credentials {
    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(raw))
    }
}

/// How long a registry gets to answer a request (and each piece of a body).
const TIMEOUT: Duration = Duration::from_secs(30);

/// A registry client (one per node; it caches tokens).
pub struct RegistryClient {
    http: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    /// `Authorization` values by `<user>@<host>/<repo>`.
    auth: Mutex<HashMap<String, String>>,
    /// The platform picked out of indexes.
    pub platform: Platform,
}

fn reg(msg: impl std::fmt::Display) -> ImageError {
    ImageError::Registry(msg.to_string())
}

/// A `WWW-Authenticate` challenge: its scheme and parameters.
pub fn parse_challenge(header: &str) -> (String, HashMap<String, String>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    (scheme.to_ascii_lowercase(), params)
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl RegistryClient {
    /// A client trusting the system's roots, picking `platform` out of indexes.
    pub fn new(platform: Platform) -> Result<Self, ImageError> {
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| reg(format!("loading the system's CA certificates: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            http: Client::builder(TokioExecutor::new()).build(tls),
            auth: Mutex::default(),
            platform,
        })
    }

    fn base(r: &Reference) -> String {
        let scheme = if r.is_loopback() { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", r.registry_host(), r.path)
    }

    /// A GET with auth as the registry asks for it, redirects followed; the response must be a 2xx.
    async fn get(
        &self,
        r: &Reference,
        url: &str,
        accept: &str,
        creds: Option<&Credentials>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, ImageError> {
        // Per user too: a token got with one pod's pull secret must not serve another pod.
        let user = creds.map_or("", |c| c.username.as_str());
        let key = format!("{user}@{}/{}", r.registry_host(), r.path);
        let mut challenged = false;
        let mut url = url.to_owned();
        let mut redirects = 0;
        loop {
            let base = Self::base(r);
            let origin = format!("{}/", &base[..base.find("/v2/").unwrap_or(base.len())]);
            let same_host = url.starts_with(&origin);
            let mut req = hyper::Request::get(&url).header("Accept", accept);
            if same_host && let Some(auth) = self.auth.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
                req = req.header("Authorization", auth.as_str());
            }
            let req = req
                .body(Empty::new())
                .map_err(|e| reg(format!("bad request {url}: {e}")))?;
            let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
                .await
                .map_err(|_| reg(format!("{url}: no answer in {TIMEOUT:?}")))?
                .map_err(|e| reg(format!("{url}: {}", error_chain(&e))))?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(location) = resp.headers().get("location").and_then(|l| l.to_str().ok())
                && redirects < 5
            {
                redirects += 1;
                url = match location.starts_with('/') {
                    true => format!(
                        "{}{location}",
                        url.split('/').take(3).collect::<Vec<_>>().join("/")
                    ),
                    false => location.to_owned(),
                };
                continue;
            }
            if status == hyper::StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                let header = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let (scheme, params) = parse_challenge(&header);
                let auth = match scheme.as_str() {
                    "bearer" => self.token(r, &params, creds).await?,
                    "basic" => creds.map(Credentials::basic).ok_or_else(|| {
                        reg(format!("{url}: unauthorized (the registry wants credentials)"))
                    })?,
                    _ => return Err(reg(format!("{url}: unauthorized ({header:?})"))),
                };
                self.auth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key.clone(), auth);
                continue;
            }
            if !status.is_success() {
                let body = read_all(resp).await.unwrap_or_default();
                return Err(reg(describe_failure(status, &body)));
            }
            return Ok(resp);
        }
    }

    /// A bearer token from the challenge's realm.
    async fn token(
        &self,
        r: &Reference,
        params: &HashMap<String, String>,
        creds: Option<&Credentials>,
    ) -> Result<String, ImageError> {
        let realm = params
            .get("realm")
            .ok_or_else(|| reg("a bearer challenge without a realm"))?;
        let scope = params
            .get("scope")
            .cloned()
            .unwrap_or_else(|| format!("repository:{}:pull", r.path));
        let mut url = format!("{realm}?scope={}", encode(&scope));
        if let Some(service) = params.get("service") {
            url.push_str(&format!("&service={}", encode(service)));
        }
        let mut req = hyper::Request::get(&url);
        if let Some(c) = creds {
            req = req.header("Authorization", c.basic());
        }
        let req = req
            .body(Empty::new())
            .map_err(|e| reg(format!("bad token request {url}: {e}")))?;
        let resp = tokio::time::timeout(TIMEOUT, self.http.request(req))
            .await
            .map_err(|_| reg(format!("{realm}: no answer in {TIMEOUT:?}")))?
            .map_err(|e| reg(format!("{realm}: {}", error_chain(&e))))?;
        let status = resp.status();
        let body = read_all(resp).await?;
        if !status.is_success() {
            return Err(reg(format!(
                "getting a token from {realm}: {}",
                describe_failure(status, &body)
            )));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| reg(format!("token from {realm}: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| reg(format!("no token in the answer of {realm}")))?;
        Ok(format!("Bearer {token}"))
    }

    /// Manifest `object` of `r`'s repository, checked against `object` when it is a digest; returns
    /// its bytes and digest.
    async fn manifest(
        &self,
        r: &Reference,
        object: &str,
        creds: Option<&Credentials>,
    ) -> Result<(Vec<u8>, String), ImageError> {
        let url = format!("{}/manifests/{object}", Self::base(r));
        let resp = self.get(r, &url, manifest::ACCEPT, creds).await?;
        let body = read_all(resp).await?.to_vec();
        let digest = sha256(&body);
        if object.starts_with("sha256:") && object != digest {
            return Err(ImageError::DigestMismatch {
                expected: object.to_owned(),
                got: digest,
            });
        }
        Ok((body, digest))
    }

    /// Blob `digest` into the store (unless it is there already).
    async fn blob(
        &self,
        store: &Store,
        r: &Reference,
        digest: &str,
        creds: Option<&Credentials>,
    ) -> Result<(), ImageError> {
        if store.has_blob(digest) {
            return Ok(());
        }
        let url = format!("{}/blobs/{digest}", Self::base(r));
        let mut body = self.get(r, &url, "*/*", creds).await?.into_body();
        let mut w = store.ingest()?;
        loop {
            let frame = tokio::time::timeout(TIMEOUT, body.frame())
                .await
                .map_err(|_| reg(format!("{url}: stalled for {TIMEOUT:?}")))?;
            match frame {
                None => break,
                Some(Err(e)) => return Err(reg(format!("{url}: {e}"))),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        w.write(data)?;
                    }
                }
            }
        }
        w.commit(Some(digest))?;
        Ok(())
    }

    /// Pulls `r` into `store` and names it; returns what the store recorded.
    pub async fn pull(
        &self,
        store: &Store,
        r: &Reference,
        creds: Option<&Credentials>,
    ) -> Result<ImageRecord, ImageError> {
        let (top, top_digest) = self.manifest(r, r.object(), creds).await?;
        store.put(&top[..], Some(&top_digest))?;
        let parsed: Manifest =
            serde_json::from_slice(&top).map_err(|e| reg(format!("manifest of {r}: {e}")))?;
        let (manifest, manifest_digest) = if parsed.is_index() {
            let entry = manifest::select_platform(&parsed, &self.platform).ok_or_else(|| {
                reg(format!(
                    "no matching manifest for {}/{} in the manifest list entries",
                    self.platform.os, self.platform.architecture
                ))
            })?;
            let (bytes, digest) = self.manifest(r, &entry.digest, creds).await?;
            store.put(&bytes[..], Some(&digest))?;
            let m: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| reg(format!("manifest {digest}: {e}")))?;
            (m, digest)
        } else {
            (parsed, top_digest.clone())
        };
        let config = manifest
            .config
            .as_ref()
            .ok_or_else(|| reg(format!("{manifest_digest} of {r} is not an image manifest")))?;
        self.blob(store, r, &config.digest, creds).await?;
        for layer in &manifest.layers {
            self.blob(store, r, &layer.digest, creds).await?;
        }
        let pinned = r.with_digest(&top_digest).to_string();
        let mut names = vec![r.to_string()];
        if !names.contains(&pinned) {
            names.push(pinned.clone());
        }
        store.commit(&names, &manifest_digest, &pinned)
    }
}

async fn read_all(resp: hyper::Response<hyper::body::Incoming>) -> Result<Bytes, ImageError> {
    tokio::time::timeout(TIMEOUT, resp.into_body().collect())
        .await
        .map_err(|_| reg(format!("no whole answer in {TIMEOUT:?}")))?
        .map(|b| b.to_bytes())
        .map_err(|e| reg(format!("reading an answer: {e}")))
}

/// A registry's error answer in a line: the status and its `errors[].message`s.
fn describe_failure(status: hyper::StatusCode, body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let said: Vec<String> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}: {}",
                e["code"].as_str().unwrap_or_default(),
                e["message"].as_str().unwrap_or_default()
            )
        })
        .collect();
    match (status, said.is_empty()) {
        (hyper::StatusCode::NOT_FOUND, _) => format!("not found ({})", said.join("; ")),
        (hyper::StatusCode::UNAUTHORIZED | hyper::StatusCode::FORBIDDEN, _) => {
            format!(
                "{status}: pull access denied, repository does not exist or may require authorization ({})",
                said.join("; ")
            )
        }
        (_, true) => status.to_string(),
        (_, false) => format!("{status}: {}", said.join("; ")),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_with_quoted_commas() {
        let (scheme, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(scheme, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull,push");
        let (scheme, p) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!(
            (scheme.as_str(), p["realm"].as_str()),
            ("basic", "Registry Realm")
        );
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(c.basic(), "Basic dTpw");
        assert!(
            describe_failure(
                hyper::StatusCode::NOT_FOUND,
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
            )
            .contains("not found (MANIFEST_UNKNOWN: manifest unknown)")
        );
    }
}
