//! The API server's client for kubelet APIs (upstream's `KubeletClientConfig` and its transport):
//! HTTPS with the client certificate the cluster CA signed for the API server (upstream's
//! `--kubelet-client-certificate`), the kubelet's serving certificate not verified (upstream's
//! default without `--kubelet-certificate-authority`: kubelets sign their own). One connection per
//! request, driven with upgrades so exec and attach can switch protocols on it.

use std::{sync::Arc, time::Duration};

use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};

use super::tls::ClientCertificate;

/// Reaching a kubelet failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeletClientError {
    /// The TLS configuration could not be built.
    #[error("kubelet client TLS: {0}")]
    Config(String),
    /// The connection, handshake or request failed.
    #[error("{0}")]
    Unreachable(String),
}

/// How kubelets are reached.
#[derive(Clone)]
pub struct KubeletClient {
    tls: Arc<rustls::ClientConfig>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for KubeletClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeletClient")
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

/// Accepts any kubelet serving certificate but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyKubeletCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyKubeletCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl KubeletClient {
    /// A client presenting `cert`.
    pub fn new(cert: &ClientCertificate) -> Result<Self, KubeletClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| KubeletClientError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyKubeletCertificate(provider)))
            .with_client_auth_cert(cert.chain.clone(), cert.key.clone_key().into())
            .map_err(|e| KubeletClientError::Config(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: Arc::new(config),
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// Sends `request` (its URI a path and query) to the kubelet at `host:port`. The connection
    /// lives as long as the response body, or the upgraded stream, is in use.
    pub async fn send(
        &self,
        host: &str,
        port: u16,
        mut request: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, KubeletClientError> {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        if let Ok(value) = http::HeaderValue::from_str(&target) {
            request.headers_mut().insert(http::header::HOST, value);
        }
        let unreachable = |what: &str, e: &dyn std::fmt::Display| {
            KubeletClientError::Unreachable(format!("{what} https://{target}: {e}"))
        };
        let tcp = tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(&target))
            .await
            .map_err(|_| unreachable("dial", &"timed out"))?
            .map_err(|e| unreachable("dial", &e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| unreachable("server name", &e))?;
        let tls = tokio::time::timeout(
            self.connect_timeout,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| unreachable("TLS handshake with", &"timed out"))?
        .map_err(|e| unreachable("TLS handshake with", &e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable("HTTP handshake with", &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "kubelet connection ended with an error");
            }
        });
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable("request to", &e))
    }
}
