//! Switchyard: an OpenAI-compatible LLM relay.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
// `RelayError` (152 bytes) carries what an OpenAI-shaped error names: code, status, message,
// param, upstream, a passed-through body, `retry-after` and the attempts. It is built once per
// failed request. Boxing it would shrink the request path's `Result<Response<Body>, _>` from 152
// to 128 bytes (a `Response` is 128) at the price of an allocation per error.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod body;
pub mod boxed;
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
mod wire;
