#!/bin/bash
# Builds oxcore's OS content tree from Debian 12 (bookworm) packages, laid out
# the way Fedora CoreOS lays out an OSTree commit, ready for
#     oxcore release compose --tree DIR
#
#   os/build-tree.sh --oxcore /path/to/static/oxcore --out DIR
#                    [--cache DIR] [--extra-package P]...
#
# Run as root on Debian 12 with mmdebstrap installed. The only network access
# is to the Debian mirrors the host's apt is configured with.
#
# The layout it produces (what OSTree expects of a commit):
#   /usr                 everything the OS is; /usr/etc the default /etc
#   /usr/lib/modules/KVER/{vmlinuz,initramfs.img,config}   the kernel
#   /etc                 absent (OSTree makes it from /usr/etc at deploy time)
#   /var                 empty; systemd-tmpfiles creates its content at boot
#                        (/usr/lib/tmpfiles.d/oxcore-var.conf, oxcore-links.conf)
#   /boot /sysroot /tmp /run /proc /sys /dev   empty directories
#   /home /root /srv /opt /mnt /media /usr/local /ostree   symlinks
#
# mmdebstrap's output is cached as a tarball keyed by everything that decides
# its content, so a second run only redoes the (cheap) post-processing.

set -Eeuo pipefail
# Command substitutions fail the script too.
shopt -s inherit_errexit

readonly PROG="os/build-tree.sh"
readonly SUITE="bookworm"
# Bumped when the post-processing changes what the cached tarball must hold.
readonly CACHE_FORMAT="1"

# The OS's packages; --extra-package adds to these.
readonly BASE_PACKAGES=(
    linux-image-cloud-amd64
    systemd systemd-sysv udev dbus kmod
    util-linux mount gdisk e2fsprogs xfsprogs dosfstools
    openssh-server iproute2 ca-certificates less
)

# Kernel module directories a VM or a typical server does not need. A module
# in them that something else needs is kept (see prune_modules).
readonly PRUNED_MODULE_DIRS=(
    kernel/sound
    kernel/drivers/media
    kernel/drivers/gpu
    kernel/drivers/infiniband
    kernel/drivers/isdn
    kernel/net/wireless
    kernel/drivers/net/wireless
)

# The names the oxcore binary answers to (its multi-call links, as
# `oxcore install-links` creates them).
readonly OXCORE_LINKS=(ignition ignition-validate zincati ostree butane airlock)

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly DIST_DIR="$script_dir/../dist"

oxcore=""
out=""
cache_dir="/var/tmp/oxcore-os-cache"
extra_packages=()

# The tree being built (OUT.tmp) and a cache file being written: the EXIT
# trap removes them unless the run got to the end.
work=""
cache_tmp=""
done_ok=0

log() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat <<EOF
Usage: $PROG --oxcore PATH --out DIR [--cache DIR] [--extra-package P]...

  --oxcore PATH        statically linked oxcore binary to put in /usr/bin
  --out DIR            where the tree goes (must not exist, or be empty)
  --cache DIR          mmdebstrap output cache (default $cache_dir)
  --extra-package P    one more Debian package to install (repeatable)
EOF
}

cleanup() {
    if [[ $done_ok -ne 1 ]]; then
        if [[ -n $work && -d $work ]]; then
            log "failed; removing $work"
            rm -rf --one-file-system -- "$work"
        fi
    fi
    if [[ -n $cache_tmp ]]; then
        rm -f -- "$cache_tmp"
    fi
}

parse_args() {
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --oxcore) oxcore=${2:?--oxcore needs a path}; shift 2 ;;
            --out) out=${2:?--out needs a directory}; shift 2 ;;
            --cache) cache_dir=${2:?--cache needs a directory}; shift 2 ;;
            --extra-package)
                [[ ${2:-} =~ ^[A-Za-z0-9][A-Za-z0-9+.:~=/_-]*$ ]] \
                    || die "--extra-package: not a package name: '${2:-}'"
                extra_packages+=("$2"); shift 2 ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    [[ -n $oxcore ]] || { usage >&2; die "--oxcore is required"; }
    [[ -n $out ]] || { usage >&2; die "--out is required"; }
}

check_host() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (mmdebstrap --mode=root, file ownership)"
    local tool
    for tool in mmdebstrap zstd tar depmod systemctl dpkg-query apt-config; do
        command -v "$tool" >/dev/null || die "$tool not found on the host"
    done
    [[ -f $oxcore && -x $oxcore ]] || die "$oxcore: not an executable file"
    oxcore=$(readlink -f -- "$oxcore")
    "$oxcore" --version >/dev/null || die "$oxcore --version failed"
    # The binary runs in the tree against its glibc; a static one is immune
    # to version skew, so say so if it is not.
    if command -v file >/dev/null && ! file -L "$oxcore" | grep -q 'static'; then
        log "warning: $oxcore does not look statically linked"
    fi
    [[ -d $DIST_DIR ]] || die "$DIST_DIR: missing (the repository's dist/)"

    # The output: absent or empty, and the temp dir beside it so the final
    # rename is atomic (same filesystem).
    out=$(realpath -m -- "$out")
    if [[ -e $out ]]; then
        [[ -d $out ]] || die "$out exists and is not a directory"
        [[ -z $(ls -A -- "$out") ]] || die "$out is not empty"
    fi
    mkdir -p -- "$(dirname -- "$out")"
    work="$out.tmp"
    if [[ -e $work ]]; then
        # Only a run killed before its trap could leave this behind.
        log "removing a stale $work from an interrupted run"
        rm -rf --one-file-system -- "$work"
    fi
}

