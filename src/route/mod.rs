//! Routing: the live [`Runtime`] built from a config, and the [`Router`] service that answers
//! each endpoint — resolving a model to its targets and serving it through balance, retry and
//! failover.

pub mod balance;
pub mod failover;
pub mod health;
pub mod retry;
pub mod table;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::future::Either;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use tower::load::peak_ewma::Cost;
use tower::load::{CompleteOnResponse, Load, PeakEwma};
use tower::retry::budget::TpsBudget;
use tower::Service;

use crate::body::{collect_limited_idle, full, Body, CollectError, APPLICATION_JSON};
use crate::boxed::boxed_in_place;
use crate::config::{Config, Strategy};
use crate::dialect::json::{Layout, Text};
use crate::error::{ErrorCode, RelayError};
use crate::layer::auth::{KeySource, Keyring, Principal};
use crate::metrics::Metrics;
use crate::record::RequestRecord;
use crate::upstream::{Call, Endpoint, Upstream};
use health::Health;
use table::RouteTable;

/// Latency assumed for an upstream before it has answered anything.
const DEFAULT_RTT: Duration = Duration::from_millis(500);
/// How fast old latency samples fade (tower's PeakEwma decay).
const EWMA_DECAY: Duration = Duration::from_secs(10);
/// How long a request body may stall between its frames, as nginx's `client_body_timeout`. The
/// relay's own HTTP/1.1 loop reads the bodies it serves whole, under its header-read deadline;
/// hyper reads the others (chunked or large uploads, HTTP/1.0, h2c) with no deadline, so a client
/// that stopped sending one held its connection for good. A body already in arms no timer.
const REQUEST_BODY_IDLE: Duration = Duration::from_secs(30);

type LatencyTracker = Arc<Mutex<PeakEwma<Endpoint, CompleteOnResponse>>>;

/// One upstream with the state that outlives single requests.
pub struct UpstreamEntry {
    pub upstream: Arc<Upstream>,
    pub health: Arc<Health>,
    pub budget: Arc<TpsBudget>,
    /// Its peak-EWMA latency, kept only when a `least-latency` model chooses between it and
    /// another target: nothing else reads it, and measuring takes three clock reads, a lock and
    /// the decay arithmetic on every attempt.
    latency: Option<LatencyTracker>,
}

impl UpstreamEntry {
    fn new(upstream: Arc<Upstream>, health: Arc<Health>, budget: Arc<TpsBudget>, track_latency: bool) -> Self {
        let latency = track_latency.then(|| {
            Arc::new(Mutex::new(PeakEwma::new(
                Endpoint(upstream.clone()),
                DEFAULT_RTT,
                EWMA_DECAY.as_nanos() as f64,
                CompleteOnResponse::default(),
            )))
        });
        UpstreamEntry { upstream, health, budget, latency }
    }

    /// Its latency estimate (peak-EWMA), when it is tracked.
    pub fn latency_cost(&self) -> Option<Cost> {
        self.latency.as_ref().map(|tracker| tracker.lock().load())
    }

    /// The upstream as a service whose attempts feed its health, and its latency estimate when
    /// that is tracked.
    pub fn balanced(&self, metrics: Arc<Metrics>) -> Balanced {
        let attempts = match &self.latency {
            Some(tracker) => Attempts::Measured(tracker.clone()),
            None => Attempts::Direct(Endpoint(self.upstream.clone())),
        };
        Balanced { attempts, health: self.health.clone(), metrics }
    }
}

#[derive(Clone)]
enum Attempts {
    Measured(LatencyTracker),
    Direct(Endpoint),
}

/// Attempts against one upstream, observed by passive health checks (and measured by
/// peak-EWMA when a `least-latency` model reads it).
#[derive(Clone)]
pub struct Balanced {
    attempts: Attempts,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
}

impl Service<Call> for Balanced {
    type Response = Response<Body>;
    type Error = RelayError;
    type Future = Observed<
        Either<<PeakEwma<Endpoint, CompleteOnResponse> as Service<Call>>::Future, <Endpoint as Service<Call>>::Future>,
    >;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RelayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, call: Call) -> Self::Future {
        let attempt = match &mut self.attempts {
            Attempts::Measured(tracker) => Either::Left(tracker.lock().call(call)),
            Attempts::Direct(endpoint) => Either::Right(endpoint.call(call)),
        };
        Observed { attempt, health: self.health.clone(), metrics: self.metrics.clone() }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`Balanced`]: an attempt whose outcome feeds passive health checks.
    pub struct Observed<F> {
        #[pin]
        attempt: F,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response<Body>, RelayError>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = std::task::ready!(this.attempt.poll(cx));
        this.health.observe(result.as_ref().map(|_| ()), this.metrics);
        Poll::Ready(result)
    }
}

