#!/usr/bin/env bash
# kill-sweep: SIGKILL `faultline run` at random moments across every fault kind, against one
# standalone sim, run `faultline recover` after each kill, and check the real state — GPU compute
# modes, faultline NetworkPolicies, the ssh-command marker file, dead-man timers, the ledger.
# Prints the counts; exits non-zero if anything leaked. Not part of CI (it takes minutes).
#
#   scripts/kill-sweep.sh [KILLS]          # default 50; FAULTLINE=path/to/faultline to pick a build
#
# Every kill is followed by `recover`; a "leak" is anything still changed after that recover.
set -uo pipefail

KILLS=${1:-50}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FAULTLINE:-$ROOT/target/debug/faultline}
[ -x "$BIN" ] || { echo "no faultline binary at $BIN (cargo build first)" >&2; exit 2; }
command -v kubectl >/dev/null || { echo "kubectl is needed (scripts/test.sh installs it)" >&2; exit 2; }

W=$(mktemp -d /tmp/kill-sweep.XXXXXX)
PORT=$((20000 + RANDOM % 20000))
"$BIN" sim --listen 127.0.0.1:$PORT --state-dir "$W/state" --kubeconfig "$W/kc" >"$W/sim.log" 2>&1 &
SIM=$!
cleanup() { kill "$SIM" 2>/dev/null || true; wait "$SIM" 2>/dev/null || true; }
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$W/kc" ] && [ -x "$W/state/bin/nvidia-smi" ] && break; sleep 0.1; done
NVSMI="$W/state/bin/nvidia-smi"
MARK="$W/ssh-command-marker"
LEDGER="$W/ledger.jsonl"

fault_of() {
  case $1 in
    gpu-lockout) echo "{kind: gpu-lockout, targets: [{host: local, gpus: [0, 2]}], kill_process: false, nvidia_smi: '$NVSMI', deadman_margin: 30s}" ;;
    ssh-command) echo "{kind: ssh-command, hosts: [local], inject: 'touch $MARK', restore: 'rm -f $MARK', verify: 'test -f $MARK', deadman_margin: 30s}" ;;
    pod-kill) echo "{kind: pod-kill, selector: app=sim-llm, mode: one}" ;;
    network-partition) echo "{kind: network-partition, selector: 'app=sim-llm,worker=0', direction: both}" ;;
    load-spike) echo "{kind: load-spike, multiplier: 2}" ;;
  esac
}

KINDS=(gpu-lockout ssh-command pod-kill network-partition load-spike)
declare -A killed_by_kind=()
leaks=0; recover_failures=0; finished_before_kill=0; refused=0
start=$(date +%s)
for i in $(seq "$KILLS"); do
  kind=${KINDS[$(( (i - 1) % ${#KINDS[@]} ))]}
  dur=""; [ "$kind" = pod-kill ] || dur="    duration: 3s"
  cat >"$W/exp.yaml" <<EOF
name: sweep
target: {endpoint: 'http://127.0.0.1:$PORT', model: sim-llama-70b, api: chat}
hosts: {local: local}
kubernetes: {kubeconfig: '$W/kc', namespace: default}
load: {rate: 5, duration: 7s, workload: 'fixed:16:4'}
warmup: 1s
faults:
  - id: f
    fault: $(fault_of "$kind")
    at: 2s
$dur
EOF
  "$BIN" run "$W/exp.yaml" --ledger "$LEDGER" --out "$W/run-$i" >"$W/run-$i.log" 2>&1 &
  RUN=$!
  # Random moment: before, around and after the inject (2 s), mid-fault, around the restore (5 s).
  sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.3 + (r / 32767) * 6.0 }')"
  if kill -9 "$RUN" 2>/dev/null; then killed_by_kind[$kind]=$(( ${killed_by_kind[$kind]:-0} + 1 )); else finished_before_kill=$((finished_before_kill + 1)); fi
  wait "$RUN" 2>/dev/null || true
  if grep -q "refused" "$W/run-$i.log"; then refused=$((refused + 1)); fi
  if ! "$BIN" recover --ledger "$LEDGER" >"$W/recover-$i.log" 2>&1; then
    recover_failures=$((recover_failures + 1)); echo "kill $i ($kind): recover failed: $(tail -3 "$W/recover-$i.log")"
  fi
  # The real state.
  problems=()
  modes=$("$NVSMI" --query-gpu=index,compute_mode --format=csv,noheader | grep -vc ", Default$" || true)
  [ "$modes" = 0 ] || problems+=("GPUs not Default: $("$NVSMI" --query-gpu=index,compute_mode --format=csv,noheader | tr '\n' ' ')")
  pol=$(kubectl --kubeconfig "$W/kc" get networkpolicies -A -o name 2>/dev/null | grep -c faultline || true)
  [ "$pol" = 0 ] || problems+=("$pol faultline NetworkPolicies")
  [ ! -e "$MARK" ] || problems+=("marker file $MARK")
  timers=$(for p in /proc/[0-9]*; do tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "faultline-deadman[:]sweep-" && echo "${p#/proc/}"; done | wc -l)
  [ "$timers" = 0 ] || problems+=("$timers dead-man timers")
  "$BIN" status --ledger "$LEDGER" | grep -q "no faults in effect" || problems+=("ledger: $("$BIN" status --ledger "$LEDGER" | tr '\n' ' ')")
  if [ ${#problems[@]} -gt 0 ]; then
    leaks=$((leaks + 1)); echo "kill $i ($kind): LEAK: ${problems[*]}"
  fi
done
elapsed=$(( $(date +%s) - start ))
echo "kill-sweep: $KILLS runs in ${elapsed}s; SIGKILLed: $(for k in "${KINDS[@]}"; do printf '%s=%s ' "$k" "${killed_by_kind[$k]:-0}"; done)"
echo "  finished before the kill: $finished_before_kill; refused up front: $refused; recover failed: $recover_failures; leaks after recover: $leaks"
echo "  work dir: $W"
[ "$leaks" = 0 ] && [ "$recover_failures" = 0 ]
