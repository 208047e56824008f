#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (policy: deny.toml at the repository root):
#   licences  only the permissive licences deny.toml lists;
#   bans      no second semver-incompatible version of a crate unless deny.toml's `skip` says why;
#   sources   crates.io only (no git or other registries);
#   advisories the RustSec database, when its git host is reachable (cargo deny fetch).
# Usage: deploy/scripts/deny.sh CARGO_DENY_BINARY
set -euo pipefail
cd "$(dirname "$0")/../.."
deny="${1:?usage: deny.sh CARGO_DENY_BINARY}"

"$deny" --locked check --hide-inclusion-graph licenses bans sources

if timeout 120 "$deny" --locked fetch db >/dev/null 2>&1; then
    "$deny" --locked check --disable-fetch advisories
else
    # This workplace's network reaches package registries only, not the database's git host: say
    # so loudly rather than pass silently.
    echo "cargo deny: ADVISORIES NOT CHECKED: the RustSec database could not be fetched" \
        "(run deploy/scripts/deny.sh where its git host is reachable)" >&2
fi
