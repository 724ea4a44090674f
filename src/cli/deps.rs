//! `sandlot deps install | list`: the Python data packages.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::python_packages;

#[derive(Args)]
pub struct DepsArgs {
    #[command(subcommand)]
    action: DepsAction,
    /// sandlot's data directory (default: /var/lib/sandlot for root, else
    /// $XDG_DATA_HOME/sandlot or ~/.local/share/sandlot).
    #[arg(long, env = "SANDLOT_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DepsAction {
    /// Install the packages (pip install --target into the data directory), showing progress.
    Install,
    /// Print the installed packages and their versions.
    List,
}

pub fn main(args: DepsArgs) -> ExitCode {
    let data_dir = args
        .data_dir
        .unwrap_or_else(python_packages::default_data_dir);
    match args.action {
        DepsAction::Install => match python_packages::install(&data_dir, &mut std::io::stdout()) {
            Ok(()) => {
                let site = python_packages::site_dir(&data_dir);
                println!("installed in {}", site.display());
                ExitCode::SUCCESS
            }
            Err(why) => {
                eprintln!("sandlot deps install: {why}");
                ExitCode::FAILURE
            }
        },
        DepsAction::List => {
            let installed = python_packages::installed(&data_dir);
            if installed.is_empty() {
                println!(
                    "no packages installed in {} (run `sandlot deps install`)",
                    data_dir.display()
                );
            }
            for (name, version) in installed {
                println!("{name}=={version}");
            }
            ExitCode::SUCCESS
        }
    }
}
