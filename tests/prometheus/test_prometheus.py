"""Switchyard observability, tested against a real Prometheus.

What this proves:
  * `promtool check rules` and `promtool test rules` pass on the alert rules.
  * The Grafana dashboards are well formed (datasource variable, every panel on
    `${datasource}`, variables defined before use).
  * End to end: the relay (target/release/switchyard or $SWITCHYARD_BIN) runs
    against fault-injecting upstreams (200 JSON/SSE, 503, hanging) while test
    traffic flows: successes, upstream errors, a failover, streams, a timeout,
    a client disconnect, a disabled upstream, a failed and a good config
    reload. `promtool check metrics` passes on its /metrics. A real Prometheus
    (1s scrape interval, the alert rules loaded) scrapes it; then every
    dashboard panel query and every alert expression runs through Prometheus's
    HTTP API and must be valid and return data. For alerts, which are filters
    and rightly empty in a healthy system, each operand of the condition must
    return data (see promtest_promql.probes for the exact rule).

Requirements: `prometheus` and `promtool` on PATH (Debian: `apt-get install -y
prometheus`), the relay binary built (`cargo build --release`), the `openai`
Python SDK. A missing tool or binary fails the test; nothing is skipped.

Run: .venv/bin/python -m pytest tests/prometheus -v
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import sys

import pytest

# The helpers live beside this file; make them importable under any pytest
# import mode and from any working directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from promtest_promql import (  # noqa: E402
    GRAFANA_BUILTINS,
    dashboard_queries,
    iter_panels,
    load_dashboard,
    probes,
    referenced_variables,
    substitute,
    template_variables,
    variable_query,
)
from promtest_upstream import USAGE, WORDS, FakeUpstream  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DASHBOARD_DIR = ROOT / "dashboards"
RULES = DASHBOARD_DIR / "alerts" / "switchyard.rules.yml"
RULES_TEST = DASHBOARD_DIR / "alerts" / "switchyard.rules.test.yml"
CONFIG_TEMPLATE = HERE / "switchyard-promtest.toml.in"
EXPECTED_DASHBOARDS = ["switchyard-keys.json", "switchyard-overview.json", "switchyard-upstreams.json"]
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
DS = {"type": "prometheus", "uid": "${datasource}"}

PANEL_QUERIES = [q for d in DASHBOARDS for q in dashboard_queries(d)]
ALERT_NAMES = re.findall(r"^\s*-\s*alert:\s*(\S+)\s*$", RULES.read_text(encoding="utf-8"), re.M) if RULES.exists() else []

KEY_A = "sk-promtest-team-a"
KEY_B = "sk-promtest-team-b"
EXPECTED_TEXT = "".join(WORDS)
MESSAGES = [{"role": "user", "content": "Say hello."}]
SCRAPE_JOB = "switchyard"

# Metric families of the contract, with their Prometheus types.
CONTRACT_METRICS = {
    "switchyard_requests_total": "counter",
    "switchyard_requests_in_flight": "gauge",
    "switchyard_streams_active": "gauge",
    "switchyard_client_disconnects_total": "counter",
    "switchyard_request_duration_seconds": "histogram",
    "switchyard_time_to_first_token_seconds": "histogram",
    "switchyard_overhead_seconds": "histogram",
    "switchyard_upstream_attempts_total": "counter",
    "switchyard_upstream_retries_total": "counter",
    "switchyard_failovers_total": "counter",
    "switchyard_upstream_timeouts_total": "counter",
    "switchyard_upstream_ejections_total": "counter",
    "switchyard_upstream_healthy": "gauge",
    "switchyard_tokens_total": "counter",
    "switchyard_config_reloads_total": "counter",
    "switchyard_upstreams_disabled": "gauge",
    "switchyard_upstream_disabled": "gauge",
    "switchyard_build_info": "gauge",
}
CONTRACT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600]

# Label values the test config allows (bounded labels).
ALLOWED_LABEL_VALUES = {
    "model": {"steady", "quiet", "flaky", "broken", "drip", "sluggish", "orphan", "other"},
    "upstream": {"good", "bad", "slow", "stale", "none"},
    "key": {"team-a", "team-b"},
    "direction": {"input", "output", "cached", "reasoning"},
    "kind": {"connect", "first_byte", "idle", "total"},
    "result": {"success", "failure"},
}

# Direct checks that the test traffic shows up where the contract says.
# Each query must return at least one sample, and every sample must be > 0.
SCENARIO_CHECKS = [
    ("successes", 'sum(switchyard_requests_total{model="steady", upstream="good", status="200", error="none"})'),
    ("failover answered by the second target", 'sum(switchyard_requests_total{model="flaky", upstream="good", status="200"})'),
    ("failover counted against the failed target", 'sum(switchyard_failovers_total{model="flaky", upstream="bad"})'),
    ("upstream 503 passed through", 'sum(switchyard_requests_total{model="broken", upstream="bad", status="503", error="upstream_http_error"})'),
    ("failed attempts by outcome", 'sum(switchyard_upstream_attempts_total{upstream="bad", outcome!="success"})'),
    ("successful attempts", 'sum(switchyard_upstream_attempts_total{upstream="good", outcome="success"})'),
    ("retries of a 503", 'sum(switchyard_upstream_retries_total{upstream="bad"})'),
    ("ejection after consecutive failures", 'sum(switchyard_upstream_ejections_total{upstream="bad"})'),
    ("health gauge of a healthy upstream", 'switchyard_upstream_healthy{upstream="good"} == 1'),
    ("first-byte timeout by kind", 'sum(switchyard_upstream_timeouts_total{upstream="slow", kind="first_byte"})'),
    ("timeout answered with 504", 'sum(switchyard_requests_total{model="sluggish", status="504"})'),
    ("request to a disabled upstream", 'sum(switchyard_requests_total{model="orphan", status="503", error="upstream_disabled"})'),
    ("disabled upstream gauge", 'switchyard_upstream_disabled{upstream="stale"} == 1'),
    ("disabled upstreams count", "switchyard_upstreams_disabled >= 1"),
    ("unknown model counted as other", 'sum(switchyard_requests_total{model="other", status="404", error="model_not_found"})'),
    ("invalid key", 'sum(switchyard_requests_total{status="401", error="invalid_api_key"})'),
    ("tokens of both keys", 'count(count by (key) (switchyard_tokens_total{key=~"team-a|team-b"})) == 2'),
    ("tokens in all four directions", 'count(count by (direction) (switchyard_tokens_total{direction=~"input|output|cached|reasoning"})) == 4'),
    ("stream usage counted when the client did not ask for it", 'sum(switchyard_tokens_total{model="quiet", direction="output"})'),
    ("time to first token of streams", 'sum(switchyard_time_to_first_token_seconds_count{model="steady"})'),
    ("request duration", 'sum(switchyard_request_duration_seconds_count{model="steady"})'),
    ("relay overhead", 'sum(switchyard_overhead_seconds_count{model="steady"})'),
    ("client disconnect", 'sum(switchyard_client_disconnects_total{model="drip"})'),
    ("in-flight gauge", "count(switchyard_requests_in_flight)"),
    ("active streams gauge", "count(switchyard_streams_active)"),
    ("failed config reload", 'sum(switchyard_config_reloads_total{result="failure"})'),
    ("successful config reload", 'sum(switchyard_config_reloads_total{result="success"})'),
    ("build info", "switchyard_build_info == 1"),
]


# --------------------------------------------------------------- helpers ---

def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(
            f"`{name}` is not on PATH. This test needs a real Prometheus and promtool: "
            "on Debian/Ubuntu run `apt-get update && apt-get install -y prometheus` "
            "(the CI setup script installs it).",
            pytrace=False,
        )
    return path


def relay_binary() -> str:
    env = os.environ.get("SWITCHYARD_BIN")
    path = Path(env) if env else ROOT / "target" / "release" / "switchyard"
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"relay binary not found at {path}: build it with `cargo build --release` "
            "or point SWITCHYARD_BIN at it.",
            pytrace=False,
        )
    return str(path)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Loopback only, never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    try:
        with _OPENER.open(url, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "<no log>"
    return "\n".join(text.splitlines()[-lines:])


def parse_samples(text: str, name: str) -> list[tuple[dict, float]]:
    """Samples of one metric name from the Prometheus text format."""
    out = []
    pat = re.compile(r"^" + re.escape(name) + r"(\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group("labels") or ""))
            out.append((labels, float(m.group("value"))))
    return out


def error_code(exc) -> str | None:
    try:
        return exc.response.json()["error"]["code"]
    except Exception:
        return getattr(exc, "code", None)


# ----------------------------------------------------------------- stack ---

class Prometheus:
    def __init__(self, binary: str, workdir: Path, target: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "prometheus.yml"
        self.log = workdir / "prometheus.log"
        self.config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1s\n"
            "rule_files:\n"
            f"  - {json.dumps(str(RULES))}\n"
            "scrape_configs:\n"
            f"  - job_name: {SCRAPE_JOB}\n"
            "    metrics_path: /metrics\n"
            "    static_configs:\n"
            f"      - targets: [{json.dumps(target)}]\n",
            encoding="utf-8",
        )
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={self.config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                status, _ = http_get(self.url + "/-/ready", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"prometheus not ready after {timeout}s:\n{tail(self.log)}")

    def api(self, path: str, params: dict | list | None = None) -> dict:
        qs = urllib.parse.urlencode(params or {}, doseq=True)
        status, body = http_get(f"{self.url}/api/v1/{path}?{qs}", timeout=30)
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"status": "error", "error": f"HTTP {status}: {body[:500]}"}
        doc["_http_status"] = status
        return doc

    def query(self, expr: str) -> dict:
        return self.api("query", {"query": expr})

    def scalar(self, expr: str) -> float | None:
        doc = self.query(expr)
        res = doc.get("data", {}).get("result") or []
        if doc.get("status") != "success" or not res:
            return None
        return float(res[0]["value"][1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._logf.close()


class Relay:
    def __init__(self, binary: str, workdir: Path, upstreams: dict[str, FakeUpstream]):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config = workdir / "switchyard.toml"
        self.log = workdir / "switchyard.log"
        self.good_config = (
            CONFIG_TEMPLATE.read_text(encoding="utf-8")
            .replace("@RELAY_PORT@", str(self.port))
            .replace("@GOOD_URL@", upstreams["good"].base_url)
            .replace("@BAD_URL@", upstreams["bad"].base_url)
            .replace("@SLOW_URL@", upstreams["slow"].base_url)
        )
        assert "@" not in re.sub(r"#.*", "", self.good_config), "unfilled placeholder in the relay config"
        self.write_config(self.good_config)
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("SWITCHYARD_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"))}
        env.update({
            "SWITCHYARD_PROMTEST_KEY_A": KEY_A,
            "SWITCHYARD_PROMTEST_KEY_B": KEY_B,
            "SWITCHYARD_PROMTEST_UPSTREAM_KEY": "sk-upstream-test",
            "SWITCHYARD_LOG": "info",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        })
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [binary, "serve", "--config", str(self.config)],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=workdir,
        )

    def write_config(self, text: str) -> None:
        # Atomic replace, as an editor or a ConfigMap update would do it.
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.config)

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchyard exited with {self.proc.returncode}:\n{tail(self.log)}")
            try:
                status, _ = http_get(self.url + "/healthz", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"switchyard /healthz not 200 after {timeout}s:\n{tail(self.log)}")

    def metrics(self) -> str:
        status, body = http_get(self.url + "/metrics", timeout=10)
        if status != 200:
            raise AssertionError(f"GET /metrics answered {status}: {body[:500]}")
        return body

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._logf.close()


class Traffic:
    """Client traffic through the relay, in a few threads, until stopped.

    Every scenario records an outcome: "ok" when the relay answered as the
    contract says, else a short description of what happened.
    """

    MAX_SECONDS = 300  # hard bound even if the test never stops it
    MAX_ROUNDS = 2000

    def __init__(self, relay_url: str):
        import openai  # the official SDK (pinned in the shared venv)

        self.openai = openai
        self.relay_url = relay_url
        host_port = relay_url.split("//", 1)[1]
        self.host, self.port = host_port.split(":")[0], int(host_port.split(":")[1])
        kw = {"base_url": relay_url + "/v1", "max_retries": 0, "timeout": 30}
        self.client_a = openai.OpenAI(api_key=KEY_A, **kw)
        self.client_b = openai.OpenAI(api_key=KEY_B, **kw)
        self.client_bad = openai.OpenAI(api_key="sk-not-a-relay-key", **kw)
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.started = time.monotonic()
        plan = (
            ("main", [self.steady_json, self.steady_stream, self.flaky_json, self.flaky_stream, self.quiet_stream], 0.1),
            ("errors", [self.broken_json, self.orphan_json, self.unknown_model, self.bad_key, self.steady_json_b], 0.3),
            ("slow", [self.sluggish_json, self.drip_disconnect], 0.5),
        )
        self.scenarios = [step.__name__ for _, steps, _ in plan for step in steps]
        self.threads = [
            threading.Thread(target=self._loop, args=(name, steps, pause), name=f"traffic-{name}", daemon=True)
            for name, steps, pause in plan
        ]

    def start(self) -> "Traffic":
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(60)

    def snapshot(self) -> dict[str, collections.Counter]:
        with self.lock:
            return {k: collections.Counter(v) for k, v in self.outcomes.items()}

    def _loop(self, _name, steps, pause) -> None:
        for _ in range(self.MAX_ROUNDS):
            for step in steps:
                if self.stop_event.is_set() or time.monotonic() - self.started > self.MAX_SECONDS:
                    return
                try:
                    outcome = step()
                except Exception as e:  # recorded, asserted on by test_traffic_outcome
                    outcome = f"{type(e).__name__}: {str(e)[:200]}"
                with self.lock:
                    self.outcomes[step.__name__][outcome] += 1
            self.stop_event.wait(pause)

    # -- scenarios ------------------------------------------------------
    def _check_completion(self, c) -> str:
        text = c.choices[0].message.content
        if text != EXPECTED_TEXT:
            return f"wrong content {text!r}"
        if c.usage is None or c.usage.prompt_tokens != USAGE["prompt_tokens"]:
            return f"wrong usage {c.usage!r}"
        return "ok"

    def _json(self, client, model, expect_upstream=None) -> str:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
        answered = raw.headers.get("x-switchyard-upstream")
        if expect_upstream and answered != expect_upstream:
            return f"answered by {answered!r}, expected {expect_upstream!r}"
        return self._check_completion(raw.parse())

    def _stream(self, client, model, include_usage) -> str:
        kw = {"stream_options": {"include_usage": True}} if include_usage else {}
        stream = client.chat.completions.create(model=model, messages=MESSAGES, stream=True, **kw)
        text, usage = "", None
        for chunk in stream:
            for choice in chunk.choices:
                text += choice.delta.content or ""
            if chunk.usage is not None:
                usage = chunk.usage
        if text != EXPECTED_TEXT:
            return f"wrong streamed content {text!r}"
        if include_usage and (usage is None or usage.completion_tokens != USAGE["completion_tokens"]):
            return f"missing or wrong usage chunk {usage!r}"
        if not include_usage and usage is not None:
            return "usage chunk sent although the client did not ask for it"
        return "ok"

    def _expect_error(self, client, model, status, code_prefix) -> str:
        try:
            client.chat.completions.create(model=model, messages=MESSAGES)
        except self.openai.APIStatusError as e:
            code = error_code(e) or ""
            if e.status_code == status and code.startswith(code_prefix):
                return "ok"
            return f"status {e.status_code} code {code!r}, expected {status} {code_prefix}*"
        return f"succeeded, expected {status} {code_prefix}*"

    def steady_json(self):
        return self._json(self.client_a, "steady", "good")

    def steady_json_b(self):
        return self._json(self.client_b, "steady", "good")

    def steady_stream(self):
        return self._stream(self.client_b, "steady", include_usage=True)

    def quiet_stream(self):
        # The client does not ask for usage: the relay must still count tokens
        # (it asks the upstream itself) and must not forward the usage chunk.
        return self._stream(self.client_a, "quiet", include_usage=False)

    def flaky_json(self):
        # Targets [bad, good] with strategy failover.
        return self._json(self.client_a, "flaky", "good")

    def flaky_stream(self):
        return self._stream(self.client_b, "flaky", include_usage=True)

    def broken_json(self):
        # The only target answers 503 with a JSON error: it passes through with
        # its own status and body (so the client sees the upstream's code); the
        # metrics count it as error="upstream_http_error" (see SCENARIO_CHECKS).
        return self._expect_error(self.client_b, "broken", 503, "overloaded")

    def orphan_json(self):
        return self._expect_error(self.client_a, "orphan", 503, "upstream_disabled")

    def unknown_model(self):
        return self._expect_error(self.client_a, "no-such-model", 404, "model_not_found")

    def bad_key(self):
        return self._expect_error(self.client_bad, "steady", 401, "invalid_api_key")

    def sluggish_json(self):
        return self._expect_error(self.client_b, "sluggish", 504, "upstream_timeout")

    def drip_disconnect(self):
        """Start a slow stream, read its first event, hang up."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        try:
            body = json.dumps({"model": "drip", "stream": True, "messages": MESSAGES})
            conn.request("POST", "/v1/chat/completions", body, {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {KEY_A}",
            })
            resp = conn.getresponse()
            if resp.status != 200:
                return f"status {resp.status}: {resp.read(300)!r}"
            for _ in range(50):
                line = resp.readline()
                if not line:
                    return "stream ended before the first event"
                if line.startswith(b"data:"):
                    break
            conn.sock.shutdown(socket.SHUT_RDWR)
            return "ok"
        finally:
            conn.close()


