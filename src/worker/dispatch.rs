//! One HTTP attempt: build the Standard Webhooks request, sign it, send it,
//! and describe what happened. No database access; failures are data.
//!
//! What an attempt reports is what gets stored, so it is made safe to store
//! here: a receiver controls its status line, headers and body, and none of
//! that may stop the outcome from being recorded (PostgreSQL `text` and
//! `jsonb` refuse U+0000) or grow the attempts table without bound.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use uuid::Uuid;

use super::brokers::{Broker, Brokers, Publication};
use super::net::{BlockedAddress, DnsFailed, GuardedResolver};
use super::transforms::Transforms;
use crate::config::NetworkPolicy;
use crate::db::deliveries::{Claimed, LostLease};
use crate::domain::batch::BatchFormat;
use crate::domain::delivery::ErrorKind;
use crate::domain::retry::parse_retry_after;
use crate::secrets::KeyRing;
use crate::signing::{PrivateKey, SecretError, Signing, SigningKey, body_signature};

/// Response bodies are kept up to this many characters (SPEC §2).
pub const RESPONSE_BODY_MAX_CHARS: usize = 5000;
/// Bytes of a response body read at most; the rest is not waited for.
const RESPONSE_READ_MAX_BYTES: usize = 64 * 1024;
/// Response headers kept at most, and their characters (names and values) at most.
pub const RESPONSE_HEADERS_MAX: usize = 50;
pub const RESPONSE_HEADERS_MAX_CHARS: usize = 8 * 1024;
/// Error descriptions are kept up to this many characters.
const ERROR_MAX_CHARS: usize = 1000;
/// Envelopes larger than this are not sent (`body_too_large`).
pub const REQUEST_BODY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What a `410 Gone` is recorded as.
pub const GONE: &str = "410 Gone: endpoint disabled";

const USER_AGENT: &str = concat!("hookline/", env!("CARGO_PKG_VERSION"));

#[derive(Debug)]
pub struct Attempt {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status_code: Option<u16>,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub outcome: Outcome,
}

impl Attempt {
    /// How long it took, as stored (whole milliseconds).
    pub fn duration_ms(&self) -> i32 {
        self.duration.as_millis().min(i32::MAX as u128) as i32
    }

    /// What is stored of a failure: its kind and message (none for a success).
    pub fn error(&self) -> (Option<ErrorKind>, Option<String>) {
        match &self.outcome {
            Outcome::Delivered => (None, None),
            Outcome::Gone => (Some(ErrorKind::HttpStatus), Some(GONE.to_owned())),
            Outcome::Failed { kind, message, .. } => (Some(*kind), Some(message.clone())),
        }
    }

    /// The same attempt without what the receiver sent: for each delivery
    /// of a batch, whose request keeps that once.
    pub fn without_response(&self) -> Attempt {
        Attempt { response_headers: None, response_body: None, outcome: self.outcome.clone(), ..*self }
    }

    /// What a claimed delivery stands for without being sent, if anything:
    /// its circuit's expiry, or a lost lease.
    pub fn unsent(delivery: &Claimed) -> Option<Attempt> {
        if delivery.circuit_expired {
            return Some(Attempt {
                started_at: Utc::now(),
                duration: Duration::ZERO,
                status_code: None,
                response_headers: None,
                response_body: None,
                outcome: Outcome::Failed {
                    kind: ErrorKind::CircuitOpen,
                    message:
                        "not sent: the endpoint's circuit stayed open past the last attempt its retry schedule allows"
                            .to_owned(),
                    retry_after: None,
                },
            });
        }
        delivery.lost.as_ref().map(Attempt::lost)
    }

