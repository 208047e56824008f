#!/usr/bin/env bash
# Instruction profile of a release ingest under load: runs palisade-ingest under valgrind's
# callgrind against tansu, sends a fixed number of keep-alive requests of the `legacy` profile
# (open loop, slow enough for valgrind), stops ingest and prints the instructions per request of
# the functions that matter. perf counters are not available on the development VM; callgrind
# counts user-space instructions only (system time is not in it).
#
#   deploy/scripts/profile-ingest.sh [requests=20000] [rate=1000]
#
# Environment: PALISADE_NO_BUILD=1 uses the release binaries as they are; PALISADE_INGEST_BIN
# profiles another ingest binary (e.g. a copy of main's, for a before/after); PALISADE_PROFILE
# (default legacy) changes the load; ingest's own PALISADE_* settings pass through (e.g.
# PALISADE_KAFKA_MESSAGE_FORMAT=json). The callgrind file is kept at PALISADE_CALLGRIND_OUT
# (default /tmp/palisade-ingest.cg; read it with `callgrind_annotate --inclusive=yes FILE`), so
# two people profiling on one machine do not overwrite each other's. Everything it starts is
# stopped at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
requests="${1:-20000}"
rate="${2:-1000}"
profile="${PALISADE_PROFILE:-legacy}"
out="${PALISADE_CALLGRIND_OUT:-/tmp/palisade-ingest.cg}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)" >&2; exit 1; }
. deploy/scripts/bench-common.sh
tansu="$(deploy/scripts/setup.sh | tail -n 1)"
[ "${PALISADE_NO_BUILD:-0}" = 1 ] || cargo build --release --locked -p ingest -p benches --bins >/dev/null

kafka_port="$(free_port)"; port="$(free_port)"; admin_port="$(free_port)"

start_tansu "$tansu" "$kafka_port"
create_topic "$tansu" "$kafka_port" load 4
write_projects load load-key
valgrind --tool=callgrind --callgrind-out-file="$out" \
  "${PALISADE_INGEST_BIN:-target/release/palisade-ingest}" --public-addr "127.0.0.1:$port" \
  --admin-addr "127.0.0.1:$admin_port" --projects-file "$work/projects.toml" \
  --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load \
  --ip-rate-per-second 1000000 --ip-burst 1000000 >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
wait_log="$work/ingest.log" wait_for 120 "ingest under valgrind: /readyz" http_ok "http://127.0.0.1:$admin_port/readyz"

url="http://127.0.0.1:$port/api/1/security/?sentry_key=load-key"
seconds=$(( (requests + rate - 1) / rate ))
target/release/palisade-load --url "$url" --mode keepalive --profile "$profile" \
  --concurrency 64 --duration-secs "$seconds" --rate "$rate" --json >"$work/load.json"
sent="$(json_field "$work/load.json" 'd["requests"]')"
echo "load: $(json_field "$work/load.json" '"%d requests, statuses %s" % (d["requests"], json.dumps(d["statuses"]))')" >&2
kill -TERM "$ingest_pid"
wait "$ingest_pid" 2>/dev/null || true

callgrind_annotate --inclusive=yes --auto=no "$out" >"$work/inclusive.txt" 2>/dev/null
total="$(awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}' "$work/inclusive.txt")"
echo "ingest under callgrind: $total instructions in all for $sent requests (start-up and shutdown included)"
echo "inclusive instructions per request of the main handler stages:"
grep -E 'routes::|publish::Publisher::publish|schemas::parse|ReportMessage::encode|metrics::|rd_kafka_producev|dispatch::Dispatcher.*poll_catch|uuid::|privacy::|filter::judge|fingerprint|read_body' \
  "$work/inclusive.txt" | grep -v '^ *[0-9,]* *( *0\.0' | head -40 \
  | awk -v n="$sent" '{c=$1; gsub(",", "", c); $1=""; printf "%10.0f %s\n", c / n, substr($0, 1, 160)}'
