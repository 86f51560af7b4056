//! Standard Webhooks v1 signatures (standardwebhooks.com): HMAC-SHA256 over
//! `"{id}.{timestamp}.{body}"`, keyed by the base64 part of a `whsec_` secret,
//! sent as `v1,<base64>`; several space-separated during a secret rotation.
//!
//! Or `v1a`: ed25519 over the same content, `v1a,<base64>`; hookline holds
//! the private key (`whsk_<base64 seed>`), receivers verify with its public
//! key (`whpk_<base64>`), which is what the API shows.
//!
//! An endpoint may instead ask for the older convention receivers were
//! built for (`hmac_header`): the HMAC of the body alone, `sha256=<hex>` or
//! `sha512=<hex>`, in one header of its choosing, keyed — as those
//! receivers key it — by the secret as written (`whsec_…`, all of it).

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as BASE64};

/// Secrets are decoded leniently about the unused bits of their last base64
/// character, as other Standard Webhooks libraries do.
const SECRET_BASE64: GeneralPurpose =
    GeneralPurpose::new(&base64::alphabet::STANDARD, GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true));
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Sha256, Sha512};

const SECRET_PREFIX: &str = "whsec_";
const PRIVATE_KEY_PREFIX: &str = "whsk_";
pub const PUBLIC_KEY_PREFIX: &str = "whpk_";
/// The header of `hmac_header` signatures unless the endpoint names another.
pub const DEFAULT_SIGNATURE_HEADER: &str = "X-Hookline-Signature";

/// How an endpoint's requests are signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signing {
    /// Standard Webhooks `v1` in `webhook-signature`.
    V1,
    /// Standard Webhooks `v1a` (ed25519) in `webhook-signature`.
    V1a,
    /// `<hash>=<hex HMAC of the body>` in `header`.
    HmacHeader { header: String, hash: BodyHash },
}

/// The hash of an `hmac_header` signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyHash {
    Sha256,
    Sha512,
}

impl BodyHash {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Self::Sha256),
            "sha512" => Some(Self::Sha512),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }
}

impl Signing {
    /// From an endpoint's `signature`, `signature_header` and
    /// `signature_hash` columns (anything unknown signs `v1`).
    pub fn from_columns(signature: Option<&str>, header: Option<&str>, hash: Option<&str>) -> Self {
        match signature {
            Some("hmac_header") => Signing::HmacHeader {
                header: header.unwrap_or(DEFAULT_SIGNATURE_HEADER).to_owned(),
                hash: hash.and_then(BodyHash::parse).unwrap_or(BodyHash::Sha256),
            },
            Some("v1a") => Signing::V1a,
            _ => Signing::V1,
        }
    }
}

/// A new `v1a` private key: `whsk_` and a 32-byte ed25519 seed in base64.
pub fn new_private_key() -> String {
    format!("{PRIVATE_KEY_PREFIX}{}", BASE64.encode(rand::random::<[u8; 32]>()))
}

/// A `v1a` signing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct PrivateKey(ed25519_dalek::SigningKey);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(***)")
    }
}

impl PrivateKey {
    /// Parses a `whsk_<base64>` key: a 32-byte seed (or 64 bytes, seed and
    /// public key, as some libraries write it).
    pub fn parse(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.strip_prefix(PRIVATE_KEY_PREFIX).ok_or(SecretError::MissingPrefix)?;
        let bytes = SECRET_BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        let seed: [u8; 32] = match bytes.len() {
            32 | 64 => bytes[..32].try_into().expect("32 bytes"),
            _ => return Err(SecretError::BadKeyLength),
        };
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        if bytes.len() == 64 && bytes[32..] != key.verifying_key().as_bytes()[..] {
            return Err(SecretError::MismatchedKeyPair);
        }
        Ok(Self(key))
    }

    /// `whpk_<base64>`: what receivers verify with.
    pub fn public_key(&self) -> String {
        format!("{PUBLIC_KEY_PREFIX}{}", BASE64.encode(self.0.verifying_key().as_bytes()))
    }

    /// `v1a,<base64 signature>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        use ed25519_dalek::Signer as _;
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        format!("v1a,{}", BASE64.encode(self.0.sign(&content).to_bytes()))
    }
}

/// A secret as the API shows it: a `v1a` private key as its public key
/// (receivers need no more, and hookline never hands it out), any other
/// as it is.
pub fn shown(secret: &str) -> String {
    match PrivateKey::parse(secret) {
        Ok(key) => key.public_key(),
        // Never hand out what looks like a private key, even a broken one.
        Err(_) if secret.starts_with(PRIVATE_KEY_PREFIX) => "********".to_owned(),
        Err(_) => secret.to_owned(),
    }
}

/// Whether `secret` is of the kind `signature` signs with (a `whsk_`
/// private key for `v1a`, a `whsec_` secret otherwise).
pub fn suits(secret: &str, signature: &str) -> bool {
    secret.starts_with(PRIVATE_KEY_PREFIX) == (signature == "v1a")
}

/// A decoded signing key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SecretError {
    #[error("secret must start with `whsec_` (`whsk_` for v1a)")]
    MissingPrefix,
    #[error("secret is not valid base64 after `whsec_`")]
    NotBase64,
    #[error("secret must hold between 24 and 64 bytes")]
    BadLength,
    #[error("a `whsk_` key must hold a 32-byte seed (or 64 bytes: seed and public key)")]
    BadKeyLength,
    #[error("the `whsk_` key's public half does not match its seed")]
    MismatchedKeyPair,
}

