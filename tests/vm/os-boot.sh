#!/usr/bin/env bash
# The OS boot test: the whole cycle of a node, under QEMU (TCG), from an
# image built in this run. Nothing plays bootloader: QEMU's BIOS runs GRUB
# from the image, GRUB reads the BLS configuration the sysroot wrote.
#
#   0. The OS tree from Debian packages (os/build-tree.sh, cached), release
#      1 composed into a signed stream, `oxcore image build` makes the qemu
#      qcow2 and records it (sha256, signature) in the release metadata.
#   1. First boot with a Butane-made Ignition config in fw_cfg: Ignition
#      partitions and formats a second disk, writes files, a user with an
#      SSH key and a unit; the unit prints the node's state on the console;
#      the first-boot stamp is gone.
#   2. Release 2 is published: the agent asks the graph server on the host
#      (one guestfwd port: tests/vm/relay.py per connection to
#      tests/vm/router.py, which routes by path), stages it, takes a
#      FleetLock slot, reboots; GRUB boots it on trial; the health checks
#      pass, the boot is blessed, the slot released.
#   3. Release 3 cannot boot (its initramfs lacks the root filesystem's
#      module): each trial boot fails in the initramfs and restarts, GRUB
#      spends the tries and falls back to release 2, where the agent
#      denylists release 3 and reports the failure to the graph server.
#   4. The same image by UEFI (OVMF): GRUB's EFI image boots the kernel into
#      /init.
#
# Each boot's phases (firmware and GRUB, kernel, initramfs with Ignition,
# userspace) are printed from the console's timestamps.
#
# usage: tests/vm/os-boot.sh STATIC_OXCORE_BINARY
# Skips (exit 0, saying why) when QEMU, mmdebstrap or GRUB's modules are
# missing; under OXCORE_STRICT=1 (CI) that is a failure. OXCORE_KEEP=1 keeps
# the work directory.
set -euo pipefail

oxcore=$(realpath "${1:?usage: os-boot.sh STATIC_OXCORE_BINARY}")
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
skip() { echo "SKIP vm OS boot test: $*" >&2; [ -z "${OXCORE_STRICT:-}" ] || exit 1; exit 0; }
fail() {
    echo "FAIL vm OS boot test: $*" >&2
    [ -f "${console:-}" ] && { echo "--- console (last 60 lines) ---" >&2; tail -60 "$console" | cut -c 1-300 >&2; }
    [ -f "${agent_log:-}" ] && { echo "--- agent (last 30 lines) ---" >&2; tail -30 "$agent_log" | cut -c 1-300 >&2; }
    exit 1
}

for t in qemu-system-x86_64 qemu-img mmdebstrap python3 sgdisk mkfs.xfs mkfs.fat grub-mkimage; do
    command -v "$t" >/dev/null || skip "$t not installed"
done
[ -d /usr/lib/grub/i386-pc ] || skip "GRUB's BIOS modules missing (apt-get install grub-pc-bin)"
[ -d /usr/lib/grub/x86_64-efi ] || skip "GRUB's UEFI modules missing (apt-get install grub-efi-amd64-bin)"
[ "$(id -u)" = 0 ] || skip "not root (loop devices and mounts build the image)"
case "$(ldd "$oxcore" 2>&1 || true)" in
    *"not a dynamic"*|*"statically linked"*) ;;
    *) fail "$oxcore is not statically linked";;
esac

