use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::dialect::Usage;
use crate::error::ErrorCode;
use crate::sse;

fn chat(body: Value, stream: bool) -> ChatRequest {
    ChatRequest {
        body: Bytes::from(body.to_string()),
        upstream_model: "gpt-test".into(),
        stream,
        client_wants_usage: false,
        layout: None,
    }
}

fn ctx(wants_usage: bool) -> ResponseContext<'static> {
    ResponseContext {
        request_id: "req_ctx",
        created: 7,
        upstream_model: "gpt-test",
        client_wants_usage: wants_usage,
        several_choices: false,
    }
}

fn openai() -> Responses {
    Responses::openai(&DialectOptions::default())
}

fn sent(dialect: &Responses, body: Value, stream: bool) -> Value {
    let call = dialect.translate_request(&chat(body, stream)).unwrap();
    serde_json::from_slice(&call.body).unwrap()
}

fn rejected(dialect: &Responses, body: Value) -> RelayError {
    dialect.translate_request(&chat(body, false)).unwrap_err()
}

#[test]
fn a_conversation_becomes_instructions_and_input_items() {
    let body = json!({
        "model": "pub",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            ]},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"cat\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"dog\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "a dog"}]},
            {"role": "system", "content": "Answer in French now."},
            {"role": "user", "content": "So?"}
        ]
    });
    let sent = sent(&openai(), body, false);
    assert_eq!(sent["model"], "gpt-test");
    assert_eq!(sent["instructions"], "Be brief.\n\nUse metric units.");
    assert_eq!(sent["store"], false);
    assert_eq!(sent["stream"], false);
    assert_eq!(
        sent["input"],
        json!([
            {"role": "user", "content": [
                {"type": "input_text", "text": "What is this?"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
                {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"}
            ]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check.", "annotations": []}]},
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\":\"cat\"}"},
            {"type": "function_call", "call_id": "call_2", "name": "lookup", "arguments": "{\"q\":\"dog\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "a cat"},
            {"type": "function_call_output", "call_id": "call_2", "output": "a dog"},
            {"role": "system", "content": "Answer in French now."},
            {"role": "user", "content": "So?"}
        ])
    );
}

#[test]
fn tool_call_arguments_sent_as_an_object_reach_the_upstream_as_json_text() {
    let call = |id: &str, arguments: Value| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": arguments}});
    let body = json!({"messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": null, "tool_calls": [
            call("c1", json!({"city": "Paris"})),
            call("c2", json!("{\"city\":\"Oslo\"}")),
            call("c3", Value::Null)
        ]}
    ]});
    let arguments: Vec<Value> = sent(&openai(), body, false)["input"].as_array().unwrap()[1..]
        .iter()
        .map(|item| item["arguments"].clone())
        .collect();
    assert_eq!(arguments, [json!("{\"city\":\"Paris\"}"), json!("{\"city\":\"Oslo\"}"), json!("{}")]);
}

#[test]
fn tools_choices_formats_and_limits_are_mapped() {
    let body = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true}},
            {"type": "function", "function": {"name": "now"}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "max_completion_tokens": 500,
        "temperature": 0.2,
        "top_p": 0.9,
        "reasoning_effort": "high",
        "response_format": {"type": "json_schema", "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": true}},
        "verbosity": "low",
        "user": "u-1",
        "store": true,
        "seed": 3,
        "n": 1,
        "stop": null,
        "stream_options": {"include_usage": true}
    });
    let sent = sent(&openai(), body, true);
    assert_eq!(
        sent["tools"],
        json!([
            {"type": "function", "name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": true},
            {"type": "function", "name": "now", "parameters": {"type": "object", "properties": {}}, "strict": false}
        ])
    );
    assert_eq!(sent["tool_choice"], json!({"type": "function", "name": "get_weather"}));
    assert_eq!(sent["parallel_tool_calls"], false);
    assert_eq!(sent["max_output_tokens"], 500);
    assert_eq!(sent["temperature"], 0.2);
    assert_eq!(sent["top_p"], 0.9);
    assert_eq!(sent["reasoning"], json!({"effort": "high"}));
    assert_eq!(
        sent["text"],
        json!({"format": {"type": "json_schema", "name": "weather", "schema": {"type": "object"}, "strict": true}, "verbosity": "low"})
    );
    assert_eq!(sent["user"], "u-1");
    assert_eq!(sent["store"], true);
    assert_eq!(sent["stream"], true);
    for dropped in ["seed", "n", "stop", "stream_options", "messages", "max_completion_tokens", "response_format"] {
        assert!(sent.get(dropped).is_none(), "{dropped} should not be sent");
    }
}

