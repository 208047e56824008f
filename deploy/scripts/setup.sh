#!/usr/bin/env bash
# Installs what Palisade's local stack and tests need, skipping whatever is already there:
# Debian packages (ClickHouse 18.16, ZooKeeper, Chromium, build tools for librdkafka) and the tansu broker,
# built once with cargo into a cache directory and reused afterwards (~16-25 min the first time).
#
# `setup.sh` prints the tansu binary's path as its last line; `setup.sh cargo-deny` also builds
# cargo-deny (the supply-chain check deploy/test.sh runs) and prints its path last instead.
#
# Environment:
#   PALISADE_CACHE   cache directory (default: $HOME/.cache/palisade)
#   PALISADE_TANSU   path of an existing tansu binary to use instead of building one
#
# It also installs playwright-core (pinned) with npm into $PALISADE_CACHE/node/node_modules, for
# the web UI's browser test (api/tests/ui.rs, which looks there; PALISADE_NODE_MODULES overrides).
set -euo pipefail

cache="${PALISADE_CACHE:-$HOME/.cache/palisade}"
tansu_version="0.6.0"
cargo_deny_version="0.20.2"
playwright_core_version="1.65.1"
mkdir -p "$cache"

log() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
need_pkgs=()
command -v clickhouse-server >/dev/null 2>&1 || [ -x /usr/sbin/clickhouse-server ] || need_pkgs+=(clickhouse-server)
# The dashboards' SQL check in deploy/scripts/validate.sh talks to ClickHouse through it.
command -v clickhouse-client >/dev/null 2>&1 || need_pkgs+=(clickhouse-client)
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
# processor/tests/kcat.rs reads a topic with kcat, as README tells operators to.
command -v kcat >/dev/null 2>&1 || need_pkgs+=(kcat)
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
command -v cmake >/dev/null 2>&1 || need_pkgs+=(cmake)
command -v curl >/dev/null 2>&1 || need_pkgs+=(curl)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
command -v cc >/dev/null 2>&1 || need_pkgs+=(gcc g++)
command -v pkg-config >/dev/null 2>&1 || need_pkgs+=(pkg-config)
dpkg -s zlib1g-dev >/dev/null 2>&1 || need_pkgs+=(zlib1g-dev)
# ZooKeeper for the ClickHouse cluster test (processor/tests/cluster.rs: two shards, replicated tables).
[ -f /usr/share/java/zookeeper.jar ] || need_pkgs+=(zookeeper)
if [ "${#need_pkgs[@]}" -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  log "installing Debian packages: ${need_pkgs[*]}"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need_pkgs[@]}"
fi
# The package's own service is not used: our scripts and tests start their own servers.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet clickhouse-server 2>/dev/null; then
  log "note: a system clickhouse-server is running; Palisade uses its own instance on other ports"
fi

# --- tansu (Kafka-compatible broker) ---------------------------------------------------------
tansu_bin="${PALISADE_TANSU:-$cache/tansu/bin/tansu}"
if [ -x "$tansu_bin" ]; then
  log "tansu: $tansu_bin"
else
  log "building tansu $tansu_version into $cache/tansu (once; about 16-25 minutes on 2 cores)"
  CARGO_TARGET_DIR="$cache/tansu-target" cargo install tansu --version "$tansu_version" --locked \
    --features dynostore,libsql --root "$cache/tansu"
  rm -rf "$cache/tansu-target"
fi

# --- playwright-core (drives Debian's chromium in api/tests/ui.rs; downloads no browser) ---------
node_dir="$cache/node"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  log "warning: node $(node --version 2>/dev/null || echo missing) is older than playwright-core $playwright_core_version's minimum (20)"
fi
installed="$(node -p "require('$node_dir/node_modules/playwright-core/package.json').version" 2>/dev/null || true)"
if [ "$installed" = "$playwright_core_version" ]; then
  log "playwright-core: $node_dir/node_modules/playwright-core"
else
  log "installing playwright-core $playwright_core_version into $node_dir"
  mkdir -p "$node_dir"
  npm install --prefix "$node_dir" --no-audit --no-fund --no-save --loglevel=error \
    "playwright-core@$playwright_core_version" >&2
fi

# --- cargo-deny (only for deploy/test.sh) ------------------------------------------------------
if [ "${1:-}" = cargo-deny ]; then
  deny_bin="$cache/cargo-deny-$cargo_deny_version/bin/cargo-deny"
  if [ ! -x "$deny_bin" ]; then
    log "building cargo-deny $cargo_deny_version into $cache (once; a few minutes)"
    CARGO_TARGET_DIR="$cache/cargo-deny-target" cargo install cargo-deny --version "$cargo_deny_version" \
      --locked --root "$cache/cargo-deny-$cargo_deny_version"
    rm -rf "$cache/cargo-deny-target"
  fi
  echo "$deny_bin"
  exit 0
fi
echo "$tansu_bin"
