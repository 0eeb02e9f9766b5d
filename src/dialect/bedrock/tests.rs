use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue as FrameHeaderValue, Message};
use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::dialect::{ChatRequest, Dialect, DialectOptions, ResponseContext};

const CLAUDE: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const NOVA: &str = "us.amazon.nova-micro-v1:0";

fn dialect() -> BedrockConverse {
    BedrockConverse::new(&DialectOptions::default())
}

fn lenient() -> BedrockConverse {
    BedrockConverse::new(&DialectOptions { drop_unsupported: true, ..DialectOptions::default() })
}

fn chat(body: &Value, model: &str) -> ChatRequest {
    ChatRequest {
        body: Bytes::from(body.to_string()),
        upstream_model: model.into(),
        stream: body.get("stream").and_then(Value::as_bool).unwrap_or(false),
        client_wants_usage: false,
        layout: None,
    }
}

fn translate_with(dialect: &BedrockConverse, body: Value, model: &str) -> Result<Value, RelayError> {
    let call = dialect.translate_request(&chat(&body, model))?;
    Ok(serde_json::from_slice(&call.body).unwrap())
}

fn translate(body: Value) -> Result<Value, RelayError> {
    translate_with(&dialect(), body, NOVA)
}

fn ctx(wants_usage: bool) -> ResponseContext<'static> {
    ResponseContext {
        request_id: "req_ctx",
        created: 42,
        upstream_model: NOVA,
        client_wants_usage: wants_usage,
        several_choices: false,
    }
}

fn frame(message_type: &str, kind: &str, payload: Value) -> Vec<u8> {
    let type_header = if message_type == "exception" { ":exception-type" } else { ":event-type" };
    let message = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(":message-type", FrameHeaderValue::String(message_type.to_owned().into())))
        .add_header(Header::new(type_header, FrameHeaderValue::String(kind.to_owned().into())))
        .add_header(Header::new(":content-type", FrameHeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&message, &mut out).unwrap();
    out
}

fn event(kind: &str, payload: Value) -> Vec<u8> {
    frame("event", kind, payload)
}

fn run(input: &[u8], wants_usage: bool) -> (Vec<Value>, Result<(), RelayError>, Option<Usage>) {
    let mut translator = dialect().stream_translator(&ctx(wants_usage));
    let mut out = Vec::new();
    let result = translator.feed(Bytes::copy_from_slice(input), &mut out).and_then(|()| translator.finish(&mut out));
    let events = out
        .iter()
        .map(|e| {
            let payload = std::str::from_utf8(e).unwrap().strip_prefix("data: ").unwrap().trim_end().to_owned();
            serde_json::from_str(&payload).unwrap_or(Value::String(payload))
        })
        .collect();
    (events, result, translator.usage())
}

#[test]
fn paths_encode_the_model_and_pick_the_streaming_operation() {
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let call = dialect().translate_request(&chat(&body, NOVA)).unwrap();
    assert_eq!(call.path_and_query, "/model/us.amazon.nova-micro-v1%3A0/converse");
    assert!(!call.stream);
    let mut streamed = body.clone();
    streamed["stream"] = true.into();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-x";
    let call = dialect().translate_request(&chat(&streamed, arn)).unwrap();
    assert_eq!(
        call.path_and_query,
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-x/converse-stream"
    );
    assert!(call.stream);
    assert_eq!(dialect().default_auth(), AuthStyle::SigV4);
    assert_eq!(dialect().models_path(), None);
}

