//! One layer of settings, every one optional: what the command line and `SANDLOT_*` give, what
//! the peers' variable names give, what the file gives. [`Settings::over`] stacks two layers;
//! [`super::Config::resolve`] fills what no layer set with the defaults. The keys are the
//! `serve` flags' long names with `_` for `-`, which makes this also the file's format.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// An unknown key or a value of the wrong type is refused (in the file, naming the key), rather
/// than ignored: a typo must not quietly fall back to a default.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: Option<SocketAddr>,
    /// One key or several.
    pub api_key: Option<OneOrMany>,
    pub insecure_no_auth: Option<bool>,
    pub default_timeout_ms: Option<u64>,
    pub max_timeout_ms: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub max_input_files_bytes: Option<u64>,
    pub max_output_files_bytes: Option<u64>,
    pub max_output_file_bytes: Option<u64>,
    pub workers: Option<usize>,
    pub queue: Option<usize>,
    pub max_children: Option<usize>,
    pub data_dir: Option<PathBuf>,
    /// The operator's pip requirements file; `""` for none.
    pub python_requirements: Option<PathBuf>,
    pub pip_index_url: Option<String>,
    pub pip_find_links: Option<String>,
    pub deps_retry_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub http_allow: Option<OneOrMany>,
    pub http_proxy: Option<String>,
    /// Ports brokered connections may reach: `80,443,8000-8999`.
    pub connect_ports: Option<String>,
    pub network: Option<bool>,
    pub log_format: Option<crate::logging::LogFormat>,
    pub allow_degraded: Option<bool>,
    pub child_uid: Option<u32>,
    pub child_gid: Option<u32>,
    /// Testing only (`SANDLOT_TESTING_LANDLOCK_ABI_MAX`): not printed unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub testing_landlock_abi_max: Option<i32>,
}

/// `api_key = "k"` or `api_key = ["k1", "k2"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }

    /// `None` for an empty list: a list nobody gave.
    pub fn from_vec(list: Vec<String>) -> Option<Self> {
        (!list.is_empty()).then_some(Self::Many(list))
    }
}

impl Settings {
    /// This layer over `below`: each setting from here if set, else from `below`.
    pub fn over(self, below: Settings) -> Settings {
        Settings {
            listen: self.listen.or(below.listen),
            api_key: self.api_key.or(below.api_key),
            insecure_no_auth: self.insecure_no_auth.or(below.insecure_no_auth),
            default_timeout_ms: self.default_timeout_ms.or(below.default_timeout_ms),
            max_timeout_ms: self.max_timeout_ms.or(below.max_timeout_ms),
            max_memory_mb: self.max_memory_mb.or(below.max_memory_mb),
            max_output_bytes: self.max_output_bytes.or(below.max_output_bytes),
            max_input_files_bytes: self.max_input_files_bytes.or(below.max_input_files_bytes),
            max_output_files_bytes: self.max_output_files_bytes.or(below.max_output_files_bytes),
            max_output_file_bytes: self.max_output_file_bytes.or(below.max_output_file_bytes),
            workers: self.workers.or(below.workers),
            queue: self.queue.or(below.queue),
            max_children: self.max_children.or(below.max_children),
            data_dir: self.data_dir.or(below.data_dir),
            python_requirements: self.python_requirements.or(below.python_requirements),
            pip_index_url: self.pip_index_url.or(below.pip_index_url),
            pip_find_links: self.pip_find_links.or(below.pip_find_links),
            deps_retry_ms: self.deps_retry_ms.or(below.deps_retry_ms),
            max_connections: self.max_connections.or(below.max_connections),
            header_timeout_ms: self.header_timeout_ms.or(below.header_timeout_ms),
            body_timeout_ms: self.body_timeout_ms.or(below.body_timeout_ms),
            shutdown_grace_ms: self.shutdown_grace_ms.or(below.shutdown_grace_ms),
            max_body_bytes: self.max_body_bytes.or(below.max_body_bytes),
            http_allow: self.http_allow.or(below.http_allow),
            http_proxy: self.http_proxy.or(below.http_proxy),
            connect_ports: self.connect_ports.or(below.connect_ports),
            network: self.network.or(below.network),
            log_format: self.log_format.or(below.log_format),
            allow_degraded: self.allow_degraded.or(below.allow_degraded),
            child_uid: self.child_uid.or(below.child_uid),
            child_gid: self.child_gid.or(below.child_gid),
            testing_landlock_abi_max: self
                .testing_landlock_abi_max
                .or(below.testing_landlock_abi_max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upper_layer_wins_where_it_is_set() {
        let upper = Settings {
            workers: Some(3),
            allow_degraded: Some(false),
            ..Settings::default()
        };
        let below = Settings {
            workers: Some(9),
            queue: Some(7),
            allow_degraded: Some(true),
            ..Settings::default()
        };
        let merged = upper.over(below);
        assert_eq!(merged.workers, Some(3));
        assert_eq!(merged.queue, Some(7));
        assert_eq!(merged.allow_degraded, Some(false));
        assert_eq!(merged.listen, None);
    }
}
