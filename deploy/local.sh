#!/usr/bin/env bash
# Runs the whole Palisade pipeline locally on loopback, servers included, until Ctrl-C:
# tansu (Kafka-compatible broker, persistent sqlite storage), ClickHouse (Debian's package, data
# kept between runs), the migrations, ingest and the processor. Installs what is missing first
# (deploy/scripts/setup.sh), builds the release binaries, prints the endpoint, a demo key and the
# headers a site would set, sends the repository's real-world report fixtures through it and
# shows a summary query's result from ClickHouse. Re-running is safe: leftovers of an earlier run
# are stopped first, topics and migrations that exist are kept.
#
# State, logs and the demo projects file live in .palisade/ (override with PALISADE_HOME):
#   .palisade/logs/{tansu,clickhouse,ingest,processor,demo}.log, .palisade/projects.toml
# Ports (override with env): PALISADE_PORT=8080 (reports), PALISADE_ADMIN_PORT=9190 (ingest
# health/metrics), PALISADE_PROCESSOR_ADMIN_PORT=9191, PALISADE_KAFKA_PORT=19092 (tansu),
# PALISADE_CLICKHOUSE_PORT=18123 (ClickHouse HTTP; its native port is 19000),
# PALISADE_DEMO_PORT=8090 (a page that violates its CSP on purpose, deploy/demo/).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

home="${PALISADE_HOME:-$root/.palisade}"
port="${PALISADE_PORT:-8080}"
admin_port="${PALISADE_ADMIN_PORT:-9190}"
kafka_port="${PALISADE_KAFKA_PORT:-19092}"
processor_admin_port="${PALISADE_PROCESSOR_ADMIN_PORT:-9191}"
demo_port="${PALISADE_DEMO_PORT:-8090}"
api_port="${PALISADE_API_PORT:-8088}"
ch_port="${PALISADE_CLICKHOUSE_PORT:-18123}"
ch_tcp_port="${PALISADE_CLICKHOUSE_TCP_PORT:-19000}"
topic="palisade-reports"
dead_letter_topic="palisade-reports-dead-letter"
demo_key="demo-public-key-0001"
demo_page_key="demo-page-key-0002"
mkdir -p "$home/logs" "$home/run" "$home/tansu" "$home/clickhouse"

say() { printf '\033[1m[palisade]\033[0m %s\n' "$*"; }
# wait_for / poll: every wait here times out loudly (deploy/scripts/wait.sh).
. deploy/scripts/wait.sh

