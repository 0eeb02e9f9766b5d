//! `switchyard probe`: why can't the relay reach an upstream?
//!
//! For each upstream the probe walks the layers real traffic crosses, each as its own step with
//! its latency — DNS, TCP, the egress proxy's CONNECT, TLS, `GET` of the model listing, one
//! non-stream and one stream chat request — and stops at the first layer that fails, naming its
//! [`Class`] and the config change that most likely fixes it.
//!
//! The HTTP steps go through the relay's own client, header policy and [`Upstream::attempt`], so
//! they see exactly what a client's request would. They carry the headers an OpenAI SDK sends
//! (`User-Agent: OpenAI/JS ...`, `x-stainless-*`), because those are what WAFs in front of
//! OpenAI-compatible relays block: whether they reach the upstream is the header policy's call,
//! as for real traffic. When a WAF answers, the step is retried once with a neutral User-Agent and
//! no fingerprint headers to tell whether the fingerprint is the cause.
//!
//! Secrets never appear in the output: keys are not printed, credential header values (and every
//! `headers.set` value the config marked sensitive) are redacted, and every configured secret is
//! scrubbed from the final text (upstream error messages included).

pub mod cert;
pub mod diagnose;
mod net;

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::body::collect_limited;
use crate::config::{is_credential_header, Config, ModelPattern, Redactor, UpstreamParams};
use crate::dialect::{self, ChatRequest, Dialect};
use crate::error::{ErrorCode, RelayError};
use crate::metrics::Metrics;
use crate::record::RequestRecord;
use crate::upstream::client::{self, HttpClient};
use crate::upstream::proxy::{process_env, ProxyRules, ProxyTarget};
use crate::upstream::{classify, headers, Call, Upstream};
pub use diagnose::Class;
use diagnose::{Context, Diagnosis};

/// The User-Agent of the fingerprint retry: what worked with `curl` in the field.
pub const NEUTRAL_AGENT: &str = "curl/8.5.0";

/// What an OpenAI SDK sends besides the body; the header policy decides what reaches upstream.
const SDK_HEADERS: &[(&str, &str)] = &[
    ("user-agent", "OpenAI/JS 4.77.0"),
    ("x-stainless-lang", "js"),
    ("x-stainless-package-version", "4.77.0"),
    ("x-stainless-os", "Linux"),
    ("x-stainless-arch", "x64"),
    ("x-stainless-runtime", "node"),
    ("x-stainless-runtime-version", "v20.11.0"),
    ("x-stainless-retry-count", "0"),
];

/// Probe requests wait at most this long for an answer, whatever the upstream's own timeouts:
/// a diagnosis that takes five minutes is not one.
const FIRST_BYTE_CAP: Duration = Duration::from_secs(60);
const TOTAL_CAP: Duration = Duration::from_secs(120);
const LISTING_LIMIT: usize = 8 * 1024 * 1024;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Not a failure, but worth knowing (e.g. no model listing).
    Warning,
    Failed,
    /// Not run, because an earlier step failed or there is nothing to run it with.
    Skipped,
}

/// One step of one upstream's probe.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// `dns`, `tcp`, `proxy`, `tls`, `models`, `neutral_agent`, `chat` or `stream`.
    pub step: &'static str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ms: Option<f64>,
    /// What was found, or what went wrong.
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Class>,
    /// The relay's error code for this failure, as a client would see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The likely fix, as the config change to make.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Step-specific facts (addresses, certificate, models, headers sent).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub data: Value,
}

type Steps = Vec<Step>;

fn millis(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 10_000.0).round() / 10.0
}

impl Step {
    fn new(step: &'static str, status: Status, elapsed: Option<Duration>, detail: impl Into<String>) -> Self {
        Step {
            step,
            status,
            ms: elapsed.map(millis),
            detail: detail.into(),
            class: None,
            code: None,
            http_status: None,
            fix: None,
            data: Value::Null,
        }
    }

    fn ok(step: &'static str, elapsed: Duration, detail: impl Into<String>) -> Self {
        Step::new(step, Status::Ok, Some(elapsed), detail)
    }

    fn skipped(step: &'static str, detail: impl Into<String>) -> Self {
        Step::new(step, Status::Skipped, None, detail)
    }

