//! Switchyard: an OpenAI-compatible LLM relay.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod app;
pub mod body;
pub mod cli;
pub mod config;
pub mod dialect;
pub mod error;
pub mod layer;
pub mod metrics;
pub mod probe;
pub mod record;
pub mod route;
pub mod server;
pub mod sse;
pub mod upstream;
pub mod wake;
