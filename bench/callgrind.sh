#!/usr/bin/env bash
# Instructions the relay runs per request, counted with callgrind (valgrind). Unlike a timed run,
# the count does not move with this VM's noise (repeated runs of one binary differ by about 150
# per request), so it tells apart changes of 1% that bench/run.sh cannot. It counts user-space
# instructions only: not system time, not cache misses.
#
#   bench/callgrind.sh [--bin PATH] MODE...
#
# MODE:
#   nonstream  2,000 non-stream requests
#   stream     1,000 streams of 20 chunks; under callgrind the relay is slow, so a stream's
#              chunks arrive together and are read a few at a time
#   drip       200 streams whose 22 events arrive 2 ms apart (the mock's --gap-ms 2), each read
#              on its own: how a model emits tokens, and the per-chunk path a relay runs most
# --bin: the relay binary (default target/release/switchyard). Compare only binaries built the
#   same way. The figures in the README are of the profile-guided binary (scripts/pgo-build, in
#   target/pgo-use/release), which the container image ships. A build with the same profile but
#   CARGO_PROFILE_RELEASE_STRIP=false (for symbols) measured 30% more code and 32% more
#   instructions per request: the profile does not apply to it. To see where the shipped code's
#   instructions go (callgrind_annotate), keep the symbols with RUSTFLAGS instead, which leaves
#   cargo's profile as it is: RUSTFLAGS="-Cprofile-use=$PWD/target/pgo/merged.profdata
#   -Cstrip=none" cargo build --release --target-dir target/prof-sym; each of its loaded sections
#   is the same size as the shipped binary's.
#
# Each mode warms up first, then counts; the profile is kept in bench/results/callgrind/ for
# callgrind_annotate. Every answer counted must be a 200 (the streams end with [DONE]), or the
# script fails. Needs valgrind (installed with apt-get when missing), oha (bench/run.sh installs
# it into bench/.tools) and the mock (cargo build --release --example bench_upstream).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BIN=target/release/switchyard
MOCK=${CARGO_TARGET_DIR:-target}/release/examples/bench_upstream
OHA=${BENCH_OHA:-bench/.tools/bin/oha}
OUT=bench/results/callgrind
MOCK_PORT=19401
RELAY_PORT=19405

die() { echo "callgrind.sh: $*" >&2; exit 1; }

modes=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) BIN=$2; shift 2 ;;
        nonstream|stream|drip) modes+=("$1"); shift ;;
        *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
(( ${#modes[@]} )) || die "name at least one mode: nonstream, stream, drip"
[[ -x $BIN ]] || die "$BIN not found: build the relay first"
[[ -x $MOCK ]] || die "$MOCK not found: cargo build --release --example bench_upstream"
[[ -x $OHA ]] || die "oha not found at $OHA: bench/run.sh installs it (or set BENCH_OHA)"
if ! command -v valgrind >/dev/null; then
    sudo=(); [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null 2>&1 || {
        "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 || true
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y valgrind >/dev/null
    }
fi
command -v callgrind_control >/dev/null || die "valgrind is installed but callgrind_control is missing"
mkdir -p "$OUT"
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
sed -e "s/@UPSTREAM_PORT@/$MOCK_PORT/g" bench/switchyard.toml > "$work/switchyard.toml"

body() {
    local stream=$1
    echo "{\"model\":\"bench-model\",\"messages\":[{\"role\":\"user\",\"content\":\"Say hello.\"}],\"max_tokens\":64$( ((stream)) && echo ',"stream":true')}"
}

# wait_healthy PORT SECONDS: until /healthz on PORT answers, or fails.
wait_healthy() {
    local port=$1 seconds=$2
    for _ in $(seq 1 $((seconds * 10))); do
        curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && return 0
        sleep 0.1
    done
    die "nothing answered on 127.0.0.1:$port/healthz within $seconds s"
}

# oha_checked N CONNS BODY: sends N requests and fails unless all N answered 200.
oha_checked() {
    local n=$1 conns=$2 payload=$3
    taskset -c 1 "$OHA" --no-tui --output-format json -n "$n" -c "$conns" -m POST -T application/json -d "$payload" \
        "http://127.0.0.1:$RELAY_PORT/v1/chat/completions" > "$work/oha.json"
    python3 - "$work/oha.json" "$n" <<'PY'
import json, sys
codes = json.load(open(sys.argv[1])).get("statusCodeDistribution", {})
if codes != {"200": int(sys.argv[2])}:
    sys.exit(f"callgrind.sh: expected {sys.argv[2]} answers of 200, got {codes}")
PY
}

measure() {
    local mode=$1 n warm conns stream gap=()
    case $mode in
        nonstream) n=2000 warm=500 conns=16 stream=0 ;;
        stream) n=1000 warm=500 conns=16 stream=1 ;;
        drip) n=200 warm=50 conns=4 stream=1 gap=(--gap-ms 2) ;;
    esac
    taskset -c 0 "$MOCK" "127.0.0.1:$MOCK_PORT" --threads 1 "${gap[@]}" 2> "$work/mock.log" &
    local mock=$!
    pids+=("$mock")
    wait_healthy "$MOCK_PORT" 5
    local profile
    profile="$OUT/$mode.$(basename "$BIN").out"
    rm -f "$profile" "$profile".*
    SWITCHYARD_LOG=warn taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$profile" \
        "$BIN" serve --config "$work/switchyard.toml" --listen "127.0.0.1:$RELAY_PORT" > "$work/relay.log" 2>&1 &
    local relay=$!
    pids+=("$relay")
    wait_healthy "$RELAY_PORT" 30
    local payload
    payload=$(body "$stream")
    local answer
    answer=$(curl -sS -w '\n%{http_code}' -H 'content-type: application/json' -d "$payload" \
        "http://127.0.0.1:$RELAY_PORT/v1/chat/completions") || die "$mode: the relay did not answer"
    [[ ${answer##*$'\n'} == 200 ]] || die "$mode: the relay answered ${answer##*$'\n'}: ${answer:0:300}"
    if ((stream)); then grep -q '^data: \[DONE\]' <<< "$answer" || die "$mode: the stream did not end with [DONE]"; fi
    oha_checked "$warm" "$conns" "$payload"
    callgrind_control -z "$relay" > /dev/null 2>&1
    oha_checked "$n" "$conns" "$payload"
    callgrind_control -d "$relay" > /dev/null 2>&1
    kill "$relay" "$mock"
    wait "$relay" "$mock" 2>/dev/null || true
    # The dump requested above is part 1; the relay's exit writes the rest to "$profile".
    local dump="$profile.1"
    [[ -f $dump ]] || die "$mode: callgrind wrote no $dump"
    local total
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    [[ -n $total ]] || die "$mode: no total in $dump"
    printf '%-9s %9d instructions per request (%d requests; %s)\n' "$mode" $((total / n)) "$n" "$dump"
}

for mode in "${modes[@]}"; do
    measure "$mode"
done
