//! Replays recorded upstream exchanges (`shared/fixtures/upstream/<dir>/*.json`) through the
//! dialects, driven by the case files in `tests/dialects/cases/<dir>/` (format: the dialect
//! brief). Shared by every `tests/dialect_*.rs`; [`fixture_tests!`] writes their common tests.
//!
//! For every case: the client's `openai_request` is translated and must contain
//! `request_expect` (a JSON subset) and go to the recorded path; the recorded response is fed to
//! the dialect and what the client sees, read as an OpenAI SDK reads it, must equal `expected`
//! (or the error must match `expected_error`). Streams are read with and without the usage
//! chunk, and their translation must not depend on how the upstream's bytes are split.

// Each test binary uses the part of the harness its dialect needs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use proptest::test_runner::TestCaseError;
use serde_json::{json, Value};
use switchyard::dialect::{self, ChatRequest, Dialect, DialectKind, DialectOptions, ResponseContext, Usage};
use switchyard::error::RelayError;

/// The dialects that pass the upstream's error body through instead of translating it.
const PASSTHROUGH_DIALECTS: &[&str] = &["openai-completions", "azure-openai-completions"];

/// Writes the tests every dialect's fixture cases get: one case file per fixture, request and
/// response translation as the cases say, one-byte reads, and a split-stream property.
macro_rules! fixture_tests {
    (
        dirs: [$($dir:literal),+ $(,)?],
        dialects: [$($dialect:literal),+ $(,)?],
        cases: $count:expr,
        split_iterations: $iterations:expr $(,)?
    ) => {
        static SUITE: harness::Suite = harness::Suite {
            dirs: &[$($dir),+],
            dialects: &[$($dialect),+],
            cases: $count,
        };

        fn cases() -> &'static [harness::Case] {
            static CASES: std::sync::OnceLock<Vec<harness::Case>> = std::sync::OnceLock::new();
            CASES.get_or_init(|| SUITE.load())
        }

        #[test]
        fn every_fixture_has_a_case() {
            SUITE.check_loaded(cases());
        }

        #[test]
        fn requests_translate_to_the_recorded_upstream_requests() {
            cases().iter().for_each(harness::check_request);
        }

        #[test]
        fn recorded_responses_translate_to_the_expected_client_results() {
            cases().iter().for_each(harness::check_response);
        }

        #[test]
        fn streams_survive_one_byte_reads() {
            harness::streams(cases()).for_each(harness::check_one_byte_reads);
        }

        proptest::proptest! {
            #![proptest_config(proptest::prelude::ProptestConfig::with_cases($iterations))]

            #[test]
            fn any_split_of_a_recorded_stream_gives_the_same_client_output(
                cuts in proptest::collection::vec(proptest::prelude::any::<usize>(), 0..24),
                wants_usage in proptest::prelude::any::<bool>(),
            ) {
                for case in harness::streams(cases()) {
                    harness::check_split(case, &cuts, wants_usage)?;
                }
            }
        }
    };
}
pub(crate) use fixture_tests;

/// The fixture directories of one test file and the dialects their cases may name.
pub struct Suite {
    pub dirs: &'static [&'static str],
    pub dialects: &'static [&'static str],
    /// How many cases (and fixtures) the directories hold.
    pub cases: usize,
}

impl Suite {
    /// Every case of the suite's directories.
    pub fn load(&self) -> Vec<Case> {
        self.dirs.iter().flat_map(|dir| load_dir(dir)).collect()
    }

    /// Checks what was loaded: the expected number of cases, each naming one of the dialects.
    pub fn check_loaded(&self, cases: &[Case]) {
        assert_eq!(cases.len(), self.cases, "cases in {:?}", self.dirs);
        for case in cases {
            assert!(self.dialects.contains(&case.dialect_name()), "{}: dialect {:?}", case.name, case.dialect_name());
        }
    }
}

/// One case file with its recorded fixture.
pub struct Case {
    /// `<dir>/<fixture stem>`.
    pub name: String,
    pub case: Value,
    pub fixture: Value,
}

