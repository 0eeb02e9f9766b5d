//! The series a served request updates, resolved once per (model, upstream) pair.
//!
//! Looking a child up by label values hashes every value and takes the family's lock; a
//! request updates up to eight of them when it ends. A pair's children are resolved on its first
//! request and then shared, so a request's record holds them directly. Nothing is resolved before
//! a pair is used: the exposition only shows series that have seen traffic.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use prometheus::{Histogram, IntCounter};

use super::Metrics;

/// The series of one configured model: its label, and one lazily resolved pair per target.
#[derive(Debug)]
pub struct ModelSeries {
    label: Arc<str>,
    targets: Vec<OnceLock<Arc<ServedSeries>>>,
}

impl ModelSeries {
    /// For a model labelled `label` with `targets` targets.
    pub fn new(label: &str, targets: usize) -> Self {
        ModelSeries { label: label.into(), targets: (0..targets).map(|_| OnceLock::new()).collect() }
    }

    /// The model's label (its pattern as written).
    pub fn label(&self) -> &Arc<str> {
        &self.label
    }

    /// The series for the model's target `index`, served by `upstream`.
    pub fn served(&self, metrics: &Metrics, index: usize, upstream: &str) -> Arc<ServedSeries> {
        match self.targets.get(index) {
            Some(slot) => slot.get_or_init(|| Arc::new(ServedSeries::new(metrics, &self.label, upstream))).clone(),
            None => Arc::new(ServedSeries::new(metrics, &self.label, upstream)),
        }
    }
}

/// The children of one (model, upstream) pair.
#[derive(Debug)]
pub struct ServedSeries {
    pub model: Arc<str>,
    pub upstream: Box<str>,
    /// `requests_total` for status 200 without an error, by far the most common outcome.
    pub succeeded: IntCounter,
    pub duration: Histogram,
    pub overhead: Histogram,
    pub first_token: Histogram,
    /// `tokens_total` per key name: input, output, cached, reasoning.
    tokens: Mutex<Vec<(Box<str>, [IntCounter; 4])>>,
}

/// The `direction` label of each `tokens_total` child, in [`ServedSeries::tokens`] order.
pub const TOKEN_DIRECTIONS: [&str; 4] = ["input", "output", "cached", "reasoning"];

impl ServedSeries {
    fn new(metrics: &Metrics, model: &Arc<str>, upstream: &str) -> Self {
        let pair = [&**model, upstream];
        ServedSeries {
            model: model.clone(),
            upstream: upstream.into(),
            succeeded: metrics.requests.with_label_values(&[&**model, upstream, "200", "none"]),
            duration: metrics.request_duration.with_label_values(&pair),
            overhead: metrics.overhead.with_label_values(&pair),
            first_token: metrics.time_to_first_token.with_label_values(&pair),
            tokens: Mutex::new(Vec::new()),
        }
    }

    /// Adds token counts for `key`, in [`TOKEN_DIRECTIONS`] order.
    pub fn add_tokens(&self, metrics: &Metrics, key: &str, counts: [u64; 4]) {
        let mut tokens = self.tokens.lock();
        let position = match tokens.iter().position(|(name, _)| &**name == key) {
            Some(position) => position,
            None => {
                let children = TOKEN_DIRECTIONS
                    .map(|direction| metrics.tokens.with_label_values(&[direction, &self.model, &self.upstream, key]));
                tokens.push((key.into(), children));
                tokens.len() - 1
            }
        };
        for (child, count) in tokens[position].1.iter().zip(counts) {
            child.inc_by(count);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_resolves_once_and_counts_into_the_labelled_families() {
        let metrics = Metrics::new();
        let model = ModelSeries::new("openai/*", 2);
        let first = model.served(&metrics, 1, "openai");
        assert!(Arc::ptr_eq(&first, &model.served(&metrics, 1, "openai")));
        first.succeeded.inc();
        first.duration.observe(0.5);
        first.add_tokens(&metrics, "team-a", [10, 20, 3, 4]);
        first.add_tokens(&metrics, "team-a", [1, 1, 0, 0]);
        first.add_tokens(&metrics, "anonymous", [5, 0, 0, 0]);
        let requests = metrics.requests.with_label_values(&["openai/*", "openai", "200", "none"]);
        assert_eq!(requests.get(), 1);
        assert_eq!(metrics.request_duration.with_label_values(&["openai/*", "openai"]).get_sample_count(), 1);
        let tokens = |direction: &str, key: &str| {
            metrics.tokens.with_label_values(&[direction, "openai/*", "openai", key]).get()
        };
        assert_eq!((tokens("input", "team-a"), tokens("output", "team-a"), tokens("cached", "team-a")), (11, 21, 3));
        assert_eq!((tokens("reasoning", "team-a"), tokens("input", "anonymous")), (4, 5));
    }

    #[test]
    fn unused_pairs_add_no_series() {
        let metrics = Metrics::new();
        let _model = ModelSeries::new("mock", 1);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(!text.contains("model=\"mock\""), "{text}");
    }
}
