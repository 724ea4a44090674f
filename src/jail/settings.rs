//! What the server tells a zygote about the jail: which layers to apply, which uid to drop to,
//! and the largest limits any job may carry (a child is jailed at those before it reads its
//! job, then lowered to the job's own).

use serde::{Deserialize, Serialize};

use crate::protocol::JAIL_SETTINGS_ENV;
use crate::run::Limits;

/// One isolation layer, as `sandlot doctor` and `/readyz` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// New network, IPC and UTS namespaces for each zygote and its children.
    Namespaces,
    /// Resource limits (memory, CPU, processes, files, core dumps).
    Rlimits,
    /// Children run as an unprivileged uid/gid with no supplementary groups.
    UidDrop,
    /// Landlock: read-only access to the interpreter's own files, no TCP bind or connect.
    Landlock,
    /// The seccomp system-call policy.
    Seccomp,
}

impl Layer {
    pub const ALL: [Layer; 5] = [
        Layer::Namespaces,
        Layer::Rlimits,
        Layer::UidDrop,
        Layer::Landlock,
        Layer::Seccomp,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Namespaces => "namespaces",
            Self::Rlimits => "rlimits",
            Self::UidDrop => "uid_drop",
            Self::Landlock => "landlock",
            Self::Seccomp => "seccomp",
        }
    }
}

/// The unprivileged identity children take when sandlot runs as root ("nobody").
pub const DEFAULT_CHILD_ID: u32 = 65534;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSettings {
    /// Layers this machine cannot provide and the operator accepted running without
    /// (`--allow-degraded`). Every other layer must apply, or the zygote fails.
    pub skip: Vec<Layer>,
    pub child_uid: u32,
    pub child_gid: u32,
    /// The server's maxima: what a child is held to before it knows its job.
    pub max: Limits,
    /// The newest Landlock ABI to use, when lower than the kernel's: set only by the server
    /// (`SANDLOT_TESTING_LANDLOCK_ABI_MAX`), so the test suites can show what holds on the
    /// oldest kernels sandlot accepts (ABI 4: no signal scope). `None`: all the kernel has.
    #[serde(default)]
    pub landlock_abi_max: Option<i32>,
}

impl JailSettings {
    pub fn new(max: Limits) -> Self {
        Self {
            skip: Vec::new(),
            child_uid: DEFAULT_CHILD_ID,
            child_gid: DEFAULT_CHILD_ID,
            max,
            landlock_abi_max: None,
        }
    }

    pub fn applies(&self, layer: Layer) -> bool {
        !self.skip.contains(&layer)
    }

    /// Reads the settings a zygote was started with.
    pub fn from_env() -> Result<Self, SettingsError> {
        let text = std::env::var(JAIL_SETTINGS_ENV).map_err(|_| SettingsError::Missing)?;
        serde_json::from_str(&text).map_err(SettingsError::Unreadable)
    }

    pub fn to_env(&self) -> String {
        serde_json::to_string(self).expect("jail settings serialize")
    }
}

/// A zygote started without usable settings (not by a server).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{JAIL_SETTINGS_ENV} is not set (zygotes are started by the server)")]
    Missing,
    #[error("{JAIL_SETTINGS_ENV} is unreadable: {0}")]
    Unreadable(#[source] serde_json::Error),
}