#[test]
fn messages_system_and_inference_config_map() {
    let body = translate(json!({"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "text", "text": "cache me", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": [{"type": "text", "text": "q"}, {"type": "text", "text": "  "},
            {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
            {"type": "file", "file": {"filename": "Q3 report (final).pdf", "file_data": "data:application/pdf;base64,JVBER"}}]},
        {"role": "assistant", "content": "calling", "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r1"},
        {"role": "user", "content": "thanks"}
    ], "max_completion_tokens": 50, "temperature": 0.1, "top_p": 0.5, "stop": "END", "user": "u", "seed": 1,
       "tools": [{"type": "function", "function": {"name": "f", "description": "", "parameters": {"type": "object"}}}]}))
    .unwrap();
    assert_eq!(
        body["system"],
        json!([{"text": "be brief"}, {"text": "cache me"}, {"cachePoint": {"type": "default"}}])
    );
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [
                {"text": "q"},
                {"image": {"format": "jpeg", "source": {"bytes": "/9j/"}}},
                {"document": {"format": "pdf", "name": "Q3 report (final)", "source": {"bytes": "JVBER"}}}]},
            {"role": "assistant", "content": [{"text": "calling"}, {"toolUse": {"toolUseId": "t1", "name": "f", "input": {"x": 1}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "r1"}]}}, {"text": "thanks"}]}
        ])
    );
    assert_eq!(
        body["inferenceConfig"],
        json!({"maxTokens": 50, "temperature": 0.1, "topP": 0.5, "stopSequences": ["END"]})
    );
    assert_eq!(
        body["toolConfig"],
        json!({"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]})
    );
    assert!(body.get("requestMetadata").is_none() && body.get("additionalModelRequestFields").is_none());
}

#[test]
fn a_plain_request_sends_no_empty_sections() {
    let body = translate(json!({"messages": [{"role": "user", "content": "hello"}]})).unwrap();
    assert_eq!(body, json!({"messages": [{"role": "user", "content": [{"text": "hello"}]}]}));
    let configured =
        BedrockConverse::new(&DialectOptions { default_max_tokens: Some(1000), ..DialectOptions::default() });
    let body = translate_with(&configured, json!({"messages": [{"role": "user", "content": "hello"}]}), NOVA).unwrap();
    assert_eq!(body["inferenceConfig"], json!({"maxTokens": 1000}));
}

#[test]
fn image_urls_and_odd_images_are_rejected() {
    let url = json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}]});
    let error = translate(url.clone()).unwrap_err();
    assert_eq!(
        (error.code, error.status, error.param.as_deref()),
        (ErrorCode::UnsupportedParameter, 400, Some("messages"))
    );
    assert_eq!(translate_with(&lenient(), url, NOVA).unwrap()["messages"][0]["content"], json!([{"text": "see"}]));
    let tiff = json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64,AA"}}]}]});
    assert_eq!(translate(tiff).unwrap_err().code, ErrorCode::InvalidRequest);
}

#[test]
fn tool_choice_modes_map_and_parallel_false_is_unsupported() {
    let tools = json!([{"type": "function", "function": {"name": "f", "description": "d"}}]);
    let with =
        |choice: Value| json!({"messages": [{"role": "user", "content": "q"}], "tools": tools, "tool_choice": choice});
    assert!(translate(with(json!("auto"))).unwrap()["toolConfig"].get("toolChoice").is_none());
    assert_eq!(translate(with(json!("required"))).unwrap()["toolConfig"]["toolChoice"], json!({"any": {}}));
    assert_eq!(
        translate(with(json!({"type": "function", "function": {"name": "f"}}))).unwrap()["toolConfig"]["toolChoice"],
        json!({"tool": {"name": "f"}})
    );
    assert!(translate(with(json!("none"))).unwrap().get("toolConfig").is_none());
    let mut history = with(json!("none"));
    history["messages"] = json!([
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "r"}]);
    assert_eq!(translate(history).unwrap_err().param.as_deref(), Some("tool_choice"));
    let mut sequential = with(json!("auto"));
    sequential["parallel_tool_calls"] = false.into();
    assert_eq!(translate(sequential.clone()).unwrap_err().param.as_deref(), Some("parallel_tool_calls"));
    assert!(translate_with(&lenient(), sequential, NOVA).unwrap().get("toolConfig").is_some());
}

#[test]
fn reasoning_effort_follows_the_model_family() {
    let request = json!({"messages": [{"role": "user", "content": "q"}], "reasoning_effort": "medium"});
    let claude = translate_with(&dialect(), request.clone(), CLAUDE).unwrap();
    assert_eq!(claude["additionalModelRequestFields"], json!({"thinking": {"type": "enabled", "budget_tokens": 8192}}));
    assert_eq!(claude["inferenceConfig"]["maxTokens"], 4096 + 8192);
    let gpt = translate_with(&dialect(), request.clone(), "openai.gpt-oss-120b-1:0").unwrap();
    assert_eq!(gpt["additionalModelRequestFields"], json!({"reasoning_effort": "medium"}));
    assert_eq!(translate(request.clone()).unwrap_err().param.as_deref(), Some("reasoning_effort"));
    assert!(translate_with(&lenient(), request, NOVA).unwrap().get("additionalModelRequestFields").is_none());
    let none = json!({"messages": [{"role": "user", "content": "q"}], "reasoning_effort": "none"});
    assert!(translate(none).unwrap().get("additionalModelRequestFields").is_none());
}

