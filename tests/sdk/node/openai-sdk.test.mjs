// The official `openai` Node SDK against a running Switchyard relay (run with `node --test`).
//
// Expected values come from the documented behaviour of the relay's built-in `mock` upstream:
//   * text reply: "Hello from the Switchyard mock upstream. You said: <last user message>"
//   * tool call: first tool (or the one named by tool_choice), id `call_mock_0`, arguments with every
//     required parameter set to "mock"
//   * after a `tool` message: "Tool result received: <tool message content>"
//   * usage: prompt = words across all message contents, completion = words in the reply

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import OpenAI from 'openai';

import { FAULT_CODE, FAULT_UPSTREAM, MOCK_TARGET_MODEL, MOCK_UPSTREAM, startRelay } from './harness.mjs';

const USER_TEXT = 'Say hello to the SDK conformance suite';
const EXPECTED_REPLY = `Hello from the Switchyard mock upstream. You said: ${USER_TEXT}`;

const WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather for a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['c', 'f'] } },
      required: ['city'],
    },
  },
};
const TIME_TOOL = {
  type: 'function',
  function: {
    name: 'get_time',
    description: 'Current time in a zone',
    parameters: {
      type: 'object',
      properties: { zone: { type: 'string' }, format: { type: 'string' } },
      required: ['zone', 'format'],
    },
  },
};
const STRICT_WEATHER_TOOL = {
  type: 'function',
  function: {
    name: 'get_weather_strict',
    description: "Current weather for a city (strict schema, needed by the SDK's parsing stream helper)",
    strict: true,
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' } },
      required: ['city'],
      additionalProperties: false,
    },
  },
};
const NOARGS_TOOL = {
  type: 'function',
  function: { name: 'ping', description: 'No arguments', parameters: { type: 'object', properties: {} } },
};

const words = (...texts) => texts.reduce((n, t) => n + t.split(/\s+/).filter(Boolean).length, 0);
const user = (text = USER_TEXT) => [{ role: 'user', content: text }];

async function collect(stream) {
  const out = [];
  for await (const chunk of stream) out.push(chunk);
  return out;
}
const streamText = (chunks) =>
  chunks
    .filter((c) => c.choices.length)
    .map((c) => c.choices[0].delta.content ?? '')
    .join('');
const finishReasons = (chunks) =>
  chunks.filter((c) => c.choices.length && c.choices[0].finish_reason).map((c) => c.choices[0].finish_reason);

/** `fn` must reject with `Cls` and HTTP `status`, and never with a connection error. */
async function expectStatusError(fn, Cls, status) {
  let err;
  try {
    await fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err !== undefined, `expected ${Cls.name} (HTTP ${status}), but the call succeeded`);
  assert.ok(
    !(err instanceof OpenAI.APIConnectionError),
    `got ${err?.constructor?.name} instead of HTTP ${status}: ${err?.message} (cause: ${err?.cause?.message ?? err?.cause})`,
  );
  assert.ok(
    err instanceof Cls,
    `expected ${Cls.name} (HTTP ${status}), got ${err?.constructor?.name} status=${err?.status}: ${err?.message}`,
  );
  assert.equal(err.status, status, `expected HTTP ${status}, got ${err.status}: ${JSON.stringify(err.error)}`);
  return err;
}

