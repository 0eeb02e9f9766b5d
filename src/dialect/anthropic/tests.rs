use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::dialect::{ChatRequest, Dialect, DialectOptions, ResponseContext};

fn dialect() -> AnthropicMessages {
    AnthropicMessages::new(&DialectOptions::default())
}

fn translate(body: Value) -> Result<Value, RelayError> {
    translate_with(&dialect(), body)
}

fn translate_with(dialect: &AnthropicMessages, body: Value) -> Result<Value, RelayError> {
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let request = ChatRequest {
        body: Bytes::from(body.to_string()),
        upstream_model: "claude-test".into(),
        stream,
        client_wants_usage: false,
        layout: None,
    };
    let call = dialect.translate_request(&request)?;
    assert_eq!(call.path_and_query, "/v1/messages");
    Ok(serde_json::from_slice(&call.body).unwrap())
}

fn ctx(wants_usage: bool) -> ResponseContext<'static> {
    ResponseContext {
        request_id: "req_ctx",
        created: 42,
        upstream_model: "claude-test",
        client_wants_usage: wants_usage,
        several_choices: false,
    }
}

fn run_stream(input: &str, wants_usage: bool) -> (Vec<Value>, Result<(), RelayError>) {
    let mut translator = dialect().stream_translator(&ctx(wants_usage));
    let mut out = Vec::new();
    let result =
        translator.feed(Bytes::copy_from_slice(input.as_bytes()), &mut out).and_then(|()| translator.finish(&mut out));
    let events = out
        .iter()
        .map(|e| {
            let payload = std::str::from_utf8(e).unwrap().strip_prefix("data: ").unwrap().trim_end().to_owned();
            serde_json::from_str(&payload).unwrap_or(Value::String(payload))
        })
        .collect();
    (events, result)
}

#[test]
fn builds_the_messages_request_with_headers_and_default_max_tokens() {
    let request = ChatRequest {
        body: Bytes::from_static(br#"{"model":"pub","messages":[{"role":"user","content":"hi"}],"stream":true}"#),
        upstream_model: "claude-test".into(),
        stream: true,
        client_wants_usage: false,
        layout: None,
    };
    let call = dialect().translate_request(&request).unwrap();
    assert!(call.stream);
    assert!(call.headers.iter().any(|(n, v)| n == "anthropic-version" && v == "2023-06-01"));
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        body,
        json!({"model": "claude-test", "max_tokens": 4096,
               "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "stream": true})
    );
    assert_eq!(dialect().default_auth(), AuthStyle::Header("x-api-key"));
}

#[test]
fn system_and_developer_messages_are_hoisted_and_turns_merged() {
    let body = translate(json!({"messages": [
        {"role": "system", "content": "one"},
        {"role": "user", "content": "q"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{\"x\":1}"}},
            {"id": "t2", "type": "function", "function": {"name": "g", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "t1", "content": "r1"},
        {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "r2"}, {"type": "text", "text": "more"}]},
        {"role": "user", "content": "thanks"}
    ], "max_completion_tokens": 100}))
    .unwrap();
    assert_eq!(body["system"], json!([{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]));
    assert_eq!(body["max_tokens"], 100);
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "q"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}},
                {"type": "tool_use", "id": "t2", "name": "g", "input": {}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": "r1"},
                {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "r2"}, {"type": "text", "text": "more"}]},
                {"type": "text", "text": "thanks"}]}
        ])
    );
}

#[test]
fn a_single_system_text_is_a_string_and_cache_control_is_kept() {
    let body =
        translate(json!({"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]}))
            .unwrap();
    assert_eq!(body["system"], "be brief");
    let body = translate(json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]},
        {"role": "user", "content": "q"}]}))
    .unwrap();
    assert_eq!(body["system"], json!([{"type": "text", "text": "long", "cache_control": {"type": "ephemeral"}}]));
}

#[test]
fn images_and_pdfs_become_blocks() {
    let body = translate(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBER"}}
    ]}]}))
    .unwrap();
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"}, "title": "a.pdf"}
        ])
    );
}

