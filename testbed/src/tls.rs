//! Self-signed TLS certificates for `127.0.0.1` and `localhost`, written as PEM files.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use tempfile::TempDir;

/// A self-signed certificate and its private key, as PEM files in a temp dir (removed on drop).
#[derive(Debug)]
pub struct SelfSigned {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The certificate, DER (to add it as a trusted root in a client).
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key, PEM.
    pub key_pem: String,
    cert_path: PathBuf,
    key_path: PathBuf,
    _dir: TempDir,
}

impl SelfSigned {
    /// Generate a certificate valid for `127.0.0.1`, `127.0.0.2` and `localhost`.
    pub fn generate() -> anyhow::Result<Self> {
        let names = ["127.0.0.1", "127.0.0.2", "localhost"]
            .map(str::to_owned)
            .to_vec();
        let certified =
            rcgen::generate_simple_self_signed(names).context("generate certificate")?;
        let dir = tempfile::Builder::new().prefix("palisade-tls-").tempdir()?;
        let cert_pem = certified.cert.pem();
        let key_pem = certified.signing_key.serialize_pem();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &cert_pem)?;
        std::fs::write(&key_path, &key_pem)?;
        Ok(Self {
            cert_der: certified.cert.der().to_vec(),
            cert_pem,
            key_pem,
            cert_path,
            key_path,
            _dir: dir,
        })
    }

    /// Path of the certificate PEM file.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Path of the private key PEM file.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }
}
