//! Tries a model's targets in order (see `balance`): each target gets its attempts under the
//! retry policy; a failure whose class is in the model's `failover_on` moves on to the next
//! target. The final error lists every attempt; a success names the upstream that answered.

use std::sync::Arc;

use http::{HeaderMap, Response};
use tokio::time::Instant;
use tower::ServiceExt;

use super::retry::AttemptPolicy;
use super::table::Resolved;
use super::{balance, Runtime, UpstreamEntry};
use crate::body::Body;
use crate::dialect::ChatRequest;
use crate::error::{ErrorCode, RelayError};
use crate::record::RequestRecord;
use crate::upstream::classify::failover_class;
use crate::upstream::Call;

/// What the router read from the client's request.
pub struct Incoming {
    pub body: bytes::Bytes,
    pub stream: bool,
    pub client_wants_usage: bool,
    /// The body's member layout from the router's one parse.
    pub layout: Arc<crate::dialect::json::Layout>,
    pub headers: Arc<HeaderMap>,
    pub record: Arc<RequestRecord>,
}

/// Serves a request for a resolved model, trying its targets in the balancer's order.
pub async fn serve(
    runtime: &Runtime,
    resolved: &Resolved<'_>,
    incoming: Incoming,
) -> Result<Response<Body>, RelayError> {
    let (model, passed_name) = (resolved.model, resolved.passed_name);
    let model_label = resolved.series.label();
    let order = balance::order(model, runtime);
    let mut last_error: Option<RelayError> = None;
    for (position, &index) in order.iter().enumerate() {
        let target = &model.targets[index];
        let entry = runtime.entry(&target.upstream);
        if position > 0 && entry.is_some_and(|entry| Instant::now() >= deadline(entry, target, &incoming.record)) {
            // Out of time: an attempt would only fail at once as a timeout of a target never
            // called, hiding the previous target's real error.
            break;
        }
        let result = match entry {
            None => Err(disabled_error(runtime, &target.upstream)),
            Some(entry) => attempt_target(runtime, entry, target, passed_name, &incoming).await,
        };
        match result {
            Ok(response) => {
                incoming.record.set_served(resolved.series.served(&runtime.metrics, index, &target.upstream));
                return Ok(response);
            }
            Err(error) => {
                let class = failover_class(&error);
                let more = position + 1 < order.len();
                if more && model.failover_on.iter().any(|c| c == class) {
                    tracing::info!(
                        request_id = incoming.record.request_id(),
                        model = %model_label,
                        upstream = %target.upstream,
                        code = error.code.as_str(),
                        "failing over to the next target"
                    );
                    runtime.metrics.failovers.with_label_values(&[&**model_label, &target.upstream]).inc();
                    last_error = Some(error);
                    continue;
                }
                return Err(with_attempts(error, &incoming.record));
            }
        }
    }
    let error = last_error.unwrap_or_else(|| {
        RelayError::new(ErrorCode::UpstreamDisabled, format!("model {model_label:?} has no usable target"))
    });
    Err(with_attempts(error, &incoming.record))
}

fn with_attempts(mut error: RelayError, record: &RequestRecord) -> RelayError {
    let attempts = record.attempts();
    if attempts.len() > 1 {
        error.attempts = attempts;
    }
    error
}

fn disabled_error(runtime: &Runtime, upstream: &str) -> RelayError {
    let reason = runtime
        .config
        .disabled
        .get(upstream)
        .map(|d| match &d.suggestion {
            Some(fix) => format!("{} ({fix})", d.message),
            None => d.message.clone(),
        })
        .unwrap_or_else(|| format!("upstream {upstream:?} is disabled"));
    RelayError::new(ErrorCode::UpstreamDisabled, reason).with_upstream(upstream)
}

/// When a request to `target` must be over: its `total` limit counts from the request's start,
/// so retries and earlier targets use it up.
fn deadline(entry: &UpstreamEntry, target: &crate::config::TargetParams, record: &RequestRecord) -> Instant {
    let timeouts = target.timeouts.unwrap_or(entry.upstream.params().timeouts);
    Instant::from_std(record.started()) + timeouts.total
}

async fn attempt_target(
    runtime: &Runtime,
    entry: &UpstreamEntry,
    target: &crate::config::TargetParams,
    passed_name: &str,
    incoming: &Incoming,
) -> Result<Response<Body>, RelayError> {
    let params = entry.upstream.params();
    let timeouts = target.timeouts.unwrap_or(params.timeouts);
    let deadline = deadline(entry, target, &incoming.record);
    let chat = ChatRequest {
        body: incoming.body.clone(),
        upstream_model: target.model.clone().unwrap_or_else(|| passed_name.to_owned()),
        stream: incoming.stream,
        client_wants_usage: incoming.client_wants_usage,
        layout: Some(incoming.layout.clone()),
    };
    let call = Call {
        chat: Arc::new(chat),
        client_headers: incoming.headers.clone(),
        record: incoming.record.clone(),
        timeouts,
        keepalive: runtime.config.server.keepalive_interval,
        deadline,
    };
    let policy =
        AttemptPolicy::new(&params.retry, entry.budget.clone(), entry.upstream.shared_name(), runtime.metrics.clone());
    tower::retry::Retry::new(policy, entry.balanced(runtime.metrics.clone())).oneshot(call).await
}
