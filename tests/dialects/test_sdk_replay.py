"""Recorded upstream traffic replayed through the running relay and the official `openai` SDK.

For every case file `tests/dialects/cases/<dir>/<name>.json` (see the dialect brief: `fixture`,
`dialect`, `upstream_model`, `openai_request`, `request_expect`, `expected` / `expected_error`,
Azure's `dialect_options` and `expected_path`), one test:

  * a replay upstream (stdlib `ThreadingHTTPServer` on 127.0.0.1:0, one per session) answers with
    the fixture's recorded status, headers and body bytes (`body` as UTF-8, Bedrock's
    `body_base64` decoded). Stream bodies go out with chunked transfer encoding, cut into many
    pieces at case-seeded offsets (inside events, frames and UTF-8 sequences) with a flush and a
    pause after each, so the relay's stream decoders see split reads. The upstream each request
    is for is named by an `x-replay-case` header that the relay's config sets per upstream.
  * the real `switchyard` binary (SWITCHYARD_BIN or target/release/switchyard) runs once per
    session with one upstream and one model per case, `retry = { attempts = 1 }`.
  * the client sends `openai_request` (model = the case's model) with
    `client.chat.completions.create(**request)`, iterates streams and accumulates them as an SDK
    user does (content, `reasoning_content`, tool calls by index, finish_reason, the usage chunk)
    and compares with `expected`; `expected_error` cases must raise `openai.APIStatusError` with
    the expected status and `code` (never `APIConnectionError`). A recorded 200 stream that
    carries an in-band error must make the SDK raise rather than return a truncated answer: as an
    HTTP error when the relay sees the error before the stream starts (status and code checked),
    or as an in-band `APIError` while iterating (code checked; no HTTP status exists there).
  * the request the upstream received must contain `request_expect` (JSON subset: objects by key,
    arrays element-wise with equal length, numbers by value), go to the recorded path (and
    `expected_path` where the case gives one), carry the upstream's credentials in the dialect's
    header (SigV4 for Bedrock) and never the client's key.

Besides the case tests: `test_every_fixture_has_a_case` (each fixture directory with case files
has one case per recorded exchange; no request reached the replay upstream unrouted) and
`test_bedrock_mid_stream_exception_raises_in_band` (recorded text frames followed by the recorded
validationException frame: the in-band error path through the SDK, which no single fixture
reaches because the relay answers a stream that fails before its first event with an HTTP error).

The openai_chat fixtures have no case files (they are replayed byte for byte by
tests/openai_fixtures.rs), so that directory is not parametrized. Run: `.venv/bin/python -m pytest -q tests/dialects/test_sdk_replay.py`.
"""

from __future__ import annotations

import base64
import inspect
import json
import os
import random
import re
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import openai
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CASES_ROOT = REPO_ROOT / "tests" / "dialects" / "cases"
FIXTURES_ROOT = REPO_ROOT.parent / "shared" / "fixtures" / "upstream"
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "switchyard"

CASE_HEADER = "x-replay-case"
UPSTREAM_KEY = "test-key"
CLIENT_KEY = "sk-replay-client-not-for-upstreams"
AWS_ACCESS_KEY_ID = "AKIDREPLAYTEST"
AWS_SECRET_ACCESS_KEY = "replay-secret-access-key"
AWS_REGION = "us-east-1"

START_TIMEOUT_S = float(os.environ.get("REPLAY_START_TIMEOUT", "30"))
CLIENT_TIMEOUT_S = 30.0
# Pause after each piece of a stream body, long enough for the relay to read it on its own.
CHUNK_PAUSE_S = 0.003

# Recorded response headers not replayed: they describe the recorded framing, not the bytes
# replayed here, or the replay server sets them itself.
SKIPPED_HEADERS = {"content-length", "transfer-encoding", "content-encoding", "connection", "keep-alive",
                   "date", "server"}
STREAM_CONTENT_TYPES = ("text/event-stream", "application/x-ndjson", "application/vnd.amazon.eventstream")
# Recorded query parameters that say nothing about the relay's request: the Anthropic SDK's
# `beta=true` flag and redacted query-string keys (the relay sends keys in headers).
IGNORED_QUERY_PARAMS = {"beta", "key"}


