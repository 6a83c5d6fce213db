//! TLS for the webhook: rustls (ring), TLS 1.2 and 1.3 only, a certificate
//! that is reloaded when its files change (the last good pair is kept when a
//! new one is bad), or a self-signed certificate made at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The key does not fit the certificate, or is of an unsupported type.
    #[error("certificate and key: {0}")]
    Key(String),
    /// The self-signed certificate could not be made.
    #[error("self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the configuration.
    #[error("tls configuration: {0}")]
    Config(String),
}

/// Load a PEM certificate chain and private key.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem_err = |path: &Path, message: String| TlsError::Pem {
        path: path.to_path_buf(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_err(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_err(cert, "no certificate found".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_err(key, e.to_string()))?;
    certified_key(chain, &key_der)
}

fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: &PrivateKeyDer<'_>,
) -> Result<CertifiedKey, TlsError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| TlsError::Key(e.to_string()))?;
    Ok(ck)
}

/// The names every self-signed certificate of nemutator holds.
pub const LOOPBACK_NAMES: [&str; 2] = ["localhost", "127.0.0.1"];

/// `defaults` followed by each of `extra` they do not hold yet: a name given
/// twice (DNS names compare without case) is kept once, blank ones are
/// dropped. What `--tls-san` makes of its defaults.
pub fn with_extra_names<'a>(
    defaults: impl IntoIterator<Item = &'a str>,
    extra: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let extra = extra.iter().map(String::as_str);
    for name in defaults.into_iter().map(|n| n as &str).chain(extra) {
        let name = name.trim();
        if !name.is_empty() && !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            names.push(name.to_owned());
        }
    }
    names
}

/// A self-signed certificate for `names` (DNS names or IP addresses); returns
/// the key pair for rustls and the certificate PEM (the CA bundle to give the
/// API server).
pub fn self_signed(names: &[String]) -> Result<(CertifiedKey, String), TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let pem = generated.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let ck = certified_key(vec![generated.cert.der().clone()], &key)?;
    Ok((ck, pem))
}

/// A certificate resolver whose certificate can be swapped while serving.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    files: Option<(PathBuf, PathBuf)>,
}

type Stamp = Option<(SystemTime, SystemTime, u64, u64)>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let c = std::fs::metadata(cert).ok()?;
    let k = std::fs::metadata(key).ok()?;
    Some((c.modified().ok()?, k.modified().ok()?, c.len(), k.len()))
}

impl CertStore {
    /// Serve a fixed certificate.
    pub fn fixed(key: CertifiedKey) -> Self {
        CertStore {
            current: ArcSwap::from_pointee(key),
            files: None,
        }
    }

    /// Serve the pair in `cert` / `key`, reloadable with [`CertStore::reload`].
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let ck = load_certified_key(cert, key)?;
        Ok(CertStore {
            current: ArcSwap::from_pointee(ck),
            files: Some((cert.to_path_buf(), key.to_path_buf())),
        })
    }

    /// Re-read the files; on error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        if let Some((cert, key)) = &self.files {
            let ck = load_certified_key(cert, key)?;
            self.current.store(Arc::new(ck));
        }
        Ok(())
    }

    /// The certificate served now (leaf first).
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// Poll the files every `every` and reload when they change. Does nothing
    /// for a fixed certificate.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let Some((cert, key)) = self.files.clone() else {
            return;
        };
        let mut last = stamp(&cert, &key);
        loop {
            tokio::time::sleep(every).await;
            let now = stamp(&cert, &key);
            if now == last || now.is_none() {
                continue;
            }
            last = now;
            match self.reload() {
                Ok(()) => tracing::info!(cert = %cert.display(), "TLS certificate reloaded"),
                Err(e) => {
                    tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the last good one")
                }
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// A rustls server configuration over `certs`: ring, TLS 1.2+ only, ALPN h2
/// and http/1.1.
pub fn server_config(certs: Arc<CertStore>) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_names_are_added_once() {
        let extra = [
            "b".to_string(),
            "LOCALHOST".into(),
            " ".into(),
            "c".into(),
            "b".into(),
        ];
        assert_eq!(
            with_extra_names(LOOPBACK_NAMES, &extra),
            ["localhost", "127.0.0.1", "b", "c"]
        );
        assert_eq!(with_extra_names(["a"], &[]), ["a"]);
    }

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let g = rcgen::generate_simple_self_signed(vec![name.to_string()])
            .unwrap_or_else(|e| panic!("{e}"));
        let (c, k) = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&c, g.cert.pem()).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&k, g.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
        (c, k)
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nemutator-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{e}"));
        d
    }

    #[test]
    fn reload_swaps_and_keeps_last_good() {
        let dir = tmpdir("reload");
        let (c, k) = write_pair(&dir, "one.example");
        let store = CertStore::from_files(&c, &k).unwrap_or_else(|e| panic!("{e}"));
        let first = store.current().cert[0].clone();
        write_pair(&dir, "two.example");
        store.reload().unwrap_or_else(|e| panic!("{e}"));
        let second = store.current().cert[0].clone();
        assert_ne!(first, second);
        std::fs::write(&c, "not a certificate").unwrap_or_else(|e| panic!("{e}"));
        let err = store.reload().expect_err("bad pem must fail");
        assert!(err.to_string().contains("tls.crt"), "{err}");
        assert_eq!(store.current().cert[0], second, "last good pair kept");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tmpdir("mismatch");
        let (c, k) = write_pair(&dir, "a.example");
        let other =
            rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&k, other.signing_key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
        assert!(CertStore::from_files(&c, &k).is_err());
    }

    #[test]
    fn self_signed_makes_a_pem_bundle() {
        let (ck, pem) = self_signed(&["localhost".into(), "127.0.0.1".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(ck.cert.len(), 1);
        assert!(server_config(Arc::new(CertStore::fixed(ck))).is_ok());
    }
}
