//! The jail's flags, shared by `serve`, `run` and `doctor`, and the start-up probe that turns
//! the jail's settings into those that apply on this machine (or a refusal to start).

use clap::Args;

use crate::config::{Config, ConfigError, Settings};
use crate::jail::probe::{self, LayerStatus};
use crate::jail::settings::JailSettings;

#[derive(Args)]
pub struct JailArgs {
    /// Start even when an isolation layer is unavailable on this machine. Every missing layer
    /// is logged and listed in /readyz; without this flag the server refuses to start.
    /// `--allow-degraded=false` (or the variable set to false) overrides a config file.
    #[arg(
        long,
        env = "SANDLOT_ALLOW_DEGRADED",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub allow_degraded: Option<bool>,
    /// The uid children run as when sandlot runs as root [default: 65534].
    #[arg(long, env = "SANDLOT_CHILD_UID")]
    pub child_uid: Option<u32>,
    /// The gid children run as when sandlot runs as root [default: 65534].
    #[arg(long, env = "SANDLOT_CHILD_GID")]
    pub child_gid: Option<u32>,
    /// Testing only: the newest Landlock ABI the jail uses (4 or more), to run the test suites
    /// as on an older kernel. Read by the server alone; a child cannot set it.
    #[arg(long, env = "SANDLOT_TESTING_LANDLOCK_ABI_MAX", hide = true)]
    pub testing_landlock_abi_max: Option<i32>,
}

impl JailArgs {
    /// These flags as a layer of settings (the jail's part of `serve`'s).
    pub fn settings(&self) -> Settings {
        Settings {
            allow_degraded: self.allow_degraded,
            child_uid: self.child_uid,
            child_gid: self.child_gid,
            testing_landlock_abi_max: self.testing_landlock_abi_max,
            ..Settings::default()
        }
    }

    /// The jail these flags ask for under the default limits (`run`, `doctor`): the same
    /// settings `serve` resolves, its other flags left out.
    pub fn jail(&self) -> Result<(JailSettings, bool), ConfigError> {
        let config = Config::resolve(self.settings(), None, |_| None)?;
        Ok((config.jail, config.allow_degraded))
    }
}

/// Probes the layers of `settings` (while the process is still single-threaded): the settings
/// that skip the missing ones if the operator allows it, and those missing layers; or the
/// reason to refuse.
///
/// # Safety
/// The process must be single-threaded: the probe forks.
pub unsafe fn probed(
    mut settings: JailSettings,
    allow_degraded: bool,
) -> Result<(JailSettings, Vec<LayerStatus>), String> {
    // SAFETY: our caller promises a single thread.
    let report = unsafe { probe::probe(&settings) };
    let missing: Vec<LayerStatus> = report.missing().cloned().collect();
    if missing.is_empty() {
        return Ok((settings, missing));
    }
    if !allow_degraded {
        return Err(format!(
            "refusing to start: isolation layers unavailable on this machine:\n{report}\
             Fix them (see `sandlot doctor`), or pass --allow-degraded to run without them."
        ));
    }
    for layer in &missing {
        tracing::warn!(
            layer = layer.layer.name(),
            why = %layer.detail,
            "running without an isolation layer (--allow-degraded)"
        );
    }
    settings.skip = missing.iter().map(|l| l.layer).collect();
    Ok((settings, missing))
}
