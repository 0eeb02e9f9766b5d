//! Replays recorded upstream exchanges (`shared/fixtures/upstream/<dir>/*.json`) through a
//! dialect, driven by the case files in `tests/dialects/cases/<dir>/`.
//!
//! For every case: the client's `openai_request` is translated and must contain
//! `request_expect` (a JSON subset); the recorded response is fed to the dialect and the
//! client-visible result, accumulated as an OpenAI SDK would, must equal `expected` (or the
//! error must match `expected_error`). Stream translation must not depend on how the upstream's
//! bytes are split into reads.

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use switchyard::dialect::{ChatRequest, Dialect, ResponseContext, StreamTranslator, Usage};
use switchyard::error::RelayError;
use switchyard::sse;

/// One case file.
#[derive(Debug, Clone, Deserialize)]
pub struct Case {
    pub fixture: String,
    pub dialect: String,
    pub upstream_model: String,
    pub openai_request: Value,
    pub request_expect: Option<Value>,
    pub expected: Option<Value>,
    pub expected_error: Option<Value>,
    /// The case file's name, filled in on load.
    #[serde(skip)]
    pub name: String,
}

/// The recorded response of a fixture.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub status: u16,
    pub body: Bytes,
    /// The request asked for a stream.
    pub stream: bool,
}

/// `shared/fixtures/upstream`, next to the repository.
pub fn fixtures_root() -> PathBuf {
    let root = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/fixtures/upstream"
    ));
    assert!(
        root.is_dir(),
        "fixture directory {} is missing",
        root.display()
    );
    root.to_path_buf()
}

/// Every case of one fixture directory; fails unless every fixture file has a case.
pub fn load_cases(fixture_dir: &str, dialect: &str) -> Vec<Case> {
    let cases_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/dialects/cases")
        .join(fixture_dir);
    let mut cases = Vec::new();
    for entry in fs::read_dir(&cases_dir).unwrap_or_else(|e| panic!("{}: {e}", cases_dir.display()))
    {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = fs::read_to_string(&path).unwrap();
            let mut case: Case =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            case.name = path.file_stem().unwrap().to_string_lossy().into_owned();
            assert_eq!(case.dialect, dialect, "{}", case.name);
            assert_eq!(
                case.fixture,
                format!("{fixture_dir}/{}.json", case.name),
                "case file named after its fixture"
            );
            assert!(
                case.expected.is_some() != case.expected_error.is_some(),
                "{}: expected xor expected_error",
                case.name
            );
            cases.push(case);
        }
    }
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    let fixture_dir_path = fixtures_root().join(fixture_dir);
    let mut fixtures: Vec<String> = fs::read_dir(&fixture_dir_path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    fixtures.sort();
    let names: Vec<String> = cases.iter().map(|c| c.name.clone()).collect();
    assert_eq!(
        names, fixtures,
        "every fixture in {fixture_dir}/ needs exactly one case file"
    );
    cases
}

/// The recorded response of a case's fixture.
pub fn recorded(case: &Case) -> Recorded {
    let path = fixtures_root().join(&case.fixture);
    let fixture: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let response = &fixture["response"];
    let body = match (&response["body_base64"], &response["body"]) {
        (Value::String(b64), _) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap(),
        (_, Value::String(text)) => text.as_bytes().to_vec(),
        (_, other) => serde_json::to_vec(other).unwrap(),
    };
    Recorded {
        status: response["status"].as_u64().unwrap() as u16,
        body: Bytes::from(body),
        stream: fixture["stream"].as_bool().unwrap_or(false),
    }
}

/// The relay's view of the client's request.
pub fn chat_request(case: &Case) -> ChatRequest {
    let request = &case.openai_request;
    ChatRequest {
        body: Bytes::from(request.to_string()),
        upstream_model: case.upstream_model.clone(),
        stream: request["stream"].as_bool().unwrap_or(false),
        client_wants_usage: request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

/// The response context the relay would build for a case.
pub fn context(case: &Case) -> ResponseContext {
    let request = chat_request(case);
    ResponseContext {
        id: "chatcmpl-case".into(),
        created: 1_700_000_000,
        upstream_model: case.upstream_model.clone(),
        client_wants_usage: request.client_wants_usage,
    }
}

/// Where `actual` fails to contain `expected`: objects by key, arrays element-wise with equal
/// length, numbers by value.
pub fn subset_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => {
            want.iter().find_map(|(key, value)| match have.get(key) {
                Some(found) => subset_mismatch(value, found, &format!("{path}.{key}")),
                None => Some(format!("{path}.{key} is missing")),
            })
        }
        (Value::Array(want), Value::Array(have)) => {
            if want.len() != have.len() {
                return Some(format!(
                    "{path}: {} elements expected, {} found",
                    want.len(),
                    have.len()
                ));
            }
            want.iter()
                .zip(have)
                .enumerate()
                .find_map(|(i, (w, h))| subset_mismatch(w, h, &format!("{path}[{i}]")))
        }
        (Value::Number(want), Value::Number(have)) if want.as_f64() == have.as_f64() => None,
        (want, have) if want == have => None,
        (want, have) => Some(format!("{path}: expected {want}, found {have}")),
    }
}

