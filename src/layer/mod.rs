//! The relay's own tower middleware, one concern per file.
//!
//! Canonical order, outer to inner (built in `app.rs`):
//! 1. [`request_id::RequestIdLayer`] — accept the client's `x-request-id` or make one, and echo
//!    it on the response;
//! 2. [`access_log::AccessLogLayer`] — start the per-request record; log and count it once at the
//!    end of the response body;
//! 3. [`recover::RecoverLayer`] — turn every `RelayError` into an OpenAI-shaped JSON response;
//! 4. [`auth::AuthLayer`] — check the client key in constant time for `/v1/*`;
//! 5. the router (`route::Router`).

pub mod access_log;
pub mod auth;
pub mod recover;
pub mod request_id;
