//! The order in which a model's targets are tried: its strategy picks the first, the rest
//! follow as fallbacks; ejected targets are skipped unless every target is ejected, in which
//! case the one that failed longest ago is still tried rather than failing without trying.
//!
//! `least-latency` is the power of two choices over peak-EWMA latency (Mitzenmacher; tower's
//! `p2c` and `PeakEwma`, themselves from Finagle): sample two targets, take the cheaper.

use rand::Rng;

use super::health::Availability;
use super::{Runtime, UpstreamEntry};
use crate::config::{ModelParams, Strategy};

/// Indices into `model.targets`, in the order to try them.
pub fn order(model: &ModelParams, runtime: &Runtime) -> Vec<usize> {
    let entry = |name: &str| runtime.entry(name);
    let mut available = Vec::new();
    let mut ejected = Vec::new();
    for (index, target) in model.targets.iter().enumerate() {
        match entry(&target.upstream).map(|e| e.health.availability()) {
            // A disabled upstream stays in the list so the error can name it.
            None | Some(Availability::Healthy | Availability::Probation) => available.push(index),
            Some(Availability::Ejected { last_failure }) => ejected.push((last_failure, index)),
        }
    }
    if available.is_empty() {
        return ejected.iter().min_by_key(|(failed, _)| *failed).map(|(_, i)| vec![*i]).unwrap_or_default();
    }
    if available.len() > 1 {
        let first = match model.strategy {
            Strategy::Failover => None,
            Strategy::Weighted => weighted_pick(model, &available),
            Strategy::LeastLatency => two_choices(model, &available, &entry),
        };
        if let Some(first) = first {
            available.retain(|i| *i != first);
            available.insert(0, first);
        }
    }
    available
}

fn weighted_pick(model: &ModelParams, candidates: &[usize]) -> Option<usize> {
    let total: u64 = candidates.iter().map(|i| u64::from(model.targets[*i].weight)).sum();
    if total == 0 {
        return None;
    }
    let mut roll = rand::thread_rng().gen_range(0..total);
    for &index in candidates {
        let weight = u64::from(model.targets[index].weight);
        if roll < weight {
            return Some(index);
        }
        roll -= weight;
    }
    None
}

fn two_choices<'r>(
    model: &ModelParams,
    candidates: &[usize],
    entry: &dyn Fn(&str) -> Option<&'r UpstreamEntry>,
) -> Option<usize> {
    let mut rng = rand::thread_rng();
    let a = candidates[rng.gen_range(0..candidates.len())];
    let mut b = candidates[rng.gen_range(0..candidates.len() - 1)];
    if b == a {
        b = candidates[candidates.len() - 1];
    }
    let cost = |i: usize| entry(&model.targets[i].upstream).and_then(UpstreamEntry::latency_cost);
    match (cost(a), cost(b)) {
        (Some(cost_a), Some(cost_b)) if cost_b < cost_a => Some(b),
        _ => Some(a),
    }
}
