//! # nemutator-secrets
//!
//! [`SecretResolver`] backends of nemutator: Vault or OpenBao KV v2 with
//! Kubernetes or token auth ([`VaultResolver`]), a YAML file
//! ([`FileResolver`], the embedded default) and a time-limited cache in front
//! of either ([`CachedResolver`]); and the entrypoints of images from their
//! registry for `exec` injection ([`RegistryLookup`]).
//!
//! ```
//! use nemutator_core::secret::{ExposeSecret, SecretRef, SecretResolver};
//! use nemutator_secrets::FileResolver;
//!
//! # tokio::runtime::Builder::new_current_thread().build()?.block_on(async {
//! let resolver = FileResolver::sample();
//! let reference = SecretRef::parse("vault:kv/data/app/db#username")?;
//! assert_eq!(resolver.resolve(&reference).await?.expose_secret(), "app");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod cache;
pub mod env;
mod file;
mod registry;
mod vault;

use std::sync::Arc;

pub use cache::CachedResolver;
pub use file::{FileResolver, SAMPLE_SECRETS};
use nemutator_core::secret::{ResolverKind, SecretError, SecretResolver, SecretsConfig};
pub use registry::RegistryLookup;
pub use vault::VaultResolver;

// The README's example runs as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The resolver `config` names (`secrets.resolver`), not yet logged in:
/// Vault logs in on first use.
pub fn resolver_from_config(
    config: &SecretsConfig,
) -> Result<Arc<dyn SecretResolver>, SecretError> {
    match config.resolver {
        ResolverKind::File => Ok(Arc::new(match &config.file.path {
            Some(path) => FileResolver::from_file(path)?,
            None => FileResolver::sample(),
        })),
        ResolverKind::Vault => {
            let vault = config.vault.as_ref().ok_or_else(|| {
                SecretError::Config("secrets.resolver is vault but secrets.vault is not set".into())
            })?;
            Ok(Arc::new(VaultResolver::new(vault.clone())?))
        }
    }
}
