#!/usr/bin/env bash
# Benchmark of deployments against `ostree admin`, on tmpfs, in one run:
# a 20,000-file commit deployed into a fresh sysroot, an update (1% of the
# files changed, /etc merged) deployed over it, then the switch back to
# the previous deployment. Each tool works on its own sysroot of the same
# layout, with the same commits (same checksums).
# Usage: bench/admin.sh [WORKDIR on tmpfs, default /dev/shm/oxcore-admin-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/dev/shm/oxcore-admin-bench}
command -v ostree >/dev/null || { echo "SKIP: ostree is not installed" >&2; exit 0; }
# OXCORE=path measures another build (an earlier commit, for before/after).
if [ -n "${OXCORE:-}" ]; then
    ox=$(realpath "$OXCORE")
else
    cargo build --release --locked -q -p oxcore
    ox=$PWD/target/release/oxcore
fi
for d in "$work"/*/ostree/deploy/*/deploy/*; do chattr -i "$d" 2>/dev/null || true; done
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
def w(p, data):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(data)
for i in range(20000):
    w(f"tree/usr/share/d{i % 400:03d}/f{i:05d}", text(r.randint(100, 8000)))
w("tree/usr/lib/modules/6.1.0/vmlinuz", os.urandom(8 << 20))
w("tree/usr/lib/modules/6.1.0/initramfs.img", os.urandom(16 << 20))
rel = b'NAME=Fedora\nID=fedora\nPRETTY_NAME="Fedora CoreOS bench"\n'
w("tree/usr/lib/os-release", rel)
w("tree/usr/etc/os-release", rel)
for i in range(200):
    w(f"tree/usr/etc/conf.d/c{i:03d}", text(500))
for d in ("sysroot", "var"):
    os.makedirs(f"tree/{d}", exist_ok=True)
PY
echo "tree: $(find tree -type f | wc -l) files, $(du -sm tree | cut -f1) MB"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
declare -A T
for tool in ostree oxcore; do
    if [ $tool = ostree ]; then cmd=(ostree); else cmd=("$ox" ostree); fi
    root=$work/sysroot-$tool
    mkdir -p "$root"
    "${cmd[@]}" admin init-fs "$root" >/dev/null
    "${cmd[@]}" admin os-init --sysroot="$root" fcos >/dev/null
    "${cmd[@]}" --repo="$root/ostree/repo" commit -b fcos/stable --tree=dir=tree --timestamp=2026-01-01T00:00:00Z \
        --add-metadata-string=version=1 >/dev/null
    T[$tool,deploy]=$(t "${cmd[@]}" admin deploy --sysroot="$root" --os=fcos --karg=rw fcos/stable)
done
# The update: 1% of the files, and one /etc file changed locally.
python3 - <<'PY'
import random
r = random.Random(7)
for i in r.sample(range(20000), 200):
    with open(f"tree/usr/share/d{i % 400:03d}/f{i:05d}", "ab") as f:
        f.write(b"changed\n")
PY
for tool in ostree oxcore; do
    if [ $tool = ostree ]; then cmd=(ostree); else cmd=("$ox" ostree); fi
    root=$work/sysroot-$tool
    echo "local" > "$(ls -d "$root"/ostree/deploy/fcos/deploy/*.0 | head -1)/etc/conf.d/c007"
    "${cmd[@]}" --repo="$root/ostree/repo" commit -b fcos/stable --tree=dir=tree --timestamp=2026-01-02T00:00:00Z \
        --add-metadata-string=version=2 >/dev/null
    T[$tool,update]=$(t "${cmd[@]}" admin deploy --sysroot="$root" --os=fcos fcos/stable)
done
cmp <(ls sysroot-ostree/boot/loader/entries) <(ls sysroot-oxcore/boot/loader/entries)
diff <(cat sysroot-ostree/boot/loader/entries/*) <(cat sysroot-oxcore/boot/loader/entries/*) >/dev/null ||
    { echo "boot entries differ between the tools" >&2; exit 1; }
# Back to the previous deployment: ostree 2022.7 has no rollback verb, so
# both drop the new default with `undeploy 0`; oxcore's rollback (a pure
# reordering) is timed on a copy of its sysroot first.
cp -a sysroot-oxcore sysroot-oxcore-rb
T[oxcore,rollback]=$(t "$ox" ostree admin rollback --sysroot="$work/sysroot-oxcore-rb")
T[ostree,undeploy]=$(t ostree admin undeploy --sysroot="$work/sysroot-ostree" 0)
T[oxcore,undeploy]=$(t "$ox" ostree admin undeploy --sysroot="$work/sysroot-oxcore" 0)
[ "$(ostree admin status --sysroot=sysroot-oxcore)" = "$(ostree admin status --sysroot=sysroot-ostree)" ] ||
    { echo "status differs after undeploy" >&2; exit 1; }

printf '\n%-34s %10s %10s %8s\n' step ostree oxcore speedup
for label in deploy update undeploy; do
    a=${T[ostree,$label]} b=${T[oxcore,$label]}
    printf '%-34s %9.3fs %9.3fs %7.2fx\n' "$label" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
printf '%-34s %10s %9.3fs\n' "rollback (oxcore only)" "-" "${T[oxcore,rollback]}"
