#!/usr/bin/env bash
# Ingest's CPU per request against the Kafka floor, paired: the issue 13 ratio measured so that a
# noisy machine moves both sides alike. baseline.sh measures each server once, one after the
# other, so a neighbour's build landing on one of the runs moves the ratio by 0.5x; here the
# floor (`palisade-baseline --kafka`) and ingest (json and binary message format, and optionally
# the same two of an earlier build) are all started at once, pinned to the same CPU, and measured
# in ROUNDS: each round runs a short closed loop (saturation) and a short open loop at RATE
# against every server in turn, rotating the order from round to round. Each round gives one
# ratio per server (its CPU-us per request over the floor's in that round), and the script prints
# the median, the lowest and the highest over the rounds.
#
#   deploy/scripts/floor-ratio.sh [rounds=8] [seconds=5] [rate=4000] [concurrency=256]
#
# Environment: PALISADE_BIN_DIR (default target/release, implies no build) takes palisade-ingest,
# palisade-baseline and palisade-load from another directory; PALISADE_BEFORE_BIN_DIR adds that
# directory's palisade-ingest (both formats) as two more servers, for before/after runs in the
# same rounds; PALISADE_KAFKA_FLAGS adds producer flags to every server; PALISADE_PIN=0 disables
# CPU pinning (default: servers on CPU 0, load generator and tansu on the others);
# PALISADE_PROFILE (default legacy) changes the load; PALISADE_FLOOR_BETWEEN=1 measures the floor
# between every two servers of a round (floor, server, floor, server, ..., floor) and gives each
# server's ratio against the mean of the two floor runs beside it, so a drift of the machine
# within a round moves both sides of each ratio alike. CPU is utime+stime of each server process
# (/proc/PID/stat) over its own run. Everything it starts is stopped at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
rounds="${1:-8}"
seconds="${2:-5}"
rate="${3:-4000}"
concurrency="${4:-256}"
profile="${PALISADE_PROFILE:-legacy}"
. deploy/scripts/bench-common.sh
tansu="$(deploy/scripts/setup.sh | tail -n 1)"
bin="${PALISADE_BIN_DIR:-target/release}"
before="${PALISADE_BEFORE_BIN_DIR:-}"
[ -n "${PALISADE_BIN_DIR:-}" ] || cargo build --release --locked -p ingest -p benches --bins >/dev/null