#[test]
fn json_schema_becomes_structured_output_and_json_object_is_unsupported() {
    let body = translate(json!({"messages": [{"role": "user", "content": "q"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"}}}}))
    .unwrap();
    assert_eq!(
        body["outputConfig"],
        json!({"textFormat": {"type": "json_schema", "structure": {"jsonSchema": {"schema": "{\"type\":\"object\"}", "name": "city"}}}})
    );
    let error = translate(json!({"messages": [], "response_format": {"type": "json_object"}})).unwrap_err();
    assert_eq!(error.param.as_deref(), Some("response_format"));
}

#[test]
fn a_converse_response_with_reasoning_text_and_tools_translates() {
    let body = br#"{"metrics":{"latencyMs":1},"output":{"message":{"role":"assistant","content":[
        {"reasoningContent":{"reasoningText":{"text":"think","signature":"s"}}},
        {"reasoningContent":{"redactedContent":"AAAA"}},
        {"text":"Let me "},{"text":"look."},
        {"toolUse":{"toolUseId":"tooluse_1","name":"f","input":{"city":"Paris"}}},
        {"toolUse":{"toolUseId":"tooluse_2","name":"g","input":{}}}]}},
        "stopReason":"tool_use","usage":{"inputTokens":10,"outputTokens":4,"totalTokens":20,"cacheReadInputTokens":5,"cacheReadInputTokenCount":5,
        "cacheWriteInputTokenCount":1}}"#;
    let translated = dialect().translate_response(Bytes::from_static(body), &ctx(false)).unwrap();
    let json: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(json["id"], "chatcmpl-ctx");
    assert_eq!(json["model"], NOVA);
    let message = &json["choices"][0]["message"];
    assert_eq!(message["content"], "Let me look.");
    assert_eq!(message["reasoning_content"], "think");
    assert_eq!(message["tool_calls"][0]["id"], "tooluse_1");
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Paris\"}");
    assert_eq!(message["tool_calls"][1]["function"]["arguments"], "{}");
    assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        translated.usage(),
        Some(Usage { prompt_tokens: 16, completion_tokens: 4, cached_tokens: 5, reasoning_tokens: 0 })
    );
}

#[test]
fn stop_reasons_map() {
    for (stop, expected) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
        ("malformed_tool_use", "stop"),
    ] {
        assert_eq!(finish_reason(Some(stop)), expected);
    }
}

#[test]
fn errors_map_by_status_with_the_bedrock_message() {
    let body = Bytes::from_static(br#"{"message":"Too many requests, please wait before trying again."}"#);
    let throttled = dialect().translate_error(429, &body);
    assert_eq!((throttled.code, throttled.status), (ErrorCode::UpstreamRateLimited, 429));
    assert!(throttled.message.starts_with("Too many requests"));
    let unavailable = dialect().translate_error(503, &Bytes::from_static(br#"{"Message":"busy"}"#));
    assert_eq!(
        (unavailable.code, unavailable.status, unavailable.message.as_str()),
        (ErrorCode::UpstreamOverloaded, 503, "busy")
    );
    let denied = dialect().translate_error(403, &Bytes::from_static(br#"{"message":"You don't have access"}"#));
    assert_eq!((denied.code, denied.status), (ErrorCode::UpstreamHttpError, 403));
    assert!(denied.passthrough_body.is_none());
}

fn tool_stream() -> Vec<u8> {
    [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "hmm"}}})),
        event(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": "sig"}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 0})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": ""}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"text": "Hi"}})),
        event("contentBlockStop", json!({"contentBlockIndex": 1})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "tu_1", "name": "f"}}}),
        ),
        event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "{\"a\":"}}})),
        event("contentBlockDelta", json!({"contentBlockIndex": 2, "delta": {"toolUse": {"input": "1}"}}})),
        event("contentBlockStop", json!({"contentBlockIndex": 2})),
        event(
            "contentBlockStart",
            json!({"contentBlockIndex": 3, "start": {"toolUse": {"toolUseId": "tu_2", "name": "g"}}}),
        ),
        event("contentBlockStop", json!({"contentBlockIndex": 3})),
        event("messageStop", json!({"stopReason": "tool_use"})),
        event(
            "metadata",
            json!({"usage": {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}, "metrics": {"latencyMs": 5}}),
        ),
    ]
    .concat()
}

