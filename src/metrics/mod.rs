//! Prometheus metrics: every family registered once in [`Metrics`], handed around by `Arc`.
//!
//! Labels are bounded: `model` is a configured model name (or `other`), `upstream` a configured
//! upstream (or `none`), `key` a key's name (or `anonymous`), never a key itself.

mod series;

pub use series::{ModelSeries, ServedSeries, TOKEN_DIRECTIONS};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets from 1 ms to 10 min: relay overhead sits at the low end, long generations at the top.
const LLM_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// All of the relay's metric families.
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub in_flight: IntGauge,
    pub streams_active: IntGauge,
    pub client_disconnects: IntCounterVec,
    pub request_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub overhead: HistogramVec,
    pub upstream_attempts: IntCounterVec,
    pub upstream_retries: IntCounterVec,
    pub failovers: IntCounterVec,
    pub upstream_timeouts: IntCounterVec,
    pub upstream_ejections: IntCounterVec,
    pub upstream_healthy: IntGaugeVec,
    pub tokens: IntCounterVec,
    pub config_reloads: IntCounterVec,
    pub upstreams_disabled: IntGauge,
    pub upstream_disabled: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help).namespace("switchyard"), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.register(Box::new(family.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    family
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).namespace("switchyard").buckets(LLM_BUCKETS.to_vec());
    let family = HistogramVec::new(opts, labels).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.register(Box::new(family.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    family
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let family = IntGauge::with_opts(Opts::new(name, help).namespace("switchyard"))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.register(Box::new(family.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    family
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let family = IntGaugeVec::new(Opts::new(name, help).namespace("switchyard"), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    registry.register(Box::new(family.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    family
}

impl Metrics {
    /// Registers every family in a fresh registry. Names are constants, so a failure here is a
    /// programming error caught by the first test run.
    pub fn new() -> Self {
        let r = Registry::new();
        let build_info = GaugeVec::new(
            Opts::new("build_info", "Build information; always 1.").namespace("switchyard"),
            &["version"],
        )
        .unwrap_or_else(|e| panic!("metric build_info: {e}"));
        r.register(Box::new(build_info.clone())).unwrap_or_else(|e| panic!("metric build_info: {e}"));
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        Metrics {
            requests: counter(
                &r,
                "requests_total",
                "Client requests by model, upstream, status and error code.",
                &["model", "upstream", "status", "error"],
            ),
            in_flight: gauge(&r, "requests_in_flight", "Client requests being served."),
            streams_active: gauge(&r, "streams_active", "Streamed responses being relayed."),
            client_disconnects: counter(
                &r,
                "client_disconnects_total",
                "Clients that went away before their response ended.",
                &["model"],
            ),
            request_duration: histogram(
                &r,
                "request_duration_seconds",
                "Client request duration, to the end of the response body.",
                &["model", "upstream"],
            ),
            time_to_first_token: histogram(
                &r,
                "time_to_first_token_seconds",
                "Time to the first data event of a stream (or the full response when not streamed).",
                &["model", "upstream"],
            ),
            overhead: histogram(
                &r,
                "overhead_seconds",
                "Time spent in the relay itself: total minus time waiting on upstreams.",
                &["model", "upstream"],
            ),
            upstream_attempts: counter(
                &r,
                "upstream_attempts_total",
                "Attempts against upstreams by outcome (success or error code).",
                &["upstream", "outcome"],
            ),
            upstream_retries: counter(&r, "upstream_retries_total", "Retries against an upstream.", &["upstream"]),
            failovers: counter(
                &r,
                "failovers_total",
                "Requests moved on from a failing target; upstream is the one failed away from.",
                &["model", "upstream"],
            ),
            upstream_timeouts: counter(
                &r,
                "upstream_timeouts_total",
                "Upstream timeouts by kind (connect, first_byte, idle, total).",
                &["upstream", "kind"],
            ),
            upstream_ejections: counter(
                &r,
                "upstream_ejections_total",
                "Times an upstream was ejected by outlier detection.",
                &["upstream"],
            ),
            upstream_healthy: gauge_vec(
                &r,
                "upstream_healthy",
                "1 when the upstream takes traffic, 0 while ejected.",
                &["upstream"],
            ),
            tokens: counter(
                &r,
                "tokens_total",
                "Tokens by direction (input, output, cached, reasoning), model, upstream and key.",
                &["direction", "model", "upstream", "key"],
            ),
            config_reloads: counter(
                &r,
                "config_reloads_total",
                "Config reloads by result (success, failure).",
                &["result"],
            ),
            upstreams_disabled: gauge(&r, "upstreams_disabled", "Configured upstreams disabled by validation."),
            upstream_disabled: gauge_vec(
                &r,
                "upstream_disabled",
                "1 when this configured upstream is disabled by validation.",
                &["upstream"],
            ),
            registry: r,
        }
    }

    /// The text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 * 1024);
        let encoder = TextEncoder::new();
        if let Err(error) = encoder.encode(&self.registry.gather(), &mut out) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_the_common_prefix() {
        let metrics = Metrics::new();
        metrics.requests.with_label_values(&["mock", "mock", "200", "none"]).inc();
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(text
            .contains("switchyard_requests_total{error=\"none\",model=\"mock\",status=\"200\",upstream=\"mock\"} 1"));
        assert!(text.contains("switchyard_build_info{version=\""));
    }
}
