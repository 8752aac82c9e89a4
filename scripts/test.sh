#!/usr/bin/env bash
# Runs every test. Installs what the tests need when it is missing (fresh machines have none of
# it), then runs cargo test. CI (.ci/run) calls exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
# Parts the integration tests use for real; a test never silently skips because one is missing.
# (Later tiers add: openssh-server, iptables, prometheus, chromium.)
# (none yet beyond the Rust toolchain)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test "$@"