work=$(mktemp -d /var/tmp/oxcore-os-boot.XXXXXX)
pids=()
cleanup() {
    # QEMU by its pid file (the pipeline's $! is the reader), the servers
    # by their own pids.
    for f in "$work"/*.qemu.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "${OXCORE_KEEP:-}" ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
started=$SECONDS
ox() { "$oxcore" "$@"; }

# --- 0. tree, release 1, image ------------------------------------------------
t=$SECONDS
"$repo_root/os/build-tree.sh" --oxcore "$oxcore" --out "$work/tree1" >"$work/build-tree.log" 2>&1 \
    || { tail -30 "$work/build-tree.log" >&2; fail "os/build-tree.sh failed"; }
tail -1 "$work/build-tree.log"
echo "tree: $((SECONDS - t)) s"
ox ostree --repo="$work/repo" init --mode=archive
ox ostree generate-key > "$work/key"
secret=$(sed -n 's/^secret: //p' "$work/key")
public=$(sed -n 's/^public: //p' "$work/key")
meta=(--metadata "$work/meta" --base-url http://10.0.2.100/meta --sign-key "$secret")
v1=41.20261201.3.0 v2=41.20261202.3.0 v3=41.20261203.3.0
compose() { ox release compose --repo "$work/repo" "${meta[@]}" --stream stable --tree "$1" --version "$2" >/dev/null; }
# A release becomes an update target through a rollout (here open to the
# whole fleet at once), as in Fedora CoreOS's updates metadata.
publish() {
    compose "$1" "$2"
    ox release rollout "${meta[@]}" --stream stable --hours 1 --start-percentage 1 "$2" >/dev/null
}
t=$SECONDS
compose "$work/tree1" "$v1"
echo "release $v1 composed: $((SECONDS - t)) s"
t=$SECONDS
ox image build --repo "$work/repo" "${meta[@]}" --stream stable --output-dir "$work/images" \
    --format qcow2 --remote fedora=http://10.0.2.100/repo | tee "$work/image.log"
echo "image: $((SECONDS - t)) s"
qcow=$work/images/oxcore-$v1-qemu.x86_64.qcow2
[ -f "$qcow" ] || fail "no $qcow"
# The image is in the signed metadata, with its digest and signature.
rel=$work/meta/prod/streams/stable/builds/$v1/release.json
python3 - "$rel" "$qcow" <<'EOF' || fail "the image is not recorded as built"
import hashlib, json, sys
doc = json.load(open(sys.argv[1]))
a = doc["architectures"]["x86_64"]["media"]["qemu"]["artifacts"]["qcow2"]["disk"]
h = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
assert a["sha256"] == h, (a["sha256"], h)
assert a["signature"].endswith(".sig"), a
EOF
ox release verify --key "$public" --artifacts \
    "$work/meta/prod/streams/stable/builds/$v1/x86_64/$(basename "$qcow")" >/dev/null \
    || fail "the image's signature does not verify"

# --- servers on the host --------------------------------------------------------
cat > "$work/fleetlock.toml" <<EOF
[service]
address = "127.0.0.1"
port = 0
[embedded]
path = "$work/fleetlock.redb"
[lock]
default_slots = 1
EOF
"$oxcore" graph serve --metadata "$work/meta" --listen 127.0.0.1:0 --stream stable --refresh-secs 1 \
    > "$work/graph.log" 2>&1 &
pids+=($!)
"$oxcore" fleetlock serve --config "$work/fleetlock.toml" -v > "$work/fleetlock.log" 2>&1 &
pids+=($!)
port_of() { # the port a server logged it listens on
    local i
    for i in $(seq 100); do
        p=$(grep -oE '127\.0\.0\.1:[0-9]+' "$1" | head -1 | cut -d: -f2 || true)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.1
    done
    fail "no listening address in $1: $(cat "$1")"
}
gport=$(port_of "$work/graph.log")
fport=$(port_of "$work/fleetlock.log")
python3 "$here/router.py" "$work/router.port" graph=http://127.0.0.1:$gport \
    fleetlock=http://127.0.0.1:$fport repo="$work/repo" meta="$work/meta" 2> "$work/router.log" &
pids+=($!)
for _ in $(seq 100); do [ -f "$work/router.port" ] && break; sleep 0.1; done
rport=$(cat "$work/router.port")

# --- the Ignition config ------------------------------------------------------
ssh_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOxcoreTestKeyNotARealOneAAAAAAAAAAAAAAAAA test@oxcore"
cat > "$work/config.bu" <<EOF
variant: fcos
version: 1.5.0
passwd:
  users:
    - name: core
      ssh_authorized_keys:
        - $ssh_key
storage:
  disks:
    - device: /dev/vdb
      wipe_table: true
      partitions:
        - number: 1
          label: data
  filesystems:
    - device: /dev/disk/by-partlabel/data
      format: ext4
      label: data
      path: /var/data
      with_mount_unit: true
  files:
    - path: /etc/zincati/config.d/90-test.toml
      contents:
        inline: |
          [agent.timing]
          steady_interval_secs = 5
          [cincinnati]
          base_url = "http://10.0.2.100/graph/"
          [updates]
          strategy = "fleet_lock"
          [updates.fleet_lock]
          base_url = "http://10.0.2.100/fleetlock/"
          [oxcore.health]
          deadline_secs = 180
    - path: /var/data/hello.txt
      contents:
        inline: provisioned by Ignition
systemd:
  units:
    - name: oxcore-agent.service
      dropins:
        - name: 90-log.conf
          contents: |
            [Service]
            StandardOutput=tty
            StandardError=tty
            TTYPath=/dev/ttyS1
    - name: oxcore-test-status.service
      enabled: true
      contents: |
        [Unit]
        Description=Print the node's state on the console (oxcore's boot test)
        After=multi-user.target oxcore-firstboot-complete.service
        [Service]
        Type=oneshot
        StandardOutput=tty
        TTYPath=/dev/ttyS0
        ExecStart=/bin/sh -c 'oxcore status; \
          v=\$(oxcore status | awk "/^\\\\*/{b=1;next} b&&/Version:/{print \\\\\$2; exit}"); \
          echo "OXCORE-BOOTED version=\$v uptime=\$(cut -d" " -f1 /proc/uptime) user=\$(id -u core) keys=\$(cat /home/core/.ssh/authorized_keys.d/* 2>/dev/null | grep -c ssh-ed25519) data=\$(cat /var/data/hello.txt | tr " " _) stamp=\$(test -e /boot/ignition.firstboot && echo present || echo gone)"'
        [Install]
        WantedBy=multi-user.target
EOF
ox butane --strict "$work/config.bu" > "$work/config.ign" || fail "butane"

# --- the machine ----------------------------------------------------------------
qemu-img create -q -f qcow2 -F qcow2 -b "$qcow" "$work/node.qcow2"
truncate -s 1G "$work/data.img"
# start_qemu NAME ARGS...: QEMU TCG with its first serial port on `console`
# (each line stamped with the host's time), its pid in NAME.qemu.pid;
# sets `qemu` to it.
start_qemu() {
    local pidfile=$work/$1.qemu.pid i
    shift
    : > "$console"
    qemu-system-x86_64 -accel tcg -m 1536 -smp 2 -nographic -nodefaults -serial stdio \
        -pidfile "$pidfile" "$@" </dev/null 2>&1 |
        while IFS= read -r line; do
            printf '%s %s\n' "$EPOCHREALTIME" "${line//$'\r'/}"
        done > "$console" &
    pids+=($!)
    for i in $(seq 100); do
        [ -s "$pidfile" ] && { qemu=$(cat "$pidfile"); return; }
        sleep 0.1
    done
    fail "QEMU did not start (no $pidfile)"
}
console=$work/console.log
agent_log=$work/agent.log
: > "$agent_log"
# The agent's log on a second serial port (ttyS1), straight to a file.
start_qemu node -serial "file:$agent_log" \
    -drive "file=$work/node.qcow2,if=virtio,format=qcow2" \
    -drive "file=$work/data.img,if=virtio,format=raw" \
    -fw_cfg "name=opt/com.coreos/config,file=$work/config.ign" \
    -netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:python3 $here/relay.py $rport" \
    -device virtio-net-pci,netdev=n0
qemu_start=$EPOCHREALTIME

# wait_for REGEX SECONDS: waits for a console line (timestamp aside) that
# matches, after line `from`; sets `from` to it and `matched` to its text.
# (Called directly, not in $(...), so that `from` moves on.)
from=0 matched=""
wait_for() {
    local deadline=$((SECONDS + $2)) n
    while [ $SECONDS -lt $deadline ]; do
        n=$(awk -v f="$from" -v re="$1" '{ l = $0; sub(/^[^ ]+ /, "", l) } NR > f && l ~ re { print NR; exit }' "$console")
        if [ -n "$n" ]; then
            from=$n
            matched=$(sed -n "${n}p" "$console" | cut -d' ' -f2-)
            return 0
        fi
        kill -0 "$qemu" 2>/dev/null || fail "QEMU exited while waiting for /$1/"
        sleep 1
    done
    fail "no /$1/ on the console within $2 s"
}
# phases LINE_FROM START LABEL: the boot's phases from the console's host
# timestamps; the kernel's own uptime at /init's first line splits GRUB's
# loading of the kernel and initramfs from the kernel's start.
phases() {
    awk -v start="$2" -v f="$1" -v label="$3" '
        NR <= f { next }
        !g && /Booting `/ { g = $1 }
        g && !k && /oxcore-initrd: .* starting/ {
            k = $1; up = $0; sub(/.*oxcore-initrd: \[ */, "", up); sub(/\].*/, "", up)
        }
        k && !s && /oxcore-initrd: .* switching root/ { s = $1 }
        s && $2 == "OXCORE-BOOTED" { u = $1; exit }
        END {
            if (g && k && s && u)
                printf "%s: firmware+GRUB menu %.1f s, GRUB loading kernel+initramfs %.1f s, kernel %.1f s, initramfs %.1f s, userspace %.1f s (total %.1f s)\n",
                    label, g - start, (k - g) - up, up, s - k, u - s, u - start
        }' "$console"
}

