#!/usr/bin/env bash
# Runs the integration tests RUNS times (default 3) while a CPU hog keeps every core busy, and
# prints how many tests passed and failed in each run and how long it all took. It shows that
# the timing-sensitive tests hold on a busy machine (CI's machine is shared with builds too).
# Not part of CI: it is long (each run is the whole integration suite on a starved machine).
#
#   scripts/stress-tests.sh [RUNS] [-- extra cargo test args, e.g. truth::]
#
# The hog is stress-ng (Debian's package, installed here when missing): `--cpu N` runs one
# busy worker per core at normal priority, `--timeout` makes it end by itself even if this
# script is killed. Run scripts/test.sh once first: it installs what the tests themselves need
# (sshd, kubectl, iproute2, iptables, prometheus, chromium) and the tests need root.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
shift || true
[ "${1:-}" = "--" ] && shift
filter=("$@")

if ! command -v stress-ng >/dev/null 2>&1; then
  echo "installing: stress-ng"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq stress-ng
fi

# Build first, without the hog: the point is the tests under contention, not the compiler.
cargo build --all-targets --quiet

logs=target/stress-tests
mkdir -p "$logs"
cores=$(nproc)
hog_pid=""
stop_hog() { if [ -n "$hog_pid" ]; then kill "$hog_pid" 2>/dev/null || true; wait "$hog_pid" 2>/dev/null || true; fi; }
trap stop_hog EXIT
stress-ng --cpu "$cores" --timeout 4h --quiet &
hog_pid=$!
echo "CPU hog: stress-ng --cpu $cores (pid $hog_pid); $runs run(s) of the integration tests; logs in $logs/"

start=$(date +%s)
total_pass=0
total_fail=0
failed_runs=0
for i in $(seq 1 "$runs"); do
  t0=$(date +%s)
  log="$logs/run-$i.log"
  if cargo test --quiet --test integration -- "${filter[@]}" >"$log" 2>&1; then ok=1; else ok=0; fi
  pass=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
  fail=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
  total_pass=$((total_pass + pass))
  total_fail=$((total_fail + fail))
  if [ "$ok" = 1 ]; then verdict=green; else verdict=RED; failed_runs=$((failed_runs + 1)); fi
  echo "run $i: $verdict, $pass passed, $fail failed, $(($(date +%s) - t0)) s"
  if [ "$ok" = 0 ]; then
    grep -E '^    [a-z_]+::|^---- ' "$log" | sed 's/^/    /' | sort -u || true
  fi
done
echo "total: $total_pass passed, $total_fail failed, $failed_runs of $runs run(s) red, $(($(date +%s) - start)) s"
[ "$failed_runs" = 0 ]