/// Checks the translated request of a case.
pub fn check_request(dialect: &dyn Dialect, case: &Case) {
    let call = dialect
        .translate_request(&chat_request(case))
        .unwrap_or_else(|e| panic!("{}: request not translated: {e}", case.name));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    if let Some(expect) = &case.request_expect {
        if let Some(mismatch) = subset_mismatch(expect, &body, "body") {
            panic!(
                "{}: translated request differs: {mismatch}\ntranslated: {body}",
                case.name
            );
        }
    }
}

/// What a client ends up with.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientResult {
    pub content: Value,
    pub reasoning_content: Value,
    pub tool_calls: Vec<Value>,
    pub finish_reason: Value,
    pub usage: Option<Value>,
}

/// Runs a recorded stream through a fresh translator in the given reads; returns the events or
/// the error.
pub fn run_stream(
    dialect: &dyn Dialect,
    ctx: &ResponseContext,
    reads: &[Bytes],
) -> (Vec<Bytes>, Result<(), RelayError>, Option<Usage>) {
    let mut translator: Box<dyn StreamTranslator> = dialect.stream_translator(ctx);
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
    (out, result, translator.usage())
}

/// Accumulates stream events as the OpenAI SDKs do, checking the stream rules on the way.
pub fn accumulate_stream(case: &str, events: &[Bytes], wants_usage: bool) -> ClientResult {
    assert_eq!(
        events.last(),
        Some(&sse::done_event()),
        "{case}: the stream ends with [DONE]"
    );
    let mut ident: Option<(Value, Value, Value)> = None;
    let mut result = ClientResult {
        content: Value::Null,
        reasoning_content: Value::Null,
        tool_calls: Vec::new(),
        finish_reason: Value::Null,
        usage: None,
    };
    let mut raw_calls: Vec<(String, String, String)> = Vec::new();
    let mut first_delta = true;
    for event in &events[..events.len() - 1] {
        let text = std::str::from_utf8(event).unwrap();
        let payload = text
            .strip_prefix("data: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap_or_else(|| panic!("{case}: not one SSE data event: {text:?}"));
        let chunk: Value = serde_json::from_str(payload).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{case}");
        let this = (
            chunk["id"].clone(),
            chunk["model"].clone(),
            chunk["created"].clone(),
        );
        assert!(
            this.0.is_string() && this.1.is_string() && this.2.is_u64(),
            "{case}: chunk identity {chunk}"
        );
        match &ident {
            None => ident = Some(this),
            Some(first) => assert_eq!(
                first, &this,
                "{case}: every chunk has the same id, model, created"
            ),
        }
        let choices = chunk["choices"].as_array().unwrap();
        if choices.is_empty() {
            assert!(
                wants_usage,
                "{case}: a usage chunk the client did not ask for"
            );
            result.usage = Some(chunk["usage"].clone());
            continue;
        }
        assert!(result.usage.is_none(), "{case}: the usage chunk comes last");
        let choice = &choices[0];
        let delta = &choice["delta"];
        if first_delta {
            assert_eq!(
                delta["role"], "assistant",
                "{case}: the first delta carries the role"
            );
            first_delta = false;
        }
        if let Some(text) = delta["content"].as_str() {
            let content = result.content.as_str().unwrap_or("").to_owned() + text;
            result.content = Value::String(content);
        }
        if let Some(text) = delta["reasoning_content"].as_str() {
            let reasoning = result.reasoning_content.as_str().unwrap_or("").to_owned() + text;
            result.reasoning_content = Value::String(reasoning);
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            let index = call["index"].as_u64().unwrap() as usize;
            if index == raw_calls.len() {
                let id = call["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{case}: a new tool call has an id"))
                    .to_owned();
                let name = call["function"]["name"]
                    .as_str()
                    .expect("a new tool call has a name")
                    .to_owned();
                assert_eq!(call["type"], "function");
                raw_calls.push((id, name, String::new()));
            }
            assert!(
                index < raw_calls.len(),
                "{case}: tool call indexes are dense and in order"
            );
            if let Some(fragment) = call["function"]["arguments"].as_str() {
                raw_calls[index].2.push_str(fragment);
            }
        }
        if !choice["finish_reason"].is_null() {
            result.finish_reason = choice["finish_reason"].clone();
        }
    }
    if wants_usage {
        assert!(
            result.usage.is_some(),
            "{case}: the client asked for a usage chunk"
        );
    }
    result.tool_calls = raw_calls
        .into_iter()
        .map(|(id, name, arguments)| tool_call(case, id, name, &arguments))
        .collect();
    result
}

fn tool_call(case: &str, id: String, name: String, arguments: &str) -> Value {
    let arguments: Value = serde_json::from_str(arguments)
        .unwrap_or_else(|e| panic!("{case}: tool call arguments {arguments:?} are not JSON: {e}"));
    json!({"id": id, "name": name, "arguments": arguments})
}

