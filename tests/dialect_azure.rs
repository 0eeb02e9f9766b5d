//! `azure-openai-completions` and `azure-openai-responses` against recorded Azure exchanges
//! (`shared/fixtures/upstream/azure_openai/`, cases in `tests/dialects/cases/azure_openai/`),
//! each replayed through the dialect its case names.

#[path = "dialects/harness.rs"]
mod harness;

harness::fixture_tests! {
    dirs: ["azure_openai"],
    dialects: ["azure-openai-completions", "azure-openai-responses"],
    cases: 7,
    split_iterations: 64,
}

#[test]
fn the_prompt_filter_chunk_of_an_azure_chat_stream_does_not_reach_the_client() {
    let case = harness::case(cases(), "azure-model-router.1");
    let output = harness::client_output(case, &case.response_body());
    assert!(!output.contains("prompt_filter_results"));
    assert!(output.contains("Capital"));
}