class Stack:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.upstreams: dict[str, FakeUpstream] = {}
        self.relay: Relay | None = None
        self.prometheus: Prometheus | None = None
        self.traffic: Traffic | None = None
        self.reload_failure: str | None = None  # None = seen in metrics, else what went wrong
        self.reload_success: str | None = None
        self.metrics_text = ""

    def start(self, prometheus_bin: str, relay_bin: str) -> None:
        self.upstreams = {
            "good": FakeUpstream("good", "ok").start(),
            "bad": FakeUpstream("bad", "fail").start(),
            "slow": FakeUpstream("slow", "hang", hang_seconds=3.0).start(),
        }
        self.relay = Relay(relay_bin, self.workdir, self.upstreams)
        self.relay.wait_healthy()
        self.prometheus = Prometheus(prometheus_bin, self.workdir, f"127.0.0.1:{self.relay.port}")
        self.prometheus.wait_ready()
        self.traffic = Traffic(self.relay.url).start()
        self._reload_cycle()
        self._wait_for_traffic_and_scrapes()
        self.metrics_text = self.relay.metrics()

    def _metric_sum(self, name: str, **labels) -> float:
        try:
            text = self.relay.metrics()
        except Exception:
            return 0.0
        return sum(v for lab, v in parse_samples(text, name) if all(lab.get(k) == val for k, val in labels.items()))

    def _wait_metric(self, name: str, above: float, timeout: float, **labels) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._metric_sum(name, **labels) > above:
                return True
            time.sleep(0.5)
        return False

    def _reload_cycle(self) -> None:
        """An invalid config (rejected, last good keeps serving), then a valid one."""
        time.sleep(2)  # let some traffic through first
        fail0 = self._metric_sum("switchyard_config_reloads_total", result="failure")
        self.relay.write_config(self.relay.good_config + "\n[[models]\nname = \"broken by the test\n")
        self.relay.proc.send_signal(signal.SIGHUP)
        if not self._wait_metric("switchyard_config_reloads_total", fail0, 15, result="failure"):
            self.reload_failure = "switchyard_config_reloads_total{result=\"failure\"} did not increase within 15s of SIGHUP with an invalid config"
        time.sleep(1)
        ok0 = self._metric_sum("switchyard_config_reloads_total", result="success")
        self.relay.write_config(self.relay.good_config)
        self.relay.proc.send_signal(signal.SIGHUP)
        if not self._wait_metric("switchyard_config_reloads_total", ok0, 15, result="success"):
            self.reload_success = "switchyard_config_reloads_total{result=\"success\"} did not increase within 15s of SIGHUP with the valid config"
        if self.relay.proc.poll() is not None:
            raise RuntimeError(f"switchyard exited during the reload cycle:\n{tail(self.relay.log)}")

    def _wait_for_traffic_and_scrapes(self) -> None:
        # Every scenario has run at least twice (or 90s passed) ...
        deadline = time.monotonic() + 90
        scenarios = self.traffic.scenarios
        while time.monotonic() < deadline:
            snap = self.traffic.snapshot()
            if all(sum(snap.get(s, {}).values()) >= 2 for s in scenarios):
                break
            time.sleep(0.5)
        # ... then Prometheus has scraped at least 5 more times, and has at
        # least 20 scrapes overall (so 1m rate windows hold plenty of samples).
        first = self.prometheus.scalar(f'count_over_time(up{{job="{SCRAPE_JOB}"}}[10m])') or 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            n = self.prometheus.scalar(f'count_over_time(up{{job="{SCRAPE_JOB}"}}[10m])') or 0
            if n >= max(first + 5, 20):
                break
            time.sleep(0.5)
        # Rules evaluate every second; give them one more round.
        time.sleep(2)

    def close(self) -> None:
        for step in (
            lambda: self.traffic and self.traffic.stop(),
            lambda: self.prometheus and self.prometheus.stop(),
            lambda: self.relay and self.relay.stop(),
            *[(lambda u=u: u.stop()) for u in self.upstreams.values()],
        ):
            try:
                step()
            except Exception:
                pass

    def logs(self) -> str:
        parts = []
        if self.relay:
            parts.append(f"--- switchyard log (tail) ---\n{tail(self.relay.log, 40)}")
        if self.prometheus:
            parts.append(f"--- prometheus log (tail) ---\n{tail(self.prometheus.log, 20)}")
        return "\n".join(parts)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    prometheus_bin = require_tool("prometheus")
    require_tool("promtool")
    relay_bin = relay_binary()
    st = Stack(tmp_path_factory.mktemp("promtest"))
    try:
        st.start(prometheus_bin, relay_bin)
    except Exception as e:
        st.close()
        pytest.fail(f"could not bring up relay + Prometheus: {e}\n{st.logs()}", pytrace=False)
    yield st
    st.close()