# --- apt sources ------------------------------------------------------------

# Prints "deb [signed-by=K] URI SUITE COMPONENTS" for every enabled entry of
# the host's apt sources (one-line .list and deb822 .sources) for SUITE.
host_source_lines() {
    local want="$1" f
    local files=()
    [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
    for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && files+=("$f")
    done
    for f in "${files[@]}"; do
        if [[ $f == *.sources ]]; then
            # deb822: paragraphs of "Key: value"; fold each into one line.
            awk -v want="$want" '
                function flush() {
                    if (types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") {
                        n = split(suites, s, " "); m = split(uris, u, " ")
                        for (i = 1; i <= n; i++) if (s[i] == want)
                            for (j = 1; j <= m; j++) {
                                opt = (signed != "" && signed !~ /^-----/) ? "[signed-by=" signed "] " : ""
                                print "deb " opt u[j] " " want " " comps
                            }
                    }
                    types = uris = suites = comps = signed = enabled = ""
                }
                /^[ \t]*#/ { next }
                /^[ \t]*$/ { flush(); next }
                /^[A-Za-z-]+:/ {
                    key = tolower($1); sub(/:$/, "", key)
                    val = $0; sub(/^[^:]*:[ \t]*/, "", val)
                    if (key == "types") types = val
                    else if (key == "uris") uris = val
                    else if (key == "suites") suites = val
                    else if (key == "components") comps = val
                    else if (key == "signed-by") signed = val
                    else if (key == "enabled") enabled = val
                }
                END { flush() }' "$f"
        else
            # One-line format: "deb [opts] URI SUITE COMP...".
            awk -v want="$want" '
                /^[ \t]*deb[ \t]/ {
                    line = $0; sub(/#.*/, "", line)
                    opts = ""
                    if (match(line, /\[[^]]*\]/)) {
                        opts = substr(line, RSTART, RLENGTH) " "
                        line = substr(line, 1, RSTART - 1) substr(line, RSTART + RLENGTH)
                    }
                    n = split(line, w, " ")
                    if (n >= 4 && w[3] == want) {
                        comps = w[4]; for (i = 5; i <= n; i++) comps = comps " " w[i]
                        print "deb " opts w[2] " " want " " comps
                    }
                }' "$f"
        fi
    done | awk '!seen[$0]++'
}

# Fills the global mirror_lines: the host's mirror for SUITE (required; the
# mmdebstrap default deb.debian.org otherwise) and its -updates and -security
# suites if the host has them.
mirror_lines=()
collect_sources() {
    local s line found
    for s in "$SUITE" "$SUITE-updates" "$SUITE-security"; do
        found=0
        while IFS= read -r line; do
            [[ -n $line ]] || continue
            mirror_lines+=("$line"); found=1
        done < <(host_source_lines "$s")
        if [[ $found -eq 0 && $s == "$SUITE" ]]; then
            log "warning: the host has no apt source for $SUITE; using deb.debian.org"
            mirror_lines+=("deb http://deb.debian.org/debian $SUITE main")
        fi
    done
    log "apt sources:"
    printf '    %s\n' "${mirror_lines[@]}" >&2
}

# --- mmdebstrap and its cache ----------------------------------------------

# The options that decide the tarball's content (all of them go into the
# cache key).
mmdebstrap_opts=()
set_mmdebstrap_opts() {
    local include
    include=$(printf '%s\n' "${BASE_PACKAGES[@]}" "${extra_packages[@]}" | sort -u | paste -sd, -)
    mmdebstrap_opts=(
        --variant=minbase
        --mode=root
        --format=tar
        # bookworm's init-system-helpers would pull usrmerge (and with it
        # perl); this hook makes the same merged /usr symlinks and installs
        # usr-is-merged instead. OSTree needs /bin, /lib, /sbin in /usr.
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
        --include="$include"
        --aptopt='APT::Install-Recommends "false"'
        --aptopt='APT::Install-Suggests "false"'
        # Keep licences (copyright files) but no other docs, manuals,
        # translations or lintian overrides.
        --dpkgopt='path-exclude=/usr/share/doc/*'
        --dpkgopt='path-include=/usr/share/doc/*/copyright'
        --dpkgopt='path-exclude=/usr/share/man/*'
        --dpkgopt='path-exclude=/usr/share/info/*'
        --dpkgopt='path-exclude=/usr/share/locale/*'
        --dpkgopt='path-include=/usr/share/locale/locale.alias'
        --dpkgopt='path-exclude=/usr/share/lintian/*'
        --dpkgopt='path-exclude=/usr/share/bug/*'
    )
}

# A proxy the host's apt uses is needed to reach the mirror but does not
# change the content, so it stays out of the cache key.
proxy_opts=()
set_proxy_opts() {
    local scheme val
    for scheme in http https; do
        val=$(apt-config shell v "Acquire::$scheme::Proxy" 2>/dev/null | sed -n "s/^v='\(.*\)'$/\1/p")
        if [[ -n $val ]]; then
            proxy_opts+=(--aptopt="Acquire::$scheme::Proxy \"$val\"")
        fi
    done
}

cache_key() {
    {
        echo "format=$CACHE_FORMAT"
        echo "suite=$SUITE"
        printf 'opt=%s\n' "${mmdebstrap_opts[@]}"
        printf 'source=%s\n' "${mirror_lines[@]}"
    } | sha256sum | cut -c1-32
}

# Sets tarball to the cached mmdebstrap output, running mmdebstrap on a miss.
tarball=""
ensure_rootfs_tarball() {
    local key start
    key=$(cache_key)
    mkdir -p -- "$cache_dir"
    tarball="$cache_dir/rootfs-$SUITE-$key.tar.zst"
    if [[ -f $tarball ]]; then
        log "cache hit: $tarball"
    else
        log "cache miss: running mmdebstrap (key $key)"
        start=$SECONDS
        cache_tmp="$tarball.tmp.$$"
        # A tar on stdout, compressed here: the temp name has no extension
        # for mmdebstrap to guess the format from, and the rename below makes
        # the cache entry appear whole or not at all.
        if ! mmdebstrap "${mmdebstrap_opts[@]}" "${proxy_opts[@]}" \
                "$SUITE" - "${mirror_lines[@]}" \
                | zstd -q -T0 -6 -o "$cache_tmp"; then
            die "mmdebstrap failed (its messages are above)"
        fi
        mv -f -- "$cache_tmp" "$tarball"
        cache_tmp=""
        log "mmdebstrap done in $((SECONDS - start)) s: $tarball ($(du -h -- "$tarball" | cut -f1))"
    fi
}

extract_rootfs() {
    local tarball="$1"
    mkdir -m 0755 -- "$work"
    zstd -q -dc -- "$tarball" \
        | tar -x -p --numeric-owner --xattrs --xattrs-include='*' -C "$work"
    # Sanity: merged /usr, one kernel.
    local d
    for d in bin sbin lib lib64; do
        [[ -L $work/$d ]] || die "/$d is not a symlink into /usr (no merged /usr?)"
    done
}

# The one kernel version in the tree.
kver=""
find_kernel() {
    local versions=()
    local d
    for d in "$work"/usr/lib/modules/*/; do
        [[ -d $d ]] && versions+=("$(basename -- "$d")")
    done
    [[ ${#versions[@]} -eq 1 ]] || die "expected one kernel in /usr/lib/modules, found: ${versions[*]:-none}"
    kver=${versions[0]}
    [[ -f $work/boot/vmlinuz-$kver ]] || die "/boot/vmlinuz-$kver missing"
    log "kernel $kver"
}

size_mb() { du -sm --one-file-system -- "$1" | cut -f1; }

# --- pruning ----------------------------------------------------------------

# Whatever the dpkg path excludes missed (files maintainer scripts write) and
# caches apt leaves.
prune_files() {
    local t="$work"
    find "$t/usr/share/doc" -mindepth 1 -depth \
        ! -name copyright ! -type d ! -type l -delete 2>/dev/null || true
    find "$t/usr/share/doc" -mindepth 1 -depth -type d -empty -delete 2>/dev/null || true
    rm -rf -- "$t/usr/share/man" "$t/usr/share/info" "$t/usr/share/lintian" \
        "$t/usr/share/bug" "$t/usr/share/linda"
    find "$t/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
        -exec rm -rf -- {} + 2>/dev/null || true
    find "$t/usr" \( -name '*.pyc' -o -name __pycache__ \) -prune -exec rm -rf -- {} +
    rm -rf -- "$t/var/cache/apt/"* "$t/var/lib/apt/lists/"*
    # /dev: mmdebstrap made device nodes, which an OSTree commit cannot hold
    # (devtmpfs provides them at boot). /run and /tmp: runtime only.
    find "$t/dev" "$t/run" "$t/tmp" -mindepth 1 -delete
}

# Removes PRUNED_MODULE_DIRS except modules that a kept module depends on
# (modules.dep lists every module's dependencies transitively), then
# rebuilds the module index.
prune_modules() {
    local moddir="$work/usr/lib/modules/$kver"
    [[ -f $moddir/modules.dep ]] || die "$moddir/modules.dep missing"
    local pattern
    pattern=$(printf '%s/|' "${PRUNED_MODULE_DIRS[@]}")
    pattern="^(${pattern%|})"

    # Modules outside the pruned directories, and what they load first.
    local keep
    keep=$(awk -v pat="$pattern" '
        {
            mod = $1; sub(/:$/, "", mod)
            if (mod ~ pat) next
            for (i = 2; i <= NF; i++) if ($i ~ pat) print $i " (needed by " mod ")"
        }' "$moddir/modules.dep" | sort -u -k1,1)
    if [[ -n $keep ]]; then
        log "keeping modules in pruned directories that others need:"
        # shellcheck disable=SC2001  # indent every line, not one substitution
        sed 's/^/    /' <<<"$keep" >&2
    fi

    local before removed=0 rel
    before=$(size_mb "$moddir")
    while IFS= read -r rel; do
        rm -f -- "$moddir/$rel"
        removed=$((removed + 1))
    done < <(awk -v pat="$pattern" -v keep="$keep" '
        BEGIN { n = split(keep, k, "\n"); for (i = 1; i <= n; i++) { split(k[i], w, " "); kept[w[1]] = 1 } }
        { mod = $1; sub(/:$/, "", mod); if (mod ~ pat && !(mod in kept)) print mod }' "$moddir/modules.dep")
    local d
    for d in "${PRUNED_MODULE_DIRS[@]}"; do
        [[ -d $moddir/$d ]] && find "$moddir/$d" -depth -type d -empty -delete
    done
    depmod -b "$work" "$kver"
    log "modules: removed $removed, $before MB -> $(size_mb "$moddir") MB"
}

# --- layout -----------------------------------------------------------------

# The kernel where OSTree looks for it; /boot is only a mount point.
layout_kernel() {
    local t="$work" moddir="$work/usr/lib/modules/$kver"
    mv -- "$t/boot/vmlinuz-$kver" "$moddir/vmlinuz"
    chmod 0644 "$moddir/vmlinuz"
    if [[ -f $t/boot/config-$kver ]]; then
        mv -- "$t/boot/config-$kver" "$moddir/config"
    fi
    # initrd.img (Debian's initramfs-tools one; oxcore builds its own),
    # System.map, anything else.
    find "$t/boot" -mindepth 1 -delete
    rm -f -- "$t/vmlinuz" "$t/vmlinuz.old" "$t/initrd.img" "$t/initrd.img.old"
}

install_oxcore() {
    local t="$work" name
    install -D -m 0755 -- "$oxcore" "$t/usr/bin/oxcore"
    for name in "${OXCORE_LINKS[@]}"; do
        [[ -e $t/usr/bin/$name || -L $t/usr/bin/$name ]] \
            && die "/usr/bin/$name already exists in the tree"
        ln -s oxcore "$t/usr/bin/$name"
    done
}

# dist/ mirrors /usr/lib: every file in it is mapped, and an unmapped one
# stops the build rather than being left out silently.
install_dist() {
    local t="$work" f rel dest
    while IFS= read -r -d '' f; do
        rel=${f#"$DIST_DIR"/}
        case "$rel" in
            systemd/system/*) dest="/usr/lib/systemd/system/${rel#systemd/system/}" ;;
            tmpfiles.d/*) dest="/usr/lib/tmpfiles.d/${rel#tmpfiles.d/}" ;;
            zincati/config.d/*) dest="/usr/lib/zincati/config.d/${rel#zincati/config.d/}" ;;
            *) die "dist/$rel: no place for it in the tree (extend install_dist)" ;;
        esac
        install -D -m 0644 -- "$f" "$t$dest"
        log "dist/$rel -> $dest"
    done < <(find "$DIST_DIR" -type f -print0 | sort -z)
}

write_units() {
    local sys="$work/usr/lib/systemd/system"

    # As Fedora CoreOS's coreos-ignition-firstboot-complete.service: once
    # the real root reaches basic.target, Ignition has succeeded, so the
    # stamp that makes GRUB add ignition.firstboot goes (and with it the
    # user's config, which may hold secrets). If Ignition failed, this never
    # runs and the next boot is a first boot again.
    cat >"$sys/oxcore-firstboot-complete.service" <<'EOF'
[Unit]
Description=oxcore: mark the first boot complete
ConditionKernelCommandLine=ignition.firstboot
ConditionPathExists=!/run/ostree-live
RequiresMountsFor=/boot

[Service]
Type=oneshot
RemainAfterExit=yes
# /boot is made writable only in this unit's own mount namespace.
MountFlags=slave
ExecStart=/usr/bin/mount -o remount,rw /boot
ExecStart=/usr/bin/rm -rf /boot/ignition
ExecStart=/usr/bin/rm -f /boot/ignition.firstboot
ExecStart=/usr/bin/echo "oxcore: first boot complete: removed /boot/ignition.firstboot and /boot/ignition"
StandardOutput=journal+console

[Install]
WantedBy=basic.target
EOF

    # The image ships no host keys (every machine would share them); each
    # machine makes its own before sshd first starts.
    cat >"$sys/oxcore-sshd-keygen.service" <<'EOF'
[Unit]
Description=oxcore: generate missing SSH host keys
Before=ssh.service
ConditionPathExists=|!/etc/ssh/ssh_host_ed25519_key
ConditionPathExists=|!/etc/ssh/ssh_host_ecdsa_key
ConditionPathExists=|!/etc/ssh/ssh_host_rsa_key

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=ssh.service
EOF
    chmod 0644 "$sys/oxcore-firstboot-complete.service" "$sys/oxcore-sshd-keygen.service"
}

has_package() {
    [[ $(dpkg-query --admindir="$work/var/lib/dpkg" -W -f='${db:Status-Status}' "$1" 2>/dev/null) == installed ]]
}

# systemd-networkd with DHCP on every wired NIC. Name resolution: without
# systemd-resolved (a separate package in bookworm) nothing turns DHCP's DNS
# servers into /etc/resolv.conf, so the image carries QEMU user
# networking's resolver; an Ignition config can replace the file, and
# --extra-package systemd-resolved replaces the whole arrangement.
configure_network() {
    local t="$work"
    install -D -m 0644 /dev/stdin "$t/usr/lib/systemd/network/80-oxcore-dhcp.network" <<'EOF'
# oxcore: DHCP (IPv4 and IPv6) on every wired interface. A .network file in
# /etc/systemd/network with a lower number takes precedence.
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
    if has_package systemd-resolved; then
        log "systemd-resolved installed: /etc/resolv.conf left to it"
    else
        rm -f -- "$t/etc/resolv.conf"
        cat >"$t/etc/resolv.conf" <<'EOF'
# oxcore: static resolver (QEMU user networking's DNS forwarder). Without
# systemd-resolved nothing writes the DHCP-provided servers here; replace
# this file (e.g. from Ignition) on other networks.
nameserver 10.0.2.3
EOF
        chmod 0644 "$t/etc/resolv.conf"
    fi
}

configure_etc() {
    local t="$work"

    printf 'LABEL=boot /boot ext4 defaults 0 2\n' >"$t/etc/fstab"

    cat >"$t/usr/lib/os-release" <<'EOF'
NAME="oxcore"
ID=oxcore
ID_LIKE=debian
VARIANT_ID=coreos
PRETTY_NAME="oxcore (Debian 12 based)"
VERSION_ID=12
EOF
    chmod 0644 "$t/usr/lib/os-release"
    ln -sfn ../usr/lib/os-release "$t/etc/os-release"

    # Identity: each machine gets its own. "uninitialized" makes systemd
    # generate one on first boot and treat it as the first boot
    # (ConditionFirstBoot=, the preset pass that enables the units
    # Ignition's preset file names); an empty file would give a transient
    # ID and no first boot. mmdebstrap copied the build host's hostname.
    echo uninitialized >"$t/etc/machine-id"
    chmod 0444 "$t/etc/machine-id"
    # systemd-firstboot would prompt on the console for a locale and a
    # root password on that first boot: nobody answers on a fleet node.
    ln -sfn /dev/null "$t/etc/systemd/system/systemd-firstboot.service"
    rm -f -- "$t/var/lib/dbus/machine-id" "$t/etc/hostname"
    rm -f -- "$t"/etc/ssh/ssh_host_*

    # Debian's installer writes /etc/hosts, no package does; without it
    # "localhost" would go to DNS.
    if [[ ! -e $t/etc/hosts ]]; then
        printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$t/etc/hosts"
        chmod 0644 "$t/etc/hosts"
    fi

    # The root password stays locked ('*' or '!' in shadow).
    local rootpw
    rootpw=$(awk -F: '$1 == "root" { print $2 }' "$t/etc/shadow")
    [[ $rootpw == '*'* || $rootpw == '!'* ]] || die "root has a password in /etc/shadow"

    # Serial console: systemd-getty-generator starts serial-getty@ttyS0 when
    # console=ttyS0 is on the command line; check nothing masks it.
    [[ -x $t/usr/lib/systemd/system-generators/systemd-getty-generator ]] \
        || die "systemd-getty-generator missing"
    [[ -f $t/usr/lib/systemd/system/serial-getty@.service ]] || die "serial-getty@.service missing"
    # systemd-gpt-auto-generator would automount the ESP on /efi, which an
    # OSTree root does not have (the unit fails on every boot); the ESP is
    # the bootloader's, not the OS's. Masked as a generator is: a link to
    # /dev/null in /etc/systemd/system-generators.
    mkdir -p -- "$t/etc/systemd/system-generators"
    ln -sfn /dev/null "$t/etc/systemd/system-generators/systemd-gpt-auto-generator"
    local u
    for u in serial-getty@.service serial-getty@ttyS0.service getty.target; do
        if [[ $(readlink -- "$t/etc/systemd/system/$u" 2>/dev/null) == /dev/null ]]; then
            die "$u is masked"
        fi
    done
}

# Enables units through a preset file (the record of oxcore's choices, also
# honoured by `systemctl preset` on a node) applied to just these units:
# preset-all would also disable what Debian's maintainer scripts enabled
# (ssh.service, getty@tty1), because Debian ships no complete preset policy.
# Runs before /etc moves: systemctl --root reads and writes /etc.
enable_units() {
    local t="$work"
    local enable=(
        oxcore-agent.service
        oxcore-firstboot-complete.service
        oxcore-sshd-keygen.service
        systemd-networkd.service
    )
    has_package systemd-resolved && enable+=(systemd-resolved.service)
    # apt's daily timers would refresh package lists for a package manager
    # that cannot install anything on a read-only /usr; updates come from
    # the agent.
    local disable=(apt-daily.timer apt-daily-upgrade.timer)
    {
        echo "# oxcore: units enabled (and disabled) in the image."
        printf 'enable %s\n' "${enable[@]}"
        printf 'disable %s\n' "${disable[@]}"
    } | install -D -m 0644 /dev/stdin "$t/usr/lib/systemd/system-preset/40-oxcore.preset"
    systemctl --root="$t" --quiet preset "${enable[@]}" "${disable[@]}"
    local u state
    for u in "${enable[@]}" ssh.service; do
        state=$(systemctl --root="$t" is-enabled "$u" 2>/dev/null || true)
        [[ $state == enabled ]] || die "$u is '$state' after enabling"
    done
    for u in "${disable[@]}"; do
        state=$(systemctl --root="$t" is-enabled "$u" 2>/dev/null || true)
        [[ $state == disabled ]] || die "$u is '$state' after disabling"
    done
    image_preset_policy
}

# The image's complete preset policy: what is enabled now, and `disable *`.
# systemd applies the presets to every unit on the first boot (it is how the
# units Ignition enables through /etc/systemd/system-preset/20-ignition.preset
# get enabled, as on Fedora CoreOS); Debian ships no complete policy, so
# without this one that pass would enable every unit it does not list.
image_preset_policy() {
    local t="$work" link unit base inst
    local -A seen=()
    {
        echo "# oxcore: the image's units as built; everything else stays off."
        while IFS= read -r link; do
            unit=${link##*/}
            [[ -n ${seen[$unit]:-} ]] && continue
            seen[$unit]=1
            if [[ $unit == *@?*.* ]]; then
                base=${unit%%@*}; inst=${unit#*@}; inst=${inst%.*}
                echo "enable ${base}@.${unit##*.} $inst"
            else
                echo "enable $unit"
            fi
        done < <(find "$t/etc/systemd/system" -mindepth 2 -maxdepth 2 -type l \
                     \( -path '*.wants/*' -o -path '*.requires/*' \) | sort)
        echo "disable *"
    } | install -D -m 0644 /dev/stdin "$t/usr/lib/systemd/system-preset/85-oxcore-image.preset"
    log "preset policy: $(grep -c '^enable' "$t/usr/lib/systemd/system-preset/85-oxcore-image.preset") units enabled, the rest disabled"
}

