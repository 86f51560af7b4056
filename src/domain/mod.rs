//! Plain types and decisions of the delivery domain; no IO.

pub mod batch;
pub mod circuit;
pub mod delivery;
pub mod headers;
pub mod names;
pub mod retry;
pub mod schema;
pub mod transform;
