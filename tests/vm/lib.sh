# Shared by the VM tests: requirements, and an initramfs skeleton with
# busybox, the static oxcore binary and kernel modules.
# Callers set `oxcore` and define `skip` and `fail` first.

# vm_require: skips unless QEMU, a kernel, static busybox, cpio and root
# are there; sets `kernel` and `kver`.
vm_require() {
    command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed"
    kernel=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$kernel" ] || skip "no kernel in /boot (apt-get install linux-image-amd64)"
    [ -x /bin/busybox ] && vm_is_static /bin/busybox \
        || skip "static busybox missing (apt-get install busybox-static)"
    command -v cpio >/dev/null || skip "cpio not installed"
    [ "$(id -u)" = 0 ] || skip "not root (needs losetup and mount to inspect the image)"
    vm_is_static "$oxcore" || fail "$oxcore is not statically linked"
    kver=${kernel#/boot/vmlinuz-}
}

vm_is_static() {
    case "$(ldd "$1" 2>&1 || true)" in *"not a dynamic"*|*"statically linked"*) return 0;; esac
    return 1
}

# vm_initramfs_base ROOT MODULE...: busybox, oxcore, the modules (with
# their dependencies, decompressed) and /load-modules to insert them.
vm_initramfs_base() {
    local root=$1; shift
    mkdir -p "$root"/{bin,sbin,proc,sys,dev,run,tmp,sysroot,modules,etc}
    cp /bin/busybox "$root/bin/busybox"
    cp "$oxcore" "$root/bin/oxcore"
    : > "$root/load-modules"
    for m in "$@"; do
        modprobe --show-depends -S "$kver" "$m" 2>/dev/null | awk '$1 == "insmod" { print $2 }'
    done | awk '!seen[$0]++' | while read -r ko; do
        # Decompressed here: busybox insmod hands the kernel the raw bytes.
        name=${ko##*/}; name=${name%.xz}; name=${name%.zst}; name=${name%.gz}
        case "$ko" in
            *.xz) xz -dc "$ko" > "$root/modules/$name";;
            *.zst) zstd -qdc "$ko" > "$root/modules/$name";;
            *.gz) gzip -dc "$ko" > "$root/modules/$name";;
            *) cp "$ko" "$root/modules/$name";;
        esac
        echo "insmod /modules/$name" >> "$root/load-modules"
    done
}

# vm_pack ROOT OUT: the initramfs archive.
vm_pack() {
    (cd "$1" && find . | cpio -o -H newc 2>/dev/null | gzip -1) > "$2"
}