/// `shared/fixtures/upstream`, next to the repository.
pub fn fixtures_root() -> PathBuf {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/upstream"));
    assert!(root.is_dir(), "fixture directory {} is missing", root.display());
    root
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn json_stems(dir: &Path) -> Vec<String> {
    let mut stems: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
        .collect();
    stems.sort();
    stems
}

/// Every case of one fixture directory; fails unless every fixture has exactly one case file
/// named after it, and every case file is well-formed.
fn load_dir(dir: &str) -> Vec<Case> {
    let fixture_dir = fixtures_root().join(dir);
    let case_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dialects/cases")).join(dir);
    let fixtures = json_stems(&fixture_dir);
    assert!(!fixtures.is_empty(), "no fixtures in {}", fixture_dir.display());
    assert_eq!(json_stems(&case_dir), fixtures, "every fixture in {dir}/ needs exactly one case file");
    fixtures
        .into_iter()
        .map(|stem| {
            let case = read_json(&case_dir.join(format!("{stem}.json")));
            let name = format!("{dir}/{stem}");
            assert_eq!(case["fixture"], format!("{dir}/{stem}.json"), "{name}: case file named after its fixture");
            for key in ["dialect", "upstream_model"] {
                assert!(case[key].is_string(), "{name}: case.{key}");
            }
            assert!(case["openai_request"].is_object(), "{name}: openai_request");
            assert!(
                case.get("expected").is_some() != case.get("expected_error").is_some(),
                "{name}: expected xor expected_error"
            );
            let fixture = read_json(&fixture_dir.join(format!("{stem}.json")));
            Case { name, case, fixture }
        })
        .collect()
}

impl Case {
    pub fn dialect_name(&self) -> &str {
        self.case["dialect"].as_str().unwrap_or_default()
    }

    /// The dialect, with the case's `dialect_options` (Azure's `api_version`, `deployment`).
    pub fn dialect(&self) -> Arc<dyn Dialect> {
        let kind: DialectKind = self.dialect_name().parse().expect("known dialect");
        let extra = &self.case["dialect_options"];
        let options = DialectOptions {
            api_version: extra["api_version"].as_str().map(str::to_owned),
            deployment: extra["deployment"].as_str().map(str::to_owned),
            ..DialectOptions::default()
        };
        dialect::build(kind, &options)
    }

    fn openai_request(&self) -> &Value {
        &self.case["openai_request"]
    }

    fn upstream_model(&self) -> String {
        self.case["upstream_model"].as_str().unwrap_or_default().to_owned()
    }

    pub fn client_wants_usage(&self) -> bool {
        self.openai_request()["stream_options"]["include_usage"].as_bool().unwrap_or(false)
    }

    /// The relay's view of the client's request.
    pub fn chat_request(&self) -> ChatRequest {
        let request = self.openai_request();
        assert_eq!(request["model"], "case-model", "{}: openai_request.model", self.name);
        let body = Bytes::from(request.to_string());
        // As the router hands it over: with the layout of its one parse of the body.
        let layout = switchyard::dialect::json::Layout::of(&body).expect("openai_request is a JSON object");
        ChatRequest {
            upstream_model: self.upstream_model(),
            stream: request["stream"].as_bool().unwrap_or(false),
            client_wants_usage: self.client_wants_usage(),
            layout: Some(std::sync::Arc::new(layout)),
            body,
        }
    }

    /// The response context the relay would build, for a client that does or does not want
    /// the usage chunk.
    pub fn context(&self, wants_usage: bool) -> ResponseContext<'_> {
        ResponseContext {
            request_id: "req_case",
            created: 1_700_000_000,
            upstream_model: self.case["upstream_model"].as_str().unwrap_or_default(),
            client_wants_usage: wants_usage,
            several_choices: false,
        }
    }

    pub fn status(&self) -> u16 {
        self.fixture["response"]["status"].as_u64().expect("response.status") as u16
    }

    /// The recorded response body, byte-exact.
    pub fn response_body(&self) -> Bytes {
        let response = &self.fixture["response"];
        match (&response["body_base64"], &response["body"]) {
            (Value::String(encoded), _) => {
                Bytes::from(base64::engine::general_purpose::STANDARD.decode(encoded).expect("base64 body"))
            }
            (_, Value::String(text)) => Bytes::from(text.clone()),
            (_, Value::Null) => panic!("{}: fixture has no response body", self.name),
            (_, other) => Bytes::from(serde_json::to_vec(other).unwrap()),
        }
    }

    /// Whether the recorded 2xx response is a stream (rather than one JSON body).
    pub fn is_stream(&self) -> bool {
        let content_type = self.fixture["response"]["headers"]["content-type"].as_str().unwrap_or_default();
        self.status() < 300 && (self.fixture["stream"] == true || content_type.contains("event-stream"))
    }

    fn passes_bodies_through(&self) -> bool {
        PASSTHROUGH_DIALECTS.contains(&self.dialect_name())
    }
}

