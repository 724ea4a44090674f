//! Brokered connections: how Python's own HTTP clients (`urllib.request`, `http.client`,
//! `requests`, `httpx`) reach the network. A child cannot make a socket; when one of those
//! libraries asks for a TCP connection, the child asks the server instead. The server checks the
//! destination as it checks a brokered request ([`destination::check_host`]: resolved, every
//! address public or allowed, a port no browser refuses), connects to one of the addresses it
//! checked — or through the configured proxy with `CONNECT` — and hands the connected socket
//! to the child over its job channel (SCM_RIGHTS). TLS is the child's own, end to end with the
//! destination, so certificates are verified by the client library as usual.
//!
//! What differs from a socket of one's own: each connection counts as one of the run's
//! requests, a connection lives as long as the run at most, and what flows over it is bounded
//! by the run's time and memory rather than by [`super::MAX_RESPONSE_BYTES`]. A redirect to
//! another host is a new connection, checked again.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;

use super::destination::{self, Allowed};
use super::Failure;

/// What a child asks for: a host (a name or an address) and a port.
#[derive(Debug, Deserialize)]
pub struct ConnectRequest {
    pub host: String,
    pub port: u16,
    /// Seconds for the connection to be made; the run's deadline caps it.
    #[serde(default)]
    pub timeout: Option<f64>,
}

/// The longest a host name may be (RFC 1035), or an IPv6 address in brackets.
const MAX_HOST_LEN: usize = 253;
/// The largest proxy answer to a `CONNECT` read before giving up on it.
const MAX_PROXY_ANSWER: usize = 8 * 1024;

/// Ports the Fetch standard blocks ("bad ports"): services that are not HTTP — mail, shells,
/// file transfer, name service, chat — where a connection the sandbox opens could do harm.
const REFUSED_PORTS: &[u16] = &[
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
    102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427,
    465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990,
    993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
    6668, 6669, 6679, 6697, 10080,
];

/// The ports a brokered connection may reach (`--connect-ports`): by default the web's own, 80
/// and 443. A connection is raw TCP, not HTTP the server speaks, so a port opened here opens
/// whatever service listens on it — on every destination `--http-allow` opens, too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports(Vec<(u16, u16)>);

impl Default for Ports {
    fn default() -> Self {
        Self(vec![(80, 80), (443, 443)])
    }
}

impl Ports {
    /// A comma-separated list of ports and ranges: `80,443,8000-8999`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (low, high) = item.split_once('-').unwrap_or((item, item));
            let port = |p: &str| {
                p.trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("--connect-ports: {item:?} is not a port or a range"))
            };
            let (low, high) = (port(low)?, port(high)?);
            if low > high {
                return Err(format!("--connect-ports: {item:?} is an empty range"));
            }
            ranges.push((low, high));
        }
        Ok(Self(ranges))
    }

    pub fn contains(&self, port: u16) -> bool {
        self.0
            .iter()
            .any(|(low, high)| (*low..=*high).contains(&port))
    }
}

impl std::fmt::Display for Ports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let items: Vec<String> = self
            .0
            .iter()
            .map(|(low, high)| {
                if low == high {
                    low.to_string()
                } else {
                    format!("{low}-{high}")
                }
            })
            .collect();
        f.write_str(&items.join(","))
    }
}

impl ConnectRequest {
    pub fn parse(request: &[u8], ports: &Ports) -> Result<Self, Failure> {
        let request: Self = serde_json::from_slice(request)
            .map_err(|e| Failure::Failed(format!("connect: unreadable arguments: {e}")))?;
        let host = request.host.as_str();
        let well_formed = !host.is_empty()
            && host.len() <= MAX_HOST_LEN
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
        if !well_formed {
            return Err(Failure::Denied(format!(
                "not a host name or address: {:?}",
                request.host.chars().take(80).collect::<String>()
            )));
        }
        if REFUSED_PORTS.contains(&request.port) {
            return Err(Failure::Denied(format!(
                "connections to port {} are not allowed: it is not a web port (the Fetch \
                 standard's blocked ports are refused)",
                request.port
            )));
        }
        if !ports.contains(request.port) {
            return Err(Failure::Denied(format!(
                "connections to port {} are not allowed: this server lets a run connect to \
                 ports {ports} only (its operator can open more with --connect-ports; \
                 SystemHelper.httpRequest reaches any port over HTTP)",
                request.port
            )));
        }
        Ok(request)
    }
}

/// Checks the destination and connects to it (through `proxy` if one is configured); the
/// connected socket, for the child, and the address it reached.
pub fn connect(
    request: &ConnectRequest,
    allow: &[Allowed],
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<(OwnedFd, String), Failure> {
    let addresses =
        destination::check_host(&request.host, request.port, allow).map_err(Failure::Denied)?;
    let stream = match proxy {
        None => connect_any(&addresses, timeout).map_err(|e| {
            Failure::Failed(format!(
                "connecting to {}:{} failed: {e}",
                request.host, request.port
            ))
        })?,
        Some(proxy) => through_proxy(proxy, request, timeout)?,
    };
    // The destination, not a proxy's address: the proxy is the operator's business.
    let reached = match proxy {
        None => stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        Some(_) => format!("{}:{}", request.host, request.port),
    };
    // The child's socket is blocking, as a freshly connected one would be.
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_read_timeout(None))
        .and_then(|()| stream.set_write_timeout(None))
        .map_err(|e| Failure::Failed(format!("preparing the connection: {e}")))?;
    Ok((OwnedFd::from(stream), reached))
}