#[test]
fn text_files_are_plain_text_documents_and_other_files_are_refused_by_type() {
    let file = |name: &str, url: &str| json!({"type": "file", "file": {"filename": name, "file_data": url}});
    // "notes: é" and {"a":1}, base64.
    let body = translate(json!({"messages": [{"role": "user", "content": [
        file("notes.md", "data:text/markdown;charset=utf-8;base64,bm90ZXM6IMOp"),
        file("data.json", "data:application/json;base64,eyJhIjoxfQ==")
    ]}]}))
    .unwrap();
    assert_eq!(
        body["messages"][0]["content"],
        json!([
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "notes: é"}, "title": "notes.md"},
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "{\"a\":1}"}, "title": "data.json"}
        ])
    );

    let docx = "data:application/vnd.openxmlformats-officedocument.wordprocessingml.document;base64,UEsDBA==";
    let refused = translate(json!({"messages": [{"role": "user", "content": [file("a.docx", docx)]}]})).unwrap_err();
    assert_eq!(refused.code, ErrorCode::UnsupportedParameter);
    assert!(refused.message.contains("wordprocessingml"), "{}", refused.message);
    let lenient = AnthropicMessages::new(&DialectOptions { drop_unsupported: true, ..DialectOptions::default() });
    let body = translate_with(
        &lenient,
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "read"}, file("a.docx", docx)]}]}),
    )
    .unwrap();
    assert_eq!(body["messages"][0]["content"], json!([{"type": "text", "text": "read"}]));

    // Latin-1 bytes (0xE9) are not UTF-8 text.
    let binary =
        translate(json!({"messages": [{"role": "user", "content": [file("a.txt", "data:text/plain;base64,6Q==")]}]}))
            .unwrap_err();
    assert_eq!(binary.code, ErrorCode::InvalidRequest);
}

#[test]
fn image_media_types_are_the_four_anthropic_accepts() {
    let image = |url: &str| json!({"type": "image_url", "image_url": {"url": url}});
    let body = translate(json!({"messages": [
        {"role": "user", "content": [image("data:image/jpg;base64,AAAA"), image("data:image/JPEG;base64,BBBB")]},
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": [image("data:image/webp;base64,CCCC")]}
    ]}))
    .unwrap();
    let media_type = |block: &Value| block["source"]["media_type"].clone();
    let user = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(user.iter().map(media_type).collect::<Vec<_>>(), [json!("image/jpeg"), json!("image/jpeg")]);
    assert_eq!(media_type(&body["messages"][2]["content"][0]["content"][0]), "image/webp");

    let lenient = AnthropicMessages::new(&DialectOptions { drop_unsupported: true, ..DialectOptions::default() });
    let svg = json!({"messages": [{"role": "user", "content": [image("data:image/svg+xml;base64,PHN2Zz4=")]}]});
    let error = translate_with(&lenient, svg).unwrap_err();
    assert_eq!((error.code, error.status, error.param.as_deref()), (ErrorCode::InvalidRequest, 400, Some("messages")));
    assert_eq!(error.message, "Anthropic accepts png, jpeg, gif and webp images, not image/svg+xml");
}

#[test]
fn tools_tool_choice_and_parallel_calls_map() {
    let tools = json!([{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}, "strict": true}},
                       {"type": "function", "function": {"name": "g"}}]);
    let body = translate(json!({"messages": [{"role": "user", "content": "q"}], "tools": tools})).unwrap();
    assert_eq!(
        body["tools"],
        json!([{"name": "f", "description": "d", "input_schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
               {"name": "g", "input_schema": {"type": "object", "properties": {}}}])
    );
    assert!(body.get("tool_choice").is_none());
    for (choice, parallel, expected) in [
        (json!("auto"), None, json!({"type": "auto"})),
        (json!("required"), None, json!({"type": "any"})),
        (json!("none"), Some(false), json!({"type": "none"})),
        (
            json!({"type": "function", "function": {"name": "g"}}),
            Some(false),
            json!({"type": "tool", "name": "g", "disable_parallel_tool_use": true}),
        ),
        (Value::Null, Some(false), json!({"type": "auto", "disable_parallel_tool_use": true})),
    ] {
        let mut request =
            json!({"messages": [{"role": "user", "content": "q"}], "tools": tools, "tool_choice": choice});
        if let Some(parallel) = parallel {
            request["parallel_tool_calls"] = parallel.into();
        }
        assert_eq!(translate(request).unwrap()["tool_choice"], expected);
    }
}

