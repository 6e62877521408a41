#!/usr/bin/env bash
# Deployment boot test: a sysroot made on the host by oxcore (init-fs,
# os-init, two releases deployed) on an ext4 disk image; QEMU boots a
# Debian kernel whose initramfs mounts the disk at /sysroot, runs `oxcore
# prepare-root` with the kernel arguments of a BLS entry, and switch_roots
# into the deployment. The deployment's own /usr/sbin/init reports what it
# sees (its version, /sysroot, the shared /var, a read-only /usr) and
# powers off. Then `oxcore rollback` on the image and a second boot must
# come up in the other release.
#
# usage: tests/vm/boot-deployment.sh STATIC_OXCORE_BINARY
# Skips (exit 0, saying why on stderr) when QEMU, a kernel or busybox-static
# is missing; every other problem is a failure.
set -euo pipefail

oxcore=${1:?usage: boot-deployment.sh STATIC_OXCORE_BINARY}
# Under OXCORE_STRICT (CI) a missing tool fails instead of skipping.
skip() { echo "SKIP vm deployment boot test: $*" >&2; [ -z "${OXCORE_STRICT:-}" ] || exit 1; exit 0; }
fail() { echo "FAIL vm deployment boot test: $*" >&2; exit 1; }

. "$(dirname "$0")/lib.sh"
vm_require

work=$(mktemp -d)
cleanup() {
    mountpoint -q "$work/mnt" 2>/dev/null && umount "$work/mnt"
    for d in "$work"/mnt/ostree/deploy/*/deploy/*; do chattr -i "$d" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# --- the initramfs: mount the disk, prepare-root, switch_root ---------------
root=$work/initramfs
vm_initramfs_base "$root" virtio_pci virtio_blk ext4
cat > "$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc; mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
sh /load-modules
mkdir -p /sysroot /sysroot.tmp
if ! mount -t ext4 /dev/vda /sysroot; then echo "INITRAMFS-FAILED mount"; poweroff -f; fi
if ! oxcore prepare-root --sysroot /sysroot --staging /sysroot.tmp; then
    echo "INITRAMFS-FAILED prepare-root"; poweroff -f
fi
umount /proc /sys 2>/dev/null
mount --move /dev /sysroot/dev
exec switch_root /sysroot /usr/sbin/init
EOF
chmod +x "$root/init"
vm_pack "$root" "$work/initrd.gz"

# --- the OS releases ----------------------------------------------------------
release() { # DIR VERSION
    local d=$1
    rm -rf "$d"
    mkdir -p "$d"/usr/{bin,sbin,etc,lib/modules/"$kver"} "$d"/{proc,sys,dev,run,tmp,var,sysroot}
    cp /bin/busybox "$d/usr/bin/busybox"
    ln -s usr/bin "$d/bin"
    ln -s usr/sbin "$d/sbin"
    cp "$kernel" "$d/usr/lib/modules/$kver/vmlinuz"
    echo "initramfs of $2" > "$d/usr/lib/modules/$kver/initramfs.img"
    printf 'NAME="Fedora CoreOS"\nID=fedora\nVERSION="%s"\nPRETTY_NAME="Fedora CoreOS %s"\n' "$2" "$2" \
        | tee "$d/usr/lib/os-release" > "$d/usr/etc/os-release"
    cat > "$d/usr/sbin/init" <<'EOF'
#!/usr/bin/busybox sh
B=/usr/bin/busybox
$B mount -t proc proc /proc
echo "DEPLOYMENT-BOOTED $($B grep '^VERSION=' /etc/os-release)"
[ -d /sysroot/ostree/repo ] && echo "SYSROOT-OK"
[ "$($B cat /var/lib/marker 2>/dev/null)" = shared ] && echo "VAR-OK"
if $B touch /usr/probe 2>/dev/null; then echo "USR-WRITABLE"; else echo "USR-RO"; fi
$B grep -o 'ostree=[^ ]*' /proc/cmdline
$B sync
$B poweroff -f
EOF
    chmod 755 "$d/usr/sbin/init"
}

truncate -s 512M "$work/disk.img"
mkfs.ext4 -q -F -L sysroot "$work/disk.img"
mkdir -p "$work/mnt"
mount -o loop "$work/disk.img" "$work/mnt"
s=$work/mnt
"$oxcore" ostree admin init-fs "$s" >/dev/null
"$oxcore" ostree admin os-init --sysroot="$s" fedora-coreos >/dev/null
mkdir -p "$s/ostree/deploy/fedora-coreos/var/lib"
echo shared > "$s/ostree/deploy/fedora-coreos/var/lib/marker"
for v in 41.1 41.2; do
    release "$work/tree" "$v"
    "$oxcore" ostree --repo="$s/ostree/repo" commit -b fcos/stable --tree=dir="$work/tree" \
        --add-metadata-string=version="$v" >/dev/null
    "$oxcore" ostree admin deploy --sysroot="$s" --karg=rw fcos/stable >/dev/null
done
# The kernel command line a bootloader would use for the default entry.
cmdline_of_default() {
    local top
    top=$(ls "$s"/boot/loader/entries/ | sort -t- -k2 -n | tail -1)
    sed -n 's/^options //p' "$s/boot/loader/entries/$top"
}
umount "$work/mnt"

boot() { # CMDLINE
    timeout 300 qemu-system-x86_64 -accel tcg -m 1024 -smp 1 -nographic -no-reboot \
        -kernel "$kernel" -initrd "$work/initrd.gz" \
        -append "console=ttyS0 quiet panic=-1 $1" \
        -drive "file=$work/disk.img,if=virtio,format=raw" </dev/null 2>&1 \
        | tr -d '\r' > "$work/console" || true
    sed 's/^/    console: /' "$work/console" | grep -E 'BOOTED|-OK|USR-|FAILED|ostree=|panic|error' || true
}

check_boot() { # VERSION
    grep -q "^DEPLOYMENT-BOOTED VERSION=\"$1\"" "$work/console" || { cat "$work/console"; fail "did not boot $1"; }
    for w in SYSROOT-OK VAR-OK USR-RO; do
        grep -q "^$w" "$work/console" || { cat "$work/console"; fail "$1: $w missing"; }
    done
}

mount -o loop "$work/disk.img" "$work/mnt"
cmd=$(cmdline_of_default)
umount "$work/mnt"
echo "vm deployment boot test 1: the default entry ($cmd)"
boot "$cmd"
check_boot 41.2
echo "vm deployment boot test 1: ok"

mount -o loop "$work/disk.img" "$work/mnt"
"$oxcore" rollback --sysroot="$s" >/dev/null
cmd=$(cmdline_of_default)
umount "$work/mnt"
echo "vm deployment boot test 2: after rollback ($cmd)"
boot "$cmd"
check_boot 41.1
echo "vm deployment boot test 2: ok"
echo "vm deployment boot tests passed"
