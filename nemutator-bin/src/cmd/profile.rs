//! `nemutator profile`: a flamegraph of a process or a pod's container.

use std::process::ExitCode;

use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {}

pub async fn run(_global: &Global, _args: ProfileArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
