#!/usr/bin/env bash
# The whole test suite. On a fresh Debian 12 machine, as root, it first
# installs the system packages the tests use; tests whose tool is still
# missing say so and skip -- except under OXCORE_STRICT=1 (set by .ci/run),
# where a package that cannot be installed or a test that would skip is a
# failure, so CI is never green with part of the suite not run.
set -euo pipefail
cd "$(dirname "$0")"
strict=${OXCORE_STRICT:-}
# A missing piece: fatal under OXCORE_STRICT, a warning otherwise.
missing_piece() {
    echo "test.sh: $*" >&2
    if [ -n "$strict" ]; then exit 1; fi
}

# Debian packages the tests use:
#   ignition: upstream's ignition-validate, the oracle for spec 3.0.0-3.3.0
#   gdisk util-linux mount e2fsprogs xfsprogs dosfstools btrfs-progs
#   cryptsetup-bin: the disks stage, tested on loop devices
#   udev: a real systemd-udevd, killed to test the disks stage with a dead one
#   systemd: systemctl --root decides whether enabled: false disables a unit;
#     systemd-id128 is the oracle for the agent's node UUID, systemd-analyze
#     verifies its unit
#   tftpd-hpa: a real TFTP server for tftp:// resources
#   openssl python3: certificates and an HTTPS server for https:// resources
#   python3-botocore: the AWS SDK's signer checks our S3 signatures
#   time: /usr/bin/time measures peak memory in the attack replays
#   valgrind: counts the instructions of Butane and ignition-validate runs
#     (tests/butane_linear.rs: work linear in the config, not timed)
#   protobuf-compiler libprotobuf-dev: protoc, for etcd-client's build script
#   etcd-server: a real etcd for the FleetLock tests
packages=(ignition ostree attr gdisk util-linux mount e2fsprogs xfsprogs dosfstools btrfs-progs cryptsetup-bin
          udev systemd tftpd-hpa openssl python3 python3-botocore time valgrind
          protobuf-compiler libprotobuf-dev etcd-server)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        missing_piece "not root; not installing ${missing[*]} (tests that need them will skip)"
    fi
fi

# The first-boot test boots a kernel under QEMU; its packages are installed
# best effort (qemu-system-x86 may have to come from bookworm-backports
# when qemu-utils is from there) and the test skips, saying why, without.
# The OS boot test also builds the OS from Debian packages (mmdebstrap) and
# its images (GRUB's modules, mtools for the ESP, qemu-img).
vm_packages=(qemu-system-x86 qemu-utils linux-image-amd64 busybox-static cpio xz-utils
             mmdebstrap grub-pc-bin grub-efi-amd64-bin grub-common mtools ovmf)
vm_missing=()
for p in "${vm_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || vm_missing+=("$p")
done
if [ "${#vm_missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    [ "${#missing[@]}" -gt 0 ] || apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${vm_missing[@]}" >/dev/null 2>&1 ||
        apt-get install -y -qq --no-install-recommends -t bookworm-backports "${vm_missing[@]}" >/dev/null 2>&1 ||
        missing_piece "could not install ${vm_missing[*]}; the VM tests will skip"
elif [ "${#vm_missing[@]}" -gt 0 ]; then
    missing_piece "not root; not installing ${vm_missing[*]}; the VM tests will skip"
fi

# The dashboard is rendered in a real headless Chromium; best effort too
# (the test skips, saying why, without it).
if ! dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "ok installed" && [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    { [ "${#missing[@]}" -gt 0 ] || [ "${#vm_missing[@]}" -gt 0 ]; } || apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 ||
        missing_piece "could not install chromium; the dashboard test will skip"
fi

# Without arguments, the output of passing tests is shown too, so that a
# test that skipped (printing "SKIP: why") says so in the CI log; the skips
# are listed again at the end.
if [ "$#" -eq 0 ]; then
    log=$(mktemp)
    cargo test --workspace --locked --features oxcore/failpoints -- --show-output 2>&1 | tee "$log"
    skips=$(grep -ho 'SKIP[^"]*' "$log" | sort -u || true)
    rm -f "$log"
    if [ -n "$skips" ]; then
        echo "test.sh: tests that skipped:" >&2
        echo "$skips" | sed 's/^/    /' >&2
    fi
else
    cargo test --workspace --locked --features oxcore/failpoints "$@"
fi

# The VM tests (first boot; booting a deployment through prepare-root),
# with a static binary as the initramfs needs.
if [ "$#" -eq 0 ]; then
    RUSTFLAGS='-C target-feature=+crt-static' \
        cargo build --release --locked -q -p oxcore --target x86_64-unknown-linux-gnu
    tests/vm/firstboot.sh target/x86_64-unknown-linux-gnu/release/oxcore
    tests/vm/boot-deployment.sh target/x86_64-unknown-linux-gnu/release/oxcore
    # The OS itself: image, GRUB, first boot, update, automatic rollback.
    tests/vm/os-boot.sh target/x86_64-unknown-linux-gnu/release/oxcore
    # Hostile servers, clients and inputs, replayed against the same
    # release build under memory caps; fails when one gets through.
    bench/attacks.sh target/x86_64-unknown-linux-gnu/release/oxcore
fi
