//! TLS for the public listener: rustls with the `ring` provider, offering h2 and http/1.1, and
//! a certificate that follows its PEM files without a restart.
//!
//! [`ReloadingCert`] is the rustls certificate resolver: every handshake takes the pair in use
//! (one atomic load). [`ReloadingCert::watch`] checks the files' modification time and size
//! every `--tls-reload-interval-ms` (and reloads on SIGHUP); a changed pair is parsed and its
//! key checked against the certificate before it replaces the old one, so a half-written or
//! mismatched pair (the certificate renewed, the key not yet) keeps the old pair, logs an error
//! and counts `ingest_tls_reloads_total{result="error"}`. Open connections keep the
//! certificate they were made with; new ones get the new pair.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::metrics;

/// Why a TLS certificate and key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read PEM file {path}")]
    Pem {
        path: String,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("invalid TLS certificate or key")]
    Rustls(#[source] rustls::Error),
}

/// Modification time and length of the certificate and key files (`None` when unreadable).
type Stamp = [Option<(SystemTime, u64)>; 2];

/// The certificate resolver that reloads its PEM files.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    /// The files' stamp when they were last read.
    loaded: Mutex<Stamp>,
}

impl ReloadingCert {
    /// Loads the pair once; an error here is fatal (there is no previous pair to keep).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let stamp = stamp(cert_path, key_path);
        let pair = read_pair(cert_path, key_path, &provider)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            provider,
            current: ArcSwap::from_pointee(pair),
            loaded: Mutex::new(stamp),
        }))
    }

    /// A TLS acceptor answering every handshake with the pair in use.
    pub fn acceptor(self: &Arc<Self>) -> Result<TlsAcceptor, TlsError> {
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Rustls)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(self) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }

    /// Reads the files again if their stamp changed since the last read (or if `forced`).
    /// Returns whether a new pair is in use; on an error the old pair stays.
    pub fn reload_if_changed(&self, forced: bool) -> Result<bool, TlsError> {
        let now = stamp(&self.cert_path, &self.key_path);
        {
            let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
            if !forced && *loaded == now {
                return Ok(false);
            }
            // Recorded even when the pair does not load: the next change is retried, an
            // unchanged bad pair is not re-read (and re-logged) every interval.
            *loaded = now;
        }
        match read_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                metrics::tls_reload("ok");
                tracing::info!(cert = %self.cert_path.display(), "tls certificate reloaded");
                Ok(true)
            }
            Err(error) => {
                metrics::tls_reload("error");
                tracing::error!(cert = %self.cert_path.display(), error = %schemas::error_chain(&error), "tls certificate reload failed, keeping the previous one");
                Err(error)
            }
        }
    }

    /// Reloads changed files every `every` and on SIGHUP, until `stop`.
    pub async fn watch(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        #[cfg(unix)]
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            #[cfg(unix)]
            let hup = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            #[cfg(not(unix))]
            let hup = std::future::pending::<Option<()>>();
            let forced = tokio::select! {
                () = stop.cancelled() => return,
                _ = ticker.tick() => false,
                Some(()) = hup => true,
            };
            // Errors are logged and counted inside.
            let _ = self.reload_if_changed(forced);
        }
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
}

/// The certificate chain and private key from PEM files, the key checked against the
/// certificate.
fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |path: &Path| {
        let path = path.display().to_string();
        move |source| TlsError::Pem {
            path: path.clone(),
            source,
        }
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(pem_error(cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(cert))?;
    if certs.is_empty() {
        return Err(TlsError::Rustls(rustls::Error::NoCertificatesPresented));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem_error(key))?;
    CertifiedKey::from_der(certs, key, provider).map_err(TlsError::Rustls)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn generate() -> Pair {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        Pair {
            cert: made.cert.pem(),
            key: made.signing_key.serialize_pem(),
        }
    }

    fn in_use(resolver: &ReloadingCert) -> Vec<u8> {
        resolver.current.load().cert[0].to_vec()
    }

    fn der(pem: &str) -> Vec<u8> {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn a_changed_pair_is_used_and_a_bad_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (a, b) = (generate(), generate());
        std::fs::write(&cert, &a.cert).unwrap();
        std::fs::write(&key, &a.key).unwrap();
        let resolver = ReloadingCert::load(&cert, &key).unwrap();
        assert_eq!(in_use(&resolver), der(&a.cert));
        assert!(!resolver.reload_if_changed(false).unwrap(), "unchanged");

        // Renewed certificate, key not yet: mismatched, the old pair stays.
        std::fs::write(&cert, &b.cert).unwrap();
        assert!(resolver.reload_if_changed(false).is_err());
        assert_eq!(in_use(&resolver), der(&a.cert));
        std::fs::write(&key, &b.key).unwrap();
        assert!(resolver.reload_if_changed(false).unwrap());
        assert_eq!(in_use(&resolver), der(&b.cert));

        // A truncated certificate file: the old pair stays.
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nMII").unwrap();
        assert!(resolver.reload_if_changed(false).is_err());
        assert_eq!(in_use(&resolver), der(&b.cert));
        assert!(
            ReloadingCert::load(&cert, &key).is_err(),
            "a bad pair at start-up is fatal"
        );
    }
}
