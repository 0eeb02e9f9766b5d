//! Passive outlier detection per upstream: consecutive failures eject it for a cooldown that
//! doubles on each repeated ejection; when the cooldown ends, one trial request decides whether
//! it is restored (closed) or ejected again.

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::error::{ErrorCode, RelayError};
use crate::metrics::Metrics;

/// Consecutive failures that eject an upstream.
const EJECT_AFTER: u32 = 5;
const BASE_COOLDOWN: Duration = Duration::from_secs(10);
const MAX_COOLDOWN: Duration = Duration::from_secs(300);

/// Whether a target should take traffic now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Closed: takes traffic.
    Healthy,
    /// Cooldown over: takes one trial request.
    Probation,
    /// Ejected; `last_failure` orders the last-resort choice.
    Ejected { last_failure: Instant },
}

#[derive(Debug)]
struct State {
    consecutive_failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    last_failure: Option<Instant>,
}

/// Health of one upstream, shared by every model that targets it and kept across reloads.
#[derive(Debug)]
pub struct Health {
    name: String,
    state: Mutex<State>,
}

/// Failures that say something about the upstream's health (not about the request).
fn counts_against_health(error: &RelayError) -> bool {
    match error.code {
        ErrorCode::UpstreamDns
        | ErrorCode::UpstreamConnectRefused
        | ErrorCode::UpstreamConnectTimeout
        | ErrorCode::UpstreamTls
        | ErrorCode::UpstreamReset
        | ErrorCode::UpstreamTimeoutFirstByte
        | ErrorCode::UpstreamTimeoutIdle
        | ErrorCode::UpstreamOverloaded
        | ErrorCode::UpstreamBlocked403Html
        | ErrorCode::UpstreamInvalidResponse => true,
        ErrorCode::UpstreamHttpError | ErrorCode::UpstreamNonJsonError => error.status >= 500,
        _ => false,
    }
}

impl Health {
    /// A healthy upstream.
    pub fn new(name: &str, metrics: &Metrics) -> Self {
        metrics.upstream_healthy.with_label_values(&[name]).set(1);
        Health {
            name: name.to_owned(),
            state: Mutex::new(State { consecutive_failures: 0, ejections: 0, ejected_until: None, last_failure: None }),
        }
    }

    /// Whether to send traffic now.
    pub fn availability(&self) -> Availability {
        let state = self.state.lock();
        match state.ejected_until {
            None => Availability::Healthy,
            Some(until) if Instant::now() >= until => Availability::Probation,
            Some(_) => Availability::Ejected { last_failure: state.last_failure.unwrap_or_else(Instant::now) },
        }
    }

    /// Records an attempt's outcome.
    pub fn observe(&self, outcome: Result<(), &RelayError>, metrics: &Metrics) {
        let mut state = self.state.lock();
        match outcome {
            Ok(()) => {
                state.consecutive_failures = 0;
                if state.ejected_until.take().is_some() {
                    state.ejections = 0;
                    metrics.upstream_healthy.with_label_values(&[&self.name]).set(1);
                    tracing::info!(upstream = %self.name, "upstream restored after a successful trial request");
                }
            }
            Err(error) if counts_against_health(error) => {
                let now = Instant::now();
                state.last_failure = Some(now);
                state.consecutive_failures += 1;
                let on_probation = state.ejected_until.is_some_and(|until| now >= until);
                if on_probation || (state.ejected_until.is_none() && state.consecutive_failures >= EJECT_AFTER) {
                    let cooldown = BASE_COOLDOWN.saturating_mul(1 << state.ejections.min(5)).min(MAX_COOLDOWN);
                    state.ejections += 1;
                    state.ejected_until = Some(now + cooldown);
                    metrics.upstream_ejections.with_label_values(&[&self.name]).inc();
                    metrics.upstream_healthy.with_label_values(&[&self.name]).set(0);
                    tracing::warn!(
                        upstream = %self.name,
                        failures = state.consecutive_failures,
                        cooldown_s = cooldown.as_secs(),
                        last_error = error.code.as_str(),
                        "upstream ejected"
                    );
                }
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> RelayError {
        RelayError::new(ErrorCode::UpstreamConnectRefused, "refused")
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_eject_then_a_trial_restores() {
        let metrics = Metrics::new();
        let health = Health::new("up", &metrics);
        for _ in 0..EJECT_AFTER {
            assert_ne!(health.availability(), Availability::Probation);
            health.observe(Err(&refused()), &metrics);
        }
        assert!(matches!(health.availability(), Availability::Ejected { .. }));
        tokio::time::advance(BASE_COOLDOWN).await;
        assert_eq!(health.availability(), Availability::Probation);
        health.observe(Ok(()), &metrics);
        assert_eq!(health.availability(), Availability::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_ejects_for_longer() {
        let metrics = Metrics::new();
        let health = Health::new("up", &metrics);
        for _ in 0..EJECT_AFTER {
            health.observe(Err(&refused()), &metrics);
        }
        tokio::time::advance(BASE_COOLDOWN).await;
        health.observe(Err(&refused()), &metrics);
        tokio::time::advance(BASE_COOLDOWN).await;
        assert!(matches!(health.availability(), Availability::Ejected { .. }));
        tokio::time::advance(BASE_COOLDOWN).await;
        assert_eq!(health.availability(), Availability::Probation);
    }

    #[test]
    fn client_errors_do_not_count() {
        let metrics = Metrics::new();
        let health = Health::new("up", &metrics);
        let bad_request = RelayError::new(ErrorCode::UpstreamHttpError, "bad").with_status(400);
        for _ in 0..EJECT_AFTER * 2 {
            health.observe(Err(&bad_request), &metrics);
        }
        assert_eq!(health.availability(), Availability::Healthy);
    }
}
