//! `sandlot deps install | list`: the Python data packages, and the operator's own
//! (`--python-requirements`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::serve::PackageArgs;
use crate::config::{Config, Settings};
use crate::python_packages::{self, operator};

#[derive(Args)]
pub struct DepsArgs {
    #[command(subcommand)]
    action: DepsAction,
    #[command(flatten)]
    packages: PackageArgs,
    /// The configuration file `serve` reads (its data_dir, python_requirements, pip_* keys).
    #[arg(long, env = "SANDLOT_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum DepsAction {
    /// Install the packages (pip install --target into the data directory), showing progress.
    /// Exits 1 when an install fails (a version conflict: pip's reason is printed).
    Install,
    /// Print the installed packages and their versions.
    List,
}

pub fn main(args: DepsArgs) -> ExitCode {
    let settings = Settings {
        data_dir: args.packages.data_dir.clone(),
        python_requirements: args.packages.python_requirements.clone().map(PathBuf::from),
        pip_index_url: args.packages.pip_index_url.clone(),
        pip_find_links: args.packages.pip_find_links.clone(),
        ..Settings::default()
    };
    let config = match Config::resolve(settings, args.config.as_deref(), |name| {
        std::env::var(name).ok()
    }) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("sandlot: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    let data_dir = config.data_dir;
    let requirements = config.python_requirements.as_deref();
    match args.action {
        DepsAction::Install => {
            let installed = python_packages::install_all(
                &data_dir,
                requirements,
                &config.pip,
                &mut std::io::stdout(),
            );
            match installed {
                Ok(site) => {
                    let data = python_packages::site_dir(&data_dir);
                    println!("installed in {}", data.display());
                    if let Some(site) = site {
                        println!("the operator's packages in {}", site.dir.display());
                        for (module, why) in &site.not_importable {
                            eprintln!("sandlot deps install: {module} does not import: {why}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(why) => {
                    eprintln!("sandlot deps install: {why}");
                    ExitCode::FAILURE
                }
            }
        }
        DepsAction::List => {
            let mut installed = python_packages::installed(&data_dir);
            let operator_site = requirements
                .and_then(|file| operator::read_requirements(file).ok())
                .and_then(|content| operator::installed(&data_dir, &content));
            if let Some(site) = &operator_site {
                installed.extend(site.distributions.iter().cloned());
            }
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