# ---------------------------------------------------------- static tests ---

def test_dashboards_and_rules_present():
    names = sorted(p.name for p in DASHBOARDS)
    for expected in EXPECTED_DASHBOARDS:
        assert expected in names, f"missing dashboards/{expected}"
    assert RULES.is_file() and RULES_TEST.is_file()
    assert len(PANEL_QUERIES) >= 30, f"only {len(PANEL_QUERIES)} panel queries found"
    assert len(ALERT_NAMES) >= 6 and len(set(ALERT_NAMES)) == len(ALERT_NAMES), ALERT_NAMES


def test_promtool_check_rules():
    promtool = require_tool("promtool")
    r = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in r.stdout, r.stdout


def test_promtool_test_rules():
    promtool = require_tool("promtool")
    r = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout, r.stdout


def test_rule_unit_tests_cover_every_alert():
    tested = set(re.findall(r"^\s*alertname:\s*(\S+)\s*$", RULES_TEST.read_text(encoding="utf-8"), re.M))
    assert set(ALERT_NAMES) <= tested, f"alerts without unit tests: {sorted(set(ALERT_NAMES) - tested)}"
    # Each alert has a firing case (exp_alerts with entries) and a quiet case (exp_alerts: []).
    text = RULES_TEST.read_text(encoding="utf-8")
    blocks = re.split(r"\n\s*- eval_time:", text)[1:]
    firing, quiet = set(), set()
    for b in blocks:
        m = re.search(r"alertname:\s*(\S+)", b)
        if not m:
            continue
        (quiet if re.search(r"exp_alerts:\s*\[\]", b) else firing).add(m.group(1))
    assert set(ALERT_NAMES) <= firing, f"alerts never tested firing: {sorted(set(ALERT_NAMES) - firing)}"
    assert set(ALERT_NAMES) <= quiet, f"alerts never tested not firing: {sorted(set(ALERT_NAMES) - quiet)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_is_well_formed(path):
    d = load_dashboard(path)
    assert d.get("uid") and d.get("title"), "dashboard needs uid and title"
    assert 36 <= d.get("schemaVersion", 0) <= 41, d.get("schemaVersion")
    assert d.get("id") is None, "provisioned dashboards must not carry a database id"
    variables = template_variables(d)
    ds_var = variables.get("datasource")
    assert ds_var and ds_var["type"] == "datasource" and ds_var["query"] == "prometheus", ds_var
    user_vars = {n for n, v in variables.items() if v["type"] != "datasource"}
    for name in user_vars:
        v = variables[name]
        assert v["type"] == "query", (name, v["type"])
        assert v.get("datasource") == DS, (name, v.get("datasource"))
        assert re.fullmatch(r"label_values\(switchyard_\w+,\s*\w+\)", variable_query(v)), variable_query(v)
        assert v.get("includeAll") and v.get("allValue") == ".*", f"${name}: 'All' must mean .* so that =~ matches everything"
    ids = []
    for panel in iter_panels(d):
        ids.append(panel.get("id"))
        title = panel.get("title")
        assert panel.get("datasource") == DS, f"panel {title!r} datasource {panel.get('datasource')}"
        gp = panel.get("gridPos", {})
        assert all(k in gp for k in "hwxy") and gp["x"] + gp["w"] <= 24, f"panel {title!r} gridPos {gp}"
        if panel.get("type") == "row":
            continue
        targets = panel.get("targets") or []
        assert targets, f"panel {title!r} has no query"
        assert panel.get("description"), f"panel {title!r} has no description"
        for t in targets:
            assert t.get("datasource") == DS, f"panel {title!r} target {t.get('refId')} datasource {t.get('datasource')}"
            expr = t.get("expr", "")
            assert expr.strip(), f"panel {title!r} target {t.get('refId')} has an empty expr"
            for name in referenced_variables(expr):
                assert name in GRAFANA_BUILTINS or name in user_vars, f"panel {title!r}: undefined variable ${name}"
                if name in user_vars:
                    # Multi-value variables only work as regex matchers.
                    for m in re.finditer(r"\$\{?" + name + r"\b", expr):
                        assert expr[: m.start()].endswith('=~"'), f"panel {title!r}: ${name} must be used as label=~\"${name}\""
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}"


