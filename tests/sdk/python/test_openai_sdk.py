"""The official `openai` Python SDK against a running Switchyard relay.

Expected values come from the documented behaviour of the relay's built-in `mock` upstream:
  * text reply: "Hello from the Switchyard mock upstream. You said: <last user message>"
  * tool call: first tool (or the one named by tool_choice), id `call_mock_0`, arguments with every
    required parameter set to "mock"
  * after a `tool` message: "Tool result received: <tool message content>"
  * usage: prompt = words across all message contents, completion = words in the reply
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import FAULT_CODE, FAULT_UPSTREAM, MOCK_TARGET_MODEL, MOCK_UPSTREAM

USER_TEXT = "Say hello to the SDK conformance suite"
EXPECTED_REPLY = f"Hello from the Switchyard mock upstream. You said: {USER_TEXT}"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["c", "f"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a zone",
        "parameters": {
            "type": "object",
            "properties": {"zone": {"type": "string"}, "format": {"type": "string"}},
            "required": ["zone", "format"],
        },
    },
}
STRICT_WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather_strict",
        "description": "Current weather for a city (strict schema, needed by the SDK's parsing stream helper)",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}
NOARGS_TOOL = {
    "type": "function",
    "function": {"name": "ping", "description": "No arguments", "parameters": {"type": "object", "properties": {}}},
}


def words(*texts: str) -> int:
    return sum(len(t.split()) for t in texts)


def user(text: str = USER_TEXT):
    return [{"role": "user", "content": text}]


def expect_status_error(call, exc_type, status):
    """Run `call`; it must raise `exc_type` with HTTP `status` and must not be a connection error."""
    try:
        call()
    except openai.APIConnectionError as e:  # the relay must answer, never drop the connection
        pytest.fail(f"got APIConnectionError instead of HTTP {status}: {e!r} (cause: {e.__cause__!r})")
    except exc_type as e:
        assert e.status_code == status, f"expected HTTP {status}, got {e.status_code}: {e.body!r}"
        return e
    except openai.APIStatusError as e:
        pytest.fail(f"expected {exc_type.__name__} (HTTP {status}), got {type(e).__name__} HTTP {e.status_code}: {e.body!r}")
    pytest.fail(f"expected {exc_type.__name__} (HTTP {status}), but the call succeeded")


# ---------------------------------------------------------------- chat, non-stream


def test_chat_non_stream(client):
    completion = client.chat.completions.create(model="mock", messages=user())
    assert completion.object == "chat.completion"
    assert completion.id, "completion id must be non-empty"
    assert completion.model == MOCK_TARGET_MODEL
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == EXPECTED_REPLY
    assert not choice.message.tool_calls
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == words(USER_TEXT)
    assert completion.usage.completion_tokens == words(EXPECTED_REPLY)
    assert completion.usage.total_tokens == words(USER_TEXT) + words(EXPECTED_REPLY)


def test_chat_non_stream_uses_last_user_message_and_counts_all_contents(client):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first question here"},
        {"role": "assistant", "content": "first answer"},
        {"role": "user", "content": "second question"},
    ]
    completion = client.chat.completions.create(model="mock", messages=messages)
    reply = "Hello from the Switchyard mock upstream. You said: second question"
    assert completion.choices[0].message.content == reply
    assert completion.usage.prompt_tokens == words(*(m["content"] for m in messages))
    assert completion.usage.completion_tokens == words(reply)


# ---------------------------------------------------------------- chat, stream


def test_chat_stream_text_with_usage(client):
    stream = client.chat.completions.create(
        model="mock", messages=user(), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks, "stream produced no chunks"
    for c in chunks:
        assert c.object == "chat.completion.chunk"
        assert c.model == MOCK_TARGET_MODEL

    content_chunks = [c for c in chunks if c.choices]
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(content_chunks) >= 3, f"expected several content chunks, got {len(content_chunks)}"

    assert content_chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text == EXPECTED_REPLY

    finish = [c.choices[0].finish_reason for c in content_chunks if c.choices[0].finish_reason]
    assert finish == ["stop"], f"exactly one finish_reason 'stop' expected, got {finish}"
    assert content_chunks[-1].choices[0].finish_reason == "stop"

    assert len(usage_chunks) == 1, f"exactly one usage chunk expected, got {len(usage_chunks)}"
    usage_chunk = usage_chunks[0]
    assert usage_chunk is chunks[-1], "usage chunk must be the last chunk"
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == words(USER_TEXT)
    assert usage_chunk.usage.completion_tokens == words(EXPECTED_REPLY)
    assert usage_chunk.usage.total_tokens == words(USER_TEXT) + words(EXPECTED_REPLY)
    assert len({c.id for c in chunks}) == 1, "all chunks of one stream share one id"


def test_chat_stream_without_include_usage_has_no_usage_chunk(client):
    stream = client.chat.completions.create(model="mock", messages=user(), stream=True)
    chunks = list(stream)
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert text == EXPECTED_REPLY
    assert all(c.usage is None for c in chunks), "usage chunk sent although include_usage was not requested"
    assert all(c.choices for c in chunks), "a chunk with empty choices was sent without include_usage"


def test_chat_stream_helper_final_completion(client):
    """The SDK's higher-level `.stream()` helper accumulates the same answer."""
    with client.chat.completions.stream(
        model="mock", messages=user(), stream_options={"include_usage": True}
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert "".join(deltas) == EXPECTED_REPLY
    assert final.choices[0].message.content == EXPECTED_REPLY
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.completion_tokens == words(EXPECTED_REPLY)


# ---------------------------------------------------------------- tools


def test_tool_call_non_stream(client):
    completion = client.chat.completions.create(
        model="mock", messages=user("What is the weather in Paris?"), tools=[WEATHER_TOOL, TIME_TOOL]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.id == "call_mock_0"
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}


def test_tool_call_respects_named_tool_choice(client):
    completion = client.chat.completions.create(
        model="mock",
        messages=user("What time is it?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments) == {"zone": "mock", "format": "mock"}


def test_tool_call_without_required_params_has_empty_object(client):
    completion = client.chat.completions.create(model="mock", messages=user("ping"), tools=[NOARGS_TOOL])
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "ping"
    assert json.loads(call.function.arguments) == {}


def test_tool_choice_none_answers_with_text(client):
    completion = client.chat.completions.create(
        model="mock", messages=user(), tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == EXPECTED_REPLY
    assert not completion.choices[0].message.tool_calls


def test_tool_call_stream(client):
    stream = client.chat.completions.create(
        model="mock",
        messages=user("What is the weather in Paris?"),
        tools=[WEATHER_TOOL, TIME_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    tool_deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(tool_deltas) >= 3, f"expected id/name delta plus 2+ argument pieces, got {len(tool_deltas)}"
    assert all(tc.index == 0 for tc in tool_deltas)
    first = tool_deltas[0]
    assert first.id == "call_mock_0"
    assert first.function is not None and first.function.name == "get_weather"
    assert all(tc.id in (None, "call_mock_0") for tc in tool_deltas[1:])
    arg_pieces = [tc.function.arguments for tc in tool_deltas if tc.function and tc.function.arguments]
    assert len(arg_pieces) >= 2, f"arguments should arrive in 2+ pieces, got {arg_pieces!r}"
    name = "".join(tc.function.name or "" for tc in tool_deltas if tc.function)
    assert name == "get_weather"
    assert json.loads("".join(arg_pieces)) == {"city": "mock"}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].choices == []


def test_tool_call_stream_helper_accumulates(client):
    with client.chat.completions.stream(
        model="mock", messages=user("weather?"), tools=[STRICT_WEATHER_TOOL]
    ) as stream:
        done_events = [e for e in stream if e.type == "tool_calls.function.arguments.done"]
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert len(msg.tool_calls) == 1
    assert msg.tool_calls[0].id == "call_mock_0"
    assert msg.tool_calls[0].function.name == "get_weather_strict"
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "mock"}
    assert msg.tool_calls[0].function.parsed_arguments == {"city": "mock"}
    assert len(done_events) == 1 and done_events[0].name == "get_weather_strict"


@pytest.mark.parametrize("stream_followup", [False, True], ids=["followup-non-stream", "followup-stream"])
def test_tool_round_trip(client, stream_followup):
    messages = user("What is the weather in Paris?")
    first = client.chat.completions.create(model="mock", messages=messages, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    args = json.loads(call.function.arguments)
    tool_result = f"sunny, 21 C in {args['city']}"

    messages = messages + [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": tool_result},
    ]
    expected = f"Tool result received: {tool_result}"
    if stream_followup:
        chunks = list(
            client.chat.completions.create(model="mock", messages=messages, tools=[WEATHER_TOOL], stream=True)
        )
        text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
        assert text == expected
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["stop"]
        assert not any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    else:
        second = client.chat.completions.create(model="mock", messages=messages, tools=[WEATHER_TOOL])
        assert second.choices[0].finish_reason == "stop"
        assert second.choices[0].message.content == expected
        assert not second.choices[0].message.tool_calls


# ---------------------------------------------------------------- models


def test_models_list_contains_mock(client):
    page = client.models.list()
    ids = [m.id for m in page]
    assert "mock" in ids, f"models.list() ids: {ids}"
    assert "broken" in ids, f"models.list() ids: {ids}"
    for m in page.data:
        assert m.object == "model"


def test_models_retrieve_mock(client):
    model = client.models.retrieve("mock")
    assert model.id == "mock"
    assert model.object == "model"


def test_models_retrieve_unknown_is_not_found(client):
    e = expect_status_error(lambda: client.models.retrieve("no-such-model"), openai.NotFoundError, 404)
    assert e.code == "model_not_found"


# ---------------------------------------------------------------- raw response / headers


def test_with_raw_response_exposes_relay_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="mock", messages=user())
    assert raw.status_code == 200
    request_id = raw.headers.get("x-request-id")
    assert request_id, "x-request-id header missing"
    assert raw.headers.get("x-switchyard-upstream") == MOCK_UPSTREAM
    completion = raw.parse()
    assert completion.choices[0].message.content == EXPECTED_REPLY
    assert completion._request_id == request_id


def test_client_request_id_is_echoed(client):
    raw = client.chat.completions.with_raw_response.create(
        model="mock", messages=user(), extra_headers={"x-request-id": "sdk-conformance-req-42"}
    )
    assert raw.headers.get("x-request-id") == "sdk-conformance-req-42"


def test_with_raw_response_on_stream(client):
    raw = client.chat.completions.with_raw_response.create(model="mock", messages=user(), stream=True)
    assert raw.headers.get("x-request-id")
    assert raw.headers.get("x-switchyard-upstream") == MOCK_UPSTREAM
    assert raw.headers.get("content-type", "").startswith("text/event-stream")
    text = "".join((c.choices[0].delta.content or "") for c in raw.parse() if c.choices)
    assert text == EXPECTED_REPLY


# ---------------------------------------------------------------- errors


def test_bad_key_is_authentication_error(bad_key_client):
    e = expect_status_error(
        lambda: bad_key_client.chat.completions.create(model="mock", messages=user()),
        openai.AuthenticationError,
        401,
    )
    assert e.code == "invalid_api_key"
    assert e.request_id, "error responses carry x-request-id too"
    assert isinstance(e.body, dict) and e.body.get("request_id") == e.request_id


def test_bad_key_stream_is_authentication_error(bad_key_client):
    e = expect_status_error(
        lambda: list(bad_key_client.chat.completions.create(model="mock", messages=user(), stream=True)),
        openai.AuthenticationError,
        401,
    )
    assert e.code == "invalid_api_key"


def test_bad_key_models_list_is_authentication_error(bad_key_client):
    e = expect_status_error(lambda: bad_key_client.models.list(), openai.AuthenticationError, 401)
    assert e.code == "invalid_api_key"


def test_unknown_model_is_not_found(client):
    e = expect_status_error(
        lambda: client.chat.completions.create(model="no-such-model", messages=user()),
        openai.NotFoundError,
        404,
    )
    assert e.code == "model_not_found"
    assert e.request_id
    assert isinstance(e.body, dict) and e.body.get("message"), "error body must have a message"


def test_unknown_model_stream_is_not_found(client):
    e = expect_status_error(
        lambda: list(client.chat.completions.create(model="no-such-model", messages=user(), stream=True)),
        openai.NotFoundError,
        404,
    )
    assert e.code == "model_not_found"


def test_broken_upstream_is_503_server_error(client, relay):
    before = relay.fault.chat_posts
    e = expect_status_error(
        lambda: client.chat.completions.create(model="broken", messages=user()),
        openai.InternalServerError,
        503,
    )
    assert relay.fault.chat_posts > before, "the relay never contacted the fault upstream"
    # Contract: an upstream JSON error passes through with its own status and body
    # (upstream_http_error); accept the relay's class name or the upstream's own code.
    assert e.code in (FAULT_CODE, "upstream_http_error"), f"unexpected error code {e.code!r}: {e.body!r}"
    assert e.response.headers.get("x-switchyard-upstream") == FAULT_UPSTREAM
    assert e.request_id


def test_broken_upstream_stream_is_503_server_error(client, relay):
    before = relay.fault.chat_posts
    e = expect_status_error(
        lambda: list(client.chat.completions.create(model="broken", messages=user(), stream=True)),
        openai.InternalServerError,
        503,
    )
    assert relay.fault.chat_posts > before, "the relay never contacted the fault upstream"
    assert e.code in (FAULT_CODE, "upstream_http_error"), f"unexpected error code {e.code!r}: {e.body!r}"
