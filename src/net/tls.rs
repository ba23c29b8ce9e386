//! rustls configuration for serving HTTPS and for https clients (upstream,
//! identity providers). One crypto provider, aws-lc-rs, installed in `main`.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, read_key_file};

/// Installs aws-lc-rs as the process-wide provider for rustls and
/// jsonwebtoken; later calls are no-ops.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// The system roots plus, when `ca_file` is set, the certificates in it.
pub fn root_store(
    ca_key: &str,
    ca_file: Option<&Path>,
) -> Result<rustls::RootCertStore, ConfigError> {
    let mut roots = rustls::RootCertStore::empty();
    // A missing or partly unreadable system bundle is not fatal: an extra CA
    // file may be all that is needed.
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let ca_file = &path.display().to_string();
        let pem = read_key_file(ca_key, path)?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert =
                cert.map_err(|e| ConfigError::invalid(ca_key, ca_file, format!("bad PEM: {e}")))?;
            roots.add(cert).map_err(|e| {
                ConfigError::invalid(ca_key, ca_file, format!("bad certificate: {e}"))
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(ConfigError::invalid(
                ca_key,
                ca_file,
                "no certificate found",
            ));
        }
    }
    Ok(roots)
}

/// A client configuration trusting `root_store(ca_file)`.
pub fn client_config(
    ca_key: &str,
    ca_file: Option<&Path>,
) -> Result<rustls::ClientConfig, ConfigError> {
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(root_store(ca_key, ca_file)?)
        .with_no_client_auth())
}

/// The server configuration for `[tls]`.
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let (cert_file, key_file) = (
        &cert_path.display().to_string(),
        &key_path.display().to_string(),
    );
    let cert_pem = read_key_file("tls.cert_file", cert_path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::invalid("tls.cert_file", cert_file, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            "tls.cert_file",
            cert_file,
            "no certificate found",
        ));
    }
    let key_pem = read_key_file("tls.key_file", key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        ConfigError::invalid("tls.key_file", key_file, format!("no private key: {e}"))
    })?;
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError::invalid("tls.key_file", key_file, format!("{e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
