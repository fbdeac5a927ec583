//! Bootstrap PKI: the cluster CA, the API server's serving certificate and the admin token, created
//! once under `<data-dir>/server/tls/` and reused on restart (k3s keeps them in the same place), plus
//! the admin kubeconfig that embeds the CA.

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Errors creating or loading the PKI; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Generating or parsing a key or certificate failed.
    #[error("{0}")]
    Cert(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |e| PkiError::Cert(format!("{what}: {e}"))
}

/// The server's TLS material.
pub struct Pki {
    /// The cluster CA certificate (PEM), embedded in kubeconfigs.
    pub ca_pem: String,
    /// The rustls configuration serving the API.
    pub server_config: Arc<rustls::ServerConfig>,
    /// The admin bearer token.
    pub admin_token: String,
    /// The client certificate the API server presents to kubelets (upstream's
    /// `--kubelet-client-certificate`), signed by the cluster CA.
    pub kubelet_client: ClientCertificate,
}

/// A client certificate and its key (DER).
pub struct ClientCertificate {
    /// The certificate.
    pub chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Its PKCS#8 key.
    pub key: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
}

/// Issues the client certificate the API server uses towards kubelets (re-issued on every start,
/// like the serving certificate).
fn kubelet_client(issuer: &Issuer<'_, KeyPair>) -> Result<ClientCertificate, PkiError> {
    let key = KeyPair::generate().map_err(cert_err("generating the kubelet client key"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let cert = params
        .signed_by(&key, issuer)
        .map_err(cert_err("signing the kubelet client certificate"))?;
    Ok(ClientCertificate {
        chain: vec![cert.der().clone()],
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    })
}

/// Writes `contents` to `path` readable by the owner only (keys and tokens).
fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(io(path))
}

/// Loads the PKI from `dir`, creating what is missing. The serving certificate is re-issued on every
/// start so its SANs follow the current `sans` (node addresses can change); the CA and token persist.
pub fn load_or_create(dir: &Path, sans: &[String]) -> Result<Pki, PkiError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let (ca_crt, ca_key) = (dir.join("server-ca.crt"), dir.join("server-ca.key"));
    // The CA's parameters are fixed, so the issuer can be rebuilt from them and the stored key alone
    // (the subject a client matches is the same DN).
    let ca_params = || {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "skiff-server-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = rcgen::date_time_ymd(2025, 1, 1);
        params.not_after = rcgen::date_time_ymd(2035, 1, 1);
        params
    };
    if !ca_crt.exists() || !ca_key.exists() {
        let key = KeyPair::generate().map_err(cert_err("generating the CA key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(cert_err("self-signing the CA"))?;
        write_private(&ca_key, &key.serialize_pem())?;
        fs::write(&ca_crt, cert.pem()).map_err(io(&ca_crt))?;
    }
    let ca_pem = read(&ca_crt)?;
    let ca_key = KeyPair::from_pem(&read(&ca_key)?).map_err(cert_err("parsing server-ca.key"))?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let key = KeyPair::generate().map_err(cert_err("generating the serving key"))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<std::net::IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.clone().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()
        .map_err(cert_err("a subject alternative name"))?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(cert_err("signing the serving certificate"))?;
    let serving_crt = dir.join("serving-kube-apiserver.crt");
    fs::write(&serving_crt, cert.pem()).map_err(io(&serving_crt))?;
    write_private(&dir.join("serving-kube-apiserver.key"), &key.serialize_pem())?;

    let token_path = dir.join("admin.token");
    if !token_path.exists() {
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        write_private(&token_path, &token)?;
    }
    let admin_token = read(&token_path)?.trim().to_owned();

    let chain = vec![cert.der().clone()];
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Cert(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, key_der)
            .map_err(|e| PkiError::Cert(format!("serving certificate: {e}")))?;
    // kubectl and kube-rs speak HTTP/1.1 for watches; offer h2 only once it is served.
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let kubelet_client = kubelet_client(&issuer)?;
    Ok(Pki {
        ca_pem,
        server_config: Arc::new(server_config),
        admin_token,
        kubelet_client,
    })
}

/// Writes an admin kubeconfig for `server` (e.g. `https://127.0.0.1:6443`) embedding the CA.
pub fn write_kubeconfig(path: &Path, server: &str, ca_pem: &str, token: &str) -> Result<(), PkiError> {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = format!(
        "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {ca}
    server: {server}
  name: skiff
contexts:
- context:
    cluster: skiff
    user: admin
  name: skiff
current-context: skiff
preferences: {{}}
users:
- name: admin
  user:
    token: {token}
"
    );
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io(dir))?;
    }
    write_private(path, &config)
}
