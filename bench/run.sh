#!/usr/bin/env bash
# Switchyard benchmark: direct vs nginx vs Switchyard in front of one fast mock upstream.
#
#   bench/run.sh [--paths direct,nginx,switchyard[,switchyard-anthropic]]
#                [--duration SECONDS] [--rounds N] [--rate REQ_PER_S] [--conns N]
#                [--paired-seconds N] [--no-build] [--no-install]
#
# Each measurement runs --rounds times (default 3) for --duration seconds (default 5); the
# report keeps the best round of each figure. Then the fixed-rate latencies, and the max
# throughput of nginx and the relay, are measured once more with every path interleaved in one
# run (examples/bench_paired.rs), for --paired-seconds per path (default 20; 0 skips it).
# Environment overrides (flags win): BENCH_PATHS, BENCH_DURATION (5), BENCH_ROUNDS (3),
# BENCH_WARMUP (s, 2), BENCH_RATE (1000), BENCH_CONNS (64), BENCH_RATE_CONNS (16),
# BENCH_PAIRED_SECONDS (20), BENCH_PORT_BASE (19100), BENCH_PIN (1), BENCH_PROXY_CPUS (0),
# BENCH_CLIENT_CPUS (1), BENCH_MOCK_CPUS (= proxy CPUs),
# BENCH_BUILD (pgo: scripts/pgo-build, the binary the container image ships, with BOLT from
# Debian's bolt-15, installed when missing; release: a plain
# cargo build --release), BENCH_SWITCHYARD_LOG (warn), BENCH_OHA (path to an oha binary), BENCH_WAIT_IDLE (s, 120),
# BENCH_IDLE_MAX_PCT (15), BENCH_NICE (-10 as root, else 0), BENCH_MOCK_BIN,
# BENCH_SWITCHYARD_BIN, CARGO_TARGET_DIR.
#
# Prints a Markdown report and writes it to bench/results/latest.md (raw oha JSON in
# bench/results/raw/). See bench/README.md for what is measured and how to read it.
# This is a benchmark, not a test: it loads both cores for a few minutes.
set -euo pipefail

OHA_VERSION=1.16.0
KNOWN_PATHS="direct nginx switchyard switchyard-anthropic"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"

PATHS=${BENCH_PATHS:-direct,nginx,switchyard}
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=${BENCH_WARMUP:-2}
RATE=${BENCH_RATE:-1000}
CONNS=${BENCH_CONNS:-64}
RATE_CONNS=${BENCH_RATE_CONNS:-16}
PAIRED_SECONDS=${BENCH_PAIRED_SECONDS:-20}
PORT_BASE=${BENCH_PORT_BASE:-19100}
PIN=${BENCH_PIN:-1}
PROXY_CPUS=${BENCH_PROXY_CPUS:-0}
CLIENT_CPUS=${BENCH_CLIENT_CPUS:-1}
MOCK_CPUS=${BENCH_MOCK_CPUS:-$PROXY_CPUS}
SY_LOG=${BENCH_SWITCHYARD_LOG:-warn}
DO_BUILD=1
DO_INSTALL=1

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --paths) PATHS=$2; shift 2 ;;
        --paths=*) PATHS=${1#*=}; shift ;;
        --duration) DURATION=$2; shift 2 ;;
        --duration=*) DURATION=${1#*=}; shift ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --rounds=*) ROUNDS=${1#*=}; shift ;;
        --rate) RATE=$2; shift 2 ;;
        --rate=*) RATE=${1#*=}; shift ;;
        --conns) CONNS=$2; shift 2 ;;
        --conns=*) CONNS=${1#*=}; shift ;;
        --paired-seconds) PAIRED_SECONDS=$2; shift 2 ;;
        --paired-seconds=*) PAIRED_SECONDS=${1#*=}; shift ;;
        --no-build) DO_BUILD=0; shift ;;
        --no-install) DO_INSTALL=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

for v in DURATION ROUNDS WARMUP RATE CONNS RATE_CONNS PORT_BASE; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "run.sh: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done
(( DURATION <= 60 && ROUNDS <= 10 )) || { echo "run.sh: at most 60 s per measurement and 10 rounds" >&2; exit 2; }
if ! [[ $PAIRED_SECONDS =~ ^[0-9]+$ ]] || (( PAIRED_SECONDS > 120 )); then
    echo "run.sh: --paired-seconds must be 0 to 120 (got '$PAIRED_SECONDS')" >&2; exit 2