    fn failed(step: &'static str, elapsed: Option<Duration>, diagnosis: Diagnosis) -> Self {
        Step {
            class: Some(diagnosis.class),
            code: Some(diagnosis.code.as_str()),
            http_status: diagnosis.http_status,
            fix: diagnosis.fix,
            ..Step::new(step, Status::Failed, elapsed, diagnosis.message)
        }
    }

    fn with_data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// One upstream's result.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamReport {
    pub name: String,
    /// `enabled`, `disabled` (by config validation) or `unknown` (no such upstream).
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dialect: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The egress proxy toward `base_url`, credentials removed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    /// The model the chat steps asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub ok: bool,
    pub steps: Vec<Step>,
}

impl UpstreamReport {
    fn unusable(name: &str, state: &'static str, reason: String) -> Self {
        UpstreamReport {
            name: name.to_owned(),
            state,
            reason: Some(reason),
            dialect: None,
            base_url: None,
            proxy: None,
            model: None,
            ok: false,
            steps: Vec::new(),
        }
    }
}

/// The whole probe.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// No step failed, and every upstream named on the command line exists and is enabled.
    pub ok: bool,
    pub upstreams: Vec<UpstreamReport>,
}

/// Probes the named upstreams, or every enabled one (disabled ones are listed with their reason).
pub async fn probe(config: &Config, names: &[String]) -> Report {
    let metrics = Arc::new(Metrics::new());
    let mut pending = Vec::new();
    let mut unusable = Vec::new();
    let wanted: Vec<&str> = if names.is_empty() {
        config.upstreams.keys().chain(config.disabled.keys()).map(String::as_str).collect()
    } else {
        names.iter().map(String::as_str).collect()
    };
    for name in wanted {
        if let Some(params) = config.upstreams.get(name) {
            pending.push(probe_upstream(config, params, &metrics));
        } else if let Some(problem) = config.disabled.get(name) {
            let mut reason = problem.message.clone();
            if let Some(suggestion) = &problem.suggestion {
                reason.push_str(&format!(" ({suggestion})"));
            }
            unusable.push(UpstreamReport::unusable(name, "disabled", reason));
        } else {
            let known = config.upstreams.keys().chain(config.disabled.keys()).map(String::as_str);
            let hint =
                crate::config::did_you_mean(name, known).map(|c| format!("; did you mean {c:?}?")).unwrap_or_default();
            unusable.push(UpstreamReport::unusable(
                name,
                "unknown",
                format!("no upstream named {name:?} in the config{hint}"),
            ));
        }
    }
    let mut upstreams = futures_util::future::join_all(pending).await;
    upstreams.extend(unusable);
    // Listing everything, a disabled upstream is reported, not failed: `check` is the command
    // that fails on config problems. Asked for by name, it could not be probed, so it fails.
    let ok = upstreams.iter().all(|u| u.ok || (u.state == "disabled" && names.is_empty()));
    Report { ok, upstreams }
}

/// Which model the chat steps ask for.
enum ModelChoice {
    Named(String),
    /// A `prefix/*` model (or none at all) targets the upstream: take the first it lists.
    FirstListed,
}

fn configured_model(config: &Config, upstream: &str) -> ModelChoice {
    for model in &config.models {
        if let Some(target) = model.targets.iter().find(|t| t.upstream == upstream) {
            return match (&target.model, &model.pattern) {
                (Some(name), _) | (None, ModelPattern::Exact(name)) => ModelChoice::Named(name.clone()),
                (None, ModelPattern::Prefix(_)) => ModelChoice::FirstListed,
            };
        }
    }
    ModelChoice::FirstListed
}

/// The state of one upstream's probe.
struct Probe<'a> {
    config: &'a Config,
    params: &'a UpstreamParams,
    dialect: Arc<dyn Dialect>,
    metrics: &'a Arc<Metrics>,
    base: String,
    steps: Steps,
    listed: Option<Vec<String>>,
    model: Option<String>,
}

/// Whether the next steps can run.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

