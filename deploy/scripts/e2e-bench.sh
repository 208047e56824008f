#!/usr/bin/env bash
# End-to-end benchmark on this machine: palisade-load -> ingest -> tansu -> processor ->
# ClickHouse, everything on loopback and stopped at the end.
#
#   deploy/scripts/e2e-bench.sh [run-secs=60] [concurrency=64] [profile=mixed] [distinct=1000]
#
# 1. Saturation: closed-loop load for PALISADE_E2E_SAT_SECS (default 20) seconds; the accepted
#    reports/s is the saturation rate. The processor must then drain it (sum(occurrences) in
#    ClickHouse = reports ingest accepted) before phase 2 starts.
# 2. Half rate: open-loop load (`palisade-load --rate`) at half the saturation request rate for
#    run-secs, while palisade-probe POSTs uniquely-marked reports (PALISADE_E2E_PROBE_RATE per
#    second, default 2) and polls ClickHouse until each is queryable. Prints the sustained
#    reports/s, the probe's POST-to-queryable p50/p99/max, and the CPU seconds and peak RSS of
#    ingest, tansu, processor and ClickHouse during phase 2 (from /proc), then checks that
#    sum(occurrences) equals every report ingest accepted.
#
# Processor latency settings (the dedup window decides how soon a row can exist): one-second
# windows, no grace, a batch written at most 200 ms after its first row. Override with
# PALISADE_E2E_PROCESSOR_ARGS. The load generator, the probe and all four servers share this
# machine's cores: the figures are for the whole stack on one box, not per-process capacity.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
run_secs="${1:-60}"
concurrency="${2:-64}"
profile="${3:-mixed}"
distinct="${4:-1000}"
sat_secs="${PALISADE_E2E_SAT_SECS:-20}"
probe_rate="${PALISADE_E2E_PROBE_RATE:-2}"
processor_args="${PALISADE_E2E_PROCESSOR_ARGS:---window-secs 1 --grace-secs 0 --idle-close-secs 2 --batch-age-ms 200}"
. deploy/scripts/bench-common.sh
tansu="$(deploy/scripts/setup.sh | tail -n 1)"
cargo build --release --locked -p ingest -p processor -p benches >/dev/null
if ! target/release/palisade-load --help | grep -q -- '--rate'; then
  echo "palisade-load has no --rate (open loop): cannot run the half-rate phase" >&2
  exit 1
fi

kafka_port="$(free_port)"; port="$(free_port)"; admin_port="$(free_port)"
ch_port="$(free_port)"; ch_tcp_port="$(free_port)"; processor_admin_port="$(free_port)"

# --- servers ---------------------------------------------------------------------------------
start_tansu "$tansu" "$kafka_port"
create_topic "$tansu" "$kafka_port" e2e 4
create_topic "$tansu" "$kafka_port" e2e-dead-letter 1

deploy/scripts/clickhouse.sh "$work/clickhouse" "$ch_port" "$ch_tcp_port" >"$work/clickhouse.log" 2>&1 &
ch_pid=$!
pids+=("$ch_pid")
ch_query() { curl -fsS "http://127.0.0.1:$ch_port/" --data-binary "$1"; }
wait_log="$work/clickhouse.log" wait_for 20 "ClickHouse on port $ch_port" clickhouse_up "$ch_port"

write_projects e2e e2e-key
target/release/palisade-ingest --public-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
  --projects-file "$work/projects.toml" --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic e2e \
  --ip-rate-per-second 1000000 --ip-burst 1000000 >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
wait_log="$work/ingest.log" wait_for 20 "ingest /readyz" http_ok "http://127.0.0.1:$admin_port/readyz"

export PALISADE_KAFKA_BROKERS="127.0.0.1:$kafka_port" PALISADE_KAFKA_TOPIC=e2e \
  PALISADE_DEAD_LETTER_TOPIC=e2e-dead-letter PALISADE_CLICKHOUSE_URL="http://127.0.0.1:$ch_port" \
  PALISADE_ADMIN_ADDR="127.0.0.1:$processor_admin_port"
target/release/palisade-processor migrate >"$work/processor.log" 2>&1
# The rewind is for tansu (see README); the rest trades dedup for latency (see above).
# shellcheck disable=SC2086
target/release/palisade-processor run --kafka-resume-rewind 10000 $processor_args \
  >>"$work/processor.log" 2>&1 &
processor_pid=$!
pids+=("$processor_pid")
wait_log="$work/processor.log" wait_for 30 "processor /readyz" http_ok "http://127.0.0.1:$processor_admin_port/readyz"

