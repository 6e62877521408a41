#!/usr/bin/env bash
# The whole test suite. On a fresh Debian 12 machine, as root, it first
# installs the system packages the tests use; tests whose tool is still
# missing say so and skip.
set -euo pipefail
cd "$(dirname "$0")"

# Debian packages the tests use:
#   ignition: upstream's ignition-validate, the oracle for spec 3.0.0-3.3.0
#   gdisk util-linux mount e2fsprogs xfsprogs dosfstools btrfs-progs
#   cryptsetup-bin: the disks stage, tested on loop devices
packages=(ignition gdisk util-linux mount e2fsprogs xfsprogs dosfstools btrfs-progs cryptsetup-bin)
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
        echo "test.sh: not root; not installing ${missing[*]} (tests that need them will skip)" >&2
    fi
fi

cargo test --workspace --locked "$@"