def test_dashboard_queries_use_contract_metrics_only():
    known = set(CONTRACT_METRICS) | {f"{m}_{s}" for m, t in CONTRACT_METRICS.items() if t == "histogram" for s in ("bucket", "sum", "count")}
    for q in PANEL_QUERIES:
        for name in re.findall(r"\bswitchyard_\w+", q.expr):
            assert name in known, f"{q.test_id}: {name} is not a contract metric"


# ------------------------------------------------------ end-to-end tests ---

def test_relay_metrics_pass_promtool_check_metrics(stack):
    promtool = require_tool("promtool")
    text = stack.relay.metrics()
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, f"promtool check metrics failed:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("name", sorted(CONTRACT_METRICS))
def test_relay_exports_contract_metric(stack, name):
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", stack.metrics_text, re.M))
    assert name in types, f"{name} missing from /metrics (families present: {sorted(t for t in types if t.startswith('switchyard_'))})"
    assert types[name] == CONTRACT_METRICS[name], f"{name} has type {types[name]}, contract says {CONTRACT_METRICS[name]}"
    if CONTRACT_METRICS[name] == "histogram":
        les = sorted({float(lab["le"]) for lab, _ in parse_samples(stack.metrics_text, name + "_bucket") if lab.get("le") != "+Inf"})
        assert les == CONTRACT_BUCKETS, f"{name} buckets {les}, contract says {CONTRACT_BUCKETS}"


