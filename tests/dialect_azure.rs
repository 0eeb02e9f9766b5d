//! Fixture tests for `azure-openai-completions` and `azure-openai-responses`: every recorded
//! exchange in `shared/fixtures/upstream/azure_openai/` replayed through the dialect its case
//! names (cases in `tests/dialects/cases/azure_openai/`).

#[path = "dialects/responses_azure_harness.rs"]
mod harness;

use proptest::prelude::*;

const DIRS: &[&str] = &["azure_openai"];

#[test]
fn every_azure_fixture_translates_as_its_case_expects() {
    for case in harness::cases("azure_openai") {
        let dialect = case.case["dialect"].as_str().unwrap_or_default();
        assert!(
            dialect.starts_with("azure-openai-"),
            "{}: {dialect}",
            case.name
        );
        harness::run_case(&case);
    }
}

#[test]
fn the_prompt_filter_chunk_of_an_azure_chat_stream_does_not_reach_the_client() {
    let case = harness::cases("azure_openai")
        .into_iter()
        .find(|case| case.name.ends_with("azure-model-router.1"))
        .expect("model-router case");
    let (output, error) = harness::output_with_cuts(&case, &case.response_body(), &[]);
    assert!(error.is_none());
    let output = String::from_utf8(output).unwrap();
    assert!(!output.contains("prompt_filter_results"));
    assert!(output.contains("Capital"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn splitting_a_recorded_stream_anywhere_gives_the_same_client_output(
        cuts in proptest::collection::vec(any::<usize>(), 0..12)
    ) {
        for (case, body) in harness::stream_cases(DIRS) {
            let whole = harness::output_with_cuts(&case, &body, &[]);
            let split = harness::output_with_cuts(&case, &body, &cuts);
            prop_assert_eq!(&whole, &split, "{}", case.name);
        }
    }
}
