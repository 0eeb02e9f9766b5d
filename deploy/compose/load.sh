#!/bin/sh
# Small load generator for the Switchyard demo stack (POSIX sh + curl; runs on
# the host or in the curlimages/curl `loadgen` container of compose.yaml).
#
# Each iteration sends: a non-streaming chat completion and a streaming one
# for model `mock`, every 5th iteration a request for an unknown model (404
# model_not_found), every 10th a malformed body (400 invalid_json) and a
# GET /v1/models. It stops after LOAD_DURATION seconds or LOAD_MAX_ITERATIONS
# iterations, whichever comes first.
#
# Environment:
#   SWITCHYARD_URL       default http://127.0.0.1:8080
#   SWITCHYARD_API_KEY   sent as a Bearer token if set
#   LOAD_DURATION        seconds, default 120
#   LOAD_MAX_ITERATIONS  default 100000
#   LOAD_INTERVAL        seconds to sleep between iterations, default 0.5
#   LOAD_MODEL           default mock
set -eu

URL="${SWITCHYARD_URL:-http://127.0.0.1:8080}"
DURATION="${LOAD_DURATION:-120}"
MAX_ITER="${LOAD_MAX_ITERATIONS:-100000}"
INTERVAL="${LOAD_INTERVAL:-0.5}"
MODEL="${LOAD_MODEL:-mock}"
KEY="${SWITCHYARD_API_KEY:-}"

# Optional auth header, passed via a curl config on stdin-free argument list.
auth_header() {
  if [ -n "$KEY" ]; then
    printf 'Authorization: Bearer %s' "$KEY"
  else
    printf 'X-Load-Generator: switchyard-load.sh'
  fi
}

# post PATH BODY [extra curl args...] -> prints the HTTP status code.
post() {
  path="$1"
  body="$2"
  shift 2
  curl -sS -o /dev/null -w '%{http_code}' --max-time 30 \
    -H "$(auth_header)" -H 'Content-Type: application/json' \
    -X POST --data "$body" "$@" "$URL$path" 2>/dev/null || printf '000'
}

get() {
  curl -sS -o /dev/null -w '%{http_code}' --max-time 10 \
    -H "$(auth_header)" "$URL$1" 2>/dev/null || printf '000'
}

# Wait (up to 60s) for the relay to answer /healthz.
i=0
until [ "$(get /healthz)" = "200" ]; do
  i=$((i + 1))
  if [ "$i" -ge 60 ]; then
    echo "load.sh: $URL/healthz did not answer 200 within 60s" >&2
    exit 1
  fi
  sleep 1
done

start=$(date +%s)
iter=0
ok=0
err=0

count() {
  case "$1" in
    2??) ok=$((ok + 1)) ;;
    *) err=$((err + 1)) ;;
  esac
}

echo "load.sh: sending traffic to $URL (model $MODEL) for ${DURATION}s"
while [ "$iter" -lt "$MAX_ITER" ] && [ $(( $(date +%s) - start )) -lt "$DURATION" ]; do
  iter=$((iter + 1))
  n=$(( (iter % 4) + 1 ))

  count "$(post /v1/chat/completions \
    "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hello $iter, say $n words\"}],\"max_tokens\":64}")"

  count "$(post /v1/chat/completions \
    "{\"model\":\"$MODEL\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"stream $iter\"}]}" \
    -N -H 'Accept: text/event-stream')"

  if [ $((iter % 5)) -eq 0 ]; then
    # Expected 404 model_not_found: shows up in the errors-by-code panels.
    count "$(post /v1/chat/completions \
      '{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}')"
  fi
  if [ $((iter % 10)) -eq 0 ]; then
    # Expected 400 invalid_json.
    count "$(post /v1/chat/completions '{"model":')"
    count "$(get /v1/models)"
  fi
  if [ $((iter % 20)) -eq 0 ]; then
    echo "load.sh: $iter iterations, $ok ok, $err errors (some 4xx are intended)"
  fi
  sleep "$INTERVAL"
done
echo "load.sh: done after $iter iterations: $ok ok, $err errors (some 4xx are intended)"
