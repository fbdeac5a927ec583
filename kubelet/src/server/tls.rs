//! The kubelet API's TLS: a self-signed serving certificate (upstream's kubelet makes one too when it
//! is given none, and the API server does not verify kubelet serving certificates by default) and
//! client certificates checked against the cluster CA, as `--client-ca-file` does. A client without
//! a certificate still completes the handshake so it can be told 401, as upstream's does.

use std::sync::Arc;

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
};

/// The TLS set-up failed.
#[derive(Debug, thiserror::Error)]
#[error("kubelet TLS: {0}")]
pub struct TlsError(pub String);

/// The rustls configuration of the kubelet API: a fresh self-signed certificate for `names` (host
/// names and IP addresses), client certificates verified against `client_ca` (DER certificates).
pub fn server_config(names: &[String], client_ca: &[Vec<u8>]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certified = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError(format!("self-signing the serving certificate: {e}")))?;
    let mut roots = RootCertStore::empty();
    for der in client_ca {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsError(format!("the client CA: {e}")))?;
    }
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(format!("TLS versions: {e}")))?;
    let builder = if roots.is_empty() {
        // No CA: nobody can authenticate, every request gets 401.
        builder.with_no_client_auth()
    } else {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError(format!("the client verifier: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    };
    let key = PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
    let mut config = builder
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(|e| TlsError(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The DER certificates of a PEM bundle (a kubeconfig's `certificate-authority-data`, a CA file).
pub fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    use base64::Engine;
    let decode = |b: &str| base64::engine::general_purpose::STANDARD.decode(b).ok();
    let mut certs = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines().map(str::trim) {
        match (line, &mut body) {
            ("-----BEGIN CERTIFICATE-----", None) => body = Some(String::new()),
            ("-----END CERTIFICATE-----", Some(b)) => {
                if let Some(der) = decode(b) {
                    certs.push(der);
                }
                body = None;
            }
            (l, Some(b)) => b.push_str(l),
            _ => {}
        }
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundles_decode() {
        let pem = "-----BEGIN CERTIFICATE-----\naGVsbG8g\nd29ybGQ=\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(pem), vec![b"hello world".to_vec()]);
        assert!(pem_certificates("junk").is_empty());
    }

    #[test]
    fn a_server_config_builds_with_and_without_a_ca() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        assert!(server_config(&["127.0.0.1".into()], &[ca.cert.der().to_vec()]).is_ok());
        assert!(server_config(&["localhost".into()], &[]).is_ok());
    }
}
