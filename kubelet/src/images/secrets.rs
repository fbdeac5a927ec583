//! imagePullSecrets: the pod's `kubernetes.io/dockerconfigjson` (`.dockerconfigjson`:
//! `{"auths": {registry: {...}}}`) and `kubernetes.io/dockercfg` (`.dockercfg`: `{registry: {...}}`)
//! Secrets, read through the API, as the kubelet's credential provider keyring does
//! (pkg/credentialprovider): an entry has `auth` (base64 `user:password`) or `username` and
//! `password`; its key is a host, maybe with a scheme and path (`https://index.docker.io/v1/` is
//! Docker Hub).

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use serde_json::Value;

use super::{reference::DOCKER_HUB, registry::Credentials};

/// Credentials by registry host (`docker.io`, `127.0.0.1:5000`).
pub type Keyring = Vec<(String, Credentials)>;

/// `https://index.docker.io/v1/` → `docker.io`; `127.0.0.1:5000/path` → `127.0.0.1:5000`.
fn registry_of(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

/// The entries of a docker config (`auths` of `.dockerconfigjson`, or a `.dockercfg` itself).
pub fn parse_docker_config(config: &Value) -> Keyring {
    let auths = config.get("auths").unwrap_or(config);
    let mut keyring = Vec::new();
    for (key, entry) in auths.as_object().into_iter().flatten() {
        let from_auth = entry["auth"].as_str().and_then(|a| {
            let raw = base64::engine::general_purpose::STANDARD.decode(a.trim()).ok()?;
            let text = String::from_utf8(raw).ok()?;
            let (u, p) = text.split_once(':')?;
            Some((u.to_owned(), p.to_owned()))
        });
        let (username, password) = match from_auth {
            Some(pair) => pair,
            None => match (entry["username"].as_str(), entry["password"].as_str()) {
                (Some(u), Some(p)) => (u.to_owned(), p.to_owned()),
                _ => continue,
            },
        };
        keyring.push((registry_of(key), Credentials { username, password }));
    }
    keyring
}

/// The credentials for registry `domain` (the first that matches).
pub fn lookup<'a>(keyring: &'a Keyring, domain: &str) -> Option<&'a Credentials> {
    keyring.iter().find(|(k, _)| k == domain).map(|(_, c)| c)
}

/// The keyring of `pod`'s imagePullSecrets (a missing or malformed Secret is skipped with a warning,
/// as upstream does).
pub async fn pod_keyring(client: &Client, pod: &Value) -> Keyring {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut keyring = Vec::new();
    for s in pod["spec"]["imagePullSecrets"].as_array().into_iter().flatten() {
        let Some(name) = s["name"].as_str() else { continue };
        let secret = match tokio::time::timeout(std::time::Duration::from_secs(10), secrets.get(name)).await {
            Ok(Ok(secret)) => secret,
            Ok(Err(e)) => {
                tracing::warn!(secret = %name, namespace = %ns, error = %e, "cannot read an imagePullSecret");
                continue;
            }
            Err(_) => continue,
        };
        let data = secret.data.unwrap_or_default();
        let field = match secret.type_.as_deref() {
            Some("kubernetes.io/dockercfg") => ".dockercfg",
            _ => ".dockerconfigjson",
        };
        let Some(bytes) = data.get(field) else { continue };
        match serde_json::from_slice::<Value>(&bytes.0) {
            Ok(config) => keyring.extend(parse_docker_config(&config)),
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "a malformed docker config in an imagePullSecret")
            }
        }
    }
    keyring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_configs_of_both_kinds_parse() {
        let json = serde_json::json!({ "auths": {
            "https://index.docker.io/v1/": { "auth": "dTpw" },
            "127.0.0.1:5000": { "username": "alice", "password": "s3cret" },
            "broken.example": { "auth": "!!!" },
        }});
        let keyring = parse_docker_config(&json);
        assert_eq!(lookup(&keyring, "docker.io").unwrap().username, "u");
        assert_eq!(lookup(&keyring, "127.0.0.1:5000").unwrap().password, "s3cret");
        assert!(lookup(&keyring, "broken.example").is_none());
        let dockercfg = serde_json::json!({ "http://registry.example:443/v2/": { "auth": "YTpiOmM=" } });
        let keyring = parse_docker_config(&dockercfg);
        let c = lookup(&keyring, "registry.example:443").unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("a", "b:c"),
            "the password may hold a colon"
        );
    }
}
