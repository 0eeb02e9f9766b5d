//! The `anthropic-messages` dialect against recorded Anthropic exchanges
//! (`shared/fixtures/upstream/anthropic/`, cases in `tests/dialects/cases/anthropic/`).

#[path = "dialects/harness.rs"]
mod harness;

harness::fixture_tests! {
    dirs: ["anthropic"],
    dialects: ["anthropic-messages"],
    cases: 16,
    split_iterations: 256,
}
