//! The environment names dify-sandbox and fastgpt-sandbox deployments already set, read as one
//! layer of settings below sandlot's own (flags and `SANDLOT_*`) and above the file: a platform
//! can switch to sandlot without touching its configuration. Nothing is written back to the
//! environment.
//!
//! | peer variable | sandlot setting |
//! |---|---|
//! | `API_KEY` (Dify), `SANDBOX_TOKEN` (FastGPT) | `api_key` |
//! | `SANDBOX_PORT` (both) | `listen` = `0.0.0.0:PORT` (the peers listen on every interface) |
//! | `WORKER_TIMEOUT` (Dify, seconds) | `default_timeout_ms` |
//! | `SANDBOX_MAX_TIMEOUT` (FastGPT, ms) | `max_timeout_ms` |
//! | `SANDBOX_MAX_MEMORY_MB` (FastGPT) | `max_memory_mb` |
//! | `MAX_WORKERS` (Dify) | `workers` |
//! | `MAX_REQUESTS` (Dify) | `queue` |
//! | `ENABLE_NETWORK` (Dify) | `network` |
//! | `PIP_MIRROR_URL` (Dify) | `pip_index_url` |

use std::net::SocketAddr;
use std::str::FromStr;

use super::settings::{OneOrMany, Settings};
use super::ConfigError;

/// The layer the peers' variables make, read through `lookup` (the process environment, or a
/// test's table). An empty variable counts as unset; one that does not parse is refused,
/// naming it.
pub fn settings(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    fn parse<T: FromStr>(name: &str, value: String) -> Result<T, ConfigError> {
        value.trim().parse().map_err(|_| ConfigError::PeerVariable {
            name: name.to_owned(),
            value,
        })
    }
    let number = |name: &str| get(name).map(|v| parse::<u64>(name, v)).transpose();
    let keys = get("API_KEY").or_else(|| get("SANDBOX_TOKEN"));
    let listen = get("SANDBOX_PORT")
        .map(|v| parse::<u16>("SANDBOX_PORT", v))
        .transpose()?
        .map(|port| SocketAddr::from(([0, 0, 0, 0], port)));
    let worker_timeout = get("WORKER_TIMEOUT")
        .map(|v| parse::<f64>("WORKER_TIMEOUT", v))
        .transpose()?
        .map(|seconds| (seconds * 1000.0) as u64);
    let network = get("ENABLE_NETWORK").map(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "true" | "1" | "yes" | "on"
        )
    });
    Ok(Settings {
        listen,
        api_key: keys.map(|k| OneOrMany::Many(k.split(',').map(str::to_owned).collect())),
        default_timeout_ms: worker_timeout,
        max_timeout_ms: number("SANDBOX_MAX_TIMEOUT")?,
        max_memory_mb: number("SANDBOX_MAX_MEMORY_MB")?,
        workers: number("MAX_WORKERS")?.map(|n| n as usize),
        queue: number("MAX_REQUESTS")?.map(|n| n as usize),
        network,
        pip_index_url: get("PIP_MIRROR_URL").map(|url| url.trim().to_owned()),
        ..Settings::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(table: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let table: Vec<(String, String)> = table
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        settings(|name| {
            table
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn each_peer_name_becomes_its_setting() {
        let s = from(&[
            ("API_KEY", "dify-sandbox"),
            ("SANDBOX_PORT", "8194"),
            ("WORKER_TIMEOUT", "15"),
            ("SANDBOX_MAX_MEMORY_MB", "512"),
            ("MAX_WORKERS", "6"),
            ("MAX_REQUESTS", "50"),
            ("ENABLE_NETWORK", "false"),
            ("PIP_MIRROR_URL", "https://mirrors.example/pypi/simple"),
        ])
        .unwrap();
        assert_eq!(s.api_key.unwrap().into_vec(), ["dify-sandbox"]);
        assert_eq!(s.listen, Some("0.0.0.0:8194".parse().unwrap()));
        assert_eq!(s.default_timeout_ms, Some(15_000));
        assert_eq!(s.max_memory_mb, Some(512));
        assert_eq!((s.workers, s.queue), (Some(6), Some(50)));
        assert_eq!(s.network, Some(false));
        assert_eq!(
            s.pip_index_url.as_deref(),
            Some("https://mirrors.example/pypi/simple")
        );
        let s = from(&[("SANDBOX_TOKEN", "t"), ("API_KEY", "")]).unwrap();
        assert_eq!(s.api_key.unwrap().into_vec(), ["t"]);
    }

    #[test]
    fn a_value_that_does_not_parse_is_refused_naming_the_variable() {
        let err = from(&[("SANDBOX_MAX_TIMEOUT", "soon")]).unwrap_err();
        assert!(err.to_string().contains("SANDBOX_MAX_TIMEOUT"), "{err}");
    }
}
