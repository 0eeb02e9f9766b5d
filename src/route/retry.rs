//! The retry policy for attempts against one target, for tower's `Retry`: only failures that a
//! second try may fix, with jittered exponential backoff (tower's), `retry-after` honoured up to
//! a cap, and a retry budget (tower's `TpsBudget`) so an outage does not multiply traffic.
//!
//! Retries happen only before the response is committed to the client: an attempt's future
//! resolves once the response (for streams, the first event) is ready and before any byte is sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tokio::time::Instant;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use tower::util::rng::HasherRng;

use crate::body::Body;
use crate::config::RetryParams;
use crate::error::RelayError;
use crate::metrics::Metrics;
use crate::upstream::classify::is_retryable;
use crate::upstream::Call;

/// The budget shared by all requests to one upstream: retries may add `budget_ratio` of the
/// request rate over a 10 s window, plus one retry per second so a quiet upstream can still retry.
pub fn budget(params: &RetryParams) -> Arc<TpsBudget> {
    Arc::new(TpsBudget::new(Duration::from_secs(10), 1, params.budget_ratio))
}

/// Retry state for one request against one target.
#[derive(Clone)]
pub struct AttemptPolicy {
    remaining: u32,
    deposited: bool,
    budget: Arc<TpsBudget>,
    backoff: ExponentialBackoff,
    retry_after_max: Duration,
    upstream: Arc<str>,
    metrics: Arc<Metrics>,
}

impl AttemptPolicy {
    /// A policy for `params.attempts` tries.
    pub fn new(params: &RetryParams, budget: Arc<TpsBudget>, upstream: Arc<str>, metrics: Arc<Metrics>) -> Self {
        let min = params.backoff_base;
        let max = params.backoff_max.max(min).max(Duration::from_millis(1));
        let backoff = ExponentialBackoffMaker::new(min, max, 1.0, HasherRng::default())
            .unwrap_or_else(|_| {
                ExponentialBackoffMaker::new(
                    Duration::from_millis(100),
                    Duration::from_secs(5),
                    1.0,
                    HasherRng::default(),
                )
                .unwrap_or_else(|e| unreachable!("constant backoff settings are valid: {e}"))
            })
            .make_backoff();
        AttemptPolicy {
            remaining: params.attempts,
            deposited: false,
            budget,
            backoff,
            retry_after_max: params.retry_after_max,
            upstream,
            metrics,
        }
    }
}

impl Policy<Call, Response<Body>, RelayError> for AttemptPolicy {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(&mut self, call: &mut Call, result: &mut Result<Response<Body>, RelayError>) -> Option<Self::Future> {
        if !self.deposited {
            self.deposited = true;
            self.budget.deposit();
        }
        let error = result.as_ref().err()?;
        if self.remaining <= 1 || !is_retryable(error) {
            return None;
        }
        let wait = error.retry_after;
        if wait.is_some_and(|w| w > self.retry_after_max) {
            tracing::debug!(upstream = %self.upstream, ?wait, "retry-after beyond the cap; moving on");
            return None;
        }
        let backoff = self.backoff.next_backoff();
        let resume = wait.map_or_else(|| backoff.deadline(), |wait| Instant::now() + wait);
        if resume >= call.deadline {
            // A retry that could only start after the total limit would fail as a timeout of its
            // own and hide this error, the real one.
            tracing::debug!(upstream = %self.upstream, ?wait, "no time left for a retry; moving on");
            return None;
        }
        if !self.budget.withdraw() {
            tracing::warn!(upstream = %self.upstream, "retry budget exhausted; not retrying");
            return None;
        }
        self.remaining -= 1;
        self.metrics.upstream_retries.with_label_values(&[&self.upstream]).inc();
        let record = call.record.clone();
        Some(Box::pin(async move {
            // Waiting out an upstream's backoff is upstream time, not relay overhead.
            let started = std::time::Instant::now();
            match wait {
                Some(wait) => tokio::time::sleep(wait).await,
                None => backoff.await,
            }
            record.add_upstream_wait(started.elapsed());
        }))
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        Some(call.clone())
    }
}
