//! `serve --config PATH`: a TOML file of [`Settings`], flat at the top level. It is the lowest
//! layer: flags, `SANDLOT_*` variables and the peers' names all win over it, and it wins over
//! the defaults.

use std::path::{Path, PathBuf};

use super::settings::Settings;

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

/// The settings the file at `path` holds.
pub fn read(path: &Path) -> Result<Settings, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|e| e.at(path))
}

fn parse(text: &str) -> Result<Settings, Unplaced> {
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
        match parse(text) {
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
        let one = parse("api_key = \"k\"").ok().unwrap();
        let many = parse("api_key = [\"k1\", \"k2\"]").ok().unwrap();
        assert_eq!(one.api_key.unwrap().into_vec(), ["k"]);
        assert_eq!(many.api_key.unwrap().into_vec(), ["k1", "k2"]);
    }
}
