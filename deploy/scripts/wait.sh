# shellcheck shell=bash
# Sourced (not run) by deploy/local.sh, deploy/scripts/validate.sh and, through bench-common.sh,
# the benchmark scripts: the one way they wait for something, failing loudly when it never comes.

# poll SECONDS COMMAND...: runs COMMAND (output discarded) every 0.2 s; true as soon as it
# succeeds, false once SECONDS have passed. For waits whose caller handles the timeout itself.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# wait_for SECONDS WHAT COMMAND...: like poll, but after SECONDS it prints "timed out after SECONDS s waiting for WHAT" to stderr, and the
# last 30 lines of $wait_log when that names a file (`wait_log=FILE wait_for ...`), then exits the
# script with status 1 (its EXIT trap stops what it started).
wait_for() {
  local seconds="$1" what="$2"
  shift 2
  poll "$seconds" "$@" && return 0
  echo "timed out after $seconds s waiting for $what" >&2
  if [ -n "${wait_log:-}" ] && [ -f "$wait_log" ]; then
    echo "last lines of $wait_log:" >&2
    tail -n 30 "$wait_log" >&2 || true
  fi
  exit 1
}

# Predicates for wait_for.
# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# http_ok URL: URL answers 2xx.
http_ok() { curl -fsS "$1" >/dev/null 2>&1; }
# clickhouse_up PORT: the ClickHouse HTTP interface on 127.0.0.1:PORT answers `SELECT 1`.
clickhouse_up() { [ "$(curl -fsS "http://127.0.0.1:$1/" --data-binary 'SELECT 1' 2>/dev/null)" = 1 ]; }
# process_gone PID: PID has exited.
process_gone() { ! kill -0 "$1" 2>/dev/null; }
