//! The `openai-responses` dialect against recorded Responses API exchanges
//! (`shared/fixtures/upstream/openai_responses/`, cases in
//! `tests/dialects/cases/openai_responses/`).

#[path = "dialects/harness.rs"]
mod harness;

harness::fixture_tests! {
    dirs: ["openai_responses"],
    dialects: ["openai-responses"],
    cases: 13,
    split_iterations: 64,
}
