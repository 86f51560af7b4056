//! Secrets at rest — endpoints' signing secrets and inbound sources'
//! secrets: stored sealed with AES-256-GCM under a key from
//! HOOKLINE_SECRET_KEY, so a database dump alone cannot sign a webhook.
//!
//! A sealed value reads `aes256gcm:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`.
//! The key id (the first 8 hex digits of the key's SHA-256) names the key that
//! opens it, so several keys can be configured at once: the first seals, all
//! open, and `hookline secrets rotate-key` re-seals what older keys sealed. A
//! stored value without the prefix is plaintext, written by SQL (`INSERT
//! INTO hookline.endpoints`) or before keys existed; it reads as it is until
//! a worker seals it.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use postgres_types::{FromSql, ToSql};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

pub const SEALED_PREFIX: &str = "aes256gcm:";
const KEY_LEN: usize = 32;

/// A secret as the database holds it: sealed, or (from SQL, or from before
/// keys existed) plaintext. Only a [`KeyRing`] turns it into the secret,
/// and its `Debug` never shows either.
#[derive(Clone, PartialEq, Eq, ToSql, FromSql)]
#[postgres(transparent)]
pub struct StoredSecret(String);

impl StoredSecret {
    /// The id of the key that sealed it; `None` when it is plaintext.
    pub fn key_id(&self) -> Option<&str> {
        self.0.strip_prefix(SEALED_PREFIX)?.split(':').next()
    }

    /// A value read from or written to the database by hand (tests, SQL).
    pub fn from_stored(text: String) -> Self {
        StoredSecret(text)
    }
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.key_id() {
            Some(id) => write!(f, "StoredSecret(sealed by {id})"),
            None => f.write_str("StoredSecret(plaintext ***)"),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpenError {
    #[error("sealed with key {0}, which HOOKLINE_SECRET_KEY does not hold")]
    UnknownKey(String),
    #[error("sealed value is damaged or was sealed by another key")]
    Damaged,
}

struct Key {
    id: String,
    aead: LessSafeKey,
}

/// The configured keys, the sealing one first. Empty only where no key is
/// required (tests, embedding); it then stores secrets as they are.
#[derive(Clone, Default)]
pub struct KeyRing(Arc<[Key]>);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter().map(|k| &k.id)).finish()
    }
}

