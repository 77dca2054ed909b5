#!/bin/bash
# The slow shape (3,000 sensors at 1 Hz for 30 s, bench/probes/slowShape.mjs) with `perf record` attached to the
# edge: the agent (started with --perf-basic-prof, so its JavaScript frames have names) or the mosquitto bridge.
# Recording starts FROM seconds after the edge process appears and lasts FOR seconds (publishing starts ~14 s
# in, connecting ~2 s in). Needs perf and a build (npm run build). Then:
#   perf script -i OUT -F comm,tid,time,ip,sym,dso | python3 bench/probes/perfSplit.py [--from S --to S] [--top]
# TOOL=strace counts the edge's system calls instead (`strace -c -f`, the table written to OUT).
# usage: [TOOL=perf|strace] bash bench/probes/perfEdge.sh agent|mosquitto FROM FOR OUT
set -euo pipefail
kind=$1 from=$2 for=$3 out=$4
cd "$(dirname "$0")/../.."
if [ "$kind" = agent ]; then
  NODE_ARGS='--perf-basic-prof --max-semi-space-size=2 --max-old-space-size=96' \
    node bench/probes/slowShape.mjs agent 3000 30 &
else
  node bench/probes/slowShape.mjs mosquitto 3000 30 &
fi
run=$!
edge() {
  if [ "$kind" = agent ]; then pgrep -f 'leafbridge.js agent' | head -1; return; fi
  # The bridge is the mosquitto whose config has a `connection` (the upstream mosquitto has none).
  for p in $(pgrep -f 'mosquitto -c'); do
    grep -q '^connection' "$(tr '\0' ' ' <"/proc/$p/cmdline" | awk '{print $3}')" 2>/dev/null && echo "$p"
  done
}
pid=
for _ in $(seq 1 400); do pid=$(edge || true); [ -n "$pid" ] && break; sleep 0.05; done
[ -n "$pid" ] || { echo "no $kind process appeared" >&2; exit 1; }
sleep "$from"
if [ "${TOOL:-perf}" = strace ]; then
  timeout -s INT "$for" strace -c -f -p "$pid" -o "$out" || true
else
  perf record -F 1999 -g -p "$pid" -o "$out" -- sleep "$for"
fi
wait "$run"
