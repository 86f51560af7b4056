//! Inbound webhooks (SPEC §2 `source`, §6 `POST /in/{source_name}`): third
//! parties' requests verified, stored once per delivery id, and fanned out.
//!
//! - [`verify`] — the signature schemes, on raw bytes; no IO.
//! - [`cache`] — the receiver's view of sources by name, refreshed every second.
//! - [`counters`] — per-source counts, kept in memory and added to the
//!   database every second.
//! - [`mapping`] — what a request is published as: event type and payload.
//!
//! The HTTP side is `api::inbound` (the receiver) and `api::sources` (CRUD).

pub mod cache;
pub mod counters;
pub mod mapping;
pub mod verify;