/// The first of the checked addresses that answers, within `timeout` in all.
fn connect_any(addresses: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for address in addresses.iter().take(8) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
        }
        match TcpStream::connect_timeout(address, left) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// A tunnel to the destination through the operator's HTTP proxy (`CONNECT host:port`). The
/// destination was checked here first; the proxy may refuse it by its own rules too.
fn through_proxy(
    proxy: &str,
    request: &ConnectRequest,
    timeout: Duration,
) -> Result<TcpStream, Failure> {
    let unusable = |why: String| Failure::Failed(format!("the configured HTTP proxy: {why}"));
    let url = url::Url::parse(proxy).map_err(|e| unusable(format!("{proxy:?}: {e}")))?;
    if url.scheme() != "http" {
        return Err(unusable(format!(
            "connections go through http:// proxies only, not {}://",
            url.scheme()
        )));
    }
    let proxy_host = url
        .host_str()
        .ok_or_else(|| unusable(format!("{proxy:?} has no host")))?;
    let proxy_port = url.port_or_known_default().unwrap_or(3128);
    let addresses: Vec<SocketAddr> = (proxy_host.trim_matches(['[', ']']), proxy_port)
        .to_socket_addrs()
        .map_err(|e| unusable(format!("resolving {proxy_host}: {e}")))?
        .collect();
    let mut stream =
        connect_any(&addresses, timeout).map_err(|e| unusable(format!("connecting: {e}")))?;
    // The spelling that was checked: an address as the server read it (a proxy might read
    // `0127.0.0.1` otherwise), a name trimmed and lower-cased.
    let host = request.host.trim_matches(['[', ']']).to_ascii_lowercase();
    let target = match destination::literal_address(&host) {
        Some(ip) => SocketAddr::new(ip, request.port).to_string(),
        None => format!("{host}:{}", request.port),
    };
    let mut ask = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if !url.username().is_empty() {
        let credentials = format!(
            "{}:{}",
            percent_decoded(url.username()),
            percent_decoded(url.password().unwrap_or(""))
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(credentials);
        ask.push_str(&format!("Proxy-Authorization: Basic {encoded}\r\n"));
    }
    ask.push_str("\r\n");
    let io_failed = |e: io::Error| unusable(format!("talking to it: {e}"));
    stream.set_read_timeout(Some(timeout)).map_err(io_failed)?;
    stream.write_all(ask.as_bytes()).map_err(io_failed)?;
    // Byte by byte up to the blank line: nothing past it may be consumed here, it is the
    // destination's.
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n\r\n") {
        if answer.len() >= MAX_PROXY_ANSWER || stream.read(&mut byte).map_err(io_failed)? == 0 {
            return Err(unusable("it ended the CONNECT without an answer".into()));
        }
        answer.push(byte[0]);
    }
    let status_line = String::from_utf8_lossy(&answer);
    let status_line = status_line.lines().next().unwrap_or("");
    let status = status_line.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        return Err(Failure::Denied(format!(
            "the HTTP proxy refused the connection to {target}: {status_line}"
        )));
    }
    Ok(stream)
}

/// A URL's user or password as written: percent-decoded (and `+` is a plus, not a space).
fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_hosts_and_mail_ports_are_refused() {
        let any = Ports::parse("1-65535").unwrap();
        let parse = |json: &str| ConnectRequest::parse(json.as_bytes(), &any);
        assert!(parse(r#"{"host": "example.com", "port": 443}"#).is_ok());
        assert!(parse(r#"{"host": "[2001:db8::1]", "port": 8080}"#).is_ok());
        for bad in [
            r#"{"host": "example.com/x", "port": 443}"#,
            r#"{"host": "user@example.com", "port": 443}"#,
            r#"{"host": "", "port": 443}"#,
            r#"{"host": "example.com", "port": 25}"#,
            r#"{"host": "example.com", "port": 0}"#,
        ] {
            assert!(
                matches!(parse(bad), Err(Failure::Denied(_))),
                "{bad} was not refused"
            );
        }
        assert!(matches!(
            parse(r#"{"host": 1, "port": 443}"#),
            Err(Failure::Failed(_))
        ));
    }

    #[test]
    fn only_the_configured_ports_are_reached() {
        let web = Ports::default();
        let request = br#"{"host": "example.com", "port": 8080}"#;
        assert!(matches!(
            ConnectRequest::parse(request, &web),
            Err(Failure::Denied(_))
        ));
        let wider = Ports::parse("80, 443,8000-8999").unwrap();
        assert_eq!(wider.to_string(), "80,443,8000-8999");
        assert!(ConnectRequest::parse(request, &wider).is_ok());
        for bad in ["0", "70000", "9-8", "http"] {
            assert!(Ports::parse(bad).is_err(), "{bad}");
        }
    }
}
