//! `nemutator season`: fit the season model to a series.

use std::process::ExitCode;

use crate::cli::Global;

#[derive(Debug, clap::Args)]
pub struct SeasonArgs {}

pub async fn run(_global: &Global, _args: SeasonArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
