#!/usr/bin/env python3
"""Turn the raw results of bench/run.sh into a Markdown report (stdout).

usage: report.py RAW_DIR

RAW_DIR holds run.env (key=value facts about the run), <path>.env per path
(status, proxy CPU ticks per round, peak RSS), oha's JSON output
<path>-<mode>-<kind>-r<round>.json (mode nonstream|stream, kind rate|max),
/proc/stat extracts around each max run (.stat0/.stat1) and background-load
samples (background-*.pct). Standard library only.

Each measurement is run in several rounds; a figure in the summary is the best
round for that figure (lowest latency, highest throughput, lowest CPU per
request), since disturbance from other work only ever makes a figure worse.
The details list every round. The targets are judged on those best-of figures,
and again round by round (each round against the same round's nginx and direct,
median over the rounds) as a check on how much a verdict owes to one round.

paired-<mode>.json, when present, is examples/bench_paired.rs's output: the
fixed-rate latencies of every path measured in one interleaved run, with 95 %
confidence intervals. The latency targets are judged on it a third time, and
that verdict is the one that holds when the views disagree (bench/README.md).
paired-max-<mode>.json is the same tool's --max run: nginx's and the relay's max
throughput, interleaved, which judges the throughput target the same way.
"""
import json
import os
import sys

MODES = ("nonstream", "stream")
KINDS = ("rate", "max")
MODE_LABEL = {"nonstream": "non-stream", "stream": "stream (20 SSE chunks)"}
# Targets for every switchyard* path, relative to nginx.
P50_FACTOR = 1.25
P99_FACTOR = 1.25
RPS_FACTOR = 0.8
RSS_LIMIT_MB = 30.0  # MB = 10^6 bytes
NOISY_PCT = 10


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


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def read_pct(path):
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (FileNotFoundError, ValueError):
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
    """'0', '0-1', '0,2' -> set of ints; 'all' or '' -> None (all)."""
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


def best(values, pick):
    values = [v for v in values if v is not None]
    return pick(values) if values else None


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


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


def targets_table(w, caption, rows):
    """A verdict table: the caption, then one row per (label, cell for a mode) target."""
    w(caption)
    w("")
    w("| Target | " + " | ".join(MODE_LABEL[m] for m in MODES) + " |")
    w("|---|" + "---|" * len(MODES))
    for label, cell in rows:
        w(f"| {label} | " + " | ".join(cell(m) for m in MODES) + " |")
    w("")


def paired_verdicts(w, p, rounds_of, rounds):
    """The same targets judged round by round. Each round runs every path back to back, so
    one round's relay, nginx and direct figures share that round's conditions; the best-of
    table above takes each path's figures from whichever round suited it, and an unusually
    quiet round for the direct path alone moves both added latencies at once."""
    def per_round(path, m, k, key):
        return [s[key] if s else None for s in rounds_of[(path, m, k)]]

    def added(path, m, key):
        return [None if a is None or d is None else us(a - d)
                for a, d in zip(per_round(path, m, "rate", key), per_round("direct", m, "rate", key))]

    def latency_cell(m, key, factor):
        mine, ref = added(p, m, key), added("nginx", m, key)
        wins = sum(1 for a, b in zip(mine, ref) if a is not None and b is not None and a <= factor * b)
        judged = sum(1 for a, b in zip(mine, ref) if a is not None and b is not None)
        mine_med, ref_med = median(mine), median(ref)
        if mine_med is None or ref_med is None:
            return "n/a"
        if ref_med <= 0:
            return f"{fmt_signed(mine_med)} vs nginx {fmt_signed(ref_med)} µs: n/a (nginx ≤ 0: noise)"
        ok = mine_med <= factor * ref_med
        return (f"{fmt_signed(mine_med)} vs nginx {fmt_signed(ref_med)} µs "
                f"({fmt_ratio(mine_med / ref_med, factor)}×, {wins} of {judged} rounds within) "
                f"**{'PASS' if ok else 'FAIL'}**")

    def throughput_cell(m):
        ratios = [a / b for a, b in zip(per_round(p, m, "max", "rps"), per_round("nginx", m, "max", "rps"))
                  if a is not None and b]
        if not ratios:
            return "n/a"
        ratio = median(ratios)
        spread = f"{fmt_ratio(min(ratios), RPS_FACTOR)}–{fmt_ratio(max(ratios), RPS_FACTOR)}"
        ok = ratio >= RPS_FACTOR
        return f"median {fmt_ratio(ratio, RPS_FACTOR)}× (rounds {spread}) **{'PASS' if ok else 'FAIL'}**"

    targets_table(w, f"*{p}, paired by round* (a round's figures against the same round's nginx and "
                     f"direct; the median over {rounds} rounds):", [
        (f"added p50 ≤ {P50_FACTOR}× nginx", lambda m: latency_cell(m, "p50", P50_FACTOR)),
        (f"added p99 ≤ {P99_FACTOR}× nginx", lambda m: latency_cell(m, "p99", P99_FACTOR)),
        (f"max req/s ≥ {RPS_FACTOR}× nginx", throughput_cell),
    ])