async fn probe_upstream(config: &Config, params: &UpstreamParams, metrics: &Arc<Metrics>) -> UpstreamReport {
    let rules = ProxyRules::resolve(params.proxy.as_ref(), &process_env);
    let proxy = params.base_url.as_ref().and_then(|base| rules.for_destination(base));
    let mut probe = Probe {
        config,
        params,
        dialect: dialect::build(params.dialect, &params.dialect_options),
        metrics,
        // Validation refuses a base_url with user-info or a query, so it can be shown as it is.
        base: params.base_url.as_ref().map(ToString::to_string).unwrap_or_default(),
        steps: Vec::new(),
        listed: None,
        model: None,
    };
    probe.run(rules, proxy.as_ref()).await;
    UpstreamReport {
        name: params.name.clone(),
        state: "enabled",
        reason: None,
        dialect: Some(params.dialect.as_str()),
        base_url: params.base_url.as_ref().map(ToString::to_string),
        proxy: proxy.map(|p| p.display().to_owned()),
        model: probe.model.clone(),
        ok: probe.steps.iter().all(|s| s.status != Status::Failed),
        steps: probe.steps,
    }
}

impl Probe<'_> {
    fn ctx(&self, stream_after_chat_ok: bool) -> Context<'_> {
        Context {
            upstream: &self.params.name,
            base_url: &self.base,
            has_key: self.params.api_key.is_some() || self.params.aws.is_some(),
            model: self.model.as_deref(),
            listed: self.listed.as_deref(),
            stream_after_chat_ok,
            injects_stream_usage: self.params.dialect_options.compat.request_stream_usage,
        }
    }

    fn skip(&mut self, steps: &[&'static str], why: &str) {
        for step in steps {
            self.steps.push(Step::skipped(step, why));
        }
    }

    async fn run(&mut self, rules: ProxyRules, proxy: Option<&ProxyTarget>) {
        let params = self.params;
        const AFTER_CONNECT: &[&str] = &["models", "chat", "stream"];
        if let Some(base) = &params.base_url {
            let mut steps = Vec::new();
            let ctx = self.ctx(false);
            let connected = net::connection_steps(params, base, proxy, &ctx, &mut steps).await;
            self.steps.extend(steps);
            if !connected {
                self.skip(AFTER_CONNECT, "not run: the connection failed");
                return;
            }
        }
        let client = match client::build(&params.tls, params.timeouts.connect, rules) {
            Ok(client) => client,
            Err(error) => {
                let diagnosis = Diagnosis::new(
                    Class::TlsHandshake,
                    ErrorCode::Internal,
                    format!("building the client: {error}"),
                    None,
                );
                self.steps.push(Step::failed("models", None, diagnosis));
                return;
            }
        };
        if self.models(&client).await == Flow::Stop {
            self.skip(&["chat", "stream"], "not run: fix the failure above first");
            return;
        }
        self.chats().await;
    }

    /// Headers for a request to this upstream as the relay builds them from an SDK's request.
    fn upstream_headers(&self, params: &UpstreamParams, sdk: bool) -> HeaderMap {
        // The dialect's own headers (e.g. `anthropic-version`) come with a translated request.
        let sample = ChatRequest {
            body: Bytes::from_static(br#"{"model":"probe","messages":[]}"#),
            upstream_model: "probe".to_owned(),
            stream: false,
            client_wants_usage: false,
            layout: None,
        };
        let dialect_headers = self.dialect.translate_request(&sample).map(|call| call.headers).unwrap_or_default();
        headers::OutgoingHeaders::new(params).to_upstream(&client_headers(sdk), &dialect_headers, false)
    }

    /// The same for a `GET`, which has no body to type.
    fn get_headers(&self, params: &UpstreamParams, sdk: bool) -> HeaderMap {
        let mut headers = self.upstream_headers(params, sdk);
        headers.remove(header::CONTENT_TYPE);
        headers
    }

    async fn get(
        &self,
        client: &HttpClient,
        url: &str,
        headers: HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Bytes), RelayError> {
        let uri: Uri = url.parse().map_err(|e| RelayError::new(ErrorCode::Internal, format!("{url:?}: {e}")))?;
        let mut request = Request::get(uri)
            .body(Full::new(Bytes::new()))
            .map_err(|e| RelayError::new(ErrorCode::Internal, e.to_string()))?;
        *request.headers_mut() = headers;
        let limit = self.params.timeouts.first_byte.min(FIRST_BYTE_CAP);
        let timed_out = || RelayError::new(ErrorCode::UpstreamTimeoutFirstByte, format!("no answer within {limit:?}"));
        let response = tokio::time::timeout(limit, client.request(request))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| classify::transport_error(&e))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(limit, collect_limited(body, LISTING_LIMIT))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| RelayError::new(ErrorCode::UpstreamReset, format!("reading the answer: {e}")))?;
        Ok((parts.status, parts.headers, body))
    }

    async fn models(&mut self, client: &HttpClient) -> Flow {
        let params = self.params;
        if params.base_url.is_none() {
            self.steps.push(Step::skipped("models", "built-in upstream: nothing to list"));
            return Flow::Continue;
        }
        let Some(path) = self.dialect.models_path() else {
            self.steps.push(Step::skipped("models", "this dialect has no model listing"));
            return Flow::Continue;
        };
        let base = self.base.trim_end_matches('/').to_owned();
        let url = format!("{base}{path}");
        let sent = self.get_headers(params, true);
        let started = Instant::now();
        let answer = self.get(client, &url, sent.clone()).await;
        let elapsed = started.elapsed();
        let (status, head, body) = match answer {
            Ok(answer) => answer,
            Err(error) => {
                let diagnosis = diagnose::relay_error(&error, &self.ctx(false));
                let flow = if diagnosis.class.stops_later_steps() { Flow::Stop } else { Flow::Continue };
                self.steps.push(Step::failed("models", Some(elapsed), diagnosis));
                return flow;
            }
        };
        if status.is_success() && serde_json::from_slice::<Value>(&body).is_err() {
            let detail = format!(
                "GET {url}: {status}, but not a JSON model listing: {}; is base_url the API or a web page?",
                crate::dialect::openai::excerpt(&body)
            );
            self.steps.push(Step::new("models", Status::Warning, Some(elapsed), detail));
            return Flow::Continue;
        }
        if status.is_success() {
            let listed = model_ids(&body);
            let shown: Vec<&str> = listed.iter().take(5).map(String::as_str).collect();
            let more = if listed.len() > shown.len() { ", ..." } else { "" };
            let detail = format!("GET {url}: {status}, {} models ({}{more})", listed.len(), shown.join(", "));
            self.steps
                .push(Step::ok("models", elapsed, detail).with_data(
                    json!({ "models": listed.iter().take(100).collect::<Vec<_>>(), "count": listed.len() }),
                ));
            self.listed = Some(listed);
            return Flow::Continue;
        }
        let error = classify::status_error(self.dialect.as_ref(), status, &head, &body);
        if status == StatusCode::NOT_FOUND {
            if !base.ends_with("/v1") {
                let with_v1 = format!("{base}/v1{path}");
                if let Ok((v1_status, _, v1_body)) = self.get(client, &with_v1, sent.clone()).await {
                    if v1_status.is_success() {
                        self.listed = Some(model_ids(&v1_body));
                        let diagnosis = Diagnosis {
                            class: Class::BaseUrlMissingV1,
                            code: error.code,
                            http_status: Some(404),
                            message: format!("GET {url} answered 404, but GET {with_v1} answered {v1_status}"),
                            fix: Some(format!(
                                "base_url lacks its /v1: set upstreams.{}.base_url = \"{base}/v1\"",
                                params.name
                            )),
                        };
                        self.steps.push(Step::failed("models", Some(elapsed), diagnosis));
                        return Flow::Stop;
                    }
                }
            }
            let detail = format!("GET {url} answered 404: the upstream lists no models there; the chat steps tell whether the path is right");
            self.steps.push(Step::new("models", Status::Warning, Some(elapsed), detail));
            return Flow::Continue;
        }
        let diagnosis = diagnose::relay_error(&error, &self.ctx(false));
        let class = diagnosis.class;
        self.steps.push(
            Step::failed("models", Some(elapsed), diagnosis).with_data(json!({ "sent_headers": shown_headers(&sent) })),
        );
        if class == Class::WafBlock {
            self.neutral_models(client, &url).await;
        }
        if class.stops_later_steps() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }

    /// The WAF check for the listing: the same GET with a neutral User-Agent and no SDK headers.
    async fn neutral_models(&mut self, client: &HttpClient, url: &str) {
        let neutral = neutral_params(self.params);
        let sent = self.get_headers(&neutral, false);
        let started = Instant::now();
        let outcome = match self.get(client, url, sent.clone()).await {
            Ok((status, _, _)) if status.is_success() => Ok(status),
            Ok((status, head, body)) => Err(classify::status_error(self.dialect.as_ref(), status, &head, &body)),
            Err(error) => Err(error),
        };
        self.neutral_outcome(started.elapsed(), outcome.map(|s| s.to_string()), &sent);
    }

    /// Reports the fingerprint retry. Any answer that is not the WAF's page means the request got
    /// past the WAF, so the fingerprint was the cause, even when the API then refuses it for
    /// another reason (which the next probe, with the fix applied, shows on its own).
    fn neutral_outcome(&mut self, elapsed: Duration, outcome: Result<String, RelayError>, sent: &HeaderMap) {
        let data = json!({ "user_agent": NEUTRAL_AGENT, "sent_headers": shown_headers(sent) });
        let passed = match outcome {
            Ok(status) => status,
            Err(error) => {
                let mut diagnosis = diagnose::relay_error(&error, &self.ctx(false));
                match diagnosis.class {
                    Class::WafBlock => {
                        diagnosis.message = format!(
                            "still blocked with User-Agent {NEUTRAL_AGENT} and no SDK headers, so the block is not \
                             about the headers: {}",
                            diagnosis.message
                        );
                        diagnosis.fix = Some(
                            "the WAF blocks this machine (its address or region) or wants a browser: ask the provider \
                             to allow the relay's egress address, or route through an allowed proxy \
                             (proxy = \"http://host:port\")"
                                .to_owned(),
                        );
                    }
                    _ if no_answer(error.code) => {
                        // No answer at all this time: nothing learned about the WAF.
                    }
                    _ => {
                        let status = format!("{} ({})", error.status, diagnosis.class.as_str());
                        return self.neutral_passed(elapsed, status, data);
                    }
                }
                self.steps.push(Step::failed("neutral_agent", Some(elapsed), diagnosis).with_data(data));
                return;
            }
        };
        self.neutral_passed(elapsed, passed, data);
    }

    fn neutral_passed(&mut self, elapsed: Duration, status: String, data: Value) {
        let fix = fingerprint_fix(self.params);
        if let Some(blocked) = self.steps.iter_mut().rev().find(|s| s.class == Some(Class::WafBlock)) {
            blocked.fix = Some(fix);
        }
        let detail = format!(
            "with User-Agent {NEUTRAL_AGENT} and no x-stainless-* headers the upstream answers {status} instead of the \
             WAF's page: the WAF blocks the request's fingerprint"
        );
        self.steps.push(Step::ok("neutral_agent", elapsed, detail).with_data(data));
    }

    fn call(&self, model: &str, stream: bool, sdk: bool, serial: usize) -> Call {
        let params = self.params;
        let body = json!({
            "model": model,
            "messages": [{ "role": "user", "content": "Reply with the single word OK." }],
            "max_completion_tokens": 16,
            "stream": stream,
        });
        let timeouts = crate::config::Timeouts {
            first_byte: params.timeouts.first_byte.min(FIRST_BYTE_CAP),
            total: params.timeouts.total.min(TOTAL_CAP),
            ..params.timeouts
        };
        let record = RequestRecord::start(
            self.metrics.clone(),
            Default::default(),
            format!("req_probe{serial}"),
            http::Method::POST,
            http::Version::HTTP_11,
            "/v1/chat/completions",
        );
        Call {
            chat: Arc::new(ChatRequest {
                body: Bytes::from(body.to_string()),
                upstream_model: model.to_owned(),
                stream,
                client_wants_usage: false,
                layout: None,
            }),
            client_headers: Arc::new(client_headers(sdk)),
            record,
            timeouts,
            keepalive: self.config.server.keepalive_interval,
            deadline: Instant::now() + timeouts.total,
        }
    }

    async fn chats(&mut self) {
        let model = match configured_model(self.config, &self.params.name) {
            ModelChoice::Named(name) => Some(name),
            ModelChoice::FirstListed => self.listed.as_ref().and_then(|l| l.first().cloned()),
        };
        let Some(model) = model else {
            let why = "no model known: no [[models]] entry names a model for this upstream and it listed none; add \
                       targets = [{ upstream = \"...\", model = \"...\" }]";
            self.steps.push(Step::new("chat", Status::Warning, None, why));
            self.skip(&["stream"], "not run: no model known");
            return;
        };
        self.model = Some(model.clone());
        let upstream = match Upstream::new(Arc::new(self.params.clone())) {
            Ok(upstream) => upstream,
            Err(error) => {
                let diagnosis = Diagnosis::new(
                    Class::TlsHandshake,
                    ErrorCode::Internal,
                    format!("building the client: {error}"),
                    None,
                );
                self.steps.push(Step::failed("chat", None, diagnosis));
                return;
            }
        };

        let started = Instant::now();
        let chat_ok = match upstream.attempt(self.call(&model, false, true, 1)).await {
            Ok(response) => {
                let body = collect_limited(response.into_body(), LISTING_LIMIT).await.unwrap_or_default();
                let answer: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let reply = answer.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or("");
                let reply: String = reply.chars().take(80).collect();
                let answered_by = answer.get("model").and_then(Value::as_str).unwrap_or(&model).to_owned();
                let detail = format!("200 from {answered_by}: {reply:?}");
                self.steps.push(
                    Step::ok("chat", started.elapsed(), detail)
                        .with_data(json!({ "model": answered_by, "reply": reply })),
                );
                true
            }
            Err(error) => {
                let elapsed = started.elapsed();
                let diagnosis = diagnose::relay_error(&error, &self.ctx(false));
                let class = diagnosis.class;
                self.steps.push(Step::failed("chat", Some(elapsed), diagnosis));
                if class == Class::WafBlock {
                    self.neutral_chat(&model).await;
                }
                if class.stops_later_steps() {
                    self.skip(&["stream"], "not run: fix the failure above first");
                    return;
                }
                false
            }
        };

        let started = Instant::now();
        let call = self.call(&model, true, true, 2);
        // A failure after the stream started reaches the client in-band, as JSON; the record
        // keeps the relay's own code for it.
        let record = call.record.clone();
        match upstream.attempt(call).await {
            Ok(response) => {
                let status = response.status().as_u16();
                let first_event = started.elapsed();
                let (events, done, in_band) = read_stream(response.into_body()).await;
                let data = json!({ "first_event_ms": millis(first_event), "events": events, "done": done });
                match record.error() {
                    Some(code) => {
                        let message = in_band
                            .as_ref()
                            .and_then(|error| error.pointer("/error/message"))
                            .and_then(Value::as_str)
                            .unwrap_or_default();
                        let failure =
                            RelayError::new(code, format!("the stream started, then failed: {code}: {message}"))
                                .with_status(status);
                        let diagnosis = diagnose::relay_error(&failure, &self.ctx(chat_ok));
                        self.steps.push(Step::failed("stream", Some(started.elapsed()), diagnosis).with_data(data));
                    }
                    None => {
                        let end = if done { "ended with [DONE]" } else { "ended" };
                        let detail = format!("first event after {:.0} ms; {events} events, {end}", millis(first_event));
                        self.steps.push(Step::ok("stream", started.elapsed(), detail).with_data(data));
                    }
                }
            }
            Err(error) => {
                let diagnosis = diagnose::relay_error(&error, &self.ctx(chat_ok));
                self.steps.push(Step::failed("stream", Some(started.elapsed()), diagnosis));
            }
        }
    }

    /// The WAF check for the chat request: the same request with a neutral User-Agent and no
    /// SDK headers, through an upstream built with those settings.
    async fn neutral_chat(&mut self, model: &str) {
        let neutral = neutral_params(self.params);
        let sent = self.upstream_headers(&neutral, false);
        let started = Instant::now();
        let outcome = match Upstream::new(Arc::new(neutral)) {
            Ok(upstream) => upstream.attempt(self.call(model, false, false, 3)).await.map(|r| r.status().to_string()),
            Err(error) => Err(RelayError::new(ErrorCode::Internal, format!("building the client: {error}"))),
        };
        self.neutral_outcome(started.elapsed(), outcome, &sent);
    }
}

