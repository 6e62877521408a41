#!/usr/bin/env bash
# Benchmark: apply one large config's files stage with oxcore and with
# upstream Ignition (Debian's 2.14 build), side by side.
#
#   sudo bench/ignition-apply.sh            # 3 runs each, median reported
#   RUNS=5 sudo bench/ignition-apply.sh
#
# The config (spec 3.3.0): 10,000 small files in 200 directories (the 200
# directories are config entries too), 50 systemd units (40 enabled, 10 with
# a dropin) and 20 users (half with an SSH key, a quarter with a password
# hash). Every run gets a fresh root holding a minimal /etc skeleton, on a
# tmpfs mounted for the run (or in /dev/shm where mounting is not allowed),
# so that the disk does not dominate.
#
# What is timed:
#   oxcore:   `oxcore ignition apply --root ROOT config.ign` (release build)
#   upstream: `ignition -stage fetch-offline` + `ignition -stage files -root
#             ROOT`, the two steps that parse, validate and apply the same
#             config; the files stage alone is printed too.
# Upstream always relabels at the end of the files stage: the root gets an
# /etc/selinux/config and upstream a do-nothing `setfiles` on its PATH, so
# relabeling costs it nothing here. Both use the same shadow tools (useradd,
# usermod) for the users, a fixed cost of some 20-40 process runs.
#
# Needs root (the shadow tools and chown write into the root). Without the
# Debian binary the upstream part is skipped, saying so.
set -euo pipefail

RUNS=${RUNS:-3}
UPSTREAM=${UPSTREAM:-/usr/lib/dracut/modules.d/30ignition/ignition}
HERE=$(cd "$(dirname "$0")" && pwd)
WORKSPACE=$(cd "$HERE/.." && pwd)
OXCORE=$WORKSPACE/target/release/oxcore

if [ "$(id -u)" != 0 ]; then
    echo "ignition-apply.sh: needs root (useradd --root and chown into the scratch roots)" >&2
    exit 1
fi

echo "== building oxcore (release)"
(cd "$WORKSPACE" && cargo build --release -p oxcore) >&2

# ---------------------------------------------------------------- scratch
WORK=$(mktemp -d /tmp/ignition-bench.XXXXXX)
chmod 755 "$WORK"
MNT=$WORK/mnt
mkdir "$MNT"
MOUNTED=0
cleanup() {
    if [ "$MOUNTED" = 1 ]; then umount "$MNT" 2>/dev/null || umount -l "$MNT" || true; fi
    rm -rf "$WORK" "${SHM:-}"
}
trap cleanup EXIT
if mount -t tmpfs -o size=2g,mode=755 ignition-bench "$MNT" 2>/dev/null; then
    MOUNTED=1
    SCRATCH=$MNT
    echo "== roots on a tmpfs mounted at $MNT"
else
    SHM=$(mktemp -d /dev/shm/ignition-bench.XXXXXX)
    chmod 755 "$SHM"
    SCRATCH=$SHM
    echo "== could not mount a tmpfs; roots in $SHM"
fi

# ---------------------------------------------------------------- config
CONFIG=$WORK/config.ign
gen_config() {
    local i d sep
    printf '{"ignition":{"version":"3.3.0"},\n"passwd":{"users":[\n'
    sep=""
    for ((i = 0; i < 20; i++)); do
        printf '%s{"name":"user%02d","uid":%d,"gecos":"Bench user %d"' "$sep" "$i" $((3000 + i)) "$i"
        if ((i % 2 == 0)); then
            printf ',"sshAuthorizedKeys":["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench%02d user%02d@bench"]' "$i" "$i"
        fi
        if ((i % 4 == 0)); then
            printf ',"passwordHash":"$6$rounds=4096$benchsalt$Gk0dM9mY1wP2Jz7tLq3V2Y5l9m0c2n7uQ1y4Hh3x0d5ZcVqJ1uYwT8a9Pq2lR3sK4mN5oP6qR7sT8uV9wX0yZ1"'
        fi
        printf '}\n'
        sep=","
    done
    printf ']},\n"storage":{"directories":[\n'
    sep=""
    for ((d = 0; d < 200; d++)); do
        printf '%s{"path":"/srv/bench/d%03d","mode":%d}\n' "$sep" "$d" $((d % 2 ? 493 : 488))
        sep=","
    done
    printf '],\n"files":[\n'
    sep=""
    for ((i = 0; i < 10000; i++)); do
        d=$((i % 200))
        if ((i % 10 == 0)); then
            # base64 ("small file NNNNN\n" is 17 bytes)
            printf '%s{"path":"/srv/bench/d%03d/f%05d","contents":{"source":"data:;base64,%s"},"mode":384}\n' \
                "$sep" "$d" "$i" "$(printf 'small file %05d\n' "$i" | base64 -w0)"
        else
            printf '%s{"path":"/srv/bench/d%03d/f%05d","contents":{"source":"data:,small%%20file%%20%05d%%0A"},"mode":420}\n' \
                "$sep" "$d" "$i" "$i"
        fi
        sep=","
    done
    printf ']},\n"systemd":{"units":[\n'
    sep=""
    for ((i = 0; i < 50; i++)); do
        printf '%s{"name":"bench%02d.service","contents":"[Unit]\\nDescription=bench %d\\n\\n[Service]\\nExecStart=/bin/true\\n\\n[Install]\\nWantedBy=multi-user.target\\n"' \
            "$sep" "$i" "$i"
        if ((i < 40)); then printf ',"enabled":true'; fi
        if ((i % 5 == 0)); then
            printf ',"dropins":[{"name":"10-env.conf","contents":"[Service]\\nEnvironment=N=%d\\n"}]' "$i"
        fi
        printf '}\n'
        sep=","
    done
    printf ']}}\n'
}
gen_config >"$CONFIG"
echo "== config: $(du -h "$CONFIG" | cut -f1), 10000 files, 200 directories, 50 units, 20 users"

