#!/usr/bin/env bash
# Load benchmark of the update graph server with wrk on loopback: the server
# pinned to core 0, wrk to core 1, 30 s, every request with its own
# rollout_wariness or node_uuid (from a fleet of 10,000 nodes) so the
# rollout policy is applied on each; a stream of 150 releases with 20
# barriers and 2 active rollouts. Prints requests/s, latency percentiles
# and the server's memory at the start and end of the run.
# Usage: bench/graph.sh [SECONDS (default 30)] [CONNECTIONS (default 32)]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-30}
conns=${2:-32}
command -v wrk >/dev/null || { echo "SKIP: wrk is not installed (apt-get install wrk)" >&2; exit 0; }
# OXCORE=path measures another build (an earlier commit, for before/after).
if [ -n "${OXCORE:-}" ]; then
    ox=$(realpath "$OXCORE")
else
    cargo build --release --locked -q -p oxcore
    ox=$PWD/target/release/oxcore
fi
work=$(mktemp -d)
trap 'kill $srv 2>/dev/null; rm -rf "$work"' EXIT

python3 - "$work/meta" <<'PY'
import json, os, sys
base = sys.argv[1]
now = 1_800_000_000
releases, rules = [], []
for i in range(150):
    v = f"{40 + i // 40}.{20240101 + (i % 28)}.3.{i}"
    releases.append({"commits": [{"architecture": a, "checksum": f"{i:060d}{k:04d}"} for k, a in enumerate(["x86_64", "aarch64"])],
                     "version": v, "metadata": f"https://example.invalid/{v}/release.json"})
    if i % 7 == 3 and len([r for r in rules if "barrier" in r["metadata"]]) < 20:
        rules.append({"version": v, "metadata": {"barrier": {"reason": "https://example.invalid/b"}}})
for i, (start, pct) in zip((147, 149), ((now - 7200, 0.1), (now - 600, 0.0))):
    rules.append({"version": releases[i]["version"], "metadata": {"rollout": {"start_epoch": start, "start_percentage": pct, "duration_minutes": 1440}}})
os.makedirs(f"{base}/prod/streams/stable")
os.makedirs(f"{base}/updates")
json.dump({"stream": "stable", "releases": releases}, open(f"{base}/prod/streams/stable/releases.json", "w"))
json.dump({"stream": "stable", "releases": rules}, open(f"{base}/updates/stable.json", "w"))
PY

cat > "$work/req.lua" <<'EOF2'
-- A node per request: half send rollout_wariness, half only node_uuid.
local n = 0
request = function()
  n = n + 1
  local node = (n * 7919) % 10000
  local uuid = string.format("%024x%08x", 0, node)
  local path = "/v1/graph?basearch=x86_64&stream=stable&os_version=45.20240101.3.140&group=default&platform=metal&node_uuid=" .. uuid
  if n % 2 == 0 then
    path = path .. string.format("&rollout_wariness=%.6f", (node % 1000) / 1000)
  end
  return wrk.format("GET", path)
end
EOF2

taskset -c 0 "$ox" graph serve --metadata "$work/meta" --listen 127.0.0.1:0 --stream stable \
    --arch x86_64 --arch aarch64 --fake-now 1800000000 --stats-db "$work/stats.redb" > "$work/server.out" &
srv=$!
for _ in $(seq 100); do grep -q listening "$work/server.out" 2>/dev/null && break; sleep 0.05; done
addr=$(sed -n 's/^listening on //p' "$work/server.out")
body=$(curl -s "http://$addr/v1/graph?basearch=x86_64&stream=stable&rollout_wariness=0")
echo "graph: $(echo "$body" | python3 -c 'import json,sys; g=json.load(sys.stdin); print(len(g["nodes"]), "nodes,", len(g["edges"]), "edges,", len(json.dumps(g)), "bytes")')"
rss() { awk '/VmRSS/ {print $2 " kB"}' /proc/$srv/status; }
# Warm up, then measure.
taskset -c 1 wrk -t1 -c"$conns" -d3s -s "$work/req.lua" "http://$addr" >/dev/null
rss_start=$(rss)
( for i in $(seq 1 $((secs / 5))); do sleep 5; echo "$((i * 5))s: $(rss)"; done ) > "$work/rss.log" &
sampler=$!
taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/req.lua" "http://$addr" | tee "$work/wrk.out"
wait $sampler 2>/dev/null || true
echo "server memory (VmRSS): $rss_start after warm-up; during the run: $(paste -sd, "$work/rss.log" | sed 's/,/, /g')"