stop_pidfile() {
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    poll 10 process_gone "$pid" || { say "pid $pid ($f) still running after 10 s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
  fi
  rm -f "$f"
}

stop_all() {
  say "stopping"
  stop_pidfile "$home/run/demo.pid"
  stop_pidfile "$home/run/api.pid"
  stop_pidfile "$home/run/ingest.pid"
  stop_pidfile "$home/run/processor.pid"
  stop_pidfile "$home/run/tansu.pid"
  stop_pidfile "$home/run/clickhouse.pid"
}

# wait_port PORT WHAT LOG: returns once WHAT listens on 127.0.0.1:PORT; after 30 s, says so with
# LOG's last lines and exits (the EXIT trap stops what was started).
wait_port() { wait_log="$3" wait_for 30 "$2 to listen on 127.0.0.1:$1" port_open "$1"; }

# Leftovers of an earlier run (killed terminal, crash) are stopped first.
for name in demo api ingest processor tansu clickhouse; do stop_pidfile "$home/run/$name.pid"; done

say "checking prerequisites (first run installs packages and builds tansu: ~20 min)"
tansu="$(deploy/scripts/setup.sh | tail -n 1)"

say "building palisade (release)"
cargo build --release --locked -p ingest -p processor -p palisade-api 2>&1 | tail -n 3

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

# The demo page (deploy/demo/) is served from 127.0.0.1, which the default noise filters treat as
# an injector (its reports would be answered 2xx and dropped), so its project keeps noise.
[[project]]
id = 2
name = "demo-page"
keys = [{ public_key = "$demo_page_key" }]
quota = { per_second = 100, burst = 1000 }
filters = { default_noise = false }
TOML
fi

# Children run in their own sessions (setsid) so Ctrl-C (or closing the terminal) reaches only
# this script, which then stops them in order: ingest first (it drains and flushes to Kafka),
# then the broker.
trap 'stop_all; exit 0' INT TERM HUP
trap 'stop_all' EXIT
say "starting tansu on 127.0.0.1:$kafka_port (log: $home/logs/tansu.log)"
(cd "$home/tansu" && exec setsid "$tansu" broker \
  --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
  --storage-engine "sqlite://tansu.db") >"$home/logs/tansu.log" 2>&1 &
echo $! > "$home/run/tansu.pid"
wait_port "$kafka_port" tansu "$home/logs/tansu.log"
for t in "$topic:4" "$dead_letter_topic:1"; do
  "$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions "${t##*:}" "${t%%:*}" \
    >>"$home/logs/tansu.log" 2>&1 || true   # already there on a re-run
done

say "starting ClickHouse on 127.0.0.1:$ch_port (log: $home/logs/clickhouse.log)"
ch="$home/clickhouse"
setsid deploy/scripts/clickhouse.sh "$ch" "$ch_port" "$ch_tcp_port" >"$home/logs/clickhouse.log" 2>&1 &
echo $! > "$home/run/clickhouse.pid"
wait_port "$ch_port" ClickHouse "$ch/log/server.err.log"
ch_query() { curl -fsS "http://127.0.0.1:$ch_port/" --data-binary "$1"; }
wait_log="$ch/log/server.err.log" wait_for 20 "ClickHouse to answer SELECT 1" clickhouse_up "$ch_port"

# tansu 0.6 loses the rest of a record batch when a consumer resumes inside it, so the processor
# rereads up to this many messages before its committed offset (deduplicated) on assignment.
processor_env=(
  PALISADE_KAFKA_BROKERS="127.0.0.1:$kafka_port"
  PALISADE_KAFKA_TOPIC="$topic"
  PALISADE_DEAD_LETTER_TOPIC="$dead_letter_topic"
  PALISADE_CLICKHOUSE_URL="http://127.0.0.1:$ch_port"
  PALISADE_ADMIN_ADDR="127.0.0.1:$processor_admin_port"
)
say "applying ClickHouse migrations"
env "${processor_env[@]}" target/release/palisade-processor migrate >>"$home/logs/processor.log" 2>&1 \
  || { say "migrations failed; last lines of $home/logs/processor.log:"; tail -n 20 "$home/logs/processor.log"; exit 1; }

say "starting the processor (log: $home/logs/processor.log)"
# Short windows so the demo's rows appear quickly; production keeps the 60 s default.
env "${processor_env[@]}" setsid target/release/palisade-processor run \
  --kafka-resume-rewind 10000 --window-secs 10 --grace-secs 2 --idle-close-secs 5 \
  >>"$home/logs/processor.log" 2>&1 &
echo $! > "$home/run/processor.pid"

# The tenant API (palisade-api): a fresh admin token each run (in $home/api-admin-token); it
# manages the projects and keys (stored in ClickHouse) and writes $home/projects.toml, which
# ingest reloads by itself. The demo projects are created through it on the first run.
admin_token="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
(umask 077 && printf '%s\n' "$admin_token" > "$home/api-admin-token")
say "starting palisade-api on 127.0.0.1:$api_port (log: $home/logs/api.log)"
PALISADE_API_ADDR="127.0.0.1:$api_port" \
PALISADE_CLICKHOUSE_URL="http://127.0.0.1:$ch_port" \
PALISADE_API_ADMIN_TOKENS="$admin_token" \
PALISADE_API_PROJECTS_FILE_OUT="$home/projects.toml" \
  setsid target/release/palisade-api >"$home/logs/api.log" 2>&1 &
echo $! > "$home/run/api.pid"
wait_port "$api_port" palisade-api "$home/logs/api.log"
api_call() {  # METHOD PATH [JSON]: prints the status; the answer is in $home/run/api-answer.json
  curl -sS -o "$home/run/api-answer.json" -w '%{http_code}' -X "$1" \
    -H "Authorization: Bearer $admin_token" -H 'content-type: application/json' \
    ${3:+--data-binary "$3"} "http://127.0.0.1:$api_port$2"
}
answer_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$home/run/api-answer.json" "$1"; }
demo_token=""
if [ "$(api_call GET /v1/projects/1)" = 404 ]; then
  code="$(api_call POST /v1/projects "{\"id\": 1, \"name\": \"demo\", \"public_key\": \"$demo_key\", \"quota\": {\"per_second\": 1000, \"burst\": 5000}}")"
  [ "$code" = 201 ] && demo_token="$(answer_field token)"
fi
if [ "$(api_call GET /v1/projects/2)" = 404 ]; then
  # The demo page (deploy/demo/) is served from 127.0.0.1, which the default noise filters treat
  # as an injector (its reports would be answered 2xx and dropped), so its project keeps noise.
  api_call POST /v1/projects "{\"id\": 2, \"name\": \"demo-page\", \"public_key\": \"$demo_page_key\", \"quota\": {\"per_second\": 100, \"burst\": 1000}, \"filters\": {\"default_noise\": false}}" >/dev/null
fi
if [ -z "$demo_token" ]; then  # a re-run: the project exists, a new token for this session
  code="$(api_call POST /v1/projects/1/tokens)"
  [ "$code" = 201 ] && demo_token="$(answer_field token)"
fi
[ -n "$demo_token" ] || { say "palisade-api did not answer; last lines of $home/logs/api.log:"; tail -n 20 "$home/logs/api.log"; exit 1; }

say "starting ingest on 127.0.0.1:$port (log: $home/logs/ingest.log)"
PALISADE_PUBLIC_ADDR="127.0.0.1:$port" \
PALISADE_ADMIN_ADDR="127.0.0.1:$admin_port" \
PALISADE_PROJECTS_FILE="$home/projects.toml" \
PALISADE_KAFKA_BROKERS="127.0.0.1:$kafka_port" \
PALISADE_KAFKA_TOPIC="$topic" \
  setsid target/release/palisade-ingest >"$home/logs/ingest.log" 2>&1 &
echo $! > "$home/run/ingest.pid"
wait_port "$port" ingest "$home/logs/ingest.log"
wait_log="$home/logs/ingest.log" wait_for 10 "ingest /readyz" http_ok "http://127.0.0.1:$admin_port/readyz"

endpoint="http://127.0.0.1:$port/api/1/security/?sentry_key=$demo_key"
demo_endpoint="http://127.0.0.1:$port/api/2/security/?sentry_key=$demo_page_key"
setsid python3 deploy/demo/serve.py "$demo_port" "$demo_endpoint" >"$home/logs/demo.log" 2>&1 &
echo $! > "$home/run/demo.pid"
wait_port "$demo_port" "demo page" "$home/logs/demo.log"
cat <<INFO

  Endpoint        $endpoint
  Demo key        $demo_key  (project 1; keys are managed through the tenant API, which
                  writes $home/projects.toml)
  Site owners' UI http://127.0.0.1:$api_port/ui/   log in with project 1 and the demo token below
  Tenant API      http://127.0.0.1:$api_port/v1/   (palisade-api; endpoints: api/openapi.json)
  Demo token      $demo_token   (project 1's API token, shown once)
                  e.g. curl -H "Authorization: Bearer $demo_token" http://127.0.0.1:$api_port/v1/projects/1/violations
  Admin token     in $home/api-admin-token (creates projects, keys, tokens; new each run)
  Demo page       http://127.0.0.1:$demo_port/  open it in a browser and click: its CSP reports
                  to project 2 ($demo_page_key), which keeps 127.0.0.1 reports the noise filter drops
  Health/metrics  http://127.0.0.1:$admin_port/healthz  /readyz  /metrics   (ingest)
                  http://127.0.0.1:$processor_admin_port/healthz  /readyz  /metrics   (processor)
  ClickHouse      http://127.0.0.1:$ch_port/  database palisade, table reports
                  e.g. curl 'http://127.0.0.1:$ch_port/' --data-binary 'SELECT kind, sum(occurrences) FROM palisade.reports FINAL GROUP BY kind'

  Headers a site would set:
    Content-Security-Policy: default-src 'self'; report-uri $endpoint; report-to palisade
    Reporting-Endpoints: palisade="$endpoint"
  (Chromium delivers report-to reports only to https endpoints: start ingest with
   --tls-cert/--tls-key for that; report-uri works over http.)

INFO

before="$(ch_query 'SELECT sum(occurrences) FROM palisade.reports FINAL' 2>/dev/null || echo 0)"
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

say "waiting for the processor to write them to ClickHouse (windows close after a few seconds)"
# The stored total grows by this run's reports, then stays put: wait for that (at most 60 s). A
# timeout is said, not fatal: the stack stays up to be looked at (the readiness hint follows).
stored() { ch_query 'SELECT sum(occurrences) FROM palisade.reports FINAL' 2>/dev/null || echo 0; }
last="$(stored)"; steady=0; polls=0
settled() {
  sleep 0.8
  polls=$((polls + 1))
  now="$(stored)"
  if [ "$now" = "$last" ] && [ "${now:-0}" -gt "${before:-0}" ]; then
    steady=$((steady + 1))
  else
    steady=0
  fi
  last="$now"
  [ "$steady" -ge 4 ]
}
poll 60 settled || say "timed out after 60 s waiting for ClickHouse's total to settle (last: ${last:-0}, before: ${before:-0}); the counts below may be partial, see $home/logs/processor.log"
say "reports stored in ClickHouse: $((${last:-0} - ${before:-0})) from this run, ${last:-0} in all; by kind:"
processor_ready="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$processor_admin_port/readyz" || true)"
if [ "$processor_ready" != 200 ]; then
  say "the processor is not ready (/readyz $processor_ready): it owns no partitions yet. If tansu"
  say "died with a processor in its group (a crash, kill -9), tansu keeps that dead member: your"
  say "reports are safe in Kafka; press Ctrl-C and run this script again (README, Quick start)."
fi
summary="SELECT kind, count() AS \`rows\`, sum(occurrences) AS reports FROM palisade.reports FINAL GROUP BY kind ORDER BY reports DESC FORMAT PrettyCompactMonoBlock"
ch_query "$summary" | sed 's/^/  /' || say "ClickHouse query failed; see $home/logs/processor.log"

say "running; Ctrl-C stops everything"
wait
