//! `google-generative-ai` against the recorded Gemini traffic: every fixture in
//! `shared/fixtures/upstream/gemini` has a case in `tests/dialects/cases/gemini`.

#[path = "dialects/gemini_ollama_support.rs"]
mod support;

use std::sync::LazyLock;

use proptest::prelude::*;
use support::{load_cases, read_stream, run_case, split_at, translate_stream, Case};

static CASES: LazyLock<Vec<Case>> = LazyLock::new(|| load_cases("gemini"));

#[test]
fn every_recorded_exchange_translates_as_its_case_says() {
    assert_eq!(CASES.len(), 14);
    for case in CASES.iter() {
        assert_eq!(case.case["dialect"], "google-generative-ai");
        run_case(case);
    }
}

#[test]
fn recorded_streams_use_crlf_framing_and_still_translate() {
    let streams: Vec<&Case> = CASES.iter().filter(|c| c.stream()).collect();
    assert_eq!(streams.len(), 5);
    for case in streams {
        assert!(
            case.response_body().windows(4).any(|w| w == b"\r\n\r\n"),
            "{}",
            case.name
        );
    }
}

#[test]
fn byte_by_byte_reads_give_the_same_output() {
    for case in CASES.iter().filter(|c| c.stream()) {
        let body = case.response_body();
        let whole = translate_stream(case, std::slice::from_ref(&body), true);
        let bytes: Vec<_> = (0..body.len()).map(|i| body.slice(i..i + 1)).collect();
        assert_eq!(translate_stream(case, &bytes, true), whole, "{}", case.name);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_split_of_a_recorded_stream_gives_the_same_client_output(
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
        wants_usage in any::<bool>(),
    ) {
        for case in CASES.iter().filter(|c| c.stream()) {
            let body = case.response_body();
            let whole = translate_stream(case, std::slice::from_ref(&body), wants_usage);
            let split = translate_stream(case, &split_at(&body, &cuts), wants_usage);
            prop_assert_eq!(&split, &whole, "{}", case.name);
            prop_assert_eq!(read_stream(&split.0, wants_usage), read_stream(&whole.0, wants_usage));
        }
    }
}
