//! `nemutator`: argument parsing and wiring; the work is done by the library crates.

mod cli;
mod cmd;
mod wiring;

use clap::Parser;

// The admission path allocates many small objects per review (a typed Pod);
// mimalloc serves them markedly faster than glibc's malloc (docs/PERFORMANCE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    wiring::init_logging(&cli.global, cli.command.is_server());
    match cmd::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nemutator: {}", wiring::one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