def test_relay_labels_are_bounded(stack):
    for label, allowed in ALLOWED_LABEL_VALUES.items():
        doc = stack.prometheus.api(f"label/{label}/values", {"match[]": '{__name__=~"switchyard_.+"}'})
        assert doc.get("status") == "success", doc
        values = set(doc["data"])
        assert values <= allowed, f"label {label} has values outside the config: {sorted(values - allowed)}"


def test_traffic_reached_the_upstreams(stack):
    stats = {n: dict(u.stats) for n, u in stack.upstreams.items()}
    assert stats["good"]["chat"] > 0, stats
    assert stats["bad"]["chat"] > 0, stats
    assert stats["slow"]["chat"] > 0, stats
    # The relay asks streaming upstreams for usage (token accounting in streams).
    assert stats["good"]["include_usage"] == stats["good"]["stream"] > 0, stats


TRAFFIC_SCENARIOS = [
    "steady_json", "steady_json_b", "steady_stream", "quiet_stream", "flaky_json", "flaky_stream",
    "broken_json", "orphan_json", "unknown_model", "bad_key", "sluggish_json", "drip_disconnect",
]


def test_traffic_ran_every_scenario(stack):
    assert sorted(stack.traffic.scenarios) == sorted(TRAFFIC_SCENARIOS)