fi

# Path list: validate, de-duplicate, and always measure "direct" first (it is the
# baseline every "added" figure is computed from).
declare -a PATH_LIST=(direct)
IFS=',' read -r -a _req <<< "$PATHS"
for p in "${_req[@]}"; do
    p=${p// /}
    [[ -z $p ]] && continue
    [[ " $KNOWN_PATHS " == *" $p "* ]] || { echo "run.sh: unknown path '$p' (known: $KNOWN_PATHS)" >&2; exit 2; }
    [[ " ${PATH_LIST[*]} " == *" $p "* ]] || PATH_LIST+=("$p")
done

MOCK_PORT=$((PORT_BASE + 1))
NGINX_PORT=$((PORT_BASE + 2))
SY_PORT=$((PORT_BASE + 3))
SYA_PORT=$((PORT_BASE + 4))

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

# ---------------------------------------------------------------- tools
apt_install() {
    (( DO_INSTALL )) || die "missing $* and --no-install given"
    log "installing $* (apt-get)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null 2>&1 || {
        as_root apt-get update -qq >/dev/null 2>&1 || true
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" >/dev/null
    }
}

command -v curl >/dev/null || apt_install curl
command -v python3 >/dev/null || apt_install python3
command -v taskset >/dev/null || apt_install util-linux
if [[ " ${PATH_LIST[*]} " == *" nginx "* ]]; then
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || apt_install nginx
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
fi

OHA=${BENCH_OHA:-$BENCH/.tools/bin/oha}
if [[ ! -x $OHA ]] || ! "$OHA" --version 2>/dev/null | grep -q "$OHA_VERSION"; then
    if [[ -n ${BENCH_OHA:-} ]]; then
        [[ -x $OHA ]] || die "BENCH_OHA=$OHA is not executable"
    else
        (( DO_INSTALL )) || die "oha $OHA_VERSION not found at $OHA and --no-install given"
        log "installing oha $OHA_VERSION into bench/.tools (cargo install, niced; takes a few minutes once)"
        mkdir -p "$BENCH/.tools"
        nice -n 19 cargo install oha --version "$OHA_VERSION" --locked --root "$BENCH/.tools" \
            > "$BENCH/.tools/oha-install.log" 2>&1 \
            || { tail -20 "$BENCH/.tools/oha-install.log" >&2; die "cargo install oha failed"; }
    fi
fi

# ---------------------------------------------------------------- build
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
MOCK_BIN=${BENCH_MOCK_BIN:-$TARGET_DIR/release/examples/bench_upstream}
PAIRED_BIN=$TARGET_DIR/release/examples/bench_paired
SY_BUILD=${BENCH_BUILD:-pgo}
case $SY_BUILD in
    pgo) SY_BIN=${BENCH_SWITCHYARD_BIN:-$TARGET_DIR/pgo-bolt/switchyard}; SY_BUILD_CMD=(scripts/pgo-build) ;;
    release) SY_BIN=${BENCH_SWITCHYARD_BIN:-$TARGET_DIR/release/switchyard}; SY_BUILD_CMD=(cargo build --release) ;;
    *) die "BENCH_BUILD must be pgo or release (got '$SY_BUILD')" ;;
