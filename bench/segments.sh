#!/usr/bin/env bash
# Where a proxy's added latency goes: its time per request between its own syscalls.
#
#   bench/segments.sh PID URL [SECONDS]
#
# Sends non-streamed requests to URL at 1,000 req/s on 16 connections (oha, pinned to CPU 1,
# as bench/run.sh does) and records the recvfrom, writev and epoll_wait tracepoints of process
# PID for SECONDS (default 3) with `perf record`; bench/segments.py then splits each request
# into the proxy's request work, its upstream write, the wait for the upstream, its response
# work, its client write and what follows (see its header). Run it against nginx and the relay
# in turn, each in front of the same mock (bench/README.md). Needs perf and the permission to
# trace (root, or kernel.perf_event_paranoid <= 1); a diagnostic, not part of run.sh.
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2; }
pid=$1 url=$2 seconds=${3:-3}
bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
oha=${BENCH_OHA:-$bench/.tools/bin/oha}
command -v perf >/dev/null || { echo "segments.sh: perf is not installed (Debian: linux-perf)" >&2; exit 1; }
[[ -x $oha ]] || { echo "segments.sh: no oha at $oha (bench/run.sh installs it; or set BENCH_OHA)" >&2; exit 1; }
[[ -d /proc/$pid ]] || { echo "segments.sh: no process $pid" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/segments.XXXXXX")
trap 'rm -rf "$work"' EXIT
body='{"model":"bench-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":64}'
taskset -c 1 "$oha" --no-tui -z "$((seconds + 2))s" -c 16 -q 1000 -m POST -T application/json \
    -d "$body" "$url" > "$work/oha.txt" 2>&1 &
load=$!
sleep 1
events=syscalls:sys_enter_recvfrom,syscalls:sys_exit_recvfrom,syscalls:sys_enter_writev,syscalls:sys_exit_writev
events+=,syscalls:sys_enter_epoll_wait,syscalls:sys_exit_epoll_wait
perf record -q -e "$events" -p "$pid" -o "$work/perf.data" -- sleep "$seconds"
wait "$load" || { cat "$work/oha.txt" >&2; echo "segments.sh: the load generator failed" >&2; exit 1; }
perf script -i "$work/perf.data" -F time,event,trace > "$work/events.txt" 2>/dev/null
python3 "$bench/segments.py" "$work/events.txt"
