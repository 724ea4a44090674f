//! Where a brokered request may go. A destination is a URL whose scheme is http or https and
//! whose host resolves only to public addresses: never loopback, private, link-local (the
//! 169.254.169.254 metadata service among them), CGNAT, unique-local, multicast, unspecified,
//! broadcast, reserved, documentation or benchmark ranges. IPv4-mapped and -compatible IPv6
//! addresses are judged by the IPv4 address inside, and every numeric spelling of an IPv4
//! address (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) is read the way `inet_aton` reads it,
//! so no spelling slips past as a "name". The operator's allowlist (`--http-allow`) opens a
//! host or a CIDR range on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use ipnet::IpNet;
use ureq::http;

/// An entry of `--http-allow`: a CIDR range (a bare address is a /32 or /128) or a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Range(IpNet),
    Host(String),
}

impl Allowed {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err("an empty --http-allow entry".into());
        }
        let bare = entry.replace(['[', ']'], "");
        if let Ok(net) = bare.parse::<IpNet>() {
            return Ok(Self::Range(net.trunc()));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Self::Range(IpNet::from(ip)));
        }
        if entry.contains('/') {
            return Err(format!(
                "--http-allow {entry:?}: not an address/prefix (the prefix must be 0..=32 for \
                 IPv4, 0..=128 for IPv6)"
            ));
        }
        Ok(Self::Host(entry.to_ascii_lowercase()))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        matches!(self, Self::Range(net) if net.contains(&ip))
    }
}

/// As `--http-allow` takes it back: `10.0.0.0/8`, `[::1]/128`, `example.com`.
impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Range(IpNet::V6(net)) => write!(f, "[{}]/{}", net.addr(), net.prefix_len()),
            Self::Range(net) => write!(f, "{net}"),
            Self::Host(host) => f.write_str(host),
        }
    }
}

/// A URL that passed every check, with the addresses the connection may use.
#[derive(Debug, Clone)]
pub struct Checked {
    pub url: http::Uri,
    pub addresses: Vec<SocketAddr>,
}

/// Parses and checks `url`; the error says why it is refused.
pub fn check(url: &str, allow: &[Allowed]) -> Result<Checked, String> {
    if let Some((scheme, _)) = url.split_once(':') {
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http"
            && scheme != "https"
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(format!(
                "protocol '{scheme}:' is not allowed: only http and https can be requested"
            ));
        }
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("not a valid URL ({e}): {url:?}"))?;
    let port = match uri.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        Some(other) => {
            return Err(format!(
                "protocol '{other}:' is not allowed: only http and https can be requested"
            ))
        }
        None => {
            return Err(format!(
                "the URL has no protocol: {url:?} (use http:// or https://)"
            ))
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("the URL has no host: {url:?}"))?;
    let port = authority.port_u16().unwrap_or(port);
    let addresses = check_host(authority.host(), port, allow)?;
    Ok(Checked {
        url: uri,
        addresses,
    })
}

/// Resolves `host` and checks every address it has; the error says why it is refused. The
/// addresses returned are the only ones a connection to it may use.
pub fn check_host(host: &str, port: u16, allow: &[Allowed]) -> Result<Vec<SocketAddr>, String> {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    let host_allowed = allow.iter().any(|a| *a == Allowed::Host(host.clone()));
    let addresses: Vec<IpAddr> = match literal_address(&host) {
        Some(ip) => vec![ip],
        None => (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("the host {host:?} could not be resolved: {e}"))?
            .map(|a| a.ip())
            .collect(),
    };
    if addresses.is_empty() {
        return Err(format!("the host {host:?} has no address"));
    }
    if !host_allowed {
        for ip in &addresses {
            if allow.iter().any(|a| a.contains(*ip)) {
                continue;
            }
            if let Some(range) = refused_range(*ip) {
                return Err(format!(
                    "requests to {host} are not allowed: it resolves to {ip}, a {range} \
                     address (private and internal networks cannot be reached from the sandbox)"
                ));
            }
        }
    }
    Ok(addresses
        .into_iter()
        .map(|ip| SocketAddr::new(ip, port))
        .collect())
}