esac
[[ -n ${BENCH_SWITCHYARD_BIN:-} ]] && SY_BUILD="given binary ($SY_BIN)"
mkdir -p "$BENCH/results/raw"
SY_BUILD_NOTE=""
want_sy=0
for p in "${PATH_LIST[@]}"; do [[ $p == switchyard* ]] && want_sy=1; done
if (( DO_BUILD )); then
    log "building the mock upstream and the interleaving client (cargo build --release --example bench_upstream --example bench_paired)"
    # The examples link the crate's library, so a broken src/ breaks them too: fall back to
    # existing binaries if there are some.
    if ! nice -n 19 cargo build --release --example bench_upstream --example bench_paired \
        > "$BENCH/results/build-mock.log" 2>&1; then
        tail -30 "$BENCH/results/build-mock.log" >&2
        [[ -x $MOCK_BIN ]] || die "building examples/bench_upstream failed"
        log "WARNING: building the examples failed; using the existing binaries"
    fi
    if (( want_sy )); then
        # What scripts/pgo-build looks for.
        if [[ $SY_BUILD == pgo ]] && ! command -v llvm-bolt-15 >/dev/null && ! command -v llvm-bolt >/dev/null; then
            apt_install bolt-15
        fi
        log "building switchyard (${SY_BUILD_CMD[*]})"
        if ! nice -n 19 "${SY_BUILD_CMD[@]}" > "$BENCH/results/build-switchyard.log" 2>&1; then
            tail -15 "$BENCH/results/build-switchyard.log" >&2
            SY_BUILD_NOTE="${SY_BUILD_CMD[*]} failed (see bench/results/build-switchyard.log)"
            log "WARNING: $SY_BUILD_NOTE; switchyard paths will be skipped"
        fi
    fi
fi
[[ -x $MOCK_BIN ]] || die "$MOCK_BIN missing (run without --no-build)"
if (( want_sy )) && [[ ! -x $SY_BIN ]]; then
    SY_BUILD_NOTE=${SY_BUILD_NOTE:-"$SY_BIN not built"}
fi
if [[ -n $SY_BUILD_NOTE ]] && [[ -x $SY_BIN ]]; then
    SY_BUILD_NOTE=""   # an older binary exists: the build only failed to refresh it
    log "WARNING: the build failed; measuring the existing $SY_BIN"
    SY_STALE=1
fi

# ---------------------------------------------------------------- priority and pinning
# The measured processes (mock, proxy, oha) run at a raised priority so that other work on
# the machine (a cargo build) disturbs them less. Negative values need root.
if [[ $(id -u) -eq 0 ]]; then NICE=${BENCH_NICE:--10}; else NICE=${BENCH_NICE:-0}; fi
[[ $NICE =~ ^-?[0-9]+$ ]] || die "BENCH_NICE must be an integer"
prio=(nice -n "$NICE")

NCPU=$(nproc)
if (( PIN )) && (( NCPU >= 2 )) && command -v taskset >/dev/null; then
    pin_proxy=("${prio[@]}" taskset -c "$PROXY_CPUS")
    pin_client=("${prio[@]}" taskset -c "$CLIENT_CPUS")
    pin_mock=("${prio[@]}" taskset -c "$MOCK_CPUS")
    if [[ $MOCK_CPUS == "$CLIENT_CPUS" ]]; then
        PIN_DESC="proxy on CPU $PROXY_CPUS; load generator (oha) and mock upstream on CPU $CLIENT_CPUS"
    elif [[ $MOCK_CPUS == "$PROXY_CPUS" ]]; then
        PIN_DESC="proxy and mock upstream on CPU $PROXY_CPUS; load generator (oha) alone on CPU $CLIENT_CPUS"
    else
        PIN_DESC="proxy on CPU $PROXY_CPUS; load generator (oha) on CPU $CLIENT_CPUS; mock upstream on CPU $MOCK_CPUS"
    fi
    MOCK_NCPU=$(taskset -c "$MOCK_CPUS" nproc)
    PROXY_NCPU=$(taskset -c "$PROXY_CPUS" nproc)
else
    pin_proxy=("${prio[@]}")
    pin_client=("${prio[@]}")
    pin_mock=("${prio[@]}")
    PIN_DESC="no CPU pinning"
    MOCK_NCPU=$NCPU
    PROXY_NCPU=$NCPU
fi