build_initramfs() {
    # The tree's own static oxcore builds it from the tree (see
    # docs/os.md: why not dracut).
    log "building the initramfs"
    "$oxcore" image initramfs --tree "$work" --kver "$kver" \
        --output "$work/usr/lib/modules/$kver/initramfs.img" \
        || die "building the initramfs failed"
}

npackages=0
write_package_list() {
    local t="$work"
    mkdir -p -- "$t/usr/share/oxcore"
    dpkg-query --admindir="$t/var/lib/dpkg" -W \
        -f='${db:Status-Status} ${Package}=${Version}\n' \
        | awk '$1 == "installed" { print $2 }' | sort >"$t/usr/share/oxcore/packages.txt"
    npackages=$(wc -l <"$t/usr/share/oxcore/packages.txt")
}

# Paths some tmpfiles.d line in the tree already creates (d, D, v, q, Q, L,
# C, with or without modifiers), so generated lines do not duplicate them
# (systemd-tmpfiles logs every duplicate at each boot).
existing_tmpfiles_paths() {
    local dirs=() d
    for d in "$work/usr/lib/tmpfiles.d" "$work/etc/tmpfiles.d"; do
        [[ -d $d ]] && dirs+=("$d")
    done
    find "${dirs[@]}" -maxdepth 1 -name '*.conf' -exec cat -- {} + \
        | awk '$1 ~ /^[dDvqQLC][-+!=~^]*$/ && $2 ~ /^\// { print $2 }' | sort -u
}