# --- 1. first boot --------------------------------------------------------------
b1_from=$from
wait_for "^OXCORE-BOOTED " 420
line=$matched
echo "boot 1: $line"
phases "$b1_from" "$qemu_start" "boot 1 (first boot, Ignition)"
case "$line" in
    *"version=$v1 "*"user=1000 keys=1 data=provisioned_by_Ignition stamp=gone"*) ;;
    *) fail "first boot: unexpected state: $line";;
esac
grep -q "Ignition: files" "$console" || fail "the files stage did not run in the initramfs"

# --- 2. an update through the graph and a FleetLock slot ------------------------
mkdir -p "$work/tree2"
cp -a "$work/tree1/." "$work/tree2/"
mkdir -p "$work/tree2/usr/share/oxcore-test"
echo "$v2" > "$work/tree2/usr/share/oxcore-test/release"
publish "$work/tree2" "$v2"
b2_from=$from
# The reboot: from the agent's word to GRUB's menu.
for _ in $(seq 600); do
    grep -q "update finalized: $v2" "$agent_log" && break
    sleep 1
done
grep -q "update finalized: $v2" "$agent_log" || fail "release $v2 was never finalized: $(tail -5 "$agent_log")"
reboot_at=$EPOCHREALTIME
wait_for "^OXCORE-BOOTED version=$v2 " 600
line=$matched
echo "boot 2: $line"
phases "$b2_from" "$reboot_at" "boot 2 (update, on trial; from the agent's reboot)"
pre=$(grep -n "POST /fleetlock/v1/pre-reboot" "$work/router.log" | tail -1 | cut -d: -f1)
[ -n "$pre" ] || fail "no FleetLock slot was taken before the reboot"
for _ in $(seq 240); do
    grep -q "passed its health checks" "$agent_log" && break
    sleep 1
