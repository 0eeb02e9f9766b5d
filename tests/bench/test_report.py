"""The benchmark report's verdicts (bench/report.py): what it passes, fails or leaves open, and
how it prints ratios that sit next to a target."""
import importlib.util
import pathlib

import pytest

REPORT = pathlib.Path(__file__).resolve().parents[2] / "bench" / "report.py"
spec = importlib.util.spec_from_file_location("bench_report", REPORT)
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


@pytest.mark.parametrize("value, target, printed", [
    (0.82, 0.8, "0.82"),
    (0.8, 0.8, "0.80"),
    (0.7996, 0.8, "0.7996"),
    (0.8004, 0.8, "0.8004"),
    (1.2549, 1.25, "1.255"),
    (1.2537, 1.25, "1.254"),
    (1.2499, 1.25, "1.2499"),
])
def test_a_ratio_beside_a_target_is_never_printed_as_the_target(value, target, printed):
    assert report.fmt_ratio(value, target) == printed


def latency_doc(ratio, ci, relay_added_ci, nginx_added_ci):
    compare = {
        "switchyard:nginx": {
            "p50_difference": 10.0, "p50_difference_ci95": [5.0, 15.0], "p50_ratio": ratio, "p50_ratio_ci95": ci,
            "p99_difference": 10.0, "p99_difference_ci95": [5.0, 15.0], "p99_ratio": ratio, "p99_ratio_ci95": ci,
        }
    }
    added = {"switchyard": relay_added_ci, "nginx": nginx_added_ci}
    paths = {name: {"added_p50_ci95": a, "added_p99_ci95": a} for name, a in added.items()}
    return {"total": {"compare": compare, "paths": paths}}


def throughput_doc(ci):
    return {"throughput": {
        "compare": {"switchyard:nginx": {"ratio": (ci[0] + ci[1]) / 2, "ratio_ci95": ci}},
        "paths": {"switchyard": {"req_per_s": 25_000.0}, "nginx": {"req_per_s": 30_000.0}},
    }}


def verdict_rows(paired, paired_max):
    lines = []
    report.interleaved_verdicts(lines.append, "switchyard", paired, paired_max)
    return {line.split(" | ")[0].lstrip("| "): line for line in lines if line.startswith(("| added", "| max"))}


def test_latency_ratios_pass_fail_or_stay_open_on_the_whole_interval():
    rows = verdict_rows(
        {"nonstream": latency_doc(1.16, [1.08, 1.24], [60.0, 70.0], [50.0, 60.0]),
         "stream": latency_doc(1.18, [1.11, 1.2537], [60.0, 70.0], [50.0, 60.0])},
        {"nonstream": throughput_doc([0.82, 0.86]), "stream": throughput_doc([0.7996, 0.84])},
    )
    p50 = rows["added p50 ≤ 1.25× nginx"]
    nonstream, stream = p50.split(" | ")[1:3]
    assert "1.16× [1.08, 1.24]" in nonstream and "**PASS**" in nonstream
    assert "1.18× [1.11, 1.254]" in stream and "**NOT SETTLED**" in stream
    throughput = rows["max req/s ≥ 0.8× nginx"]
    nonstream, stream = throughput.split(" | ")[1:3]
    assert "**PASS**" in nonstream
    assert "[0.7996, 0.84]" in stream and "**NOT SETTLED**" in stream


def test_no_verdict_when_an_added_latency_is_not_clearly_above_zero():
    # Run 2 of 2026-11-22: the relay's added stream p99 was pushed below zero by stalls.
    rows = verdict_rows(
        {"nonstream": latency_doc(None, None, [20.0, 40.0], [-10.0, 30.0]),
         "stream": latency_doc(None, None, [-424.0, 801.0], [147.0, 1790.0])},
        {},
    )
    nonstream, stream = rows["added p99 ≤ 1.25× nginx"].split(" | ")[1:3]
    assert "n/a (nginx's added latency not clearly above zero" in nonstream
    assert "PASS" not in nonstream and "FAIL" not in nonstream
    assert "n/a (switchyard's added latency not clearly above zero" in stream
    assert "PASS" not in stream