#[test]
fn small_limits_json_mode_and_tool_choice_modes() {
    let body = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 1,
        "response_format": {"type": "json_object"},
        "tool_choice": "required",
    });
    let sent = sent(&openai(), body, false);
    assert_eq!(sent["max_output_tokens"], 16);
    assert_eq!(sent["text"]["format"], json!({"type": "json_object"}));
    assert_eq!(sent["tool_choice"], "required");
    let allowed = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "tool_choice": {"type": "allowed_tools", "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "a"}}]}},
    });
    assert_eq!(
        super::tests::sent(&openai(), allowed, false)["tool_choice"],
        json!({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "a"}]})
    );
}

#[test]
fn what_responses_cannot_express_is_a_400_unless_dropping() {
    let user = json!([{"role": "user", "content": "hi"}]);
    for (param, extra) in [
        ("stop", json!({"stop": ["END"]})),
        ("n", json!({"n": 2})),
        ("frequency_penalty", json!({"frequency_penalty": 0.5})),
        ("logit_bias", json!({"logit_bias": {"50256": -100}})),
        ("logprobs", json!({"logprobs": true})),
        ("audio", json!({"audio": {"voice": "alloy"}})),
        ("tools", json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]})),
    ] {
        let mut body = extra.clone();
        body["messages"] = user.clone();
        let error = rejected(&openai(), body.clone());
        assert_eq!(error.code, ErrorCode::UnsupportedParameter, "{param}");
        assert_eq!(error.status, 400);
        assert_eq!(error.param.as_deref(), Some(param));

        let lenient = Responses::openai(&DialectOptions { drop_unsupported: true, ..DialectOptions::default() });
        let sent = sent(&lenient, body, false);
        assert!(sent.get(param).is_none(), "{param} dropped");
    }
    let audio_in = json!({"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AA", "format": "wav"}}]}]});
    assert_eq!(rejected(&openai(), audio_in).param.as_deref(), Some("messages"));
    // Harmless values of unsupported parameters pass.
    let harmless =
        json!({"messages": user, "n": 1, "stop": [], "presence_penalty": 0, "logprobs": false, "modalities": ["text"]});
    assert!(openai().translate_request(&chat(harmless, false)).is_ok());
}

#[test]
fn malformed_requests_are_client_errors() {
    assert_eq!(rejected(&openai(), json!({"model": "x"})).code, ErrorCode::InvalidRequest);
    assert_eq!(rejected(&openai(), json!({"messages": [{"content": "no role"}]})).code, ErrorCode::InvalidRequest);
    assert_eq!(
        rejected(&openai(), json!({"messages": [{"role": "tool", "content": "x"}]})).code,
        ErrorCode::InvalidRequest
    );
    let error = openai()
        .translate_request(&ChatRequest {
            body: Bytes::from_static(b"[1]"),
            upstream_model: "m".into(),
            stream: false,
            client_wants_usage: false,
            layout: None,
        })
        .unwrap_err();
    assert_eq!(error.code, ErrorCode::InvalidJson);
}