# ---------------------------------------------------------------- roots
skeleton() { # DIR
    local r=$1
    mkdir -p "$r/etc/selinux"
    chmod 755 "$r" "$r/etc"
    cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/bash
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
    cat >"$r/etc/group" <<'EOF'
root:x:0:
users:x:100:
nogroup:x:65534:
EOF
    cat >"$r/etc/shadow" <<'EOF'
root:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
    cat >"$r/etc/gshadow" <<'EOF'
root:*::
users:*::
nogroup:*::
EOF
    chmod 640 "$r/etc/shadow" "$r/etc/gshadow"
    printf 'SELINUX=disabled\nSELINUXTYPE=targeted\n' >"$r/etc/selinux/config"
}

now_ns() { date +%s%N; }
ms_since() { echo $((($(now_ns) - $1) / 1000000)); }
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }

check_root() { # ROOT: the run wrote everything it should have
    local r=$1 n
    n=$(find "$r/srv/bench" -type f | wc -l)
    [ "$n" = 10000 ] || { echo "  !! $r: $n files instead of 10000" >&2; return 1; }
    n=$(grep -c '^user' "$r/etc/passwd")
    [ "$n" = 20 ] || { echo "  !! $r: $n users instead of 20" >&2; return 1; }
    n=$(find "$r/etc/systemd/system" -maxdepth 1 -name 'bench*.service' | wc -l)
    [ "$n" = 50 ] || { echo "  !! $r: $n units instead of 50" >&2; return 1; }
}

# ---------------------------------------------------------------- oxcore
echo "== oxcore: $RUNS runs"
ox_times=()
for ((run = 1; run <= RUNS; run++)); do
    root=$SCRATCH/ox-$run
    skeleton "$root"
    sync
    t0=$(now_ns)
    "$OXCORE" ignition apply --root "$root" "$CONFIG" >"$WORK/ox-$run.log" 2>&1 || {
        echo "oxcore failed, see its output:" >&2; tail -20 "$WORK/ox-$run.log" >&2; exit 1; }
    t=$(ms_since "$t0")
    check_root "$root"
    echo "  run $run: ${t} ms"
    ox_times+=("$t")
    rm -rf "$root"
done
ox=$(median "${ox_times[@]}")

# ---------------------------------------------------------------- upstream
up=""
if [ ! -x "$UPSTREAM" ]; then
    echo "== upstream Ignition not found at $UPSTREAM (Debian package 'ignition'):" \
        "skipping the upstream runs"
else
    echo "== upstream $("$UPSTREAM" -version 2>&1 | head -1): $RUNS runs"
    stub=$WORK/stub-bin
    mkdir -p "$stub"
    printf '#!/bin/sh\n# stands in for setfiles: relabeling is not measured\ncat >/dev/null\n' >"$stub/setfiles"
    chmod 755 "$stub/setfiles"
    up_times=()
    files_times=()
    for ((run = 1; run <= RUNS; run++)); do
        root=$SCRATCH/up-$run
        skeleton "$root"
        state=$WORK/up-state-$run
        mkdir -p "$state"
        common=(-platform file -config-cache "$state/cache.json" -state-file "$state/state"
            -neednet "$state/neednet" -log-to-stdout)
        sync
        t0=$(now_ns)
        IGNITION_CONFIG_FILE=$CONFIG "$UPSTREAM" -stage fetch-offline "${common[@]}" \
            >"$WORK/up-$run.log" 2>&1 || {
            echo "upstream fetch-offline failed:" >&2; tail -5 "$WORK/up-$run.log" >&2; exit 1; }
        t1=$(now_ns)
        PATH=$stub:$PATH "$UPSTREAM" -stage files -root "$root" "${common[@]}" \
            >>"$WORK/up-$run.log" 2>&1 || {
            echo "upstream files stage failed:" >&2; grep CRITICAL "$WORK/up-$run.log" >&2; exit 1; }
        t=$(ms_since "$t0")
        tf=$((($(now_ns) - t1) / 1000000))
        check_root "$root"
        echo "  run $run: ${t} ms (files stage ${tf} ms)"
        up_times+=("$t")
        files_times+=("$tf")
        rm -rf "$root"
    done
    up=$(median "${up_times[@]}")
    upf=$(median "${files_times[@]}")
fi

# ---------------------------------------------------------------- report
echo
echo "median of $RUNS runs"
printf '  oxcore ignition apply          %6d ms\n' "$ox"
if [ -n "$up" ]; then
    printf '  upstream fetch-offline + files %6d ms   (files stage alone %d ms)\n' "$up" "$upf"
    ratio=$(awk -v a="$up" -v b="$ox" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    ratio_f=$(awk -v a="$upf" -v b="$ox" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "  upstream / oxcore: ${ratio}x (files stage alone: ${ratio_f}x)"
else
    echo "  upstream: skipped"
fi