/// Reads a `chat.completion` body.
pub fn read_completion(case: &str, body: &[u8]) -> ClientResult {
    let completion: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(completion["object"], "chat.completion", "{case}");
    assert!(
        completion["id"].is_string()
            && completion["model"].is_string()
            && completion["created"].is_u64()
    );
    let choice = &completion["choices"][0];
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant");
    let tool_calls = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|call| {
            assert_eq!(call["type"], "function");
            tool_call(
                case,
                call["id"].as_str().unwrap().to_owned(),
                call["function"]["name"].as_str().unwrap().to_owned(),
                call["function"]["arguments"].as_str().unwrap(),
            )
        })
        .collect();
    ClientResult {
        content: message["content"].clone(),
        reasoning_content: message
            .get("reasoning_content")
            .cloned()
            .unwrap_or(Value::Null),
        tool_calls,
        finish_reason: choice["finish_reason"].clone(),
        usage: completion.get("usage").cloned(),
    }
}

/// Compares a client result with a case's `expected`, key by key (absent keys are not checked).
pub fn check_expected(case: &Case, result: &ClientResult, usage: Option<Usage>) {
    let expected = case.expected.as_ref().unwrap();
    let name = &case.name;
    if let Some(content) = expected.get("content") {
        assert_eq!(&result.content, content, "{name}: content");
    }
    if let Some(reasoning) = expected.get("reasoning_content") {
        assert_eq!(
            &result.reasoning_content, reasoning,
            "{name}: reasoning_content"
        );
    }
    if let Some(calls) = expected.get("tool_calls") {
        assert_eq!(
            &Value::Array(result.tool_calls.clone()),
            calls,
            "{name}: tool_calls"
        );
    }
    if let Some(finish) = expected.get("finish_reason") {
        assert_eq!(&result.finish_reason, finish, "{name}: finish_reason");
    }
    if let Some(want) = expected.get("usage") {
        let have = result
            .usage
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no usage"));
        if let Some(mismatch) = subset_mismatch(want, have, "usage") {
            panic!("{name}: {mismatch}");
        }
        let usage = usage.unwrap_or_else(|| panic!("{name}: the dialect reported no usage"));
        assert_eq!(
            Some(usage.prompt_tokens),
            want["prompt_tokens"].as_u64(),
            "{name}: reported usage"
        );
        assert_eq!(
            Some(usage.completion_tokens),
            want["completion_tokens"].as_u64(),
            "{name}: reported usage"
        );
    }
}

/// Checks an error against `expected_error`.
pub fn check_error(case: &Case, error: &RelayError) {
    let expected = case
        .expected_error
        .as_ref()
        .unwrap_or_else(|| panic!("{}: unexpected error {error}", case.name));
    assert_eq!(
        Some(u64::from(error.status)),
        expected["status"].as_u64(),
        "{}: status of {error}",
        case.name
    );
    assert_eq!(
        Some(error.code.as_str()),
        expected["code"].as_str(),
        "{}: code of {error}",
        case.name
    );
    assert!(
        error.passthrough_body.is_none(),
        "{}: translated dialects answer in OpenAI shape",
        case.name
    );
}

/// Runs one case's response side.
pub fn check_response(dialect: &dyn Dialect, case: &Case) {
    let recorded = recorded(case);
    let ctx = context(case);
    if recorded.status >= 400 {
        check_error(
            case,
            &dialect.translate_error(recorded.status, &recorded.body),
        );
        return;
    }
    if recorded.stream {
        let (events, result, usage) =
            run_stream(dialect, &ctx, std::slice::from_ref(&recorded.body));
        match result {
            Err(error) => check_error(case, &error),
            Ok(()) => {
                assert!(
                    case.expected_error.is_none(),
                    "{}: the stream should have failed",
                    case.name
                );
                check_expected(
                    case,
                    &accumulate_stream(&case.name, &events, ctx.client_wants_usage),
                    usage,
                );
            }
        }
    } else {
        match dialect.translate_response(recorded.body.clone(), &ctx) {
            Err(error) => check_error(case, &error),
            Ok(translated) => check_expected(
                case,
                &read_completion(&case.name, &translated.body),
                translated.usage,
            ),
        }
    }
}

/// Splits `body` at the given offsets.
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

/// The 2xx stream bodies among the cases, for split properties.
pub fn stream_bodies(cases: &[Case]) -> Vec<(Case, Bytes)> {
    cases
        .iter()
        .filter_map(|case| {
            let recorded = recorded(case);
            (recorded.stream && recorded.status < 400).then(|| (case.clone(), recorded.body))
        })
        .collect()
}

/// Events and outcome for a split stream, comparable across splits.
pub fn split_outcome(
    dialect: &dyn Dialect,
    case: &Case,
    body: &Bytes,
    cuts: &[usize],
) -> (Vec<Bytes>, Result<(), String>) {
    let (events, result, _) = run_stream(dialect, &context(case), &split_at(body, cuts));
    (
        events,
        result.map_err(|e| format!("{}: {}", e.code, e.message)),
    )
}
