"""A stream that fails after it started must make the official SDK raise, never end cleanly.

A raw-socket upstream sends SSE headers and one content chunk, then either drops the connection
or goes silent; the relay must end the client's stream with an in-band `data: {"error": ...}`
event (no `[DONE]`), which the openai SDK turns into an `APIError` while iterating.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import openai
import pytest

from conftest import _free_port, _resolve_binary

CHUNK = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":"partial "},"finish_reason":null}]}\n\n'
)


def _serve_broken_streams(listener: socket.socket, mode: str, stop: threading.Event) -> None:
    listener.settimeout(0.2)
    held = []
    while not stop.is_set():
        try:
            conn, _ = listener.accept()
        except OSError:
            continue
        conn.recv(65536)
        body = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK)
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n" + body)
        if mode == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            conn.close()
        else:
            held.append(conn)  # silent: keep it open and say nothing more
    for conn in held:
        conn.close()


@pytest.fixture(scope="module")
def broken_relay(tmp_path_factory):
    stop = threading.Event()
    upstreams = {}
    for mode in ("reset", "silent"):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        threading.Thread(target=_serve_broken_streams, args=(listener, mode, stop), daemon=True).start()
        upstreams[mode] = listener.getsockname()[1]
    config = tmp_path_factory.mktemp("broken") / "switchyard.toml"
    lines = []
    for mode, port in upstreams.items():
        lines += [
            f"[upstreams.{mode}]",
            'dialect = "openai-completions"',
            f'base_url = "http://127.0.0.1:{port}/v1"',
            'timeouts = { idle = "1s" }',
            f"[[models]]",
            f'name = "{mode}"',
            f'targets = [{{ upstream = "{mode}" }}]',
            "",
        ]
    config.write_text("\n".join(lines))
    port = _free_port()
    log = Path(config.parent / "relay.log").open("w")
    proc = subprocess.Popen(
        [str(_resolve_binary()), "serve", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert proc.poll() is None, "the relay exited at startup"
            time.sleep(0.05)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=20)
    proc.terminate()
    proc.wait(timeout=10)
    stop.set()
    log.close()


@pytest.mark.parametrize(("model", "code"), [("reset", "upstream_reset"), ("silent", "upstream_timeout_idle")])
def test_the_sdk_raises_on_a_stream_that_fails_after_it_started(broken_relay, model, code):
    stream = broken_relay.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["partial "], "the part that arrived was delivered before the error"
    assert not isinstance(raised.value, openai.APIConnectionError)
    body = raised.value.body
    assert isinstance(body, dict) and body.get("code") == code, body
    assert body.get("upstream") == model
    assert body.get("request_id", "").startswith("req_")