@pytest.mark.parametrize("scenario", TRAFFIC_SCENARIOS)
def test_traffic_outcome(stack, scenario):
    outcomes = stack.traffic.snapshot().get(scenario, collections.Counter())
    assert sum(outcomes.values()) >= 1, f"scenario {scenario} never ran"
    assert set(outcomes) == {"ok"}, f"scenario {scenario}: {dict(outcomes)}"


def test_config_reloads(stack):
    assert stack.reload_failure is None, stack.reload_failure + "\n" + stack.logs()
    assert stack.reload_success is None, stack.reload_success + "\n" + stack.logs()


@pytest.mark.parametrize("what,expr", SCENARIO_CHECKS, ids=[c[0] for c in SCENARIO_CHECKS])
def test_scenario_metric(stack, what, expr):
    doc = stack.prometheus.query(expr)
    assert doc.get("status") == "success", f"{expr}: {doc}"
    result = doc["data"]["result"]
    assert result, f"{what}: `{expr}` returned no data"
    values = [float(r["value"][1]) for r in result]
    assert all(v > 0 for v in values), f"{what}: `{expr}` returned {result}"


def test_scrapes_and_probes_are_not_counted_as_client_requests(stack):
    # Prometheus has scraped /metrics about once a second and the harness
    # polled /healthz. If those counted as client requests they would show up
    # as successful requests that never reached an upstream, inflate every
    # traffic panel and dilute the error-budget alerts. None of the test's
    # client traffic can produce such a sample: every success is routed.
    for _ in range(3):
        http_get(stack.relay.url + "/healthz")
        http_get(stack.relay.url + "/readyz")
    doc = stack.prometheus.query('switchyard_requests_total{upstream="none", status=~"2.."}')
    assert doc.get("status") == "success", doc
    assert not doc["data"]["result"], (
        "GET /metrics, /healthz or /readyz are counted in switchyard_requests_total: "
        f"{[(r['metric'], r['value'][1]) for r in doc['data']['result']]}"
    )


