//! Fixture-case harness shared by `tests/dialect_responses.rs` and `tests/dialect_azure.rs`:
//! loads `tests/dialects/cases/<dir>/*.json`, replays each recorded upstream exchange through
//! the dialect and compares what an OpenAI SDK client would see with the case's expectations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use switchyard::dialect::{
    self, ChatRequest, Dialect, DialectKind, DialectOptions, ResponseContext, StreamTranslator,
};
use switchyard::error::RelayError;

/// One case file with its recorded fixture.
pub struct Case {
    pub name: String,
    pub case: Value,
    pub fixture: Value,
}

fn fixtures_root() -> PathBuf {
    let root = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/upstream"
    ));
    assert!(
        root.is_dir(),
        "fixture directory {} is missing",
        root.display()
    );
    root
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every case of a fixture directory, checking that each fixture file has one.
pub fn cases(dir: &str) -> Vec<Case> {
    let root = fixtures_root();
    let case_dir =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dialects/cases")).join(dir);
    let mut fixture_stems: Vec<String> = std::fs::read_dir(root.join(dir))
        .unwrap_or_else(|e| panic!("listing fixtures {dir}: {e}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_owned))
        .collect();
    fixture_stems.sort();
    let mut cases = Vec::new();
    for stem in fixture_stems {
        let case_path = case_dir.join(format!("{stem}.json"));
        assert!(
            case_path.is_file(),
            "fixture {dir}/{stem}.json has no case file {}",
            case_path.display()
        );
        let case = read_json(&case_path);
        let fixture_path = root.join(case["fixture"].as_str().expect("case.fixture"));
        let fixture = read_json(&fixture_path);
        cases.push(Case {
            name: format!("{dir}/{stem}"),
            case,
            fixture,
        });
    }
    assert!(!cases.is_empty(), "no cases in {dir}");
    cases
}

impl Case {
    pub fn dialect(&self) -> Arc<dyn Dialect> {
        let kind: DialectKind = self.case["dialect"]
            .as_str()
            .expect("case.dialect")
            .parse()
            .expect("known dialect");
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

    pub fn client_wants_usage(&self) -> bool {
        self.openai_request()["stream_options"]["include_usage"]
            .as_bool()
            .unwrap_or(false)
    }

    pub fn chat_request(&self) -> ChatRequest {
        let request = self.openai_request();
        assert_eq!(
            request["model"], "case-model",
            "{}: openai_request.model",
            self.name
        );
        ChatRequest {
            body: Bytes::from(request.to_string()),
            upstream_model: self.case["upstream_model"]
                .as_str()
                .expect("case.upstream_model")
                .to_owned(),
            stream: request["stream"].as_bool().unwrap_or(false),
            client_wants_usage: self.client_wants_usage(),
        }
    }

    pub fn context(&self) -> ResponseContext {
        ResponseContext {
            id: "chatcmpl-case".into(),
            created: 1_700_000_000,
            upstream_model: self.case["upstream_model"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            client_wants_usage: self.client_wants_usage(),
        }
    }

    pub fn status(&self) -> u16 {
        self.fixture["response"]["status"]
            .as_u64()
            .expect("response.status") as u16
    }

    pub fn response_body(&self) -> Bytes {
        let response = &self.fixture["response"];
        match (response["body"].as_str(), response["body_base64"].as_str()) {
            (Some(body), _) => Bytes::from(body.to_owned()),
            (None, Some(encoded)) => Bytes::from(
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .expect("base64 body"),
            ),
            (None, None) => panic!("{}: fixture has no response body", self.name),
        }
    }

    /// Whether the recorded response is a stream (rather than one JSON body).
    pub fn is_stream(&self) -> bool {
        let content_type = self.fixture["response"]["headers"]["content-type"]
            .as_str()
            .unwrap_or_default();
        self.status() < 300
            && (content_type.contains("event-stream") || self.fixture["stream"] == true)
    }
}

/// `expected` is contained in `actual`: objects by key, arrays element-wise with equal length.
pub fn assert_subset(expected: &Value, actual: &Value, path: &str) {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                let actual = actual
                    .get(key)
                    .unwrap_or_else(|| panic!("{path}.{key} missing"));
                assert_subset(value, actual, &format!("{path}.{key}"));
            }
        }
        (Value::Array(expected), Value::Array(actual)) => {
            assert_eq!(expected.len(), actual.len(), "{path}: array length");
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

/// What an OpenAI SDK user ends up with.
#[derive(Debug, Default)]
pub struct ClientView {
    pub content: Option<String>,
    pub reasoning_content: Option<String>,
    /// `(id, name, arguments)` by tool-call index.
    pub tool_calls: Vec<(String, String, String)>,
    pub finish_reason: Option<String>,
    pub usage: Option<Value>,
}

fn append(slot: &mut Option<String>, text: Option<&str>) {
    if let Some(text) = text {
        slot.get_or_insert_with(String::new).push_str(text);
    }
}

/// Reads a `chat.completion` body.
pub fn view_completion(body: &[u8]) -> ClientView {
    let completion: Value = serde_json::from_slice(body).expect("chat.completion JSON");
    assert_eq!(completion["object"], "chat.completion");
    assert!(
        completion["id"].as_str().is_some_and(|id| !id.is_empty()),
        "completion id"
    );
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    let mut view = ClientView::default();
    append(&mut view.content, message["content"].as_str());
    append(
        &mut view.reasoning_content,
        message["reasoning_content"].as_str(),
    );
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        assert_eq!(call["type"], "function");
        view.tool_calls.push((
            call["id"].as_str().unwrap_or_default().to_owned(),
            call["function"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            call["function"]["arguments"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ));
    }
    view.finish_reason = choice["finish_reason"].as_str().map(str::to_owned);
    view.usage = completion.get("usage").cloned();
    view
}

/// Accumulates `chat.completion.chunk` events as the OpenAI SDKs do, checking the stream's
/// invariants on the way.
pub fn view_stream(events: &[Bytes], wants_usage: bool) -> ClientView {
    let mut view = ClientView::default();
    let mut identity: Option<(Value, Value, Value)> = None;
    let mut saw_role = false;
    let mut saw_done = false;
    for (position, event) in events.iter().enumerate() {
        let text = std::str::from_utf8(event).expect("UTF-8 event");
        assert!(
            text.starts_with("data: ") && text.ends_with("\n\n"),
            "one complete data event per element: {text:?}"
        );
        let data = text["data: ".len()..].trim_end();
        if data == "[DONE]" {
            assert_eq!(position, events.len() - 1, "[DONE] comes last");
            saw_done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(data).expect("chunk JSON");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        let this = (
            chunk["id"].clone(),
            chunk["model"].clone(),
            chunk["created"].clone(),
        );
        match &identity {
            None => identity = Some(this),
            Some(first) => assert_eq!(
                first, &this,
                "every chunk carries the same id, model and created"
            ),
        }
        let choices = chunk["choices"].as_array().expect("choices");
        if choices.is_empty() {
            assert!(wants_usage, "a usage chunk only when the client asked");
            view.usage = chunk.get("usage").cloned();
            continue;
        }
        let choice = &choices[0];
        let delta = &choice["delta"];
        if !saw_role {
            assert_eq!(
                delta["role"], "assistant",
                "the first delta carries the role"
            );
            saw_role = true;
        }
        append(&mut view.content, delta["content"].as_str());
        append(
            &mut view.reasoning_content,
            delta["reasoning_content"].as_str(),
        );
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().expect("tool call index") as usize;
            assert!(
                index <= view.tool_calls.len(),
                "tool-call indexes appear in order"
            );
            if index == view.tool_calls.len() {
                assert!(
                    call["id"].is_string() && call["function"]["name"].is_string(),
                    "first delta of a call names it"
                );
                view.tool_calls.push((
                    call["id"].as_str().unwrap().to_owned(),
                    String::new(),
                    String::new(),
                ));
            }
            let slot = &mut view.tool_calls[index];
            slot.1
                .push_str(call["function"]["name"].as_str().unwrap_or_default());
            slot.2
                .push_str(call["function"]["arguments"].as_str().unwrap_or_default());
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            view.finish_reason = Some(reason.to_owned());
        }
    }
    assert!(saw_done, "the stream ends with [DONE]");
    view
}

/// Feeds a stream in the given reads; returns every client event and the outcome.
pub fn translate_stream(
    translator: &mut dyn StreamTranslator,
    reads: impl IntoIterator<Item = Bytes>,
) -> (Vec<Bytes>, Result<(), RelayError>) {
    let mut out = Vec::new();
    for read in reads {
        if let Err(error) = translator.feed(read, &mut out) {
            return (out, Err(error));
        }
    }
    let result = translator.finish(&mut out);
    (out, result)
}

fn compare(case: &Case, expected: &Value, view: &ClientView) {
    let name = &case.name;
    if let Some(content) = expected.get("content") {
        assert_eq!(view.content.as_deref(), content.as_str(), "{name}: content");
    }
    if let Some(reasoning) = expected.get("reasoning_content") {
        assert_eq!(
            view.reasoning_content.as_deref(),
            reasoning.as_str(),
            "{name}: reasoning_content"
        );
    }
    if let Some(calls) = expected.get("tool_calls") {
        let calls = calls.as_array().expect("expected.tool_calls");
        assert_eq!(
            view.tool_calls.len(),
            calls.len(),
            "{name}: number of tool calls"
        );
        for (expected, (id, function, arguments)) in calls.iter().zip(&view.tool_calls) {
            assert_eq!(expected["id"], id.as_str(), "{name}: tool call id");
            assert_eq!(
                expected["name"],
                function.as_str(),
                "{name}: tool call name"
            );
            let arguments: Value = serde_json::from_str(arguments)
                .unwrap_or_else(|e| panic!("{name}: arguments {arguments:?}: {e}"));
            assert_eq!(
                expected["arguments"], arguments,
                "{name}: tool call arguments"
            );
        }
    }
    if let Some(reason) = expected.get("finish_reason") {
        assert_eq!(
            view.finish_reason.as_deref(),
            reason.as_str(),
            "{name}: finish_reason"
        );
    }
    if let Some(usage) = expected.get("usage") {
        let actual = view
            .usage
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no usage reached the client"));
        assert_subset(usage, actual, &format!("{name}: usage"));
        let total = actual["prompt_tokens"].as_u64().unwrap()
            + actual["completion_tokens"].as_u64().unwrap();
        assert_eq!(
            actual["total_tokens"].as_u64(),
            Some(total),
            "{name}: total_tokens"
        );
    }
}

/// Runs one case end to end: request translation, then the recorded response.
pub fn run_case(case: &Case) {
    let dialect = case.dialect();
    let call = dialect
        .translate_request(&case.chat_request())
        .unwrap_or_else(|e| panic!("{}: translate_request: {e}", case.name));
    if let Some(path) = case.case.get("expected_path").and_then(Value::as_str) {
        assert_eq!(call.path_and_query, path, "{}: upstream path", case.name);
    }
    let sent: Value = serde_json::from_slice(&call.body)
        .unwrap_or_else(|e| panic!("{}: upstream body is not JSON: {e}", case.name));
    let request_expect = &case.case["request_expect"];
    if !request_expect.is_null() {
        assert_subset(request_expect, &sent, &format!("{}: request", case.name));
    }

    let ctx = case.context();
    let body = case.response_body();
    if let Some(expected_error) = case.case.get("expected_error") {
        assert!(
            case.status() >= 400,
            "{}: expected_error needs an error fixture",
            case.name
        );
        let error = dialect.translate_error(case.status(), &body);
        assert_eq!(
            u64::from(error.status),
            expected_error["status"].as_u64().unwrap(),
            "{}: error status",
            case.name
        );
        assert_eq!(
            error.code.as_str(),
            expected_error["code"].as_str().unwrap(),
            "{}: error code",
            case.name
        );
        assert!(!error.message.is_empty(), "{}: error message", case.name);
        return;
    }
    let expected = case.case.get("expected").unwrap_or_else(|| {
        panic!(
            "{}: case has neither expected nor expected_error",
            case.name
        )
    });
    let view = if case.is_stream() {
        let mut translator = dialect.stream_translator(&ctx);
        let (events, result) = translate_stream(translator.as_mut(), [body]);
        result.unwrap_or_else(|e| panic!("{}: stream translation: {e}", case.name));
        let view = view_stream(&events, ctx.client_wants_usage);
        assert_eq!(
            translator.usage().is_some(),
            expected.get("usage").is_some(),
            "{}: StreamTranslator::usage",
            case.name
        );
        view
    } else {
        let translated = dialect
            .translate_response(body, &ctx)
            .unwrap_or_else(|e| panic!("{}: translate_response: {e}", case.name));
        let view = view_completion(&translated.body);
        if let (Some(usage), Some(expected)) = (translated.usage, expected.get("usage")) {
            assert_eq!(
                Some(usage.prompt_tokens),
                expected["prompt_tokens"].as_u64(),
                "{}: Translated::usage",
                case.name
            );
        }
        view
    };
    compare(case, expected, &view);
}

/// The streamed cases, with their recorded bodies.
pub fn stream_cases(dirs: &[&str]) -> Vec<(Case, Bytes)> {
    dirs.iter()
        .flat_map(|dir| cases(dir))
        .filter(|case| case.is_stream())
        .map(|case| {
            let body = case.response_body();
            (case, body)
        })
        .collect()
}

/// Client output for a stream fed in reads cut at `cuts` (byte offsets, any order).
pub fn output_with_cuts(case: &Case, body: &Bytes, cuts: &[usize]) -> (Vec<u8>, Option<String>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|cut| cut % (body.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut reads = Vec::new();
    let mut start = 0;
    for cut in cuts.into_iter().chain([body.len()]) {
        reads.push(body.slice(start..cut));
        start = cut;
    }
    let mut translator = case.dialect().stream_translator(&case.context());
    let (events, result) = translate_stream(translator.as_mut(), reads);
    (events.concat(), result.err().map(|e| e.to_string()))
}
