"""A small fault-injecting OpenAI chat-completions upstream (stdlib only).

One server = one behaviour:
  "ok"    answers 200: JSON for non-stream requests, an SSE stream (HTTP/1.1
          chunked) for `stream: true`. Usage (with cached and reasoning token
          details) is in the JSON body, and in the stream as a final chunk only
          when the request asked for `stream_options.include_usage`, like OpenAI.
          An upstream model whose name starts with "drip" streams slowly (many
          chunks, a pause between them) so that a client can hang up mid-stream.
  "fail"  answers every chat request with 503 and an OpenAI-shaped JSON error.
  "hang"  waits `hang_seconds` before sending anything (to trip the relay's
          first-byte timeout), then answers like "ok".

Every server counts the requests it received (`stats`).
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USAGE = {
    "prompt_tokens": 12,
    "completion_tokens": 5,
    "total_tokens": 17,
    "prompt_tokens_details": {"cached_tokens": 4},
    "completion_tokens_details": {"reasoning_tokens": 2},
}
WORDS = ["Hello", " from", " the", " test", " upstream."]


class FakeUpstream:
    def __init__(self, name: str, mode: str, hang_seconds: float = 3.0, drip_chunks: int = 40, drip_pause: float = 0.15):
        assert mode in ("ok", "fail", "hang"), mode
        self.name = name
        self.mode = mode
        self.hang_seconds = hang_seconds
        self.drip_chunks = drip_chunks
        self.drip_pause = drip_pause
        self.lock = threading.Lock()
        self.stats = {"chat": 0, "stream": 0, "include_usage": 0, "models": 0, "client_gone": 0}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, name=f"upstream-{name}", daemon=True)

    def start(self) -> "FakeUpstream":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self, key: str) -> None:
        with self.lock:
            self.stats[key] += 1

    def _handler_class(self):
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "fake-upstream/1"

            def log_message(self, fmt, *args):  # keep pytest output clean
                pass

            # -- helpers -------------------------------------------------
            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            return data
                        data += self.rfile.read(size)
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _json(self, status: int, obj) -> None:
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _event(self, obj) -> None:
                payload = obj if isinstance(obj, str) else json.dumps(obj)
                self._chunk(f"data: {payload}\n\n".encode())

            # -- endpoints -----------------------------------------------
            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    upstream.count("models")
                    self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "test"}
                        for m in ("steady-1", "flaky-1", "broken-1", "drip-1", "sluggish-1")
                    ]})
                else:
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error", "code": "not_found"}})

            def do_POST(self):
                raw = self._read_body()
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._json(404, {"error": {"message": "not found", "type": "invalid_request_error", "code": "not_found"}})
                    return
                upstream.count("chat")
                try:
                    req = json.loads(raw or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error", "code": None}})
                    return
                if upstream.mode == "fail":
                    self._json(503, {"error": {"message": f"{upstream.name} is overloaded", "type": "server_error", "code": "overloaded"}})
                    return
                if upstream.mode == "hang":
                    time.sleep(upstream.hang_seconds)
                model = req.get("model") or "unknown"
                stream = bool(req.get("stream"))
                include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
                try:
                    if stream:
                        upstream.count("stream")
                        if include_usage:
                            upstream.count("include_usage")
                        self._stream(model, include_usage)
                    else:
                        self._json(200, {
                            "id": "chatcmpl-test",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": model,
                            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)}, "finish_reason": "stop"}],
                            "usage": USAGE,
                        })
                except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                    upstream.count("client_gone")
                    self.close_connection = True

            def _stream(self, model: str, include_usage: bool) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                base = {"id": "chatcmpl-test-stream", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
                drip = model.startswith("drip")
                words = WORDS * (upstream.drip_chunks // len(WORDS)) if drip else WORDS
                self._event({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]})
                for w in words:
                    if drip:
                        time.sleep(upstream.drip_pause)
                    self._event({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
                self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                if include_usage:
                    self._event({**base, "choices": [], "usage": USAGE})
                self._event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