/// Whether an error means no HTTP answer came back at all.
fn no_answer(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::UpstreamDns
            | ErrorCode::UpstreamConnectRefused
            | ErrorCode::UpstreamConnectTimeout
            | ErrorCode::UpstreamTls
            | ErrorCode::UpstreamProxy
            | ErrorCode::UpstreamReset
            | ErrorCode::UpstreamTimeoutFirstByte
            | ErrorCode::UpstreamTimeoutTotal
            | ErrorCode::Internal
    )
}

/// The client headers a probe request carries: an SDK's, or none.
fn client_headers(sdk: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if sdk {
        for (name, value) in SDK_HEADERS {
            headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
    }
    headers
}

/// The upstream's settings with a neutral User-Agent and every SDK fingerprint left out.
fn neutral_params(params: &UpstreamParams) -> UpstreamParams {
    let mut neutral = params.clone();
    neutral.user_agent = NEUTRAL_AGENT.to_owned();
    neutral.keep_sdk_headers = false;
    neutral.headers_set.retain(|(name, _)| *name != header::USER_AGENT && !name.as_str().starts_with("x-stainless-"));
    neutral
}

fn fingerprint_fix(params: &UpstreamParams) -> String {
    let mut changes = vec![format!("user_agent = \"{NEUTRAL_AGENT}\"")];
    if params.keep_sdk_headers {
        changes.push("keep_sdk_headers = false".to_owned());
    }
    if params
        .headers_set
        .iter()
        .any(|(name, _)| *name == header::USER_AGENT || name.as_str().starts_with("x-stainless-"))
    {
        changes.push("no user-agent or x-stainless-* in headers.set".to_owned());
    }
    format!("the WAF blocks the SDK fingerprint: set {} in [upstreams.{}]", changes.join(" and "), params.name)
}

/// Headers as shown, credentials redacted.
fn shown_headers(headers: &HeaderMap) -> serde_json::Map<String, Value> {
    headers
        .iter()
        .map(|(name, value)| {
            let shown = if value.is_sensitive() || is_credential_header(name) {
                "[redacted]".to_owned()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_owned(), Value::String(shown))
        })
        .collect()
}

/// Model ids from a listing: OpenAI/Anthropic `data[].id`, Gemini `models[].name`, Ollama
/// `models[].name`/`model`.
fn model_ids(body: &[u8]) -> Vec<String> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let from = |list: Option<&Value>, keys: &[&str]| -> Vec<String> {
        list.and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|item| keys.iter().find_map(|k| item.get(*k).and_then(Value::as_str)))
                    .map(|id| id.trim_start_matches("models/").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let ids = from(value.get("data"), &["id"]);
    if ids.is_empty() {
        from(value.get("models"), &["name", "model", "id"])
    } else {
        ids
    }
}

/// Reads a relayed stream to its end: data events, whether `[DONE]` came, and an in-band error.
async fn read_stream(body: crate::body::Body) -> (usize, bool, Option<Value>) {
    let mut body = std::pin::pin!(body);
    let mut decoder = crate::sse::SseDecoder::default();
    let mut events = Vec::new();
    // The relayed stream enforces the idle and total timeouts itself; this only bounds a bug.
    let deadline = Instant::now() + TOTAL_CAP + Duration::from_secs(5);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            if decoder.push(data, &mut events).is_err() {
                break;
            }
        }
    }
    events.extend(decoder.finish());
    let (mut count, mut done, mut error) = (0, false, None);
    for event in &events {
        let Some(data) = event.data() else { continue };
        if data.as_ref() == b"[DONE]" {
            done = true;
            continue;
        }
        count += 1;
        if let Ok(value) = serde_json::from_slice::<Value>(&data) {
            if value.get("error").is_some() {
                error = Some(value);
            }
        }
    }
    (count, done, error)
}

