//! Verifying an inbound webhook on its raw bytes, by its source's scheme. No
//! IO: the receiver hands in headers, body and the time.
//!
//! - `standard_webhooks`: `webhook-id`, `webhook-timestamp` and
//!   `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` entries,
//!   keyed by a `whsec_` secret, or `v1a,<base64 ed25519>` ones, checked with
//!   a `whpk_` public key) over `"{id}.{timestamp}.{body}"`.
//! - `hmac_sha256`: HMAC-SHA256 of the body in a configurable header, hex or
//!   base64, with or without a `sha256=` prefix (GitHub's
//!   `X-Hub-Signature-256`, Shopify's `X-Shopify-Hmac-Sha256`).
//! - `stripe`: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]` over
//!   `"{t}.{body}"`, keyed by the whole `whsec_…` string.
//! - `none`: accepted as is.
//!
//! Signatures are compared in constant time (`Mac::verify_slice`), and
//! checked before timestamps, so a caller without the secret learns nothing
//! from the answer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::signing::{PUBLIC_KEY_PREFIX, SigningKey};

/// How a source's requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    StandardWebhooks,
    HmacSha256,
    Stripe,
    None,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s {
            "standard_webhooks" => Some(Scheme::StandardWebhooks),
            "hmac_sha256" => Some(Scheme::HmacSha256),
            "stripe" => Some(Scheme::Stripe),
            "none" => Some(Scheme::None),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::StandardWebhooks => "standard_webhooks",
            Scheme::HmacSha256 => "hmac_sha256",
            Scheme::Stripe => "stripe",
            Scheme::None => "none",
        }
    }
}

/// How an `hmac_sha256` signature is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub fn parse(s: &str) -> Option<Encoding> {
        match s {
            "hex" => Some(Encoding::Hex),
            "base64" => Some(Encoding::Base64),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Hex => "hex",
            Encoding::Base64 => "base64",
        }
    }
}

/// GitHub's header, the default for `hmac_sha256`.
pub const DEFAULT_SIGNATURE_HEADER: &str = "x-hub-signature-256";
const STRIPE_HEADER: &str = "stripe-signature";

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the `{0}` header is missing")]
    Missing(String),
    #[error("the `{0}` header is malformed")]
    Malformed(String),
    #[error("no signature matches")]
    BadSignature,
    #[error("the timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("the timestamp is {off_s} s off, beyond the source's tolerance of {tolerance_s} s")]
    OutsideTolerance { off_s: i64, tolerance_s: i64 },
}

impl Rejection {
    /// Not signed by the source's secret (401), rather than signed but not
    /// acceptable now (400: stale, future or unreadable timestamp).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Rejection::Missing(_) | Rejection::Malformed(_) | Rejection::BadSignature)
    }
}

/// Request headers, by lower-case name.
pub trait Headers {
    fn get_str(&self, name: &str) -> Option<&str>;
}

impl Headers for poem::http::HeaderMap {
    fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The delivery id header of providers known by their `hmac_sha256`
/// signature header, used when a source names none: GitHub's and Shopify's.
fn known_delivery_header(scheme: Scheme, signature_header: &str) -> Option<String> {
    if scheme != Scheme::HmacSha256 {
        return None;
    }
    let known = [("x-hub-signature-256", "x-github-delivery"), ("x-shopify-hmac-sha256", "x-shopify-webhook-id")];
    known.iter().find(|(signature, _)| signature_header.eq_ignore_ascii_case(signature)).map(|(_, id)| (*id).to_owned())
}

/// A source's verification, parsed once from its settings. `Debug` never
/// shows the key.
#[derive(Clone)]
pub struct Verifier {
    scheme: Scheme,
    key: Key,
    signature_header: String,
    encoding: Encoding,
    tolerance_s: i64,
    id_header: Option<String>,
}

#[derive(Clone)]
enum Key {
    None,
    Hmac(Vec<u8>),
    StandardWebhooks(SigningKey),
    StandardWebhooksPublic(VerifyingKey),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("scheme", &self.scheme).finish_non_exhaustive()
    }
}

/// A source's settings, as stored.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub scheme: Scheme,
    pub secret: Option<&'a str>,
    pub signature_header: Option<&'a str>,
    pub encoding: Encoding,
    pub tolerance_s: i64,
    pub id_header: Option<&'a str>,
}