/// `expected` is contained in `actual`: objects by key, arrays element-wise with equal length,
/// numbers by value (0 == 0.0).
pub fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let found = actual.get(key).unwrap_or_else(|| panic!("{path}.{key} is missing"));
                assert_subset(value, found, &format!("{path}.{key}"));
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            assert_eq!(expected.len(), actual.len(), "{path}: array length differs: {actual:?}");
            for (index, (expected, actual)) in expected.iter().zip(actual).enumerate() {
                assert_subset(expected, actual, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(expected), Value::Number(actual)) => {
            assert_eq!(expected.as_f64(), actual.as_f64(), "{path}");
        }
        _ => assert_eq!(expected, actual, "{path}"),
    }
}

/// Translates a case's request: it must contain `request_expect` and go where the recorded
/// request went.
pub fn check_request(case: &Case) {
    let name = &case.name;
    let call = case
        .dialect()
        .translate_request(&case.chat_request())
        .unwrap_or_else(|e| panic!("{name}: request not translated: {e}"));
    assert_eq!(call.stream, case.openai_request()["stream"].as_bool().unwrap_or(false), "{name}: stream flag");
    if let Some(path) = case.case.get("expected_path").and_then(Value::as_str) {
        assert_eq!(call.path_and_query, path, "{name}: upstream path");
    }
    let sent: Value =
        serde_json::from_slice(&call.body).unwrap_or_else(|e| panic!("{name}: upstream body is not JSON: {e}"));
    let Some(expect) = case.case.get("request_expect").filter(|e| !e.is_null()) else {
        return;
    };
    assert_subset(expect, &sent, &format!("{name}: request body"));
    let recorded = &case.fixture["request"];
    let (path, query) = call.path_and_query.split_once('?').unwrap_or((&call.path_and_query, ""));
    let recorded_path = recorded["path"].as_str().expect("recorded path");
    // Clients differ in what they percent-encode (`:` in Bedrock model ids).
    assert!(
        percent_decoded(recorded_path).ends_with(&percent_decoded(path)),
        "{name}: path {path} vs recorded {recorded_path}"
    );
    let recorded_query = recorded["query"].as_str().unwrap_or_default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        assert!(recorded_query.split('&').any(|p| p == pair), "{name}: query {pair} not in {recorded_query}");
    }
}

fn percent_decoded(path: &str) -> String {
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        let escaped = (byte == b'%')
            .then(|| tail.get(..2))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(decoded) => {
                bytes.push(decoded);
                rest = &tail[2..];
            }
            None => {
                bytes.push(byte);
                rest = tail;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// What an OpenAI SDK user ends up with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientView {
    /// `null` when no content came.
    pub content: Value,
    /// `null` when no reasoning came.
    pub reasoning_content: Value,
    /// `(id, name, arguments)` by tool-call index.
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Value,
    pub usage: Option<Value>,
}

fn append(slot: &mut Value, text: &str) {
    let joined = slot.as_str().unwrap_or_default().to_owned() + text;
    *slot = Value::String(joined);
}

/// Reads a `chat.completion` body.
pub fn read_completion(name: &str, body: &[u8]) -> ClientView {
    let completion: Value = serde_json::from_slice(body).expect("chat.completion JSON");
    assert_eq!(completion["object"], "chat.completion", "{name}");
    assert!(
        completion["id"].as_str().is_some_and(|id| !id.is_empty())
            && completion["model"].is_string()
            && completion["created"].is_u64(),
        "{name}: completion identity"
    );
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant", "{name}");
    let tool_calls = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| {
            assert_eq!(call["type"], "function", "{name}");
            let text = |pointer: &str| {
                call.pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{name}: tool call {pointer}"))
                    .to_owned()
            };
            (text("/id"), text("/function/name"), text("/function/arguments"))
        })
        .collect();
    ClientView {
        content: message["content"].clone(),
        reasoning_content: message.get("reasoning_content").cloned().unwrap_or(Value::Null),
        tool_calls,
        finish_reason: choice["finish_reason"].clone(),
        usage: completion.get("usage").cloned(),
    }
}

