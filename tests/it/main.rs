//! Integration tests against a real PostgreSQL and real HTTP receivers.

mod support;

mod api_endpoints;
mod api_events;
mod api_tokens;
mod batching;
mod brokers;
mod changes;
mod cli;
mod delivery;
mod event_type_schemas;
mod event_types;
mod flow_control;
mod flow_edges;
mod guard_api;
mod guard_delivery;
mod inbound;
mod lifecycle;
mod openapi;
mod ordering;
mod portal;
mod producer;
mod producer_fuzz;
mod resilience;
mod retention;
mod retries;
mod sandboxes;
mod screenshots;
mod secrets;
mod statements;
mod transformations;
mod ui;
mod views;