def _base_path(dialect: str) -> str:
    """The path part of each dialect's real base URL (the relay appends its API paths)."""
    if dialect == "google-generative-ai":
        return "/v1beta"
    if dialect in ("openai-completions", "openai-responses", "github-copilot"):
        return "/v1"
    if dialect.startswith("azure-openai-"):
        return "/openai"
    if dialect == "openai-codex-responses":
        return "/backend-api"
    return ""  # anthropic-messages, ollama, bedrock-converse-stream


# --------------------------------------------------------------------------------------------
# Cases


@dataclass
class Case:
    id: str  # "<dir>/<file stem>", the test id
    path: Path
    data: dict
    fixture: dict
    name: str  # upstream and model name in the relay config (a valid TOML bare key)

    @property
    def dialect(self) -> str:
        return self.data["dialect"]

    @property
    def streaming(self) -> bool:
        return bool(self.data["openai_request"].get("stream"))


def _case_paths() -> list[Path]:
    return sorted(CASES_ROOT.glob("*/*.json"))


def _load_case(path: Path) -> Case:
    case_id = f"{path.parent.name}/{path.stem}"
    data = json.loads(path.read_text())
    fixture_path = FIXTURES_ROOT / data["fixture"]
    fixture = json.loads(fixture_path.read_text()) if fixture_path.is_file() else {}
    name = re.sub(r"[^A-Za-z0-9_-]", "_", f"{path.parent.name}__{path.stem}")
    return Case(case_id, path, data, fixture, name)


def _eventstream_frames(body: bytes) -> list[bytes]:
    """Splits a vnd.amazon.eventstream body into its frames (each starts with its total length)."""
    frames, offset = [], 0
    while offset < len(body):
        length = int.from_bytes(body[offset:offset + 4], "big")
        assert length >= 16 and offset + length <= len(body), f"bad eventstream frame at {offset}"
        frames.append(body[offset:offset + length])
        offset += length
    return frames


# Both halves are recorded bytes: a ConverseStream that streams text, cut before its
# `messageStop`, then the validationException frame of the exception fixture.
MID_STREAM_BASE = "bedrock/stream_text__pydantic-ai__test_bedrock_model_stream-0"
MID_STREAM_EXCEPTION = (
    "bedrock/stream_exception_event__req_llm-agentjido__amazon_nova_lite_v1_0__converse_stream_validation_exception"
)
MID_STREAM_ID = "synthetic/bedrock_mid_stream_validation_exception"


def _mid_stream_exception_case() -> Case:
    base = _load_case(CASES_ROOT / f"{MID_STREAM_BASE}.json")
    exception = _load_case(CASES_ROOT / f"{MID_STREAM_EXCEPTION}.json")
    frames = _eventstream_frames(base64.b64decode(base.fixture["response"]["body_base64"]))
    views = base.fixture["response"]["body_decoded_eventstream"]
    assert len(frames) == len(views)
    stop = next(i for i, v in enumerate(views) if v["headers"].get(":event-type") == "messageStop")
    assert any(v["headers"].get(":event-type") == "contentBlockDelta" for v in views[:stop]), "no text before the cut"
    body = b"".join(frames[:stop]) + base64.b64decode(exception.fixture["response"]["body_base64"])
    fixture = json.loads(json.dumps(base.fixture))
    fixture["response"]["body_base64"] = base64.b64encode(body).decode()
    data = json.loads(json.dumps(base.data))
    data.pop("expected")
    data["expected_error"] = dict(exception.data["expected_error"])
    return Case(MID_STREAM_ID, base.path, data, fixture, "synthetic__bedrock_mid_stream_validation_exception")


CASE_PATHS = _case_paths()
CASE_IDS = [f"{p.parent.name}/{p.stem}" for p in CASE_PATHS]
CASE_PARAMS = [pytest.param(case_id, id=case_id) for case_id in CASE_IDS]


# --------------------------------------------------------------------------------------------
# Replay upstream