impl KeyRing {
    /// Comma-separated keys, each 32 bytes in base64. Errors never repeat a key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let keys = text
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(at, encoded)| {
                let bytes = [&STANDARD, &URL_SAFE, &URL_SAFE_NO_PAD]
                    .iter()
                    .find_map(|engine| engine.decode(encoded).ok())
                    .filter(|bytes| bytes.len() == KEY_LEN)
                    .ok_or_else(|| format!("key {} is not 32 bytes in base64", at + 1))?;
                Ok(Key::new(&bytes))
            })
            .collect::<Result<Vec<_>, String>>()?;
        if keys.is_empty() {
            return Err("holds no key".to_owned());
        }
        Ok(KeyRing(keys.into()))
    }

    /// A new random key, base64, for HOOKLINE_SECRET_KEY.
    pub fn generate_key() -> String {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new().fill(&mut key).expect("the system's random source works");
        STANDARD.encode(key)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The id of the key that seals, if there is one.
    pub fn sealing_key_id(&self) -> Option<&str> {
        self.0.first().map(|k| k.id.as_str())
    }

    pub fn holds(&self, key_id: &str) -> bool {
        self.0.iter().any(|k| k.id == key_id)
    }

    /// Seals with the first key (stores as it is when the ring is empty).
    pub fn seal(&self, secret: &str) -> StoredSecret {
        let Some(key) = self.0.first() else {
            return StoredSecret(secret.to_owned());
        };
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).expect("the system's random source works");
        let mut sealed = secret.as_bytes().to_vec();
        key.aead
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut sealed)
            .expect("a secret is far below AES-GCM's length limit");
        let mut blob = nonce.to_vec();
        blob.append(&mut sealed);
        StoredSecret(format!("{SEALED_PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(blob)))
    }

    /// `url` with its credential — the password, else a user name alone,
    /// which brokers take as a token — sealed in place (percent-encoded:
    /// `amqp://app:aes256gcm%3A…@host`). A URL without one, one already
    /// sealed, or any URL when the ring is empty, stays as it is.
    pub fn seal_url(&self, url: &str) -> String {
        let Ok(mut parsed) = url::Url::parse(url) else {
            return url.to_owned();
        };
        match url_credential(&parsed) {
            Some((part, credential, false)) if !self.is_empty() => {
                set_url_credential(&mut parsed, part, &self.seal(&credential).0);
                parsed.to_string()
            }
            _ => url.to_owned(),
        }
    }

    /// Whether `url`'s credential reads as a sealed value. A client must never
    /// give one: the worker would open it and send it to the URL's host.
    pub fn url_credential_is_sealed(url: &str) -> bool {
        url::Url::parse(url).ok().and_then(|u| url_credential(&u)).is_some_and(|(_, _, sealed)| sealed)
    }

    /// `url` with its credential opened, as the receiver or broker needs it
    /// (a plaintext one, from SQL not yet sealed, as it is).
    pub fn open_url<'a>(&self, url: &'a str) -> Result<std::borrow::Cow<'a, str>, OpenError> {
        // Most URLs hold none: no parse on the way to every request.
        if !url.contains("aes256gcm%3A") {
            return Ok(url.into());
        }
        let Ok(mut parsed) = url::Url::parse(url) else {
            return Ok(url.into());
        };
        match url_credential(&parsed) {
            Some((part, credential, true)) => {
                let sealed = percent_encoding::percent_decode_str(&credential).decode_utf8_lossy().into_owned();
                set_url_credential(&mut parsed, part, &self.open(&StoredSecret(sealed))?);
                Ok(parsed.to_string().into())
            }
            _ => Ok(url.into()),
        }
    }

    /// The secret a stored value holds.
    pub fn open(&self, stored: &StoredSecret) -> Result<String, OpenError> {
        let Some(sealed) = stored.0.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.0.clone());
        };
        let (id, encoded) = sealed.split_once(':').ok_or(OpenError::Damaged)?;
        let key = self.0.iter().find(|k| k.id == id).ok_or_else(|| OpenError::UnknownKey(id.to_owned()))?;
        let mut blob = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| OpenError::Damaged)?;
        if blob.len() < NONCE_LEN {
            return Err(OpenError::Damaged);
        }
        let mut ciphertext = blob.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&blob).map_err(|_| OpenError::Damaged)?;
        let secret = key.aead.open_in_place(nonce, Aad::empty(), &mut ciphertext).map_err(|_| OpenError::Damaged)?;
        String::from_utf8(secret.to_vec()).map_err(|_| OpenError::Damaged)
    }
}

impl Key {
    fn new(bytes: &[u8]) -> Self {
        let id = hex::encode(&Sha256::digest(bytes)[..4]);
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes is an AES-256 key"));
        Key { id, aead }
    }
}

/// Which part of a URL holds its credential.
#[derive(Clone, Copy)]
enum UrlPart {
    Password,
    Username,
}

/// A URL's credential as the URL writes it (percent-encoded: what is sealed
/// is that text, so opening gives back the very URL), whether it is sealed,
/// and where it is.
fn url_credential(url: &url::Url) -> Option<(UrlPart, String, bool)> {
    let (part, written) = match url.password() {
        Some(password) => (UrlPart::Password, password),
        None if !url.username().is_empty() => (UrlPart::Username, url.username()),
        None => return None,
    };
    let sealed = percent_encoding::percent_decode_str(written).decode_utf8_lossy().starts_with(SEALED_PREFIX);
    Some((part, written.to_owned(), sealed))
}

