# shellcheck shell=bash
# Sourced (not run) by the benchmark scripts baseline.sh, e2e-bench.sh, load.sh and
# profile-ingest.sh, from the repository root: a scratch directory ($work) removed on exit,
# child processes ($pids) stopped on exit, free loopback ports, tansu with memory storage and the
# one-project projects file they load. Waits go through deploy/scripts/wait.sh (loud timeouts).

. deploy/scripts/wait.sh

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_tansu TANSU PORT [WRAPPER...]: the tansu binary TANSU (memory storage) on 127.0.0.1:PORT,
# run under WRAPPER if given (e.g. `taskset -c 1`); sets tansu_pid and returns once it accepts
# connections. Its log is $work/tansu.log.
start_tansu() {
  local binary="$1" port="$2"
  shift 2
  (cd "$work" && exec "$@" "$binary" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://tansu/) \
    >"$work/tansu.log" 2>&1 &
  tansu_pid=$!
  pids+=("$tansu_pid")
  wait_log="$work/tansu.log" wait_for 10 "tansu on 127.0.0.1:$port" port_open "$port"
}

# json_field FILE EXPR: the Python expression EXPR over the JSON document in FILE (`d`; `json` is
# the module), e.g. `json_field out.json 'd["requests"]'`.
json_field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"json": json}, {"d": d}))' "$@"; }

# create_topic TANSU PORT NAME PARTITIONS
create_topic() { "$1" topic create --broker "tcp://127.0.0.1:$2" --partitions "$4" "$3" >/dev/null; }

# write_projects NAME KEY: $work/projects.toml with project 1 called NAME, public key KEY and a
# quota no load generator reaches.
write_projects() {
  cat > "$work/projects.toml" <<TOML
[[project]]
id = 1
name = "$1"
keys = [{ public_key = "$2" }]
quota = { per_second = 1000000, burst = 1000000 }
TOML
}