# ---------------------------------------------------------------- processes
WORK=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-bench.XXXXXX")
RAW="$BENCH/results/raw"
rm -f "$RAW"/*.json "$RAW"/*.err "$RAW"/*.env "$RAW"/*.pct "$RAW"/*.stat[01] 2>/dev/null || true
declare -a STARTED=()

stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_http() {  # wait_http URL PID -> 0 when URL answers 200 (at most 10 s)
    local url=$1 pid=$2 i
    for i in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || return 1
        curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

for port in "$MOCK_PORT" "$NGINX_PORT" "$SY_PORT" "$SYA_PORT"; do
    port_busy "$port" && die "port $port is already in use (set BENCH_PORT_BASE)"
done

log "starting mock upstream on 127.0.0.1:$MOCK_PORT"
"${pin_mock[@]}" "$MOCK_BIN" "127.0.0.1:$MOCK_PORT" --threads "$MOCK_NCPU" > "$WORK/mock.log" 2>&1 &
MOCK_PID=$!
STARTED+=("$MOCK_PID")
wait_http "http://127.0.0.1:$MOCK_PORT/healthz" "$MOCK_PID" || { cat "$WORK/mock.log" >&2; die "mock upstream did not start"; }

declare -A PID_OF=()   # path -> pid of its proxy (nginx master, or switchyard)
declare -A URL_OF=()   # path -> chat completions URL

start_nginx() {
    local prefix="$WORK/nginx"
    mkdir -p "$prefix"
    sed -e "s#@PREFIX@#$prefix#g" -e "s#@NGINX_WORKERS@#$PROXY_NCPU#g" \
        -e "s#@UPSTREAM_PORT@#$MOCK_PORT#g" -e "s#@NGINX_PORT@#$NGINX_PORT#g" \
        "$BENCH/nginx.conf.template" > "$prefix/nginx.conf"
    "${pin_proxy[@]}" "$NGINX_BIN" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
        > "$WORK/nginx.out" 2>&1 &
    PID_OF[nginx]=$!
    STARTED+=("$!")
    wait_http "http://127.0.0.1:$NGINX_PORT/healthz" "${PID_OF[nginx]}" \
        || { cat "$WORK/nginx.out" "$prefix/error.log" >&2 2>/dev/null; return 1; }
}

start_switchyard() {  # start_switchyard PATH_NAME PORT (config: bench/PATH_NAME.toml)
    local name=$1 port=$2 cfg="$WORK/$1.toml"
    sed -e "s#@UPSTREAM_PORT@#$MOCK_PORT#g" "$BENCH/$name.toml" > "$cfg"
    SWITCHYARD_LOG=$SY_LOG "${pin_proxy[@]}" "$SY_BIN" serve --config "$cfg" \
        --listen "127.0.0.1:$port" > "$WORK/$name.log" 2>&1 &
    PID_OF[$name]=$!
    STARTED+=("$!")
    wait_http "http://127.0.0.1:$port/healthz" "${PID_OF[$name]}" \
        || { tail -20 "$WORK/$name.log" >&2; return 1; }
}

# Pids whose CPU time and peak RSS count as "the proxy".
proxy_pids() {
    case "$1" in
        nginx) pgrep -P "${PID_OF[nginx]}" 2>/dev/null || true ;;   # the workers
        switchyard*) echo "${PID_OF[$1]}" ;;
        *) ;;
    esac
}
cpu_ticks() {  # sum of utime+stime (clock ticks) over the given pids
    local total=0 pid line rest
    for pid in "$@"; do
        line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${line##*) }
        read -r -a f <<< "$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
hwm_kb() {  # sum of VmHWM (kB) over the given pids
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
CLK_TCK=$(getconf CLK_TCK)

snap() { grep '^cpu[0-9]' /proc/stat > "$1"; }   # per-core jiffies
busy_pct() {  # busy_pct SNAP_A SNAP_B -> whole-machine busy % between two snapshots
    paste -d' ' "$1" "$2" | awk '{
        n = (NF) / 2; bi = 0; bb = 0
        for (i = 2; i <= n && i <= 9; i++) { d = $(n + i) - $i; if (i == 5 || i == 6) bi += d; else bb += d }
        tb += bb; ti += bi }
        END { if (tb + ti > 0) printf "%.0f\n", 100 * tb / (tb + ti); else print 0 }'
}

# ---------------------------------------------------------------- requests
BODY_NS='{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}'
BODY_S='{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64,"stream":true}'

smoke() {  # smoke URL -> 0 if a non-stream and a stream completion look right; reason on stdout
    local url=$1 out code n
    out=$(curl -sS --max-time 5 -w '\n%{http_code}' -H 'content-type: application/json' -d "$BODY_NS" "$url" 2>&1) \
        || { echo "non-stream request failed: ${out:0:200}"; return 1; }
    code=${out##*$'\n'}
    [[ $code == 200 ]] || { echo "non-stream: HTTP $code: $(head -c 300 <<< "${out%$'\n'*}")"; return 1; }
    grep -q 'tok19' <<< "$out" || { echo "non-stream: unexpected body: $(head -c 300 <<< "$out")"; return 1; }
    out=$(curl -sS -N --max-time 5 -w '\n%{http_code}' -H 'content-type: application/json' -d "$BODY_S" "$url" 2>&1) \
        || { echo "stream request failed: ${out:0:200}"; return 1; }
    code=${out##*$'\n'}
    [[ $code == 200 ]] || { echo "stream: HTTP $code: $(head -c 300 <<< "${out%$'\n'*}")"; return 1; }
    n=$(grep -cE '^data: .*"content": ?"tok[0-9]+ "' <<< "$out" || true)
    (( n >= 20 )) || { echo "stream: expected 20 content chunks, got $n: $(head -c 300 <<< "$out")"; return 1; }
    grep -q '^data: \[DONE\]' <<< "$out" || { echo "stream: no 'data: [DONE]'"; return 1; }
    return 0
}

oha_run() {  # oha_run OUT_JSON URL BODY SECONDS [extra oha args...]
    local out=$1 url=$2 body=$3 secs=$4
    shift 4
    "${pin_client[@]}" "$OHA" --no-tui --output-format json -w -z "${secs}s" \
        -m POST -T application/json -d "$body" "$@" "$url" > "$out" 2> "$out.err" || {
        log "oha failed ($(basename "$out")): $(head -c 300 "$out.err")"
        return 1
    }
}

# ---------------------------------------------------------------- run
# 1. Bring every path up and check that it answers correctly.
declare -a ACTIVE=()
for name in "${PATH_LIST[@]}"; do
    meta="$RAW/$name.env"
    : > "$meta"
    case "$name" in
        direct)
            URL_OF[$name]="http://127.0.0.1:$MOCK_PORT/v1/chat/completions" ;;
        nginx)
            log "[nginx] starting $("$NGINX_BIN" -v 2>&1 | sed 's/.*: //') on 127.0.0.1:$NGINX_PORT ($PROXY_NCPU worker(s))"
            if ! start_nginx; then echo "status=nginx did not start" >> "$meta"; continue; fi
            URL_OF[$name]="http://127.0.0.1:$NGINX_PORT/v1/chat/completions" ;;
        switchyard|switchyard-anthropic)
            if [[ -n $SY_BUILD_NOTE ]]; then echo "status=skipped: $SY_BUILD_NOTE" >> "$meta"; continue; fi
            port=$SY_PORT
            [[ $name == switchyard-anthropic ]] && port=$SYA_PORT
            log "[$name] starting switchyard on 127.0.0.1:$port (SWITCHYARD_LOG=$SY_LOG)"
            if ! start_switchyard "$name" "$port"; then
                echo "status=switchyard did not start: $(tail -3 "$WORK/$name.log" | tr '\n' ' ' | head -c 300)" >> "$meta"
                continue
            fi
            URL_OF[$name]="http://127.0.0.1:$port/v1/chat/completions" ;;
    esac
    if ! reason=$(smoke "${URL_OF[$name]}"); then
        log "[$name] smoke check failed: $reason"
        echo "status=smoke check failed: ${reason//$'\n'/ }" >> "$meta"
        if [[ -n ${PID_OF[$name]:-} ]]; then stop_pid "${PID_OF[$name]}"; fi
        continue
    fi
    ACTIVE+=("$name")
done

# 2. Other work on the machine (a cargo build, a test suite) ruins the figures: wait
#    (bounded) until the machine is close to idle, then go on regardless and record it.
IDLE_MAX=${BENCH_IDLE_MAX_PCT:-15}
WAIT_IDLE=${BENCH_WAIT_IDLE:-120}
idle_deadline=$(( $(date +%s) + WAIT_IDLE ))
while :; do
    snap "$WORK/idle.a"; sleep 2; snap "$WORK/idle.b"
    bg=$(busy_pct "$WORK/idle.a" "$WORK/idle.b")
    (( bg <= IDLE_MAX )) && break
    if (( $(date +%s) >= idle_deadline )); then
        log "WARNING: the machine is still ${bg}% busy with other work after ${WAIT_IDLE}s; measuring anyway (figures will be noisy)"
        break
    fi
    log "machine ${bg}% busy with other work; waiting for it to settle (up to ${WAIT_IDLE}s)"
done
echo "$bg" > "$RAW/background-start.pct"

# 3. Measure. The paths take turns within each measurement, so that slow drifts in the
#    machine's state (or other work starting) hit every path alike.
START_TS=$(date +%s)
for name in "${ACTIVE[@]}"; do
    log "[$name] warm-up ${WARMUP}s"
    oha_run "$WORK/warmup.json" "${URL_OF[$name]}" "$BODY_NS" "$WARMUP" -c "$CONNS" || true
    oha_run "$WORK/warmup.json" "${URL_OF[$name]}" "$BODY_S" 1 -c "$CONNS" || true
done
for round in $(seq 1 "$ROUNDS"); do
  for run in nonstream-rate stream-rate nonstream-max stream-max; do
    mode=${run%-*}
    kind=${run#*-}
    [[ $mode == stream ]] && body=$BODY_S || body=$BODY_NS
    tag="$run-r$round"
    # 1 s of background load with the harness idle (only the idle proxies and mock are up).
    snap "$WORK/bg.a"; sleep 1; snap "$WORK/bg.b"
    busy_pct "$WORK/bg.a" "$WORK/bg.b" > "$RAW/background-$tag.pct"
    # Rotate the order from round to round, so that no path is always first after the pause.
    n=${#ACTIVE[@]}
    order=()
    for ((i = 0; i < n; i++)); do order+=("${ACTIVE[$(( (i + round - 1) % n ))]}"); done
    for name in "${order[@]}"; do
        if [[ $kind == rate ]]; then
            log "[$name] round $round/$ROUNDS $mode: fixed ${RATE} req/s, ${RATE_CONNS} connections, ${DURATION}s (latency-corrected)"
            oha_run "$RAW/$name-$tag.json" "${URL_OF[$name]}" "$body" "$DURATION" \
                -c "$RATE_CONNS" -q "$RATE" --latency-correction || true
        else
            log "[$name] round $round/$ROUNDS $mode: max throughput, ${CONNS} connections, ${DURATION}s"
            mapfile -t pids < <(proxy_pids "$name")
            t0=$(cpu_ticks "${pids[@]}")
            snap "$RAW/$name-$tag.stat0"
            oha_run "$RAW/$name-$tag.json" "${URL_OF[$name]}" "$body" "$DURATION" -c "$CONNS" || true
            snap "$RAW/$name-$tag.stat1"
            t1=$(cpu_ticks "${pids[@]}")
            echo "cpu_ticks_${mode}_r${round}=$((t1 - t0))" >> "$RAW/$name.env"
        fi
    done
  done
done

# 3b. The fixed-rate latencies once more, every path in one run: time is cut into slices that
#     go to the paths in turn (bench/README.md), so that the same drifts hit all of them and
#     the differences between paths come with confidence intervals.
rm -f "$RAW"/paired-*.json "$RAW"/paired-*.err
if (( PAIRED_SECONDS > 0 )) && (( ${#ACTIVE[@]} >= 2 )) && [[ ${ACTIVE[0]} == direct ]]; then
    if [[ -x $PAIRED_BIN ]]; then
        compare=()
        if [[ " ${ACTIVE[*]} " == *" nginx "* ]]; then
            for name in "${ACTIVE[@]}"; do [[ $name == switchyard* ]] && compare+=(--compare "$name:nginx"); done
        fi
        targets=()
        for name in "${ACTIVE[@]}"; do targets+=("$name=${URL_OF[$name]}"); done
        for mode in nonstream stream; do
            [[ $mode == stream ]] && body=$BODY_S || body=$BODY_NS
            log "interleaved $mode: ${RATE} req/s on ${RATE_CONNS} connections per path, ${PAIRED_SECONDS}s per path (${ACTIVE[*]})"
            "${pin_client[@]}" "$PAIRED_BIN" --rate "$RATE" --connections "$RATE_CONNS" \
                --seconds "$PAIRED_SECONDS" "${compare[@]}" --body "$body" "${targets[@]}" \
                > "$RAW/paired-$mode.json" 2> "$RAW/paired-$mode.err" \
                || { log "interleaved $mode failed: $(head -c 300 "$RAW/paired-$mode.err")"; rm -f "$RAW/paired-$mode.json"; }
        done
        # Max throughput the same way, closed loop (direct left out: it measures the mock).
        if (( ${#compare[@]} > 0 )); then
            max_targets=()
            for name in "${ACTIVE[@]}"; do [[ $name != direct ]] && max_targets+=("$name=${URL_OF[$name]}"); done
            for mode in nonstream stream; do
                [[ $mode == stream ]] && body=$BODY_S || body=$BODY_NS
                log "interleaved $mode: max throughput on ${CONNS} connections per path, ${PAIRED_SECONDS}s per path (${max_targets[*]%%=*})"
                "${pin_client[@]}" "$PAIRED_BIN" --max --connections "$CONNS" \
                    --seconds "$PAIRED_SECONDS" "${compare[@]}" --body "$body" "${max_targets[@]}" \
                    > "$RAW/paired-max-$mode.json" 2> "$RAW/paired-max-$mode.err" \
                    || { log "interleaved max $mode failed: $(head -c 300 "$RAW/paired-max-$mode.err")"; rm -f "$RAW/paired-max-$mode.json"; }
            done
        fi
    else
        echo "$PAIRED_BIN was not built" > "$RAW/paired-nonstream.err"
        log "WARNING: $PAIRED_BIN missing (run without --no-build); no interleaved measurement"
    fi
fi

# 4. Peak memory, then stop the proxies.
for name in "${ACTIVE[@]}"; do
    mapfile -t pids < <(proxy_pids "$name")
    {
        echo "hwm_kb=$(hwm_kb "${pids[@]}")"
        echo "nprocs=${#pids[@]}"
        echo "status=ok"
    } >> "$RAW/$name.env"
    if [[ -n ${PID_OF[$name]:-} ]]; then stop_pid "${PID_OF[$name]}"; fi
done
ELAPSED=$(( $(date +%s) - START_TS ))

# ---------------------------------------------------------------- report
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)
SY_VERSION=$([[ -x $SY_BIN ]] && "$SY_BIN" --version 2>/dev/null | head -1 || true)
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "git_rev=$GIT_REV${SY_STALE:+ (switchyard binary older than the tree: its build failed)}"
    echo "cpu=$CPU_MODEL x $NCPU"
    echo "kernel=$(uname -r)"
    echo "pinning=$PIN_DESC"
    echo "nginx=$( [[ -n ${NGINX_BIN:-} ]] && "$NGINX_BIN" -v 2>&1 | sed 's/.*: //' || echo n/a)"
    echo "nginx_workers=$PROXY_NCPU"
    echo "oha=$("$OHA" --version 2>/dev/null | head -1)"
    echo "switchyard=${SY_VERSION:-n/a}"
    echo "switchyard_build=$SY_BUILD"
    echo "switchyard_log=$SY_LOG"
    echo "duration=$DURATION"
    echo "rounds=$ROUNDS"
    echo "rate=$RATE"
    echo "rate_conns=$RATE_CONNS"
    echo "paired_seconds=$PAIRED_SECONDS"
    echo "conns=$CONNS"
    echo "proxy_cpus=$( [[ $PIN_DESC != "no CPU pinning" ]] && echo "$PROXY_CPUS" || echo all)"
    echo "client_cpus=$( [[ $PIN_DESC != "no CPU pinning" ]] && echo "$CLIENT_CPUS" || echo all)"
    echo "nice=$NICE"
    echo "clk_tck=$CLK_TCK"
    echo "elapsed=$ELAPSED"
    echo "paths=$(IFS=,; echo "${PATH_LIST[*]}")"
} > "$RAW/run.env"

python3 "$BENCH/report.py" "$RAW" > "$BENCH/results/latest.md"
cat "$BENCH/results/latest.md"
log "report written to bench/results/latest.md (raw oha JSON in bench/results/raw/); ${ELAPSED}s of measurement"