/// A new secret: `whsec_` and 32 random bytes in base64.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", BASE64.encode(rand::random::<[u8; 32]>()))
}

impl SigningKey {
    /// Parses a `whsec_<base64>` secret.
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or(SecretError::MissingPrefix)?;
        let key = SECRET_BASE64.decode(encoded).map_err(|_| SecretError::NotBase64)?;
        if !(24..=64).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(Self(key))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64 signature>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let digest = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", BASE64.encode(digest))
    }

    /// Does any `v1,` entry of a `webhook-signature` header match? Constant time per entry.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .any(|sig| BASE64.decode(sig).is_ok_and(|sig| self.mac(id, timestamp, body).verify_slice(&sig).is_ok()))
    }
}

/// `sha256=<hex>` (or `sha512=`): the HMAC of the body alone, keyed by
/// `secret` as written.
pub fn body_signature(secret: &str, hash: BodyHash, body: &[u8]) -> String {
    fn mac<M: Mac + KeyInit>(key: &[u8], body: &[u8]) -> Vec<u8> {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(body);
        mac.finalize().into_bytes().to_vec()
    }
    let digest = match hash {
        BodyHash::Sha256 => mac::<Hmac<Sha256>>(secret.as_bytes(), body),
        BodyHash::Sha512 => mac::<Hmac<Sha512>>(secret.as_bytes(), body),
    };
    format!("{}={}", hash.as_str(), hex::encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The Standard Webhooks specification's published test vector.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn signs_the_published_test_vector() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn verifies_any_of_several_signatures() {
        let key = SigningKey::from_secret(SECRET).unwrap();
        let header = format!("v1,bm90IGl0 {EXPECTED}");
        assert!(key.verify(ID, TIMESTAMP, BODY.as_bytes(), &header));
        assert!(!key.verify(ID, TIMESTAMP + 1, BODY.as_bytes(), &header));
        assert!(!key.verify(ID, TIMESTAMP, b"{}", &header));
    }

    #[test]
    fn signs_bodies_as_receivers_of_the_older_convention_expect() {
        // GitHub's published example for X-Hub-Signature-256.
        assert_eq!(
            body_signature("It's a Secret to Everybody", BodyHash::Sha256, b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        // RFC 4231, test case 2.
        assert_eq!(
            body_signature("Jefe", BodyHash::Sha512, b"what do ya want for nothing?"),
            "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn v1a_signs_with_ed25519_and_shows_the_public_key() {
        // RFC 8032 test 1's key.
        let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
        let secret = format!("whsk_{}", BASE64.encode(&seed));
        let key = PrivateKey::parse(&secret).unwrap();
        let public = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
        assert_eq!(key.public_key(), format!("whpk_{}", BASE64.encode(&public)));
        assert_eq!(shown(&secret), key.public_key());
        assert_eq!(shown(SECRET), SECRET);
        let signature = key.sign(ID, TIMESTAMP, BODY.as_bytes());
        let bytes: [u8; 64] = BASE64.decode(signature.strip_prefix("v1a,").unwrap()).unwrap().try_into().unwrap();
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&public.clone().try_into().unwrap()).unwrap();
        let content = format!("{ID}.{TIMESTAMP}.{BODY}");
        verifying.verify_strict(content.as_bytes(), &ed25519_dalek::Signature::from_bytes(&bytes)).unwrap();
        assert!(PrivateKey::parse("whsk_AAAA").is_err());
        assert!(PrivateKey::parse(SECRET).is_err());
        assert_eq!(shown("whsk_AAAA"), "********", "a broken private key is not shown either");
        let mut pair = seed.clone();
        pair.extend_from_slice(&public);
        assert!(PrivateKey::parse(&format!("whsk_{}", BASE64.encode(&pair))).is_ok());
        pair[40] ^= 1;
        assert_eq!(
            PrivateKey::parse(&format!("whsk_{}", BASE64.encode(&pair))).unwrap_err(),
            SecretError::MismatchedKeyPair
        );
    }

    #[test]
    fn an_endpoints_columns_say_how_it_signs() {
        assert_eq!(Signing::from_columns(Some("v1"), None, Some("sha256")), Signing::V1);
        assert_eq!(
            Signing::from_columns(Some("hmac_header"), None, Some("sha512")),
            Signing::HmacHeader { header: DEFAULT_SIGNATURE_HEADER.to_owned(), hash: BodyHash::Sha512 }
        );
    }

    #[test]
    fn rotation_header_carries_one_signature_per_key() {
        let old = SigningKey::from_secret(SECRET).unwrap();
        let new = SigningKey::from_secret("whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=").unwrap();
        // As the worker writes it during a rotation: space-separated.
        let header = [&new, &old].map(|k| k.sign(ID, TIMESTAMP, BODY.as_bytes())).join(" ");
        assert!(header.ends_with(EXPECTED));
        assert!(new.verify(ID, TIMESTAMP, BODY.as_bytes(), &header));
        assert_eq!(header.split(' ').count(), 2);
    }

    #[test]
    fn rejects_malformed_secrets() {
        assert_eq!(SigningKey::from_secret("MfKQ9r8GKY").unwrap_err(), SecretError::MissingPrefix);
        assert_eq!(SigningKey::from_secret("whsec_!!!").unwrap_err(), SecretError::NotBase64);
        assert_eq!(SigningKey::from_secret("whsec_YWJj").unwrap_err(), SecretError::BadLength);
        assert!(!format!("{:?}", SigningKey::from_secret(SECRET).unwrap()).contains("MfKQ"));
    }
}