/// The host as an address, if it is written as one: IPv6, or IPv4 in any spelling the URL
/// standard reads as one (`url`'s host parser: `2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`,
/// a trailing dot), as browsers and `inet_aton` do.
pub fn literal_address(host: &str) -> Option<IpAddr> {
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    match url::Host::parse(host) {
        Ok(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Ok(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    }
}

/// The special-purpose range an address is in, if it is not a public unicast address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// The IPv4 special-purpose ranges (RFC 6890 and its successors), by name.
const SPECIAL_V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "unspecified (\"this network\")"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignment"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
];

/// The IPv6 ones; addresses that carry an IPv4 address are judged by it first.
const SPECIAL_V6: &[(&str, &str)] = &[
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("100::/64", "discard-only"),
    (
        "2001::/23",
        "IETF protocol assignment (Teredo, benchmarking, ...)",
    ),
    ("2001:db8::/32", "documentation"),
    ("2002::/16", "6to4"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
];

/// The name of the first range of `table` that holds `ip`.
fn range_of(table: &[(&'static str, &'static str)], ip: IpAddr) -> Option<&'static str> {
    table
        .iter()
        .find(|(net, _)| net.parse::<IpNet>().is_ok_and(|net| net.contains(&ip)))
        .map(|(_, name)| *name)
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    range_of(SPECIAL_V4, IpAddr::V4(ip))
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let within = |net: &str| {
        net.parse::<IpNet>()
            .is_ok_and(|n| n.contains(&IpAddr::V6(ip)))
    };
    if within("::ffff:0:0/96") || within("64:ff9b::/96") {
        return refused_v4(Ipv4Addr::from(u128::from(ip) as u32)); // IPv4-mapped, NAT64
    }
    if within("::/96") && u128::from(ip) > 1 {
        return Some("IPv4-compatible (deprecated)");
    }
    range_of(SPECIAL_V6, IpAddr::V6(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_loopback_is_loopback() {
        for spelling in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "127.1",
            "127.0.1",
            "0x7F.0.0.0x1",
            "017700000001",
            "127.0.0.1.",
        ] {
            let ip = literal_address(spelling).unwrap_or_else(|| panic!("{spelling}"));
            assert_eq!(refused_range(ip), Some("loopback"), "{spelling} -> {ip}");
        }
        assert_eq!(literal_address("example.com"), None);
        assert_eq!(literal_address("1.2.3.4.5"), None);
        assert_eq!(literal_address("256.1.1.1"), None);
    }

    #[test]
    fn special_ranges_are_refused_and_public_ones_are_not() {
        for refused in [
            "10.1.2.3",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::7f00:1",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(refused_range(ip).is_some(), "{refused} should be refused");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert_eq!(refused_range(ip), None, "{public} is public");
        }
    }

    #[test]
    fn the_allowlist_opens_ranges_and_hosts() {
        let allow = [Allowed::parse("127.0.0.2/32").unwrap()];
        assert!(check("http://127.0.0.2:8080/x", &allow).is_ok());
        assert!(check("http://127.0.0.1:8080/x", &allow).is_err());
        assert!(check("http://[::1]/", &allow).is_err());
        assert!(check("file:///etc/passwd", &allow)
            .unwrap_err()
            .contains("protocol"));
        assert!(check("gopher://x/", &allow)
            .unwrap_err()
            .contains("protocol"));
        assert_eq!(
            Allowed::parse("Example.COM").unwrap(),
            Allowed::Host("example.com".into())
        );
        assert!(Allowed::parse("10.0.0.0/33").is_err());
        for entry in ["10.0.0.0/8", "[::1]/128", "192.0.2.7/32"] {
            assert_eq!(Allowed::parse(entry).unwrap().to_string(), entry);
        }
        assert_eq!(
            Allowed::parse("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn every_range_of_the_tables_is_a_valid_cidr() {
        for (net, name) in SPECIAL_V4.iter().chain(SPECIAL_V6) {
            assert!(net.parse::<IpNet>().is_ok(), "{net} ({name})");
        }
    }
}