@dataclass
class Received:
    method: str
    path: str  # path and query as sent
    headers: dict[str, str]  # lower-cased names; repeated headers joined with ", "
    body: bytes


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stream: bool
    seed: str


@dataclass
class ReplayState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    replies: dict[str, Reply] = field(default_factory=dict)
    received: dict[str, list[Received]] = field(default_factory=dict)
    stray: list[Received] = field(default_factory=list)

    def take(self, name: str) -> list[Received]:
        with self.lock:
            return list(self.received.get(name, []))

    def reset(self, name: str) -> None:
        with self.lock:
            self.received[name] = []


def _recorded_reply(case: Case) -> Reply:
    response = case.fixture["response"]
    if response.get("body_base64"):
        body = base64.b64decode(response["body_base64"])
    elif isinstance(response.get("body"), str):
        body = response["body"].encode("utf-8")
    elif response.get("body") is not None:
        body = json.dumps(response["body"]).encode("utf-8")
    else:
        body = b""
    headers: list[tuple[str, str]] = []
    content_type = None
    for name, value in (response.get("headers") or {}).items():
        if name.lower() in SKIPPED_HEADERS:
            continue
        for one in value if isinstance(value, list) else [value]:
            if name.lower() == "content-type":
                content_type = one
            headers.append((name, str(one)))
    if content_type is None or "REDACTED" in content_type:
        headers = [(n, v) for n, v in headers if n.lower() != "content-type"]
        content_type = _infer_content_type(body, response)
        headers.append(("Content-Type", content_type))
    status = int(response["status"])
    stream = 200 <= status < 300 and (
        bool(case.fixture.get("stream")) or content_type.split(";")[0].strip().lower() in STREAM_CONTENT_TYPES
    )
    return Reply(status, headers, body, stream, case.id)


def _infer_content_type(body: bytes, response: dict) -> str:
    if response.get("body_base64"):
        return "application/vnd.amazon.eventstream"
    text = body.decode("utf-8", "replace").lstrip()
    if text.startswith(("data:", "event:")):
        return "text/event-stream"
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) > 1:
        return "application/x-ndjson"
    return "application/json"


def _pieces(body: bytes, seed: str) -> list[bytes]:
    """Cuts a stream body at reproducible offsets: a 1-byte first piece, then random cuts."""
    if len(body) < 2:
        return [body]
    rng = random.Random(seed)
    count = min(len(body) - 1, 24)
    cuts = sorted({1, *rng.sample(range(1, len(body)), count)})
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(body[last:cut])
        last = cut
    pieces.append(body[last:])
    return [p for p in pieces if p]


def _make_handler(state: ReplayState):
    class ReplayHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep pytest output clean
            pass

        def setup(self):
            super().setup()
            # Small writes must leave at once, not wait for the peer's delayed ACK.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _read_body(self) -> bytes:
            if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                out = bytearray()
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return bytes(out)
                    out += self.rfile.read(size)
                    self.rfile.readline()
            length = int(self.headers.get("content-length") or 0)
            return self.rfile.read(length) if length else b""

        def _handle(self):
            body = self._read_body()
            headers: dict[str, str] = {}
            for name, value in self.headers.items():
                key = name.lower()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
            received = Received(self.command, self.path, headers, body)
            name = headers.get(CASE_HEADER, "")
            with state.lock:
                reply = state.replies.get(name)
                if reply is None:
                    state.stray.append(received)
                else:
                    state.received.setdefault(name, []).append(received)
            if reply is None:
                self._send(404, [("Content-Type", "application/json")],
                           json.dumps({"error": {"message": f"replay upstream: no case {name!r}",
                                                 "type": "replay", "code": "replay_no_case"}}).encode())
                return
            if reply.stream:
                self._send_chunked(reply)
            else:
                self._send(reply.status, reply.headers, reply.body)

        def _send(self, status: int, headers: list[tuple[str, str]], body: bytes):
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def _send_chunked(self, reply: Reply):
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            for piece in _pieces(reply.body, reply.seed):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.flush()
                time.sleep(CHUNK_PAUSE_S)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        do_POST = _handle  # noqa: N815
        do_GET = _handle  # noqa: N815

    return ReplayHandler