/// Accumulates `chat.completion.chunk` events as the OpenAI SDKs do (content and arguments
/// concatenated, tool calls by index, the last finish reason, the usage chunk), checking the
/// stream rules on the way: one complete single-line `data:` event each, the same
/// id/model/created throughout, the role on the first delta, dense tool-call indexes whose
/// first delta names the call, one finish chunk, exactly one usage chunk after it when the
/// client asked and none otherwise, `[DONE]` last.
pub fn read_stream(name: &str, events: &[Bytes], wants_usage: bool) -> ClientView {
    let mut view = ClientView {
        content: Value::Null,
        reasoning_content: Value::Null,
        tool_calls: Vec::new(),
        finish_reason: Value::Null,
        usage: None,
    };
    let mut identity: Option<(Value, Value, Value)> = None;
    let mut saw_role = false;
    let mut done = false;
    let mut usage_chunks = 0;
    for event in events {
        let text = std::str::from_utf8(event).expect("UTF-8 event");
        assert!(!done, "{name}: event after [DONE]: {text}");
        let payload = text
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("{name}: not one complete SSE data event: {text:?}"));
        assert!(!payload.contains('\n'), "{name}: multi-line event: {text:?}");
        if payload == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(payload).expect("chunk JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk", "{name}");
        let this = (chunk["id"].clone(), chunk["model"].clone(), chunk["created"].clone());
        assert!(
            this.0.as_str().is_some_and(|id| !id.is_empty()) && this.1.is_string() && this.2.is_u64(),
            "{name}: chunk identity {chunk}"
        );
        match &identity {
            None => identity = Some(this),
            Some(first) => assert_eq!(first, &this, "{name}: every chunk has the same id, model, created"),
        }
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            assert!(wants_usage, "{name}: a usage chunk the client did not ask for");
            assert!(!view.finish_reason.is_null(), "{name}: usage chunk before the finish chunk");
            usage_chunks += 1;
            view.usage = Some(chunk["usage"].clone());
            continue;
        }
        assert!(view.usage.is_none(), "{name}: the usage chunk comes last");
        let choice = &choices[0];
        let delta = &choice["delta"];
        if !saw_role {
            assert_eq!(delta["role"], "assistant", "{name}: the first delta carries the role");
            saw_role = true;
        }
        if let Some(text) = delta["content"].as_str() {
            append(&mut view.content, text);
        }
        if let Some(text) = delta["reasoning_content"].as_str() {
            append(&mut view.reasoning_content, text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().expect("tool call index") as usize;
            assert!(index <= view.tool_calls.len(), "{name}: tool call index {index} skips ahead");
            if index == view.tool_calls.len() {
                assert!(
                    call["id"].is_string() && call["function"]["name"].is_string(),
                    "{name}: the first delta of a call names it"
                );
                assert_eq!(call["type"], "function", "{name}");
                view.tool_calls.push(Default::default());
            }
            let slot = &mut view.tool_calls[index];
            if let Some(id) = call["id"].as_str() {
                slot.0 = id.to_owned();
            }
            slot.1.push_str(call["function"]["name"].as_str().unwrap_or_default());
            slot.2.push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if !choice["finish_reason"].is_null() {
            assert!(view.finish_reason.is_null(), "{name}: a second finish chunk");
            view.finish_reason = choice["finish_reason"].clone();
        }
    }
    assert!(done, "{name}: the stream ends with [DONE]");
    assert_eq!(usage_chunks, usize::from(wants_usage), "{name}: usage chunks");
    view
}

