//! The join token: how `skiff agent --server https://HOST:6443 --token T` joins a cluster, in k3s's
//! scheme. The server keeps a secret (`--token`, or one generated once and kept in
//! `<data-dir>/server/token`) and writes the full token to `<data-dir>/server/node-token`:
//! `K10<sha256 of the cluster CA, hex>::server:<secret>`. An agent holding it fetches the CA from the
//! server's public `/cacerts`, accepts it only if its hash is the token's (so nothing in between can
//! stand in for the server), and from then on verifies the server with it and presents the secret as
//! its bearer token: its node credentials. (There is no RBAC yet, so the node is as trusted as the
//! admin; what the token buys is that only holders can join, and that agents check the server.)

use std::path::Path;

use anyhow::{Context, bail};

/// A parsed token: the CA hash when the token carries one, and the secret.
#[derive(Debug, PartialEq)]
pub struct JoinToken {
    pub ca_hash: Option<String>,
    pub secret: String,
}

/// Parses `K10<hash>::<user>:<secret>`, `K10<hash>::<secret>`, or a bare secret.
pub fn parse(token: &str) -> JoinToken {
    let token = token.trim();
    if let Some(rest) = token.strip_prefix("K10")
        && let Some((hash, credentials)) = rest.split_once("::")
    {
        let secret = credentials.split_once(':').map_or(credentials, |(_, s)| s);
        return JoinToken {
            ca_hash: Some(hash.to_ascii_lowercase()),
            secret: secret.to_string(),
        };
    }
    JoinToken {
        ca_hash: None,
        secret: token.to_string(),
    }
}

/// The sha256 of the CA bundle, hex: what a full token pins.
pub fn ca_hash(ca_pem: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, ca_pem.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The full token agents are given.
pub fn full_token(ca_pem: &str, secret: &str) -> String {
    format!("K10{}::server:{secret}", ca_hash(ca_pem))
}

/// The server's secret: `--token` (its secret part, if given in full form), else the one kept in
/// `<server-dir>/token`, else a new random one written there. The full token goes to
/// `<server-dir>/node-token` for whoever sets up agents.
pub fn server_secret(server_dir: &Path, flag: Option<&str>, ca_pem: &str) -> anyhow::Result<String> {
    let kept = server_dir.join("token");
    let secret = match flag {
        Some(token) => {
            let parsed = parse(token);
            if parsed.ca_hash.as_deref().is_some_and(|h| h != ca_hash(ca_pem)) {
                bail!("--token names another cluster's CA (its hash is not this server's)");
            }
            if parsed.secret.is_empty() {
                bail!("--token is empty");
            }
            parsed.secret
        }
        None => match std::fs::read_to_string(&kept) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => random_secret(),
        },
    };
    write_private(&kept, &secret)?;
    write_private(&server_dir.join("node-token"), &full_token(ca_pem, &secret))?;
    Ok(secret)
}

/// 32 random hex characters.
fn random_secret() -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("system randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())?;
    Ok(())
}

/// Fetches the server's CA from `/cacerts` (without verifying the server: that is what the hash is
/// for) and returns it if its hash is `expected`.
pub async fn fetch_ca(server: &http::Uri, expected: &str) -> anyhow::Result<String> {
    let mut config = kube::Config::new(server.clone());
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).context("cannot build a client for /cacerts")?;
    let request = http::Request::get("/cacerts").body(Vec::new())?;
    let pem = client
        .request_text(request)
        .await
        .with_context(|| format!("cannot fetch the cluster CA from {server}/cacerts"))?;
    let got = ca_hash(&pem);
    if got != expected {
        bail!(
            "the CA {server} serves (sha256 {got}) is not the one the token names ({expected}): \
             wrong server, or someone in between"
        );
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_in_every_form() {
        assert_eq!(
            parse("K10ABcd::server:s3cret"),
            JoinToken {
                ca_hash: Some("abcd".into()),
                secret: "s3cret".into()
            }
        );
        assert_eq!(
            parse("K10abcd::s3cret\n"),
            JoinToken {
                ca_hash: Some("abcd".into()),
                secret: "s3cret".into()
            }
        );
        assert_eq!(
            parse("just-a-secret"),
            JoinToken {
                ca_hash: None,
                secret: "just-a-secret".into()
            }
        );
        let full = full_token("PEM", "x");
        assert_eq!(
            parse(&full),
            JoinToken {
                ca_hash: Some(ca_hash("PEM")),
                secret: "x".into()
            }
        );
        assert_eq!(ca_hash("").len(), 64);
    }

    #[test]
    fn the_server_secret_is_kept_and_a_flag_wins() {
        let dir = tempfile::tempdir().unwrap();
        let first = server_secret(dir.path(), None, "CA").unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(
            server_secret(dir.path(), None, "CA").unwrap(),
            first,
            "kept across restarts"
        );
        let node_token = std::fs::read_to_string(dir.path().join("node-token")).unwrap();
        assert_eq!(node_token, full_token("CA", &first));
        assert_eq!(server_secret(dir.path(), Some("mine"), "CA").unwrap(), "mine");
        assert_eq!(
            server_secret(dir.path(), Some(&full_token("CA", "full")), "CA").unwrap(),
            "full"
        );
        assert!(server_secret(dir.path(), Some(&full_token("OTHER", "x")), "CA").is_err());
        assert!(server_secret(dir.path(), Some(" "), "CA").is_err());
    }
}
