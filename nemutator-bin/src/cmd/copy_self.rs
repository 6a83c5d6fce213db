//! `nemutator copy-self DIR`: the init container of `exec` injection. The
//! image is distroless (no `cp`), so the binary copies itself into the
//! pod's in-memory `emptyDir` mounted at DIR (as `DIR/nemutator`,
//! executable by any user), and writes the Vault CA bundle it is given next
//! to it (`DIR/vault-ca.pem`).

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use nemutator_core::mutate::secrets::{BINARY, CA_FILE};

#[derive(Debug, clap::Args)]
pub struct CopySelfArgs {
    /// The directory to put the binary in (it must exist).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// A CA bundle (PEM) for Vault, written to DIR/vault-ca.pem.
    #[arg(
        long,
        env = "NEMUTATOR_VAULT_CA_PEM",
        value_name = "PEM",
        hide_env_values = true
    )]
    pub vault_ca_pem: Option<String>,
}

/// Writes `bytes` to `dest` through a temporary file in the same directory,
/// with `mode`, so that a reader never sees half a file.
fn write_atomically(
    dest: &Path,
    mode: u32,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let tmp = dest.with_extension("partial");
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    write(&mut file).with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, dest).with_context(|| format!("renaming to {}", dest.display()))?;
    Ok(())
}

/// `path`'s file name (the constants are absolute paths in the mount).
fn file_name(path: &str) -> &std::ffi::OsStr {
    Path::new(path).file_name().unwrap_or_default()
}

pub fn run(args: CopySelfArgs) -> anyhow::Result<ExitCode> {
    if !args.dir.is_dir() {
        anyhow::bail!("{}: not a directory", args.dir.display());
    }
    let me = std::env::current_exe().context("finding this binary")?;
    write_atomically(&args.dir.join(file_name(BINARY)), 0o555, |out| {
        let mut input = std::fs::File::open(&me)?;
        std::io::copy(&mut input, out).map(|_| ())
    })?;
    if let Some(pem) = args.vault_ca_pem.filter(|p| !p.trim().is_empty()) {
        let ca = args.dir.join(file_name(CA_FILE));
        write_atomically(&ca, 0o444, |out| out.write_all(pem.as_bytes()))?;
    }
    Ok(ExitCode::SUCCESS)
}
