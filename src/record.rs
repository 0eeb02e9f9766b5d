//! The per-request record: who asked for what, which upstream answered, how it ended and how
//! long each part took. Layers and the upstream client fill it in as the request moves through;
//! it is logged and counted exactly once, when its last holder (usually the response body, once
//! the server has written its end) lets go.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::dialect::{ReadUsage, Usage};
use crate::error::{Attempt, ErrorCode};
use crate::metrics::{Metrics, ServedSeries, TOKEN_DIRECTIONS};
use crate::server::shutdown::{Cutoff, CutoffWaiter};

/// Label for requests whose model is not configured.
pub const OTHER_MODEL: &str = "other";

/// What is known about one client request.
#[derive(Debug)]
pub struct RequestRecord {
    metrics: Arc<Metrics>,
    cutoff: Cutoff,
    /// For an HTTP/2 request, whose task the cutoff would not otherwise wake.
    cutoff_waiter: Option<Mutex<CutoffWaiter>>,
    started: Instant,
    request_id: String,
    method: http::Method,
    path: String,
    fields: Mutex<Fields>,
}

#[derive(Debug, Default)]
struct Fields {
    key: Option<String>,
    model: Option<Arc<str>>,
    /// The series of the (model, upstream) pair that answered.
    served: Option<Arc<ServedSeries>>,
    /// The upstream named by an error, when none answered.
    upstream: Option<String>,
    status: u16,
    error: Option<ErrorCode>,
    attempts: Vec<Attempt>,
    usage: Option<Usage>,
    /// A body the usage is still to be read from, when the record is written.
    usage_in_body: Option<(Bytes, ReadUsage)>,
    first_token: Option<Instant>,
    upstream_wait: Duration,
    stream: bool,
    body_complete: bool,
}

impl RequestRecord {
    /// Starts a record; counts the request in flight until the record is dropped.
    pub fn start(
        metrics: Arc<Metrics>,
        cutoff: Cutoff,
        request_id: String,
        method: http::Method,
        version: http::Version,
        path: &str,
    ) -> Arc<Self> {
        metrics.in_flight.inc();
        // hyper serves each HTTP/2 request in a task of its own; an HTTP/1 one runs in its
        // connection's task, which the cutoff wakes already.
        let cutoff_waiter = (version == http::Version::HTTP_2).then(|| Mutex::new(cutoff.waiter()));
        Arc::new(RequestRecord {
            metrics,
            cutoff,
            cutoff_waiter,
            started: Instant::now(),
            request_id,
            method,
            path: path.to_owned(),
            fields: Mutex::new(Fields::default()),
        })
    }

    /// The request id, as sent back in `x-request-id`.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// When the request arrived.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The metrics this record reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether the relay's drain is over, so a request still waiting must be answered now; asked
    /// by whatever is about to wait, whose task is then woken when it is reached.
    pub fn cut_off(&self, cx: &mut std::task::Context<'_>) -> bool {
        self.cutoff.reached() || self.cutoff_waiter.as_ref().is_some_and(|waiter| waiter.lock().poll_reached(cx))
    }

    /// The client key's name.
    pub fn set_key(&self, key: Option<&str>) {
        self.fields.lock().key = key.map(str::to_owned);
    }

    /// The configured model (pattern) serving the request.
    pub fn set_model(&self, model: Arc<str>) {
        self.fields.lock().model = Some(model);
    }

    /// Whether the response is a stream.
    pub fn set_stream(&self, stream: bool) {
        self.fields.lock().stream = stream;
    }

    /// The upstream whose answer the client gets, by its (model, upstream) series.
    pub fn set_served(&self, served: Arc<ServedSeries>) {
        self.fields.lock().served = Some(served);
    }

    /// The upstream an error names, when no upstream answered.
    pub fn set_upstream(&self, upstream: &str) {
        self.fields.lock().upstream = Some(upstream.to_owned());
    }

    /// The status sent to the client.
    pub fn set_status(&self, status: u16) {
        self.fields.lock().status = status;
    }

    /// The error class the client saw (also for errors sent in-band in a stream).
    pub fn set_error(&self, code: ErrorCode) {
        self.fields.lock().error = Some(code);
    }

