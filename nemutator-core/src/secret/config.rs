//! `secrets:` of the configuration (DESIGN.md, "Configuration").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::AllowedPaths;
use crate::units::HumanDuration;

/// Where the service-account token of a pod is mounted.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Which backend resolves references.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolverKind {
    /// A YAML file of path -> key -> value (the embedded sample without a path).
    #[default]
    File,
    /// Vault or OpenBao, KV v2.
    Vault,
}

/// How resolved values reach a container.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Injection {
    /// Resolved in the pod at start by `nemutator env`; the webhook never
    /// sees a value.
    #[default]
    Exec,
    /// Resolved at admission and written into the pod spec (etcd, audit logs),
    /// only in `env_namespaces`.
    Env,
}

/// How nemutator logs in to Vault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultAuth {
    /// The service-account token, at `auth/<mount>/login` with `role`.
    #[default]
    Kubernetes,
    /// A token from the environment variable `token_env`.
    Token,
}

/// `secrets.file`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSecretsConfig {
    /// The file; without it, the sample embedded in the binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
}

/// `secrets.vault`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// `https://vault.example:8200`.
    pub address: String,
    /// `kubernetes` (default) or `token`.
    #[serde(default)]
    pub auth: VaultAuth,
    /// The Kubernetes auth method's role (the webhook's, in `env` injection;
    /// the pods' too unless `pod_role` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The role pods log in with in `exec` injection, with their own service
    /// account (default: `role`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_role: Option<String>,
    /// The Kubernetes auth method's mount.
    #[serde(default = "default_auth_mount")]
    pub mount: String,
    /// With `auth: token`, the variable holding the token.
    #[serde(default = "default_token_env")]
    pub token_env: String,
    /// The service-account token to log in with.
    #[serde(default = "default_jwt_file")]
    pub jwt_file: PathBuf,
    /// CA bundle (PEM) for an https address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Limit of each request.
    #[serde(default = "default_vault_timeout")]
    pub timeout: HumanDuration,
}

fn default_auth_mount() -> String {
    "kubernetes".to_owned()
}
fn default_token_env() -> String {
    "VAULT_TOKEN".to_owned()
}
fn default_jwt_file() -> PathBuf {
    PathBuf::from(SERVICE_ACCOUNT_TOKEN)
}
fn default_vault_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_cache_ttl() -> HumanDuration {
    HumanDuration::from_secs(60)
}

impl VaultConfig {
    /// Vault at `address` with the defaults (Kubernetes auth at
    /// `auth/kubernetes`, the pod's token).
    pub fn new(address: impl Into<String>) -> Self {
        VaultConfig {
            address: address.into(),
            auth: VaultAuth::default(),
            role: None,
            pod_role: None,
            mount: default_auth_mount(),
            token_env: default_token_env(),
            jwt_file: default_jwt_file(),
            ca_file: None,
            timeout: default_vault_timeout(),
        }
    }

    /// The role pods log in with in `exec` injection.
    pub fn exec_role(&self) -> Option<&str> {
        self.pod_role.as_deref().or(self.role.as_deref())
    }
}

/// `secrets.registry`: reading a container's entrypoint from its image's
/// config in the registry, for `exec` injection into a container that sets
/// no `command`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Look entrypoints up at all (else such a pod is denied, naming the
    /// container and the fix: set `command`).
    #[serde(default = "yes")]
    pub lookup: bool,
    /// Read the pod's `imagePullSecrets` to authenticate to its registry
    /// (needs `get` on Secrets in every namespace, which `nemutator install`
    /// then grants); off, lookups are anonymous.
    #[serde(default)]
    pub pull_secrets: bool,
    /// Registries (`HOST[:PORT]`) reached over plain HTTP instead of HTTPS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure: Vec<String>,
    /// Limit of one lookup, every request included.
    #[serde(default = "default_registry_timeout")]
    pub timeout: HumanDuration,
    /// How long a tag's digest is kept (a digest's entrypoint is kept for
    /// good: it cannot change).
    #[serde(default = "default_tag_ttl")]
    pub tag_ttl: HumanDuration,
}

fn yes() -> bool {
    true
}
fn default_registry_timeout() -> HumanDuration {
    HumanDuration::from_secs(2)
}
fn default_tag_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            lookup: true,
            pull_secrets: false,
            insecure: Vec::new(),
            timeout: default_registry_timeout(),
            tag_ttl: default_tag_ttl(),
        }
    }
}

/// `secrets:`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Whether the webhook injects secrets at all. A configuration with a
    /// `secrets:` section turns it on (unless it says `enabled: false`);
    /// without one it is off, and pods with references are left alone (for
    /// another injector, say). See [`SecretsConfig::off`].
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `file` or `vault`.
    #[serde(default)]
    pub resolver: ResolverKind,
    /// The file resolver.
    #[serde(default)]
    pub file: FileSecretsConfig,
    /// The Vault resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<VaultConfig>,
    /// `exec` (default) or `env`.
    #[serde(default)]
    pub injection: Injection,
    /// Namespaces allowed `env` injection.
    #[serde(default)]
    pub env_namespaces: Vec<String>,
    /// Which paths each namespace may reference.
    #[serde(default)]
    pub allowed_paths: AllowedPaths,
    /// How long the webhook keeps a resolved value (`env` injection only;
    /// keyed by path and version, never shared through Redis).
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: HumanDuration,
    /// The image of the init container that copies `nemutator` into a pod
    /// (`exec` injection): default the webhook's own (`NEMUTATOR_IMAGE`,
    /// which `nemutator install` sets), else this release's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_image: Option<String>,
    /// Entrypoints of images from their registry.
    #[serde(default)]
    pub registry: RegistryConfig,
}

impl SecretsConfig {
    /// The configuration without a `secrets:` section: the defaults,
    /// switched off.
    pub fn off() -> Self {
        SecretsConfig {
            enabled: false,
            ..SecretsConfig::default()
        }
    }

    /// Whether a pod may be given `env` injection (the default mode, or
    /// chosen by annotation in `env_namespaces`).
    pub fn env_possible(&self) -> bool {
        self.injection == Injection::Env || !self.env_namespaces.is_empty()
    }

    /// Whether the webhook itself logs in to Vault with its service
    /// account: `env` injection from Vault with Kubernetes auth.
    pub fn webhook_logs_in(&self) -> bool {
        self.enabled
            && self.resolver == ResolverKind::Vault
            && self.env_possible()
            && self
                .vault
                .as_ref()
                .is_some_and(|v| v.auth == VaultAuth::Kubernetes)
    }

    /// Whether pods log in to Vault with Kubernetes auth (so Vault needs a
    /// token reviewer, for which `nemutator install` binds its service
    /// account to `system:auth-delegator`).
    pub fn kubernetes_auth(&self) -> bool {
        self.enabled
            && self.resolver == ResolverKind::Vault
            && self
                .vault
                .as_ref()
                .is_some_and(|v| v.auth == VaultAuth::Kubernetes)
    }
}

impl Default for SecretsConfig {
    fn default() -> Self {
        SecretsConfig {
            enabled: true,
            resolver: ResolverKind::default(),
            file: FileSecretsConfig::default(),
            vault: None,
            injection: Injection::default(),
            env_namespaces: Vec::new(),
            allowed_paths: AllowedPaths::default(),
            cache_ttl: default_cache_ttl(),
            init_image: None,
            registry: RegistryConfig::default(),
        }
    }
}