    /// The attempt a lost lease stands for: its worker stopped before
    /// recording an outcome, so whether the receiver got it is unknown.
    pub fn lost(lost: &LostLease) -> Attempt {
        Attempt {
            started_at: lost.since,
            duration: (lost.at - lost.since).to_std().unwrap_or_default(),
            status_code: None,
            response_headers: None,
            response_body: None,
            outcome: Outcome::Failed {
                kind: ErrorKind::WorkerLost,
                message: format!(
                    "no outcome was recorded before the lease ran out at {}: its worker stopped or was cut off",
                    lost.at
                ),
                retry_after: None,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Any 2xx.
    Delivered,
    /// `410 Gone`: the receiver wants no more deliveries.
    Gone,
    Failed {
        kind: ErrorKind,
        message: String,
        retry_after: Option<Duration>,
    },
}

/// Sends attempts over one pooled, keep-alive HTTP client (and a second one
/// for hookline's own sandboxes, which the address check would refuse).
#[derive(Clone)]
pub struct Dispatcher {
    client: reqwest::Client,
    sandbox_client: reqwest::Client,
    policy: Arc<NetworkPolicy>,
    max_timeout: Duration,
    secret_keys: KeyRing,
    transforms: Arc<Transforms>,
    brokers: Arc<Brokers>,
}

impl Dispatcher {
    /// `max_timeout` caps every endpoint's timeout so a request always ends
    /// before its lease does.
    pub fn new(policy: NetworkPolicy, max_timeout: Duration, secret_keys: KeyRing) -> reqwest::Result<Self> {
        // reqwest is built without a TLS crypto provider of its own: use ring.
        // Installing is idempotent; an Err only means one is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = Arc::new(policy);
        let client = http_client().dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() })).build()?;
        let sandbox_client = http_client().build()?;
        Ok(Self {
            client,
            sandbox_client,
            policy,
            max_timeout,
            secret_keys,
            transforms: Arc::default(),
            brokers: Arc::default(),
        })
    }

    /// Sends one delivery alone: its event id is the `webhook-id`. Its
    /// body is the envelope, or what its endpoint's transformation writes;
    /// a transformation that fails is an attempt that sent nothing.
    pub async fn attempt(&self, delivery: &Claimed) -> Attempt {
        let webhook_id = delivery.event_id.to_string();
        let message = match &delivery.transformation {
            None => Message::json(webhook_id, envelope(delivery)),
            Some(source) => match self.transforms.render_apart(delivery, source).await {
                Ok(rendered) => Message {
                    method: rendered.method,
                    headers: rendered.headers,
                    ..Message::json(webhook_id, rendered.body)
                },
                Err(error) => {
                    let error = format!("the transformation failed: {error}");
                    return self.timed(async { Err((ErrorKind::Transformation, error)) }).await;
                }
            },
        };
        self.timed(self.send(delivery, message)).await
    }

