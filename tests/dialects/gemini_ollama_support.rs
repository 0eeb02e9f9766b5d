//! Replays the recorded fixtures of `tests/dialects/cases/<dir>/*.json` through a dialect, the
//! way the relay would, and reads the result the way an OpenAI SDK client does. Shared by
//! `tests/dialect_gemini.rs` and `tests/dialect_ollama.rs`.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde_json::Value;
use switchyard::dialect::{self, ChatRequest, DialectKind, DialectOptions, ResponseContext, Usage};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/upstream");
pub const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dialects/cases");

/// One case file with its recorded fixture.
pub struct Case {
    pub name: String,
    pub case: Value,
    pub fixture: Value,
}

impl Case {
    pub fn stream(&self) -> bool {
        self.case["openai_request"]["stream"]
            .as_bool()
            .unwrap_or(false)
    }

    pub fn wants_usage(&self) -> bool {
        self.case["openai_request"]["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false)
    }

    pub fn upstream_model(&self) -> String {
        self.case["upstream_model"]
            .as_str()
            .expect("case without upstream_model")
            .to_owned()
    }

    pub fn dialect(&self) -> std::sync::Arc<dyn dialect::Dialect> {
        let kind: DialectKind = self.case["dialect"]
            .as_str()
            .expect("case without dialect")
            .parse()
            .expect("dialect name");
        dialect::build(kind, &DialectOptions::default())
    }

    pub fn status(&self) -> u16 {
        self.fixture["response"]["status"]
            .as_u64()
            .expect("fixture status") as u16
    }

    /// The recorded response body, byte-exact.
    pub fn response_body(&self) -> Bytes {
        let response = &self.fixture["response"];
        if let Some(encoded) = response["body_base64"].as_str() {
            use base64::Engine;
            return Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .expect("body_base64"),
            );
        }
        Bytes::from(response["body"].as_str().expect("fixture body").to_owned())
    }

    pub fn ctx(&self, wants_usage: bool) -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-relay".into(),
            created: 1_700_000_000,
            upstream_model: self.upstream_model(),
            client_wants_usage: wants_usage,
        }
    }
}

/// Every case of a fixture directory; fails loudly when the fixtures or cases are missing, or
/// when a fixture has no case.
pub fn load_cases(dir: &str) -> Vec<Case> {
    let fixture_dir = Path::new(FIXTURES).join(dir);
    assert!(
        fixture_dir.is_dir(),
        "fixture directory {} is missing",
        fixture_dir.display()
    );
    let mut fixture_files: Vec<PathBuf> = std::fs::read_dir(&fixture_dir)
        .expect("read fixture dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    fixture_files.sort();
    assert!(
        !fixture_files.is_empty(),
        "no fixtures in {}",
        fixture_dir.display()
    );
    fixture_files
        .iter()
        .map(|fixture_path| {
            let stem = fixture_path
                .file_stem()
                .expect("stem")
                .to_string_lossy()
                .into_owned();
            let case_path = Path::new(CASES).join(dir).join(format!("{stem}.json"));
            let case: Value = serde_json::from_slice(
                &std::fs::read(&case_path)
                    .unwrap_or_else(|e| panic!("case file {} missing: {e}", case_path.display())),
            )
            .expect("case json");
            let fixture_rel = case["fixture"].as_str().expect("case.fixture");
            assert_eq!(fixture_rel, format!("{dir}/{stem}.json"));
            let fixture: Value =
                serde_json::from_slice(&std::fs::read(fixture_path).expect("fixture"))
                    .expect("fixture json");
            Case {
                name: stem,
                case,
                fixture,
            }
        })
        .collect()
}

/// `expect` is contained in `actual`: objects by key, arrays element by element (same length),
/// numbers by value (0 == 0.0).
pub fn assert_subset(expect: &Value, actual: &Value, path: &str) {
    match (expect, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let child = format!("{path}.{key}");
                let found = actual
                    .get(key)
                    .unwrap_or_else(|| panic!("{child} missing in translated body"));
                assert_subset(value, found, &child);
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            assert_eq!(
                expected.len(),
                actual.len(),
                "{path}: array length differs: {actual:?}"
            );
            for (index, (e, a)) in expected.iter().zip(actual).enumerate() {
                assert_subset(e, a, &format!("{path}[{index}]"));
            }
        }
        (Value::Number(e), Value::Number(a)) => assert_eq!(e.as_f64(), a.as_f64(), "{path}"),
        _ => assert_eq!(expect, actual, "{path}"),
    }
}

