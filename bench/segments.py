#!/usr/bin/env python3
"""Split a proxy's time per request into the segments between its syscalls (bench/segments.sh).

usage: segments.py PERF_SCRIPT_OUTPUT

Reads `perf script -F time,event,trace` output of one proxy process: the syscall tracepoints
for recvfrom, writev and epoll_wait. Each non-streamed request is followed through its syscalls:

  A   request read returned        -> upstream write entered   (the proxy's request work)
  W1  upstream write                                           (kernel: loopback delivery, wake-up)
  B   upstream write returned      -> upstream read entered    (the upstream's time, and whatever
                                                                the proxy does after the write)
  C   upstream response read returned -> client write entered  (the proxy's response work)
  W2  client write                                             (kernel)
  D   client write returned        -> next epoll_wait entered  (after the answer: off the path)

A request is a read from a connection that is not an upstream connection, a write to another
connection (which is then known as an upstream), a read from that upstream, and a write back to
the first connection. Reads and writes in between (a request read in two parts, nginx's extra
syscalls) stay inside the segment. Requests whose events do not pair up (perf lost some) are
skipped and counted. Times are medians and means in microseconds. Standard library only.
"""
import re
import sys

LINE = re.compile(r"\s*([\d.]+):\s+(\S+):\s*(.*)")
SYSCALL = re.compile(r"syscalls:sys_(enter|exit)_(\w+)")
FD = re.compile(r"fd: (0x[0-9a-f]+)")
MAX_REQUEST_US = 50_000


def median(values):
    s = sorted(values)
    return s[len(s) // 2] if s else float("nan")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    segments = {k: [] for k in ("A", "W1", "B", "C", "W2", "D")}
    upstreams = set()
    by_client = {}      # client fd -> timestamps of its request in flight
    waiting = []        # client fds whose request has not been written upstream yet, oldest first
    by_upstream = {}    # upstream fd -> client fd of the request it carries
    answered = []       # client fds whose answer was written, closed at the next epoll_wait
    entered = {}        # syscall -> (time, fd) of its latest entry
    done = skipped = 0
    keys = ("req_read", "up_enter", "up_exit", "resp_enter", "resp_read", "client_enter", "client_exit")

    for line in open(path):
        m = LINE.match(line)
        if not m:
            continue
        t, event, rest = float(m[1]) * 1e6, m[2], m[3]
        s = SYSCALL.match(event)
        if not s:
            continue
        kind, name = s.groups()
        if kind == "enter":
            fd = FD.search(rest)
            entered[name] = (t, int(fd[1], 16) if fd else None)
            if name == "epoll_wait":
                for client in answered:
                    r = by_client.pop(client, None)
                    if not r or not all(k in r for k in keys):
                        continue
                    spans = {"A": r["up_enter"] - r["req_read"], "W1": r["up_exit"] - r["up_enter"],
                             "B": r["resp_enter"] - r["up_exit"], "C": r["client_enter"] - r["resp_read"],
                             "W2": r["client_exit"] - r["client_enter"], "D": t - r["client_exit"]}
                    # Lost events (perf's buffer overflowing) pair the wrong syscalls: skip those.
                    if min(spans.values()) < 0 or sum(spans.values()) > MAX_REQUEST_US:
                        skipped += 1
                        continue
                    for k, v in spans.items():
                        segments[k].append(v)
                    done += 1
                answered.clear()
            continue
        result = int(rest.split()[0], 16)
        since, fd = entered.get(name, (t, None))
        if name == "recvfrom" and 0 < result < 1 << 31:
            if fd in by_upstream:
                r = by_client.get(by_upstream[fd])
                if r is not None:
                    r.setdefault("resp_enter", since)
                    r["resp_read"] = t   # the last part of a response read in parts
            elif fd not in upstreams:
                r = by_client.get(fd)
                if r is None or "client_exit" in r:
                    by_client[fd] = {"client": fd}
                    waiting.append(fd)
                by_client[fd]["req_read"] = t   # the last part of a request read in parts
        elif name == "writev":
            if fd in by_client and "resp_read" in by_client[fd]:
                r = by_client[fd]
                r.setdefault("client_enter", since)
                r["client_exit"] = t
                answered.append(fd)
                by_upstream = {u: c for u, c in by_upstream.items() if c != fd}
            elif waiting and fd not in by_client:
                client = waiting.pop(0)
                upstreams.add(fd)
                by_upstream[fd] = client
                by_client[client].update(up_enter=since, up_exit=t)
    print(f"requests followed: {done} (skipped as inconsistent: {skipped})")
    print("| segment | median µs | mean µs |")
    print("|---|--:|--:|")
    for k, v in segments.items():
        if v:
            print(f"| {k} | {median(v):.0f} | {sum(v) / len(v):.1f} |")


if __name__ == "__main__":
    main()