/// Every configured secret, and the egress proxies' credentials, to scrub from the output.
fn redactor(config: &Config) -> Redactor {
    let mut found = Vec::new();
    for params in config.upstreams.values() {
        found.extend(params.secret_values());
    }
    for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        if let Some(value) = process_env(name) {
            if let Some((userinfo, _)) = value.rsplit_once('@') {
                let userinfo = userinfo.rsplit("//").next().unwrap_or(userinfo);
                found.push(userinfo.to_owned());
                found.extend(userinfo.split_once(':').map(|(_, password)| password.to_owned()));
            }
        }
    }
    Redactor::new(found)
}

fn scrub_value(value: &mut Value, redactor: &Redactor) {
    match value {
        Value::String(text) => {
            if let Some(scrubbed) = redactor.text(text) {
                *text = scrubbed;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, redactor)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub_value(v, redactor)),
        _ => {}
    }
}

/// The report as text, one line per step.
pub fn render(report: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for upstream in &report.upstreams {
        let mut head = format!("upstream {}", upstream.name);
        let about: Vec<String> = [upstream.dialect.map(str::to_owned), upstream.base_url.clone()]
            .into_iter()
            .flatten()
            .chain(upstream.proxy.as_ref().map(|p| format!("via proxy {p}")))
            .chain(upstream.model.as_ref().map(|m| format!("model {m}")))
            .collect();
        if !about.is_empty() {
            head.push_str(&format!(" ({})", about.join(", ")));
        }
        let _ = writeln!(out, "{head}");
        if let Some(reason) = &upstream.reason {
            let _ = writeln!(out, "  {:<8} {}", upstream.state.to_uppercase(), reason);
        }
        for step in &upstream.steps {
            let status = match step.status {
                Status::Ok => "ok",
                Status::Warning => "warning",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            let ms = step.ms.map(|ms| format!("{ms:.0} ms")).unwrap_or_default();
            let _ = writeln!(out, "  {status:<8} {:<14} {ms:>9}  {}", step.step, step.detail);
            if let Some(class) = step.class {
                let code = step.code.map(|c| format!(" (relay error code {c})")).unwrap_or_default();
                let _ = writeln!(out, "  {:<8} class: {}{code}", "", class.as_str());
            }
            if let Some(fix) = &step.fix {
                let _ = writeln!(out, "  {:<8} fix:   {fix}", "");
            }
        }
        let _ = writeln!(out);
    }
    let failed = report.upstreams.iter().filter(|u| !u.ok).count();
    if report.ok {
        let _ = writeln!(out, "all {} upstream(s) ok", report.upstreams.len());
    } else {
        let _ = writeln!(out, "{failed} of {} upstream(s) failed", report.upstreams.len());
    }
    out
}

/// `switchyard probe`: loads the config, probes, prints, and fails when any step failed.
pub async fn run(config: Option<&Path>, as_json: bool, names: &[String]) -> ExitCode {
    let loaded = match config {
        Some(path) => Config::load(path),
        None => Config::embedded(),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            if as_json {
                println!("{}", json!({ "ok": false, "error": error.render(), "upstreams": [] }));
            } else {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let report = probe(&config, names).await;
    let redactor = redactor(&config);
    if as_json {
        let mut value = serde_json::to_value(&report).unwrap_or(Value::Null);
        scrub_value(&mut value, &redactor);
        println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
    } else {
        let text = render(&report);
        print!("{}", redactor.text(&text).unwrap_or(text));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_of_each_shape_give_model_ids() {
        assert_eq!(model_ids(br#"{"object":"list","data":[{"id":"a"},{"id":"b"}]}"#), ["a", "b"]);
        assert_eq!(model_ids(br#"{"models":[{"name":"models/gemini-2.0-flash"}]}"#), ["gemini-2.0-flash"]);
        assert_eq!(model_ids(br#"{"models":[{"name":"llama3:8b","model":"llama3:8b"}]}"#), ["llama3:8b"]);
        assert!(model_ids(b"<html>").is_empty());
    }

    #[test]
    fn credentials_are_redacted_from_headers_and_text() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer sk-secret-123"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
        headers.insert("cf-access-client-secret", HeaderValue::from_static("cf-secret"));
        let mut from_variable = HeaderValue::from_static("org-1234");
        from_variable.set_sensitive(true);
        headers.insert("x-org", from_variable);
        let shown = shown_headers(&headers);
        assert_eq!(shown["authorization"], "[redacted]");
        assert_eq!(shown["cf-access-client-secret"], "[redacted]");
        assert_eq!(shown["x-org"], "[redacted]");
        assert_eq!(shown["user-agent"], "curl/8.5.0");
        let redactor = Redactor::new(["sk-secret-123".to_owned()]);
        assert_eq!(
            redactor.text("Incorrect API key provided: sk-secret-123.").unwrap(),
            "Incorrect API key provided: [redacted]."
        );
    }
}