/// What an OpenAI SDK client ends up with.
#[derive(Debug, Default, PartialEq)]
pub struct ClientView {
    pub content: Option<String>,
    pub reasoning: Option<String>,
    /// (id, name, arguments string)
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
}

/// Reads a non-streamed `chat.completion` body.
pub fn read_completion(body: &[u8]) -> ClientView {
    let value: Value = serde_json::from_slice(body).expect("completion json");
    assert_eq!(value["object"], "chat.completion");
    assert!(value["id"].as_str().is_some_and(|id| !id.is_empty()));
    let choice = &value["choices"][0];
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    ClientView {
        content: message["content"].as_str().map(str::to_owned),
        reasoning: message["reasoning_content"].as_str().map(str::to_owned),
        tool_calls: message["tool_calls"]
            .as_array()
            .map(|calls| {
                calls
                    .iter()
                    .map(|call| {
                        assert_eq!(call["type"], "function");
                        (
                            call["id"].as_str().expect("tool call id").to_owned(),
                            call["function"]["name"].as_str().expect("name").to_owned(),
                            call["function"]["arguments"]
                                .as_str()
                                .expect("arguments string")
                                .to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        finish_reason: choice["finish_reason"].as_str().map(str::to_owned),
        usage: value.get("usage").cloned(),
    }
}

/// Accumulates streamed events as the SDKs do (content and arguments concatenated, tool calls
/// by index, the last finish reason, the usage chunk), checking the stream's invariants: one
/// complete `data:` event each, the same id/model/created throughout, the role on the first
/// delta, `[DONE]` last.
pub fn read_stream(events: &[Bytes], wants_usage: bool) -> ClientView {
    let mut view = ClientView::default();
    let mut identity: Option<(Value, Value, Value)> = None;
    let mut calls: Vec<(String, String, String)> = Vec::new();
    let mut done = false;
    let mut first = true;
    let mut usage_chunks = 0;
    for event in events {
        let text = std::str::from_utf8(event).expect("utf-8 event");
        assert!(!done, "event after [DONE]: {text}");
        let payload = text
            .strip_prefix("data: ")
            .and_then(|rest| rest.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("not one complete SSE data event: {text:?}"));
        assert!(!payload.contains('\n'), "multi-line event: {text:?}");
        if payload == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(payload).expect("chunk json");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        let this = (
            chunk["id"].clone(),
            chunk["model"].clone(),
            chunk["created"].clone(),
        );
        assert!(this.0.as_str().is_some_and(|id| !id.is_empty()));
        match &identity {
            None => identity = Some(this),
            Some(seen) => assert_eq!(seen, &this, "chunk identity changed"),
        }
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            usage_chunks += 1;
            assert!(
                view.finish_reason.is_some(),
                "usage chunk before the finish chunk"
            );
            view.usage = Some(chunk["usage"].clone());
            continue;
        }
        let choice = &choices[0];
        let delta = &choice["delta"];
        if first {
            assert_eq!(delta["role"], "assistant", "first delta without the role");
            first = false;
        }
        if let Some(text) = delta["content"].as_str() {
            view.content.get_or_insert_with(String::new).push_str(text);
        }
        if let Some(text) = delta["reasoning_content"].as_str() {
            view.reasoning
                .get_or_insert_with(String::new)
                .push_str(text);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().expect("tool call index") as usize;
            assert!(index <= calls.len(), "tool call index {index} skips ahead");
            if index == calls.len() {
                assert!(
                    call["id"].is_string() && call["function"]["name"].is_string(),
                    "first delta of a call lacks id/name"
                );
                assert_eq!(call["type"], "function");
                calls.push(Default::default());
            }
            let slot = &mut calls[index];
            if let Some(id) = call["id"].as_str() {
                slot.0 = id.to_owned();
            }
            if let Some(name) = call["function"]["name"].as_str() {
                slot.1.push_str(name);
            }
            if let Some(arguments) = call["function"]["arguments"].as_str() {
                slot.2.push_str(arguments);
            }
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            assert!(view.finish_reason.is_none(), "a second finish chunk");
            view.finish_reason = Some(reason.to_owned());
        }
    }
    assert!(done, "stream did not end with [DONE]");
    assert_eq!(usage_chunks, usize::from(wants_usage), "usage chunk count");
    view.tool_calls = calls;
    view
}

/// Compares the client's view with the case's `expected`.
pub fn assert_expected(name: &str, view: &ClientView, expected: &Value) {
    if let Some(content) = expected.get("content") {
        let got = view.content.clone().unwrap_or_default();
        assert_eq!(Some(got.as_str()), content.as_str(), "{name}: content");
    }
    if let Some(reasoning) = expected.get("reasoning_content") {
        let got = view.reasoning.clone().filter(|r| !r.is_empty());
        assert_eq!(
            got.as_deref(),
            reasoning.as_str(),
            "{name}: reasoning_content"
        );
    }
    if let Some(calls) = expected.get("tool_calls") {
        let calls = calls.as_array().expect("expected tool_calls");
        assert_eq!(
            view.tool_calls.len(),
            calls.len(),
            "{name}: tool call count"
        );
        for ((id, call_name, arguments), want) in view.tool_calls.iter().zip(calls) {
            if let Some(want_id) = want.get("id") {
                assert_eq!(Some(id.as_str()), want_id.as_str(), "{name}: tool call id");
            }
            assert_eq!(
                Some(call_name.as_str()),
                want["name"].as_str(),
                "{name}: tool call name"
            );
            let parsed: Value = serde_json::from_str(arguments).expect("arguments are JSON");
            assert_eq!(&parsed, &want["arguments"], "{name}: tool call arguments");
        }
    } else {
        assert!(view.tool_calls.is_empty(), "{name}: unexpected tool calls");
    }
    if let Some(reason) = expected.get("finish_reason") {
        assert_eq!(
            view.finish_reason.as_deref(),
            reason.as_str(),
            "{name}: finish_reason"
        );
    }
    if let Some(usage) = expected.get("usage").filter(|u| !u.is_null()) {
        let got = view
            .usage
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no usage"));
        for key in ["prompt_tokens", "completion_tokens"] {
            assert_eq!(got[key], usage[key], "{name}: usage.{key}");
        }
        assert_eq!(
            got["total_tokens"].as_u64(),
            Some(
                usage["prompt_tokens"].as_u64().unwrap_or(0)
                    + usage["completion_tokens"].as_u64().unwrap_or(0)
            ),
            "{name}: usage.total_tokens"
        );
    }
}

/// Feeds a stream translator the parts in turn; returns the events and the final usage.
pub fn translate_stream(
    case: &Case,
    parts: &[Bytes],
    wants_usage: bool,
) -> (Vec<Bytes>, Option<Usage>) {
    let mut translator = case.dialect().stream_translator(&case.ctx(wants_usage));
    let mut out = Vec::new();
    for part in parts {
        translator
            .feed(part.clone(), &mut out)
            .unwrap_or_else(|e| panic!("{}: feed failed: {e}", case.name));
    }
    translator
        .finish(&mut out)
        .unwrap_or_else(|e| panic!("{}: finish failed: {e}", case.name));
    (out, translator.usage())
}

/// Splits bytes at the given cut points (taken modulo the length, sorted).
pub fn split_at(body: &Bytes, cuts: &[usize]) -> Vec<Bytes> {
    if body.is_empty() {
        return vec![body.clone()];
    }
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % body.len()).collect();
    cuts.sort_unstable();
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for cut in cuts {
        parts.push(body.slice(last..cut));
        last = cut;
    }
    parts.push(body.slice(last..));
    parts
}

fn usage_json(usage: &Usage) -> Value {
    usage.to_json()
}

/// Runs one case end to end: request translation, then the recorded response.
pub fn run_case(case: &Case) {
    let name = &case.name;
    let dialect = case.dialect();
    let request = ChatRequest {
        body: Bytes::from(case.case["openai_request"].to_string()),
        upstream_model: case.upstream_model(),
        stream: case.stream(),
        client_wants_usage: case.wants_usage(),
    };
    let call = dialect
        .translate_request(&request)
        .unwrap_or_else(|e| panic!("{name}: translate_request: {e}"));
    assert_eq!(call.stream, case.stream(), "{name}: stream flag");
    let sent: Value = serde_json::from_slice(&call.body).expect("translated body is JSON");
    if let Some(expect) = case.case.get("request_expect").filter(|e| !e.is_null()) {
        assert_subset(expect, &sent, name);
        let recorded = &case.fixture["request"];
        let (path, query) = call
            .path_and_query
            .split_once('?')
            .unwrap_or((&call.path_and_query, ""));
        let recorded_path = recorded["path"].as_str().expect("recorded path");
        assert!(
            recorded_path.ends_with(path),
            "{name}: path {path} vs recorded {recorded_path}"
        );
        let recorded_query = recorded["query"].as_str().unwrap_or_default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            assert!(
                recorded_query.split('&').any(|p| p == pair),
                "{name}: query {pair} not in {recorded_query}"
            );
        }
    }

    let status = case.status();
    let body = case.response_body();
    if let Some(expected) = case.case.get("expected_error") {
        assert!(status >= 400, "{name}: an error case with status {status}");
        let error = dialect.translate_error(status, &body);
        assert_eq!(
            u64::from(error.status),
            expected["status"].as_u64().unwrap(),
            "{name}: status"
        );
        assert_eq!(
            error.code.as_str(),
            expected["code"].as_str().unwrap(),
            "{name}: code"
        );
        assert!(
            error.passthrough_body.is_none(),
            "{name}: translated dialects must not pass bodies through"
        );
        assert!(!error.message.is_empty());
        let rendered = error.to_response_body("req");
        let rendered: Value = serde_json::from_slice(&rendered).expect("error body");
        assert_eq!(rendered["error"]["code"], expected["code"]);
        if error.code.as_str() == "upstream_rate_limited"
            && body.windows(9).any(|w| w == b"RetryInfo")
        {
            assert!(error.retry_after.is_some(), "{name}: RetryInfo not read");
        }
        return;
    }
    let expected = &case.case["expected"];
    assert!(status < 300, "{name}: success case with status {status}");
    if case.stream() {
        for wants_usage in [true, false] {
            let (events, usage) = translate_stream(case, std::slice::from_ref(&body), wants_usage);
            let view = read_stream(&events, wants_usage);
            let mut compared = view;
            if !wants_usage {
                compared.usage = usage.as_ref().map(usage_json);
            }
            assert_expected(name, &compared, expected);
            if wants_usage {
                assert_eq!(
                    compared.usage,
                    usage.as_ref().map(usage_json),
                    "{name}: usage() differs from the usage chunk"
                );
            }
        }
    } else {
        let translated = dialect
            .translate_response(body, &case.ctx(false))
            .unwrap_or_else(|e| panic!("{name}: translate_response: {e}"));
        let view = read_completion(&translated.body);
        assert_eq!(
            view.usage,
            translated.usage.as_ref().map(usage_json),
            "{name}: Translated::usage differs"
        );
        assert_expected(name, &view, expected);
    }
}
