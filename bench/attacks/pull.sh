#!/usr/bin/env bash
# OSTree pulls from a hostile server: a .filez whose header claims 2 GiB,
# an endless commit object, a 1 TiB Content-Length, a deflate bomb.
# Usage: bench/attacks/pull.sh OXCORE_BINARY
set -uo pipefail
ox=${1:?usage: pull.sh OXCORE_BINARY}
. "$(dirname "$0")/lib.sh"

# A real archive repository: a 4 MB file and a few small ones.
mkdir -p "$work/tree/d"
head -c 4000000 /dev/urandom >"$work/tree/d/big"
for i in 1 2 3; do echo "small $i" >"$work/tree/d/s$i"; done
"$ox" ostree --repo="$work/srv" init --mode=archive
"$ox" ostree --repo="$work/srv" commit -b main --tree=dir="$work/tree" >/dev/null
hostile_server "$work/srv"

pull() { # MODE URL
    local repo="$work/node-$RANDOM"
    "$ox" ostree --repo="$repo" init --mode="$1"
    "$ox" ostree --repo="$repo" remote add --no-gpg-verify o "$2"
    "$ox" ostree --repo="$repo" pull o main
}
export -f pull
export ox work
attack "pull: baseline (the real repository)" ok 100 60 bash -c 'pull bare-user http://127.0.0.1:'"$port"
for mode in archive bare-user; do
    attack "pull ($mode): .filez headers claiming 2 GiB" refused 100 60 \
        bash -c "pull $mode http://127.0.0.1:$port/lie"
done
for mode in archive bare-user; do
    attack "pull ($mode): deflate bombs claiming and inflating to 2 GiB" refused 100 300 \
        bash -c "pull $mode http://127.0.0.1:$port/bomb-object"
done
attack "pull: endless commit and dirtree objects" refused 100 120 \
    bash -c "pull archive http://127.0.0.1:$port/endless-object"
attack "pull: Content-Length of 1 TiB on the config" refused 100 60 \
    bash -c "pull archive http://127.0.0.1:$port/huge-length"
finish
