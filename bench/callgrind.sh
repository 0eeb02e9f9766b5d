#!/usr/bin/env bash
# Instructions the relay runs per request, counted with callgrind (valgrind). Unlike a timed run,
# the count does not move with this VM's noise (repeated runs of one binary differ by about 150
# per request), so it tells apart changes of 1% that bench/run.sh cannot. It counts user-space
# instructions only: not system time, not cache misses.
#
#   bench/callgrind.sh [--bin PATH] [--nginx] [--cache] MODE...
#
# MODE:
#   nonstream  2,000 non-stream requests
#   stream     1,000 streams of 20 chunks; under callgrind the relay is slow, so a stream's
#              chunks arrive together and are read a few at a time
#   drip       200 streams whose 22 events arrive 2 ms apart (the mock's --gap-ms 2), each read
#              on its own: how a model emits tokens, and the per-chunk path a relay runs most
# --nginx: measure nginx instead, configured as bench/run.sh runs it (bench/nginx.conf.template,
#   one worker; without a master process, so that valgrind follows the process that serves).
# --cache: also simulate this machine's caches (32 KiB L1 instruction and data caches, 1 MiB L2;
#   valgrind sees only the measured process, not what other processes evict) and print the L1
#   misses per request: how much code and data a request touches, which the instruction count
#   does not say.
# --bin: the relay binary (default target/release/switchyard). Compare only binaries built the
#   same way. The figures in the README are of the binary the container image ships
#   (scripts/pgo-build: target/pgo-bolt/switchyard). To see where its instructions go
#   (callgrind_annotate), measure the same code with its symbols: target/pgo/bolt/optimised
#   (BOLT's output before stripping), or target/pgo-use/release/switchyard (the profile-guided
#   build before BOLT); BOLT needs the symbols, so pgo-build keeps them until the end. A profile
#   only applies to a build with the same cargo profile settings: one recorded on a stripped build
#   and used on a CARGO_PROFILE_RELEASE_STRIP=false one gave 30% more code and 32% more
#   instructions per request. (RUSTFLAGS="-Cstrip=none" leaves cargo's profile as it is.)
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
NGINX=0
CACHE=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --bin) BIN=$2; shift 2 ;;
        --nginx) NGINX=1; shift ;;
        --cache) CACHE=("--cache-sim=yes" "--I1=32768,8,64" "--D1=32768,8,64" "--LL=1048576,16,64"); shift ;;
        nonstream|stream|drip) modes+=("$1"); shift ;;
        *) die "unknown argument $1 (see the header of $0)" ;;
    esac
done
(( ${#modes[@]} )) || die "name at least one mode: nonstream, stream, drip"
NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
if ((NGINX)); then
    [[ -x $NGINX_BIN ]] || die "nginx not found (bench/run.sh installs it)"
else
    [[ -x $BIN ]] || die "$BIN not found: build the relay first"
fi
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
    local profile served=("$BIN" serve --config "$work/switchyard.toml" --listen "127.0.0.1:$RELAY_PORT")
    profile="$OUT/$mode.$(basename "$BIN").out"
    if ((NGINX)); then
        mkdir -p "$work/nginx"
        sed -e "s#@PREFIX@#$work/nginx#g" -e "s#@NGINX_WORKERS@#1#g" -e "s#@UPSTREAM_PORT@#$MOCK_PORT#g" \
            -e "s#@NGINX_PORT@#$RELAY_PORT#g" -e "s#^master_process on;#master_process off;#" \
            bench/nginx.conf.template > "$work/nginx/nginx.conf"
        served=("$NGINX_BIN" -p "$work/nginx" -c "$work/nginx/nginx.conf" -e "$work/nginx/error.log")
        profile="$OUT/$mode.nginx.out"
    fi
    rm -f "$profile" "$profile".*
    SWITCHYARD_LOG=warn taskset -c 0 valgrind --tool=callgrind "${CACHE[@]}" --callgrind-out-file="$profile" \
        "${served[@]}" > "$work/relay.log" 2>&1 &
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
    # The dump's header names its events (Ir, then the cache misses with --cache); its
    # `summary:` line holds the totals in that order.
    python3 - "$dump" "$mode" "$n" <<'PY' || die "$mode: no totals in $dump"
import sys
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
events = totals = None
for line in open(path, errors="replace"):
    if line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith(("summary:", "totals:")) and totals is None:
        totals = [int(v) for v in line.split()[1:]]
if not events or not totals:
    sys.exit(1)
per = dict(zip(events, (t / n for t in totals)))
misses = ""
if "D1mr" in per:
    misses = f", L1 misses: {per['I1mr']:.0f} instruction, {per['D1mr'] + per['D1mw']:.0f} data"
print(f"{mode:<9} {per['Ir']:9.0f} instructions per request{misses} ({n} requests; {path})")
PY
}

for mode in "${modes[@]}"; do
    measure "$mode"
done