#[test]
fn codex_always_streams_unstored_with_instructions_and_no_output_cap() {
    let codex = Responses::codex(&DialectOptions::default());
    let call = codex
        .translate_request(&chat(json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100, "store": true, "reasoning_effort": "low"}), false))
        .unwrap();
    assert_eq!(call.path_and_query, "/codex/responses");
    assert!(call.stream, "the upstream call streams even for a non-stream client");
    assert_eq!(call.headers.len(), 1);
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["store"], false);
    assert!(!sent["instructions"].as_str().unwrap().is_empty());
    assert!(sent.get("max_output_tokens").is_none());
    assert_eq!(sent["reasoning"], json!({"effort": "low", "summary": "auto"}));
    assert_eq!(sent["input"], json!([{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]));

    let with_system =
        json!({"messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}]});
    let call = codex.translate_request(&chat(with_system, true)).unwrap();
    let sent: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(sent["instructions"], "Be terse.");
    assert_eq!(codex.models_path(), None);
}

fn response_body(output: Value, status: &str, incomplete: Value) -> Bytes {
    Bytes::from(
        json!({
            "id": "resp_abc", "object": "response", "created_at": 1, "model": "gpt-5-2025", "status": status,
            "incomplete_details": incomplete, "error": null, "output": output,
            "usage": {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 12}, "total_tokens": 30}
        })
        .to_string(),
    )
}

#[test]
fn a_response_with_reasoning_text_and_calls_becomes_one_message() {
    let output = json!([
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "First."}, {"type": "summary_text", "text": "Second."}], "encrypted_content": "gAAA"},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "Checking ", "annotations": []}, {"type": "output_text", "text": "now.", "annotations": []}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_A", "name": "lookup", "arguments": "{\"q\":1}", "status": "completed"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"}
    ]);
    let translated = openai().translate_response(response_body(output, "completed", Value::Null), &ctx(false)).unwrap();
    let body: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(body["id"], "chatcmpl-abc");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["created"], 7);
    assert_eq!(body["model"], "gpt-5-2025");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking now.");
    assert_eq!(choice["message"]["reasoning_content"], "First.\n\nSecond.");
    assert_eq!(
        choice["message"]["tool_calls"],
        json!([{"id": "call_A", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}])
    );
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
    assert_eq!(body["usage"]["total_tokens"], 30);
    assert_eq!(
        translated.usage(),
        Some(Usage { prompt_tokens: 10, completion_tokens: 20, cached_tokens: 4, reasoning_tokens: 12 })
    );
}

#[test]
fn null_fields_read_as_empty() {
    let output = json!([
        {"type": "function_call", "call_id": "call_1", "name": "f", "arguments": null},
        {"type": "message", "content": null},
        {"type": "reasoning", "summary": null, "content": null}
    ]);
    let translated = openai().translate_response(response_body(output, "completed", Value::Null), &ctx(false)).unwrap();
    let body: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"], "");
    assert!(body["choices"][0]["message"].get("reasoning_content").is_none());
}

#[test]
fn incomplete_and_failed_responses() {
    let text = json!([{"type": "message", "content": [{"type": "output_text", "text": "Par"}]}]);
    for (reason, finish) in [("max_output_tokens", "length"), ("content_filter", "content_filter")] {
        let body = response_body(text.clone(), "incomplete", json!({"reason": reason}));
        let translated = openai().translate_response(body, &ctx(false)).unwrap();
        let body: Value = serde_json::from_slice(&translated.body).unwrap();
        assert_eq!(body["choices"][0]["finish_reason"], finish);
    }
    let failed = Bytes::from(json!({"id": "resp_1", "status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow down"}, "output": []}).to_string());
    let error = openai().translate_response(failed, &ctx(false)).unwrap_err();
    assert_eq!(error.code, ErrorCode::UpstreamRateLimited);
    assert!(error.message.contains("slow down"));
    let error = openai().translate_response(Bytes::from_static(b"<html></html>"), &ctx(false)).unwrap_err();
    assert_eq!(error.code, ErrorCode::UpstreamInvalidResponse);
}

