//! `sandlot doctor`: which isolation layers work on this machine.

use std::process::ExitCode;

use super::jail_args::JailArgs;
use crate::jail::probe;

pub fn main(args: JailArgs) -> ExitCode {
    let jail = match args.jail() {
        Ok((jail, _)) => jail,
        Err(error) => {
            eprintln!("sandlot doctor: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    // SAFETY: `sandlot doctor` has started no thread.
    let report = unsafe { probe::probe(&jail) };
    print!("{report}");
    if report.missing().next().is_none() {
        println!("\nevery layer is active");
        ExitCode::SUCCESS
    } else {
        println!(
            "\nsandlot serve refuses to start with a layer missing unless --allow-degraded is given"
        );
        ExitCode::FAILURE
    }
}
