//! TLS with rustls: PEM certificate and key, HTTP/2 and HTTP/1.1 by ALPN, and a certificate
//! resolver whose certificate is swapped on SIGHUP — new handshakes get the new certificate,
//! established connections are untouched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::error::OriginError;

/// The certificate currently offered, reloadable.
#[derive(Debug)]
pub struct Reloadable {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, OriginError> {
    let tls = |m: String| OriginError::Tls(m);
    let certs: Vec<_> = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).map_err(|e| tls(format!("{}: {e}", cert.display())))?,
    ))
    .collect::<Result<_, _>>()
    .map_err(|e| tls(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(tls(format!("{}: no certificate found", cert.display())));
    }
    let key_der = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).map_err(|e| tls(format!("{}: {e}", key.display())))?,
    ))
    .map_err(|e| tls(format!("{}: {e}", key.display())))?
    .ok_or_else(|| tls(format!("{}: no private key found", key.display())))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| tls(format!("{}: {e}", key.display())))?;
    Ok(CertifiedKey::new(certs, signing))
}

impl Reloadable {
    /// Loads the certificate and key.
    pub fn new(cert: &Path, key: &Path) -> Result<Arc<Self>, OriginError> {
        let ck = load(cert, key)?;
        Ok(Arc::new(Reloadable {
            cert: cert.into(),
            key: key.into(),
            current: ArcSwap::from_pointee(ck),
        }))
    }

    /// Re-reads the files; on error the previous certificate stays.
    pub fn reload(&self) -> Result<(), OriginError> {
        let ck = load(&self.cert, &self.key)?;
        self.current.store(Arc::new(ck));
        Ok(())
    }

    /// A rustls server config using this resolver, offering h2 and http/1.1.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        cfg
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