# Prints tmpfiles lines recreating the directories and symlinks under SRC at
# DEST (d with mode and owner names from the tree's passwd/group, L with the
# link's target), skipping the paths listed in the file SKIP.
tmpfiles_for() {
    local src="$1" dest="$2" skip="$3"
    local bad
    bad=$(find "$src" -mindepth 1 -name '*[[:space:]]*' -print -quit)
    [[ -z $bad ]] || die "$bad: whitespace in a path under $src"
    find "$src" -mindepth 1 \( -type d -o -type l \) -printf '%y %m %U %G %P %l\n' | sort -k5,5 \
        | awk -v dest="$dest" -v skip="$skip" \
              -v passwd="$work/etc/passwd" -v group="$work/etc/group" '
            BEGIN {
                FS = ":"
                while ((getline l < passwd) > 0) { split(l, f, ":"); user[f[3]] = f[1] }
                while ((getline l < group) > 0) { split(l, f, ":"); grp[f[3]] = f[1] }
                while ((getline l < skip) > 0) skipped[l] = 1
                FS = " "
            }
            {
                path = dest "/" $5
                if (path in skipped) next
                u = ($3 in user) ? user[$3] : $3
                g = ($4 in grp) ? grp[$4] : $4
                mode = sprintf("%4s", $2); gsub(/ /, "0", mode)
                if ($1 == "d") printf "d %s %s %s %s -\n", path, mode, u, g
                else printf "L %s - - - - %s\n", path, $6
            }'
}

