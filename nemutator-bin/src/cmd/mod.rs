//! One module per subcommand.

#[cfg(feature = "profiler")]
pub mod agent;
pub mod controller;
pub mod copy_self;
pub mod env;
pub mod install;
#[cfg(feature = "profiler")]
pub mod profile;
mod recommend;
mod review;
pub mod season;
mod webhook;

use std::process::ExitCode;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // No runtime for a file copy.
    let cli = match cli.command {
        Command::CopySelf(args) => return copy_self::run(args),
        command => Cli { command, ..cli },
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Webhook(args) => webhook::run(&cli.global, args).await,
            Command::Controller(args) => controller::run(&cli.global, args).await,
            Command::Review(args) => review::run(&cli.global, args).await,
            Command::Recommend(args) => recommend::run(&cli.global, args).await,
            Command::Season(args) => season::run(&cli.global, args).await,
            #[cfg(feature = "profiler")]
            Command::Profile(args) => profile::run(&cli.global, args).await,
            #[cfg(feature = "profiler")]
            Command::Agent(args) => agent::run(&cli.global, args).await,
            Command::Install(args) => install::run(&cli.global, args),
            Command::Env(args) => env::run(&cli.global, args).await,
            Command::CopySelf(args) => copy_self::run(args),
        }
    })
}
