//! Delivery states and attempt error kinds, spelled as the database stores them.

/// Why an attempt failed (SPEC §2 `error_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Dns,
    Connect,
    Tls,
    Timeout,
    HttpStatus,
    InvalidUrl,
    BlockedAddress,
    BodyTooLarge,
    /// The endpoint's stored secret cannot sign: nothing is sent unsigned.
    InvalidSecret,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Dns => "dns",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::InvalidUrl => "invalid_url",
            ErrorKind::BlockedAddress => "blocked_address",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::InvalidSecret => "invalid_secret",
        }
    }
}

/// Where a delivery goes after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    InFlight,
    Succeeded,
    Dead,
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::InFlight => "in_flight",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }
}