impl Verifier {
    /// Fails with the reason when the secret does not suit the scheme.
    pub fn new(s: Settings<'_>) -> Result<Self, String> {
        let secret = s.secret.filter(|secret| !secret.is_empty());
        let key = match (s.scheme, secret) {
            (Scheme::None, _) => Key::None,
            (_, None) => return Err(format!("a `{}` source needs a secret", s.scheme.as_str())),
            (Scheme::StandardWebhooks, Some(secret)) => match secret.strip_prefix(PUBLIC_KEY_PREFIX) {
                Some(encoded) => {
                    let bytes: [u8; 32] = BASE64
                        .decode(encoded)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or("a `whpk_` key must be 32 bytes in base64")?;
                    Key::StandardWebhooksPublic(
                        VerifyingKey::from_bytes(&bytes).map_err(|_| "not an ed25519 public key".to_owned())?,
                    )
                }
                None => Key::StandardWebhooks(
                    SigningKey::from_secret(secret)
                        .map_err(|e| format!("{e} (or give the sender's `whpk_` public key for v1a signatures)"))?,
                ),
            },
            (Scheme::HmacSha256 | Scheme::Stripe, Some(secret)) => Key::Hmac(secret.as_bytes().to_vec()),
        };
        Ok(Verifier {
            scheme: s.scheme,
            key,
            signature_header: s.signature_header.unwrap_or(DEFAULT_SIGNATURE_HEADER).to_ascii_lowercase(),
            encoding: s.encoding,
            tolerance_s: s.tolerance_s,
            id_header: s
                .id_header
                .map(str::to_ascii_lowercase)
                .or_else(|| known_delivery_header(s.scheme, s.signature_header.unwrap_or(DEFAULT_SIGNATURE_HEADER))),
        })
    }

    /// Whether a provider's retry (or a replay of a captured request) is
    /// recognised and stored once: the scheme carries a delivery id, or a
    /// header with one is configured or known for the provider.
    pub fn dedupes(&self) -> bool {
        self.id_header.is_some() || matches!(self.scheme, Scheme::StandardWebhooks | Scheme::Stripe)
    }

    /// Checks the request's signature, then its timestamp against `now_s`.
    pub fn verify(&self, headers: &impl Headers, body: &[u8], now_s: i64) -> Result<(), Rejection> {
        match (&self.key, self.scheme) {
            (Key::None, _) => Ok(()),
            (Key::StandardWebhooks(_) | Key::StandardWebhooksPublic(_), _) => {
                self.verify_standard_webhooks(headers, body, now_s)
            }
            (Key::Hmac(key), Scheme::Stripe) => self.verify_stripe(key, headers, body, now_s),
            (Key::Hmac(key), _) => self.verify_hmac(key, headers, body),
        }
    }

    /// The provider's id for this delivery, to store a retry once: the
    /// configured header, or the scheme's own (`webhook-id`; a Stripe event's
    /// `id`). `None` when the source has none.
    pub fn delivery_id(&self, headers: &impl Headers, payload: &serde_json::Value) -> Option<String> {
        let id = match (&self.id_header, self.scheme) {
            (Some(header), _) => headers.get_str(header).map(str::to_owned),
            (None, Scheme::StandardWebhooks) => headers.get_str("webhook-id").map(str::to_owned),
            (None, Scheme::Stripe) => payload.get("id").and_then(|id| id.as_str()).map(str::to_owned),
            (None, _) => None,
        };
        id.filter(|id| !id.is_empty())
    }

