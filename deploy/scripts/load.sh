#!/usr/bin/env bash
# Measures ingest throughput, latency and memory on this machine: starts tansu (memory storage)
# and a release ingest on loopback, runs the load generator against it for a bounded time, and
# prints its report plus ingest's own counters. Then, unless PALISADE_LOAD_PROCESSOR=0, starts
# ClickHouse and a release processor on the topic the run filled and measures how fast it drains
# it into ClickHouse (messages/s, peak memory), checking that sum(occurrences) equals the
# reports ingest accepted. Everything it starts is stopped at the end.
#
#   deploy/scripts/load.sh [duration-secs=20] [concurrency=32] [profile=mixed|legacy|batch|corpus] [distinct=1000]
#
# PALISADE_LOAD_FLAGS adds flags to palisade-load (e.g. "--mode h2" or "--rate 2000"; see
# `palisade-load --help`), PALISADE_LOAD_INGEST_FLAGS flags to ingest. One million client IPs:
#   PALISADE_LOAD_PROCESSOR=0 PALISADE_LOAD_INGEST_FLAGS=--trust-forwarded-for \
#   PALISADE_LOAD_FLAGS="--client-ips 1000000 --requests 1000000" deploy/scripts/load.sh 600 32 legacy 1
# deploy/scripts/baseline.sh compares ingest's CPU per request with a
# minimal hyper server under the same load.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
duration="${1:-20}"
concurrency="${2:-32}"
body="${3:-mixed}"
distinct="${4:-1000}"
. deploy/scripts/bench-common.sh
tansu="$(deploy/scripts/setup.sh | tail -n 1)"
cargo build --release --locked -p ingest -p processor -p benches >/dev/null

kafka_port="$(free_port)"; port="$(free_port)"; admin_port="$(free_port)"
ch_port="$(free_port)"; ch_tcp_port="$(free_port)"; processor_admin_port="$(free_port)"

start_tansu "$tansu" "$kafka_port"
create_topic "$tansu" "$kafka_port" load 4
create_topic "$tansu" "$kafka_port" load-dead-letter 1
write_projects load load-key
target/release/palisade-ingest --public-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
  --projects-file "$work/projects.toml" --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load \
  --ip-rate-per-second 1000000 --ip-burst 1000000 ${PALISADE_LOAD_INGEST_FLAGS:-} >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
wait_log="$work/ingest.log" wait_for 20 "ingest /readyz" http_ok "http://127.0.0.1:$admin_port/readyz"
echo "idle ingest rss: $(awk '/VmRSS/ {print int($2/1024) " MiB"}' /proc/$ingest_pid/status)"

target/release/palisade-load --url "http://127.0.0.1:$port/api/1/security/?sentry_key=load-key" \
  --concurrency "$concurrency" --duration-secs "$duration" --profile "$body" --distinct "$distinct" \
  --watch-pid "$ingest_pid" ${PALISADE_LOAD_FLAGS:-}
echo "ingest counters:"
metrics="$(curl -fsS "http://127.0.0.1:$admin_port/metrics")"
grep -E '^ingest_(reports_total|rejections_total|publish_errors_total)' <<<"$metrics" | sed 's/^/  /'
accepted="$(grep -E '^ingest_reports_total\{.*outcome="accepted"' <<<"$metrics" | awk '{s += $2} END {printf "%d", s}')"
[ "${PALISADE_LOAD_PROCESSOR:-1}" = 0 ] && exit 0

echo "== processor: draining $accepted reports into ClickHouse"
deploy/scripts/clickhouse.sh "$work/clickhouse" "$ch_port" "$ch_tcp_port" >"$work/clickhouse.log" 2>&1 &
pids+=($!)
ch_query() { curl -fsS "http://127.0.0.1:$ch_port/" --data-binary "$1"; }
wait_log="$work/clickhouse.log" wait_for 20 "ClickHouse on port $ch_port" clickhouse_up "$ch_port"
export PALISADE_KAFKA_BROKERS="127.0.0.1:$kafka_port" PALISADE_KAFKA_TOPIC=load \
  PALISADE_DEAD_LETTER_TOPIC=load-dead-letter PALISADE_CLICKHOUSE_URL="http://127.0.0.1:$ch_port" \
  PALISADE_ADMIN_ADDR="127.0.0.1:$processor_admin_port"
target/release/palisade-processor migrate >"$work/processor.log" 2>&1
started="$(date +%s.%N)"
# Windows close on idle after 5 s once the topic is drained; the rewind is for tansu (see README).
target/release/palisade-processor run --kafka-resume-rewind 10000 --idle-close-secs 5 \
  >>"$work/processor.log" 2>&1 &
processor_pid=$!
pids+=("$processor_pid")
peak=0; consumed=0; drained=""
# One sample (peak RSS, when the topic was consumed) per poll; true once ClickHouse holds every
# accepted report.
sample_until_stored() {
  rss="$(awk '/VmRSS/ {print $2}' "/proc/$processor_pid/status" 2>/dev/null || echo 0)"
  [ "${rss:-0}" -gt "$peak" ] && peak="$rss"
  consumed="$(curl -fsS "http://127.0.0.1:$processor_admin_port/metrics" 2>/dev/null \
    | awk '/^processor_messages_consumed_total / {print int($2)}')"
  if [ -z "$drained" ] && [ "${consumed:-0}" -ge "$accepted" ]; then
    drained="$(date +%s.%N)"
  fi
  stored="$(ch_query 'SELECT sum(occurrences) FROM palisade.reports FINAL' 2>/dev/null || echo 0)"
  [ "${stored:-0}" -ge "$accepted" ]
}
wait_log="$work/processor.log" wait_for 300 "ClickHouse to hold $accepted reports" sample_until_stored
finished="$(date +%s.%N)"
rows="$(ch_query 'SELECT count() FROM palisade.reports FINAL')"
awk -v a="$accepted" -v s="$started" -v d="${drained:-$finished}" -v f="$finished" \
  'BEGIN { printf "consumed          %d messages in %.2f s (%.0f/s)\n", a, d - s, a / (d - s);
           printf "stored            after %.2f s (includes the 5 s idle close)\n", f - s }'
echo "rows in ClickHouse $rows (sum(occurrences) $stored, ingest accepted $accepted)"
echo "processor peak rss $((peak / 1024)) MiB"
[ "${stored:-0}" -eq "$accepted" ] || { echo "MISMATCH: stored $stored != accepted $accepted"; exit 1; }