def fmt_ratio(value, target):
    """Two decimals, or as many more as it takes not to print a value beside a target as the
    target itself (0.7996 next to 0.8 is not 0.80)."""
    for digits in (2, 3, 4):
        text = f"{value:.{digits}f}"
        if value == target or float(text) != target:
            return text
    return text


def fmt_ratios(ratio, ci, target):
    return f"{fmt_ratio(ratio, target)}× [{fmt_ratio(ci[0], target)}, {fmt_ratio(ci[1], target)}]"


def fmt_ci(ci, digits=0, signed=False):
    if not ci or any(v is None for v in ci):
        return "n/a"
    f = fmt_signed if signed else fmt
    return f"[{f(ci[0], digits)}, {f(ci[1], digits)}]"


def interleaved_results(w, paired, rate, rate_conns):
    """The interleaved run's figures: every path's percentiles and what it adds to direct."""
    settings = next(iter(paired.values()))["settings"]
    w("## Interleaved latency")
    w("")
    w(f"One run per mode with every path: {rate} req/s on {rate_conns} connections per path, "
      f"{settings['seconds_per_path']} s per path in slices of {settings['slice_ms']} ms that go to "
      f"the paths in turn, in a shuffled order in each of {settings['cycles']} cycles (the first "
      f"{settings['warmup_ms']} ms of each slice and a first cycle not counted). Latency counts from "
      f"when the schedule released a request. 95 % confidence intervals from {settings['resamples']:,} resamples "
      f"of whole cycles (`examples/bench_paired.rs`).")
    w("")
    w("| Path | Mode | p50 | p99 | p99.9 | added p50 [95 % CI] | added p99 [95 % CI] | TTFB p50 | TTFB p99 |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for m in MODES:
        doc = paired.get(m)
        if not doc:
            continue
        for name, v in doc["total"]["paths"].items():
            fb = doc["first_byte"]["paths"][name]
            if "added_p50" in v:
                a50 = f"{fmt_signed(v['added_p50'])} µs {fmt_ci(v['added_p50_ci95'], signed=True)}"
                a99 = f"{fmt_signed(v['added_p99'])} µs {fmt_ci(v['added_p99_ci95'], signed=True)}"
            else:
                a50 = a99 = "—"
            w(f"| {name} | {MODE_LABEL[m]} | {fmt(v['p50'])} µs | {fmt(v['p99'])} µs | {fmt(v['p99.9'])} µs "
              f"| {a50} | {a99} | {fmt(fb['p50'])} µs | {fmt(fb['p99'])} µs |")
    w("")


def interleaved_throughput(w, paired_max, conns):
    """The interleaved max-throughput run's req/s per path."""
    settings = next(iter(paired_max.values()))["settings"]
    w("## Interleaved throughput")
    w("")
    w(f"One run per mode with nginx and every relay path: closed loop on {conns} connections per path "
      f"(each sends its next request when the last is answered), {settings['seconds_per_path']} s per "
      f"path in slices of {settings['slice_ms']} ms taken in turn in a shuffled order in each of "
      f"{settings['cycles']} cycles; the answers within the first {settings['warmup_ms']} ms of a "
      f"slice and the first cycle are not counted (`examples/bench_paired.rs --max`).")
    w("")
    w("| Path | " + " | ".join(f"{MODE_LABEL[m]} req/s" for m in MODES) + " |")
    w("|---|" + "--:|" * len(MODES))
    names = []
    for doc in paired_max.values():
        names += [n for n in doc["throughput"]["paths"] if n not in names]
    for name in names:
        cells = []
        for m in MODES:
            v = paired_max.get(m, {}).get("throughput", {}).get("paths", {}).get(name)
            cells.append(fmt(v["req_per_s"]) if v else "n/a")
        w(f"| {name} | " + " | ".join(cells) + " |")
    w("")


def interval_verdict(ci, target, higher_is_better):
    """PASS when the whole interval is on the target's good side, FAIL when it is all beyond it."""
    low, high = ci
    if higher_is_better:
        # Negated, a floor becomes a ceiling.
        low, high, target = -high, -low, -target
    if high <= target:
        return "PASS"
    if low > target:
        return "FAIL"
    return "NOT SETTLED"


def interleaved_verdicts(w, p, paired, paired_max):
    """The latency targets on the interleaved run: the ratio of the two added latencies with its
    confidence interval. A target passes when the whole interval is within it, fails when the
    whole interval is beyond it, and is not settled by this run otherwise."""
    def cell(m, key, factor):
        doc = paired.get(m)
        c = doc and doc["total"]["compare"].get(f"{p}:nginx")
        if not c:
            return "n/a"
        diff = f"{fmt_signed(c[f'{key}_difference'])} µs {fmt_ci(c[f'{key}_difference_ci95'], signed=True)}"
        ratio, ci = c.get(f"{key}_ratio"), c.get(f"{key}_ratio_ci95")
        if ratio is None or not ci or None in ci:
            paths = doc["total"]["paths"]
            unclear = [f"{name}'s" for name in (p, "nginx") if not paths[name][f"added_{key}_ci95"][0] > 0]
            if not unclear:
                return f"{diff} over nginx: n/a (no interval for the ratio)"
            latency = "latencies" if len(unclear) > 1 else "latency"
            return (f"{diff} over nginx: n/a ({' and '.join(unclear)} added {latency} not clearly above "
                    f"zero: the run's noise swamps it)")
        return f"{fmt_ratios(ratio, ci, factor)} ({diff} over nginx) **{interval_verdict(ci, factor, False)}**"

    def throughput_cell(m):
        doc = paired_max.get(m)
        c = doc and doc["throughput"]["compare"].get(f"{p}:nginx")
        if not c or c.get("ratio") is None or None in (c.get("ratio_ci95") or [None]):
            return "n/a"
        ratio, ci = c["ratio"], c["ratio_ci95"]
        paths = doc["throughput"]["paths"]
        return (f"{fmt_ratios(ratio, ci, RPS_FACTOR)} ({fmt(paths[p]['req_per_s'])} vs nginx "
                f"{fmt(paths['nginx']['req_per_s'])} req/s) **{interval_verdict(ci, RPS_FACTOR, True)}**")

    targets_table(w, f"*{p}, interleaved* (one run, every path in turn; the ratio of added latencies, "
                     f"or of req/s, with its 95 % confidence interval; PASS or FAIL only when the whole "
                     f"interval is on one side):", [
        (f"added p50 ≤ {P50_FACTOR}× nginx", lambda m: cell(m, "p50", P50_FACTOR)),
        (f"added p99 ≤ {P99_FACTOR}× nginx", lambda m: cell(m, "p99", P99_FACTOR)),
        (f"max req/s ≥ {RPS_FACTOR}× nginx", throughput_cell),
    ])


def main():
    raw = sys.argv[1]
    run = read_env(os.path.join(raw, "run.env"))
    paths = [p for p in run.get("paths", "direct").split(",") if p]
    rounds = int(run.get("rounds", "1"))
    clk = float(run.get("clk_tck", "100"))
    dur = run.get("duration", "?")
    rate = run.get("rate", "?")
    conns = run.get("conns", "?")
    rate_conns = run.get("rate_conns", "?")
    proxy_cpus = parse_cpus(run.get("proxy_cpus"))
    client_cpus = parse_cpus(run.get("client_cpus"))

    meta = {p: read_env(os.path.join(raw, f"{p}.env")) for p in paths}
    paired = {m: doc for m in MODES if (doc := read_json(os.path.join(raw, f"paired-{m}.json")))}
    paired_failed = {m: err.strip()[:300] for m in MODES
                     if m not in paired and (err := read_text(os.path.join(raw, f"paired-{m}.err"))) is not None}
    paired_max = {m: doc for m in MODES if (doc := read_json(os.path.join(raw, f"paired-max-{m}.json")))}
    for m in MODES:
        if m not in paired_max and (err := read_text(os.path.join(raw, f"paired-max-{m}.err"))) is not None:
            paired_failed[f"max {m}"] = err.strip()[:300]
    ok_paths = [p for p in paths if meta[p].get("status") == "ok"]

    # rounds_of[(path, mode, kind)] = [per-round dict or None]
    rounds_of = {}
    for p in ok_paths:
        for m in MODES:
            for k in KINDS:
                per = []
                for r in range(1, rounds + 1):
                    tag = f"{p}-{m}-{k}-r{r}"
                    s = oha_stats(read_json(os.path.join(raw, f"{tag}.json")))
                    if s is not None and k == "max":
                        ticks = meta[p].get(f"cpu_ticks_{m}_r{r}")
                        s["cpu"] = None
                        if p != "direct" and ticks is not None and s["ok"]:
                            cpu_s = int(ticks) / clk
                            s["cpu"] = {"us_per_req": cpu_s / s["ok"] * 1e6, "busy": cpu_s / s["wall"] * 100}
                        s0 = read_stat(os.path.join(raw, f"{tag}.stat0"))
                        s1 = read_stat(os.path.join(raw, f"{tag}.stat1"))
                        s["proxy_core"] = cores_busy(s0, s1, proxy_cpus)
                        s["client_core"] = cores_busy(s0, s1, client_cpus)
                    per.append(s)
                rounds_of[(p, m, k)] = per

    # Best-of-rounds summary per (path, mode).
    summary = {}
    for p in ok_paths:
        for m in MODES:
            rr = [s for s in rounds_of[(p, m, "rate")] if s]
            mx = [s for s in rounds_of[(p, m, "max")] if s]
            top = max(mx, key=lambda s: s["rps"]) if mx else None
            cpus = [s["cpu"] for s in mx if s.get("cpu")]
            summary[(p, m)] = {
                "p50": best([s["p50"] for s in rr], min),
                "p99": best([s["p99"] for s in rr], min),
                "rps": top["rps"] if top else None,
                "cpu": min(cpus, key=lambda c: c["us_per_req"]) if cpus else None,
                "top": top,
            }

    def added(p, m, key):
        a = summary.get((p, m), {}).get(key)
        d = summary.get(("direct", m), {}).get(key)
        if a is None or d is None:
            return None
        return us(a - d)

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
      f"keep-alive connections, latency-corrected (coordinated omission: latency is counted from "
      f"each request's scheduled send time). Max throughput: {conns} connections, as fast as possible.")
    w(f"- Each measurement: {rounds} round(s) of {dur} s; the paths take turns within each round, "
      f"in an order that rotates from round to round. "
      f"The tables give the best round per figure (lowest latency, highest req/s, lowest CPU per "
      f"request); the details list every round.")
    w(f"- Proxies: nginx {run.get('nginx', 'n/a')} ({run.get('nginx_workers', '?')} worker), "
      f"switchyard {run.get('switchyard', 'n/a')} ({run.get('switchyard_build', '?')} build, "
      f"SWITCHYARD_LOG={run.get('switchyard_log', '?')}).")
    w("- Upstream: `examples/bench_upstream.rs` (fixed answers, no delay; streams are 20 content "
      "chunks + a usage chunk + `[DONE]`, each event flushed separately).")
    w("- *added* = the path's latency percentile minus the direct path's; stream latency is the "
      "time to the complete stream.")
    bg_start = read_pct(os.path.join(raw, "background-start.pct"))
    bg = []
    for r in range(1, rounds + 1):
        for m in MODES:
            for k in KINDS:
                v = read_pct(os.path.join(raw, f"background-{m}-{k}-r{r}.pct"))
                if v is not None:
                    bg.append(v)
    w(f"- Background CPU load from other processes (whole machine, 1 s samples with the harness "
      f"idle, before each measurement): at start {fmt(bg_start, 0, ' %')}, then "
      + (", ".join(f"{v:.0f}" for v in bg) + " %" if bg else "n/a") + ".")
    w("")
    noisy = [v for v in [bg_start, *bg] if v is not None and v > NOISY_PCT]
    if noisy:
        w(f"> **Warning**: other work kept the machine up to {max(noisy):.0f} % busy during this run "
          f"({len(noisy)} of {len(bg) + 1} samples above {NOISY_PCT} %). Best-of-rounds filters some "
          f"of it, but treat the figures with care and rerun on an idle machine before quoting them.")
        w("")

    for p in paths:
        st = meta[p].get("status", "not run")
        if st != "ok":
            w(f"> **{p}**: {st}")
            w("")

    w("## Results")
    w("")
    w(f"| Path | Mode | p50 @{rate}/s | p99 @{rate}/s | added p50 | added p99 | max req/s @{conns} conns "
      f"| proxy CPU per req | proxy CPU use | peak RSS |")
    w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|")
    for p in ok_paths:
        for m in MODES:
            s = summary[(p, m)]
            cpu = s["cpu"]
            dash = p == "direct"
            w("| {} | {} | {} µs | {} µs | {} | {} | {} | {} | {} | {} |".format(
                p, MODE_LABEL[m], fmt(us(s["p50"])), fmt(us(s["p99"])),
                "—" if dash else fmt_signed(added(p, m, "p50")) + " µs",
                "—" if dash else fmt_signed(added(p, m, "p99")) + " µs",
                fmt(s["rps"]),
                "—" if dash else (fmt(cpu["us_per_req"], 1, " µs") if cpu else "n/a"),
                "—" if dash else (fmt(cpu["busy"], 0, " %") if cpu else "n/a"),
                "—" if dash else fmt(rss_mb(p), 1, " MB"),
            ))
    w("")
    w("*proxy CPU per req / use*: the proxy process's user+system CPU time during the max-throughput "
      "run, per successful request / as a share of one core (softirq work on loopback is not "
      "included).")
    w("")

    # Details: every round.
    w("<details><summary>Details: every round (success, achieved rate, p99.9, time to first byte, "
      "core load)</summary>")
    w("")
    w("| Path | Mode | run | round | ok / total | req/s | p50 | p99 | p99.9 | TTFB p50 | TTFB p99 "
      "| proxy core busy | oha core busy | errors |")
    w("|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
    for p in ok_paths:
        for m in MODES:
            for k in KINDS:
                for i, s in enumerate(rounds_of[(p, m, k)], start=1):
                    if not s:
                        w(f"| {p} | {m} | {k} | {i} | n/a | | | | | | | | | oha produced no result |")
                        continue
                    errs = ", ".join(f"{e}: {n}" for e, n in s["errors"].items()) or "none"
                    non200 = {c: n for c, n in s["codes"].items() if c != "200"}
                    if non200:
                        errs += "; HTTP " + ", ".join(f"{c}: {n}" for c, n in non200.items())
                    pc = fmt(s.get("proxy_core"), 0, " %") if k == "max" else ""
                    cc = fmt(s.get("client_core"), 0, " %") if k == "max" else ""
                    w(f"| {p} | {m} | {k} | {i} | {s['ok']:,} / {s['total']:,} | {fmt(s['rps'])} | "
                      f"{fmt(us(s['p50']))} µs | {fmt(us(s['p99']))} µs | {fmt(us(s['p999']))} µs | "
                      f"{fmt(us(s['fb50']))} µs | {fmt(us(s['fb99']))} µs | {pc} | {cc} | {errs} |")
    w("")
    w("</details>")
    w("")
    if paired:
        interleaved_results(w, paired, rate, rate_conns)
    if paired_max:
        interleaved_throughput(w, paired_max, conns)
    for m, why in paired_failed.items():
        w(f"> **Interleaved {m} run failed**: {why or 'no output'}")
        w("")

    # Verdicts.
    w("## Targets")
    w("")
    w(f"For each Switchyard path: added p50 and p99 at {rate} req/s no worse than "
      f"{P50_FACTOR}× nginx's, max req/s at least {RPS_FACTOR}× nginx's, peak RSS (VmHWM) "
      f"under {RSS_LIMIT_MB:g} MB.")
    w("")
    sy_paths = [p for p in paths if p.startswith("switchyard")]
    nginx_ok = "nginx" in ok_paths
    if not sy_paths:
        w("No Switchyard path was requested.")
        w("")
    for p in sy_paths:
        if p not in ok_paths:
            w(f"- **{p}**: not measured ({meta[p].get('status', 'not run')}).")
            w("")
            continue
        w(f"**{p}**" + ("" if nginx_ok else " (nginx was not measured: only the RSS target can be judged)"))
        w("")
        w("| Target | " + " | ".join(MODE_LABEL[m] for m in MODES) + " |")
        w("|---|" + "---|" * len(MODES))

        def ratio_cell(mine, ref, factor, higher_is_better, unit, digits=0):
            if mine is None or ref is None:
                return "n/a"
            if ref <= 0:
                return f"{fmt(mine, digits)}{unit} vs nginx {fmt(ref, digits)}{unit}: n/a (nginx ≤ 0: noise)"
            ratio = mine / ref
            ok = mine >= factor * ref if higher_is_better else mine <= factor * ref
            return (f"{fmt(mine, digits)}{unit} vs nginx {fmt(ref, digits)}{unit} "
                    f"({fmt_ratio(ratio, factor)}×) **{'PASS' if ok else 'FAIL'}**")

        rows = {"p50": [], "p99": [], "rps": [], "cpu": []}
        for m in MODES:
            if not nginx_ok:
                for v in rows.values():
                    v.append("n/a")
                continue
            rows["p50"].append(ratio_cell(added(p, m, "p50"), added("nginx", m, "p50"), P50_FACTOR, False, " µs"))
            rows["p99"].append(ratio_cell(added(p, m, "p99"), added("nginx", m, "p99"), P99_FACTOR, False, " µs"))
            rows["rps"].append(ratio_cell(summary[(p, m)]["rps"], summary[("nginx", m)]["rps"],
                                          RPS_FACTOR, True, " req/s"))
            mine, ref = summary[(p, m)]["cpu"], summary[("nginx", m)]["cpu"]
            if mine and ref and ref["us_per_req"] > 0:
                rows["cpu"].append(f"{mine['us_per_req']:.1f} µs vs nginx {ref['us_per_req']:.1f} µs "
                                   f"({mine['us_per_req'] / ref['us_per_req']:.2f}×)")
            else:
                rows["cpu"].append("n/a")
        w(f"| added p50 ≤ {P50_FACTOR}× nginx | " + " | ".join(rows["p50"]) + " |")
        w(f"| added p99 ≤ {P99_FACTOR}× nginx | " + " | ".join(rows["p99"]) + " |")
        w(f"| max req/s ≥ {RPS_FACTOR}× nginx | " + " | ".join(rows["rps"]) + " |")
        w("| *(info)* proxy CPU per request | " + " | ".join(rows["cpu"]) + " |")
        mb = rss_mb(p)
        rss = "n/a" if mb is None else f"{mb:.1f} MB **{'PASS' if mb < RSS_LIMIT_MB else 'FAIL'}**"
        w(f"| peak RSS < {RSS_LIMIT_MB:g} MB (whole run) | " + " | ".join([rss] * len(MODES)) + " |")
        w("")
        if nginx_ok and rounds > 1:
            paired_verdicts(w, p, rounds_of, rounds)
        if nginx_ok and (paired or paired_max):
            interleaved_verdicts(w, p, paired, paired_max)

    # Reading notes generated from the data.
    notes = []
    for p in ok_paths:
        if p == "direct":
            continue
        for m in MODES:
            top = summary[(p, m)]["top"]
            if top and top.get("proxy_core") is not None and top.get("client_core") is not None:
                if top["client_core"] >= 90 and top["proxy_core"] < 85:
                    notes.append(
                        f"{p} {m}: at max throughput the load generator's core was "
                        f"{top['client_core']:.0f} % busy and the proxy's only {top['proxy_core']:.0f} %, "
                        f"so the client was the limit; compare *proxy CPU per req* for this row.")
    for p in ok_paths:
        for m in MODES:
            for k in KINDS:
                for i, s in enumerate(rounds_of[(p, m, k)], start=1):
                    if s and s["total"] and s["ok"] < 0.999 * s["total"]:
                        notes.append(f"{p} {m} {k} round {i}: only {s['ok'] / s['total'] * 100:.2f} % "
                                     f"of requests succeeded.")
                    if s and k == "rate" and rate.isdigit() and s["rps"] < 0.95 * int(rate):
                        notes.append(f"{p} {m} round {i}: achieved only {s['rps']:.0f} of {rate} req/s.")
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
