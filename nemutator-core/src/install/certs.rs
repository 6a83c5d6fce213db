//! The webhook's certificates when cert-manager does not manage them: a CA
//! and a serving certificate signed by it, made once and kept in a directory
//! so that applying the manifests again keeps the same `caBundle`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::InstallError;

/// How long the generated certificates are valid: ten years. The webhook
/// reloads its pair when the Secret changes, so rotating is running
/// `nemutator install` again with a new certificate directory and applying it.
pub const VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// A CA and the serving pair it signed, all PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookCerts {
    /// The CA certificate: the webhook configuration's `caBundle`.
    pub ca_cert: String,
    /// The CA's private key (kept only in the certificate directory).
    pub ca_key: String,
    /// The serving certificate (`tls.crt` of the Secret).
    pub tls_cert: String,
    /// Its private key (`tls.key` of the Secret).
    pub tls_key: String,
    /// The names the serving certificate is valid for.
    pub names: Vec<String>,
}

impl std::fmt::Debug for WebhookCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach a log line.
        f.debug_struct("WebhookCerts")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

const FILES: [&str; 5] = ["ca.crt", "ca.key", "tls.crt", "tls.key", "names"];

impl WebhookCerts {
    /// A new CA and a serving certificate for `names` (DNS names or IP
    /// addresses).
    pub fn generate(names: &[String]) -> Result<Self, InstallError> {
        let gen = |e: rcgen::Error| InstallError::Certificate(e.to_string());
        let now = time::OffsetDateTime::now_utc();
        // An hour back for clocks a little behind ours.
        let not_before = now - time::Duration::hours(1);
        let not_after = now + VALIDITY;

        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
        ca.distinguished_name = dn("nemutator webhook CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_key = KeyPair::generate().map_err(gen)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(gen)?;

        let mut leaf = CertificateParams::new(names.to_vec()).map_err(gen)?;
        leaf.distinguished_name = dn(names.first().map_or("nemutator", String::as_str));
        leaf.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        let leaf_key = KeyPair::generate().map_err(gen)?;
        let issuer = Issuer::from_params(&ca, &ca_key);
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).map_err(gen)?;

        Ok(WebhookCerts {
            ca_cert: ca_cert.pem(),
            ca_key: ca_key.serialize_pem(),
            tls_cert: leaf_cert.pem(),
            tls_key: leaf_key.serialize_pem(),
            names: names.to_vec(),
        })
    }

    /// The certificates kept in `dir`, or new ones written there when it holds
    /// none. A directory made for other names is an error, not a silent
    /// replacement (the running webhook would stop matching its `caBundle`).
    pub fn load_or_generate(dir: &Path, names: &[String]) -> Result<Self, InstallError> {
        let io = |path: PathBuf| move |source| InstallError::Io { path, source };
        let present: Vec<bool> = FILES.iter().map(|f| dir.join(f).exists()).collect();
        if present.iter().all(|p| *p) {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).map_err(io(dir.join(f)));
            let kept: Vec<String> = read("names")?.lines().map(str::to_owned).collect();
            if kept != names {
                return Err(InstallError::CertDirMismatch {
                    dir: dir.to_path_buf(),
                    kept: kept.join(","),
                    wanted: names.join(","),
                });
            }
            return Ok(WebhookCerts {
                ca_cert: read("ca.crt")?,
                ca_key: read("ca.key")?,
                tls_cert: read("tls.crt")?,
                tls_key: read("tls.key")?,
                names: kept,
            });
        }
        if present.iter().any(|p| *p) {
            return Err(InstallError::CertDirIncomplete(dir.to_path_buf()));
        }
        let certs = Self::generate(names)?;
        std::fs::create_dir_all(dir).map_err(io(dir.to_path_buf()))?;
        for (file, text) in [
            ("ca.crt", &certs.ca_cert),
            ("tls.crt", &certs.tls_cert),
            ("names", &(names.join("\n") + "\n")),
        ] {
            std::fs::write(dir.join(file), text).map_err(io(dir.join(file)))?;
        }
        for (file, text) in [("ca.key", &certs.ca_key), ("tls.key", &certs.tls_key)] {
            write_private(&dir.join(file), text).map_err(io(dir.join(file)))?;
        }
        Ok(certs)
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes a key readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use super::*;

    fn names() -> Vec<String> {
        vec!["nemutator.ns.svc".into(), "127.0.0.1".into()]
    }

    #[test]
    fn serving_certificate_verifies_against_the_ca_for_its_names() {
        let certs = WebhookCerts::generate(&names()).unwrap_or_else(|e| panic!("{e}"));
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(certs.ca_cert.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        roots.add(ca).unwrap_or_else(|e| panic!("{e}"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap_or_else(|e| panic!("{e}"));
        let leaf = CertificateDer::from_pem_slice(certs.tls_cert.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        for name in ["nemutator.ns.svc", "127.0.0.1"] {
            let server = ServerName::try_from(name).unwrap_or_else(|e| panic!("{e}"));
            rustls::client::danger::ServerCertVerifier::verify_server_cert(
                verifier.as_ref(),
                &leaf,
                &[],
                &server,
                &[],
                UnixTime::now(),
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let other = ServerName::try_from("other.example").unwrap_or_else(|e| panic!("{e}"));
        assert!(
            rustls::client::danger::ServerCertVerifier::verify_server_cert(
                verifier.as_ref(),
                &leaf,
                &[],
                &other,
                &[],
                UnixTime::now(),
            )
            .is_err()
        );
        assert!(
            !format!("{certs:?}").contains("PRIVATE"),
            "keys stay out of Debug"
        );
    }

    #[test]
    fn a_certificate_directory_is_reused_and_guards_its_names() {
        let dir = tempdir("reuse");
        let first =
            WebhookCerts::load_or_generate(&dir, &names()).unwrap_or_else(|e| panic!("{e}"));
        let again =
            WebhookCerts::load_or_generate(&dir, &names()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(first, again, "the same pair is served again");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("ca.key"))
                .unwrap_or_else(|e| panic!("{e}"))
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "keys are private: {mode:o}");
        }
        let err =
            WebhookCerts::load_or_generate(&dir, &["other.svc".into()]).expect_err("names differ");
        assert!(err.to_string().contains("other.svc"), "{err}");
        std::fs::remove_file(dir.join("tls.key")).unwrap_or_else(|e| panic!("{e}"));
        let err = WebhookCerts::load_or_generate(&dir, &names()).expect_err("incomplete");
        assert!(err.to_string().contains("incomplete"), "{err}");
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nemutator-certs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }
}