@pytest.mark.parametrize("q", PANEL_QUERIES, ids=[q.test_id for q in PANEL_QUERIES])
def test_dashboard_query(stack, q):
    variables = [n for n in template_variables(load_dashboard(DASHBOARD_DIR / f"{q.dashboard}.json")) if n != "datasource"]
    expr = substitute(q.expr, variables)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    doc = stack.prometheus.query(expr)
    assert doc.get("status") == "success", f"invalid query `{expr}`: {doc.get('errorType')}: {doc.get('error')}"
    assert doc["data"]["result"], f"`{expr}` returned no data (resultType {doc['data']['resultType']})"


DASHBOARD_VARIABLES = [
    (p.stem, name, variable_query(v))
    for p in DASHBOARDS
    for name, v in template_variables(load_dashboard(p)).items()
    if v["type"] == "query"
]


@pytest.mark.parametrize("dashboard,name,query", DASHBOARD_VARIABLES, ids=[f"{d}:{n}" for d, n, _ in DASHBOARD_VARIABLES])
def test_dashboard_variable_has_values(stack, dashboard, name, query):
    m = re.fullmatch(r"label_values\((?P<metric>[^,]+),\s*(?P<label>\w+)\)", query)
    assert m, query
    doc = stack.prometheus.api(f"label/{m['label']}/values", {"match[]": m["metric"].strip()})
    assert doc.get("status") == "success", doc
    assert doc["data"], f"${name} ({query}) has no values"


