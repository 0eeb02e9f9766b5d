"""Session fixtures for the Python SDK conformance suite.

Starts, once per test session:
  * a tiny "fault" upstream (stdlib ThreadingHTTPServer on 127.0.0.1:0) that answers
    POST /v1/chat/completions with 503 and an OpenAI-shaped JSON error body;
  * the real `switchyard` binary (SWITCHYARD_BIN or /work/main/target/release/switchyard)
    with a temporary TOML config: model `mock` -> built-in mock upstream, model `broken` ->
    an `openai-completions` upstream pointing at the fault server.

Nothing here is skipped: a missing binary, a relay that exits or never becomes healthy,
fails the session loudly with the relay's own output.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BIN = REPO_ROOT / "target" / "release" / "switchyard"

# Names used in the generated config; tests assert against them.
MOCK_UPSTREAM = "demo"
MOCK_TARGET_MODEL = "mock-1"
FAULT_UPSTREAM = "fault"
FAULT_CODE = "fault_injected"
FAULT_MESSAGE = "The fault upstream is unavailable (injected by the SDK conformance suite)."

_ACTIVE_RELAY = None  # set while the session relay runs; used for failure diagnostics

HEALTH_TIMEOUT_S = float(os.environ.get("SDK_TEST_HEALTH_TIMEOUT", "30"))


class _FaultState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.chat_posts = 0
        self.last_auth: str | None = None

    def record(self, auth: str | None) -> None:
        with self.lock:
            self.chat_posts += 1
            self.last_auth = auth


def _make_fault_handler(state: _FaultState):
    class FaultHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep pytest output clean
            pass

        def _send_json(self, status: int, obj: object) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            if self.path.rstrip("/") == "/v1/chat/completions":
                state.record(self.headers.get("authorization"))
                self._send_json(
                    503,
                    {
                        "error": {
                            "message": FAULT_MESSAGE,
                            "type": "server_error",
                            "param": None,
                            "code": FAULT_CODE,
                        }
                    },
                )
            else:
                self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error", "param": None, "code": None}})

        def do_GET(self):  # noqa: N802
            # /v1/models on the fault upstream (a relay may probe it); answer 503 too.
            self._send_json(503, {"error": {"message": FAULT_MESSAGE, "type": "server_error", "param": None, "code": FAULT_CODE}})

    return FaultHandler


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Relay:
    def __init__(self, base_url: str, api_key: str, fault: _FaultState, log_path: Path, proc: subprocess.Popen):
        self.base_url = base_url  # e.g. http://127.0.0.1:PORT/v1
        self.root_url = base_url[: -len("/v1")]
        self.api_key = api_key
        self.fault = fault
        self.log_path = log_path
        self.proc = proc

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError as e:
            return f"<could not read relay log: {e}>"
        return "\n".join(lines[-n:])


def _resolve_binary() -> Path:
    env_bin = os.environ.get("SWITCHYARD_BIN")
    path = Path(env_bin) if env_bin else DEFAULT_BIN
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"switchyard binary not found or not executable at {path} "
            f"(set SWITCHYARD_BIN or run `cargo build --release`)",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def relay():
    binary = _resolve_binary()

    fault_state = _FaultState()
    fault_server = ThreadingHTTPServer(("127.0.0.1", 0), _make_fault_handler(fault_state))
    fault_server.daemon_threads = True
    fault_port = fault_server.server_address[1]
    fault_thread = threading.Thread(target=fault_server.serve_forever, name="fault-upstream", daemon=True)
    fault_thread.start()

    key = "sk-sdk-" + secrets.token_hex(16)
    os.environ["SDK_TEST_KEY"] = key

    tmp = tempfile.TemporaryDirectory(prefix="switchyard-sdk-py-")
    tmpdir = Path(tmp.name)
    config_path = tmpdir / "switchyard.toml"
    config_path.write_text(
        f"""# generated by tests/sdk/python/conftest.py
[server]
shutdown_grace = "2s"

[[keys]]
name = "sdk-tests"
key = "${{SDK_TEST_KEY}}"
models = ["*"]

[upstreams.{MOCK_UPSTREAM}]
dialect = "mock"

[upstreams.{FAULT_UPSTREAM}]
dialect = "openai-completions"
base_url = "http://127.0.0.1:{fault_port}/v1"
api_key = "sk-fault-upstream"

[[models]]
name = "mock"
targets = [{{ upstream = "{MOCK_UPSTREAM}", model = "{MOCK_TARGET_MODEL}" }}]

[[models]]
name = "broken"
targets = [{{ upstream = "{FAULT_UPSTREAM}", model = "broken-1" }}]
"""
    )

    port = _free_port()
    log_path = tmpdir / "relay.log"
    log_file = open(log_path, "wb")
    env = dict(os.environ)
    env["SDK_TEST_KEY"] = key
    env.setdefault("SWITCHYARD_LOG", "info")
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(config_path), "--listen", f"127.0.0.1:{port}"],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    r = Relay(f"http://127.0.0.1:{port}/v1", key, fault_state, log_path, proc)

    def teardown() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        log_file.close()
        fault_server.shutdown()
        fault_server.server_close()
        tmp.cleanup()

    # Wait for /healthz.
    deadline = time.monotonic() + HEALTH_TIMEOUT_S
    last_err = "no attempt"
    healthy = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = r.log_tail()
            teardown()
            pytest.fail(
                f"switchyard exited with code {proc.returncode} before becoming healthy.\n"
                f"command: {binary} serve --config {config_path} --listen 127.0.0.1:{port}\n"
                f"--- relay output ---\n{out}",
                pytrace=False,
            )
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    healthy = True
                    break
                last_err = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            last_err = f"HTTP {e.code}"
        except OSError as e:
            last_err = repr(e)
        time.sleep(0.1)
    if not healthy:
        out = r.log_tail()
        teardown()
        pytest.fail(
            f"switchyard did not answer 200 on /healthz within {HEALTH_TIMEOUT_S}s (last: {last_err}).\n"
            f"--- relay output ---\n{out}",
            pytrace=False,
        )

    global _ACTIVE_RELAY
    _ACTIVE_RELAY = r
    try:
        yield r
    finally:
        _ACTIVE_RELAY = None
        teardown()


@pytest.fixture(scope="session")
def client(relay):
    import openai

    c = openai.OpenAI(base_url=relay.base_url, api_key=relay.api_key, max_retries=0, timeout=20.0)
    yield c
    c.close()


@pytest.fixture(scope="session")
def bad_key_client(relay):
    import openai

    c = openai.OpenAI(base_url=relay.base_url, api_key="sk-definitely-not-a-relay-key", max_retries=0, timeout=20.0)
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failing test, attach the tail of the relay's log to the report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        r = _ACTIVE_RELAY
        if r is not None:
            rep.sections.append(("switchyard relay log (tail)", r.log_tail(40)))
