#!/usr/bin/env python3
"""Static checks of Switchyard's deployment assets (no container engine, no cluster).

Called by tests/deploy/validate.sh, one subcommand per area; each prints one
line per check and exits non-zero if any check failed:

    check_deploy.py k8s RENDER_DIR        rendered kustomize output: schemas + policy
    check_deploy.py compose CONFIG_JSON   `docker compose config --format json` output
    check_deploy.py grafana               provisioning files + every dashboards/**/*.json
    check_deploy.py dockerfile            Dockerfile / .dockerignore contract
    check_deploy.py configs               the shipped switchyard.toml files
    check_deploy.py selftest              the checkers reject known-bad input
"""

from __future__ import annotations

import copy
import functools
import json
import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported (preStop sleep action) and newest
DATASOURCE_UID = "prometheus"
DATASOURCE_VAR_REFS = {"${datasource}", "$datasource", "[[datasource]]"}
DRAIN_SECONDS = 30  # server.shutdown_grace


class Checker:
    def __init__(self, area: str):
        self.area = area
        self.passed = 0
        self.failed = 0

    def check(self, cond: Any, what: str, detail: str = "") -> bool:
        if cond:
            self.passed += 1
            print(f"  ok   {what}")
        else:
            self.failed += 1
            print(f"  FAIL {what}" + (f": {detail}" if detail else ""))
        return bool(cond)

    def done(self) -> int:
        print(f"{self.area}: {self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def rel(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


# ---------------------------------------------------------------------------
# Prometheus Operator CRDs: strict JSON schema from the cloudcoil models
# (generated from the operator's CRD OpenAPI schemas). The CRDs themselves do
# not forbid unknown fields (the API server silently prunes them), so we add
# additionalProperties: false to every object that declares properties:
# a typo in a ServiceMonitor is an error here rather than a silent no-op.
# ---------------------------------------------------------------------------
def _strictify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strictify(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strictify(v) for v in node]
    return node


@functools.lru_cache(maxsize=None)
def crd_validator(kind: str):
    import jsonschema
    from cloudcoil.models.prometheus_operator import v1 as po

    model = {"ServiceMonitor": po.ServiceMonitor, "PrometheusRule": po.PrometheusRule}.get(kind)
    if model is None:
        return None
    schema = _strictify(model.model_json_schema(by_alias=True, mode="validation"))
    # Standard object metadata carries arbitrary fields we do not model strictly.
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    schema["properties"]["apiVersion"] = {"const": "monitoring.coreos.com/v1"}
    schema["properties"]["kind"] = {"const": kind}
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def validate_crd(doc: dict) -> list[str]:
    v = crd_validator(doc.get("kind", ""))
    if v is None:
        return [f"no schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    errs = sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errs]


def validate_core(doc: dict, version: str) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"]
    except kubernetes_validate.SchemaNotFoundError as e:
        return [e.message]
    return []


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _duration_seconds(s: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", str(s).strip())
    if not m:
        raise ValueError(f"unparsable duration {s!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def k8s_policy(c: Checker, docs: list[dict], name: str) -> None:
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    for kind in ("Deployment", "Service", "ConfigMap", "HorizontalPodAutoscaler",
                 "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"):
        c.check(len(by_kind.get(kind, [])) == 1, f"[{name}] exactly one {kind}", f"found {len(by_kind.get(kind, []))}")
    deps = by_kind.get("Deployment") or [{}]
    dep = deps[0]
    pod = (((dep.get("spec") or {}).get("template") or {}).get("spec")) or {}
    ctrs = pod.get("containers") or [{}]
    ctr = ctrs[0]
    psc = pod.get("securityContext") or {}
    csc = ctr.get("securityContext") or {}
    c.check("replicas" not in (dep.get("spec") or {}), f"[{name}] Deployment leaves replicas to the HPA")
    c.check(psc.get("runAsNonRoot") is True and csc.get("runAsNonRoot", True) is True, f"[{name}] runAsNonRoot")
    c.check(isinstance(psc.get("runAsUser"), int) and psc.get("runAsUser") != 0, f"[{name}] numeric non-root runAsUser")
    c.check(csc.get("readOnlyRootFilesystem") is True, f"[{name}] readOnlyRootFilesystem")
    c.check(csc.get("allowPrivilegeEscalation") is False, f"[{name}] allowPrivilegeEscalation false")
    c.check((csc.get("capabilities") or {}).get("drop") == ["ALL"], f"[{name}] capabilities drop ALL")
    seccomp = (psc.get("seccompProfile") or csc.get("seccompProfile") or {}).get("type")
    c.check(seccomp == "RuntimeDefault", f"[{name}] seccomp RuntimeDefault", f"got {seccomp}")
    res = ctr.get("resources") or {}
    c.check(all(k in (res.get("requests") or {}) for k in ("cpu", "memory")), f"[{name}] cpu+memory requests")
    c.check("memory" in (res.get("limits") or {}), f"[{name}] memory limit")

    def probe(kind: str) -> dict:
        return ((ctr.get(kind) or {}).get("httpGet")) or {}

    c.check(probe("readinessProbe").get("path") == "/readyz", f"[{name}] readiness probe on /readyz")
    c.check(probe("livenessProbe").get("path") == "/healthz", f"[{name}] liveness probe on /healthz")
    ports = {p.get("name"): p.get("containerPort") for p in ctr.get("ports") or []}
    c.check(ports.get("http") == 8080, f"[{name}] container port http=8080")
    env = {e["name"]: e for e in ctr.get("env") or []}
    c.check((env.get("SWITCHYARD_LISTEN") or {}).get("value") == "0.0.0.0:8080", f"[{name}] SWITCHYARD_LISTEN=0.0.0.0:8080")
    cfg_path = (env.get("SWITCHYARD_CONFIG") or {}).get("value")
    c.check(cfg_path == "/etc/switchyard/switchyard.toml", f"[{name}] SWITCHYARD_CONFIG=/etc/switchyard/switchyard.toml")
    upstream_keys = [e for n, e in env.items() if n.endswith("_API_KEY") and n != "SWITCHYARD_API_KEY"]
    c.check(upstream_keys and all(((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("optional") is True
                                  for e in upstream_keys),
            f"[{name}] upstream keys come from a Secret, optional", f"{[e['name'] for e in upstream_keys]}")
    # Config: the ConfigMap mounted as a directory (no subPath), so the kubelet's
    # ..data swap reaches the process and hot reload works.
    vols = {v["name"]: v for v in pod.get("volumes") or []}
    cm_names = {(cm.get("metadata") or {}).get("name") for cm in by_kind.get("ConfigMap", [])}
    cfg_mounts = [m for m in ctr.get("volumeMounts") or []
                  if (vols.get(m["name"]) or {}).get("configMap", {}).get("name") in cm_names]
    c.check(len(cfg_mounts) == 1, f"[{name}] the ConfigMap is mounted once")
    for m in cfg_mounts:
        c.check("subPath" not in m and "subPathExpr" not in m, f"[{name}] config mount has no subPath (it would break hot reload)")
        c.check(m.get("mountPath") == "/etc/switchyard", f"[{name}] config mounted at /etc/switchyard")
        c.check(m.get("readOnly") is True, f"[{name}] config mount readOnly")
    for cm in by_kind.get("ConfigMap", []):
        n = cm["metadata"]["name"]
        c.check(n == "switchyard-config", f"[{name}] ConfigMap name has no hash suffix (updated in place)", n)
        c.check("switchyard.toml" in (cm.get("data") or {}), f"[{name}] ConfigMap holds switchyard.toml")
        try:
            conf = tomllib.loads(cm["data"]["switchyard.toml"])
            grace = _duration_seconds(conf.get("server", {}).get("shutdown_grace", f"{DRAIN_SECONDS}s"))
        except Exception as e:  # noqa: BLE001
            c.check(False, f"[{name}] ConfigMap switchyard.toml parses", str(e))
            grace = DRAIN_SECONDS
    # Shutdown: preStop sleep, then SIGTERM and the drain; all within the grace period.
    pre = ((ctr.get("lifecycle") or {}).get("preStop") or {})
    sleep = (pre.get("sleep") or {}).get("seconds")
    c.check(isinstance(sleep, int) and 1 <= sleep <= 15, f"[{name}] preStop sleep 1..15s", f"{pre}")
    tgps = pod.get("terminationGracePeriodSeconds")
    c.check(isinstance(tgps, int) and isinstance(sleep, int) and tgps >= sleep + grace + 5,
            f"[{name}] terminationGracePeriodSeconds >= preStop + drain ({grace:.0f}s) + 5s margin", f"{tgps}")
    hpa = (by_kind.get("HorizontalPodAutoscaler") or [{}])[0]
    c.check(hpa.get("apiVersion") == "autoscaling/v2", f"[{name}] HPA is autoscaling/v2")
    c.check((hpa.get("spec") or {}).get("scaleTargetRef", {}).get("name") == dep.get("metadata", {}).get("name"),
            f"[{name}] HPA targets the Deployment")
    c.check(((hpa.get("spec") or {}).get("minReplicas") or 1) >= 2, f"[{name}] HPA minReplicas >= 2 (PDB can allow a disruption)")
    pod_labels = (((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}

    def selects(sel: dict) -> bool:
        ml = (sel or {}).get("matchLabels") or {}
        return bool(ml) and all(pod_labels.get(k) == v for k, v in ml.items())

    pdb = (by_kind.get("PodDisruptionBudget") or [{}])[0]
    c.check(selects((pdb.get("spec") or {}).get("selector")), f"[{name}] PDB selects the pods")
    svc = (by_kind.get("Service") or [{}])[0]
    sel = (svc.get("spec") or {}).get("selector") or {}
    c.check(sel and all(pod_labels.get(k) == v for k, v in sel.items()), f"[{name}] Service selects the pods")
    np_ = (by_kind.get("NetworkPolicy") or [{}])[0]
    nps = np_.get("spec") or {}
    c.check(selects(nps.get("podSelector")), f"[{name}] NetworkPolicy selects the pods")
    c.check(set(nps.get("policyTypes") or []) == {"Ingress", "Egress"}, f"[{name}] NetworkPolicy covers Ingress and Egress")
    in_ports = {(p.get("port"), p.get("protocol", "TCP")) for r in nps.get("ingress") or [] for p in r.get("ports") or []}
    eg_ports = {(p.get("port"), p.get("protocol", "TCP")) for r in nps.get("egress") or [] for p in r.get("ports") or []}
    c.check(in_ports == {(8080, "TCP")}, f"[{name}] NetworkPolicy ingress only on 8080/TCP", f"{in_ports}")
    c.check({(53, "UDP"), (53, "TCP"), (443, "TCP")} <= eg_ports, f"[{name}] NetworkPolicy egress DNS + 443", f"{eg_ports}")
    for sm in by_kind.get("ServiceMonitor", []):
        eps = (sm.get("spec") or {}).get("endpoints") or []
        c.check(any(e.get("port") == "http" and e.get("path", "/metrics") == "/metrics" for e in eps),
                f"[{name}] ServiceMonitor scrapes port http /metrics")
        svc_labels = (svc.get("metadata") or {}).get("labels") or {}
        ml = ((sm.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        c.check(ml and all(svc_labels.get(k) == v for k, v in ml.items()), f"[{name}] ServiceMonitor selects the Service")


def cmd_k8s(render_dir: str) -> int:
    c = Checker("kubernetes")
    files = sorted(Path(render_dir).glob("*.yaml"))
    c.check(files, f"rendered manifests found in {render_dir}")
    for f in files:
        name = f.stem
        docs = load_docs(f)
        c.check(docs, f"[{name}] renders to at least one resource")
        for d in docs:
            ident = f"{d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
            if str(d.get("apiVersion", "")).startswith("monitoring.coreos.com/"):
                errs = validate_crd(d)
                c.check(not errs, f"[{name}] {ident} valid against the Prometheus Operator CRD schema (strict)", "; ".join(errs[:5]))
            else:
                for v in K8S_VERSIONS:
                    errs = validate_core(d, v)
                    c.check(not errs, f"[{name}] {ident} valid against Kubernetes {v} schema (strict)", "; ".join(errs[:5]))
        k8s_policy(c, docs, name)
    return c.done()


# ---------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------
def cmd_compose(config_json: str) -> int:
    c = Checker("compose")
    compose_dir = ROOT / "deploy" / "compose"
    cfg = json.loads(Path(config_json).read_text())
    svcs = cfg.get("services") or {}
    for s in ("switchyard", "prometheus", "grafana", "loadgen"):
        c.check(s in svcs, f"service {s} defined")
    sy = svcs.get("switchyard") or {}
    build = sy.get("build") or {}
    c.check(Path(build.get("context", "")).resolve() == ROOT and build.get("dockerfile") == "Dockerfile",
            "switchyard is built from the repository Dockerfile", f"{build}")
    for svc_name, svc in svcs.items():
        for v in svc.get("volumes") or []:
            if v.get("type") == "bind":
                src = Path(v["source"])
                c.check(src.exists(), f"{svc_name}: bind source {rel(src)} exists")

    def bind(svc: dict, target: str) -> Path | None:
        for v in svc.get("volumes") or []:
            if v.get("type") == "bind" and v.get("target") == target:
                return Path(v["source"]).resolve()
        return None

    c.check(bind(sy, "/etc/switchyard/switchyard.toml") == (compose_dir / "switchyard.toml").resolve(),
            "switchyard mounts deploy/compose/switchyard.toml at /etc/switchyard/switchyard.toml")
    c.check(any(p.get("target") == 8080 for p in sy.get("ports") or []), "switchyard publishes 8080")
    prom = svcs.get("prometheus") or {}
    prom_cfg_src = bind(prom, "/etc/prometheus/prometheus.yml")
    c.check(prom_cfg_src == (compose_dir / "prometheus" / "prometheus.yml").resolve(), "prometheus config mounted")
    rules_target = None
    for v in prom.get("volumes") or []:
        if v.get("type") == "bind" and Path(v["source"]).resolve() == (ROOT / "dashboards/alerts/switchyard.rules.yml").resolve():
            rules_target = v["target"]
    c.check(rules_target, "prometheus mounts dashboards/alerts/switchyard.rules.yml")
    if prom_cfg_src and prom_cfg_src.is_file():
        pcfg = yaml.safe_load(prom_cfg_src.read_text())
        c.check(rules_target in (pcfg.get("rule_files") or []), "prometheus.yml loads the mounted rules file",
                f"rule_files={pcfg.get('rule_files')}")
        jobs = {j["job_name"]: j for j in pcfg.get("scrape_configs") or []}
        sj = jobs.get("switchyard") or {}
        targets = [t for sc in sj.get("static_configs") or [] for t in sc.get("targets") or []]
        c.check(targets == ["switchyard:8080"], "prometheus scrapes switchyard:8080", f"{targets}")
        c.check(sj.get("scrape_interval") == "5s", "scrape interval 5s")
        c.check(sj.get("metrics_path", "/metrics") == "/metrics", "scrape path /metrics")
    graf = svcs.get("grafana") or {}
    c.check(bind(graf, "/etc/grafana/provisioning") == (compose_dir / "grafana" / "provisioning").resolve(),
            "grafana provisioning mounted")
    dash_target = None
    for v in graf.get("volumes") or []:
        if v.get("type") == "bind" and Path(v["source"]).resolve() == (ROOT / "dashboards").resolve():
            dash_target = v["target"]
    c.check(dash_target, "grafana mounts the repository's dashboards/ folder")
    prov = compose_dir / "grafana/provisioning/dashboards"
    paths = [p.get("options", {}).get("path") for f in sorted(prov.glob("*.y*ml"))
             for p in (yaml.safe_load(f.read_text()) or {}).get("providers") or []]
    c.check(dash_target in paths, "dashboard provider reads the mounted dashboards folder", f"{paths} vs {dash_target}")
    lg = svcs.get("loadgen") or {}
    c.check(bind(lg, "/load.sh") == (compose_dir / "load.sh").resolve(), "loadgen runs deploy/compose/load.sh")
    c.check(((lg.get("depends_on") or {}).get("switchyard") or {}).get("condition") == "service_healthy",
            "loadgen waits for switchyard to be healthy")
    c.check("http://switchyard:8080" in json.dumps(lg.get("environment") or {}), "loadgen targets switchyard:8080")
    return c.done()


# ---------------------------------------------------------------------------
# Grafana provisioning and dashboards
# ---------------------------------------------------------------------------
def datasource_refs(node: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}/{k}"
            if k == "datasource":
                yield p, v
            yield from datasource_refs(v, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from datasource_refs(v, f"{path}/{i}")


def ref_ok(ref: Any) -> tuple[bool, str]:
    """A datasource reference is fine if it resolves to the provisioned datasource."""
    if ref is None:
        return True, "default datasource"  # rows etc.; the default is the provisioned one
    if isinstance(ref, str):
        return ref in DATASOURCE_VAR_REFS or ref == DATASOURCE_UID, f"string {ref!r}"
    if isinstance(ref, dict):
        uid, typ = ref.get("uid"), ref.get("type")
        if typ == "grafana" and uid in ("-- Grafana --", "grafana"):
            return True, "built-in Grafana annotations"
        if typ == "datasource" and uid in ("-- Dashboard --", "grafana"):
            return True, "built-in datasource"
        if uid in DATASOURCE_VAR_REFS:
            return typ in (None, "prometheus"), f"uid {uid!r} type {typ!r}"
        return uid == DATASOURCE_UID and typ in (None, "prometheus"), f"uid {uid!r} type {typ!r}"
    return False, f"unexpected {type(ref).__name__}"


def check_dashboard(c: Checker, path: Path, seen_uids: dict[str, Path]) -> None:
    name = rel(path)
    try:
        d = json.loads(path.read_text())
    except Exception as e:  # noqa: BLE001
        c.check(False, f"{name} parses as JSON", str(e))
        return
    c.check(isinstance(d, dict) and d.get("title"), f"{name} is a dashboard with a title")
    if not isinstance(d, dict):
        return
    uid = d.get("uid")
    c.check(isinstance(uid, str) and 0 < len(uid) <= 40, f"{name} has a uid (<= 40 chars)", f"{uid!r}")
    c.check(uid not in seen_uids, f"{name} uid is unique", f"also in {seen_uids.get(uid)}")
    seen_uids[uid] = path
    c.check("__inputs" not in d, f"{name} is not an export-for-sharing file (no __inputs / ${{DS_...}})")
    c.check(d.get("id") in (None,), f"{name} has id null (provisioning assigns ids)", f"id={d.get('id')!r}")
    tvars = [v for v in (d.get("templating") or {}).get("list") or [] if v.get("name") == "datasource"]
    c.check(len(tvars) == 1 and tvars[0].get("type") == "datasource" and tvars[0].get("query") == "prometheus",
            f"{name} has a `datasource` template variable of type datasource, query prometheus")
    bad = []
    n = 0
    for p, ref in datasource_refs(d):
        n += 1
        ok, why = ref_ok(ref)
        if not ok:
            bad.append(f"{p}: {why}")
    c.check(not bad, f"{name}: all {n} datasource references resolve to the provisioned uid `{DATASOURCE_UID}`",
            "; ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""))
    text = path.read_text()
    stray = sorted(set(re.findall(r"\$\{DS_[A-Z0-9_]+\}", text)))
    c.check(not stray, f"{name} has no ${{DS_...}} placeholders", f"{stray}")
    panels = []

    def walk(ps):
        for p in ps or []:
            panels.append(p)
            walk(p.get("panels"))

    walk(d.get("panels"))
    exprs = [t for p in panels for t in p.get("targets") or [] if t.get("expr")]
    c.check(exprs, f"{name} has panels with PromQL targets", f"{len(panels)} panels")


def cmd_grafana() -> int:
    c = Checker("grafana")
    prov = ROOT / "deploy/compose/grafana/provisioning"
    ds_files = sorted((prov / "datasources").glob("*.y*ml"))
    c.check(ds_files, "datasource provisioning files exist")
    all_ds = []
    for f in ds_files:
        doc = yaml.safe_load(f.read_text()) or {}
        c.check(doc.get("apiVersion") == 1, f"{rel(f)} apiVersion 1")
        all_ds += doc.get("datasources") or []
    c.check(len(all_ds) == 1, "exactly one datasource is provisioned", f"{len(all_ds)}")
    for ds in all_ds:
        c.check(ds.get("uid") == DATASOURCE_UID, f"datasource uid is `{DATASOURCE_UID}`", f"{ds.get('uid')}")
        c.check(ds.get("type") == "prometheus", "datasource type prometheus")
        c.check(ds.get("url") == "http://prometheus:9090", "datasource points at the prometheus service")
        c.check(ds.get("isDefault") is True, "datasource is the default")
    dash_files = sorted((prov / "dashboards").glob("*.y*ml"))
    c.check(dash_files, "dashboard provider files exist")
    for f in dash_files:
        doc = yaml.safe_load(f.read_text()) or {}
        c.check(doc.get("apiVersion") == 1, f"{rel(f)} apiVersion 1")
        for p in doc.get("providers") or []:
            c.check(p.get("type") == "file" and (p.get("options") or {}).get("path"), f"{rel(f)}: provider {p.get('name')} is a file provider with a path")
    dashboards = sorted((ROOT / "dashboards").rglob("*.json"))
    c.check(dashboards, "dashboards/**/*.json: at least one dashboard exists")
    seen: dict[str, Path] = {}
    for f in dashboards:
        check_dashboard(c, f, seen)
    return c.done()


# ---------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    out, buf = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        buf += (" " if buf else "") + s.rstrip("\\").strip()
        if not s.endswith("\\"):
            op, _, rest = buf.partition(" ")
            out.append((op.upper(), rest.strip()))
            buf = ""
    return out


def check_dockerfile_text(c: Checker, text: str, ignore: str) -> None:
    ins = dockerfile_instructions(text)
    froms = [i for i, (op, _) in enumerate(ins) if op == "FROM"]
    c.check(len(froms) >= 2, "multi-stage build")
    final = ins[froms[-1]:] if froms else []
    runtime = ins[froms[-1]][1] if froms else ""
    c.check(re.match(r"gcr\.io/distroless/(cc|base|base-nossl|static)-debian\d+(:\S+)?$", runtime),
            "runtime stage is distroless", runtime)
    if "/base" in runtime:
        # Rust's std links libgcc_s, which only the cc flavour ships.
        c.check(any(op == "RUN" and "libgcc_s.so.1" in a for op, a in ins) and any(op == "COPY" and "--from=builder" in a for op, a in final),
                "libgcc_s.so.1 is shipped next to the binary (distroless base has none)")
    pgo = ROOT / "scripts/pgo-build"
    builds_pgo = any(op == "RUN" and "scripts/pgo-build" in a for op, a in ins)
    c.check(any(op == "RUN" and "cargo build --release --locked" in a for op, a in ins)
            or (builds_pgo and pgo.exists() and pgo.read_text().count("cargo build --release --locked") >= 2),
            "builder runs cargo build --release --locked (directly or in both builds of scripts/pgo-build)")
    if builds_pgo:
        c.check("!scripts/pgo-build" in ignore and "!scripts/pgo/" in ignore,
                ".dockerignore lets in scripts/pgo-build and its training config")
    users = [a for op, a in final if op == "USER"]
    c.check(users and re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", users[-1]), "final stage runs as a numeric non-root USER", f"{users}")
    envs = " ".join(a for op, a in final if op == "ENV")
    c.check("SWITCHYARD_CONFIG=/etc/switchyard/switchyard.toml" in envs, "ENV SWITCHYARD_CONFIG=/etc/switchyard/switchyard.toml")
    c.check("SWITCHYARD_LISTEN=0.0.0.0:8080" in envs, "ENV SWITCHYARD_LISTEN=0.0.0.0:8080")
    c.check(any(op == "EXPOSE" and a.split()[0] in ("8080", "8080/tcp") for op, a in final), "EXPOSE 8080")
    hc = [a for op, a in final if op == "HEALTHCHECK"]
    c.check(hc and re.search(r'CMD \["[^"]*switchyard", "health"', hc[-1]) and "curl" not in hc[-1] and "wget" not in hc[-1],
            "HEALTHCHECK runs `switchyard health` (exec form, no curl)", f"{hc}")
    c.check(any(op == "STOPSIGNAL" and a == "SIGTERM" for op, a in final), "STOPSIGNAL SIGTERM")
    ep = [a for op, a in final if op == "ENTRYPOINT"]
    c.check(ep and ep[-1].startswith("["), "ENTRYPOINT in exec form (signals reach the relay, no shell in the image)")
    lines = [l.strip() for l in ignore.splitlines() if l.strip() and not l.strip().startswith("#")]
    c.check(lines[:1] == ["*"], ".dockerignore is an allow-list (starts with `*`)")
    for need in ("!Cargo.toml", "!Cargo.lock", "!src/"):
        c.check(need in lines, f".dockerignore lets in {need[1:]}")
    for op, a in ins:
        if op == "COPY" and "--from=" not in a:
            srcs = [s for s in a.split() if not s.startswith("--")][:-1]
            for s in srcs:
                if s == ".":
                    continue
                c.check(f"!{s}" in lines, f"COPY source {s} is let into the build context by .dockerignore")
                c.check((ROOT / s).exists(), f"COPY source {s} exists")


def cmd_dockerfile() -> int:
    c = Checker("dockerfile")
    check_dockerfile_text(c, (ROOT / "Dockerfile").read_text(), (ROOT / ".dockerignore").read_text())
    return c.done()


# ---------------------------------------------------------------------------
# Shipped switchyard.toml files
# ---------------------------------------------------------------------------
def cmd_configs() -> int:
    c = Checker("configs")
    files = {
        "image": ROOT / "deploy/docker/switchyard.toml",
        "compose": ROOT / "deploy/compose/switchyard.toml",
        "kubernetes": ROOT / "deploy/kubernetes/base/switchyard.toml",
    }
    for name, f in files.items():
        try:
            conf = tomllib.loads(f.read_text())
        except Exception as e:  # noqa: BLE001
            c.check(False, f"{rel(f)} parses as TOML", str(e))
            continue
        c.check(True, f"{rel(f)} parses as TOML")
        models = {m.get("name"): m for m in conf.get("models") or []}
        ups = conf.get("upstreams") or {}
        c.check("mock" in models, f"[{name}] serves model `mock`")
        for m in models.values():
            for t in m.get("targets") or []:
                c.check(t.get("upstream") in ups, f"[{name}] model {m.get('name')} targets a defined upstream ({t.get('upstream')})")
        c.check(any(u.get("dialect") == "mock" for u in ups.values()), f"[{name}] has the built-in mock upstream")
        server = conf.get("server") or {}
        c.check("listen" not in server, f"[{name}] leaves the listen address to SWITCHYARD_LISTEN")
        c.check(_duration_seconds(server.get("shutdown_grace", "30s")) <= DRAIN_SECONDS,
                f"[{name}] shutdown_grace <= {DRAIN_SECONDS}s (fits the Kubernetes grace period)")
        text = f.read_text()
        c.check(not re.search(r"(?m)^\s*api_key\s*=\s*\"(?!\$\{)", text), f"[{name}] no literal upstream api_key (only ${{ENV}})")
        if name != "image":
            c.check("openai" in text and "anthropic" in text, f"[{name}] shows real upstreams (commented out)")
    comp = tomllib.loads(files["compose"].read_text())
    c.check((comp.get("server") or {}).get("allow_unauthenticated") is True and not comp.get("keys"),
            "[compose] demo runs unauthenticated (ports published on 127.0.0.1 only)")
    k8s = tomllib.loads(files["kubernetes"].read_text())
    c.check(any(k.get("key") == "${SWITCHYARD_API_KEY}" for k in k8s.get("keys") or []),
            "[kubernetes] requires a client key from the Secret (SWITCHYARD_API_KEY)")
    c.check(not (k8s.get("server") or {}).get("allow_unauthenticated"), "[kubernetes] authentication stays on")
    img = tomllib.loads(files["image"].read_text())
    c.check(not (img.get("server") or {}).get("allow_unauthenticated"), "[image] does not disable authentication by default")
    return c.done()


# ---------------------------------------------------------------------------
# Self-test: each checker must reject a known-bad variant.
# ---------------------------------------------------------------------------
def cmd_selftest(render_dir: str) -> int:
    c = Checker("selftest")
    import io
    import contextlib

    def fails(fn: Callable[[Checker], None]) -> bool:
        inner = Checker("inner")
        with contextlib.redirect_stdout(io.StringIO()):
            fn(inner)
        return inner.failed > 0

    base = load_docs(Path(render_dir) / "base.yaml")
    dep_i = next(i for i, d in enumerate(base) if d["kind"] == "Deployment")
    c.check(not fails(lambda k: k8s_policy(k, base, "base")), "policy accepts the real base")

    def mutate(fn: Callable[[dict], None]) -> list[dict]:
        docs = copy.deepcopy(base)
        fn(docs[dep_i]["spec"]["template"]["spec"])
        return docs

    def add_subpath(p):
        p["containers"][0]["volumeMounts"][0]["subPath"] = "switchyard.toml"

    def short_grace(p):
        p["terminationGracePeriodSeconds"] = 30

    def root(p):
        p["securityContext"]["runAsNonRoot"] = False

    for label, fn in (("subPath config mount", add_subpath), ("grace period shorter than the drain", short_grace),
                      ("runAsNonRoot false", root)):
        docs = mutate(fn)
        c.check(fails(lambda k, docs=docs: k8s_policy(k, docs, "bad")), f"policy rejects {label}")
    bad = copy.deepcopy(base[dep_i])
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    c.check(validate_core(bad, K8S_VERSIONS[-1]), "Kubernetes schema (strict) rejects an unknown field")
    sm = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "x"},
          "spec": {"selector": {}, "endpoints": [{"port": "http", "intervall": "15s"}]}}
    c.check(validate_crd(sm), "ServiceMonitor schema rejects an unknown field")
    sm["spec"]["endpoints"][0] = {"port": "http", "interval": "15 seconds"}
    c.check(validate_crd(sm), "ServiceMonitor schema rejects a malformed duration")
    pr = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "x"},
          "spec": {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]}}
    c.check(validate_crd(pr), "PrometheusRule schema rejects a rule without expr")
    pr["spec"]["groups"][0]["rules"][0] = {"alert": "A", "expr": "up == 0", "keep_firing_for": "5m", "for": "1m"}
    c.check(not validate_crd(pr), "PrometheusRule schema accepts a valid rule")
    c.check(not ref_ok({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"})[0], "dashboard check rejects a foreign datasource uid")
    c.check(not ref_ok("${DS_PROMETHEUS}")[0], "dashboard check rejects ${DS_PROMETHEUS}")
    c.check(ref_ok({"type": "prometheus", "uid": "${datasource}"})[0], "dashboard check accepts ${datasource}")
    good = (ROOT / "Dockerfile").read_text()
    ign = (ROOT / ".dockerignore").read_text()
    c.check(fails(lambda k: check_dockerfile_text(k, good.replace("STOPSIGNAL SIGTERM", ""), ign)), "Dockerfile check rejects a missing STOPSIGNAL")
    c.check(fails(lambda k: check_dockerfile_text(k, re.sub(r"USER \S+", "USER root", good), ign)), "Dockerfile check rejects USER root")
    return c.done()


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    table = {
        "k8s": lambda: cmd_k8s(*args),
        "compose": lambda: cmd_compose(*args),
        "grafana": cmd_grafana,
        "dockerfile": cmd_dockerfile,
        "configs": cmd_configs,
        "selftest": lambda: cmd_selftest(*args),
    }
    if cmd not in table:
        print(__doc__)
        return 2
    return table[cmd]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