    /// The error class the client saw, once there is one.
    pub fn error(&self) -> Option<ErrorCode> {
        self.fields.lock().error
    }

    /// One attempt against an upstream.
    pub fn add_attempt(&self, attempt: Attempt) {
        self.fields.lock().attempts.push(attempt);
    }

    /// Every attempt so far.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.fields.lock().attempts.clone()
    }

    /// Time spent waiting on upstreams, excluded from the relay's overhead.
    pub fn add_upstream_wait(&self, wait: Duration) {
        self.fields.lock().upstream_wait += wait;
    }

    /// The first token reached the relay.
    pub fn mark_first_token(&self) {
        let mut fields = self.fields.lock();
        if fields.first_token.is_none() {
            fields.first_token = Some(Instant::now());
        }
    }

    /// Token usage reported by the upstream.
    pub fn set_usage(&self, usage: Usage) {
        self.fields.lock().usage = Some(usage);
    }

    /// Usage to be read from `body` with `read` when the record is written, unless
    /// [`Self::set_usage`] gives it first.
    pub fn set_usage_in_body(&self, body: Bytes, read: ReadUsage) {
        self.fields.lock().usage_in_body = Some((body, read));
    }

    /// The response body was sent to its end (a record dropped without this is a disconnect).
    pub fn mark_body_complete(&self) {
        self.fields.lock().body_complete = true;
    }
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let metrics = &self.metrics;
        metrics.in_flight.dec();
        let fields = self.fields.get_mut();
        let total = self.started.elapsed();
        let model = fields.model.as_deref().unwrap_or(OTHER_MODEL);
        let served = fields.served.as_deref();
        let upstream = served.map(|s| &*s.upstream).or(fields.upstream.as_deref()).unwrap_or("none");
        let key = fields.key.as_deref().unwrap_or("anonymous");
        let error = fields.error.map_or("none", ErrorCode::as_str);
        let overhead = total.saturating_sub(fields.upstream_wait);
        let ttft = fields.first_token.map(|t| t.duration_since(self.started));
        if fields.usage.is_none() {
            fields.usage = fields.usage_in_body.take().and_then(|(body, read)| read(&body));
        }
        let tokens = fields.usage.map(|u| [u.prompt_tokens, u.completion_tokens, u.cached_tokens, u.reasoning_tokens]);
        match served {
            Some(served) => {
                if fields.status == 200 && fields.error.is_none() {
                    served.succeeded.inc();
                } else {
                    metrics.requests.with_label_values(&[model, upstream, &status_label(fields.status), error]).inc();
                }
                served.duration.observe(total.as_secs_f64());
                served.overhead.observe(overhead.as_secs_f64());
                if let Some(ttft) = ttft {
                    served.first_token.observe(ttft.as_secs_f64());
                }
                if let Some(counts) = tokens {
                    served.add_tokens(metrics, key, counts);
                }
            }
            None => {
                metrics.requests.with_label_values(&[model, upstream, &status_label(fields.status), error]).inc();
                metrics.request_duration.with_label_values(&[model, upstream]).observe(total.as_secs_f64());
                if fields.upstream.is_some() {
                    metrics.overhead.with_label_values(&[model, upstream]).observe(overhead.as_secs_f64());
                }
                if let Some(ttft) = ttft {
                    metrics.time_to_first_token.with_label_values(&[model, upstream]).observe(ttft.as_secs_f64());
                }
                if let Some(counts) = tokens {
                    for (direction, count) in TOKEN_DIRECTIONS.into_iter().zip(counts) {
                        metrics.tokens.with_label_values(&[direction, model, upstream, key]).inc_by(count);
                    }
                }
            }
        }
        let disconnected = !fields.body_complete && fields.status != 0;
        if disconnected {
            metrics.client_disconnects.with_label_values(&[model]).inc();
        }
        if !tracing::enabled!(target: "switchyard::access", tracing::Level::INFO) {
            return;
        }
        let attempts = fields
            .attempts
            .iter()
            .map(|a| format!("{}:{}:{}ms", a.upstream, a.code, a.duration_ms))
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(
            target: "switchyard::access",
            request_id = %self.request_id,
            method = %self.method,
            path = %self.path,
            key,
            model,
            upstream,
            status = fields.status,
            error,
            duration_ms = total.as_millis() as u64,
            overhead_us = overhead.as_micros() as u64,
            ttft_ms = ttft.map(|t| t.as_millis() as u64),
            stream = fields.stream,
            tokens_in = fields.usage.map(|u| u.prompt_tokens),
            tokens_out = fields.usage.map(|u| u.completion_tokens),
            attempts = %attempts,
            client_disconnected = disconnected,
            "request"
        );
    }
}