#[test]
fn errors_keep_the_upstream_status_message_and_param() {
    let body = Bytes::from_static(br#"{"error":{"code":"model_not_found","message":"The requested model 'x' does not exist.","param":"model","type":"invalid_request_error"}}"#);
    let error = openai().translate_error(400, &body);
    assert_eq!((error.status, error.code), (400, ErrorCode::UpstreamHttpError));
    assert_eq!(error.message, "The requested model 'x' does not exist.");
    assert_eq!(error.param.as_deref(), Some("model"));
    assert!(error.passthrough_body.is_none());

    let error = openai().translate_error(429, &Bytes::from_static(br#"{"error":{"message":"Rate limit reached"}}"#));
    assert_eq!((error.status, error.code), (429, ErrorCode::UpstreamRateLimited));
    let error = openai().translate_error(503, &Bytes::from_static(br#"{"error":{"message":"overloaded"}}"#));
    assert_eq!((error.status, error.code), (503, ErrorCode::UpstreamOverloaded));
    let error = openai().translate_error(400, &Bytes::from_static(br#"{"detail":"Instructions are required"}"#));
    assert_eq!(error.message, "Instructions are required");
}

fn event(kind: &str, mut payload: Value) -> String {
    payload["type"] = Value::String(kind.into());
    format!("event: {kind}\ndata: {payload}\n\n")
}

fn run(upstream: &str, wants_usage: bool) -> (Vec<Value>, Result<(), RelayError>, Option<Usage>) {
    let mut translator = openai().stream_translator(&ctx(wants_usage));
    let mut out = Vec::new();
    let result = translator.feed(Bytes::from(upstream.to_owned()), &mut out).and_then(|()| translator.finish(&mut out));
    let mut chunks = Vec::new();
    for event in &out {
        let text = std::str::from_utf8(event).unwrap();
        let data = text.strip_prefix("data: ").unwrap().trim_end();
        chunks.push(if data == "[DONE]" {
            Value::String("[DONE]".into())
        } else {
            serde_json::from_str(data).unwrap()
        });
    }
    (chunks, result, translator.usage())
}

fn completed(status: &str) -> Value {
    json!({"response": {"id": "resp_s", "model": "gpt-5-2025", "status": status, "incomplete_details": if status == "incomplete" { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "usage": {"input_tokens": 5, "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3}}}})
}

#[test]
fn a_stream_with_reasoning_text_and_two_calls() {
    let upstream = [
        event("response.created", json!({"response": {"id": "resp_s", "model": "gpt-5-2025", "status": "in_progress"}})),
        event("response.output_item.added", json!({"output_index": 0, "item": {"type": "reasoning", "id": "rs_1", "summary": []}})),
        event("response.reasoning_summary_text.delta", json!({"item_id": "rs_1", "output_index": 0, "summary_index": 0, "delta": "Think"})),
        event("response.reasoning_summary_text.delta", json!({"item_id": "rs_1", "output_index": 0, "summary_index": 1, "delta": "More"})),
        event("response.output_text.delta", json!({"item_id": "msg_1", "output_index": 1, "content_index": 0, "delta": "Hi"})),
        event("response.output_item.added", json!({"output_index": 2, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "a", "arguments": ""}})),
        event("response.output_item.added", json!({"output_index": 3, "item": {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "b", "arguments": ""}})),
        event("response.function_call_arguments.delta", json!({"item_id": "fc_2", "output_index": 3, "delta": "{\"y\":"})),
        event("response.function_call_arguments.delta", json!({"item_id": "fc_1", "output_index": 2, "delta": "{}"})),
        event("response.function_call_arguments.delta", json!({"item_id": "fc_2", "output_index": 3, "delta": "2}"})),
        event("response.output_item.done", json!({"output_index": 3, "item": {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "b", "arguments": "{\"y\":2}"}})),
        event("response.completed", completed("completed")),
    ]
    .concat();
    let (chunks, result, usage) = run(&upstream, true);
    result.unwrap();
    assert_eq!(chunks.last().unwrap(), "[DONE]");
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c.pointer("/choices/0/delta")).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "reasoning_content": "Think"}));
    assert_eq!(deltas[1], &json!({"reasoning_content": "\n\nMore"}));
    assert_eq!(deltas[2], &json!({"content": "Hi"}));
    assert_eq!(
        deltas[3],
        &json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "a", "arguments": ""}}]})
    );
    assert_eq!(deltas[4]["tool_calls"][0]["index"], 1);
    assert_eq!(deltas[5], &json!({"tool_calls": [{"index": 1, "function": {"arguments": "{\"y\":"}}]}));
    assert_eq!(deltas[6], &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}));
    assert_eq!(deltas.len(), 9, "no duplicate arguments from output_item.done");
    let finish = &chunks[chunks.len() - 3];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage_chunk = &chunks[chunks.len() - 2];
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"]["completion_tokens_details"]["reasoning_tokens"], 3);
    for chunk in &chunks[..chunks.len() - 1] {
        assert_eq!(
            (chunk["id"].as_str(), chunk["model"].as_str(), chunk["created"].as_u64()),
            (Some("chatcmpl-s"), Some("gpt-5-2025"), Some(7))
        );
        assert_eq!(chunk["object"], "chat.completion.chunk");
    }
    assert_eq!(usage, Some(Usage { prompt_tokens: 5, completion_tokens: 7, cached_tokens: 0, reasoning_tokens: 3 }));
}

