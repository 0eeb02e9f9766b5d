#!/usr/bin/env python3
"""The latency a failover adds: time to first byte of requests whose first target failed (a 503)
and whose second target answered, against requests served by that second target directly.

The first target fails the requests that carry `x-fail` (the relay forwards custom headers);
every other request carries it, so passive health checks never eject the first target and every
marked request really fails over; the second target is the built-in mock. The difference is the
failed attempt plus the relay's failover work; the first target's own 503 time is printed too, so
the relay's part can be read off. Run after `cargo build --release`:

    python3 bench/failover_latency.py [REQUESTS]
"""

import http.client
import http.server
import json
import threading
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = os.environ.get("SWITCHYARD_BIN", str(REPO / "target/release/switchyard"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMPLETION = json.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]}).encode()


STREAM = (
    b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    b'"delta":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n'
)


class FailsWhenAsked(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        request = self.rfile.read(int(self.headers.get("content-length", 0)))
        fail = self.headers.get("x-fail") is not None
        stream = json.loads(request).get("stream") is True
        body = b'{"error":{"message":"busy"}}' if fail else (STREAM if stream else COMPLETION)
        status = b"503 Service Unavailable" if fail else b"200 OK"
        # One write: headers and body in separate segments would meet delayed ACKs (40 ms).
        kind = b"text/event-stream" if stream and not fail else b"application/json"
        head = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n" % (status, kind, len(body))
        self.wfile.write(head + body)


def ttfb(conn: http.client.HTTPConnection, model: str, stream: bool, fail: bool = False):
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    headers = {"content-type": "application/json", **({"x-fail": "1"} if fail else {})}
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body, headers)
    response = conn.getresponse()
    response.read(1)
    elapsed = time.perf_counter() - started
    response.read()
    return elapsed, response.status, response.getheader("x-switchyard-upstream")


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    flaky = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FailsWhenAsked)
    threading.Thread(target=flaky.serve_forever, daemon=True).start()
    flaky_port, port = flaky.server_address[1], free_port()
    config = f"""
[upstreams.mock]
dialect = "mock"
[upstreams.down]
dialect = "openai-completions"
base_url = "http://127.0.0.1:{flaky_port}/v1"
retry = {{ attempts = 1 }}
[[models]]
name = "direct"
targets = [{{ upstream = "mock" }}]
[[models]]
name = "failover"
targets = [{{ upstream = "down" }}, {{ upstream = "mock" }}]
"""
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(config)
    env = dict(os.environ, SWITCHYARD_LOG="error")
    relay = subprocess.Popen([BIN, "serve", "--config", f.name, "--listen", f"127.0.0.1:{port}"], env=env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        direct_to_flaky = http.client.HTTPConnection("127.0.0.1", flaky_port)
        for c in (conn, direct_to_flaky):
            c.connect()
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for stream in (False, True):
            direct, failed_over, flaky_503 = [], [], []
            for _ in range(requests):
                elapsed, status, upstream = ttfb(conn, "direct", stream)
                assert status == 200 and upstream == "mock", (status, upstream)
                direct.append(elapsed)
                elapsed, status, upstream = ttfb(conn, "failover", stream, fail=True)
                assert status == 200 and upstream == "mock", (status, upstream)
                failed_over.append(elapsed)
                elapsed, status, upstream = ttfb(conn, "failover", stream)
                assert status == 200 and upstream == "down", (status, upstream)
                elapsed, status, _ = ttfb(direct_to_flaky, "m", False, fail=True)
                assert status == 503, status
                flaky_503.append(elapsed)
            d, f_, fail = (statistics.median(x) for x in (direct, failed_over, flaky_503))
            q = lambda xs: statistics.quantiles(xs, n=100)[98]
            print(
                f"{'stream' if stream else 'non-stream'}: median time to first byte served directly "
                f"{d*1e6:.0f} µs, after a failover {f_*1e6:.0f} µs (p99 {q(direct)*1e6:.0f} vs "
                f"{q(failed_over)*1e6:.0f} µs): failover adds {(f_-d)*1e6:.0f} µs, of which the first "
                f"target's own 503 takes ~{fail*1e6:.0f} µs ({requests} failed-over requests)"
            )
    finally:
        relay.terminate()
        relay.wait(timeout=10)
        os.unlink(f.name)


if __name__ == "__main__":
    main()