describe('openai Node SDK against switchyard', () => {
  let relay;
  let client;
  let badKeyClient;

  before(async () => {
    relay = await startRelay();
    client = new OpenAI({ baseURL: relay.baseURL, apiKey: relay.apiKey, maxRetries: 0, timeout: 20_000 });
    badKeyClient = new OpenAI({
      baseURL: relay.baseURL,
      apiKey: 'sk-definitely-not-a-relay-key',
      maxRetries: 0,
      timeout: 20_000,
    });
  });

  after(async () => {
    await relay?.stop();
  });

  // Wrap each test so that a failure also shows the tail of the relay's log.
  const rtest = (name, fn) =>
    test(name, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        if (relay && e && typeof e === 'object') {
          try {
            e.message = `${e.message}\n--- switchyard relay log (tail) ---\n${relay.logTail(40)}`;
          } catch {
            /* read-only message: leave it */
          }
        }
        throw e;
      }
    });

  // ------------------------------------------------------------ chat, non-stream

  rtest('chat non-stream', async () => {
    const completion = await client.chat.completions.create({ model: 'mock', messages: user() });
    assert.equal(completion.object, 'chat.completion');
    assert.ok(completion.id, 'completion id must be non-empty');
    assert.equal(completion.model, MOCK_TARGET_MODEL);
    assert.equal(completion.choices.length, 1);
    const choice = completion.choices[0];
    assert.equal(choice.index, 0);
    assert.equal(choice.finish_reason, 'stop');
    assert.equal(choice.message.role, 'assistant');
    assert.equal(choice.message.content, EXPECTED_REPLY);
    assert.ok(!choice.message.tool_calls?.length);
    assert.deepEqual(
      {
        prompt_tokens: completion.usage.prompt_tokens,
        completion_tokens: completion.usage.completion_tokens,
        total_tokens: completion.usage.total_tokens,
      },
      {
        prompt_tokens: words(USER_TEXT),
        completion_tokens: words(EXPECTED_REPLY),
        total_tokens: words(USER_TEXT) + words(EXPECTED_REPLY),
      },
    );
  });

  rtest('chat non-stream answers the last user message and counts all contents', async () => {
    const messages = [
      { role: 'system', content: 'You are terse.' },
      { role: 'user', content: 'first question here' },
      { role: 'assistant', content: 'first answer' },
      { role: 'user', content: 'second question' },
    ];
    const completion = await client.chat.completions.create({ model: 'mock', messages });
    const reply = 'Hello from the Switchyard mock upstream. You said: second question';
    assert.equal(completion.choices[0].message.content, reply);
    assert.equal(completion.usage.prompt_tokens, words(...messages.map((m) => m.content)));
    assert.equal(completion.usage.completion_tokens, words(reply));
  });

  // ------------------------------------------------------------ chat, stream

  rtest('chat stream text with include_usage', async () => {
    const stream = await client.chat.completions.create({
      model: 'mock',
      messages: user(),
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = await collect(stream);
    assert.ok(chunks.length > 0, 'stream produced no chunks');
    for (const c of chunks) {
      assert.equal(c.object, 'chat.completion.chunk');
      assert.equal(c.model, MOCK_TARGET_MODEL);
    }
    const contentChunks = chunks.filter((c) => c.choices.length);
    assert.ok(contentChunks.length >= 3, `expected several content chunks, got ${contentChunks.length}`);
    assert.equal(contentChunks[0].choices[0].delta.role, 'assistant');
    assert.equal(streamText(chunks), EXPECTED_REPLY);
    assert.deepEqual(finishReasons(chunks), ['stop']);
    assert.equal(contentChunks.at(-1).choices[0].finish_reason, 'stop');

    const usageChunks = chunks.filter((c) => c.usage);
    assert.equal(usageChunks.length, 1, `exactly one usage chunk expected, got ${usageChunks.length}`);
    const last = chunks.at(-1);
    assert.equal(usageChunks[0], last, 'usage chunk must be the last chunk');
    assert.deepEqual(last.choices, []);
    assert.equal(last.usage.prompt_tokens, words(USER_TEXT));
    assert.equal(last.usage.completion_tokens, words(EXPECTED_REPLY));
    assert.equal(last.usage.total_tokens, words(USER_TEXT) + words(EXPECTED_REPLY));
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'all chunks of one stream share one id');
  });

  rtest('chat stream without include_usage has no usage chunk', async () => {
    const chunks = await collect(await client.chat.completions.create({ model: 'mock', messages: user(), stream: true }));
    assert.equal(streamText(chunks), EXPECTED_REPLY);
    assert.ok(
      chunks.every((c) => c.usage == null),
      'usage chunk sent although include_usage was not requested',
    );
    assert.ok(
      chunks.every((c) => c.choices.length),
      'a chunk with empty choices was sent without include_usage',
    );
  });

  rtest('chat stream helper (.stream / finalChatCompletion)', async () => {
    const runner = client.chat.completions.stream({
      model: 'mock',
      messages: user(),
      stream_options: { include_usage: true },
    });
    const deltas = [];
    runner.on('content', (delta) => deltas.push(delta));
    const final = await runner.finalChatCompletion();
    assert.equal(deltas.join(''), EXPECTED_REPLY);
    assert.equal(final.choices[0].message.content, EXPECTED_REPLY);
    assert.equal(final.choices[0].finish_reason, 'stop');
    assert.equal(await runner.finalContent(), EXPECTED_REPLY);
  });

  // ------------------------------------------------------------ tools

  rtest('tool call non-stream', async () => {
    const completion = await client.chat.completions.create({
      model: 'mock',
      messages: user('What is the weather in Paris?'),
      tools: [WEATHER_TOOL, TIME_TOOL],
    });
    const choice = completion.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls');
    assert.equal(choice.message.tool_calls?.length, 1);
    const call = choice.message.tool_calls[0];
    assert.equal(call.id, 'call_mock_0');
    assert.equal(call.type, 'function');
    assert.equal(call.function.name, 'get_weather');
    assert.deepEqual(JSON.parse(call.function.arguments), { city: 'mock' });
  });

  rtest('tool call respects a named tool_choice', async () => {
    const completion = await client.chat.completions.create({
      model: 'mock',
      messages: user('What time is it?'),
      tools: [WEATHER_TOOL, TIME_TOOL],
      tool_choice: { type: 'function', function: { name: 'get_time' } },
    });
    assert.equal(completion.choices[0].finish_reason, 'tool_calls');
    const call = completion.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'get_time');
    assert.deepEqual(JSON.parse(call.function.arguments), { zone: 'mock', format: 'mock' });
  });

  rtest('tool call without required params has {} arguments', async () => {
    const completion = await client.chat.completions.create({ model: 'mock', messages: user('ping'), tools: [NOARGS_TOOL] });
    const call = completion.choices[0].message.tool_calls[0];
    assert.equal(call.function.name, 'ping');
    assert.deepEqual(JSON.parse(call.function.arguments), {});
  });

  rtest('tool_choice "none" answers with text', async () => {
    const completion = await client.chat.completions.create({
      model: 'mock',
      messages: user(),
      tools: [WEATHER_TOOL],
      tool_choice: 'none',
    });
    assert.equal(completion.choices[0].finish_reason, 'stop');
    assert.equal(completion.choices[0].message.content, EXPECTED_REPLY);
    assert.ok(!completion.choices[0].message.tool_calls?.length);
  });

  rtest('tool call stream', async () => {
    const chunks = await collect(
      await client.chat.completions.create({
        model: 'mock',
        messages: user('What is the weather in Paris?'),
        tools: [WEATHER_TOOL, TIME_TOOL],
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const toolDeltas = chunks.flatMap((c) => (c.choices.length ? (c.choices[0].delta.tool_calls ?? []) : []));
    assert.ok(toolDeltas.length >= 3, `expected id/name delta plus 2+ argument pieces, got ${toolDeltas.length}`);
    assert.ok(toolDeltas.every((tc) => tc.index === 0));
    assert.equal(toolDeltas[0].id, 'call_mock_0');
    assert.equal(toolDeltas[0].function?.name, 'get_weather');
    assert.ok(toolDeltas.slice(1).every((tc) => tc.id == null || tc.id === 'call_mock_0'));
    const argPieces = toolDeltas.map((tc) => tc.function?.arguments).filter(Boolean);
    assert.ok(argPieces.length >= 2, `arguments should arrive in 2+ pieces, got ${JSON.stringify(argPieces)}`);
    assert.equal(toolDeltas.map((tc) => tc.function?.name ?? '').join(''), 'get_weather');
    assert.deepEqual(JSON.parse(argPieces.join('')), { city: 'mock' });
    assert.deepEqual(finishReasons(chunks), ['tool_calls']);
    assert.ok(chunks.at(-1).usage, 'usage chunk missing at the end');
    assert.deepEqual(chunks.at(-1).choices, []);
  });

  rtest('tool call stream helper accumulates and parses arguments', async () => {
    const runner = client.chat.completions.stream({
      model: 'mock',
      messages: user('weather?'),
      tools: [STRICT_WEATHER_TOOL],
    });
    const done = [];
    runner.on('tool_calls.function.arguments.done', (e) => done.push(e));
    const final = await runner.finalChatCompletion();
    const msg = final.choices[0].message;
    assert.equal(final.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.tool_calls.length, 1);
    assert.equal(msg.tool_calls[0].id, 'call_mock_0');
    assert.equal(msg.tool_calls[0].function.name, 'get_weather_strict');
    assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'mock' });
    assert.deepEqual(msg.tool_calls[0].function.parsed_arguments, { city: 'mock' });
    assert.equal(done.length, 1);
    assert.equal(done[0].name, 'get_weather_strict');
  });

  for (const streamFollowup of [false, true]) {
    rtest(`tool round trip (follow-up ${streamFollowup ? 'stream' : 'non-stream'})`, async () => {
      let messages = user('What is the weather in Paris?');
      const first = await client.chat.completions.create({ model: 'mock', messages, tools: [WEATHER_TOOL] });
      assert.equal(first.choices[0].finish_reason, 'tool_calls');
      const call = first.choices[0].message.tool_calls[0];
      const args = JSON.parse(call.function.arguments);
      const toolResult = `sunny, 21 C in ${args.city}`;
      messages = [...messages, first.choices[0].message, { role: 'tool', tool_call_id: call.id, content: toolResult }];
      const expected = `Tool result received: ${toolResult}`;
      if (streamFollowup) {
        const chunks = await collect(
          await client.chat.completions.create({ model: 'mock', messages, tools: [WEATHER_TOOL], stream: true }),
        );
        assert.equal(streamText(chunks), expected);
        assert.deepEqual(finishReasons(chunks), ['stop']);
        assert.ok(!chunks.some((c) => c.choices.length && c.choices[0].delta.tool_calls?.length));
      } else {
        const second = await client.chat.completions.create({ model: 'mock', messages, tools: [WEATHER_TOOL] });
        assert.equal(second.choices[0].finish_reason, 'stop');
        assert.equal(second.choices[0].message.content, expected);
        assert.ok(!second.choices[0].message.tool_calls?.length);
      }
    });
  }

  // ------------------------------------------------------------ models

  rtest('models.list() contains mock', async () => {
    const ids = [];
    for await (const m of client.models.list()) {
      assert.equal(m.object, 'model');
      ids.push(m.id);
    }
    assert.ok(ids.includes('mock'), `models.list() ids: ${JSON.stringify(ids)}`);
    assert.ok(ids.includes('broken'), `models.list() ids: ${JSON.stringify(ids)}`);
  });

  rtest('models.retrieve("mock")', async () => {
    const model = await client.models.retrieve('mock');
    assert.equal(model.id, 'mock');
    assert.equal(model.object, 'model');
  });

  rtest('models.retrieve of an unknown model is NotFoundError', async () => {
    const e = await expectStatusError(() => client.models.retrieve('no-such-model'), OpenAI.NotFoundError, 404);
    assert.equal(e.code, 'model_not_found');
  });

  // ------------------------------------------------------------ raw response / headers

  rtest('withResponse() exposes x-request-id and x-switchyard-upstream', async () => {
    const { data, response, request_id } = await client.chat.completions
      .create({ model: 'mock', messages: user() })
      .withResponse();
    assert.equal(response.status, 200);
    const rid = response.headers.get('x-request-id');
    assert.ok(rid, 'x-request-id header missing');
    assert.equal(request_id, rid);
    assert.equal(response.headers.get('x-switchyard-upstream'), MOCK_UPSTREAM);
    assert.equal(data.choices[0].message.content, EXPECTED_REPLY);
    assert.equal(data._request_id, rid);
  });

  rtest('a client-supplied x-request-id is echoed', async () => {
    const response = await client.chat.completions
      .create({ model: 'mock', messages: user() }, { headers: { 'x-request-id': 'sdk-conformance-req-42' } })
      .asResponse();
    await response.arrayBuffer();
    assert.equal(response.headers.get('x-request-id'), 'sdk-conformance-req-42');
  });

  rtest('withResponse() on a stream', async () => {
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'mock', messages: user(), stream: true })
      .withResponse();
    assert.ok(response.headers.get('x-request-id'));
    assert.equal(response.headers.get('x-switchyard-upstream'), MOCK_UPSTREAM);
    assert.ok((response.headers.get('content-type') ?? '').startsWith('text/event-stream'));
    assert.equal(streamText(await collect(stream)), EXPECTED_REPLY);
  });

  // ------------------------------------------------------------ errors

  rtest('bad key -> AuthenticationError 401 invalid_api_key', async () => {
    const e = await expectStatusError(
      () => badKeyClient.chat.completions.create({ model: 'mock', messages: user() }),
      OpenAI.AuthenticationError,
      401,
    );
    assert.equal(e.code, 'invalid_api_key');
    assert.ok(e.requestID, 'error responses carry x-request-id too');
    assert.equal(e.error?.request_id, e.requestID);
  });

  rtest('bad key on a stream -> AuthenticationError 401', async () => {
    const e = await expectStatusError(
      async () => collect(await badKeyClient.chat.completions.create({ model: 'mock', messages: user(), stream: true })),
      OpenAI.AuthenticationError,
      401,
    );
    assert.equal(e.code, 'invalid_api_key');
  });

  rtest('bad key on models.list() -> AuthenticationError 401', async () => {
    const e = await expectStatusError(() => badKeyClient.models.list(), OpenAI.AuthenticationError, 401);
    assert.equal(e.code, 'invalid_api_key');
  });

  rtest('unknown model -> NotFoundError 404 model_not_found', async () => {
    const e = await expectStatusError(
      () => client.chat.completions.create({ model: 'no-such-model', messages: user() }),
      OpenAI.NotFoundError,
      404,
    );
    assert.equal(e.code, 'model_not_found');
    assert.ok(e.requestID);
    assert.ok(e.error?.message, 'error body must have a message');
  });

  rtest('unknown model on a stream -> NotFoundError 404', async () => {
    const e = await expectStatusError(
      async () => collect(await client.chat.completions.create({ model: 'no-such-model', messages: user(), stream: true })),
      OpenAI.NotFoundError,
      404,
    );
    assert.equal(e.code, 'model_not_found');
  });

  rtest('broken upstream -> InternalServerError 503', async () => {
    const before = relay.fault.chatPosts;
    const e = await expectStatusError(
      () => client.chat.completions.create({ model: 'broken', messages: user() }),
      OpenAI.InternalServerError,
      503,
    );
    assert.ok(relay.fault.chatPosts > before, 'the relay never contacted the fault upstream');
    // Contract: an upstream JSON error passes through with its own status and body
    // (upstream_http_error); accept the relay's class name or the upstream's own code.
    assert.ok([FAULT_CODE, 'upstream_http_error'].includes(e.code), `unexpected error code ${e.code}: ${JSON.stringify(e.error)}`);
    assert.equal(e.headers.get('x-switchyard-upstream'), FAULT_UPSTREAM);
    assert.ok(e.requestID);
  });

  rtest('broken upstream on a stream -> InternalServerError 503', async () => {
    const before = relay.fault.chatPosts;
    const e = await expectStatusError(
      async () => collect(await client.chat.completions.create({ model: 'broken', messages: user(), stream: true })),
      OpenAI.InternalServerError,
      503,
    );
    assert.ok(relay.fault.chatPosts > before, 'the relay never contacted the fault upstream');
    assert.ok([FAULT_CODE, 'upstream_http_error'].includes(e.code), `unexpected error code ${e.code}: ${JSON.stringify(e.error)}`);
  });
});