/// Compares what the client sees with the case's `expected`, key by key (absent keys are not
/// checked, except that no tool calls are expected unless listed).
pub fn check_expected(case: &Case, view: &ClientView) {
    let expected = &case.case["expected"];
    let name = &case.name;
    if let Some(content) = expected.get("content") {
        assert_eq!(&view.content, content, "{name}: content");
    }
    if let Some(reasoning) = expected.get("reasoning_content") {
        assert_eq!(&view.reasoning_content, reasoning, "{name}: reasoning_content");
    }
    match expected.get("tool_calls") {
        Some(calls) => {
            let calls = calls.as_array().expect("expected.tool_calls");
            assert_eq!(view.tool_calls.len(), calls.len(), "{name}: number of tool calls");
            for (want, (id, function, arguments)) in calls.iter().zip(&view.tool_calls) {
                let arguments: Value =
                    serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{name}: arguments {arguments:?}: {e}"));
                let have = json!({"id": id, "name": function, "arguments": arguments});
                for (key, value) in want.as_object().expect("expected tool call") {
                    assert_eq!(&have[key], value, "{name}: tool call {key}");
                }
            }
        }
        None => assert!(view.tool_calls.is_empty(), "{name}: unexpected tool calls"),
    }
    if let Some(finish) = expected.get("finish_reason") {
        assert_eq!(&view.finish_reason, finish, "{name}: finish_reason");
    }
    if let Some(usage) = expected.get("usage").filter(|u| !u.is_null()) {
        let have = view.usage.as_ref().unwrap_or_else(|| panic!("{name}: no usage"));
        assert_subset(usage, have, &format!("{name}: usage"));
        for key in ["prompt_tokens", "completion_tokens"] {
            assert_eq!(have[key], usage[key], "{name}: usage.{key}");
        }
        assert_eq!(
            have["total_tokens"].as_u64(),
            Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0)),
            "{name}: usage.total_tokens"
        );
    }
}

/// Checks an error against `expected_error`.
pub fn check_error(case: &Case, error: &RelayError) {
    let name = &case.name;
    let expected = case.case.get("expected_error").unwrap_or_else(|| panic!("{name}: unexpected error {error}"));
    assert_eq!(Some(u64::from(error.status)), expected["status"].as_u64(), "{name}: status of {error}");
    assert_eq!(Some(error.code.as_str()), expected["code"].as_str(), "{name}: code of {error}");
    assert!(!error.message.is_empty(), "{name}: error message");
    if !case.passes_bodies_through() {
        assert!(error.passthrough_body.is_none(), "{name}: translated dialects answer in OpenAI shape");
        let rendered: Value = serde_json::from_slice(&error.to_response_body("req")).expect("error body");
        assert_eq!(rendered["error"]["code"], expected["code"], "{name}");
    }
    if error.code.as_str() == "upstream_rate_limited" && case.response_body().windows(9).any(|w| w == b"RetryInfo") {
        assert!(error.retry_after.is_some(), "{name}: RetryInfo not read");
    }
}

/// What a stream translation gives for the given reads: the events, the outcome and the
/// translator's usage.
pub type StreamOutcome = (Vec<Bytes>, Result<(), String>, Option<Usage>);

/// Feeds a fresh stream translator the reads in turn.
pub fn translate_stream(case: &Case, reads: &[Bytes], wants_usage: bool) -> StreamOutcome {
    let mut translator = case.dialect().stream_translator(&case.context(wants_usage));
    let mut out = Vec::new();
    let mut result = Ok(());
    for read in reads {
        result = translator.feed(read.clone(), &mut out);
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = translator.finish(&mut out);
    }
    let result = result.map_err(|e| format!("{}: {}", e.code, e.message));
    (out, result, translator.usage())
}

/// The relay error a failed stream ends with, or `None` when it succeeded.
fn stream_error(case: &Case, body: &Bytes) -> Option<RelayError> {
    let mut translator = case.dialect().stream_translator(&case.context(case.client_wants_usage()));
    let mut out = Vec::new();
    translator.feed(body.clone(), &mut out).err().or_else(|| translator.finish(&mut out).err())
}

