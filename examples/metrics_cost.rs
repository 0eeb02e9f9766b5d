//! What the metrics cost per request: the recording a relayed request does (the request record
//! with its labels, an upstream attempt, token counts, the three histograms through the model's
//! resolved series, the access-log event with no subscriber), timed over many iterations. Compare with the relay's added latency from
//! `bench/run.sh` to see the share metrics take on the hot path.
//!
//! `cargo run --release --example metrics_cost [ITERATIONS]`

use std::sync::Arc;
use std::time::Instant;

use switchyard::dialect::Usage;
use switchyard::error::Attempt;
use switchyard::metrics::{Metrics, ModelSeries};
use switchyard::record::RequestRecord;
use switchyard::server::shutdown::Cutoff;

fn one_request(metrics: &Arc<Metrics>, cutoff: &Cutoff, model: &ModelSeries) {
    let record = RequestRecord::start(
        metrics.clone(),
        cutoff.clone(),
        "req_0123456789abcdef01234567".into(),
        http::Method::POST,
        http::Version::HTTP_11,
        "/v1/chat/completions",
    );
    record.set_key(Some("team-a"));
    record.set_model(model.label().clone());
    record.set_stream(true);
    metrics.upstream_attempts.with_label_values(&["primary", "success"]).inc();
    record.add_attempt(Attempt { upstream: "primary".into(), code: "success", status: Some(200), duration_ms: 12 });
    record.set_served(model.served(metrics, 0, "primary"));
    record.mark_first_token();
    record.set_usage(Usage { prompt_tokens: 120, completion_tokens: 40, cached_tokens: 0, reasoning_tokens: 0 });
    record.set_status(200);
    record.mark_body_complete();
}

fn main() {
    let iterations: u32 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let metrics = Arc::new(Metrics::new());
    let cutoff = Cutoff::default();
    let model = ModelSeries::new("gpt", 1);
    for _ in 0..10_000 {
        one_request(&metrics, &cutoff, &model);
    }
    let started = Instant::now();
    for _ in 0..iterations {
        one_request(&metrics, &cutoff, &model);
    }
    let per_request = started.elapsed() / iterations;
    let rendered = metrics.render().len();
    println!(
        "metrics recording per request: {per_request:?} over {iterations} requests (exposition now {rendered} bytes)"
    );
}
