#!/usr/bin/env python3
"""Turn the raw results of bench/run.sh into a Markdown report (stdout).

usage: report.py RAW_DIR

RAW_DIR holds run.env (key=value facts about the run), <path>.env per path
(status, proxy CPU ticks, peak RSS) and oha's JSON output
<path>-<mode>-<kind>.json with mode nonstream|stream and kind rate|max.
Standard library only.
"""
import json
import os
import sys

MODES = ("nonstream", "stream")
MODE_LABEL = {"nonstream": "non-stream", "stream": "stream (20 SSE chunks)"}
# Targets for every switchyard* path, relative to nginx.
P50_FACTOR = 1.25
P99_FACTOR = 1.25
RPS_FACTOR = 0.8
RSS_LIMIT_MB = 30.0  # MB = 10^6 bytes


def read_env(path):
    out = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "=" in line:
                    k, v = line.split("=", 1)
                    out[k] = v
    except FileNotFoundError:
        pass
    return out


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_stat(path):
    """{cpu_index: (busy, idle)} jiffies from a saved /proc/stat extract, or None."""
    try:
        out = {}
        with open(path) as f:
            for line in f:
                parts = line.split()
                if not parts or not parts[0].startswith("cpu") or parts[0] == "cpu":
                    continue
                v = [int(x) for x in parts[1:9]]  # user nice system idle iowait irq softirq steal
                idle = v[3] + v[4]
                out[int(parts[0][3:])] = (sum(v) - idle, idle)
        return out
    except (FileNotFoundError, ValueError):
        return None


def parse_cpus(spec):
    """'0', '0-1', '0,2' -> set of ints; 'all' or '' -> None."""
    if not spec or spec == "all":
        return None
    cpus = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            cpus.update(range(int(a), int(b) + 1))
        elif part:
            cpus.add(int(part))
    return cpus


def cores_busy(a, b, cpus):
    """Busy % of the given cores between two read_stat() results."""
    if not a or not b:
        return None
    keys = [k for k in a if k in b and (cpus is None or k in cpus)]
    busy = sum(b[k][0] - a[k][0] for k in keys)
    idle = sum(b[k][1] - a[k][1] for k in keys)
    return 100.0 * busy / (busy + idle) if busy + idle > 0 else None


def read_pct(path):
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def oha_stats(doc):
    """Figures from one oha JSON document, or None."""
    if not doc:
        return None
    codes = doc.get("statusCodeDistribution") or {}
    errors = doc.get("errorDistribution") or {}
    ok = int(codes.get("200", 0))
    total = sum(int(v) for v in codes.values()) + sum(int(v) for v in errors.values())
    wall = float(doc["summary"]["total"]) or 1e-9
    lat = doc.get("latencyPercentiles") or {}
    fb = doc.get("firstBytePercentiles") or {}
    return {
        "ok": ok,
        "total": total,
        "ok_ratio": (ok / total) if total else 0.0,
        "rps": ok / wall,
        "wall": wall,
        "p50": lat.get("p50"),
        "p99": lat.get("p99"),
        "p999": lat.get("p99.9"),
        "fb50": fb.get("p50"),
        "fb99": fb.get("p99"),
        "errors": errors,
        "codes": codes,
    }


def us(seconds):
    return None if seconds is None else seconds * 1e6


def fmt(v, digits=0, unit=""):
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def fmt_signed(v, digits=0):
    if v is None:
        return "n/a"
    return f"{v:+,.{digits}f}"


