//! Brokered HTTP: `SystemHelper.httpRequest` and JavaScript's `fetch` are the only way out of a
//! child, and they go through the server. The child writes the request on its job channel and blocks; the server
//! checks it — the run may use the network, the request is within the run's budget, the
//! destination is public ([`destination`]) — performs it on a blocking thread ([`fetch`]), and
//! writes the answer back.

mod connection;
pub mod destination;
pub use connection::Ports;
mod fetch;

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use destination::Allowed;

/// Requests one run may make; refused ones count too.
pub const MAX_REQUESTS_PER_RUN: u32 = 30;
/// The longest a request may take; a request's own `timeout` can only lower it.
pub const MAX_REQUEST_TIME: Duration = Duration::from_secs(60);
/// The largest response body a run receives.
pub const MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// The largest request body a run may send.
pub const MAX_REQUEST_BYTES: usize = crate::protocol::MAX_BROKER_BODY_BYTES;
pub const MAX_REDIRECTS: usize = 5;

/// The server's policy for brokered requests: a setting.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Off: every request is refused (`--network false`, Dify's `ENABLE_NETWORK=false`).
    pub enabled: bool,
    /// Destinations opened on purpose (`--http-allow`).
    pub allow: Vec<Allowed>,
    /// The proxy every request goes through (`--http-proxy`); none unless configured.
    pub proxy: Option<String>,
    /// The ports a brokered connection may reach (`--connect-ports`).
    pub connect_ports: Ports,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
            proxy: None,
            connect_ports: Ports::default(),
        }
    }
}

/// The broker of a running server: its policy, and how the requests so far ended.
#[derive(Debug, Clone, Default)]
pub struct Broker {
    pub policy: HttpPolicy,
    /// Shared by every clone; `/metrics` shows it.
    pub tally: Arc<BrokerTally>,
}

impl Broker {
    pub fn new(policy: HttpPolicy) -> Self {
        Self {
            policy,
            tally: Arc::default(),
        }
    }
}

/// Brokered requests by outcome, since the server started.
#[derive(Debug, Default)]
pub struct BrokerTally {
    /// Performed, whatever status the destination answered.
    pub ok: AtomicU64,
    /// Refused by policy.
    pub denied: AtomicU64,
    /// Tried, and failed (no such host, refused connection, timeout).
    pub failed: AtomicU64,
}

/// What a child asks for: typed, so that no shape of JSON makes the server build more than
/// the frame it read (the body stays the raw text it came as).
#[derive(Debug, Deserialize)]
pub struct Request {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    /// Values may be strings, numbers or booleans (sent as their text).
    #[serde(default)]
    pub headers: BTreeMap<String, HeaderText>,
    #[serde(default)]
    pub body: Option<Box<RawValue>>,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// fetch's: the body as base64 (bytes that need not be text), instead of `body`.
    #[serde(default)]
    pub body_base64: Option<Base64Body>,
    /// fetch's: answer with the body as base64, the headers as a list of pairs, the status
    /// text, the final URL and whether a redirect was followed ([`fetch::raw_answer`]).
    #[serde(default)]
    pub raw: bool,
    /// fetch's `redirect: "manual"` (and `"error"`): a 3xx is the answer, not followed.
    #[serde(default = "yes")]
    pub follow: bool,
}

/// A request body sent as base64, decoded as it is read.
#[derive(Debug)]
pub struct Base64Body(pub Vec<u8>);

impl<'de> Deserialize<'de> for Base64Body {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine;
        let text = String::deserialize(deserializer)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Base64Body)
            .map_err(serde::de::Error::custom)
    }
}

/// A header's value as text: a string as it is, a number or boolean as JSON writes it.
#[derive(Debug, Clone)]
pub struct HeaderText(pub String);

