#!/usr/bin/env bash
# Measures ingest throughput, latency and memory on this machine: starts tansu (memory storage)
# and a release ingest on loopback, runs the load generator against it for a bounded time, and
# prints its report plus ingest's own counters. Everything it starts is stopped at the end.
#
#   deploy/scripts/load.sh [duration-secs=20] [concurrency=32] [body=mixed|legacy|batch]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
duration="${1:-20}"
concurrency="${2:-32}"
body="${3:-mixed}"
work="$(mktemp -d)"
tansu="$(deploy/scripts/setup.sh | tail -n 1)"
cargo build --release --locked -p ingest -p benches >/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
kafka_port="$(free_port)"; port="$(free_port)"; admin_port="$(free_port)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

(cd "$work" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
  --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://tansu/) \
  >"$work/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break; sleep 0.1; done
"$tansu" topic create --broker "tcp://127.0.0.1:$kafka_port" --partitions 4 load >/dev/null

cat > "$work/projects.toml" <<TOML
[[project]]
id = 1
name = "load"
keys = [{ public_key = "load-key" }]
quota = { per_second = 1000000, burst = 1000000 }
TOML
target/release/palisade-ingest --public-addr "127.0.0.1:$port" --admin-addr "127.0.0.1:$admin_port" \
  --projects-file "$work/projects.toml" --kafka-brokers "127.0.0.1:$kafka_port" --kafka-topic load \
  --ip-rate-per-second 1000000 --ip-burst 1000000 >"$work/ingest.log" 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
echo "idle ingest rss: $(awk '/VmRSS/ {print int($2/1024) " MiB"}' /proc/$ingest_pid/status)"

target/release/palisade-load --url "http://127.0.0.1:$port/api/1/security/?sentry_key=load-key" \
  --concurrency "$concurrency" --duration-secs "$duration" --body "$body" --watch-pid "$ingest_pid"
echo "ingest counters:"
curl -fsS "http://127.0.0.1:$admin_port/metrics" \
  | grep -E '^ingest_(reports_total|rejections_total|publish_errors_total)' | sed 's/^/  /'
