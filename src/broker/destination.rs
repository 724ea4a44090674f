//! Where a brokered request may go. A destination is a URL whose scheme is http or https and
//! whose host resolves only to public addresses: never loopback, private, link-local (the
//! 169.254.169.254 metadata service among them), CGNAT, unique-local, multicast, unspecified,
//! broadcast, reserved, documentation or benchmark ranges. IPv4-mapped and -compatible IPv6
//! addresses are judged by the IPv4 address inside, and every numeric spelling of an IPv4
//! address (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) is read the way `inet_aton` reads it,
//! so no spelling slips past as a "name". The operator's allowlist (`--http-allow`) opens a
//! host or a CIDR range on purpose.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};

use ureq::http;

/// An entry of `--http-allow`: a CIDR range (a bare address is a /32 or /128) or a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    Range(IpAddr, u8),
    Host(String),
}

impl Allowed {
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim();
        if entry.is_empty() {
            return Err("an empty --http-allow entry".into());
        }
        let (address, prefix) = match entry.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (entry, None),
        };
        let Ok(ip) = address.trim_matches(['[', ']']).parse::<IpAddr>() else {
            if prefix.is_some() {
                return Err(format!("--http-allow {entry:?}: not an address/prefix"));
            }
            return Ok(Self::Host(entry.to_ascii_lowercase()));
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix =
            match prefix {
                None => max,
                Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                    format!("--http-allow {entry:?}: the prefix must be 0..={max}")
                })?,
            };
        Ok(Self::Range(ip, prefix))
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self, ip) {
            (Self::Range(IpAddr::V4(net), prefix), IpAddr::V4(ip)) => {
                within(u32::from(*net) as u128, u32::from(ip) as u128, *prefix, 32)
            }
            (Self::Range(IpAddr::V6(net), prefix), IpAddr::V6(ip)) => {
                within(u128::from(*net), u128::from(ip), *prefix, 128)
            }
            _ => false,
        }
    }
}

/// As `--http-allow` takes it back: `10.0.0.0/8`, `[::1]/128`, `example.com`.
impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Range(IpAddr::V6(ip), prefix) => write!(f, "[{ip}]/{prefix}"),
            Self::Range(ip, prefix) => write!(f, "{ip}/{prefix}"),
            Self::Host(host) => f.write_str(host),
        }
    }
}

fn within(net: u128, ip: u128, prefix: u8, bits: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = bits - prefix;
    net >> shift == ip >> shift
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
    let host = authority
        .host()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
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
    Ok(Checked {
        url: uri,
        addresses: addresses
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect(),
    })
}

/// The host as an address, if it is written as one: IPv6, or IPv4 in any `inet_aton` spelling.
pub fn literal_address(host: &str) -> Option<IpAddr> {
    if let Ok(v6) = host.parse::<Ipv6Addr>() {
        return Some(IpAddr::V6(v6));
    }
    loose_ipv4(host).map(IpAddr::V4)
}

/// `inet_aton`'s reading: one to four parts, each decimal, 0x-hex or 0-octal; the last part
/// fills the remaining bytes (`127.1` is 127.0.0.1, `2130706433` is too).
fn loose_ipv4(host: &str) -> Option<Ipv4Addr> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|p| number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, leading) = numbers.split_last()?;
    let mut value: u64 = 0;
    for (i, part) in leading.iter().enumerate() {
        if *part > 255 {
            return None;
        }
        value |= part << (24 - 8 * i);
    }
    let room = 32 - 8 * leading.len() as u32;
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    Some(Ipv4Addr::from((value | last) as u32))
}

fn number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or(part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return if radix == 16 { Some(0) } else { None };
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|n| *n <= u32::MAX as u64)
}

/// The special-purpose range an address is in, if it is not a public unicast address.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u8, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (\"this network\")"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved (and broadcast)"),
    ];
    let value = u32::from(ip) as u128;
    RANGES
        .iter()
        .find(|(net, prefix, _)| {
            within(u32::from(Ipv4Addr::from(*net)) as u128, value, *prefix, 32)
        })
        .map(|(_, _, name)| *name)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let value = u128::from(ip);
    // Addresses that carry an IPv4 address are judged by it.
    let embedded = |prefix_value: u128, prefix: u8| within(prefix_value, value, prefix, 128);
    if embedded(0xffff_0000_0000, 96) || embedded(0x0064_ff9b_u128 << 96, 96) {
        return refused_v4(Ipv4Addr::from(value as u32)); // IPv4-mapped, NAT64
    }
    if embedded(0, 96) && value > 1 {
        return Some("IPv4-compatible (deprecated)");
    }
    const RANGES: &[(u128, u8, &str)] = &[
        (0, 128, "unspecified"),
        (1, 128, "loopback"),
        (0x0100_u128 << 112, 64, "discard-only"),
        (
            0x2001_u128 << 112,
            23,
            "IETF protocol assignment (Teredo, benchmarking, ...)",
        ),
        (0x2001_0db8_u128 << 96, 32, "documentation"),
        (0x2002_u128 << 112, 16, "6to4"),
        (0xfc00_u128 << 112, 7, "unique local"),
        (0xfe80_u128 << 112, 10, "link-local"),
        (0xfec0_u128 << 112, 10, "site-local"),
        (0xff00_u128 << 112, 8, "multicast"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| within(*net, value, *prefix, 128))
        .map(|(_, _, name)| *name)
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
    }
}