/// Everything one config version serves with. Swapped whole on reload; requests in flight
/// keep the version they started with.
pub struct Runtime {
    pub config: Arc<Config>,
    pub table: RouteTable,
    pub entries: BTreeMap<String, UpstreamEntry>,
    pub keyring: Arc<Keyring>,
    pub metrics: Arc<Metrics>,
    /// Active health checkers of this version, stopped when it is replaced and drained.
    checkers: Vec<tokio::task::AbortHandle>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for checker in &self.checkers {
            checker.abort();
        }
    }
}

/// Runs one upstream's active health checks until aborted.
fn spawn_checker(entry: &UpstreamEntry, metrics: Arc<Metrics>) -> Option<tokio::task::AbortHandle> {
    let check = entry.upstream.params().health_check.clone()?;
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let upstream = entry.upstream.clone();
    let health = entry.health.clone();
    let task = handle.spawn(async move {
        let mut ticker = tokio::time::interval(check.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let outcome = upstream
                .check_health(&check.path, check.expect_status, check.interval.max(Duration::from_secs(1)))
                .await;
            if let Err(error) = &outcome {
                tracing::debug!(
                    upstream = upstream.name(),
                    code = error.code.as_str(),
                    "active health check failed: {}",
                    error.message
                );
            }
            health.observe(outcome.as_ref().map(|_| ()), &metrics);
        }
    });
    Some(task.abort_handle())
}

impl Runtime {
    /// Builds a runtime; unchanged upstreams of `previous` keep their connection pools, health
    /// and retry budgets.
    pub fn build(config: Arc<Config>, metrics: Arc<Metrics>, previous: Option<&Runtime>) -> Result<Self, RelayError> {
        let chosen_by_latency: BTreeSet<&str> = config
            .models
            .iter()
            .filter(|model| model.strategy == Strategy::LeastLatency && model.targets.len() > 1)
            .flat_map(|model| model.targets.iter().map(|target| target.upstream.as_str()))
            .collect();
        let mut entries = BTreeMap::new();
        for (name, params) in &config.upstreams {
            let params = Arc::new(params.clone());
            let old = previous.and_then(|p| p.entries.get(name));
            let upstream = match old {
                Some(old) if old.upstream.same_transport(&params) => Upstream::reuse(params.clone(), &old.upstream),
                _ => Upstream::new(params.clone()).map_err(|e| {
                    RelayError::new(ErrorCode::Internal, format!("upstream {name:?}: building its client failed: {e}"))
                })?,
            };
            let health = old.map(|o| o.health.clone()).unwrap_or_else(|| Arc::new(Health::new(name, &metrics)));
            let budget = old.map(|o| o.budget.clone()).unwrap_or_else(|| retry::budget(&params.retry));
            let track_latency = chosen_by_latency.contains(name.as_str());
            entries.insert(name.clone(), UpstreamEntry::new(Arc::new(upstream), health, budget, track_latency));
        }
        metrics.upstreams_disabled.set(config.disabled.len() as i64);
        metrics.upstream_disabled.reset();
        for name in config.disabled.keys() {
            metrics.upstream_disabled.with_label_values(&[name]).set(1);
        }
        let checkers = entries.values().filter_map(|entry| spawn_checker(entry, metrics.clone())).collect();
        Ok(Runtime {
            checkers,
            table: RouteTable::new(&config.models),
            keyring: Arc::new(Keyring::new(config.keys.clone(), config.auth_required)),
            entries,
            metrics,
            config,
        })
    }

    /// An enabled upstream by name.
    pub fn entry(&self, name: &str) -> Option<&UpstreamEntry> {
        self.entries.get(name)
    }
}

/// The live runtime, swapped atomically on reload.
pub type SharedRuntime = Arc<ArcSwap<Runtime>>;

impl KeySource for SharedRuntime {
    fn keyring(&self) -> Arc<Keyring> {
        self.load().keyring.clone()
    }
}

/// Answers every endpoint.
#[derive(Clone)]
pub struct Router {
    runtime: SharedRuntime,
}

impl Router {
    /// A router over the live runtime.
    pub fn new(runtime: SharedRuntime) -> Self {
        Router { runtime }
    }
}

