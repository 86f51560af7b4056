//! Request headers that neither an endpoint's `headers` nor its
//! transformation may set: hookline owns them, or they frame the request or
//! the connection (hop-by-hop) and would let settings smuggle a second
//! request or re-route this one.

pub const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
];

/// The longest value a custom header may have.
pub const VALUE_MAX_BYTES: usize = 4096;

pub fn is_reserved(name: &str) -> bool {
    RESERVED.contains(&name.to_ascii_lowercase().as_str())
}