    /// What the endpoint's template (`source`: they share the endpoint)
    /// writes for each of a batch's members, as one line of compact JSON
    /// each; a member whose template fails, or writes no JSON, gets the
    /// attempt that records it. The members travel to the blocking pool and
    /// back, not copies of them.
    pub async fn transform_elements(
        &self,
        source: String,
        members: Vec<Claimed>,
    ) -> Vec<(Claimed, Result<String, Attempt>)> {
        let transforms = self.transforms.clone();
        let render = move |members: Vec<Claimed>| {
            members
                .into_iter()
                .map(|d| {
                    // Caught here, so that every member comes back decided.
                    let rendered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        transforms.render(&d, &source, REQUEST_BODY_MAX_BYTES)
                    }))
                    .unwrap_or_else(|_| Err("rendering stopped".to_owned()));
                    let element = rendered.and_then(|rendered| {
                        let element: serde_json::Value = serde_json::from_str(&rendered.body)
                            .map_err(|_| "in a batch, the template must write one JSON value per event".to_owned())?;
                        Ok(element.to_string())
                    });
                    (d, element)
                })
                .collect::<Vec<_>>()
        };
        // Only a runtime shutting down fails the join: the leases then bring
        // the members back.
        let rendered = tokio::task::spawn_blocking(move || render(members)).await.unwrap_or_default();
        let mut elements = Vec::with_capacity(rendered.len());
        for (d, element) in rendered {
            let element = match element {
                Ok(element) => Ok(element),
                Err(error) => Err(self.not_sent(&format!("the transformation failed: {error}")).await),
            };
            elements.push((d, element));
        }
        elements
    }

    /// The attempt of a batch member its template kept from being sent
    /// (`transformation`: retried, and no mark against the endpoint).
    pub async fn not_sent(&self, why: &str) -> Attempt {
        self.timed(async { Err((ErrorKind::Transformation, why.to_owned())) }).await
    }

    /// Sends a batch of `endpoint`'s deliveries as one message.
    pub async fn attempt_batch(
        &self,
        endpoint: &Claimed,
        webhook_id: Uuid,
        format: BatchFormat,
        body: String,
    ) -> Attempt {
        let message = Message { content_type: format.content_type(), ..Message::json(webhook_id.to_string(), body) };
        self.timed(self.send(endpoint, message)).await
    }

    async fn timed(&self, send: impl Future<Output = Result<Attempt, (ErrorKind, String)>>) -> Attempt {
        let started_at = Utc::now();
        let clock = Instant::now();
        let result = send.await;
        let duration = clock.elapsed();
        match result {
            Ok(attempt) => Attempt { started_at, duration, ..attempt },
            Err((kind, message)) => Attempt {
                started_at,
                duration,
                status_code: None,
                response_headers: None,
                response_body: None,
                outcome: Outcome::Failed { kind, message: recordable(&message, ERROR_MAX_CHARS), retry_after: None },
            },
        }
    }

    /// Sends `message` to `d`'s endpoint, signed with its keys.
    async fn send(&self, d: &Claimed, message: Message) -> Result<Attempt, (ErrorKind, String)> {
        let url = self.secret_keys.open_url(&d.url).map_err(|e| cannot_open_url(&e))?;
        let url = reqwest::Url::parse(&url).map_err(|e| (ErrorKind::InvalidUrl, format!("invalid URL: {e}")))?;
        let own_sandbox = self.policy.is_own_sandbox(&url);
        // reqwest skips the resolver for IP literals, so check those here.
        if let Some(ip) = literal_ip(&url)
            && !own_sandbox
            && !self.policy.permits(ip)
        {
            return Err((ErrorKind::BlockedAddress, format!("{ip} is a blocked address")));
        }

        let keys = signing_keys(&self.secret_keys, d)?;
        let body = message.body.as_str();
        if body.len() > REQUEST_BODY_MAX_BYTES {
            return Err((ErrorKind::BodyTooLarge, format!("the request body is {} bytes", body.len())));
        }
        let headers = request_headers(d, &keys, &message).map_err(|e| (ErrorKind::InvalidUrl, e))?;
        let method = message.method.as_deref().unwrap_or(&d.http_method);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::POST);
        let timeout = Duration::from_millis(d.timeout_ms.max(1) as u64).min(self.max_timeout);
        if let Some(broker) = Broker::of(&url) {
            return self.publish(broker, d, &url, &message, &headers, timeout).await;
        }
        let client = if own_sandbox { &self.sandbox_client } else { &self.client };

        let response = client
            .request(method, url)
            .headers(headers)
            .timeout(timeout)
            .body(message.body)
            .send()
            .await
            .map_err(classify)?;

        let status = response.status();
        let response_headers = headers_json(response.headers());
        let retry_after = match status.as_u16() {
            429 | 503 => response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now())),
            _ => None,
        };
        let response_body = read_truncated(response).await;
        let outcome = if status.is_success() {
            Outcome::Delivered
        } else if status == reqwest::StatusCode::GONE {
            Outcome::Gone
        } else {
            Outcome::Failed { kind: ErrorKind::HttpStatus, message: format!("HTTP {status}"), retry_after }
        };
        Ok(Attempt {
            started_at: Utc::now(),
            duration: Duration::ZERO,
            status_code: Some(status.as_u16()),
            response_headers: Some(response_headers),
            response_body: Some(response_body),
            outcome,
        })
    }
}

/// What one request carries: a Standard Webhooks message.
struct Message {
    webhook_id: String,
    content_type: &'static str,
    body: String,
    /// A transformation's choices: the method, and headers (lower-case
    /// names) over the endpoint's and the content type.
    method: Option<String>,
    headers: Vec<(String, String)>,
}