    fn verify_standard_webhooks(&self, headers: &impl Headers, body: &[u8], now_s: i64) -> Result<(), Rejection> {
        let id = required(headers, "webhook-id")?;
        let timestamp = required(headers, "webhook-timestamp")?;
        let signatures = required(headers, "webhook-signature")?;
        // The signed content holds the timestamp as sent.
        let signed_at: i64 = timestamp.trim().parse().map_err(|_| Rejection::BadTimestamp)?;
        let valid = match &self.key {
            Key::StandardWebhooks(key) => key.verify(id, signed_at, body, signatures),
            Key::StandardWebhooksPublic(key) => {
                let content = [id.as_bytes(), b".", timestamp.trim().as_bytes(), b".", body].concat();
                signatures.split(' ').filter_map(|entry| entry.strip_prefix("v1a,")).any(|sig| {
                    BASE64
                        .decode(sig)
                        .ok()
                        .and_then(|bytes| Signature::from_slice(&bytes).ok())
                        .is_some_and(|sig| key.verify(&content, &sig).is_ok())
                })
            }
            _ => unreachable!("a Standard Webhooks key"),
        };
        if !valid {
            return Err(Rejection::BadSignature);
        }
        self.check_freshness(signed_at, now_s)
    }

    fn verify_stripe(&self, key: &[u8], headers: &impl Headers, body: &[u8], now_s: i64) -> Result<(), Rejection> {
        let header = required(headers, STRIPE_HEADER)?;
        let malformed = || Rejection::Malformed(STRIPE_HEADER.to_owned());
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header.split(',') {
            match item.trim().split_once('=') {
                Some(("t", t)) => timestamp = Some(t),
                Some(("v1", sig)) => signatures.push(sig),
                Some(_) => {} // v0 and schemes to come
                None => return Err(malformed()),
            }
        }
        let timestamp = timestamp.ok_or_else(malformed)?;
        let signed_at: i64 = timestamp.parse().map_err(|_| malformed())?;
        let mac = hmac(key, &[timestamp.as_bytes(), b".", body]);
        let valid =
            signatures.iter().any(|sig| hex::decode(sig).is_ok_and(|sig| mac.clone().verify_slice(&sig).is_ok()));
        if !valid {
            return Err(Rejection::BadSignature);
        }
        self.check_freshness(signed_at, now_s)
    }

    fn verify_hmac(&self, key: &[u8], headers: &impl Headers, body: &[u8]) -> Result<(), Rejection> {
        let value = required(headers, &self.signature_header)?.trim();
        let value = value.strip_prefix("sha256=").unwrap_or(value);
        let signature = match self.encoding {
            Encoding::Hex => hex::decode(value).ok(),
            Encoding::Base64 => BASE64.decode(value).ok(),
        }
        .ok_or_else(|| Rejection::Malformed(self.signature_header.clone()))?;
        hmac(key, &[body]).verify_slice(&signature).map_err(|_| Rejection::BadSignature)
    }

    fn check_freshness(&self, signed_at: i64, now_s: i64) -> Result<(), Rejection> {
        let off_s = now_s.saturating_sub(signed_at).saturating_abs();
        if off_s > self.tolerance_s {
            return Err(Rejection::OutsideTolerance { off_s, tolerance_s: self.tolerance_s });
        }
        Ok(())
    }
}

