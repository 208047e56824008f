#!/usr/bin/env bash
# Ingest's CPU per request against the floor any HTTP edge pays: runs the SAME load (HTTP/1.1
# keep-alive, the `legacy` profile of ~700-byte legacy CSP reports, same concurrency and
# duration) against `palisade-baseline` (a minimal hyper server that reads the body and answers
# 204), against the Kafka floor (`palisade-baseline --kafka`: the same server publishing each
# body as it came through ingest's own Publisher and answering 202 once acknowledged) and
# against a release ingest publishing to tansu (acks=all, so every 202 waited for Kafka), first
# closed loop (saturation), then open loop at a fixed rate all sustain. Prints throughput,
# latency and CPU-us per request of each, the ratios ingest / baseline, floor / baseline and
# ingest / floor, and where each server's CPU went by thread (user and system time).
# CPU is utime+stime of the server process (/proc/PID/stat), so the ratio holds on a noisy
# machine better than wall-clock figures; tansu and the load generator are reported apart.
#
#   deploy/scripts/baseline.sh [duration-secs=15] [concurrency=32] [rate=half the slower closed-loop throughput]
#
# Environment: PALISADE_PIN=0 disables CPU pinning (default on when taskset exists and the
# machine has at least 2 cores: servers on CPU 0, load generator and tansu on the others);
# PALISADE_PROFILE (default legacy) and PALISADE_MODE (default keepalive) change the load;
# PALISADE_KAFKA_FLAGS adds producer flags to ingest and the Kafka floor alike (e.g.
# "--kafka-linger-ms 20 --kafka-compression none"); PALISADE_INGEST_FLAGS adds flags to ingest
# alone; PALISADE_NO_BUILD=1
# uses the release binaries as they are; PALISADE_BIN_DIR (default target/release, implies
# PALISADE_NO_BUILD=1) takes palisade-ingest, palisade-baseline and palisade-load from another
# directory (e.g. a copy of an earlier build, for before/after runs).
# The load comes from one client IP for one project: ingest's per-IP and per-project in-flight
# shares (`--max-in-flight-per-ip`, default 64) are raised so every request is served, not
# answered 429 `client_in_flight`.
# Everything it starts is stopped at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
duration="${1:-15}"
concurrency="${2:-32}"
fixed_rate="${3:-}"
profile="${PALISADE_PROFILE:-legacy}"
mode="${PALISADE_MODE:-keepalive}"
. deploy/scripts/bench-common.sh
tansu="$(deploy/scripts/setup.sh | tail -n 1)"
bin="${PALISADE_BIN_DIR:-target/release}"
[ "${PALISADE_NO_BUILD:-0}" = 1 ] || [ -n "${PALISADE_BIN_DIR:-}" ] || cargo build --release --locked -p ingest -p benches --bins >/dev/null