# --------------------------------------------------------------------------------------------
# Relay


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(value) -> str:
    """A TOML value for a str/int/bool (JSON strings are valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"no TOML rendering for {value!r}")


def _config(cases: list[Case], replay_port: int) -> str:
    lines = [
        "# generated by tests/dialects/test_sdk_replay.py",
        "[server]",
        'shutdown_grace = "2s"',
        "",
    ]
    for case in cases:
        dialect = case.dialect
        lines += [
            f"[upstreams.{case.name}]",
            f"dialect = {_toml(dialect)}",
            f"base_url = {_toml(f'http://127.0.0.1:{replay_port}{_base_path(dialect)}')}",
            "retry = { attempts = 1 }",
            f"headers.set = {{ {_toml(CASE_HEADER)} = {_toml(case.name)} }}",
        ]
        if dialect == "bedrock-converse-stream":
            lines += [
                f"region = {_toml(AWS_REGION)}",
                'aws_access_key_id = "${REPLAY_AWS_ACCESS_KEY_ID}"',
                'aws_secret_access_key = "${REPLAY_AWS_SECRET_ACCESS_KEY}"',
            ]
        else:
            lines.append(f"api_key = {_toml(UPSTREAM_KEY)}")
        for key, value in (case.data.get("dialect_options") or {}).items():
            lines.append(f"{key} = {_toml(value)}")
        lines.append("")
    for case in cases:
        lines += [
            "[[models]]",
            f"name = {_toml(case.name)}",
            f"targets = [{{ upstream = {_toml(case.name)}, model = {_toml(case.data['upstream_model'])} }}]",
            "",
        ]
    return "\n".join(lines)


@dataclass
class Relay:
    base_url: str
    proc: subprocess.Popen
    log_path: Path

    def log_for(self, needle: str, n: int = 20) -> str:
        """The last log lines that mention `needle`, or the tail of the log."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"<could not read relay log: {e}>"
        return "\n".join([line for line in lines if needle in line][-n:] or lines[-n:])

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError as e:
            return f"<could not read relay log: {e}>"


def _relay_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.setdefault("SWITCHYARD_LOG", "info")
    env["REPLAY_AWS_ACCESS_KEY_ID"] = AWS_ACCESS_KEY_ID
    env["REPLAY_AWS_SECRET_ACCESS_KEY"] = AWS_SECRET_ACCESS_KEY
    return env


