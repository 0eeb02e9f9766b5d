#!/usr/bin/env python3
"""Generate (or check) the Prometheus Operator PrometheusRule from the alert rules.

Single source of truth: dashboards/alerts/switchyard.rules.yml (a plain
Prometheus rule file, used as is by the compose stack and `promtool test
rules`). The Kubernetes overlay needs the same groups wrapped in a
PrometheusRule custom resource. kustomize cannot embed a file into a resource's
spec, so the overlay keeps a generated copy, committed so that
`kubectl apply -k deploy/kubernetes/overlays/prometheus-operator` works from a
plain checkout:

    python3 tests/deploy/gen_prometheusrule.py            # regenerate the copy
    python3 tests/deploy/gen_prometheusrule.py --check    # CI: fail if it drifted

--check compares the parsed rule groups (semantic equality, so formatting and
comments do not matter) and fails, listing the differing rules, when the copy
is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "dashboards" / "alerts" / "switchyard.rules.yml"
OUT = ROOT / "deploy" / "kubernetes" / "overlays" / "prometheus-operator" / "prometheusrule.yaml"

HEADER = """\
# GENERATED FILE - do not edit by hand.
# Source: dashboards/alerts/switchyard.rules.yml
# Regenerate: python3 tests/deploy/gen_prometheusrule.py
# (tests/deploy/validate.sh fails when this copy differs from the source.)
"""

METADATA = {
    "name": "switchyard",
    "labels": {
        "app.kubernetes.io/name": "switchyard",
        # kube-prometheus-stack selects rules by its release label by default.
        "release": "kube-prometheus-stack",
    },
}


class _Dumper(yaml.SafeDumper):
    pass


def _str_representer(dumper: yaml.SafeDumper, value: str):
    if "\n" in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str_representer)


def load_rules(path: Path = RULES) -> dict:
    if not path.is_file():
        raise SystemExit(f"gen_prometheusrule: {path.relative_to(ROOT)} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list) or not data["groups"]:
        raise SystemExit(f"gen_prometheusrule: {path.relative_to(ROOT)} has no `groups` list")
    extra = set(data) - {"groups"}
    if extra:
        raise SystemExit(f"gen_prometheusrule: unexpected top-level keys in rules file: {sorted(extra)}")
    return data


def build(rules: dict) -> dict:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": METADATA,
        "spec": {"groups": rules["groups"]},
    }


def render(rules: dict) -> str:
    body = yaml.dump(build(rules), Dumper=_Dumper, sort_keys=False, width=100000, allow_unicode=True)
    return HEADER + body


def _rule_index(groups: list) -> dict:
    out = {}
    for g in groups or []:
        for i, r in enumerate(g.get("rules") or []):
            name = r.get("alert") or r.get("record") or f"#{i}"
            out[(g.get("name"), name)] = r
    return out


def check(rules: dict, out: Path = OUT) -> list[str]:
    problems: list[str] = []
    if not out.is_file():
        return [f"{out.relative_to(ROOT)} is missing"]
    doc = yaml.safe_load(out.read_text())
    if not isinstance(doc, dict):
        return [f"{out.relative_to(ROOT)} is not a YAML mapping"]
    if doc.get("apiVersion") != "monitoring.coreos.com/v1" or doc.get("kind") != "PrometheusRule":
        problems.append("apiVersion/kind must be monitoring.coreos.com/v1 PrometheusRule")
    if (doc.get("metadata") or {}).get("name") != METADATA["name"]:
        problems.append("metadata.name must be 'switchyard'")
    spec = doc.get("spec") or {}
    if set(spec) != {"groups"}:
        problems.append(f"spec must hold only `groups`, has {sorted(spec)}")
    want, have = rules["groups"], spec.get("groups")
    if want != have:
        wi, hi = _rule_index(want), _rule_index(have)
        for k in sorted(set(wi) | set(hi), key=str):
            if k not in hi:
                problems.append(f"rule {k[1]} (group {k[0]}) missing from the PrometheusRule")
            elif k not in wi:
                problems.append(f"rule {k[1]} (group {k[0]}) is in the PrometheusRule but not in the rules file")
            elif wi[k] != hi[k]:
                problems.append(f"rule {k[1]} (group {k[0]}) differs")
        if [g.get("name") for g in want] != [g.get("name") for g in (have or [])]:
            problems.append("group names/order differ")
        if not problems:
            problems.append("group settings (interval, labels, limit, ...) differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate or check the PrometheusRule copy of the alert rules.")
    ap.add_argument("--check", action="store_true", help="fail if the committed copy differs from the rules file")
    ap.add_argument("--stdout", action="store_true", help="print the generated resource instead of writing it")
    args = ap.parse_args(argv)
    rules = load_rules()
    if args.check:
        problems = check(rules)
        if problems:
            print("PrometheusRule is out of date with dashboards/alerts/switchyard.rules.yml:", file=sys.stderr)
            for p in problems:
                print(f"  - {p}", file=sys.stderr)
            print("fix: python3 tests/deploy/gen_prometheusrule.py", file=sys.stderr)
            return 1
        n = sum(len(g.get("rules") or []) for g in rules["groups"])
        print(f"PrometheusRule matches the rules file ({len(rules['groups'])} groups, {n} rules)")
        return 0
    text = render(rules)
    if args.stdout:
        sys.stdout.write(text)
    else:
        OUT.write_text(text)
        print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