server_cpus=""; client_cpus=""
if [ "${PALISADE_PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpus="taskset -c 0"; client_cpus="taskset -c 1-$(($(nproc) - 1))"
fi

kafka_port="$(free_port)"; port="$(free_port)"; admin_port="$(free_port)"; base_port="$(free_port)"
floor_port="$(free_port)"

# shellcheck disable=SC2086
start_tansu "$tansu" "$kafka_port" $client_cpus
create_topic "$tansu" "$kafka_port" load 4
write_projects load load-key
$server_cpus "$bin"/palisade-ingest --public-addr "127.0.0.1:$port" \
  --admin-addr "127.0.0.1:$admin_port" --projects-file "$work/projects.toml" \
  --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load \
  --ip-rate-per-second 1000000 --ip-burst 1000000 \
  --max-in-flight-requests 4096 --max-in-flight-per-ip 4096 --max-in-flight-per-project 4096 \
  ${PALISADE_KAFKA_FLAGS:-} ${PALISADE_INGEST_FLAGS:-} \
  >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
$server_cpus "$bin"/palisade-baseline --addr "127.0.0.1:$base_port" >"$work/baseline.log" 2>&1 &
baseline_pid=$!
pids+=("$baseline_pid")
wait_log="$work/ingest.log" wait_for 20 "ingest /readyz" http_ok "http://127.0.0.1:$admin_port/readyz"
$server_cpus "$bin"/palisade-baseline --addr "127.0.0.1:$floor_port" --kafka \
  --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load ${PALISADE_KAFKA_FLAGS:-} \
  >"$work/floor.log" 2>&1 &
floor_pid=$!
pids+=("$floor_pid")
wait_log="$work/baseline.log" wait_for 10 "palisade-baseline on port $base_port" port_open "$base_port"
wait_log="$work/floor.log" wait_for 10 "palisade-baseline --kafka on port $floor_port" port_open "$floor_port"

ingest_url="http://127.0.0.1:$port/api/1/security/?sentry_key=load-key"
base_url="http://127.0.0.1:$base_port/api/1/security/?sentry_key=load-key"
floor_url="http://127.0.0.1:$floor_port/api/1/security/?sentry_key=load-key"
load() { # name url pid seconds [extra flags...]
  local name="$1" url="$2" pid="$3" seconds="$4"; shift 4
  $client_cpus "$bin"/palisade-load --url "$url" --mode "$mode" --profile "$profile" \
    --concurrency "$concurrency" --duration-secs "$seconds" --watch-pid "$pid" \
    --watch-pid "$tansu_pid" --json "$@" >"$work/$name.json"
  echo "  $name: $(json_field "$work/$name.json" '"%d req/s, statuses %s, errors %s" % (d["requests_per_second"], json.dumps(d["statuses"]), json.dumps(d["transport_errors"]))')" >&2
}

# One line per thread of PID: name, utime, stime in clock ticks (for the per-thread breakdown).
threads() {
  local task line
  for task in /proc/"$1"/task/*; do
    line="$(cat "$task/stat" 2>/dev/null)" || continue
    local name="${line#*(}"; name="${name%)*}"; local rest="${line##*) }"
    # shellcheck disable=SC2086
    set -- $rest
    echo "${name// /_} ${12} ${13}"
  done
}

echo "== warm-up (3 s each, not counted)" >&2
load warm-base "$base_url" "$baseline_pid" 3
load warm-floor "$floor_url" "$floor_pid" 3
load warm-ingest "$ingest_url" "$ingest_pid" 3
echo "== closed loop, ${duration} s, concurrency $concurrency, $mode, profile $profile" >&2
threads "$baseline_pid" >"$work/threads-base-before"
load closed-base "$base_url" "$baseline_pid" "$duration"
threads "$baseline_pid" >"$work/threads-base-after"
threads "$floor_pid" >"$work/threads-floor-before"
load closed-floor "$floor_url" "$floor_pid" "$duration"
threads "$floor_pid" >"$work/threads-floor-after"
threads "$ingest_pid" >"$work/threads-ingest-before"
load closed-ingest "$ingest_url" "$ingest_pid" "$duration"
threads "$ingest_pid" >"$work/threads-ingest-after"
if [ -z "$fixed_rate" ]; then
  fixed_rate="$(python3 -c 'import json,sys; print(int(min(json.load(open(f))["requests_per_second"] for f in sys.argv[1:]) / 2))' \
    "$work/closed-base.json" "$work/closed-floor.json" "$work/closed-ingest.json")"
fi
echo "== open loop at $fixed_rate requests/s" >&2
load rate-base "$base_url" "$baseline_pid" "$duration" --rate "$fixed_rate"
load rate-floor "$floor_url" "$floor_pid" "$duration" --rate "$fixed_rate"
load rate-ingest "$ingest_url" "$ingest_pid" "$duration" --rate "$fixed_rate"

python3 - "$work" "$fixed_rate" <<'PY'
import json, sys
work, rate = sys.argv[1], sys.argv[2]
def get(name):
    return json.load(open(f"{work}/{name}.json"))
rows = []
NAMES = {"base": "baseline", "floor": "kafka floor", "ingest": "ingest"}
print()
print(f"{'run':<22}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p99.9 ms':>10}{'server cpu-us/req':>19}{'tansu cpu-us/req':>18}{'gen cpu s':>10}{'non-2xx':>9}")
for scenario in ("closed", "rate"):
    figures = {}
    for target in ("base", "floor", "ingest"):
        s = get(f"{scenario}-{target}")
        server, tansu = s["watched"][0], s["watched"][1]
        bad = sum(n for code, n in s["statuses"].items() if not 200 <= int(code) < 300) + sum(s["transport_errors"].values())
        label = f"{scenario} {NAMES[target]}"
        print(f"{label:<22}{s['requests_per_second']:>9.0f}{s['latency_ms']['p50']:>9.3f}{s['latency_ms']['p99']:>9.3f}{s['latency_ms']['p99_9']:>10.3f}"
              f"{server['cpu_us_per_request'] or 0:>19.1f}{tansu['cpu_us_per_request'] or 0:>18.1f}{s['generator_cpu_seconds'] or 0:>10.2f}{bad:>9}")
        figures[target] = (s["requests_per_second"], server["cpu_us_per_request"] or float("nan"))
    (bt, bc), (ft, fc), (it, ic) = figures["base"], figures["floor"], figures["ingest"]
    name = "closed loop (saturation)" if scenario == "closed" else f"open loop at {rate}/s"
    print(f"  ratio ingest/baseline, {name}: cpu per request {ic / bc:.2f}x, throughput {it / bt:.2f}x")
    print(f"  ratio kafka floor/baseline: cpu per request {fc / bc:.2f}x; ingest/kafka floor: {ic / fc:.2f}x")
ingest = get("closed-ingest")["watched"][0]
print(f"ingest peak rss {(ingest['peak_rss_kib'] or 0) // 1024} MiB")

# Where each server's CPU went in the closed loop, by thread (names: tokio workers, librdkafka's
# rdk:main / rdk:broker* threads, rdkafka's delivery poller), in CPU-us per request.
import collections, os, re
hz = os.sysconf("SC_CLK_TCK")
def ticks(name):
    by = collections.defaultdict(lambda: [0, 0])
    for line in open(f"{work}/{name}"):
        thread, user, system = line.split()
        entry = by[re.sub(r"[-_:]?\d+$", "", thread) or thread]
        entry[0] += int(user)
        entry[1] += int(system)
    return by
for target in ("base", "floor", "ingest"):
    before, after = ticks(f"threads-{target}-before"), ticks(f"threads-{target}-after")
    requests = get(f"closed-{target}")["requests"]
    name = NAMES[target]
    print(f"{name} CPU by thread, closed loop ({requests} requests), cpu-us/req: total (user + system)")
    def spent(thread):
        was = before.get(thread, [0, 0])
        return [(now - then) / hz * 1e6 / requests for now, then in zip(after[thread], was)]
    for thread in sorted(after, key=lambda t: sum(spent(t)), reverse=True):
        user, system = spent(thread)
        if user + system > 0:
            print(f"  {thread:<24}{user + system:>8.1f} ({user:.1f} + {system:.1f})")
PY
