"""PromQL helpers for the Prometheus end-to-end test.

- Extract every query from the Grafana dashboards (panels, panels nested in
  collapsed rows, template variables).
- Substitute Grafana's template variables so that Prometheus can run them.
- Split an alert expression into the parts whose data must exist ("probes").

Why probes: an alert expression is a filter. In a healthy system
`switchyard_upstream_healthy == 0` is rightly empty, and `A unless B` is empty
whenever B matches. Asserting "the alert expression returns data" would then
test the traffic, not the query. So every alert expression is run as written
and must be *valid*; in addition each operand that the alert's condition is
made of must *return data*:

  A or B, A and B   -> probes(A) + probes(B)
  A unless B        -> probes(A); B is only checked for validity (B being
                       empty is what makes an `unless` fire)
  A <cmp> B         -> probes(A) + probes(B), where <cmp> is one of
                       == != > < >= <= (with optional `bool`); a plain number
                       such as `(14.4 * 0.005)` is not a probe
  anything else     -> the expression itself must return data

Operators are only split at the top level (outside parentheses, braces,
brackets and strings), lowest precedence first (`or`, then `and`/`unless`,
then comparisons), at their last occurrence (PromQL binary operators are
left-associative), which is exactly how PromQL itself parses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

# What Grafana would substitute, chosen to fit a Prometheus that scrapes every
# second and has run for about a minute.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}

# `$name`, `${name}` and `${name:format}`.
VAR_RE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str

    @property
    def test_id(self) -> str:
        return f"{self.dashboard}:{self.panel_id}:{self.ref_id}:{self.panel_title}"


def load_dashboard(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def iter_panels(dashboard: dict):
    """All panels, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        for nested in panel.get("panels", []) or []:
            yield nested


def dashboard_queries(path: Path) -> list[PanelQuery]:
    d = load_dashboard(path)
    out = []
    for panel in iter_panels(d):
        for target in panel.get("targets", []) or []:
            out.append(PanelQuery(path.stem, panel.get("id"), panel.get("title", ""), target.get("refId", ""), target.get("expr", "")))
    return out


def template_variables(dashboard: dict) -> dict[str, dict]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


def variable_query(var: dict) -> str:
    q = var.get("query")
    if isinstance(q, dict):
        q = q.get("query", "")
    return q or ""


def referenced_variables(expr: str) -> list[str]:
    return [m.group("braced") or m.group("plain") for m in VAR_RE.finditer(expr)]


def substitute(expr: str, user_variables) -> str:
    """Replace Grafana variables the way a dashboard set to "All" would.

    User variables (model, upstream, key) are multi-value with allValue ".*",
    and are only ever used as `label=~"$var"`, so "All" becomes `.*`.
    Unknown variables are left alone (the static dashboard test reports them).
    """
    user_variables = set(user_variables)

    def repl(m: re.Match) -> str:
        name = m.group("braced") or m.group("plain")
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        if name in user_variables:
            return ".*"
        return m.group(0)

    return VAR_RE.sub(repl, expr)


# ------------------------------------------------------------------ probes ---

_IDENT = re.compile(r"[A-Za-z0-9_:]")
_OPEN = "([{"
_CLOSE = ")]}"
_COMPARISONS = ("==", "!=", ">=", "<=", ">", "<")
_MODIFIERS = re.compile(
    r"^\s*(?:bool\b\s*)?"
    r"(?:(?:on|ignoring)\s*\([^)]*\)\s*)?"
    r"(?:(?:group_left|group_right)\s*(?:\([^)]*\))?\s*)?",
)
_NUMBER_EXPR = re.compile(r"^[\s0-9.eE+\-*/%^()]+$")


def _top_level_ops(expr: str):
    """Yield (position, operator) for binary set/comparison operators at depth 0."""
    depth = 0
    i = 0
    n = len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            # Skip a string literal (with backslash escapes, except in backticks).
            q = c
            i += 1
            while i < n and expr[i] != q:
                if expr[i] == "\\" and q != "`":
                    i += 1
                i += 1
            i += 1
            continue
        if c == "#":
            # Comment until end of line.
            while i < n and expr[i] != "\n":
                i += 1
            continue
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        elif depth == 0:
            for word in ("and", "or", "unless"):
                if (
                    expr.startswith(word, i)
                    and (i == 0 or not _IDENT.match(expr[i - 1]))
                    and (i + len(word) == n or not _IDENT.match(expr[i + len(word)]))
                ):
                    yield i, word
                    i += len(word)
                    break
            else:
                for op in _COMPARISONS:
                    if expr.startswith(op, i):
                        yield i, op
                        i += len(op)
                        break
                else:
                    i += 1
                continue
            continue
        i += 1


def _strip_outer_parens(expr: str) -> str:
    e = expr.strip()
    while e.startswith("(") and e.endswith(")"):
        depth = 0
        wraps = True
        for i, c in enumerate(e):
            if c in _OPEN:
                depth += 1
            elif c in _CLOSE:
                depth -= 1
                if depth == 0 and i != len(e) - 1:
                    wraps = False
                    break
        if not wraps:
            break
        e = e[1:-1].strip()
    return e


def _split(expr: str, ops) -> tuple[str, str, str] | None:
    last = None
    for pos, op in _top_level_ops(expr):
        if op in ops:
            last = (pos, op)
    if last is None:
        return None
    pos, op = last
    lhs = expr[:pos]
    rhs = expr[pos + len(op):]
    rhs = rhs[_MODIFIERS.match(rhs).end():]
    return lhs, op, rhs


def probes(expr: str) -> list[tuple[str, bool]]:
    """Split an expression into (sub-expression, must_return_data) pairs."""
    e = _strip_outer_parens(expr)
    if _NUMBER_EXPR.match(e):
        return []
    s = _split(e, ("or",))
    if s:
        return probes(s[0]) + probes(s[2])
    s = _split(e, ("and", "unless"))
    if s:
        lhs, op, rhs = s
        if op == "and":
            return probes(lhs) + probes(rhs)
        return probes(lhs) + [(_strip_outer_parens(rhs), False)]
    s = _split(e, _COMPARISONS)
    if s:
        return probes(s[0]) + probes(s[2])
    return [(e, True)]
