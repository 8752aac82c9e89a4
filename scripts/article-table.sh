#!/usr/bin/env bash
# Reproduces the reference article's tables on the embedded sim and prints them side by side:
# the failure-injection table at 30 req/s on 4×H100 (the shipped experiments), the SLA table at
# 20/30/40 req/s (`faultline sla`), and the 64-GPU headline at 400/420/450 req/s (`faultline load`
# under /usr/bin/time, so the CPU the run took — client and sim together — is printed too).
#
#   scripts/article-table.sh [all|failures|sla|headline]   (default all; ~16 min in all)
#
# FAULTLINE=path picks the binary (default target/release/faultline; build it with
# `cargo build --release`). OUT=dir keeps the results (default a fresh temporary directory).
# SLA_DURATION / HEADLINE_DURATION shorten the load runs (default 60s each); ROWS="gpu-1-of-4
# load-spike-2x" runs only those failure rows.
# The network-partition row detects through Prometheus, as the shipped experiment does: the
# script starts one (Debian's `prometheus`, deploy/prometheus-sim.yml) when it is installed and
# nothing listens on 127.0.0.1:9090.
set -euo pipefail
cd "$(dirname "$0")/.."
FL=${FAULTLINE:-target/release/faultline}
OUT=${OUT:-$(mktemp -d /tmp/article-table.XXXXXX)}
WHAT=${1:-all}
SLA_DURATION=${SLA_DURATION:-60s}
HEADLINE_DURATION=${HEADLINE_DURATION:-60s}
[ -x "$FL" ] || { echo "no $FL: run cargo build --release (or set FAULTLINE)" >&2; exit 2; }
command -v jq >/dev/null || { echo "needs jq (apt-get install jq)" >&2; exit 2; }
mkdir -p "$OUT"
echo "results in $OUT" >&2

pct() { jq -r "if $1 == null then \"-\" else ($1 * 1000 | round / 10 | tostring) + \"%\" end"; }

PROM_PID=""
trap '[ -z "$PROM_PID" ] || kill "$PROM_PID" 2>/dev/null || true' EXIT

failures() {
  if command -v prometheus >/dev/null && ! (exec 3<>/dev/tcp/127.0.0.1/9090) 2>/dev/null; then
    prometheus --config.file=deploy/prometheus-sim.yml --storage.tsdb.path="$OUT/prom" \
      --web.listen-address=127.0.0.1:9090 >"$OUT/prometheus.log" 2>&1 &
    PROM_PID=$!
    sleep 2
  fi
  printf '\n## Failure injection, 4×H100 (h100x4-70b-tp1-fast), 30 req/s chat, fault held 60 s\n\n'
  printf '| failure | article: detection / recovery / errors / throughput / TTFT | sim: detection | recovery | errors during | throughput | TTFT p99 | verdict |\n'
  printf '|---|---|---|---|---|---|---|---|\n'
  local rows=(
    "gpu-1-of-4|1 GPU of 4|2 s / 15 s / 3.2% / −25% / +45%"
    "gpu-2-of-4|2 GPUs of 4|2 s / 20 s / 12.5% / −50% / +180%"
    "network-partition|network partition (1 node)|5 s / 30 s / 8.1% / −50% / +120%"
    "load-spike-2x|load spike (2×)|immediate / queue drain / 1.5% / queue grows / +300%"
    "gpu-degrade|NVLink/GPU degradation|10 s / persists / 0.1% / −15% / +22%"
  )
  [ -z "${ROWS:-}" ] || { local keep=(); for row in "${rows[@]}"; do [[ " $ROWS " == *" ${row%%|*} "* ]] && keep+=("$row"); done; rows=("${keep[@]}"); }
  for row in "${rows[@]}"; do
    IFS='|' read -r exp name article <<<"$row"
    if [ ! -f "experiments/$exp.yaml" ]; then
      printf '| %s | %s | (experiment not shipped yet) |||||| \n' "$name" "$article"
      continue
    fi
    "$FL" run "experiments/$exp.yaml" --out "$OUT/$exp" >"$OUT/$exp.log" 2>&1 || true
    local r="$OUT/$exp/result.json"
    if [ ! -f "$r" ]; then
      printf '| %s | %s | run failed: see %s |||||| \n' "$name" "$article" "$OUT/$exp.log"
      continue
    fi
    local f='.faults[0].analysis'
    local det rec err tput ttft verdict
    det=$(jq -r "$f.detection | if .status == \"detected\" then (.after_s*10|round/10|tostring) + \" s (\" + .signal + \")\" else .status end" "$r")
    rec=$(jq -r "$f.recovery_time | if .status == \"recovered\" then (.after_s*10|round/10|tostring) + \" s\" elif .status == \"not_recovered\" then \"not within \" + (.within_s|round|tostring) + \" s\" else .status end" "$r")
    err=$(pct "$f.impact.error_rate_during" <"$r")
    tput=$(jq -r "$f.impact.throughput_change | if . == null then \"-\" else (if . >= 0 then \"+\" else \"\" end) + (. * 100 | round | tostring) + \"%\" end" "$r")
    ttft=$(jq -r "$f.impact.ttft_p99_change | if . == null then \"-\" else (if . >= 0 then \"+\" else \"\" end) + (. * 100 | round | tostring) + \"%\" end" "$r")
    verdict=$(jq -r '.faults[0].status // .status // "-"' "$r")
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$article" "$det" "$rec" "$err" "$tput" "$ttft" "$verdict"
  done
  if [ -n "$PROM_PID" ]; then kill "$PROM_PID" 2>/dev/null || true; PROM_PID=""; fi
}