impl Message {
    fn json(webhook_id: String, body: String) -> Self {
        Message { webhook_id, content_type: "application/json", body, method: None, headers: Vec::new() }
    }
}

/// The Standard Webhooks envelope. The payload is spliced in as the text
/// PostgreSQL produced, which is valid JSON, instead of parsed and re-encoded.
pub fn envelope(d: &Claimed) -> String {
    let event_type = serde_json::to_string(&d.event_type).expect("a string serialises");
    format!(
        r#"{{"id":"{}","type":{},"timestamp":"{}","data":{}}}"#,
        d.event_id,
        event_type,
        event_timestamp(d),
        d.payload_json
    )
}

/// The event's time as the envelope writes it.
pub fn event_timestamp(d: &Claimed) -> String {
    d.event_created_at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A secret that signs, as the endpoint's signature uses it.
enum Key {
    /// `v1` and `hmac_header`: the `whsec_` secret, and its decoded key.
    Hmac(String, SigningKey),
    /// `v1a`.
    Ed25519(PrivateKey),
}

impl Key {
    fn parse(signing: &Signing, secret: String) -> Result<Key, SecretError> {
        match signing {
            Signing::V1a => PrivateKey::parse(&secret).map(Key::Ed25519),
            Signing::V1 | Signing::HmacHeader { .. } => SigningKey::from_secret(&secret).map(|k| Key::Hmac(secret, k)),
        }
    }
}

/// A URL credential this worker cannot open: like a signing secret it
/// cannot open, a configuration fault the attempt records.
fn cannot_open_url(error: &crate::secrets::OpenError) -> (ErrorKind, String) {
    (ErrorKind::InvalidSecret, format!("the URL's credential cannot be opened: {error}"))
}

/// The keys that sign: the secret's, and during a rotation the previous
/// one's. A secret that cannot sign fails the attempt rather than send it
/// unsigned.
fn signing_keys(secret_keys: &KeyRing, d: &Claimed) -> Result<Vec<Key>, (ErrorKind, String)> {
    let cannot_sign =
        |e: &dyn std::fmt::Display| (ErrorKind::InvalidSecret, format!("the endpoint's secret cannot sign: {e}"));
    let current = secret_keys.open(&d.secret).map_err(|e| cannot_sign(&e))?;
    let current = Key::parse(&d.signing, current).map_err(|e| cannot_sign(&e))?;
    let previous =
        d.previous_secret.as_ref().and_then(|s| secret_keys.open(s).ok()).and_then(|s| Key::parse(&d.signing, s).ok());
    Ok(std::iter::once(current).chain(previous).collect())
}

fn request_headers(d: &Claimed, keys: &[Key], message: &Message) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    if let Some(custom) = d.headers.as_object() {
        for (name, value) in custom {
            let (Ok(name), Some(Ok(value))) =
                (HeaderName::from_bytes(name.as_bytes()), value.as_str().map(HeaderValue::from_str))
            else {
                return Err(format!("invalid custom header `{name}`"));
            };
            headers.insert(name, value);
        }
    }
    let timestamp = Utc::now().timestamp();
    let fixed = [
        ("content-type", message.content_type.to_owned()),
        ("webhook-id", message.webhook_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_str(&value).expect("ASCII header value"));
    }
    for (name, value) in &message.headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) else {
            return Err(format!("the transformation set an invalid header `{name}`"));
        };
        headers.insert(name, value);
    }
    match &d.signing {
        Signing::V1 | Signing::V1a => {
            let body = message.body.as_bytes();
            let signatures: Vec<String> = keys
                .iter()
                .map(|key| match key {
                    Key::Hmac(_, key) => key.sign(&message.webhook_id, timestamp, body),
                    Key::Ed25519(key) => key.sign(&message.webhook_id, timestamp, body),
                })
                .collect();
            let signature = signatures.join(" ");
            headers.insert("webhook-signature", HeaderValue::from_str(&signature).expect("ASCII header value"));
        }
        // The older convention has room for one signature: during a
        // rotation's overlap the previous secret's, which receivers still
        // hold, and the new one's from its end.
        Signing::HmacHeader { header, hash } => {
            let name = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| format!("invalid signature header `{header}`"))?;
            let Some(Key::Hmac(secret, _)) = keys.last() else { unreachable!("hmac_header keys are HMAC keys") };
            let signature = body_signature(secret, *hash, message.body.as_bytes());
            headers.insert(name, HeaderValue::from_str(&signature).expect("ASCII header value"));
        }
    }
    Ok(headers)
}

