//! `sandlot config [serve flags]`: the configuration `serve` would run with, after flags,
//! `SANDLOT_*` variables, the peers' names, the file and the defaults, as a configuration file
//! (keys masked). It does not probe the jail.

use std::process::ExitCode;

use super::serve::ServeArgs;

pub fn main(args: ServeArgs) -> ExitCode {
    match args.config() {
        Ok(config) => match toml::to_string(&config.as_settings()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("sandlot config: {error}");
                ExitCode::FAILURE
            }
        },
        Err(error) => {
            eprintln!("sandlot: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
