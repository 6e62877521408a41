#!/usr/bin/env bash
# The update agent's costs: its resident memory while idle, and the CPU
# one check takes (the graph fetched from `oxcore graph serve` on
# loopback, the update chosen), measured on a running `oxcore agent`
# asked N times with `update-now`. The node is a real sysroot under
# --root, booted on the newest release of its stream (so each check ends
# in "no update"), with an update graph of RELEASES releases.
#
#   bench/agent.sh            # N=200 checks, RELEASES=40; OXCORE=path for another build
#
# Goals: idle RSS under 8 MB, a check under 5 ms of CPU. Zincati needs
# rpm-ostree and D-Bus to run a check, so it is not run beside it here.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200}
RELEASES=${RELEASES:-40}
if [ -n "${OXCORE:-}" ]; then
    ox=$(realpath "$OXCORE")
else
    cargo build --release --locked -q -p oxcore
    ox=$PWD/target/release/oxcore
fi
work=$(mktemp -d)
pids=()
cleanup() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
    # Deployments are immutable (chattr +i), as OSTree makes them.
    chattr -R -i "$work/node/ostree/deploy" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Releases: RELEASES versions on stable, each rolled out.
"$ox" ostree --repo="$work/build" init --mode=archive >/dev/null
tree=$work/tree
mkdir -p "$tree/usr/lib/modules/6.1.0" "$tree/usr/etc"
echo initramfs >"$tree/usr/lib/modules/6.1.0/initramfs.img"
start=$(($(date +%s) - 7200))
last=
for i in $(seq 1 "$RELEASES"); do
    v=$(printf '41.2026%02d%02d.3.0' $(((i - 1) / 28 + 1)) $(((i - 1) % 28 + 1)))
    echo "kernel $v" >"$tree/usr/lib/modules/6.1.0/vmlinuz"
    echo "release $v" >"$tree/usr/etc/motd"
    "$ox" release compose --repo "$work/build" --metadata "$work/meta" --stream stable \
        --tree "$tree" --version "$v" >/dev/null
    "$ox" release rollout --metadata "$work/meta" --stream stable --hours 1 --start "$start" "$v" >/dev/null
    last=$v
done

# The graph server.
"$ox" graph serve --metadata "$work/meta" --listen 127.0.0.1:0 --stream stable --arch x86_64 \
    >"$work/graph.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$work/graph.out" 2>/dev/null && break; sleep 0.05; done
graph=$(sed -n 's/^listening on //p' "$work/graph.out")

# The node, booted on the newest release.
node=$work/node
"$ox" ostree admin init-fs "$node" >/dev/null
"$ox" ostree admin os-init --sysroot "$node" fedora-coreos >/dev/null
"$ox" ostree --repo="$node/ostree/repo" pull-local "$work/build" fedora/x86_64/coreos/stable >/dev/null
"$ox" ostree admin deploy --sysroot "$node" --os fedora-coreos \
    --karg root=LABEL=root --karg-append ignition.platform.id=qemu \
    fedora/x86_64/coreos/stable >/dev/null
mkdir -p "$node/run" "$node/proc" "$node/etc/zincati/config.d"
touch "$node/run/ostree-booted"
sed -n 's/^options //p' "$node"/boot/loader/entries/*.conf | head -1 >"$node/proc/cmdline"
echo 0123456789abcdef0123456789abcdef >"$node/etc/machine-id"
cat >"$node/etc/zincati/config.d/50-bench.toml" <<EOF
[cincinnati]
base_url = "http://$graph/"
[agent.timing]
steady_interval_secs = 86400
[oxcore]
reboot_command = ["true"]
EOF

"$ox" agent --root "$node" >"$work/agent.out" 2>&1 &
apid=$!
pids+=($apid)
for _ in $(seq 400); do [ -S "$node/run/oxcore-agent/control.sock" ] && [ -f "$node/run/oxcore-agent/status.json" ] && break; sleep 0.05; done
first=$("$ox" agent update-now --root "$node")
case "$first" in
    "no update: booted release $last is the newest offered") ;;
    *) echo "unexpected decision: $first" >&2; exit 1 ;;
esac
rss_kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$apid/status")
anon_kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$apid/status")
file_kb=$(awk '/^RssFile:/ {print $2}' "/proc/$apid/status")
hwm_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$apid/status")
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$apid/stat"; }
before=$(cpu)
t0=$(date +%s%N)
for _ in $(seq "$N"); do "$ox" agent update-now --root "$node" >/dev/null; done
[ -n "${KEEP:-}" ] && { echo "agent pid $apid, node $node; Ctrl-C to end"; wait "$apid"; }
t1=$(date +%s%N)
after=$(cpu)
per_check_ms=$(awk -v a="$after" -v b="$before" -v t="$ticks" -v n="$N" 'BEGIN { printf "%.2f", (a - b) * 1000 / t / n }')
wall_ms=$(awk -v a="$t1" -v b="$t0" -v n="$N" 'BEGIN { printf "%.2f", (a - b) / 1e6 / n }')
graph_bytes=$(curl -s "http://$graph/v1/graph?basearch=x86_64&stream=stable" | wc -c)
mb() { awk -v k="$1" 'BEGIN { printf "%.1f MB", k / 1024 }'; }
echo "agent idle RSS: $(mb "$rss_kb") ($(mb "$anon_kb") private memory, $(mb "$file_kb") pages of the binary and libraries; peak $(mb "$hwm_kb"))   goal < 8 MB"
echo "one check ($RELEASES releases, graph $graph_bytes bytes, $N checks): ${per_check_ms} ms CPU, ${wall_ms} ms wall per update-now round trip   goal < 5 ms CPU"
