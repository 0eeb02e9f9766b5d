#!/usr/bin/env bash
# Validate Switchyard's deployment assets without a container engine or a cluster.
#
#   bash tests/deploy/validate.sh
#
# Installs what it needs (pip packages pinned in tests/deploy/requirements.txt
# into the shared venv; kubectl and promtool from apt when missing) and fails
# loudly when a tool cannot be had. Checks:
#   - Dockerfile: hadolint + the image contract (distroless, non-root, healthcheck, ...)
#   - shell scripts: shellcheck
#   - Kubernetes: `kubectl kustomize` renders base and every overlay; every
#     resource validates (strict) against the Kubernetes 1.30 and 1.37 schemas,
#     Prometheus Operator resources against a strict CRD schema; policy checks
#     (probes, securityContext, ConfigMap without subPath, drain timing, ...)
#   - PrometheusRule copy == dashboards/alerts/switchyard.rules.yml; promtool check rules
#   - compose: `docker-compose config`, the compose-spec JSON schema, mounts
#     and wiring; promtool check config on the Prometheus config
#   - Grafana provisioning and every dashboards/**/*.json (datasource uid)
#   - the shipped switchyard.toml files; `switchyard check` on them when a
#     binary exists (SWITCHYARD_BIN, target/release, target/debug)
#   - the kubelet ConfigMap swap helper's self-test
# Environment: VENV (default <repo>/.venv), SWITCHYARD_BIN,
# REQUIRE_SWITCHYARD_BIN=1 (fail instead of skipping `switchyard check`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
HERE="tests/deploy"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

die() {
  echo "validate.sh: ERROR: $*" >&2
  exit 1
}

# ---------------------------------------------------------------- tools ----
APT_UPDATED=0
apt_install() {
  # apt_install PACKAGE...: fails loudly if apt is unavailable or the install fails.
  command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root (or sudo) to apt-get install $*"
    sudo="sudo"
  fi
  if [ "$APT_UPDATED" -eq 0 ]; then
    $sudo apt-get update -qq || die "apt-get update failed"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" \
    || die "apt-get install $* failed"
}

echo "== tools"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV" || die "cannot create the venv $VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/requirements.txt" \
  || die "pip install -r $HERE/requirements.txt failed"
PY="$VENV/bin/python"
for tool in hadolint shellcheck docker-compose check-jsonschema; do
  [ -x "$VENV/bin/$tool" ] || die "$tool missing from $VENV/bin after pip install"
done
if ! command -v kubectl >/dev/null; then
  apt_install kubectl
fi
command -v kubectl >/dev/null || die "kubectl not found (apt-get install -y kubectl; it needs the Kubernetes or Google Cloud apt repository)"
kubectl kustomize --help >/dev/null 2>&1 || die "this kubectl has no 'kustomize' subcommand"
if ! command -v promtool >/dev/null; then
  apt_install prometheus
fi
command -v promtool >/dev/null || die "promtool not found (Debian package prometheus)"
echo "hadolint:        $("$VENV/bin/hadolint" --version)"
echo "shellcheck:      $("$VENV/bin/shellcheck" --version | sed -n 2p)"
echo "docker-compose:  $("$VENV/bin/docker-compose" version --short)"
echo "kubectl:         $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
echo "promtool:        $(promtool --version 2>&1 | head -1)"
echo "k8s-validate:    $("$VENV/bin/kubernetes-validate" --version)"

# ---------------------------------------------------------------- steps ----
PASSED=0
FAILED=0
SKIPPED=0
FAILED_STEPS=()
step() {
  # step NAME COMMAND...: runs the command, records the outcome, never aborts.
  local name="$1"
  shift
  echo
  echo "== $name"
  if "$@"; then
    PASSED=$((PASSED + 1))
    echo "-- PASS: $name"
  else
    FAILED=$((FAILED + 1))
    FAILED_STEPS+=("$name")
    echo "-- FAIL: $name"
  fi
}

