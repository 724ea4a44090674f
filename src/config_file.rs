//! `serve --config PATH`: a TOML file whose keys are the `serve` flags' long names with `_` for
//! `-`, flat at the top level. It sits below flags, `SANDLOT_*` variables and the peers' names
//! and above the defaults, so it fills in only what none of those set.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::serve::ServeArgs;

/// Every key the file may hold. An unknown key or a value of the wrong type is refused at
/// start, naming the key, rather than ignored: a typo must not quietly fall back to a default.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub listen: Option<SocketAddr>,
    /// One key or several.
    pub api_key: Option<OneOrMany>,
    pub insecure_no_auth: Option<bool>,
    pub default_timeout_ms: Option<u64>,
    pub max_timeout_ms: Option<u64>,
    pub max_memory_mb: Option<u64>,
    pub max_output_bytes: Option<u64>,
    pub workers: Option<usize>,
    pub queue: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub deps_retry_ms: Option<u64>,
    pub max_connections: Option<usize>,
    pub header_timeout_ms: Option<u64>,
    pub body_timeout_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub max_body_bytes: Option<usize>,
    pub http_allow: Option<OneOrMany>,
    pub http_proxy: Option<String>,
    pub network: Option<bool>,
    pub log_format: Option<crate::logging::LogFormat>,
    pub allow_degraded: Option<bool>,
    pub child_uid: Option<u32>,
    pub child_gid: Option<u32>,
}

/// `api_key = "k"` or `api_key = ["k1", "k2"]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("reading the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("the configuration file {path}: key `{key}`: {message}")]
    Key {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigFile {
    pub fn read(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.at(path))
    }

    fn parse(text: &str) -> Result<Self, Unplaced> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| Unplaced::Syntax(e.message().to_owned()))?;
        serde_path_to_error::deserialize(table).map_err(|e| {
            let key = e.path().to_string();
            let message = e.into_inner().to_string();
            // serde names an unknown field in its message, not in the path.
            let key = match message.split('`').nth(1) {
                Some(unknown) if message.starts_with("unknown field") => unknown.to_owned(),
                _ => key,
            };
            Unplaced::Key { key, message }
        })
    }

    /// Fills in what the command line and the environment left unset.
    pub fn fill_in(self, args: &mut ServeArgs) {
        fn or<T>(slot: &mut Option<T>, file: Option<T>) {
            if slot.is_none() {
                *slot = file;
            }
        }
        or(&mut args.listen, self.listen);
        if args.api_keys.is_empty() {
            args.api_keys = self.api_key.map(OneOrMany::into_vec).unwrap_or_default();
        }
        or(&mut args.insecure_no_auth, self.insecure_no_auth);
        or(&mut args.default_timeout_ms, self.default_timeout_ms);
        or(&mut args.max_timeout_ms, self.max_timeout_ms);
        or(&mut args.max_memory_mb, self.max_memory_mb);
        or(&mut args.max_output_bytes, self.max_output_bytes);
        or(&mut args.workers, self.workers);
        or(&mut args.queue, self.queue);
        or(&mut args.data_dir, self.data_dir);
        or(&mut args.deps_retry_ms, self.deps_retry_ms);
        or(&mut args.max_connections, self.max_connections);
        or(&mut args.header_timeout_ms, self.header_timeout_ms);
        or(&mut args.body_timeout_ms, self.body_timeout_ms);
        or(&mut args.shutdown_grace_ms, self.shutdown_grace_ms);
        or(&mut args.max_body_bytes, self.max_body_bytes);
        if args.http_allow.is_empty() {
            args.http_allow = self.http_allow.map(OneOrMany::into_vec).unwrap_or_default();
        }
        or(&mut args.http_proxy, self.http_proxy);
        or(&mut args.network, self.network);
        or(&mut args.log_format, self.log_format);
        or(&mut args.jail.allow_degraded, self.allow_degraded);
        or(&mut args.jail.child_uid, self.child_uid);
        or(&mut args.jail.child_gid, self.child_gid);
    }
}

/// A refusal before the file's path is attached.
enum Unplaced {
    Syntax(String),
    Key { key: String, message: String },
}

impl Unplaced {
    fn at(self, path: &Path) -> ConfigFileError {
        let path = path.to_owned();
        match self {
            Self::Syntax(message) => ConfigFileError::Syntax { path, message },
            Self::Key { key, message } => ConfigFileError::Key { path, key, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_key(text: &str) -> String {
        match ConfigFile::parse(text) {
            Err(Unplaced::Key { key, .. }) => key,
            Err(Unplaced::Syntax(message)) => panic!("syntax error: {message}"),
            Ok(_) => panic!("accepted: {text}"),
        }
    }

    #[test]
    fn an_unknown_key_is_named() {
        assert_eq!(
            refused_key("listen = \"127.0.0.1:1\"\nmax_timout_ms = 5"),
            "max_timout_ms"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named() {
        assert_eq!(refused_key("max_timeout_ms = \"soon\""), "max_timeout_ms");
        assert_eq!(refused_key("listen = 8194"), "listen");
        assert_eq!(refused_key("network = \"yes\""), "network");
    }

    #[test]
    fn one_key_or_several() {
        let one = ConfigFile::parse("api_key = \"k\"").ok().unwrap();
        let many = ConfigFile::parse("api_key = [\"k1\", \"k2\"]")
            .ok()
            .unwrap();
        assert_eq!(one.api_key.unwrap().into_vec(), ["k"]);
        assert_eq!(many.api_key.unwrap().into_vec(), ["k1", "k2"]);
    }
}