impl<B> Service<Request<B>> for Router
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    type Response = Response<Body>;
    type Error = RelayError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, RelayError>> + Send>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RelayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let runtime = self.runtime.load_full();
        // Checked first and without copying the path: this is nearly every request.
        if request.method() == Method::POST && request.uri().path() == "/v1/chat/completions" {
            return boxed_in_place(move || chat(runtime, request));
        }
        // Every other endpoint answers at once.
        let path = request.uri().path();
        let answer = match (request.method(), path) {
            (&Method::GET, "/v1/models") => Ok(models(&runtime, &request)),
            (&Method::GET, p) if p.starts_with("/v1/models/") => model(&runtime, &request, &p["/v1/models/".len()..]),
            (&Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, json!({ "status": "ok" }))),
            (&Method::GET, "/readyz") => Ok(readyz(&runtime)),
            (&Method::GET, "/metrics") => Ok(metrics(&runtime)),
            (_, p) => Err(RelayError::new(ErrorCode::NotFound, format!("no route for {} {p}", request.method()))),
        };
        Box::pin(std::future::ready(answer))
    }
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, APPLICATION_JSON);
    response
}

/// A top-level field of the body, parsed from its JSON text alone; a field of the wrong type is
/// invalid JSON for this API, as a typed parse of the whole body would say.
fn field<'b, T: Deserialize<'b>>(layout: &Layout, body: &'b [u8], key: &str) -> Result<Option<T>, RelayError> {
    let Some(text) = layout.value(body, key) else { return Ok(None) };
    serde_json::from_slice::<Option<T>>(text).map_err(|e| {
        RelayError::new(ErrorCode::InvalidJson, format!("the request body is not a valid JSON object: `{key}`: {e}"))
            .with_param(key)
    })
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Splits the request before the first await: an `async fn` keeps its arguments for its whole
/// life, and the request's method, URI and version are not needed past this point.
fn chat<B>(
    runtime: Arc<Runtime>,
    request: Request<B>,
) -> impl Future<Output = Result<Response<Body>, RelayError>> + Send
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let (http::request::Parts { headers, extensions, .. }, body) = request.into_parts();
    let record = extensions.get::<Arc<RequestRecord>>().cloned().unwrap_or_else(|| {
        RequestRecord::start(
            runtime.metrics.clone(),
            Default::default(),
            String::new(),
            http::Method::POST,
            http::Version::HTTP_11,
            "/v1/chat/completions",
        )
    });
    serve_chat(runtime, Arc::new(headers), extensions, record, body)
}

async fn serve_chat<B>(
    runtime: Arc<Runtime>,
    headers: Arc<HeaderMap>,
    extensions: http::Extensions,
    record: Arc<RequestRecord>,
    body: B,
) -> Result<Response<Body>, RelayError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Display,
{
    let limit = runtime.config.server.max_body_bytes;
    let body = collect_limited_idle(body, limit, REQUEST_BODY_IDLE).await.map_err(|error| match error {
        CollectError::TooLarge { limit } => RelayError::new(
            ErrorCode::BodyTooLarge,
            format!("request body exceeds server.max_body_bytes ({limit} bytes)"),
        ),
        error @ (CollectError::Read(_) | CollectError::Idle(_)) => {
            RelayError::new(ErrorCode::InvalidRequest, format!("reading the request body failed: {error}"))
        }
    })?;
    // The one parse of the body: the router reads three fields from it, and a pass-through
    // upstream rewrites `model` from the same layout.
    let layout = Layout::of(&body).map_err(|e| {
        RelayError::new(ErrorCode::InvalidJson, format!("the request body is not a valid JSON object: {e}"))
    })?;
    let model: Option<Text<'_>> = field(&layout, &body, "model")?;
    let requested =
        model.as_ref().map(|Text(name)| name.as_ref()).filter(|m| !m.is_empty()).ok_or_else(|| {
            RelayError::new(ErrorCode::InvalidRequest, "the request has no `model`").with_param("model")
        })?;
    let Some(resolved) = runtime.table.resolve(requested) else {
        let close = runtime.table.close_names(requested);
        let hint = if close.is_empty() {
            "GET /v1/models lists the models served".to_owned()
        } else {
            format!("did you mean: {}?", close.join(", "))
        };
        return Err(RelayError::new(
            ErrorCode::ModelNotFound,
            format!("model {requested:?} is not served here; {hint}"),
        )
        .with_param("model"));
    };
    if let Some(principal) = extensions.get::<Principal>() {
        if !principal.may_use(requested) {
            return Err(RelayError::new(
                ErrorCode::ModelNotAllowed,
                format!("key {:?} may not use model {requested:?}", principal.key_name.as_deref().unwrap_or("")),
            )
            .with_param("model"));
        }
    }
    record.set_model(resolved.series.label().clone());
    let stream = field::<bool>(&layout, &body, "stream")?.unwrap_or(false);
    let stream_options = field::<StreamOptions>(&layout, &body, "stream_options")?;
    record.set_stream(stream);
    let incoming = failover::Incoming {
        stream,
        client_wants_usage: stream_options.and_then(|o| o.include_usage).unwrap_or(false),
        layout: Arc::new(layout),
        headers,
        record,
        body: body.clone(),
    };
    failover::serve(&runtime, &resolved, incoming).await
}

