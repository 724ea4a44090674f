//! The `sandlot` binary: parses the command line and dispatches to [`sandlot::cli`].

use std::process::ExitCode;

use clap::Parser;
use sandlot::cli::{self, Cli, Command};

/// A failed allocation in a child becomes a `memory_limit` report rather than an abort.
#[global_allocator]
static ALLOCATOR: sandlot::zygote::out_of_memory::ReportingAllocator =
    sandlot::zygote::out_of_memory::ReportingAllocator;

fn main() -> ExitCode {
    match Cli::parse().command {
        // Before anything else: a zygote must stay single-threaded.
        Command::Zygote { kind } => cli::exit_code(sandlot::zygote::main(kind)),
        Command::Serve(args) => cli::serve::main(args),
        Command::Run(args) => cli::run::main(args),
        Command::Doctor(args) => cli::doctor::main(args),
        Command::Deps(args) => cli::deps::main(args),
        Command::Config(args) => cli::config::main(args),
        Command::Version => {
            println!("sandlot {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
    }
}
