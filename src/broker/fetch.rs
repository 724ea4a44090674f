//! Performing one checked request with ureq: the connection goes to the addresses
//! [`destination::check`] approved (a resolver that answers with them, so there is no second
//! DNS lookup to race), redirects are followed by hand so each hop is checked again (and
//! credentials are not sent to another origin; fetch's `redirect: "manual"` follows none), and
//! the response body is read up to its cap.
//! No proxy is used unless the operator configured one: ureq would otherwise take it from the
//! server's environment, and the pinned resolver would answer the proxy's lookup.

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Map, Value};
use ureq::http::{self, Uri};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::destination::{self, Allowed};
use super::{Failure, Request, MAX_REDIRECTS, MAX_RESPONSE_BYTES};

/// Answers every lookup with the addresses that were checked.
#[derive(Debug)]
struct Pinned(Vec<SocketAddr>);

impl Resolver for Pinned {
    fn resolve(
        &self,
        _uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let mut out = self.empty();
        for address in self.0.iter().take(16) {
            out.push(*address);
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

/// Headers that carry credentials: not sent past a redirect to another origin (as curl and
/// requests do).
const CREDENTIALS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

/// Sends `request`, following at most [`MAX_REDIRECTS`] checked redirects, through `proxy`
/// if one is configured.
pub fn fetch(
    request: &Request,
    allow: &[Allowed],
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<Value, Failure> {
    let mut url = request.url.clone();
    let mut method = request.method.to_ascii_uppercase();
    let mut body = request.body_bytes();
    let mut origin = None;
    let mut same_origin = true;
    for hop in 0..=MAX_REDIRECTS {
        let checked = destination::check(&url, allow).map_err(Failure::Denied)?;
        let here = origin_of(&checked.url);
        // Once a hop leaves the first origin, credentials stay behind for good.
        same_origin &= *origin.get_or_insert_with(|| here.clone()) == here;
        let agent = agent(&checked.addresses, proxy, timeout)?;
        let mut builder = http::Request::builder()
            .method(method.as_str())
            .uri(checked.url.clone());
        for (name, value) in &request.headers {
            let credential = CREDENTIALS.iter().any(|c| name.eq_ignore_ascii_case(c));
            if same_origin || !credential {
                builder = builder.header(name.as_str(), value.0.as_str());
            }
        }
        if body.is_some() && request.json_body() && !request.has_header("content-type") {
            builder = builder.header("content-type", "application/json");
        }
        let sent = builder
            .body(body.clone().unwrap_or_default())
            .map_err(|e| Failure::Failed(format!("the request is malformed: {e}")))?;
        let mut response = agent.run(sent).map_err(|e| match e {
            ureq::Error::Timeout(_) => Failure::Failed(format!(
                "the request timed out after {} s",
                timeout.as_secs_f64()
            )),
            other => Failure::Failed(format!("the request failed: {other}")),
        })?;
        let status = response.status().as_u16();
        if (300..400).contains(&status) && request.follow {
            if let Some(location) = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
            {
                url = join(&checked.url, location);
                if status == 303 || ((status == 301 || status == 302) && method == "POST") {
                    method = "GET".into();
                    body = None;
                }
                continue;
            }
        }
        let mut bytes = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::Failed(format!("reading the response failed: {e}")))?;
        if bytes.len() > MAX_RESPONSE_BYTES {
            return Err(Failure::Denied(format!(
                "the response body is too large: over {} bytes (2 MiB)",
                MAX_RESPONSE_BYTES
            )));
        }
        if request.raw {
            return Ok(raw_answer(&response, &bytes, &url, hop > 0));
        }
        return Ok(answer(&response, &bytes));
    }
    Err(Failure::Denied(format!(
        "too many redirects: at most {MAX_REDIRECTS} are followed"
    )))
}

/// SystemHelper.httpRequest's answer: `{status, headers, data}`, the headers an object (repeated
/// ones joined by ", "), `data` parsed when the response says it is JSON, else text.
fn answer(response: &http::Response<ureq::Body>, bytes: &[u8]) -> Value {
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let is_json = headers
        .get("content-type")
        .and_then(Value::as_str)
        .is_some_and(|t| t.contains("json"));
    let text = String::from_utf8_lossy(bytes).into_owned();
    let data = if is_json {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    json!({"status": response.status().as_u16(), "headers": headers, "data": data})
}

/// fetch's answer (a request with `raw`): `{status, status_text, headers, url, redirected,
/// body_base64}`, the headers a list of `[name, value]` pairs as they came, `url` the one that
/// answered.
fn raw_answer(
    response: &http::Response<ureq::Body>,
    bytes: &[u8],
    url: &str,
    redirected: bool,
) -> Value {
    use base64::Engine;
    let headers: Vec<[String; 2]> = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            [name.as_str().to_owned(), value]
        })
        .collect();
    let status = response.status();
    json!({
        "status": status.as_u16(),
        "status_text": status.canonical_reason().unwrap_or(""),
        "headers": headers,
        "url": url,
        "redirected": redirected,
        "body_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
    })
}

/// An agent that connects to the checked `addresses`, or to the configured proxy.
fn agent(
    addresses: &[SocketAddr],
    proxy: Option<&str>,
    timeout: Duration,
) -> Result<ureq::Agent, Failure> {
    let proxy = proxy
        .map(ureq::Proxy::new)
        .transpose()
        .map_err(|e| Failure::Failed(format!("the configured HTTP proxy is unusable: {e}")))?;
    let through_proxy = proxy.is_some();
    let config = ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .proxy(proxy)
        .build();
    Ok(if through_proxy {
        // The proxy's own address is the operator's choice; the proxy resolves the destination.
        ureq::Agent::with_parts(
            config,
            DefaultConnector::default(),
            DefaultResolver::default(),
        )
    } else {
        ureq::Agent::with_parts(
            config,
            DefaultConnector::default(),
            Pinned(addresses.to_vec()),
        )
    })
}

/// Scheme, host and port: what must stay the same for credentials to follow a redirect.
fn origin_of(uri: &Uri) -> (Option<String>, Option<String>, Option<u16>) {
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let port = uri.port_u16().or(match scheme.as_deref() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    });
    (scheme, uri.host().map(str::to_ascii_lowercase), port)
}

/// A redirect's Location against the URL that answered with it (RFC 3986 reference
/// resolution); a Location that resolves to nothing is followed as given, for the next check
/// to refuse.
fn join(base: &Uri, location: &str) -> String {
    url::Url::parse(&base.to_string())
        .and_then(|base| base.join(location))
        .map_or_else(|_| location.to_owned(), String::from)
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn redirects_resolve_like_a_browser() {
        let base: ureq::http::Uri = "http://example.com/a/b?x=1".parse().unwrap();
        for (location, expected) in [
            ("?q", "http://example.com/a/b?q"),
            ("c", "http://example.com/a/c"),
            ("../c", "http://example.com/c"),
            ("/c", "http://example.com/c"),
            ("//other.org/d", "http://other.org/d"),
            ("https://x.org/", "https://x.org/"),
            ("#frag", "http://example.com/a/b?x=1#frag"),
        ] {
            assert_eq!(join(&base, location), expected, "{location}");
        }
    }
}
