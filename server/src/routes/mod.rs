//! HTTP routes, one module each, each with its own `router()`.

pub mod api;
pub mod export;
pub mod headers;
pub mod health;
pub mod metrics;
pub mod sync;
pub mod web;