@pytest.fixture(scope="session")
def replay_env():
    """Starts the replay upstream and the relay; yields (state, relay, cases by id)."""
    env_bin = os.environ.get("SWITCHYARD_BIN")
    binary = Path(env_bin) if env_bin else DEFAULT_BIN
    if not binary.is_file() or not os.access(binary, os.X_OK):
        pytest.fail(f"switchyard binary not found at {binary} (set SWITCHYARD_BIN or run `cargo build --release`)",
                    pytrace=False)
    if not FIXTURES_ROOT.is_dir():
        pytest.fail(f"fixture directory {FIXTURES_ROOT} is missing", pytrace=False)

    cases = [_load_case(p) for p in CASE_PATHS]
    loadable = [c for c in cases if c.fixture]
    if all(c.fixture for c in cases if c.id in (MID_STREAM_BASE, MID_STREAM_EXCEPTION)):
        cases.append(_mid_stream_exception_case())
        loadable.append(cases[-1])

    state = ReplayState()
    for case in loadable:
        state.replies[case.name] = _recorded_reply(case)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="replay-upstream", daemon=True).start()

    tmp = tempfile.TemporaryDirectory(prefix="switchyard-sdk-replay-")
    tmpdir = Path(tmp.name)
    config_path = tmpdir / "switchyard.toml"
    config_path.write_text(_config(loadable, server.server_address[1]))
    env = _relay_env()

    def stop_server():
        server.shutdown()
        server.server_close()

    check = subprocess.run([str(binary), "check", "--config", str(config_path)], env=env,
                           capture_output=True, text=True, timeout=60)
    if check.returncode != 0:
        stop_server()
        tmp.cleanup()
        pytest.fail(f"`switchyard check` rejected the generated config (exit {check.returncode}):\n"
                    f"{check.stdout}\n{check.stderr}", pytrace=False)

    port = _free_port()
    log_path = tmpdir / "relay.log"
    log_file = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}", "--log-format", "json"],
        stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
    )
    relay = Relay(f"http://127.0.0.1:{port}/v1", proc, log_path)

    def teardown():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log_file.close()
        stop_server()
        tmp.cleanup()

    ready, last = None, "no attempt"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
                ready = json.loads(resp.read())
                break
        except urllib.error.HTTPError as e:
            last = f"HTTP {e.code}: {e.read()[:2000]!r}"
        except OSError as e:
            last = repr(e)
        time.sleep(0.1)
    if ready is None:
        out = relay.log_tail()
        teardown()
        pytest.fail(f"the relay never became ready (exit code {proc.poll()}, last /readyz: {last})\n"
                    f"--- check output ---\n{check.stdout}\n--- relay output ---\n{out}", pytrace=False)
    states = ready.get("upstreams") or {}
    disabled = {case.name: states.get(case.name, "<not listed>") for case in loadable
                if (states.get(case.name) or {}).get("state") != "enabled"}
    if disabled:
        out = relay.log_tail()
        teardown()
        pytest.fail(f"upstreams disabled by the relay: {json.dumps(disabled, indent=1)}\n"
                    f"--- check output ---\n{check.stdout}\n--- relay output ---\n{out}", pytrace=False)

    try:
        yield state, relay, {c.id: c for c in cases}
    finally:
        teardown()


@pytest.fixture(scope="session")
def client(replay_env):
    _, relay, _ = replay_env
    c = openai.OpenAI(base_url=relay.base_url, api_key=CLIENT_KEY, max_retries=0, timeout=CLIENT_TIMEOUT_S)
    yield c
    c.close()


@pytest.fixture
def relay_log_on_failure(replay_env):
    """Prints the tail of the relay's log when the test body fails (pytest shows it with the
    failure); a test module cannot hook pytest's reports itself."""
    _, relay, _ = replay_env

    class Guard:
        needle = ""

        def __enter__(self):
            return self

        def __exit__(self, exc_type, exc, tb):
            if exc_type is not None:
                print(f"--- switchyard relay log (this case) ---\n{relay.log_for(self.needle)}")
            return False

    return Guard()


# --------------------------------------------------------------------------------------------
# Checks