/// Runs one case's response side: the error, the complete body, or the stream (read with and
/// without the usage chunk).
pub fn check_response(case: &Case) {
    let name = &case.name;
    let dialect = case.dialect();
    let status = case.status();
    let body = case.response_body();
    if case.case.get("expected_error").is_some() {
        let error = if status >= 400 {
            dialect.translate_error(status, &body)
        } else if case.is_stream() {
            stream_error(case, &body).unwrap_or_else(|| panic!("{name}: the stream should have failed"))
        } else {
            dialect
                .translate_response(body, &case.context(false))
                .err()
                .unwrap_or_else(|| panic!("{name}: the response should have failed"))
        };
        check_error(case, &error);
        return;
    }
    assert!(status < 300, "{name}: a success case with status {status}");
    let expected_usage = case.case["expected"].get("usage").is_some();
    if case.is_stream() {
        for wants_usage in [true, false] {
            let (events, result, usage) = translate_stream(case, std::slice::from_ref(&body), wants_usage);
            result.unwrap_or_else(|e| panic!("{name}: stream translation: {e}"));
            let mut view = read_stream(name, &events, wants_usage);
            assert_eq!(usage.is_some(), expected_usage, "{name}: StreamTranslator::usage");
            let reported = usage.as_ref().map(Usage::to_json);
            if wants_usage {
                check_reported_usage(case, view.usage.as_ref(), reported.as_ref());
            } else {
                view.usage = reported;
            }
            check_expected(case, &view);
        }
    } else {
        let translated = dialect
            .translate_response(body, &case.context(case.client_wants_usage()))
            .unwrap_or_else(|e| panic!("{name}: translate_response: {e}"));
        let view = read_completion(name, &translated.body);
        let reported = translated.usage().as_ref().map(Usage::to_json);
        check_reported_usage(case, view.usage.as_ref(), reported.as_ref());
        check_expected(case, &view);
    }
}

/// The usage the dialect reports (`Translated::usage`, `StreamTranslator::usage`) is what the
/// client was sent: the same object for translated dialects; the same counts where the
/// upstream's own usage object, which may say more, passes through.
fn check_reported_usage(case: &Case, sent: Option<&Value>, reported: Option<&Value>) {
    let name = &case.name;
    if case.passes_bodies_through() {
        for key in ["prompt_tokens", "completion_tokens"] {
            assert_eq!(sent.map(|u| &u[key]), reported.map(|u| &u[key]), "{name}: reported usage.{key}");
        }
    } else {
        assert_eq!(sent, reported, "{name}: reported usage differs from the client's");
    }
}

/// The cases whose recorded response is a 2xx stream (translated successfully or not).
pub fn streams(cases: &[Case]) -> impl Iterator<Item = &Case> {
    cases.iter().filter(|case| case.is_stream())
}

/// Splits `body` at the given offsets (taken modulo its length + 1, so reads may be empty).
pub fn split_at(body: &Bytes, cuts: &[usize]) -> Vec<Bytes> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    cuts.sort_unstable();
    let mut reads = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for cut in cuts {
        reads.push(body.slice(last..cut));
        last = cut;
    }
    reads.push(body.slice(last..));
    reads
}

/// A stream read one byte at a time gives what it gives read whole, with and without the
/// usage chunk.
pub fn check_one_byte_reads(case: &Case) {
    let body = case.response_body();
    let bytes: Vec<Bytes> = (0..body.len()).map(|i| body.slice(i..i + 1)).collect();
    for wants_usage in [true, false] {
        let whole = translate_stream(case, std::slice::from_ref(&body), wants_usage);
        assert_eq!(translate_stream(case, &bytes, wants_usage), whole, "{}", case.name);
    }
}

/// A stream split at `cuts` gives what it gives read whole: the same events, outcome, usage
/// and client view.
pub fn check_split(case: &Case, cuts: &[usize], wants_usage: bool) -> Result<(), TestCaseError> {
    let body = case.response_body();
    let whole = translate_stream(case, std::slice::from_ref(&body), wants_usage);
    let split = translate_stream(case, &split_at(&body, cuts), wants_usage);
    proptest::prop_assert_eq!(&split, &whole, "{}", case.name);
    if whole.1.is_ok() {
        proptest::prop_assert_eq!(
            read_stream(&case.name, &split.0, wants_usage),
            read_stream(&case.name, &whole.0, wants_usage)
        );
    }
    Ok(())
}

/// Every client event of a stream as one string, for tests that look at the wire.
pub fn client_output(case: &Case, body: &Bytes) -> String {
    let (events, result, _) = translate_stream(case, std::slice::from_ref(body), case.client_wants_usage());
    result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
    String::from_utf8(events.concat()).expect("UTF-8 output")
}

/// One case by the end of its name.
pub fn case<'a>(cases: &'a [Case], name_suffix: &str) -> &'a Case {
    cases.iter().find(|case| case.name.ends_with(name_suffix)).unwrap_or_else(|| panic!("no case named …{name_suffix}"))
}
