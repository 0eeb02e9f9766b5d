//! Fixture tests for `openai-responses`: every recorded exchange in
//! `shared/fixtures/upstream/openai_responses/` replayed through the dialect
//! (cases in `tests/dialects/cases/openai_responses/`).

#[path = "dialects/responses_azure_harness.rs"]
mod harness;

use proptest::prelude::*;

const DIRS: &[&str] = &["openai_responses"];

#[test]
fn every_openai_responses_fixture_translates_as_its_case_expects() {
    for case in harness::cases("openai_responses") {
        assert_eq!(case.case["dialect"], "openai-responses", "{}", case.name);
        harness::run_case(&case);
    }
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
