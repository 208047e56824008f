#!/usr/bin/env bash
# Runs the whole Palisade pipeline locally on loopback, servers included, until Ctrl-C:
# tansu (Kafka-compatible broker, persistent sqlite storage) and ingest. Installs what is missing
# first (deploy/scripts/setup.sh), builds the release binaries, prints the endpoint, a demo key
# and the headers a site would set, sends a few real-world reports through it and shows where
# they went. Re-running is safe: leftovers of an earlier run are stopped first.
#
# State, logs and the demo projects file live in .palisade/ (override with PALISADE_HOME):
#   .palisade/logs/tansu.log, .palisade/logs/ingest.log, .palisade/projects.toml
# Ports (override with env): PALISADE_PORT=8080 (reports), PALISADE_ADMIN_PORT=9190 (health,
# metrics), PALISADE_KAFKA_PORT=19092 (tansu).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

home="${PALISADE_HOME:-$root/.palisade}"
port="${PALISADE_PORT:-8080}"
admin_port="${PALISADE_ADMIN_PORT:-9190}"
kafka_port="${PALISADE_KAFKA_PORT:-19092}"
topic="palisade-reports"
demo_key="demo-public-key-0001"
mkdir -p "$home/logs" "$home/run" "$home/tansu"

say() { printf '\033[1m[palisade]\033[0m %s\n' "$*"; }

stop_pidfile() {
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

stop_all() {
  say "stopping"
  stop_pidfile "$home/run/ingest.pid"
  stop_pidfile "$home/run/tansu.pid"
}

wait_port() {
  local p="$1" what="$2" log="$3"
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  say "$what did not start listening on 127.0.0.1:$p; last lines of $log:"
  tail -n 30 "$log" >&2 || true
  exit 1
}

# Leftovers of an earlier run (killed terminal, crash) are stopped first.
stop_pidfile "$home/run/ingest.pid"
stop_pidfile "$home/run/tansu.pid"

say "checking prerequisites (first run installs packages and builds tansu: ~20 min)"
tansu="$(deploy/scripts/setup.sh | tail -n 1)"

say "building palisade (release)"
cargo build --release --locked -p ingest 2>&1 | tail -n 3

if [ ! -f "$home/projects.toml" ]; then
  cat > "$home/projects.toml" <<TOML
# Demo tenants for the local stack. Edit and save: ingest reloads this file by itself.
[[project]]
id = 1
name = "demo"
keys = [{ public_key = "$demo_key", state = "active" }]
quota = { per_second = 1000, burst = 5000 }
allowed_hosts = []

[project.privacy]
client_ip = "truncate"
TOML
fi

# Children run in their own sessions (setsid) so Ctrl-C reaches only this script, which then
# stops them in order: ingest first (it drains and flushes to Kafka), then the broker.
trap 'stop_all; exit 0' INT TERM
say "starting tansu on 127.0.0.1:$kafka_port (log: $home/logs/tansu.log)"
(cd "$home/tansu" && exec setsid "$tansu" broker \
  --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine "sqlite://tansu.db") >"$home/logs/tansu.log" 2>&1 &
echo $! > "$home/run/tansu.pid"
wait_port "$kafka_port" tansu "$home/logs/tansu.log"
"$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions 4 "$topic" \
  >>"$home/logs/tansu.log" 2>&1 || true   # already there on a re-run

say "starting ingest on 127.0.0.1:$port (log: $home/logs/ingest.log)"
PALISADE_PUBLIC_ADDR="127.0.0.1:$port" \
PALISADE_ADMIN_ADDR="127.0.0.1:$admin_port" \
PALISADE_PROJECTS_FILE="$home/projects.toml" \
PALISADE_KAFKA_BROKERS="127.0.0.1:$kafka_port" \
PALISADE_KAFKA_TOPIC="$topic" \
  setsid target/release/palisade-ingest >"$home/logs/ingest.log" 2>&1 &
echo $! > "$home/run/ingest.pid"
wait_port "$port" ingest "$home/logs/ingest.log"
for _ in $(seq 1 50); do
  curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

endpoint="http://127.0.0.1:$port/api/1/security/?sentry_key=$demo_key"
cat <<INFO

  Endpoint        $endpoint
  Demo key        $demo_key  (project 1, in $home/projects.toml)
  Health/metrics  http://127.0.0.1:$admin_port/healthz  /readyz  /metrics

  Headers a site would set:
    Content-Security-Policy: default-src 'self'; report-uri $endpoint; report-to palisade
    Reporting-Endpoints: palisade="$endpoint"
  (Chromium delivers report-to reports only to https endpoints: start ingest with
   --tls-cert/--tls-key for that; report-uri works over http.)

INFO

say "sending real-world reports from schemas/tests/fixtures"
sent=0
for f in schemas/tests/fixtures/*.json; do
  [ -e "$f" ] || continue
  code="$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/csp-report' \
    --data-binary "@$f" "$endpoint")"
  printf '  %-60s %s\n' "$(basename "$f")" "$code"
  sent=$((sent + 1))
done
say "sent $sent bodies; what ingest counted (reports by kind and outcome):"
curl -fsS "http://127.0.0.1:$admin_port/metrics" | grep -E '^ingest_reports_total' | sed 's/^/  /' || true

say "running; Ctrl-C stops everything"
wait