impl<'de> Deserialize<'de> for HeaderText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = HeaderText;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a header value: a string, a number or a boolean")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HeaderText, E> {
                Ok(HeaderText(v.to_owned()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<HeaderText, E> {
                Ok(HeaderText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HeaderText, E> {
                Ok(HeaderText(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HeaderText, E> {
                Ok(HeaderText(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<HeaderText, E> {
                Ok(HeaderText(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

fn get() -> String {
    "GET".into()
}

fn yes() -> bool {
    true
}

impl Request {
    /// The body as bytes: base64 decoded, a string as UTF-8, anything else but null as its JSON
    /// text.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        if let Some(bytes) = &self.body_base64 {
            return Some(bytes.0.clone());
        }
        let raw = self.body.as_deref()?.get();
        if raw.starts_with('"') {
            serde_json::from_str::<String>(raw)
                .ok()
                .map(String::into_bytes)
        } else {
            Some(raw.as_bytes().to_vec())
        }
    }

    /// Whether the body is JSON to be sent as such (an object, a list, a number...), not text.
    pub fn json_body(&self) -> bool {
        self.body
            .as_deref()
            .is_some_and(|b| !b.get().starts_with('"'))
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.keys().any(|k| k.eq_ignore_ascii_case(name))
    }
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Failure {
    /// Refused by policy: user code sees `network_denied` if it does not catch it.
    Denied(String),
    /// Tried, and failed (no such host, refused connection, timeout).
    Failed(String),
}

impl Broker {
    /// Answers the `call`-th request of a run (1-based) as the JSON the child expects:
    /// `{"ok": {status, headers, data}}` (with `raw`, fetch's: `{"ok": {status, status_text,
    /// headers, url, redirected, body_base64}}`) or `{"error": {"message", "denied"}}`.
    pub async fn answer(
        &self,
        request: &[u8],
        call: u32,
        run_may_use_network: bool,
        run_deadline: Instant,
    ) -> Vec<u8> {
        let outcome = self
            .perform(
                request,
                call,
                run_may_use_network,
                move |request, policy| {
                    let request = parse(request)?;
                    let timeout = timeout_for(request.timeout, run_deadline);
                    fetch::fetch(&request, &policy.allow, policy.proxy.as_deref(), timeout)
                },
            )
            .await;
        let value = match outcome {
            Ok(response) => {
                self.tally.ok.fetch_add(1, Ordering::Relaxed);
                json!({"ok": response})
            }
            Err(failure) => self.count_failure(failure),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// Answers the `call`-th request of a run that asks for a connection (a TCP socket for
    /// Python's own HTTP clients, [`connection`]): the JSON the child expects —
    /// `{"ok": {"address"}}` or `{"error": {"message", "denied"}}` — and, when it is `ok`, the
    /// connected socket to hand over.
    pub async fn connect(
        &self,
        request: &[u8],
        call: u32,
        run_may_use_network: bool,
        run_deadline: Instant,
    ) -> (Vec<u8>, Option<OwnedFd>) {
        let outcome = self
            .perform(
                request,
                call,
                run_may_use_network,
                move |request, policy| {
                    let request =
                        connection::ConnectRequest::parse(request, &policy.connect_ports)?;
                    let timeout = timeout_for(request.timeout, run_deadline);
                    connection::connect(&request, &policy.allow, policy.proxy.as_deref(), timeout)
                },
            )
            .await;
        let (value, socket) = match outcome {
            Ok((socket, address)) => (json!({"ok": {"address": address}}), Some(socket)),
            Err(failure) => (self.count_failure(failure), None),
        };
        if socket.is_some() {
            self.tally.ok.fetch_add(1, Ordering::Relaxed);
        }
        (serde_json::to_vec(&value).unwrap_or_default(), socket)
    }

    /// Refuses the `call`-th request of a run by the run's budget and the server's policy, or
    /// parses and performs it with `work` — off the runtime's threads, since both may block.
    async fn perform<T: Send + 'static>(
        &self,
        request: &[u8],
        call: u32,
        run_may_use_network: bool,
        work: impl FnOnce(&[u8], &HttpPolicy) -> Result<T, Failure> + Send + 'static,
    ) -> Result<T, Failure> {
        if let Some(refused) = self.refusal(call, run_may_use_network) {
            return Err(refused);
        }
        let request = request.to_vec();
        let policy = self.policy.clone();
        tokio::task::spawn_blocking(move || work(&request, &policy))
            .await
            .unwrap_or_else(|e| Err(Failure::Failed(format!("the request was abandoned: {e}"))))
    }

    /// Why the `call`-th request of a run is refused before anything about it is read.
    fn refusal(&self, call: u32, run_may_use_network: bool) -> Option<Failure> {
        if call > MAX_REQUESTS_PER_RUN {
            return Some(Failure::Denied(format!(
                "request limit reached: a run may make at most {MAX_REQUESTS_PER_RUN} requests \
                 (connections included)"
            )));
        }
        if !self.policy.enabled {
            return Some(Failure::Denied(
                "network access is not allowed: this server has networking turned off".into(),
            ));
        }
        if !run_may_use_network {
            return Some(Failure::Denied(
                "network access is not allowed for this run (\"network\": false)".into(),
            ));
        }
        None
    }

    /// A failure as the child's `{"error": ...}`, counted.
    fn count_failure(&self, failure: Failure) -> Value {
        let (message, denied, count) = match failure {
            Failure::Denied(message) => (message, true, &self.tally.denied),
            Failure::Failed(message) => (message, false, &self.tally.failed),
        };
        count.fetch_add(1, Ordering::Relaxed);
        json!({"error": {"message": message, "denied": denied}})
    }
}

/// How long one request or connection may take: what it asked for, within
/// [`MAX_REQUEST_TIME`] and what is left of the run.
fn timeout_for(asked: Option<f64>, run_deadline: Instant) -> Duration {
    let asked = asked
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(MAX_REQUEST_TIME);
    let left = run_deadline.saturating_duration_since(Instant::now());
    asked
        .min(MAX_REQUEST_TIME)
        .min(left)
        .max(Duration::from_millis(1))
}

/// A child's request, refused if it is not one or its body is over [`MAX_REQUEST_BYTES`].
fn parse(request: &[u8]) -> Result<Request, Failure> {
    let request: Request = serde_json::from_slice(request)
        .map_err(|e| Failure::Failed(format!("httpRequest: unreadable arguments: {e}")))?;
    let decoded = request.body_base64.as_ref().map_or(0, |b| b.0.len());
    if decoded > MAX_REQUEST_BYTES {
        return Err(Failure::Denied(format!(
            "the request body is too large: {decoded} bytes, at most {MAX_REQUEST_BYTES} (5 MB)"
        )));
    }
    let body_len = request.body.as_deref().map_or(0, |b| b.get().len());
    // The raw text is at least as long as the bytes it decodes to; only a long one is decoded.
    if body_len > MAX_REQUEST_BYTES {
        let decoded = request.body_bytes().map_or(0, |b| b.len());
        if decoded > MAX_REQUEST_BYTES {
            return Err(Failure::Denied(format!(
                "the request body is too large: {decoded} bytes, at most {MAX_REQUEST_BYTES} (5 MB)"
            )));
        }
    }
    Ok(request)
}