fn model_object(id: &str) -> serde_json::Value {
    json!({ "id": id, "object": "model", "created": 0, "owned_by": "switchyard" })
}

fn models<B>(runtime: &Runtime, request: &Request<B>) -> Response<Body> {
    let principal = request.extensions().get::<Principal>();
    let data: Vec<serde_json::Value> = runtime
        .config
        .models
        .iter()
        .filter_map(|m| match &m.pattern {
            crate::config::ModelPattern::Exact(name) => Some(name.as_str()),
            crate::config::ModelPattern::Prefix(_) => None,
        })
        .filter(|name| principal.is_none_or(|p| p.may_use(name)))
        .map(model_object)
        .collect();
    json_response(StatusCode::OK, json!({ "object": "list", "data": data }))
}

fn model<B>(runtime: &Runtime, request: &Request<B>, id: &str) -> Result<Response<Body>, RelayError> {
    let allowed = request.extensions().get::<Principal>().is_none_or(|p| p.may_use(id));
    match runtime.table.resolve(id) {
        Some(_) if allowed => Ok(json_response(StatusCode::OK, model_object(id))),
        _ => {
            Err(RelayError::new(ErrorCode::ModelNotFound, format!("model {id:?} is not served here"))
                .with_param("model"))
        }
    }
}

fn readyz(runtime: &Runtime) -> Response<Body> {
    let mut upstreams = serde_json::Map::new();
    for (name, entry) in &runtime.entries {
        let state = match entry.health.availability() {
            health::Availability::Healthy => "enabled",
            health::Availability::Probation => "probation",
            health::Availability::Ejected { .. } => "ejected",
        };
        upstreams.insert(name.clone(), json!({ "state": state, "dialect": entry.upstream.params().dialect.as_str() }));
    }
    for (name, problem) in &runtime.config.disabled {
        upstreams
            .insert(name.clone(), json!({ "state": "disabled", "reason": problem.message, "fix": problem.suggestion }));
    }
    let usable = runtime.config.usable_upstreams();
    let (status, word) = match (usable, runtime.config.disabled.is_empty()) {
        (0, _) => (StatusCode::SERVICE_UNAVAILABLE, "not_ready"),
        (_, true) => (StatusCode::OK, "ready"),
        (_, false) => (StatusCode::OK, "degraded"),
    };
    json_response(
        status,
        json!({
            "status": word,
            "config": runtime.config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "embedded default".into()),
            "models": runtime.config.models.len(),
            "upstreams": upstreams,
        }),
    )
}

fn metrics(runtime: &Runtime) -> Response<Body> {
    let mut response = Response::new(full(runtime.metrics.render()));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_is_tracked_only_for_upstreams_a_least_latency_model_chooses_between() {
        let upstream = |name: &str| {
            format!("[upstreams.{name}]\ndialect = \"openai-completions\"\nbase_url = \"http://127.0.0.1:1/v1\"\n")
        };
        let source = ["fast", "slow", "solo", "ordered"].map(upstream).concat()
            + "[[models]]\nname = \"pick\"\nstrategy = \"least-latency\"\ntargets = [{ upstream = \"fast\" }, { upstream = \"slow\" }]\n"
            + "[[models]]\nname = \"single\"\nstrategy = \"least-latency\"\ntargets = [{ upstream = \"solo\" }]\n"
            + "[[models]]\nname = \"chain\"\ntargets = [{ upstream = \"ordered\" }, { upstream = \"fast\" }]\n";
        let config = Config::from_source(&source, None, &|_| None).unwrap();
        let runtime = Runtime::build(Arc::new(config), Arc::new(Metrics::new()), None).unwrap();
        let tracked = |name: &str| runtime.entry(name).unwrap().latency_cost().is_some();
        assert!(tracked("fast") && tracked("slow"));
        assert!(!tracked("solo"), "one target leaves nothing to choose");
        assert!(!tracked("ordered"), "a failover model never reads latency");
    }
}
