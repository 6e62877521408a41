#!/usr/bin/env bash
# First-boot test: boots a Debian kernel under QEMU with an initramfs that
# holds the static oxcore binary and the tools Ignition calls (sgdisk, partx,
# blkid, wipefs, mkfs.ext4), passes an Ignition config through fw_cfg as the
# qemu platform does, and runs the stages in their initramfs order on a
# virtio disk. Afterwards the disk image is inspected from the host.
#
#   1. a good config: partition + ext4 root + files/dirs/links/unit; every
#      stage must succeed and the image must hold exactly what it asked for;
#   2. a config whose file fails its hash check: the files stage must fail,
#      the boot must stop there, and the file must not exist on the disk.
#
# usage: tests/vm/firstboot.sh STATIC_OXCORE_BINARY
# Skips (exit 0, saying why on stderr) when QEMU, a kernel or busybox-static
# is missing; every other problem is a failure.
set -euo pipefail

oxcore=${1:?usage: firstboot.sh STATIC_OXCORE_BINARY}
# Under OXCORE_STRICT (CI) a missing tool fails instead of skipping.
skip() { echo "SKIP vm first-boot test: $*" >&2; [ -z "${OXCORE_STRICT:-}" ] || exit 1; exit 0; }
fail() { echo "FAIL vm first-boot test: $*" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
vm_require

work=$(mktemp -d)
loopdev=""
cleanup() {
    mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
    [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# --- the initramfs -----------------------------------------------------------
root=$work/initramfs
vm_initramfs_base "$root" virtio_pci virtio_blk ext4 qemu_fw_cfg
# Dynamic tools with their libraries, at the paths their loader expects.
add_tool() {
    local path
    path=$(command -v "$1") || fail "host lacks $1"
    cp -L "$path" "$root/bin/$1"
    ldd "$path" | grep -o '/[^ ]*' | while read -r lib; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
}
for t in sgdisk partx blkid wipefs mkfs.ext4; do add_tool "$t"; done
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys
mount -t devtmpfs dev /dev; mount -t tmpfs run /run
sh /load-modules
for stage in fetch-offline fetch kargs disks mount files umount; do
    if ! oxcore ignition --stage "$stage" --platform qemu; then
        echo "STAGE-FAILED $stage"
        # Ignition's emergency path: whatever is mounted goes away.
        umount /sysroot 2>/dev/null
        sync; poweroff -f
    fi
    echo "STAGE-OK $stage"
done
sync
echo "BOOT-OK"
poweroff -f
EOF
chmod +x "$root/init"
vm_pack "$root" "$work/initrd.gz"

# boot CONFIG DISK: boots once with CONFIG in fw_cfg and DISK as /dev/vda;
# the console goes to $work/console.
boot() {
    timeout 300 qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -no-reboot \
        -kernel "$kernel" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 quiet panic=-1 ignition.firstboot ignition.platform.id=qemu" \
        -drive "file=$2,if=virtio,format=raw" \
        -fw_cfg "name=opt/com.coreos/config,file=$1" </dev/null 2>&1 \
        | tr -d '\r' > "$work/console" || true
    sed 's/^/    console: /' "$work/console" | grep -E 'STAGE|BOOT-OK|failed|error|panic' || true
}

# mount_part IMAGE N: mounts partition N of IMAGE (read-only) on $work/mnt.
# The host kernel may not read GPTs, so the loop device gets the offset.
mount_part() {
    local start size
    start=$(sgdisk -i "$2" "$1" | awk '/^First sector:/ { print $3 }')
    size=$(sgdisk -i "$2" "$1" | awk '/^Partition size:/ { print $3 }')
    [ -n "$start" ] || fail "partition $2 missing on the disk"
    loopdev=$(losetup --find --show --read-only --offset $((start * 512)) \
        --sizelimit $((size * 512)) "$1")
    mkdir -p "$work/mnt"
    mount -o ro -t ext4 "$loopdev" "$work/mnt"
}
unmount_part() { umount "$work/mnt"; losetup -d "$loopdev"; loopdev=""; }

payload="oxcore first boot"
payload_sha512=$(printf '%s' "$payload" | sha512sum | cut -d' ' -f1)

# --- 1: a good config --------------------------------------------------------
cat > "$work/good.ign" <<EOF
{
  "ignition": {"version": "3.4.0"},
  "storage": {
    "disks": [{"device": "/dev/vda", "wipeTable": true,
               "partitions": [{"number": 1, "label": "root", "sizeMiB": 0,
                               "typeGuid": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}]}],
    "filesystems": [{"device": "/dev/vda1", "format": "ext4", "path": "/",
                     "label": "oxroot", "wipeFilesystem": true}],
    "directories": [{"path": "/var/lib/app", "mode": 448}],
    "files": [
      {"path": "/etc/hostname", "mode": 420, "contents": {"source": "data:,vmtest%0A"}},
      {"path": "/var/lib/app/payload", "mode": 384,
       "contents": {"source": "data:,oxcore%20first%20boot",
                    "verification": {"hash": "sha512-$payload_sha512"}}}
    ],
    "links": [{"path": "/etc/app-payload", "target": "/var/lib/app/payload"}]
  },
  "systemd": {"units": [{"name": "hello.service", "enabled": true,
    "contents": "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"}]}
}
EOF
truncate -s 256M "$work/disk1.img"
echo "vm first-boot test 1: good config"
boot "$work/good.ign" "$work/disk1.img"
grep -q '^BOOT-OK' "$work/console" || { cat "$work/console"; fail "good config: boot did not complete"; }
for s in fetch-offline fetch kargs disks mount files umount; do
    grep -q "^STAGE-OK $s\$" "$work/console" || fail "good config: stage $s did not report success"
done
sgdisk -i 1 "$work/disk1.img" | grep -q "Partition name: 'root'" || fail "partition 1 not named root"
mount_part "$work/disk1.img" 1
m=$work/mnt
[ "$(blkid -o value -s LABEL "$loopdev")" = oxroot ] || fail "filesystem label is not oxroot"
[ "$(cat "$m/etc/hostname")" = vmtest ] || fail "/etc/hostname content"
[ "$(stat -c %a "$m/etc/hostname")" = 644 ] || fail "/etc/hostname mode"
[ "$(cat "$m/var/lib/app/payload")" = "$payload" ] || fail "payload content"
[ "$(stat -c %a "$m/var/lib/app/payload")" = 600 ] || fail "payload mode"
[ "$(stat -c %a "$m/var/lib/app")" = 700 ] || fail "directory mode"
[ "$(readlink "$m/etc/app-payload")" = /var/lib/app/payload ] || fail "link target"
grep -q 'ExecStart=/bin/true' "$m/etc/systemd/system/hello.service" || fail "unit contents"
grep -qx 'enable hello.service' "$m/etc/systemd/system-preset/20-ignition.preset" || fail "unit preset"
grep -q '"userConfigProvided": true' "$m/etc/.ignition-result.json" || fail "result file"
unmount_part
echo "vm first-boot test 1: ok"

# --- 2: a file fails its hash check ------------------------------------------
sed "s/sha512-$payload_sha512/sha512-$(printf 'other' | sha512sum | cut -d' ' -f1)/" \
    "$work/good.ign" > "$work/bad.ign"
truncate -s 256M "$work/disk2.img"
echo "vm first-boot test 2: a file with a wrong hash"
boot "$work/bad.ign" "$work/disk2.img"
grep -q '^BOOT-OK' "$work/console" && fail "bad config: the boot went on"
grep -q '^STAGE-FAILED files$' "$work/console" || { cat "$work/console"; fail "bad config: files stage did not fail"; }
grep -q '^STAGE-OK umount$' "$work/console" && fail "bad config: stages ran after the failure"
mount_part "$work/disk2.img" 1
[ -e "$work/mnt/var/lib/app/payload" ] && fail "bad config: the unverified file was written"
ls -a "$work/mnt/var/lib/app" 2>/dev/null | grep -q 'payload' && fail "bad config: a temporary file was left"
[ -e "$work/mnt/etc/.ignition-result.json" ] && fail "bad config: a result file claims success"
unmount_part
echo "vm first-boot test 2: ok"
echo "vm first-boot tests passed"
