//! Model name -> configured model: exact names first, then the longest matching `prefix/*`.
//! Pure: compiled from the config, unit-tested without I/O.

use crate::config::{did_you_mean, ModelParams, ModelPattern};
use crate::metrics::ModelSeries;

/// A requested model resolved to its configuration.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    pub model: &'a ModelParams,
    /// The name to ask upstreams for when a target names none: the request itself for an exact
    /// name, the part after the prefix for `prefix/*`.
    pub passed_name: &'a str,
    /// The model's metric series.
    pub series: &'a ModelSeries,
}

/// The models of one config.
#[derive(Debug, Default)]
pub struct RouteTable {
    models: Vec<ModelParams>,
    /// Per model, in the same order.
    series: Vec<ModelSeries>,
}

impl RouteTable {
    /// Compiles the table; prefixes are tried longest first so `openai/mini/*` beats `openai/*`.
    pub fn new(models: &[ModelParams]) -> Self {
        let mut models = models.to_vec();
        models.sort_by_key(|m| match &m.pattern {
            ModelPattern::Exact(_) => (0, 0),
            ModelPattern::Prefix(prefix) => (1, usize::MAX - prefix.len()),
        });
        let series = models.iter().map(|m| ModelSeries::new(&m.pattern.as_written(), m.targets.len())).collect();
        RouteTable { models, series }
    }

    /// The model serving `requested`.
    pub fn resolve<'a>(&'a self, requested: &'a str) -> Option<Resolved<'a>> {
        self.models.iter().zip(&self.series).find_map(|(model, series)| {
            model.pattern.matches(requested).map(|passed_name| Resolved { model, passed_name, series })
        })
    }

    /// Every configured model.
    pub fn models(&self) -> &[ModelParams] {
        &self.models
    }

    /// Configured names close to `requested`, for the 404 message.
    pub fn close_names(&self, requested: &str) -> Vec<String> {
        let names: Vec<String> = self.models.iter().map(|m| m.pattern.as_written()).collect();
        let mut close: Vec<String> =
            did_you_mean(requested, names.iter().map(String::as_str)).into_iter().map(str::to_owned).collect();
        for name in &names {
            let stem = name.trim_end_matches('*');
            if !close.contains(name) && (requested.contains(stem.trim_end_matches('/')) || stem.contains(requested)) {
                close.push(name.clone());
            }
        }
        close.truncate(5);
        close
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Strategy, TargetParams};

    fn model(pattern: ModelPattern) -> ModelParams {
        ModelParams {
            pattern,
            targets: vec![TargetParams { upstream: "u".into(), model: None, weight: 1, timeouts: None }],
            strategy: Strategy::Failover,
            failover_on: Vec::new(),
        }
    }

    #[test]
    fn exact_names_then_longest_prefix() {
        let table = RouteTable::new(&[
            model(ModelPattern::Prefix("openai/".into())),
            model(ModelPattern::Exact("openai/special".into())),
            model(ModelPattern::Prefix("openai/mini/".into())),
        ]);
        assert_eq!(
            table.resolve("openai/special").unwrap().model.pattern,
            ModelPattern::Exact("openai/special".into())
        );
        let mini = table.resolve("openai/mini/x").unwrap();
        assert_eq!((mini.model.pattern.as_written().as_str(), mini.passed_name), ("openai/mini/*", "x"));
        assert_eq!(table.resolve("openai/gpt-4o").unwrap().passed_name, "gpt-4o");
        assert!(table.resolve("anthropic/claude").is_none());
        assert!(table.resolve("openai/").is_none());
    }

    #[test]
    fn close_names_suggest_typos() {
        let table = RouteTable::new(&[model(ModelPattern::Exact("gpt-4o-mini".into()))]);
        assert_eq!(table.close_names("gpt-4o-mni"), vec!["gpt-4o-mini".to_owned()]);
    }
}
