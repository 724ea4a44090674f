//! Brokered HTTP: `SystemHelper.httpRequest` is the only way out of a child, and it goes
//! through the server. The child writes the request on its job channel and blocks; the server
//! checks it — the run may use the network, the request is within the run's budget, the
//! destination is public ([`destination`]) — performs it on a blocking thread ([`fetch`]), and
//! writes the answer back.

pub mod destination;
mod fetch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
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

/// The server's policy for brokered requests.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Off: every request is refused (`--network false`, Dify's `ENABLE_NETWORK=false`).
    pub enabled: bool,
    /// Destinations opened on purpose (`--http-allow`).
    pub allow: Vec<Allowed>,
    /// How the requests answered so far ended (shared by every clone; `/metrics` shows it).
    pub tally: Arc<BrokerTally>,
}

impl Default for Broker {
    fn default() -> Self {
        Self {
            enabled: true,
            allow: Vec::new(),
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

/// What a child asks for.
#[derive(Debug, Deserialize)]
pub struct Request {
    pub url: String,
    #[serde(default = "get")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, Value>,
    #[serde(default)]
    pub body: Value,
    /// Seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Set by [`Request::body_bytes`]'s caller: the body is an object sent as JSON.
    #[serde(skip)]
    pub json_body: bool,
}

fn get() -> String {
    "GET".into()
}

impl Request {
    /// The body as bytes: a string as UTF-8, anything else but null as JSON.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        match &self.body {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            other => Some(serde_json::to_vec(other).unwrap_or_default()),
        }
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
    /// `{"ok": {status, headers, data}}` or `{"error": {"message", "denied"}}`.
    pub async fn answer(
        &self,
        request: &[u8],
        call: u32,
        run_may_use_network: bool,
        run_deadline: Instant,
    ) -> Vec<u8> {
        let outcome = self
            .answer_inner(request, call, run_may_use_network, run_deadline)
            .await;
        let (value, count) = match outcome {
            Ok(response) => (json!({"ok": response}), &self.tally.ok),
            Err(Failure::Denied(message)) => (
                json!({"error": {"message": message, "denied": true}}),
                &self.tally.denied,
            ),
            Err(Failure::Failed(message)) => (
                json!({"error": {"message": message, "denied": false}}),
                &self.tally.failed,
            ),
        };
        count.fetch_add(1, Ordering::Relaxed);
        serde_json::to_vec(&value).unwrap_or_default()
    }

    async fn answer_inner(
        &self,
        request: &[u8],
        call: u32,
        run_may_use_network: bool,
        run_deadline: Instant,
    ) -> Result<Value, Failure> {
        if call > MAX_REQUESTS_PER_RUN {
            return Err(Failure::Denied(format!(
                "request limit reached: a run may make at most {MAX_REQUESTS_PER_RUN} requests"
            )));
        }
        if !self.enabled {
            return Err(Failure::Denied(
                "network access is not allowed: this server has networking turned off".into(),
            ));
        }
        if !run_may_use_network {
            return Err(Failure::Denied(
                "network access is not allowed for this run (\"network\": false)".into(),
            ));
        }
        let mut request: Request = serde_json::from_slice(request)
            .map_err(|e| Failure::Failed(format!("httpRequest: unreadable arguments: {e}")))?;
        if let Some(body) = request.body_bytes() {
            if body.len() > MAX_REQUEST_BYTES {
                return Err(Failure::Denied(format!(
                    "the request body is too large: {} bytes, at most {MAX_REQUEST_BYTES} (5 MB)",
                    body.len()
                )));
            }
        }
        request.json_body = !matches!(request.body, Value::Null | Value::String(_));
        let mut headers = BTreeMap::new();
        for (name, value) in &request.headers {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            headers.insert(name.clone(), Value::String(value));
        }
        request.headers = headers;
        let asked = request
            .timeout
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(MAX_REQUEST_TIME);
        let left = run_deadline.saturating_duration_since(Instant::now());
        let timeout = asked
            .min(MAX_REQUEST_TIME)
            .min(left)
            .max(Duration::from_millis(1));
        let allow = self.allow.clone();
        tokio::task::spawn_blocking(move || fetch::fetch(&request, &allow, timeout))
            .await
            .map_err(|e| Failure::Failed(format!("the request was abandoned: {e}")))?
    }
}
