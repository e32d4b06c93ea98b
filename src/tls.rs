//! TLS, in one place: the crypto provider (ring, installed as the process
//! default by [`install_provider`]), the listeners' certificate
//! ([`ServerCert`]: the PEM files of `AO_TLS_CERT` and `AO_TLS_KEY`, read at
//! start-up and again on SIGHUP) and the client configuration of Redis
//! connections over `rediss://` ([`redis_client_config`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use crate::logging::Chain;
use rustls::client::ClientConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

/// Why a TLS certificate, key or CA file could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// A file named by a setting is missing, unreadable or holds no usable PEM.
    #[error("{key}: {path}: {reason}")]
    File {
        /// The setting naming the file (`AO_TLS_CERT`, `AO_TLS_KEY`, `AO_REDIS_CA`).
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it, or what could not be done with it.
        reason: &'static str,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// No certificate authority to check a Redis server's certificate against.
    #[error(
        "AO_REDIS_CA: no trusted certificates: the system has none and AO_REDIS_CA is not set"
    )]
    NoRoots,
    /// rustls refused the configuration.
    #[error("rustls refused the configuration")]
    Rustls(#[from] rustls::Error),
}

fn file_error(key: &'static str, path: &Path, reason: &'static str) -> TlsError {
    TlsError::File {
        key,
        path: path.display().to_string(),
        reason,
        source: None,
    }
}

/// [`file_error`] with the error that caused it.
fn file_cause(
    key: &'static str,
    path: &Path,
    reason: &'static str,
    cause: impl std::error::Error + Send + Sync + 'static,
) -> TlsError {
    TlsError::File {
        key,
        path: path.display().to_string(),
        reason,
        source: Some(Arc::new(cause)),
    }
}

/// The crypto provider of every TLS connection, server and client.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes [`provider`] the process default, for libraries that build their
/// own TLS configurations (fred, mongodb). Idempotent.
pub fn install_provider() {
    // Err means a provider is installed already (by an earlier call).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The listeners' certificate and key, swappable while the server runs:
/// each new connection gets the current one, open connections keep the
/// one they were made with.
#[derive(Debug)]
pub struct ServerCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServerCert {
    /// Reads the certificate chain (`cert`, PEM, leaf first) and its private
    /// key (`key`, PEM: PKCS#8, PKCS#1 or SEC1), which must match.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerCert>, TlsError> {
        let current = read_certified_key(cert, key)?;
        Ok(Arc::new(ServerCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(current),
        }))
    }

    /// Reads the files again and, when they can be used, serves the new
    /// certificate to new connections; otherwise the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = read_certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The certificate being served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The listeners' rustls configuration: TLS 1.2 and 1.3, this
    /// certificate, ALPN `http/1.1` (websockets upgrade from HTTP/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn read_certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates("AO_TLS_CERT", cert)?;
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        pem::Error::NoItemsFound => file_error("AO_TLS_KEY", key, "no PEM private key in the file"),
        e => file_cause("AO_TLS_KEY", key, "cannot read a PEM private key", e),
    })?;
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        file_cause(
            "AO_TLS_KEY",
            key,
            "not usable with the certificate of AO_TLS_CERT",
            e,
        )
    })?;
    Ok(Arc::new(certified))
}

/// Every certificate of the PEM file `path`; at least one.
fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_cause(key, path, "cannot read PEM certificates", e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_cause(key, path, "cannot read PEM certificates", e))?;
    if certs.is_empty() {
        return Err(file_error(key, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The client configuration of Redis connections over TLS: the server's
/// certificate must chain to the system's trusted roots or to a
/// certificate of the PEM file `ca` (`AO_REDIS_CA`).
pub fn redis_client_config(ca: Option<&Path>) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::debug!(error = %Chain(e), "a system certificate could not be read");
    }
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca {
        for cert in read_certificates("AO_REDIS_CA", path)? {
            roots
                .add(cert)
                .map_err(|e| file_cause("AO_REDIS_CA", path, "holds an unusable certificate", e))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots);
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Whether a Redis URL asks for TLS (`rediss://`, `rediss-cluster://`, …).
pub fn redis_url_uses_tls(url: &str) -> bool {
    let scheme = url.split_once("://").map_or("", |(s, _)| s);
    let scheme = scheme.to_ascii_lowercase();
    scheme.starts_with("rediss") || scheme.starts_with("valkeys")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_redis_urls_ask_for_tls() {
        for url in [
            "rediss://h:1",
            "REDISS://h:1",
            "rediss-cluster://h:1",
            "valkeys://h:1",
        ] {
            assert!(redis_url_uses_tls(url), "{url}");
        }
        for url in ["redis://h:1", "redis-cluster://rediss:1", "h:1"] {
            assert!(!redis_url_uses_tls(url), "{url}");
        }
    }

    #[test]
    fn unusable_files_name_their_setting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = ServerCert::load(&missing, &missing).expect_err("missing files");
        assert!(e.to_string().starts_with("AO_TLS_CERT: "), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no PEM here\n").expect("write");
        let e = ServerCert::load(&empty, &empty).expect_err("no PEM");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");
        let e = redis_client_config(Some(&empty)).expect_err("no CA");
        assert!(e.to_string().starts_with("AO_REDIS_CA: "), "{e}");
    }
}