fn literal_ip(url: &reqwest::Url) -> Option<std::net::IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(v4.into()),
        url::Host::Ipv6(v6) => Some(v6.into()),
        url::Host::Domain(_) => None,
    }
}

/// The response headers as stored: the first `RESPONSE_HEADERS_MAX` of
/// them, within `RESPONSE_HEADERS_MAX_CHARS`, values cut to fit.
fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    let mut kept = serde_json::Map::new();
    let mut room = RESPONSE_HEADERS_MAX_CHARS;
    for (name, value) in headers.iter().take(RESPONSE_HEADERS_MAX) {
        let name = name.as_str(); // ASCII: bytes are characters
        let Some(value_room) = room.checked_sub(name.len()).filter(|r| *r > 0) else { break };
        let value = recordable(&String::from_utf8_lossy(value.as_bytes()), value_room);
        room = value_room - value.chars().count();
        // A repeated header keeps its first value.
        kept.entry(name.to_owned()).or_insert(serde_json::Value::String(value));
    }
    serde_json::Value::Object(kept)
}

async fn read_truncated(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < RESPONSE_READ_MAX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    recordable(&String::from_utf8_lossy(&bytes), RESPONSE_BODY_MAX_CHARS)
}

/// `text` as PostgreSQL can store it (U+0000 replaced by U+FFFD), cut to
/// `max_chars` characters.
pub fn recordable(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).map(|c| if c == '\0' { '\u{fffd}' } else { c }).collect()
}

/// Maps a transport failure to its SPEC error kind by walking the cause chain.
fn classify(error: reqwest::Error) -> (ErrorKind, String) {
    let mut kind = if error.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Connect };
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if cause.is::<BlockedAddress>() {
            kind = ErrorKind::BlockedAddress;
        } else if cause.is::<DnsFailed>() {
            kind = ErrorKind::Dns;
        } else if cause.is::<rustls::Error>() {
            kind = ErrorKind::Tls;
        } else if cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::TimedOut) {
            kind = ErrorKind::Timeout;
        }
        source = cause.source();
    }
    (kind, crate::telemetry::error_chain(&error))
}

impl Dispatcher {
    /// Sends `message` to a broker destination (see [`super::brokers`]).
    async fn publish(
        &self,
        broker: Broker,
        d: &Claimed,
        url: &reqwest::Url,
        message: &Message,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<Attempt, (ErrorKind, String)> {
        let publication = Publication {
            event_type: &d.event_type,
            webhook_id: &message.webhook_id,
            dedupe_id: format!("{}:{}", d.endpoint_id, message.webhook_id),
            headers: headers
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
                .collect(),
            body: message.body.as_bytes(),
        };
        match tokio::time::timeout(timeout, self.brokers.publish(broker, &self.policy, url, &publication)).await {
            Err(_) => Err((ErrorKind::Timeout, format!("the broker did not acknowledge within {timeout:?}"))),
            Ok(Err(failure)) => Err(failure),
            Ok(Ok(())) => Ok(Attempt {
                started_at: Utc::now(),
                duration: Duration::ZERO,
                status_code: None,
                response_headers: None,
                response_body: None,
                outcome: Outcome::Delivered,
            }),
        }
    }
}

/// The settings both HTTP clients share.
fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        // A proxy from the environment (HTTP_PROXY, ALL_PROXY) would
        // resolve and connect to the target itself, out of the guarded
        // resolver's sight: deliveries never go through one.
        .no_proxy()
}