render_kustomize() {
  mkdir -p "$WORK/render"
  local ok=0 d name
  kubectl kustomize deploy/kubernetes/base >"$WORK/render/base.yaml" || ok=1
  echo "rendered base: $(grep -c '^kind:' "$WORK/render/base.yaml" || true) resources"
  local n=0
  for d in deploy/kubernetes/overlays/*/; do
    [ -f "$d/kustomization.yaml" ] || continue
    name="$(basename "$d")"
    n=$((n + 1))
    if kubectl kustomize "$d" >"$WORK/render/$name.yaml"; then
      echo "rendered overlay $name: $(grep -c '^kind:' "$WORK/render/$name.yaml" || true) resources"
    else
      echo "overlay $name does not render"
      rm -f "$WORK/render/$name.yaml"
      ok=1
    fi
  done
  [ "$n" -gt 0 ] || { echo "no overlays found under deploy/kubernetes/overlays"; ok=1; }
  return "$ok"
}

promtool_rules_copy() {
  # The PrometheusRule's spec is a Prometheus rule file: check it with promtool.
  "$PY" - "$WORK/prometheusrule.rules.yml" <<'PYEOF' || return 1
import sys, yaml
doc = yaml.safe_load(open("deploy/kubernetes/overlays/prometheus-operator/prometheusrule.yaml"))
yaml.safe_dump(doc["spec"], open(sys.argv[1], "w"), sort_keys=False)
PYEOF
  promtool check rules "$WORK/prometheusrule.rules.yml"
}

compose_config() {
  "$VENV/bin/docker-compose" -f deploy/compose/compose.yaml config --quiet \
    && "$VENV/bin/docker-compose" -f deploy/compose/compose.yaml config --format json >"$WORK/compose.json" \
    && echo "docker-compose config: ok"
}

promtool_compose_config() {
  # Same config, with the in-container rules path pointed at the repository file.
  [ -f dashboards/alerts/switchyard.rules.yml ] || { echo "dashboards/alerts/switchyard.rules.yml is missing"; return 1; }
  sed "s#/etc/prometheus/rules/switchyard.rules.yml#$ROOT/dashboards/alerts/switchyard.rules.yml#" \
    deploy/compose/prometheus/prometheus.yml >"$WORK/prometheus.yml"
  grep -q "$ROOT/dashboards/alerts/switchyard.rules.yml" "$WORK/prometheus.yml" \
    || { echo "prometheus.yml does not reference /etc/prometheus/rules/switchyard.rules.yml"; return 1; }
  promtool check config "$WORK/prometheus.yml"
}

switchyard_check() {
  local bin="${SWITCHYARD_BIN:-}"
  if [ -z "$bin" ]; then
    # The most recently built of target/{release,debug}/switchyard.
    for c in target/release/switchyard target/debug/switchyard; do
      if [ -x "$c" ] && { [ -z "$bin" ] || [ "$c" -nt "$bin" ]; }; then bin="$c"; fi
    done
  fi
  if [ -z "$bin" ]; then
    if [ "${REQUIRE_SWITCHYARD_BIN:-0}" = "1" ]; then
      echo "no switchyard binary (set SWITCHYARD_BIN or build it)"
      return 1
    fi
    echo "SKIPPED: no switchyard binary found (SWITCHYARD_BIN, target/release, target/debug);"
    echo "         set REQUIRE_SWITCHYARD_BIN=1 to make this a failure"
    SKIPPED=$((SKIPPED + 1))
    return 0
  fi
  local ok=0 f
  for f in deploy/docker/switchyard.toml deploy/compose/switchyard.toml deploy/kubernetes/base/switchyard.toml; do
    echo "-- $bin check --config $f"
    # `check` prints what it would serve: the model `mock` must be in it
    # (this also catches a stub binary that exits 0 without doing anything).
    if SWITCHYARD_API_KEY=validate-dummy-key SWITCHYARD_LISTEN=0.0.0.0:8080 \
      "$bin" check --config "$f" >"$WORK/check.out" 2>&1; then
      cat "$WORK/check.out"
      grep -q mock "$WORK/check.out" || { echo "'$bin check' did not mention model mock"; ok=1; }
    else
      cat "$WORK/check.out"
      ok=1
    fi
  done
  return "$ok"
}

step "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
step "Dockerfile contract" "$PY" "$HERE/check_deploy.py" dockerfile
step "shellcheck" "$VENV/bin/shellcheck" "$HERE/validate.sh" deploy/compose/load.sh scripts/pgo-build bench/run.sh bench/callgrind.sh bench/segments.sh
step "kustomize render (base + overlays)" render_kustomize
step "Kubernetes schemas and policy" "$PY" "$HERE/check_deploy.py" k8s "$WORK/render"
step "PrometheusRule == dashboards/alerts/switchyard.rules.yml" "$PY" "$HERE/gen_prometheusrule.py" --check
step "promtool check rules (PrometheusRule spec)" promtool_rules_copy
step "docker-compose config" compose_config
step "compose-spec JSON schema" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
step "compose wiring" "$PY" "$HERE/check_deploy.py" compose "$WORK/compose.json"
step "promtool check config (compose Prometheus)" promtool_compose_config
step "Grafana provisioning and dashboards" "$PY" "$HERE/check_deploy.py" grafana
step "switchyard.toml files" "$PY" "$HERE/check_deploy.py" configs
step "kubelet ConfigMap swap helper" "$PY" "$HERE/kubelet_swap.py" --selftest
step "checker self-test (rejects known-bad input)" "$PY" "$HERE/check_deploy.py" selftest "$WORK/render"
step "switchyard check on the shipped configs" switchyard_check

echo
if [ "$FAILED" -gt 0 ]; then
  echo "failed steps:"
  printf '  - %s\n' "${FAILED_STEPS[@]}"
fi
[ "$SKIPPED" -eq 0 ] || echo "($SKIPPED step(s) skipped, see SKIPPED above)"
echo "deploy: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