/// Sets a credential; the `url` crate percent-encodes what needs it.
fn set_url_credential(url: &mut url::Url, part: UrlPart, value: &str) {
    let _ = match part {
        UrlPart::Password => url.set_password(Some(value)),
        UrlPart::Username => url.set_username(value),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_urls_credential_is_sealed_in_place_and_opened_back() {
        let ring = KeyRing::parse(&KeyRing::generate_key()).unwrap();
        for url in [
            "amqp://app:p%40ss:w0rd@rabbit.internal:5672/%2f?exchange=events",
            "redis://:s3cret@cache:6379/0?stream=hooks",
            "nats://t0ken-only@nats:4222/hooks",
            "https://user:pa%2Fss@example.com/hook",
        ] {
            let sealed = ring.seal_url(url);
            assert!(sealed.contains("aes256gcm%3A"), "{sealed}");
            assert!(!sealed.contains("ss:w0rd") && !sealed.contains("s3cret") && !sealed.contains("t0ken"), "{sealed}");
            assert_eq!(ring.seal_url(&sealed), sealed, "sealed once");
            assert_eq!(ring.open_url(&sealed).unwrap(), url::Url::parse(url).unwrap().to_string());
        }
        assert_eq!(ring.seal_url("https://example.com/hook"), "https://example.com/hook");
        assert_eq!(KeyRing::default().seal_url("redis://:x@h/0"), "redis://:x@h/0", "no key, nothing sealed");
        assert_eq!(ring.open_url("redis://:plain@h/0").unwrap(), "redis://:plain@h/0");
    }

    #[test]
    fn seals_and_opens() {
        let ring = KeyRing::parse(&KeyRing::generate_key()).unwrap();
        let stored = ring.seal(SECRET);
        assert!(stored.0.starts_with(SEALED_PREFIX));
        assert!(!stored.0.contains("MfKQ"));
        assert_eq!(stored.key_id(), ring.sealing_key_id());
        assert_eq!(ring.open(&stored).unwrap(), SECRET);
        assert_ne!(ring.seal(SECRET), stored, "each seal takes a fresh nonce");
    }

    #[test]
    fn the_first_key_seals_and_every_key_opens() {
        let (old, new) = (KeyRing::generate_key(), KeyRing::generate_key());
        let sealed_by_old = KeyRing::parse(&old).unwrap().seal(SECRET);
        let both = KeyRing::parse(&format!("{new}, {old}")).unwrap();
        assert_eq!(both.open(&sealed_by_old).unwrap(), SECRET);
        assert_ne!(both.seal(SECRET).key_id(), sealed_by_old.key_id());
        let only_new = KeyRing::parse(&new).unwrap();
        let id = sealed_by_old.key_id().unwrap().to_owned();
        assert_eq!(only_new.open(&sealed_by_old), Err(OpenError::UnknownKey(id)));
    }

    #[test]
    fn tampering_is_detected() {
        let ring = KeyRing::parse(&KeyRing::generate_key()).unwrap();
        let stored = ring.seal(SECRET).0;
        let last = stored.chars().last().unwrap();
        let flipped = format!("{}{}", &stored[..stored.len() - 1], if last == 'A' { 'B' } else { 'A' });
        assert_eq!(ring.open(&StoredSecret(flipped)), Err(OpenError::Damaged));
        let id = ring.sealing_key_id().unwrap();
        assert_eq!(ring.open(&StoredSecret(format!("{SEALED_PREFIX}{id}:AAAA"))), Err(OpenError::Damaged));
    }

    #[test]
    fn plaintext_reads_as_it_is_and_an_empty_ring_stores_as_it_is() {
        let plain = StoredSecret(SECRET.to_owned());
        assert_eq!(plain.key_id(), None);
        assert_eq!(KeyRing::parse(&KeyRing::generate_key()).unwrap().open(&plain).unwrap(), SECRET);
        assert_eq!(KeyRing::default().seal(SECRET), plain);
    }

    #[test]
    fn bad_keys_are_named_by_position_and_never_shown() {
        let good = KeyRing::generate_key();
        let error = KeyRing::parse(&format!("{good},c2hvcnQ=")).err().unwrap();
        assert_eq!(error, "key 2 is not 32 bytes in base64");
        assert_eq!(KeyRing::parse(" , ").err().unwrap(), "holds no key");
        let ring = KeyRing::parse(&good).unwrap();
        assert!(!format!("{ring:?}").contains(&good));
        assert!(!format!("{:?}", ring.seal(SECRET)).contains("MfKQ"));
        assert!(!format!("{:?}", StoredSecret(SECRET.to_owned())).contains("MfKQ"));
    }
}