fn required<'h>(headers: &'h impl Headers, name: &str) -> Result<&'h str, Rejection> {
    headers.get_str(name).ok_or_else(|| Rejection::Missing(name.to_owned()))
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    struct H(Vec<(&'static str, String)>);
    impl Headers for H {
        fn get_str(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
        }
    }

    fn settings(scheme: Scheme, secret: &str) -> Settings<'_> {
        Settings {
            scheme,
            secret: Some(secret),
            signature_header: None,
            encoding: Encoding::Hex,
            tolerance_s: 300,
            id_header: None,
        }
    }

    // The Standard Webhooks specification's published test vector.
    const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SW_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SW_TIMESTAMP: i64 = 1614265330;
    const SW_BODY: &str = r#"{"test": 2432232314}"#;
    const SW_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn sw_headers(signature: &str, timestamp: i64) -> H {
        H(vec![
            ("webhook-id", SW_ID.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature.to_owned()),
        ])
    }

    #[test]
    fn standard_webhooks_test_vector_verifies_and_tampering_does_not() {
        let v = Verifier::new(settings(Scheme::StandardWebhooks, SW_SECRET)).unwrap();
        let now = SW_TIMESTAMP + 10;
        assert_eq!(v.verify(&sw_headers(SW_SIGNATURE, SW_TIMESTAMP), SW_BODY.as_bytes(), now), Ok(()));
        let rotated = format!("v1,bm90IHRoaXM= {SW_SIGNATURE}");
        assert_eq!(v.verify(&sw_headers(&rotated, SW_TIMESTAMP), SW_BODY.as_bytes(), now), Ok(()));
        assert_eq!(v.verify(&sw_headers(SW_SIGNATURE, SW_TIMESTAMP), b"{}", now), Err(Rejection::BadSignature));
        assert_eq!(
            v.verify(&sw_headers(SW_SIGNATURE, SW_TIMESTAMP + 1), SW_BODY.as_bytes(), now),
            Err(Rejection::BadSignature),
            "the timestamp is signed"
        );
        assert_eq!(
            v.verify(&H(vec![("webhook-id", SW_ID.into())]), SW_BODY.as_bytes(), now),
            Err(Rejection::Missing("webhook-timestamp".into()))
        );
    }

    #[test]
    fn timestamps_beyond_the_tolerance_either_way_are_refused() {
        let v = Verifier::new(settings(Scheme::StandardWebhooks, SW_SECRET)).unwrap();
        let headers = sw_headers(SW_SIGNATURE, SW_TIMESTAMP);
        let stale = v.verify(&headers, SW_BODY.as_bytes(), SW_TIMESTAMP + 301).unwrap_err();
        assert_eq!(stale, Rejection::OutsideTolerance { off_s: 301, tolerance_s: 300 });
        assert!(!stale.is_unauthenticated());
        let future = v.verify(&headers, SW_BODY.as_bytes(), SW_TIMESTAMP - 301).unwrap_err();
        assert_eq!(future, Rejection::OutsideTolerance { off_s: 301, tolerance_s: 300 });
        assert_eq!(v.verify(&headers, SW_BODY.as_bytes(), SW_TIMESTAMP - 300), Ok(()));
    }

    #[test]
    fn standard_webhooks_v1a_verifies_with_the_public_key() {
        let signer = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let public = format!("whpk_{}", BASE64.encode(signer.verifying_key().as_bytes()));
        let v = Verifier::new(settings(Scheme::StandardWebhooks, &public)).unwrap();
        let content = format!("{SW_ID}.{SW_TIMESTAMP}.{SW_BODY}");
        let signature = ed25519_dalek::Signer::sign(&signer, content.as_bytes());
        let header = format!("v1a,{}", BASE64.encode(signature.to_bytes()));
        assert_eq!(v.verify(&sw_headers(&header, SW_TIMESTAMP), SW_BODY.as_bytes(), SW_TIMESTAMP), Ok(()));
        assert_eq!(
            v.verify(&sw_headers(&header, SW_TIMESTAMP), b"tampered", SW_TIMESTAMP),
            Err(Rejection::BadSignature)
        );
        assert_eq!(
            v.verify(&sw_headers(SW_SIGNATURE, SW_TIMESTAMP), SW_BODY.as_bytes(), SW_TIMESTAMP),
            Err(Rejection::BadSignature),
            "a public key checks only v1a entries"
        );
    }

    #[test]
    fn github_documented_example_verifies() {
        // docs.github.com, "Validating webhook deliveries".
        let v = Verifier::new(settings(Scheme::HmacSha256, "It's a Secret to Everybody")).unwrap();
        let header = |value: &str| H(vec![("x-hub-signature-256", value.to_owned())]);
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(v.verify(&header(good), b"Hello, World!", 0), Ok(()));
        assert_eq!(v.verify(&header(good), b"Hello, World?", 0), Err(Rejection::BadSignature));
        assert_eq!(
            v.verify(&header("sha256=zz"), b"Hello, World!", 0),
            Err(Rejection::Malformed("x-hub-signature-256".into()))
        );
        assert_eq!(v.verify(&H(vec![]), b"Hello, World!", 0), Err(Rejection::Missing("x-hub-signature-256".into())));
    }

    #[test]
    fn shopify_style_base64_in_its_own_header_verifies() {
        // Computed independently: Python's hmac.new(b"hush", b'{"id":1}', sha256), base64.
        let v = Verifier::new(Settings {
            signature_header: Some("X-Shopify-Hmac-Sha256"),
            encoding: Encoding::Base64,
            ..settings(Scheme::HmacSha256, "hush")
        })
        .unwrap();
        let header = |value: &str| H(vec![("x-shopify-hmac-sha256", value.to_owned())]);
        let good = "VnKUjZsLuN5iZWjn5EntcBVCF9kMN43LglzCE1/GSeY=";
        assert_eq!(v.verify(&header(good), br#"{"id":1}"#, 0), Ok(()));
        assert_eq!(v.verify(&header(good), br#"{"id":2}"#, 0), Err(Rejection::BadSignature));
    }

    #[test]
    fn stripe_signatures_verify_with_any_v1_and_the_timestamp_is_checked() {
        // Computed independently: Python's hmac over "1700000000.{body}" with
        // the whole whsec_ string as the key.
        let secret = "whsec_test_secret";
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let good = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";
        let v = Verifier::new(settings(Scheme::Stripe, secret)).unwrap();
        let header = |value: String| H(vec![("stripe-signature", value)]);
        let now = 1_700_000_010;
        assert_eq!(v.verify(&header(format!("t=1700000000,v1={good}")), body, now), Ok(()));
        assert_eq!(v.verify(&header(format!("t=1700000000,v1=00,v1={good},v0=ff")), body, now), Ok(()));
        assert_eq!(v.verify(&header(format!("t=1700000001,v1={good}")), body, now), Err(Rejection::BadSignature));
        assert_eq!(
            v.verify(&header(format!("t=1700000000,v1={good}")), body, now + 600),
            Err(Rejection::OutsideTolerance { off_s: 610, tolerance_s: 300 })
        );
        assert_eq!(
            v.verify(&header(format!("v1={good}")), body, now),
            Err(Rejection::Malformed("stripe-signature".into()))
        );
    }

    #[test]
    fn delivery_ids_come_from_the_scheme_or_the_configured_header() {
        let payload = serde_json::json!({"id": "evt_9"});
        let sw = Verifier::new(settings(Scheme::StandardWebhooks, SW_SECRET)).unwrap();
        assert_eq!(sw.delivery_id(&sw_headers("", 0), &payload).as_deref(), Some(SW_ID));
        let stripe = Verifier::new(settings(Scheme::Stripe, "whsec_x")).unwrap();
        assert_eq!(stripe.delivery_id(&H(vec![]), &payload).as_deref(), Some("evt_9"));
        let github =
            Verifier::new(Settings { id_header: Some("X-GitHub-Delivery"), ..settings(Scheme::HmacSha256, "s") })
                .unwrap();
        let headers = H(vec![("x-github-delivery", "72d3162e".into())]);
        assert_eq!(github.delivery_id(&headers, &payload).as_deref(), Some("72d3162e"));
        let github_default = Verifier::new(settings(Scheme::HmacSha256, "s")).unwrap();
        assert_eq!(github_default.delivery_id(&headers, &payload).as_deref(), Some("72d3162e"), "known provider");
        assert!(github_default.dedupes());
        let shopify = Verifier::new(Settings {
            signature_header: Some("X-Shopify-Hmac-Sha256"),
            ..settings(Scheme::HmacSha256, "s")
        })
        .unwrap();
        let shopify_headers = H(vec![("x-shopify-webhook-id", "b54557e4".into())]);
        assert_eq!(shopify.delivery_id(&shopify_headers, &payload).as_deref(), Some("b54557e4"));
        let unknown =
            Verifier::new(Settings { signature_header: Some("X-Acme-Signature"), ..settings(Scheme::HmacSha256, "s") })
                .unwrap();
        assert_eq!(unknown.delivery_id(&headers, &payload), None);
        assert!(!unknown.dedupes());
    }

    #[test]
    fn secrets_must_suit_the_scheme_and_never_show() {
        assert!(Verifier::new(settings(Scheme::StandardWebhooks, "plain")).is_err());
        assert!(Verifier::new(settings(Scheme::StandardWebhooks, "whpk_AAAA")).is_err());
        assert!(Verifier::new(Settings { secret: None, ..settings(Scheme::Stripe, "") }).is_err());
        assert!(Verifier::new(Settings { secret: None, ..settings(Scheme::None, "") }).is_ok());
        let v = Verifier::new(settings(Scheme::HmacSha256, "It's a Secret to Everybody")).unwrap();
        assert!(!format!("{v:?}").contains("Secret"));
    }
}
