//! HTTPS: a rustls configuration (HTTP/1.1 and h2 by ALPN) loaded from PEM files
//! and swapped on SIGHUP. Connections keep the configuration they were accepted
//! with, so a reload drops nothing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, ServerConfig};

/// Why certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// rustls refused the certificate/key pair.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The live TLS configuration.
pub struct TlsReloader {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn build(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert, e))?;
    if certs.is_empty() {
        return Err(pem_err(cert, "no certificate in the file"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl TlsReloader {
    /// Loads `cert` (chain) and `key`.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsReloader, TlsError> {
        Ok(TlsReloader {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(build(cert, key)?),
        })
    }

    /// Re-reads both files; on error the running configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = build(&self.cert, &self.key)?;
        if let Ok(mut c) = self.current.write() {
            *c = fresh;
        }
        Ok(())
    }

    /// An acceptor with the current configuration.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        TlsAcceptor::from(config)
    }
}
