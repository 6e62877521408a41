#!/usr/bin/env bash
# Benchmark of the OS store against the `ostree` command, on tmpfs, in one
# run: a tree of 20,000 small files plus 200 MB of larger ones; commit
# (archive and bare-user), checkout (hard links from bare-user with -U,
# copies from archive), fsck; then an update changing 1% of the files,
# pulled over HTTP from 127.0.0.1, with the bytes transferred compared to
# the bytes of the changed objects.
# Usage: bench/ostree.sh [WORKDIR on tmpfs, default /dev/shm/oxcore-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
work=${1:-/dev/shm/oxcore-bench}
command -v ostree >/dev/null || { echo "SKIP: ostree is not installed" >&2; exit 0; }
# OXCORE=path measures another build (an earlier commit, for before/after).
if [ -n "${OXCORE:-}" ]; then
    ox=$(realpath "$OXCORE")
else
    cargo build --release --locked -q -p oxcore
    ox=$PWD/target/release/oxcore
fi
rm -rf "$work" && mkdir -p "$work" && cd "$work"

python3 - <<'PY'
import os, random
r = random.Random(42)
words = [bytes(r.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(2000)]
def text(n):
    out = bytearray()
    while len(out) < n:
        out += r.choice(words) + b" "
    return bytes(out[:n])
for i in range(20000):
    d = f"tree/usr/share/d{i % 400:03d}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:05d}", "wb") as f:
        f.write(text(r.randint(100, 8000)))
os.makedirs("tree/usr/lib/big", exist_ok=True)
for i in range(40):
    # Half text, half random: compresses about 2:1 like binaries.
    with open(f"tree/usr/lib/big/b{i:02d}.so", "wb") as f:
        f.write(text(2_621_440) + os.urandom(2_621_440))
PY
echo "tree: $(find tree -type f | wc -l) files, $(du -sm tree | cut -f1) MB"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -A T
run() { # tool label command...: appends one timing
    local tool=$1 label=$2; shift 2
    T[$tool,$label]+="$(t "$@") "
}
median() { tr ' ' '\n' <<<"$1" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
reps=${REPS:-3}
for rep in $(seq "$reps"); do
    for tool in ostree oxcore; do
        if [ $tool = ostree ]; then cmd=(ostree); else cmd=("$ox" ostree); fi
        rm -rf $tool-archive $tool-bu co-$tool-bu co-$tool-archive
        "${cmd[@]}" --repo=$tool-archive init --mode=archive
        "${cmd[@]}" --repo=$tool-bu init --mode=bare-user
        sync
        run $tool "commit archive" "${cmd[@]}" --repo=$tool-archive commit -b main --tree=dir=tree --no-bindings --timestamp=2024-01-01T00:00:00Z
        run $tool "commit bare-user" "${cmd[@]}" --repo=$tool-bu commit -b main --tree=dir=tree --no-bindings --timestamp=2024-01-01T00:00:00Z
        run $tool "checkout -U (bare-user)" "${cmd[@]}" --repo=$tool-bu checkout -U main co-$tool-bu
        run $tool "checkout -U (archive)" "${cmd[@]}" --repo=$tool-archive checkout -U main co-$tool-archive
        run $tool "fsck archive" "${cmd[@]}" --repo=$tool-archive fsck
    done
done
[ "$(ostree --repo=ostree-archive rev-parse main)" = "$(ostree --repo=oxcore-archive rev-parse main)" ] ||
    { echo "commits differ between the tools" >&2; exit 1; }
diff -r co-ostree-archive co-oxcore-archive >/dev/null || { echo "checkouts differ between the tools" >&2; exit 1; }

printf '\n%-26s %10s %10s %8s   (median of %s runs)\n' step ostree oxcore speedup "$reps"
for label in "commit archive" "commit bare-user" "checkout -U (bare-user)" "checkout -U (archive)" "fsck archive"; do
    a=$(median "${T[ostree,$label]}") b=$(median "${T[oxcore,$label]}")
    printf '%-26s %9.2fs %9.2fs %7.2fx\n' "$label" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done

# Update: change 1% of the files (200 small, and none of the big ones), commit.
python3 - <<'PY'
import random
r = random.Random(7)
for i in r.sample(range(20000), 200):
    with open(f"tree/usr/share/d{i % 400:03d}/f{i:05d}", "ab") as f:
        f.write(b"changed in the update\n")
PY
old=$("$ox" ostree --repo=oxcore-archive rev-parse main)
"$ox" ostree --repo=oxcore-archive commit -b main --tree=dir=tree --no-bindings --timestamp=2024-01-02T00:00:00Z >/dev/null
"$ox" ostree --repo=oxcore-archive summary -u
new=$("$ox" ostree --repo=oxcore-archive rev-parse main)
# Bytes of the objects the new commit has and the old one lacks.
changed=$(OX=$ox python3 - "$old" "$new" <<'PY'
import subprocess, sys, os
def objs(rev):
    out = subprocess.run([os.environ["OX"], "ostree", "--repo=oxcore-archive", "ls", "-R", "-C", rev], capture_output=True, text=True, check=True).stdout
    s = set()
    for line in out.splitlines():
        f = line.split()
        if line.startswith("d"):
            s.add((f[4], "dirtree")); s.add((f[5], "dirmeta"))
        else:
            s.add((f[4], "filez"))
    return s
a, b = objs(sys.argv[1]), objs(sys.argv[2])
total = 0
for c, ext in b - a:
    total += os.path.getsize(f"oxcore-archive/objects/{c[:2]}/{c[2:]}.{ext}")
total += os.path.getsize(f"oxcore-archive/objects/{sys.argv[2][:2]}/{sys.argv[2][2:]}.commit")
print(total)
PY
)
python3 "$top/bench/serve.py" oxcore-archive >server.log &
srv=$!
trap 'kill $srv 2>/dev/null' EXIT
for _ in $(seq 50); do grep -q "port" server.log && break; sleep 0.1; done
port=$(cut -d' ' -f2 server.log)
"$ox" ostree --repo=pull-ox init --mode=archive
"$ox" ostree --repo=pull-ox remote add --no-gpg-verify o "http://127.0.0.1:$port"
"$ox" ostree --repo=pull-ox pull-local oxcore-archive "$old" >/dev/null 2>&1
s=$(date +%s.%N)
report=$("$ox" ostree --repo=pull-ox pull o main 2>&1 | tail -1)
e=$(date +%s.%N)
ostree --repo=pull-real init --mode=archive
ostree --repo=pull-real remote add --no-gpg-verify o "http://127.0.0.1:$port"
ostree --repo=pull-real pull-local oxcore-archive "$old" >/dev/null
rs=$(date +%s.%N)
real_report=$(ostree --repo=pull-real pull o main | tail -1)
re=$(date +%s.%N)
[ "$("$ox" ostree --repo=pull-ox rev-parse o:main)" = "$new" ] || { echo "oxcore pull did not arrive" >&2; exit 1; }
echo
echo "update pull (1% of files changed): changed objects $changed bytes"
echo "  oxcore: $report in $(echo "$e - $s" | bc) s"
echo "  ostree: $real_report; in $(echo "$re - $rs" | bc) s"
exact=$(echo "$report" | sed -n 's/.*(\([0-9]*\) bytes).*/\1/p')
echo "  transferred / changed = $(echo "$exact / $changed" | bc -l | cut -c1-5)"