/// The `status` label: the code's digits, formatted only for codes outside the common set.
fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    let common = match status {
        200 => "200",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return status.to_string().into(),
    };
    common.into()
}

#[cfg(test)]
impl RequestRecord {
    /// A record of a chat completion request, as the access-log layer starts one.
    pub(crate) fn chat_for_test(metrics: &Arc<Metrics>, request_id: &str) -> Arc<Self> {
        RequestRecord::start(
            metrics.clone(),
            Cutoff::default(),
            request_id.into(),
            http::Method::POST,
            http::Version::HTTP_11,
            "/v1/chat/completions",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ModelSeries;

    fn served_record(metrics: &Arc<Metrics>, model: &ModelSeries, status: u16) -> Arc<RequestRecord> {
        let record = RequestRecord::chat_for_test(metrics, "req_1");
        record.set_model(model.label().clone());
        record.set_key(Some("team-a"));
        record.set_served(model.served(metrics, 0, "up"));
        record.set_status(status);
        record.mark_body_complete();
        record
    }

    #[test]
    fn served_requests_count_under_their_model_upstream_status_and_error() {
        let metrics = Arc::new(Metrics::new());
        let model = ModelSeries::new("m", 1);
        let ok = served_record(&metrics, &model, 200);
        ok.set_usage(Usage { prompt_tokens: 7, completion_tokens: 2, cached_tokens: 0, reasoning_tokens: 0 });
        drop(ok);
        let failed_in_band = served_record(&metrics, &model, 200);
        failed_in_band.set_error(ErrorCode::UpstreamHttpError);
        drop(failed_in_band);
        drop(served_record(&metrics, &model, 418));
        let requests =
            |status: &str, error: &str| metrics.requests.with_label_values(&["m", "up", status, error]).get();
        assert_eq!(requests("200", "none"), 1);
        assert_eq!(requests("200", "upstream_http_error"), 1);
        assert_eq!(requests("418", "none"), 1);
        assert_eq!(metrics.request_duration.with_label_values(&["m", "up"]).get_sample_count(), 3);
        assert_eq!(metrics.tokens.with_label_values(&["input", "m", "up", "team-a"]).get(), 7);
        assert_eq!(metrics.in_flight.get(), 0);
    }

    #[test]
    fn usage_left_in_the_body_is_read_when_the_record_is_written_unless_it_was_given() {
        fn read(body: &[u8]) -> Option<Usage> {
            let prompt_tokens = std::str::from_utf8(body).ok()?.parse().ok()?;
            Some(Usage { prompt_tokens, ..Usage::default() })
        }
        let metrics = Arc::new(Metrics::new());
        let model = ModelSeries::new("m", 1);
        let input = || metrics.tokens.with_label_values(&["input", "m", "up", "team-a"]).get();
        let left_in_body = served_record(&metrics, &model, 200);
        left_in_body.set_usage_in_body(Bytes::from_static(b"40"), read);
        assert_eq!(input(), 0, "read before the record is written");
        drop(left_in_body);
        assert_eq!(input(), 40);
        let given = served_record(&metrics, &model, 200);
        given.set_usage_in_body(Bytes::from_static(b"40"), read);
        given.set_usage(Usage { prompt_tokens: 2, ..Usage::default() });
        drop(given);
        assert_eq!(input(), 42);
    }

    #[test]
    fn an_unserved_request_counts_under_the_upstream_its_error_names() {
        let metrics = Arc::new(Metrics::new());
        let record = RequestRecord::chat_for_test(&metrics, "req_2");
        record.set_upstream("down");
        record.set_error(ErrorCode::UpstreamConnectRefused);
        record.set_status(502);
        drop(record);
        let requests = metrics.requests.with_label_values(&["other", "down", "502", "upstream_connect_refused"]);
        assert_eq!(requests.get(), 1);
    }
}
