//! The delivery lifecycle: its states, the actions a claim takes and why an
//! attempt failed — the same enum types in PostgreSQL (`hookline.*`, see
//! `migrations/V7__typed_lifecycle.sql`) and here, so a decision is named
//! once and a mismatch fails when the statement runs, not later.
//!
//! ```text
//!   fan-out, retry, replay                         endpoint disabled
//!            │                      ┌───────────────────────────────────────┐
//!            ▼                      │                                       ▼
//!  ┌──▶ pending ─── claim ──▶ leased ─── 2xx ──────────────────────▶ succeeded
//!  │     │ ▲ ▲                 │  │
//!  │     │ │ └─ lease expired ─┘  ├── failed, retries left ──▶ pending (due at the retry)
//!  │     │ │   or handed back     └── no retries left, 410 ──▶ dead ◀── parked (endpoint
//!  │     │ └── release ── held ◀── hold                        │  ▲       disabled), ended
//!  │     │                                                     │  │       (endpoint or event gone)
//!  │     └── defer (rate limit, open circuit): a later due time │  │
//!  └──────────────────────────── replay ──────────────────────┘  │
//!   pending, held, dead ── cancel, endpoint deleted ──▶ cancelled  │
//!   pending, held ── endpoint disabled ─────────────────────────────┘
//! ```
//!
//! Where each state lives: the history (`deliveries.state`, a
//! [`DeliveryState`]) says pending, succeeded, dead or cancelled; the queue
//! (`delivery_queue`, a [`QueueState`]) holds the open ones — `pending` rows
//! are due at `next_attempt_at` (deferred ones later), a `pending` row with a
//! `lease_owner` whose `next_attempt_at` (the lease end) is still ahead is
//! *leased* (the API calls it `in_flight`), `held` rows wait out of the due
//! index for their endpoint, `waiting` rows for the delivery before them in
//! their ordered lane (sql/058_ordering.sql), `dead` rows are the
//! dead-letter queue. A
//! [`ClaimAction`] names each transition a claim makes.
//!
//! A lease that runs out (its worker died or was cut off) is *lost*: the
//! next claim takes the row over, and the worker records the lost attempt
//! (`worker_lost`) without sending; the delivery then follows its retry
//! schedule like any failed attempt, and becomes dead after
//! `HOOKLINE_MAX_WORKER_LOSSES` losses, so a payload that kills workers
//! cannot take the fleet down in a loop.
//!
//! An open circuit defers its endpoint's deliveries, but not past the last
//! attempt their retry schedule allows: then the claim *expires* them, and
//! the worker records them dead (`circuit_open`) unsent. So a delivery
//! always ends, and an outage long enough reaches the dead-letter queue and
//! the endpoint's auto-disable.

use postgres_types::{FromSql, ToSql};

/// Why an attempt failed (SPEC §2 `error_kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSql, FromSql)]
#[postgres(name = "error_kind", rename_all = "snake_case")]
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
    /// The worker that held the delivery stopped before recording an
    /// outcome (its lease ran out): whether the receiver got it is unknown.
    WorkerLost,
    /// The endpoint's circuit stayed open past the delivery's last
    /// scheduled attempt: not sent, and dead.
    CircuitOpen,
    /// The endpoint's transformation failed to render: nothing was sent.
    Transformation,
    /// A broker destination did not take the message: no stream or queue
    /// for it, or a refusal.
    BrokerRejected,
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
            ErrorKind::WorkerLost => "worker_lost",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Transformation => "transformation",
            ErrorKind::BrokerRejected => "broker_rejected",
        }
    }
}

/// A delivery's state in its history (`hookline.delivery_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSql, FromSql)]
#[postgres(name = "delivery_state", rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt, or leased to a worker.
    Pending,
    Succeeded,
    /// Retries exhausted, 410 Gone, endpoint disabled or gone: a dead letter.
    Dead,
    Cancelled,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Dead => "dead",
            DeliveryState::Cancelled => "cancelled",
        }
    }
}

/// An open delivery's row in the queue (`hookline.queue_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSql, FromSql)]
#[postgres(name = "queue_state", rename_all = "snake_case")]
pub enum QueueState {
    /// Due at its `next_attempt_at`, or leased until then.
    Pending,
    /// Waiting, out of the due index, until its endpoint has room.
    Held,
    /// In an ordered lane behind an earlier delivery still open: out of the
    /// due index until that one ends.
    Waiting,
    /// In the dead-letter queue.
    Dead,
}

/// What a claim does with a due candidate (`hookline.claim_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSql, FromSql)]
#[postgres(name = "claim_action", rename_all = "snake_case")]
pub enum ClaimAction {
    /// Leased to the claiming worker.
    Claim,
    /// Stays due for the next claim.
    Leave,
    /// Its endpoint has a limit or an unclosed circuit: the flow-control claim decides.
    Limit,
    /// Held until a completion of its endpoint releases it.
    Hold,
    /// Due again when its endpoint's circuit may send a probe.
    DeferToProbe,
    /// Due again in a second, to be the probe.
    RetryProbe,
    /// Given its own later start by the rate limit.
    DeferByRate,
    /// Its endpoint was disabled: dead.
    Park,
    /// Its endpoint or event no longer exists: dead.
    End,
    /// Its endpoint's circuit is open past its last scheduled attempt:
    /// leased to the worker to record it dead, unsent.
    Expire,
}