#[test]
fn an_incomplete_stream_ends_with_length_and_no_usage_chunk_unless_asked() {
    let upstream = [
        event("response.created", json!({"response": {"id": "resp_s", "model": "m"}})),
        event("response.output_text.delta", json!({"delta": "Par"})),
        event("response.incomplete", completed("incomplete")),
    ]
    .concat();
    let (chunks, result, usage) = run(&upstream, false);
    result.unwrap();
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "length");
    assert!(usage.is_some());
}

#[test]
fn a_call_only_announced_when_done_is_sent_whole() {
    let upstream = [
        event("response.output_item.done", json!({"output_index": 0, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "a", "arguments": "{\"x\":1}"}})),
        event("response.completed", completed("completed")),
    ]
    .concat();
    let (chunks, result, _) = run(&upstream, false);
    result.unwrap();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "a", "arguments": "{\"x\":1}"}}]})
    );
    assert_eq!(chunks[0]["id"], "chatcmpl-ctx", "no response.created: the context's id");
}

#[test]
fn in_band_failures_are_classified_errors() {
    for (payload, code) in [
        (
            event(
                "response.failed",
                json!({"response": {"status": "failed", "error": {"code": "server_error", "message": "boom"}}}),
            ),
            ErrorCode::UpstreamStreamError,
        ),
        (
            event(
                "response.failed",
                json!({"response": {"status": "failed", "error": {"code": "rate_limit_exceeded", "message": "slow"}}}),
            ),
            ErrorCode::UpstreamRateLimited,
        ),
        (
            event("error", json!({"code": "server_is_overloaded", "message": "busy", "param": null})),
            ErrorCode::UpstreamOverloaded,
        ),
        (
            event(
                "error",
                json!({"error": {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "too long"}}),
            ),
            ErrorCode::UpstreamStreamError,
        ),
    ] {
        let (_, result, _) = run(&payload, false);
        let error = result.unwrap_err();
        assert_eq!(error.code, code, "{payload}");
    }
}

#[test]
fn a_stream_cut_before_completion_is_truncated() {
    let upstream = event("response.output_text.delta", json!({"delta": "Par"}));
    let (chunks, result, _) = run(&upstream, false);
    assert_eq!(chunks.len(), 1);
    assert_eq!(result.unwrap_err().code, ErrorCode::UpstreamStreamTruncated);
}

#[test]
fn split_reads_give_the_same_events() {
    let upstream = [
        event("response.created", json!({"response": {"id": "resp_s", "model": "m"}})),
        event("response.output_text.delta", json!({"delta": "Hé"})),
        event("response.completed", completed("completed")),
    ]
    .concat();
    let (whole, ..) = run(&upstream, true);
    let bytes = upstream.as_bytes();
    for cut in 1..bytes.len() {
        let mut translator = openai().stream_translator(&ctx(true));
        let mut out = Vec::new();
        translator.feed(Bytes::copy_from_slice(&bytes[..cut]), &mut out).unwrap();
        translator.feed(Bytes::copy_from_slice(&bytes[cut..]), &mut out).unwrap();
        translator.finish(&mut out).unwrap();
        assert_eq!(out.len(), whole.len());
        assert_eq!(out.last().unwrap(), &sse::done_event());
    }
}