server_cpus=""; client_cpus=""
if [ "${PALISADE_PIN:-1}" != 0 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  server_cpus="taskset -c 0"; client_cpus="taskset -c 1-$(($(nproc) - 1))"
fi

kafka_port="$(free_port)"
# shellcheck disable=SC2086
start_tansu "$tansu" "$kafka_port" $client_cpus
create_topic "$tansu" "$kafka_port" load 4
write_projects load load-key

names=(); urls=(); server_pids=()
# start_ingest NAME BINARY_DIR FORMAT
start_ingest() {
  local name="$1" dir="$2" format="$3" port admin_port
  port="$(free_port)"; admin_port="$(free_port)"
  # shellcheck disable=SC2086
  $server_cpus "$dir"/palisade-ingest --public-addr "127.0.0.1:$port" \
    --admin-addr "127.0.0.1:$admin_port" --projects-file "$work/projects.toml" \
    --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load \
    --ip-rate-per-second 1000000 --ip-burst 1000000 --kafka-message-format "$format" \
    --max-in-flight-requests 4096 --max-in-flight-per-ip 4096 --max-in-flight-per-project 4096 \
    ${PALISADE_KAFKA_FLAGS:-} >"$work/$name.log" 2>&1 &
  pids+=("$!"); server_pids+=("$!"); names+=("$name")
  urls+=("http://127.0.0.1:$port/api/1/security/?sentry_key=load-key")
  wait_log="$work/$name.log" wait_for 20 "$name /readyz" http_ok "http://127.0.0.1:$admin_port/readyz"
}
floor_port="$(free_port)"
# shellcheck disable=SC2086
$server_cpus "$bin"/palisade-baseline --addr "127.0.0.1:$floor_port" --kafka \
  --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load ${PALISADE_KAFKA_FLAGS:-} \
  >"$work/floor.log" 2>&1 &
pids+=("$!"); server_pids+=("$!"); names+=(floor)
urls+=("http://127.0.0.1:$floor_port/api/1/security/?sentry_key=load-key")
wait_log="$work/floor.log" wait_for 10 "palisade-baseline --kafka on port $floor_port" port_open "$floor_port"
start_ingest ingest-json "$bin" json
start_ingest ingest-binary "$bin" binary
if [ -n "$before" ]; then
  start_ingest before-json "$before" json
  start_ingest before-binary "$before" binary
fi

# run NAME_INDEX FILE SECONDS [extra flags...]
run() {
  local i="$1" file="$2" secs="$3"; shift 3
  # shellcheck disable=SC2086
  $client_cpus "$bin"/palisade-load --url "${urls[$i]}" --mode keepalive --profile "$profile" \
    --concurrency "$concurrency" --duration-secs "$secs" --watch-pid "${server_pids[$i]}" \
    --json "$@" >"$file"
}

count=${#names[@]}
between="${PALISADE_FLOOR_BETWEEN:-0}"
echo "== servers: ${names[*]}; warm-up 2 s each" >&2
for ((i = 0; i < count; i++)); do run "$i" "$work/warm.json" 2; done
# measure NAME_INDEX ROUND FILE_NAME: one closed-loop and one open-loop run of a server.
measure() {
  run "$1" "$work/closed-$2-$3.json" "$seconds"
  run "$1" "$work/rate-$2-$3.json" "$seconds" --rate "$rate"
}
for ((r = 0; r < rounds; r++)); do
  echo "== round $((r + 1))/$rounds (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  if [ "$between" = 1 ]; then
    # The floor is names[0]: floor, then each other server in rotated order followed by a floor.
    measure 0 "$r" floor-0
    for ((k = 0; k < count - 1; k++)); do
      i=$((1 + (k + r) % (count - 1)))
      measure "$i" "$r" "${names[$i]}"
      measure 0 "$r" "floor-$((k + 1))"
      echo "$k" >"$work/position-$r-${names[$i]}"
    done
  else
    for ((k = 0; k < count; k++)); do
      i=$(((k + r) % count))
      measure "$i" "$r" "${names[$i]}"
    done
  fi
done

python3 - "$work" "$rounds" "$rate" "$between" "${names[@]}" <<'PY'
import json, os, statistics, sys
work, rounds, rate, between, names = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1", sys.argv[5:]
def figures(scenario, r, name):
    d = json.load(open(f"{work}/{scenario}-{r}-{name}.json"))
    bad = sum(n for code, n in d["statuses"].items() if not 200 <= int(code) < 300)
    bad += sum(d["transport_errors"].values())
    return d["watched"][0]["cpu_us_per_request"], d["requests_per_second"], bad
def floor_of(scenario, r, name):
    # The floor run(s) a server's run of round r is compared with.
    if not between:
        return figures(scenario, r, "floor")[0]
    if name == "floor":
        return statistics.mean(figures(scenario, r, f"floor-{j}")[0] for j in range(len(names)))
    k = int(open(f"{work}/position-{r}-{name}").read())
    return (figures(scenario, r, f"floor-{k}")[0] + figures(scenario, r, f"floor-{k + 1}")[0]) / 2
if between:
    for scenario in ("closed", "rate"):
        for r in range(rounds):
            os.symlink(f"{work}/{scenario}-{r}-floor-0.json", f"{work}/{scenario}-{r}-floor.json")
for scenario, label in (("closed", "closed loop (saturation)"), ("rate", f"open loop at {rate} req/s")):
    print(f"\n{label}, {rounds} rounds" + (", floor measured between every two servers" if between else ""))
    print(f"{'server':<16}{'cpu-us/req median':>18}{'req/s median':>14}{'non-2xx':>9}{'/floor median':>15}{'min':>7}{'max':>7}")
    for name in names:
        runs = [figures(scenario, r, name) for r in range(rounds)]
        cpu = [c for c, _, _ in runs]
        ratios = [c / floor_of(scenario, r, name) for r, c in enumerate(cpu)]
        print(f"{name:<16}{statistics.median(cpu):>18.2f}{statistics.median(t for _, t, _ in runs):>14.0f}"
              f"{sum(b for _, _, b in runs):>9}{statistics.median(ratios):>14.2f}x{min(ratios):>6.2f}x{max(ratios):>6.2f}x")
PY
