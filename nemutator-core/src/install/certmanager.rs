//! The two cert-manager objects `--cert-manager` installs (`cert-manager.io/v1`),
//! typed with only the fields nemutator sets.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// `cert-manager.io/v1` `Issuer`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "Issuer")]
pub struct Issuer {
    /// Always `cert-manager.io/v1`.
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// What kind of issuer.
    pub spec: IssuerSpec,
}

/// `Issuer.spec`: nemutator uses only the self-signed kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuerSpec {
    /// `selfSigned: {}`.
    pub self_signed: serde_json::Map<String, serde_json::Value>,
}

impl IssuerSpec {
    /// A self-signed issuer.
    pub fn self_signed() -> Self {
        IssuerSpec {
            self_signed: serde_json::Map::new(),
        }
    }
}

/// `cert-manager.io/v1` `Certificate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "Certificate")]
pub struct Certificate {
    /// Always `cert-manager.io/v1`.
    #[serde(rename = "apiVersion", default = "api_version")]
    pub api_version: String,
    /// Name and namespace.
    pub metadata: ObjectMeta,
    /// What to issue.
    pub spec: CertificateSpec,
}

/// `Certificate.spec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateSpec {
    /// The Secret cert-manager writes `tls.crt`, `tls.key` and `ca.crt` to.
    pub secret_name: String,
    /// DNS names of the certificate.
    pub dns_names: Vec<String>,
    /// IP addresses of the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_addresses: Option<Vec<String>>,
    /// The issuer.
    pub issuer_ref: IssuerRef,
}

/// `Certificate.spec.issuerRef`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IssuerRef {
    /// The issuer's name.
    pub name: String,
    /// `Issuer` or `ClusterIssuer`.
    pub kind: String,
}

/// The API version of both kinds.
pub fn api_version() -> String {
    "cert-manager.io/v1".to_owned()
}
