//! `sandlot doctor`: which isolation layers work on this machine.

use std::process::ExitCode;

use super::jail_args::JailArgs;
use crate::config::LimitPolicy;
use crate::jail::probe;

pub fn main(args: JailArgs) -> ExitCode {
    // SAFETY: `sandlot doctor` has started no thread.
    let report = unsafe { probe::probe(&args.settings(LimitPolicy::default().max)) };
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