url="http://127.0.0.1:$port/api/1/security/?sentry_key=e2e-key"
accepted_total() {
  curl -fsS "http://127.0.0.1:$admin_port/metrics" \
    | awk '/^ingest_reports_total\{.*outcome="accepted"/ {s += $2} END {printf "%d", s}'
}
stored_total() { ch_query 'SELECT toUInt64(sum(occurrences)) FROM palisade.reports FINAL' 2>/dev/null || echo 0; }
stored_at_least() { [ "$(stored_total)" -ge "$1" ]; }
# Waits until ClickHouse holds every accepted report (at most 300 s, then fails loudly); sets
# drain_secs to the seconds it took.
wait_drained() {
  local start now
  start="$(date +%s.%N)"
  wait_log="$work/processor.log" wait_for 300 "ClickHouse to hold $1 reports" stored_at_least "$1"
  now="$(date +%s.%N)"
  drain_secs="$(awk -v s="$start" -v n="$now" 'BEGIN { printf "%.1f", n - s }')"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
hwm_mib() { awk '/VmHWM/ { printf "%d", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# --- phase 1: saturation ---------------------------------------------------------------------
echo "== phase 1: saturation (closed loop, $concurrency workers, $sat_secs s, profile $profile)"
target/release/palisade-load --url "$url" --concurrency "$concurrency" --duration-secs "$sat_secs" \
  --profile "$profile" --distinct "$distinct" --json >"$work/sat.json"
sat_rps="$(json_field "$work/sat.json" 'd["requests_per_second"]')"
sat_reports="$(json_field "$work/sat.json" 'round(d["reports_accepted"] / d["elapsed_seconds"])')"
echo "saturation        $sat_reports reports/s accepted ($(printf '%.0f' "$sat_rps") requests/s), statuses $(json_field "$work/sat.json" 'd["statuses"]')"
accepted="$(accepted_total)"
wait_drained "$accepted"
echo "processor drain   $accepted reports stored after $drain_secs s more"

# --- phase 2: half rate with the probe -------------------------------------------------------
half_rps="$(awk -v r="$sat_rps" 'BEGIN { printf "%.1f", r / 2 }')"
echo "== phase 2: open loop at $half_rps requests/s (half of saturation) for $run_secs s, probe $probe_rate/s"
procs=(ingest:"$ingest_pid" tansu:"$tansu_pid" processor:"$processor_pid" clickhouse:"$ch_pid")
declare -A cpu_before
for entry in "${procs[@]}"; do cpu_before[${entry%%:*}]="$(cpu_ticks "${entry#*:}")"; done
# Peak RSS during this phase: sampled every 200 ms (VmHWM would include phase 1).
python3 - "$work/rss" "$ingest_pid" "$tansu_pid" "$processor_pid" "$ch_pid" <<'PY' &
import sys, time, signal
out, pids = sys.argv[1], sys.argv[2:]
peak = {p: 0 for p in pids}
stop = False
def handler(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, handler)
while not stop:
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    peak[p] = max(peak[p], int(line.split()[1]))
        except OSError:
            pass
    time.sleep(0.2)
with open(out, "w") as f:
    for p in pids:
        f.write(f"{p} {peak[p]}\n")
PY
sampler_pid=$!
pids+=("$sampler_pid")
phase_start="$(date +%s.%N)"
target/release/palisade-load --url "$url" --concurrency "$concurrency" --duration-secs "$run_secs" \
  --rate "$half_rps" --profile "$profile" --distinct "$distinct" --json >"$work/half.json" &
load_pid=$!
probe_status=0
target/release/palisade-probe --url "$url" --clickhouse-url "http://127.0.0.1:$ch_port" \
  --rate "$probe_rate" --duration-secs "$run_secs" >"$work/probe.txt" 2>"$work/probe.err" || probe_status=$?
wait "$load_pid"
phase_end="$(date +%s.%N)"
declare -A cpu_after
for entry in "${procs[@]}"; do cpu_after[${entry%%:*}]="$(cpu_ticks "${entry#*:}")"; done
kill -TERM "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true

half_reports="$(json_field "$work/half.json" 'round(d["reports_accepted"] / d["elapsed_seconds"])')"
echo "sustained         $half_reports reports/s accepted ($(json_field "$work/half.json" 'round(d["requests_per_second"])') requests/s offered $half_rps), statuses $(json_field "$work/half.json" 'd["statuses"]')"
echo "load latency      $(json_field "$work/half.json" 'd["latency_ms"]') ms (POST to 2xx, from intended send time)"
grep -E '^(probes|post->queryable)' "$work/probe.txt" | sed 's/^/  /'
[ "$probe_status" = 0 ] || { echo "PROBE FAILED:"; cat "$work/probe.err"; }
elapsed="$(awk -v s="$phase_start" -v e="$phase_end" 'BEGIN { printf "%.2f", e - s }')"
echo "process           cpu-s (phase 2, ${elapsed} s)  cores busy  peak rss phase 2  VmHWM (whole run)"
for entry in "${procs[@]}"; do
  name="${entry%%:*}"; pid="${entry#*:}"
  rss="$(awk -v p="$pid" '$1 == p { printf "%d", $2 / 1024 }' "$work/rss")"
  awk -v n="$name" -v b="${cpu_before[$name]}" -v a="${cpu_after[$name]}" -v e="$elapsed" \
    -v r="$rss" -v h="$(hwm_mib "$pid")" \
    'BEGIN { printf "  %-15s %8.1f %12.2f %12d MiB %14d MiB\n", n, (a - b) / 100, (a - b) / 100 / e, r, h }'
done
accepted="$(accepted_total)"
wait_drained "$accepted"
drain="$drain_secs"
stored="$(stored_total)"
echo "check             sum(occurrences) $stored, ingest accepted $accepted (drained ${drain} s after phase 2)"
[ "$stored" -eq "$accepted" ] || { echo "MISMATCH: stored $stored != accepted $accepted"; exit 1; }
[ "$probe_status" = 0 ] || exit 1
echo "processor flags   --kafka-resume-rewind 10000 $processor_args"
