//! The `bedrock-converse-stream` dialect against recorded Bedrock exchanges
//! (`shared/fixtures/upstream/bedrock/`, cases in `tests/dialects/cases/bedrock/`).

#[path = "dialects/harness.rs"]
mod harness;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use proptest::prelude::*;
use switchyard::dialect::{self, Dialect, DialectKind, DialectOptions};

const FIXTURE_DIR: &str = "bedrock";
const DIALECT: &str = "bedrock-converse-stream";

fn dialect() -> Arc<dyn Dialect> {
    dialect::build(
        DIALECT.parse::<DialectKind>().unwrap(),
        &DialectOptions::default(),
    )
}

fn cases() -> &'static [harness::Case] {
    static CASES: OnceLock<Vec<harness::Case>> = OnceLock::new();
    CASES.get_or_init(|| harness::load_cases(FIXTURE_DIR, DIALECT))
}

fn streams() -> &'static [(harness::Case, Bytes)] {
    static STREAMS: OnceLock<Vec<(harness::Case, Bytes)>> = OnceLock::new();
    STREAMS.get_or_init(|| harness::stream_bodies(cases()))
}

#[test]
fn every_fixture_has_a_case() {
    assert_eq!(cases().len(), 16);
}

#[test]
fn requests_translate_to_the_recorded_upstream_requests() {
    let dialect = dialect();
    for case in cases() {
        harness::check_request(dialect.as_ref(), case);
    }
}

#[test]
fn recorded_responses_translate_to_the_expected_client_results() {
    let dialect = dialect();
    for case in cases() {
        harness::check_response(dialect.as_ref(), case);
    }
}

#[test]
fn streams_survive_one_byte_reads() {
    let dialect = dialect();
    for (case, body) in streams() {
        let whole = harness::split_outcome(dialect.as_ref(), case, body, &[]);
        let cuts: Vec<usize> = (1..body.len()).collect();
        assert_eq!(
            harness::split_outcome(dialect.as_ref(), case, body, &cuts),
            whole,
            "{}",
            case.name
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_split_of_a_recorded_stream_gives_the_same_client_output(
        pick in any::<prop::sample::Index>(),
        cuts in prop::collection::vec(any::<usize>(), 0..24),
    ) {
        let dialect = dialect();
        let (case, body) = &streams()[pick.index(streams().len())];
        let whole = harness::split_outcome(dialect.as_ref(), case, body, &[]);
        let split = harness::split_outcome(dialect.as_ref(), case, body, &cuts);
        prop_assert_eq!(split, whole, "{}", case.name);
    }
}
