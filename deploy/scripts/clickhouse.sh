#!/usr/bin/env bash
# Runs Debian's clickhouse-server (18.16 or newer) in the foreground on loopback with its config,
# data and logs in DIR (kept between runs):
#   deploy/scripts/clickhouse.sh DIR HTTP_PORT TCP_PORT
# Used by deploy/local.sh and deploy/scripts/load.sh. The default user has no password and is
# only reachable from 127.0.0.1.
set -euo pipefail
dir="$(mkdir -p "$1" && cd "$1" && pwd)"
http_port="$2"
tcp_port="$3"
mkdir -p "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/format_schemas" "$dir/log"
cat > "$dir/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>$dir/log/server.log</log>
        <errorlog>$dir/log/server.err.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <http_port>$http_port</http_port>
    <tcp_port>$tcp_port</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>64</max_connections>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
XML
cat > "$dir/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default></default></quotas>
</yandex>
XML
server="$(command -v clickhouse-server || echo /usr/sbin/clickhouse-server)"
exec "$server" --config-file="$dir/config.xml"
