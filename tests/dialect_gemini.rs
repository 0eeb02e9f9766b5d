//! `google-generative-ai` against the recorded Gemini traffic (`shared/fixtures/upstream/gemini/`,
//! cases in `tests/dialects/cases/gemini/`).

#[path = "dialects/harness.rs"]
mod harness;

harness::fixture_tests! {
    dirs: ["gemini"],
    dialects: ["google-generative-ai"],
    cases: 14,
    split_iterations: 64,
}

#[test]
fn recorded_streams_use_crlf_framing() {
    let streams: Vec<&harness::Case> = harness::streams(cases()).collect();
    assert_eq!(streams.len(), 5);
    for case in streams {
        assert!(case.response_body().windows(4).any(|w| w == b"\r\n\r\n"), "{}", case.name);
    }
}
