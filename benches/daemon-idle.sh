#!/usr/bin/env bash
# Idle cost of gh-token-refresh: after its first refresh the daemon should sleep until the
# next scheduled event. Measures, over IDLE_SECS (default 60) of idleness: resident memory
# (VmRSS, VmHWM), CPU time (utime+stime) and context switches of every thread, read from
# /proc before and after, so the measurement itself causes no wakeups.
# Usage: benches/daemon-idle.sh [DAEMON_BINARY]   (default: the release build)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$root/target/release/gh-token-refresh}
idle=${IDLE_SECS:-60}
[ -x "$bin" ] || { echo "no daemon binary at $bin (cargo build --release)" >&2; exit 1; }
testkit=$root/target/debug/molecule-testkit
[ -x "$testkit" ] || (cd "$root" && cargo build --quiet -p molecule-tests --bins)

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp/configs" && echo bench-bearer > "$tmp/configs/.auth_token"
"$testkit" serve --state-dir "$tmp/stack" --ttl-secs 3600 --bearer bench-bearer >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -f "$tmp/stack/ready.env" ] && break; sleep 0.1; done
# shellcheck source=/dev/null
. "$tmp/stack/ready.env"

env -i PATH=/nonexistent HOME="$tmp" PLATFORM_URL="$TESTKIT_PLATFORM_URL" CONFIGS_DIR="$tmp/configs" \
  MOLECULE_TOKEN_CACHE_DIR="$tmp/cache" MOLECULE_LOG=warn "$bin" 2>"$tmp/daemon.log" &
pid=$!
pids+=("$pid")
for _ in $(seq 100); do grep -q '"next_wake_at": "' "$tmp/cache/daemon.status.json" 2>/dev/null && break; sleep 0.1; done
sleep 2  # let start-up settle (blocking-pool threads from DNS lookups retire after 10 s idle)
sleep 10

snapshot() {
  local cs=0 cpu=0 t
  for t in /proc/"$pid"/task/*; do
    cs=$(( cs + $(awk '/^voluntary_ctxt_switches|^nonvoluntary_ctxt_switches/ {s+=$2} END {print s}' "$t/status") ))
    cpu=$(( cpu + $(awk '{print $14 + $15}' "$t/stat") ))
  done
  echo "$cs $cpu $(find /proc/"$pid"/task -mindepth 1 -maxdepth 1 | wc -l)"
}
read -r cs0 cpu0 _ < <(snapshot)
sleep "$idle"
read -r cs1 cpu1 threads1 < <(snapshot)
rss=$(awk '/^VmRSS/ {print $2}' /proc/"$pid"/status)
hwm=$(awk '/^VmHWM/ {print $2}' /proc/"$pid"/status)
hz=$(getconf CLK_TCK)
echo "| daemon idle ${idle}s (${bin#"$root"/}) | value | target |"
echo "|---|---|---|"
echo "| RSS (VmRSS) | $(awk -v k="$rss" 'BEGIN {printf "%.1f MiB", k/1024}') | ≤ 10 MiB |"
echo "| peak RSS (VmHWM) | $(awk -v k="$hwm" 'BEGIN {printf "%.1f MiB", k/1024}') | |"
echo "| threads | $threads1 | |"
echo "| CPU time while idle | $(awk -v t="$((cpu1 - cpu0))" -v hz="$hz" 'BEGIN {printf "%.2f ms", t*1000/hz}') | ~0 |"
echo "| context switches (wakeups) while idle | $((cs1 - cs0)) | 0 |"
