//! `nemutator agent`: the per-node profiling agent.

use std::process::ExitCode;

use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct AgentArgs {}

pub async fn run(_global: &Global, _args: AgentArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