#[test]
fn a_stream_with_reasoning_text_and_tools_translates() {
    let (events, result, usage) = run(&tool_stream(), true);
    result.unwrap();
    let deltas: Vec<&Value> = events.iter().filter_map(|e| e["choices"].get(0)).map(|c| &c["delta"]).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "reasoning_content": "hmm"}));
    assert_eq!(deltas[1], &json!({"content": "Hi"}));
    assert_eq!(
        deltas[2]["tool_calls"][0],
        json!({"index": 0, "id": "tu_1", "type": "function", "function": {"name": "f", "arguments": ""}})
    );
    assert_eq!(deltas[3]["tool_calls"][0]["function"]["arguments"], "{\"a\":");
    assert_eq!(deltas[4]["tool_calls"][0]["function"]["arguments"], "1}");
    assert_eq!(deltas[5]["tool_calls"][0]["index"], 1);
    assert_eq!(deltas[6]["tool_calls"][0], json!({"index": 1, "function": {"arguments": "{}"}}));
    assert_eq!(events[events.len() - 3]["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(events[events.len() - 2]["usage"]["prompt_tokens"], 7);
    assert_eq!(events.last().unwrap(), &Value::String("[DONE]".into()));
    assert!(events.iter().filter(|e| e.is_object()).all(|e| e["id"] == "chatcmpl-ctx" && e["model"] == NOVA));
    assert_eq!(usage.map(|u| u.completion_tokens), Some(3));
}

#[test]
fn any_split_of_a_stream_gives_the_same_output() {
    let input = tool_stream();
    let (whole, _, _) = run(&input, true);
    let mut translator = dialect().stream_translator(&ctx(true));
    let mut out = Vec::new();
    for byte in &input {
        translator.feed(Bytes::copy_from_slice(std::slice::from_ref(byte)), &mut out).unwrap();
    }
    translator.finish(&mut out).unwrap();
    let split: Vec<Value> = out
        .iter()
        .map(|e| {
            let payload = std::str::from_utf8(e).unwrap().strip_prefix("data: ").unwrap().trim_end().to_owned();
            serde_json::from_str(&payload).unwrap_or(Value::String(payload))
        })
        .collect();
    assert_eq!(split, whole);
}

#[test]
fn a_stream_ending_after_message_stop_without_metadata_still_finishes() {
    let input = [
        event("messageStart", json!({"role": "assistant"})),
        event("messageStop", json!({"stopReason": "max_tokens"})),
    ]
    .concat();
    let (events, result, usage) = run(&input, true);
    result.unwrap();
    assert_eq!(events[0]["choices"][0]["finish_reason"], "length");
    assert_eq!(events[1]["usage"]["prompt_tokens"], 0);
    assert_eq!(usage, None);
}

#[test]
fn a_stream_without_message_stop_is_truncated() {
    let input = [
        event("messageStart", json!({"role": "assistant"})),
        event("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "par"}})),
    ]
    .concat();
    let (_, result, _) = run(&input, false);
    assert_eq!(result.unwrap_err().code, ErrorCode::UpstreamStreamTruncated);
}

#[test]
fn exception_frames_fail_the_stream_with_their_class() {
    for (kind, code, status) in [
        ("throttlingException", ErrorCode::UpstreamRateLimited, 429),
        ("serviceUnavailableException", ErrorCode::UpstreamOverloaded, 503),
        ("validationException", ErrorCode::UpstreamStreamError, 400),
        ("modelStreamErrorException", ErrorCode::UpstreamStreamError, 502),
    ] {
        let input = [
            event("messageStart", json!({"role": "assistant"})),
            frame("exception", kind, json!({"message": "slow down"})),
        ]
        .concat();
        let (_, result, _) = run(&input, false);
        let error = result.unwrap_err();
        assert_eq!((error.code, error.status), (code, status), "{kind}");
        assert!(error.message.contains("slow down") && error.message.contains(kind));
    }
}

#[test]
fn a_corrupt_frame_is_an_invalid_response() {
    let mut input = event("messageStart", json!({"role": "assistant"}));
    let last = input.len() - 1;
    input[last] ^= 0xff;
    let (_, result, _) = run(&input, false);
    assert_eq!(result.unwrap_err().code, ErrorCode::UpstreamInvalidResponse);
}
