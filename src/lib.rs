//! Switchyard: an OpenAI-compatible LLM relay.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]

pub mod body;
pub mod dialect;
pub mod error;
pub mod config;
pub mod sse;
