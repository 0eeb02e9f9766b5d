//! The relay's own tower middleware, one concern per file.
//!
//! Canonical order, outer to inner (built in `app.rs`):
//! 1. `tower_http::request_id::SetRequestIdLayer` — accept the client's `x-request-id` or make one;
//! 2. `tower_http::request_id::PropagateRequestIdLayer` — echo it on the response;
//! 3. [`access_log::AccessLogLayer`] — start the per-request record; log and count it once at the
//!    end of the response body;
//! 4. [`recover::RecoverLayer`] — turn every `RelayError` into an OpenAI-shaped JSON response;
//! 5. [`auth::AuthLayer`] — check the client key in constant time for `/v1/*`;
//! 6. the router (`route::Router`).

pub mod access_log;
pub mod auth;
pub mod recover;
pub mod request_id;
