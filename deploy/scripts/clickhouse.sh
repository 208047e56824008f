#!/usr/bin/env bash
# Runs Debian's clickhouse-server (18.16 or newer) in the foreground on loopback with its config,
# data and logs in DIR (kept between runs):
#   deploy/scripts/clickhouse.sh DIR HTTP_PORT TCP_PORT
# Used by deploy/local.sh, deploy/scripts/load.sh and deploy/scripts/validate.sh; the config is
# deploy/clickhouse/{config,users}.xml (the tests' testbed uses the same files). The default user
# has no password and is only reachable from 127.0.0.1.
set -euo pipefail
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
http_port="$2"
tcp_port="$3"
mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
templates="$(cd "$(dirname "$0")/../clickhouse" && pwd)"
sed -e "s|@DIR@|$dir|g" -e "s|@HTTP_PORT@|$http_port|g" -e "s|@TCP_PORT@|$tcp_port|g" \
  "$templates/config.xml" > "$dir/config.xml"
cp "$templates/users.xml" "$dir/users.xml"
server="$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)"
exec "$server" --config-file="$dir/config.xml"
