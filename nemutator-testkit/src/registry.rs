//! The real OCI registry of the end-to-end tests (`scripts/registry.sh`:
//! Debian's docker-registry on loopback, one anonymous and one behind basic
//! auth), and a way to push the smallest image whose config a lookup reads:
//! a config blob with `Entrypoint` and `Cmd`, one empty layer, a manifest.

use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::cluster::harness_var;

/// The registries `scripts/registry.sh` started.
#[derive(Clone, Debug)]
pub struct TestRegistry {
    /// `127.0.0.1:PORT`, anonymous pulls and pushes.
    pub open: String,
    /// `127.0.0.1:PORT`, basic auth.
    pub auth: String,
    /// The user of `auth`.
    pub user: String,
    /// Its password.
    pub password: String,
}

impl TestRegistry {
    /// The registries of `NEMUTATOR_TEST_REGISTRY*`, or `None` (with one
    /// printed line, or a panic where a harness is required).
    pub fn from_env(test: &str) -> Option<TestRegistry> {
        let what = "the OCI registry (scripts/registry.sh)";
        Some(TestRegistry {
            open: harness_var(test, "NEMUTATOR_TEST_REGISTRY", what)?,
            auth: harness_var(test, "NEMUTATOR_TEST_REGISTRY_AUTH", what)?,
            user: harness_var(test, "NEMUTATOR_TEST_REGISTRY_USER", what)?,
            password: harness_var(test, "NEMUTATOR_TEST_REGISTRY_PASSWORD", what)?,
        })
    }

    /// The registries to reach over plain HTTP (`secrets.registry.insecure`).
    pub fn insecure(&self) -> Vec<String> {
        vec![self.open.clone(), self.auth.clone()]
    }

    /// Pushes `image` (`HOST:PORT/REPO:TAG`, on one of the two) with this
    /// entrypoint and cmd (`None`: left out of the config); returns the
    /// manifest's digest.
    pub async fn push(
        &self,
        image: &str,
        entrypoint: Option<&[&str]>,
        cmd: Option<&[&str]>,
    ) -> Result<String, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let reference: Reference = image.parse().map_err(|e| format!("{image}: {e}"))?;
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure()),
            ..ClientConfig::default()
        });
        let auth = if reference.registry() == self.auth {
            RegistryAuth::Basic(self.user.clone(), self.password.clone())
        } else {
            RegistryAuth::Anonymous
        };
        let mut exec = serde_json::Map::new();
        if let Some(e) = entrypoint {
            exec.insert("Entrypoint".into(), serde_json::json!(e));
        }
        if let Some(c) = cmd {
            exec.insert("Cmd".into(), serde_json::json!(c));
        }
        // The empty layer: the gzip of an empty tar (two zero blocks).
        let layer = empty_layer();
        let diff_id = format!("sha256:{}", sha256_hex(&[0u8; 1024]));
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux", "config": exec,
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        });
        let config = Config::new(
            serde_json::to_vec(&config).map_err(|e| e.to_string())?,
            "application/vnd.oci.image.config.v1+json".to_owned(),
            None,
        );
        let layers = [ImageLayer::new(
            layer,
            "application/vnd.oci.image.layer.v1.tar+gzip".to_owned(),
            None,
        )];
        client
            .push(&reference, &layers, config, &auth, None)
            .await
            .map_err(|e| format!("pushing {image}: {e}"))?;
        client
            .fetch_manifest_digest(&reference, &auth)
            .await
            .map_err(|e| format!("digest of {image}: {e}"))
    }
}

/// A gzip member holding 1024 zero bytes (an empty tar), stored
/// uncompressed: header, one stored deflate block, CRC-32 and length.
fn empty_layer() -> Vec<u8> {
    let data = [0u8; 1024];
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.push(1); // final stored block
    let len = data.len() as u16;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(&data);
    out.extend_from_slice(&crc32(&data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