#[test]
fn sampling_stop_user_and_structured_output_map() {
    let body = translate(json!({"messages": [{"role": "user", "content": "q"}], "temperature": 0.2, "top_p": 0.9,
        "stop": ["END", "STOP"], "user": "u-1", "seed": 7, "store": false,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": {"type": "object"}}}}))
    .unwrap();
    assert_eq!(body["temperature"], 0.2);
    assert_eq!(body["top_p"], 0.9);
    assert_eq!(body["stop_sequences"], json!(["END", "STOP"]));
    assert_eq!(body["metadata"], json!({"user_id": "u-1"}));
    assert_eq!(body["output_config"], json!({"format": {"type": "json_schema", "schema": {"type": "object"}}}));
    assert!(body.get("seed").is_none() && body.get("store").is_none());

    let json_object =
        json!({"messages": [{"role": "user", "content": "q"}], "response_format": {"type": "json_object"}});
    let error = translate(json_object.clone()).unwrap_err();
    assert_eq!(
        (error.code, error.status, error.param.as_deref()),
        (ErrorCode::UnsupportedParameter, 400, Some("response_format"))
    );
    let lenient = AnthropicMessages::new(&DialectOptions { drop_unsupported: true, ..DialectOptions::default() });
    assert!(translate_with(&lenient, json_object).unwrap().get("output_config").is_none());
}

#[test]
fn reasoning_effort_becomes_a_thinking_budget() {
    let body =
        translate(json!({"messages": [{"role": "user", "content": "q"}], "reasoning_effort": "medium"})).unwrap();
    assert_eq!(body["thinking"], json!({"type": "enabled", "budget_tokens": 8192}));
    assert_eq!(body["max_tokens"], 4096 + 8192);

    let body = translate(json!({"messages": [{"role": "user", "content": "q"}], "reasoning_effort": "high", "max_completion_tokens": 5000})).unwrap();
    assert_eq!(body["thinking"]["budget_tokens"], 4999);
    assert_eq!(body["max_tokens"], 5000);

    let body = translate(json!({"messages": [{"role": "user", "content": "q"}], "reasoning_effort": "none"})).unwrap();
    assert!(body.get("thinking").is_none());

    let error = translate(
        json!({"messages": [{"role": "user", "content": "q"}], "reasoning_effort": "low", "max_tokens": 500}),
    )
    .unwrap_err();
    assert_eq!(error.param.as_deref(), Some("reasoning_effort"));

    let tool_loop = translate(json!({"reasoning_effort": "low", "messages": [
        {"role": "user", "content": "q"},
        {"role": "assistant", "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "t", "content": "r"}]}))
    .unwrap();
    assert!(tool_loop.get("thinking").is_none());
}

#[test]
fn a_message_with_text_thinking_and_tools_translates() {
    let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[
        {"type":"thinking","thinking":"hmm","signature":"sig"},
        {"type":"redacted_thinking","data":"xyz"},
        {"type":"text","text":"Let me "},{"type":"text","text":"check."},
        {"type":"tool_use","id":"toolu_1","name":"f","input":{"a":1}},
        {"type":"tool_use","id":"toolu_2","name":"g","input":{}}],
        "stop_reason":"tool_use","usage":{"input_tokens":10,"cache_read_input_tokens":5,"cache_creation_input_tokens":2,"output_tokens":7}}"#;
    let translated = dialect().translate_response(Bytes::from_static(body), &ctx(false)).unwrap();
    let json: Value = serde_json::from_slice(&translated.body).unwrap();
    assert_eq!(json["id"], "msg_1");
    assert_eq!(json["model"], "claude-x");
    assert_eq!(json["created"], 42);
    let message = &json["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check.");
    assert_eq!(message["reasoning_content"], "hmm");
    assert_eq!(message["tool_calls"][0]["function"], json!({"name": "f", "arguments": "{\"a\":1}"}));
    assert_eq!(message["tool_calls"][1]["function"]["arguments"], "{}");
    assert_eq!(json["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(json["usage"]["prompt_tokens"], 17);
    assert_eq!(json["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    assert_eq!(
        translated.usage(),
        Some(Usage { prompt_tokens: 17, completion_tokens: 7, cached_tokens: 5, reasoning_tokens: 0 })
    );
}

#[test]
fn stop_reasons_map_to_openai_finish_reasons() {
    for (stop, expected) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        assert_eq!(finish_reason(Some(stop)), expected);
    }
}

#[test]
fn errors_map_overload_and_rate_limits_and_keep_other_statuses() {
    let body =
        |kind: &str| Bytes::from(format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"m-{kind}"}}}}"#));
    let overloaded = dialect().translate_error(529, &body("overloaded_error"));
    assert_eq!((overloaded.code, overloaded.status), (ErrorCode::UpstreamOverloaded, 503));
    assert_eq!(overloaded.message, "m-overloaded_error");
    assert!(overloaded.passthrough_body.is_none());
    let limited = dialect().translate_error(429, &body("rate_limit_error"));
    assert_eq!((limited.code, limited.status), (ErrorCode::UpstreamRateLimited, 429));
    let auth = dialect().translate_error(401, &body("authentication_error"));
    assert_eq!((auth.code, auth.status), (ErrorCode::UpstreamHttpError, 401));
    let odd = dialect().translate_error(500, &Bytes::from_static(b"{\"unexpected\":true}"));
    assert_eq!((odd.code, odd.status), (ErrorCode::UpstreamHttpError, 500));
}

const TOOL_STREAM: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_s\",\"model\":\"claude-s\",\"usage\":{\"input_tokens\":9,\"cache_read_input_tokens\":1,\"output_tokens\":1}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"plan\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srv\",\"name\":\"web_search\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"q\\\":1}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_a\",\"name\":\"f\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"2}\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":4,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_b\",\"name\":\"g\",\"input\":{}}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":4,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":4}\n\n\
event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":30}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

#[test]
fn a_stream_with_thinking_text_and_tools_translates() {
    let (events, result) = run_stream(TOOL_STREAM, true);
    result.unwrap();
    assert!(events
        .iter()
        .filter(|e| e.is_object())
        .all(|e| e["id"] == "msg_s" && e["model"] == "claude-s" && e["created"] == 42));
    let deltas: Vec<&Value> = events.iter().filter_map(|e| e["choices"].get(0)).map(|c| &c["delta"]).collect();
    assert_eq!(deltas[0], &json!({"role": "assistant", "reasoning_content": "plan"}));
    assert_eq!(deltas[1], &json!({"content": "Hi"}));
    assert_eq!(
        deltas[2]["tool_calls"][0],
        json!({"index": 0, "id": "toolu_a", "type": "function", "function": {"name": "f", "arguments": ""}})
    );
    assert_eq!(deltas[3]["tool_calls"][0], json!({"index": 0, "function": {"arguments": "{\"a\":"}}));
    assert_eq!(deltas[4]["tool_calls"][0]["function"]["arguments"], "2}");
    assert_eq!(deltas[5]["tool_calls"][0]["index"], 1);
    assert_eq!(deltas[6]["tool_calls"][0], json!({"index": 1, "function": {"arguments": "{}"}}));
    let finish = &events[events.len() - 3];
    assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
    let usage = &events[events.len() - 2];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 10);
    assert_eq!(usage["usage"]["completion_tokens"], 30);
    assert_eq!(events.last().unwrap(), &Value::String("[DONE]".into()));
}

#[test]
fn no_usage_chunk_unless_asked() {
    let (events, result) = run_stream(TOOL_STREAM, false);
    result.unwrap();
    assert_eq!(events[events.len() - 2]["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn a_stream_without_message_stop_is_truncated() {
    let cut = TOOL_STREAM.split("event: message_delta").next().unwrap();
    let (_, result) = run_stream(cut, false);
    assert_eq!(result.unwrap_err().code, ErrorCode::UpstreamStreamTruncated);
}

#[test]
fn an_error_event_fails_the_stream_with_its_class() {
    for (kind, code) in [
        ("overloaded_error", ErrorCode::UpstreamOverloaded),
        ("rate_limit_error", ErrorCode::UpstreamRateLimited),
        ("api_error", ErrorCode::UpstreamStreamError),
    ] {
        let input = format!(
            "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"m\",\"model\":\"c\"}}}}\n\n\
             event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"Overloaded\"}}}}\n\n"
        );
        let (_, result) = run_stream(&input, false);
        let error = result.unwrap_err();
        assert_eq!(error.code, code);
        assert!(error.message.contains("Overloaded"));
    }
}

#[test]
fn a_2xx_body_that_is_not_a_message_is_an_invalid_response() {
    for body in [r#"{"hello":"world"}"#, r#"{"type":"error","error":{"type":"api_error","message":"x"}}"#] {
        let error = dialect().translate_response(Bytes::from(body), &ctx(false)).unwrap_err();
        assert_eq!(error.code, ErrorCode::UpstreamInvalidResponse, "{body}");
    }
    let empty = br#"{"id":"msg_1","type":"message","content":[],"stop_reason":"end_turn"}"#;
    assert!(dialect().translate_response(Bytes::from_static(empty), &ctx(false)).is_ok());
}

#[test]
fn garbage_in_a_stream_is_an_invalid_response() {
    let (_, result) = run_stream("data: {not json}\n\n", false);
    assert_eq!(result.unwrap_err().code, ErrorCode::UpstreamInvalidResponse);
}