# Fedora CoreOS's top-level links: "PATH LINK-TEXT TARGET MODE".
readonly FHS_LINKS=(
    "/home var/home /var/home 0755"
    "/root var/roothome /var/roothome 0700"
    "/srv var/srv /var/srv 0755"
    "/opt var/opt /var/opt 0755"
    "/mnt var/mnt /var/mnt 0755"
    "/media run/media /run/media 0755"
    "/usr/local ../var/usrlocal /var/usrlocal 0755"
)

# systemd-tmpfiles refuses to create or adjust a directory through a
# symlink ("/home already exists and is not a directory", from home.conf's
# "Q /home"), so the packages' tmpfiles.d lines for the linked paths are
# pointed at the link targets (/home -> /var/home, /root/.ssh ->
# /var/roothome/.ssh, ...), keeping their intent.
retarget_tmpfiles() {
    local map f
    map=$(printf '%s\n' "${FHS_LINKS[@]}" | awk '{ print $1, $3 }')
    for f in "$work"/usr/lib/tmpfiles.d/*.conf; do
        [[ -f $f ]] || continue
        awk -v map="$map" -v file="${f#"$work"}" -v prog="$PROG" '
            BEGIN {
                n = split(map, m, "\n")
                for (i = 1; i <= n; i++) { split(m[i], w, " "); from[i] = w[1]; to[i] = w[2] }
            }
            /^[ \t]*#/ || NF < 2 { print; next }
            {
                for (i = 1; i <= n; i++) {
                    if ($2 == from[i] || index($2, from[i] "/") == 1) {
                        new = to[i] substr($2, length(from[i]) + 1)
                        # Splice the new path in place of the second field,
                        # keeping the rest of the line byte for byte.
                        pos = index($0, $1) + length($1)
                        rest = substr($0, pos)
                        p2 = index(rest, $2)
                        $0 = substr($0, 1, pos - 1) substr(rest, 1, p2 - 1) new substr(rest, p2 + length($2))
                        printf "%s: retargeted in %s: %s\n", prog, file, $0 > "/dev/stderr"
                        break
                    }
                }
                print
            }' "$f" >"$f.new"
        if cmp -s "$f" "$f.new"; then
            rm -f -- "$f.new"
        else
            chmod --reference="$f" "$f.new"
            mv -f -- "$f.new" "$f"
        fi
    done
}

# Makes the links, and tmpfiles lines (oxcore-links.conf) for their targets
# and for what the packages put in /root and /usr/local.
make_fhs_links() {
    local t="$work"
    local conf="$t/usr/lib/tmpfiles.d/oxcore-links.conf"

    retarget_tmpfiles

    local skip
    skip=$(mktemp)
    existing_tmpfiles_paths >"$skip"

    # Content in those directories would be lost, so stop rather than drop
    # it (Debian leaves them empty).
    local d
    for d in home srv opt mnt media; do
        [[ -z $(ls -A -- "$t/$d" 2>/dev/null) ]] || die "/$d is not empty in the tree"
    done

    # root's home (base-files' .bashrc and .profile, openssh's empty .ssh):
    # its files are kept in /usr and copied into /var/roothome when missing.
    local roothome_src="/usr/share/oxcore/roothome"
    mkdir -p -- "$t$roothome_src"
    cp -a -- "$t/root/." "$t$roothome_src/"

    local entry path link target mode
    {
        echo "# Generated by $PROG: the targets of the top-level links"
        echo "# /home, /root, /srv, /opt, /mnt, /media and /usr/local, and their"
        echo "# content from the packages."
        for entry in "${FHS_LINKS[@]}"; do
            read -r path link target mode <<<"$entry"
            grep -qxF "$target" "$skip" || echo "d $target $mode root root -"
        done
        tmpfiles_for "$t/usr/local" /var/usrlocal "$skip"
        tmpfiles_for "$t/root" /var/roothome "$skip"
        find "$t$roothome_src" -type f -printf '%P\n' | sort \
            | awk -v src="$roothome_src" '{ print "C /var/roothome/" $0 " - - - - " src "/" $0 }'
    } >"$conf"
    chmod 0644 "$conf"
    rm -f -- "$skip"

    for entry in "${FHS_LINKS[@]}"; do
        read -r path link target mode <<<"$entry"
        rm -rf -- "${t:?}$path"
        ln -s "$link" "$t$path"
    done
}

# /var holds no content in an OSTree commit: it is per-machine state. The
# directories and symlinks Debian's packages put there become tmpfiles
# lines; regular files (logs, debconf and apt caches, deb-systemd-helper
# state) are dropped; the dpkg database moves into /usr (as rpm-ostree
# does with the rpm database in /usr/lib/sysimage), so `dpkg -l` keeps
# working through a /var/lib/dpkg symlink.
empty_var() {
    local t="$work"
    local conf="$t/usr/lib/tmpfiles.d/oxcore-var.conf"
    local skip
    skip=$(mktemp)
    # Runs after make_fhs_links, so its lines count as existing too.
    existing_tmpfiles_paths >"$skip"

    mkdir -p -- "$t/usr/lib/sysimage"
    mv -- "$t/var/lib/dpkg" "$t/usr/lib/sysimage/dpkg"
    echo "/var/lib/dpkg" >>"$skip"

    local dropped
    dropped=$(find "$t/var" -mindepth 1 ! -type d ! -type l | wc -l)
    {
        echo "# Generated by $PROG: what Debian's packages put in /var (an"
        echo "# OSTree commit ships /var empty), less what other tmpfiles.d files"
        echo "# create."
        echo
        echo "# The dpkg database lives in /usr/lib/sysimage/dpkg."
        echo "L /var/lib/dpkg - - - - /usr/lib/sysimage/dpkg"
        echo
        tmpfiles_for "$t/var" /var "$skip"
    } >"$conf"
    chmod 0644 "$conf"
    rm -f -- "$skip"

    find "$t/var" -mindepth 1 -delete
    log "/var emptied: $(grep -c '^[dL]' "$conf") lines in ${conf#"$t"}, $dropped regular files dropped"
}

# The OSTree mount points: /sysroot (the physical root), /ostree pointing
# into it, /boot, a sticky /tmp.
ostree_dirs() {
    local t="$work"
    install -d -m 0755 "$t/sysroot" "$t/boot" "$t/run" "$t/proc" "$t/sys" "$t/dev" "$t/var"
    ln -sfn sysroot/ostree "$t/ostree"
    install -d -m 1777 "$t/tmp"
    chmod 1777 "$t/tmp"
}

# Last: OSTree keeps the default /etc as /usr/etc and builds each
# deployment's /etc from it.
move_etc() {
    [[ ! -e $work/usr/etc ]] || die "/usr/etc already exists"
    mv -- "$work/etc" "$work/usr/etc"
}

final_checks() {
    local t="$work" bad
    bad=$(find "$t" \( -type b -o -type c -o -type p -o -type s \) -print -quit)
    [[ -z $bad ]] || die "${bad#"$t"}: device node, fifo or socket in the tree"
    [[ -z $(ls -A -- "$t/var") ]] || die "/var is not empty"
    [[ ! -e $t/etc ]] || die "/etc still exists"
    [[ -z $(ls -A -- "$t/boot") ]] || die "/boot is not empty"
    [[ -f $t/usr/lib/modules/$kver/vmlinuz ]] || die "kernel missing"
}

main() {
    parse_args "$@"
    check_host
    trap cleanup EXIT
    # Say which command failed (set -E carries this into functions).
    trap 'log "error: line $LINENO: $BASH_COMMAND failed"' ERR
    # Signals exit through the EXIT trap too.
    trap 'exit 130' INT
    trap 'exit 143' TERM

    collect_sources
    set_mmdebstrap_opts
    set_proxy_opts

    ensure_rootfs_tarball
    extract_rootfs "$tarball"
    find_kernel

    local size_before
    size_before=$(size_mb "$work")
    prune_files
    prune_modules
    layout_kernel
    local size_after
    size_after=$(size_mb "$work")
    log "size: $size_before MB before pruning, $size_after MB after"

    install_oxcore
    install_dist
    write_units
    configure_network
    configure_etc
    enable_units
    build_initramfs
    write_package_list
    make_fhs_links
    empty_var
    ostree_dirs
    move_etc
    final_checks

    # rename(2): replaces an empty $out too, and the tree appears whole.
    mv -T -- "$work" "$out"
    done_ok=1
    echo "$PROG: tree at $out: $(size_mb "$out") MB, $kver, $npackages packages, $SECONDS s"
}

main "$@"