def _loaded_alerts(stack) -> dict[str, dict]:
    doc = stack.prometheus.api("rules", {"type": "alert"})
    assert doc.get("status") == "success", doc
    return {r["name"]: r for g in doc["data"]["groups"] for r in g["rules"]}


def test_prometheus_loaded_every_alert(stack):
    loaded = _loaded_alerts(stack)
    assert sorted(loaded) == sorted(ALERT_NAMES)
    for name, rule in loaded.items():
        assert rule.get("health") == "ok", f"{name}: health {rule.get('health')} {rule.get('lastError')}"


@pytest.mark.parametrize("name", ALERT_NAMES)
def test_alert_expression(stack, name):
    rule = _loaded_alerts(stack).get(name)
    assert rule, f"alert {name} not loaded by Prometheus"
    expr = rule["query"]
    doc = stack.prometheus.query(expr)
    assert doc.get("status") == "success", f"invalid alert expression `{expr}`: {doc.get('error')}"
    parts = probes(expr)
    assert any(must for _, must in parts), f"no data probe could be derived from `{expr}`"
    for part, must_have_data in parts:
        doc = stack.prometheus.query(part)
        assert doc.get("status") == "success", f"{name}: invalid sub-expression `{part}`: {doc.get('error')}"
        if must_have_data:
            assert doc["data"]["result"], f"{name}: `{part}` returned no data (from `{expr}`)"