sla() {
  printf '\n## SLA validation, 4×H100 (h100x4-70b-tp1), chat, %s per rate (article: 30 min)\n\n' "$SLA_DURATION"
  printf '| rate | article TTFT p99 / ITL p99 / errors / tok/s / verdict | sim TTFT p99 | ITL p99 | errors | output tok/s | verdict |\n'
  printf '|---|---|---|---|---|---|---|\n'
  local article=([20]="210 ms / 28 ms / 0.0% / 2,400 / PASS" [30]="380 ms / 42 ms / 0.02% / 3,200 / PASS" [40]="890 ms / 95 ms / 0.8% / 3,600 / FAIL (errors)")
  for rate in 20 30 40; do
    "$FL" sla --sim-preset h100x4-70b-tp1 --workload chat --arrival poisson --seed 7 \
      --rate "$rate" --duration "$SLA_DURATION" \
      --ttft-p99 1s --itl-p99 100ms --max-error-rate 0.001 \
      --out "$OUT/sla-$rate" >"$OUT/sla-$rate.log" 2>&1 || true
    local s="$OUT/sla-$rate/sla.json"
    local metric='def m(k): (.checks[] | select(.metric == k) | .actual);'
    printf '| %s | %s | %s ms | %s ms | %s | %s | %s |\n' "$rate" "${article[$rate]}" \
      "$(jq -r "$metric m(\"ttft_p99_ms\") | round" "$s")" \
      "$(jq -r "$metric m(\"itl_p99_ms\") | round" "$s")" \
      "$(jq -r "$metric m(\"error_rate\") | . * 10000 | round / 100 | tostring + \"%\"" "$s")" \
      "$(jq -r '.summary.output_tok_s // .summary.throughput.output_tok_s | round' "$s")" \
      "$(jq -r 'if .passed then "PASS" else "FAIL (" + (.failed_metrics | join(", ")) + ")" end' "$s")"
  done
}

headline() {
  printf '\n## Headline, 64×H100 (h100x64-70b), chat, %s per rate, client and sim on this machine (%s cores)\n\n' "$HEADLINE_DURATION" "$(nproc)"
  printf '| rate | article | sim TTFT p99 | errors | output tok/s | CPU (user+sys) | wall | max RSS |\n'
  printf '|---|---|---|---|---|---|---|---|\n'
  local article=([400]="stable, TTFT p99 ≈ 450 ms" [420]="TTFT p99 ≈ 2.1 s" [450]="requests time out")
  for rate in 400 420 450; do
    /usr/bin/time -v -o "$OUT/headline-$rate.time" "$FL" load --sim-preset h100x64-70b \
      --workload chat --arrival poisson --seed 7 --rate "$rate" --duration "$HEADLINE_DURATION" \
      --json --out "$OUT/headline-$rate" >"$OUT/headline-$rate.json" 2>"$OUT/headline-$rate.log" || true
    local j="$OUT/headline-$rate/summary.json" t="$OUT/headline-$rate.time"
    local user sys wall rss
    user=$(awk -F': ' '/User time/ {print $2}' "$t")
    sys=$(awk -F': ' '/System time/ {print $2}' "$t")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$t")
    rss=$(awk -F': ' '/Maximum resident/ {printf "%.0f MiB", $2/1024}' "$t")
    printf '| %s | %s | %s ms | %s | %s | %.1f s | %s | %s |\n' "$rate" "${article[$rate]}" \
      "$(jq -r '.ttft_ms.p99 // .ttft.p99_ms | round' "$j")" \
      "$(jq -r '.error_rate // 0 | . * 1000 | round / 10 | tostring + "%"' "$j")" \
      "$(jq -r '.output_tok_s // .throughput.output_tok_s | round' "$j")" \
      "$(echo "$user + $sys" | bc)" "$wall" "$rss"
  done
}

case "$WHAT" in
  all) failures; sla; headline ;;
  failures) failures ;;
  sla) sla ;;
  headline) headline ;;
  *) echo "usage: $0 [all|failures|sla|headline]" >&2; exit 2 ;;
esac
