//! `ollama` against the recorded Ollama traffic (`shared/fixtures/upstream/ollama/`, cases in
//! `tests/dialects/cases/ollama/`).

#[path = "dialects/harness.rs"]
mod harness;

use bytes::Bytes;

harness::fixture_tests! {
    dirs: ["ollama"],
    dialects: ["ollama"],
    cases: 8,
    split_iterations: 64,
}

#[test]
fn crlf_line_endings_translate_like_lf() {
    for case in harness::streams(cases()) {
        let body = case.response_body();
        let crlf = Bytes::from(String::from_utf8(body.to_vec()).unwrap().replace('\n', "\r\n"));
        for wants_usage in [true, false] {
            assert_eq!(
                harness::translate_stream(case, std::slice::from_ref(&crlf), wants_usage),
                harness::translate_stream(case, std::slice::from_ref(&body), wants_usage),
                "{}",
                case.name
            );
        }
    }
}
