//! The `bedrock-converse-stream` dialect against recorded Bedrock exchanges
//! (`shared/fixtures/upstream/bedrock/`, cases in `tests/dialects/cases/bedrock/`).

#[path = "dialects/harness.rs"]
mod harness;

harness::fixture_tests! {
    dirs: ["bedrock"],
    dialects: ["bedrock-converse-stream"],
    cases: 16,
    split_iterations: 256,
}
