//! `nemutator env -- CMD [ARGS]`: resolves every environment variable whose
//! value is a secret reference, then `exec`s CMD with them (nothing written
//! to disk). The in-pod half of `exec` injection.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use nemutator_core::config::Config;
use nemutator_core::secret::{SecretResolver, SecretsConfig, VaultAuth, VaultConfig};
use nemutator_secrets::{env::resolve_env, resolver_from_config, VaultResolver};

use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct EnvArgs {
    /// Vault address (else secrets.vault.address of --config, else VAULT_ADDR).
    #[arg(long, env = "NEMUTATOR_VAULT_ADDR", value_name = "URL")]
    pub vault_addr: Option<String>,
    /// Role of Vault's Kubernetes auth (when no VAULT_TOKEN is set).
    #[arg(long, env = "NEMUTATOR_VAULT_ROLE")]
    pub vault_role: Option<String>,
    /// Mount of Vault's Kubernetes auth (default: kubernetes).
    #[arg(long, env = "NEMUTATOR_VAULT_AUTH_MOUNT")]
    pub vault_auth_mount: Option<String>,
    /// CA bundle (PEM) for an https Vault address.
    #[arg(long, env = "NEMUTATOR_VAULT_CA", value_name = "FILE")]
    pub vault_ca: Option<PathBuf>,
    /// The service-account token for Kubernetes auth (default: the pod's).
    #[arg(long, env = "NEMUTATOR_VAULT_JWT_FILE", value_name = "FILE")]
    pub vault_jwt_file: Option<PathBuf>,
    /// The command to run and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// The resolver: Vault when an address is given (flag, environment or
/// `secrets.vault`), with the token in VAULT_TOKEN or else the pod's
/// service-account token; otherwise the configured resolver.
fn resolver(config: SecretsConfig, args: &EnvArgs) -> anyhow::Result<Box<dyn SecretResolver>> {
    let address = args
        .vault_addr
        .clone()
        .or_else(|| config.vault.as_ref().map(|v| v.address.clone()))
        .or_else(|| std::env::var("VAULT_ADDR").ok());
    let Some(address) = address else {
        return Ok(Box::new(resolver_from_config(&config)?));
    };
    let mut vault = config
        .vault
        .clone()
        .unwrap_or_else(|| VaultConfig::new(&address));
    vault.address = address;
    if std::env::var_os(&vault.token_env).is_some() {
        vault.auth = VaultAuth::Token;
    }
    if let Some(role) = &args.vault_role {
        vault.role = Some(role.clone());
    }
    if let Some(mount) = &args.vault_auth_mount {
        vault.mount = mount.clone();
    }
    if let Some(ca) = &args.vault_ca {
        vault.ca_file = Some(ca.clone());
    }
    if let Some(jwt) = &args.vault_jwt_file {
        vault.jwt_file = jwt.clone();
    }
    Ok(Box::new(VaultResolver::new(vault)?))
}

pub async fn run(global: &Global, args: EnvArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(global.config.as_deref())?;
    let resolver = resolver(config.secrets, &args)?;
    let env = resolve_env(std::env::vars_os(), resolver.as_ref()).await?;
    tracing::debug!(secrets = env.secrets(), "environment resolved");
    let (program, rest) = args.command.split_first().context("no command to run")?;
    let mut command = std::process::Command::new(program);
    command.args(rest).env_clear();
    for (name, value) in env.iter() {
        command.env(name, value);
    }
    // Returns only when the exec failed.
    let err = command.exec();
    eprintln!("nemutator: exec {}: {err}", program.to_string_lossy());
    Ok(ExitCode::from(127))
}