def main():
    raw = sys.argv[1]
    run = read_env(os.path.join(raw, "run.env"))
    paths = [p for p in run.get("paths", "direct").split(",") if p]
    clk = float(run.get("clk_tck", "100"))
    dur = run.get("duration", "?")
    rate = run.get("rate", "?")
    conns = run.get("conns", "?")
    rate_conns = run.get("rate_conns", "?")

    res = {}  # (path, mode) -> dict
    meta = {}
    for p in paths:
        meta[p] = read_env(os.path.join(raw, f"{p}.env"))
        for m in MODES:
            r = oha_stats(read_json(os.path.join(raw, f"{p}-{m}-rate.json")))
            x = oha_stats(read_json(os.path.join(raw, f"{p}-{m}-max.json")))
            cpu = None
            ticks = meta[p].get(f"cpu_ticks_{m}")
            if p != "direct" and ticks is not None and x and x["ok"]:
                cpu_s = int(ticks) / clk
                cpu = {"us_per_req": cpu_s / x["ok"] * 1e6, "busy": cpu_s / x["wall"] * 100}
            s0 = read_stat(os.path.join(raw, f"{p}-{m}-max.stat0"))
            s1 = read_stat(os.path.join(raw, f"{p}-{m}-max.stat1"))
            cores = {
                "proxy": cores_busy(s0, s1, parse_cpus(run.get("proxy_cpus"))),
                "client": cores_busy(s0, s1, parse_cpus(run.get("client_cpus"))),
            }
            res[(p, m)] = {"rate": r, "max": x, "cpu": cpu, "cores": cores}

    def added(p, m, key):
        a = res.get((p, m), {}).get("rate")
        d = res.get(("direct", m), {}).get("rate")
        if not a or not d or a.get(key) is None or d.get(key) is None:
            return None
        return us(a[key] - d[key])

    def rss_mb(p):
        kb = meta.get(p, {}).get("hwm_kb")
        if p == "direct" or kb in (None, "", "0"):
            return None
        return int(kb) * 1024 / 1e6

    out = []
    w = out.append
    w("# Switchyard benchmark")
    w("")
    w(f"{run.get('date', '?')} · git `{run.get('git_rev', '?')}` · {run.get('cpu', '?')} · "
      f"Linux {run.get('kernel', '?')}")
    w("")
    w(f"- Pinning: {run.get('pinning', '?')}; measured processes at nice {run.get('nice', '0')}.")
    w(f"- Load generator: {run.get('oha', 'oha')}. Fixed rate: {rate} req/s on {rate_conns} "
      f"keep-alive connections for {dur} s, latency-corrected (coordinated omission: latency is "
      f"counted from each request's scheduled send time). Max throughput: {conns} connections "
      f"for {dur} s, as fast as possible.")
    w(f"- Proxies: nginx {run.get('nginx', 'n/a')} ({run.get('nginx_workers', '?')} worker), "
      f"switchyard {run.get('switchyard', 'n/a')} (SWITCHYARD_LOG={run.get('switchyard_log', '?')}).")
    w("- Upstream: `examples/bench_upstream.rs` (fixed answers, no delay; streams are 20 content "
      "chunks + a usage chunk + `[DONE]`, each event flushed separately).")
    w("- *added* = the path's latency percentile minus the direct path's; stream latency is the "
      "time to the complete stream.")
    bg_start = read_pct(os.path.join(raw, "background-start.pct"))
    runs = ("nonstream-rate", "stream-rate", "nonstream-max", "stream-max")
    bg = {r: read_pct(os.path.join(raw, f"background-{r}.pct")) for r in runs}
    parts = [f"{r} {fmt(v, 0, ' %')}" for r, v in bg.items() if v is not None]
    w(f"- Background CPU load from other processes (whole machine, 1 s samples with the harness "
      f"idle): at start {fmt(bg_start, 0, ' %')}" + ("; before " + ", ".join(parts) if parts else "") + ".")
    w("- The paths take turns within each measurement (all non-stream fixed-rate runs, then all "
      "stream fixed-rate runs, then the max-throughput runs).")
    w("")
    noisy = [v for v in [bg_start, *bg.values()] if v is not None and v > 10]
    if noisy:
        w(f"> **Warning**: the machine was up to {max(noisy):.0f} % busy with other work during this "
          f"run. The figures are not reliable; rerun on an idle machine.")
        w("")

    problems = [(p, meta[p].get("status", "not run")) for p in paths
                if meta[p].get("status", "not run") != "ok"]
    if problems:
        for p, st in problems:
            w(f"> **{p}**: {st}")
        w("")

    w("## Results")
    w("")
    w(f"| Path | Mode | p50 @{rate}/s | p99 @{rate}/s | added p50 | added p99 | max req/s @{conns} conns "
      f"| proxy CPU per req | proxy CPU use | peak RSS |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for p in paths:
        if meta[p].get("status") != "ok":
            continue
        for m in MODES:
            e = res[(p, m)]
            r, x, cpu = e["rate"], e["max"], e["cpu"]
            p50 = us(r["p50"]) if r else None
            p99 = us(r["p99"]) if r else None
            a50 = added(p, m, "p50") if p != "direct" else None
            a99 = added(p, m, "p99") if p != "direct" else None
            w("| {} | {} | {} µs | {} µs | {} | {} | {} | {} | {} | {} |".format(
                p, MODE_LABEL[m], fmt(p50), fmt(p99),
                "—" if p == "direct" else fmt_signed(a50) + " µs",
                "—" if p == "direct" else fmt_signed(a99) + " µs",
                fmt(x["rps"] if x else None),
                "—" if p == "direct" else (fmt(cpu["us_per_req"], 1, " µs") if cpu else "n/a"),
                "—" if p == "direct" else (fmt(cpu["busy"], 0, " %") if cpu else "n/a"),
                "—" if p == "direct" else fmt(rss_mb(p), 1, " MB"),
            ))
    w("")

    # Details: success ratios, achieved rate, tail and time to first byte.
    w("<details><summary>Details (success, achieved rate, p99.9, time to first byte)</summary>")
    w("")
    w("| Path | Mode | run | ok / total | achieved req/s | p50 | p99 | p99.9 | TTFB p50 | TTFB p99 "
      "| proxy core busy | oha core busy | errors |")
    w("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for p in paths:
        if meta[p].get("status") != "ok":
            continue
        for m in MODES:
            for kind in ("rate", "max"):
                s = res[(p, m)][kind]
                if not s:
                    w(f"| {p} | {m} | {kind} | n/a | | | | | | | | | oha produced no result |")
                    continue
                errs = ", ".join(f"{k}: {v}" for k, v in s["errors"].items()) or "none"
                non200 = {k: v for k, v in s["codes"].items() if k != "200"}
                if non200:
                    errs += "; HTTP " + ", ".join(f"{k}: {v}" for k, v in non200.items())
                cores = res[(p, m)]["cores"] if kind == "max" else {}
                pc = fmt(cores.get("proxy"), 0, " %") if kind == "max" else ""
                cc = fmt(cores.get("client"), 0, " %") if kind == "max" else ""
                w(f"| {p} | {m} | {kind} | {s['ok']:,} / {s['total']:,} | {fmt(s['rps'])} | "
                  f"{fmt(us(s['p50']))} µs | {fmt(us(s['p99']))} µs | {fmt(us(s['p999']))} µs | "
                  f"{fmt(us(s['fb50']))} µs | {fmt(us(s['fb99']))} µs | {pc} | {cc} | {errs} |")
    w("")
    w("</details>")
    w("")

    # Verdicts.
    w("## Targets")
    w("")
    w(f"For each Switchyard path: added p50 and p99 at {rate} req/s no worse than "
      f"{P50_FACTOR}× nginx's, max req/s at least {RPS_FACTOR}× nginx's, peak RSS (VmHWM) "
      f"under {RSS_LIMIT_MB:g} MB.")
    w("")
    sy_paths = [p for p in paths if p.startswith("switchyard")]
    nginx_ok = meta.get("nginx", {}).get("status") == "ok"
    if not sy_paths:
        w("No Switchyard path was requested.")
    for p in sy_paths:
        if meta[p].get("status") != "ok":
            w(f"- **{p}**: not measured ({meta[p].get('status', 'not run')}).")
            continue
        if not nginx_ok:
            w(f"- **{p}**: nginx was not measured, so only the RSS target can be judged.")
        w("")
        w(f"**{p}**")
        w("")
        w("| Target | " + " | ".join(MODE_LABEL[m] for m in MODES) + " |")
        w("|---|" + "---|" * len(MODES))

        def ratio_cell(mine, ref, factor, higher_is_better, unit, digits=0):
            if mine is None or ref is None:
                return "n/a"
            if ref <= 0:
                return f"{fmt(mine, digits)}{unit} vs nginx {fmt(ref, digits)}{unit}: n/a (nginx ≤ 0, noise)"
            ratio = mine / ref
            ok = mine >= factor * ref if higher_is_better else mine <= factor * ref
            return (f"{fmt(mine, digits)}{unit} vs nginx {fmt(ref, digits)}{unit} "
                    f"({ratio:.2f}×) **{'PASS' if ok else 'FAIL'}**")

        row50, row99, rowrps = [], [], []
        for m in MODES:
            if nginx_ok:
                row50.append(ratio_cell(added(p, m, "p50"), added("nginx", m, "p50"), P50_FACTOR, False, " µs"))
                row99.append(ratio_cell(added(p, m, "p99"), added("nginx", m, "p99"), P99_FACTOR, False, " µs"))
                mx = res[(p, m)]["max"]
                nx = res[("nginx", m)]["max"]
                rowrps.append(ratio_cell(mx["rps"] if mx else None, nx["rps"] if nx else None,
                                         RPS_FACTOR, True, " req/s"))
            else:
                row50.append("n/a")
                row99.append("n/a")
                rowrps.append("n/a")
        w(f"| added p50 ≤ {P50_FACTOR}× nginx | " + " | ".join(row50) + " |")
        w(f"| added p99 ≤ {P99_FACTOR}× nginx | " + " | ".join(row99) + " |")
        w(f"| max req/s ≥ {RPS_FACTOR}× nginx | " + " | ".join(rowrps) + " |")
        cpu_cells = []
        for m in MODES:
            mine = res[(p, m)]["cpu"]
            ref = res.get(("nginx", m), {}).get("cpu") if nginx_ok else None
            if mine and ref and ref["us_per_req"] > 0:
                cpu_cells.append(f"{mine['us_per_req']:.1f} µs vs nginx {ref['us_per_req']:.1f} µs "
                                 f"({mine['us_per_req'] / ref['us_per_req']:.2f}×)")
            else:
                cpu_cells.append("n/a")
        w("| *(info)* proxy CPU per request at max throughput | " + " | ".join(cpu_cells) + " |")
        mb = rss_mb(p)
        rss = "n/a" if mb is None else f"{mb:.1f} MB **{'PASS' if mb < RSS_LIMIT_MB else 'FAIL'}**"
        w(f"| peak RSS < {RSS_LIMIT_MB:g} MB (whole run) | " + " | ".join([rss] * len(MODES)) + " |")
        w("")

    # Reading notes generated from the data.
    notes = []
    for p in paths:
        if p == "direct" or meta[p].get("status") != "ok":
            continue
        for m in MODES:
            cores = res[(p, m)]["cores"]
            proxy, client = cores.get("proxy"), cores.get("client")
            if proxy is not None and client is not None and client >= 90 and proxy < 85:
                notes.append(
                    f"{p} {m}: at max throughput the load generator's core was {client:.0f} % busy "
                    f"and the proxy core only {proxy:.0f} %, so the client was the limit; compare "
                    f"*proxy CPU per req* rather than max req/s for this row.")
        for m in MODES:
            for kind in ("rate", "max"):
                s = res[(p, m)][kind]
                if s and s["total"] and s["ok_ratio"] < 0.999:
                    notes.append(f"{p} {m} {kind}: only {s['ok_ratio'] * 100:.2f} % of requests succeeded.")
    for m in MODES:
        d = res.get(("direct", m), {}).get("rate")
        if d and d["total"] and d["rps"] < 0.95 * float(rate):
            notes.append(f"direct {m}: achieved only {d['rps']:.0f} req/s of the {rate} requested.")
    if notes:
        w("## Notes")
        w("")
        for n in notes:
            w(f"- {n}")
        w("")
    w(f"_Measurement time: {run.get('elapsed', '?')} s. Raw oha JSON: `bench/results/raw/`._")
    print("\n".join(out))


if __name__ == "__main__":
    main()