def subset_mismatch(expected, actual, path: str = "body") -> str | None:
    """Where `actual` fails to contain `expected`: objects by key, arrays element-wise with
    equal length, numbers by value (booleans are not numbers)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return f"{path}: expected an object, found {json.dumps(actual)}"
        for key, value in expected.items():
            if key not in actual:
                return f"{path}.{key} is missing"
            mismatch = subset_mismatch(value, actual[key], f"{path}.{key}")
            if mismatch:
                return mismatch
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{path}: expected an array, found {json.dumps(actual)}"
        if len(expected) != len(actual):
            return f"{path}: {len(expected)} elements expected, {len(actual)} found"
        for i, (want, have) in enumerate(zip(expected, actual)):
            mismatch = subset_mismatch(want, have, f"{path}[{i}]")
            if mismatch:
                return mismatch
        return None
    numeric = (int, float)
    if (isinstance(expected, numeric) and not isinstance(expected, bool)
            and isinstance(actual, numeric) and not isinstance(actual, bool)):
        return None if float(expected) == float(actual) else f"{path}: expected {expected}, found {actual}"
    if type(expected) is type(actual) and expected == actual:
        return None
    return f"{path}: expected {json.dumps(expected)}, found {json.dumps(actual)}"


def _check_upstream_request(case: Case, got: Received) -> None:
    request_expect = case.data.get("request_expect")
    recorded = case.fixture.get("request")
    base = _base_path(case.dialect)
    path, _, query = got.path.partition("?")
    assert path.startswith(base + "/"), f"upstream path {got.path!r} is outside the base path {base!r}"

    if request_expect is not None:
        try:
            body = json.loads(got.body)
        except ValueError:
            pytest.fail(f"the upstream request body is not JSON: {got.body[:500]!r}")
        mismatch = subset_mismatch(request_expect, body)
        assert mismatch is None, f"translated request differs: {mismatch}\nsent upstream: {json.dumps(body)[:4000]}"
        # The recorded request is comparable only where the case says its body is (request_expect
        # set) and the fixture was recorded from the wire.
        if recorded and recorded.get("path") and case.fixture.get("fidelity", "").startswith("recorded"):
            assert urllib.parse.unquote(path) == urllib.parse.unquote(recorded["path"]), (
                f"upstream path {path!r}, recorded {recorded['path']!r}")
            want = {k: v for k, v in urllib.parse.parse_qsl(recorded.get("query") or "")
                    if k not in IGNORED_QUERY_PARAMS}
            have = dict(urllib.parse.parse_qsl(query))
            assert {k: have.get(k) for k in want} == want, f"upstream query {query!r}, recorded {recorded.get('query')!r}"

    expected_path = case.data.get("expected_path")
    if expected_path:
        assert got.path == base + expected_path, f"upstream path {got.path!r}, expected {base + expected_path!r}"

    # Credentials: the upstream's, in the dialect's place; never the client's key.
    headers = got.headers
    for name, value in headers.items():
        assert CLIENT_KEY not in value, f"the client's key leaked upstream in {name}"
    dialect = case.dialect
    if dialect == "anthropic-messages":
        assert headers.get("x-api-key") == UPSTREAM_KEY, headers
        assert headers.get("anthropic-version"), "anthropic-version header missing"
    elif dialect == "google-generative-ai":
        assert headers.get("x-goog-api-key") == UPSTREAM_KEY, headers
    elif dialect.startswith("azure-openai-"):
        assert headers.get("api-key") == UPSTREAM_KEY, headers
    elif dialect == "bedrock-converse-stream":
        auth = headers.get("authorization", "")
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={AWS_ACCESS_KEY_ID}/"), f"not SigV4-signed: {auth!r}"
        assert f"/{AWS_REGION}/bedrock/aws4_request" in auth, auth
        assert headers.get("x-amz-date"), "x-amz-date header missing"
    else:
        assert headers.get("authorization") == f"Bearer {UPSTREAM_KEY}", headers


@dataclass
class ClientView:
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[dict] = field(default_factory=list)
    finish_reason: str | None = None
    usage: object = None


def _extra(obj, name: str):
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def _parse_arguments(raw: str, where: str):
    try:
        return json.loads(raw)
    except ValueError:
        pytest.fail(f"{where}: tool call arguments are not JSON: {raw!r}")


def _read_completion(completion) -> ClientView:
    assert completion.object == "chat.completion", completion
    assert completion.id and completion.model and completion.created, completion
    assert len(completion.choices) == 1, completion
    choice = completion.choices[0]
    message = choice.message
    assert message.role == "assistant", message
    calls = []
    for call in message.tool_calls or []:
        assert call.type == "function", call
        calls.append({"id": call.id, "name": call.function.name,
                      "arguments": _parse_arguments(call.function.arguments, "message")})
    return ClientView(message.content, _extra(message, "reasoning_content"), calls, choice.finish_reason,
                      completion.usage)


def _accumulate(stream, wants_usage: bool) -> ClientView:
    view = ClientView()
    calls: list[dict] = []
    identity = None
    first_delta = True
    for chunk in stream:
        assert chunk.object == "chat.completion.chunk", chunk
        this = (chunk.id, chunk.model, chunk.created)
        assert all(this), f"chunk identity missing: {chunk}"
        if identity is None:
            identity = this
        assert this == identity, f"every chunk carries the same id, model, created: {this} != {identity}"
        if not chunk.choices:
            assert wants_usage, f"a usage chunk the client did not ask for: {chunk}"
            assert chunk.usage is not None, f"a chunk with no choices and no usage: {chunk}"
            view.usage = chunk.usage
            continue
        assert view.usage is None, "the usage chunk comes last"
        choice = chunk.choices[0]
        delta = choice.delta
        if first_delta:
            assert delta.role == "assistant", f"the first delta carries the role: {chunk}"
            first_delta = False
        if delta.content is not None:
            view.content = (view.content or "") + delta.content
        reasoning = _extra(delta, "reasoning_content")
        if reasoning is not None:
            view.reasoning_content = (view.reasoning_content or "") + reasoning
        for call in delta.tool_calls or []:
            if call.index == len(calls):
                assert call.id, f"a new tool call has an id: {call}"
                assert call.type == "function", call
                assert call.function and call.function.name, f"a new tool call has a name: {call}"
                calls.append({"id": call.id, "name": call.function.name, "arguments": ""})
            assert call.index < len(calls), f"tool call indexes are dense and in order: {call}"
            if call.function and call.function.arguments:
                calls[call.index]["arguments"] += call.function.arguments
        if choice.finish_reason is not None:
            view.finish_reason = choice.finish_reason
    assert identity is not None, "the stream carried no chunk"
    if wants_usage:
        assert view.usage is not None, "the client asked for a usage chunk and got none"
    view.tool_calls = [{**c, "arguments": _parse_arguments(c["arguments"], "stream")} for c in calls]
    return view


def _compare(expected: dict, view: ClientView) -> None:
    if "content" in expected:
        assert view.content == expected["content"], f"content: got {view.content!r}, expected {expected['content']!r}"
    if "reasoning_content" in expected:
        assert view.reasoning_content == expected["reasoning_content"], (
            f"reasoning_content: got {view.reasoning_content!r}, expected {expected['reasoning_content']!r}")
    want_calls = expected.get("tool_calls") or []
    assert len(view.tool_calls) == len(want_calls), f"tool calls: got {view.tool_calls}, expected {want_calls}"
    for i, (have, want) in enumerate(zip(view.tool_calls, want_calls)):
        assert have["name"] == want["name"], f"tool call {i} name: got {have}, expected {want}"
        assert have["arguments"] == want["arguments"], f"tool call {i} arguments: got {have}, expected {want}"
        if want.get("id") is not None:
            assert have["id"] == want["id"], f"tool call {i} id: got {have['id']!r}, expected {want['id']!r}"
    if "finish_reason" in expected:
        assert view.finish_reason == expected["finish_reason"], (
            f"finish_reason: got {view.finish_reason!r}, expected {expected['finish_reason']!r}")
    if "usage" in expected:
        assert view.usage is not None, "no usage"
        for key in ("prompt_tokens", "completion_tokens"):
            if key in expected["usage"]:
                assert getattr(view.usage, key) == expected["usage"][key], (
                    f"usage.{key}: got {getattr(view.usage, key)}, expected {expected['usage'][key]} ({view.usage})")
        assert view.usage.total_tokens == view.usage.prompt_tokens + view.usage.completion_tokens, view.usage


_CREATE_PARAMS = set(inspect.signature(openai.resources.chat.Completions.create).parameters) - {
    "self", "extra_headers", "extra_query", "extra_body", "timeout"}


def _sdk_kwargs(case: Case) -> dict:
    """`openai_request` as create() kwargs; fields the SDK has no parameter for go in extra_body."""
    request = dict(case.data["openai_request"])
    request["model"] = case.name
    kwargs = {k: v for k, v in request.items() if k in _CREATE_PARAMS}
    extra = {k: v for k, v in request.items() if k not in _CREATE_PARAMS}
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _error_code(error: openai.APIError):
    if error.code is not None:
        return error.code
    return error.body.get("code") if isinstance(error.body, dict) else None


# --------------------------------------------------------------------------------------------
# Tests


@pytest.mark.parametrize("case_id", CASE_PARAMS)
def test_replay(case_id, replay_env, client, relay_log_on_failure):
    _, _, cases = replay_env
    relay_log_on_failure.needle = f'"model":"{cases[case_id].name}"'
    with relay_log_on_failure:
        _replay(cases[case_id], replay_env[0], client)


def _replay(case: Case, state: ReplayState, client: openai.OpenAI) -> None:
    stem = case.path.stem
    assert case.data["fixture"] == f"{case.path.parent.name}/{stem}.json", "a case file is named after its fixture"
    assert case.fixture, f"fixture {FIXTURES_ROOT / case.data['fixture']} is missing"
    assert ("expected" in case.data) != ("expected_error" in case.data), "expected xor expected_error"

    state.reset(case.name)
    kwargs = _sdk_kwargs(case)
    expected_error = case.data.get("expected_error")
    wants_usage = bool((case.data["openai_request"].get("stream_options") or {}).get("include_usage"))

    if expected_error is None:
        if case.streaming:
            view = _accumulate(client.chat.completions.create(**kwargs), wants_usage)
        else:
            view = _read_completion(client.chat.completions.create(**kwargs))
    else:
        with pytest.raises(openai.APIError) as raised:
            result = client.chat.completions.create(**kwargs)
            if case.streaming:
                chunks = list(result)
                pytest.fail(f"the stream ended without an error after {len(chunks)} chunks: {chunks[-3:]}")
            pytest.fail(f"no error raised; got {result}")
        error = raised.value
        assert not isinstance(error, openai.APIConnectionError), f"the relay dropped the connection: {error!r}"
        if isinstance(error, openai.APIStatusError):
            assert error.status_code == expected_error["status"], (
                f"status {error.status_code}, expected {expected_error['status']}; body {error.body}")
        else:
            # An in-band error inside a 200 stream: there is no HTTP status to compare.
            assert case.streaming and case.fixture["response"]["status"] == 200, (
                f"an in-band error for a case that is not a 200 stream: {error!r}")
        assert _error_code(error) == expected_error["code"], (
            f"code {_error_code(error)!r}, expected {expected_error['code']!r}; body {error.body}")
        assert isinstance(error.body, dict) and isinstance(error.body.get("message"), str) and error.body["message"], (
            f"not an OpenAI-shaped error: {error.body!r}")

    received = state.take(case.name)
    assert len(received) == 1, f"the upstream got {len(received)} requests, expected exactly one"
    _check_upstream_request(case, received[0])

    if expected_error is None:
        _compare(case.data["expected"], view)


def test_every_fixture_has_a_case(replay_env):
    """Each fixture directory that has case files has one case per recorded interaction, and no
    request reached the replay upstream without a case header."""
    state, _, _ = replay_env
    case_dirs = sorted(p.name for p in CASES_ROOT.iterdir() if p.is_dir())
    assert case_dirs, "no case directories"
    for name in case_dirs:
        fixtures = sorted(p.stem for p in (FIXTURES_ROOT / name).glob("*.json"))
        cases = sorted(p.stem for p in (CASES_ROOT / name).glob("*.json"))
        assert cases == fixtures, f"{name}: cases and fixtures differ: {set(cases) ^ set(fixtures)}"
    assert not state.stray, f"requests without a known case: {[(r.path, r.headers) for r in state.stray]}"


def test_bedrock_mid_stream_exception_raises_in_band(replay_env, client, relay_log_on_failure):
    """The exception frame arrives after text was streamed (HTTP 200 already sent): the SDK must
    raise an in-band `APIError` with the expected code while iterating, after the text chunks,
    instead of ending the stream quietly with a truncated answer."""
    state, _, cases = replay_env
    case = cases[MID_STREAM_ID]
    relay_log_on_failure.needle = f'"model":"{case.name}"'
    with relay_log_on_failure:
        state.reset(case.name)
        stream = client.chat.completions.create(**_sdk_kwargs(case))
        text = []
        with pytest.raises(openai.APIError) as raised:
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    text.append(chunk.choices[0].delta.content)
                assert not (chunk.choices and chunk.choices[0].finish_reason), f"a finish before the error: {chunk}"
        error = raised.value
        assert not isinstance(error, (openai.APIStatusError, openai.APIConnectionError)), repr(error)
        assert text, "no text reached the client before the error"
        assert _error_code(error) == case.data["expected_error"]["code"], f"body {error.body}"
        assert len(state.take(case.name)) == 1
