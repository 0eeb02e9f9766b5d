#!/usr/bin/env bash
# Runs the SDK conformance suites (official openai Python and Node SDKs against a real
# switchyard binary). Both suites always run; the script exits non-zero if either fails.
#
#   SWITCHYARD_BIN  relay binary (default: <repo>/target/release/switchyard)
#   PYTHON          python with openai + pytest (default: <repo>/.venv/bin/python)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cd "$repo"

export SWITCHYARD_BIN="${SWITCHYARD_BIN:-$repo/target/release/switchyard}"
PYTHON="${PYTHON:-$repo/.venv/bin/python}"
# The suite needs no third-party pytest plugins; don't let whatever else is installed in the
# shared venv (entry-point plugins) break or change it.
export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1

fail=0
if [[ ! -x "$SWITCHYARD_BIN" ]]; then
  echo "run.sh: switchyard binary not found at $SWITCHYARD_BIN (build it or set SWITCHYARD_BIN); the suites will fail" >&2
fi

echo "== Python SDK suite ($PYTHON) =="
if [[ ! -x "$PYTHON" ]]; then
  echo "run.sh: python not found at $PYTHON (create the venv: python3 -m venv .venv && .venv/bin/pip install -r tests/sdk/python/requirements.txt)" >&2
  py_rc=1
else
  "$PYTHON" -m pytest tests/sdk/python -q
  py_rc=$?
fi
[[ $py_rc -eq 0 ]] || fail=1

echo "== Node SDK suite ($(node --version 2>/dev/null || echo 'node missing')) =="
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "run.sh: node/npm not found" >&2
  node_rc=1
else
  (cd tests/sdk/node && npm ci --no-audit --no-fund && node --test)
  node_rc=$?
fi
[[ $node_rc -eq 0 ]] || fail=1

echo "== SDK conformance: python rc=$py_rc, node rc=$node_rc =="
exit $fail