done
grep -q "passed its health checks" "$agent_log" || fail "release $v2 was never judged healthy: $(tail -5 "$agent_log")"
# Blessed, then the slot is released (steady-state after the pre-reboot).
released=""
for _ in $(seq 120); do
    released=$(awk -v p="$pre" 'NR > p && /POST \/fleetlock\/v1\/steady-state/ { print NR; exit }' "$work/router.log")
    [ -n "$released" ] && break
    sleep 1
done
[ -n "$released" ] || fail "the FleetLock slot was never released after the update"

# --- 3. a release that does not boot: GRUB's counter runs out -------------------
mkdir -p "$work/tree3"
cp -a "$work/tree2/." "$work/tree3/"
echo "$v3" > "$work/tree3/usr/share/oxcore-test/release"
kver=$(ls "$work/tree3/usr/lib/modules")
# The same initramfs with a module list lacking xfs: the root cannot mount.
ov=$work/overlay
mkdir -p "$ov/etc/oxcore-initrd"
zcat "$work/tree3/usr/lib/modules/$kver/initramfs.img" | (cd "$ov" && cpio -i --quiet --to-stdout etc/oxcore-initrd/modules) \
    | grep -v '/xfs\.ko' > "$ov/etc/oxcore-initrd/modules"
(cd "$ov" && find etc | cpio -o -H newc --quiet | gzip) >> "$work/tree3/usr/lib/modules/$kver/initramfs.img"
publish "$work/tree3" "$v3"
b3_from=$from
wait_for "oxcore-initrd: .*error" 600
wait_for "no boot tries left" 600
fallback_from=$from
fallback_at=$(sed -n "${from}p" "$console" | cut -d' ' -f1)
wait_for "^OXCORE-BOOTED " 300
line=$matched
echo "after the failed trial: $line"
phases "$fallback_from" "$fallback_at" "boot after the fallback (from GRUB's menu)"
case "$line" in *"version=$v2 "*) ;; *) fail "not back on $v2: $line";; esac
tries=$(awk -v f="$b3_from" 'NR > f && /oxcore-initrd: .*restarting/' "$console" | wc -l)
[ "$tries" -ge 3 ] || fail "expected 3 failed trial boots, saw $tries"
for _ in $(seq 180); do
    grep -q "router: .*POST /graph/v1/report" "$work/router.log" && break
    sleep 1
done
grep -q "router: .*POST /graph/v1/report" "$work/router.log" || fail "the failure was not reported"

kill "$qemu" 2>/dev/null || true

# --- 4. the same image by UEFI (OVMF): GRUB's EFI image, the kernel, /init --
if [ -f /usr/share/OVMF/OVMF_CODE.fd ]; then
    qemu-img create -q -f qcow2 -F qcow2 -b "$qcow" "$work/uefi.qcow2"
    cp /usr/share/OVMF/OVMF_VARS.fd "$work/vars.fd"
    console=$work/uefi-console.log from=0
    start_qemu uefi \
        -drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd" \
        -drive "if=pflash,format=raw,file=$work/vars.fd" \
        -drive "file=$work/uefi.qcow2,if=virtio,format=qcow2" \
        -fw_cfg "name=opt/com.coreos/config,file=$work/config.ign" -nic none
    wait_for "BdsDxe: starting" 120
    wait_for "Booting \`" 120
    wait_for "oxcore-initrd: .* starting" 180
    echo "UEFI: OVMF started GRUB's EFI image, which booted the kernel into /init"
    kill "$qemu" 2>/dev/null || true
else
    skip "OVMF missing (apt-get install ovmf): the UEFI boot was not tried"
fi
echo "PASS vm OS boot test: first boot, update, automatic rollback, UEFI in $((SECONDS - started)) s"
