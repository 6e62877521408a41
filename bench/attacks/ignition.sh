#!/usr/bin/env bash
# `oxcore ignition apply` fetching from a hostile server: a 2 GiB chunked
# file, a gzip bomb (2 MB that inflate to 2 GiB), contents and a merged
# config whose Content-Length claims 1 TiB. Files must stream to disk with
# a small, flat RSS; the lies must be refused.
# Usage: bench/attacks/ignition.sh OXCORE_BINARY
set -uo pipefail
ox=${1:?usage: ignition.sh OXCORE_BINARY}
. "$(dirname "$0")/lib.sh"
mkdir -p "$work/www"
hostile_server "$work/www"
base="http://127.0.0.1:$port"

config() { # NAME JSON-FILES-ENTRY [EXTRA-IGNITION]: writes $work/NAME.ign
    printf '{"ignition":{"version":"3.4.0"%s},"storage":{"files":[%s]}}' "${3:-}" "$2" >"$work/$1.ign"
}
apply() { # NAME
    rm -rf "$work/root-$1" && mkdir -p "$work/root-$1"
    "$ox" ignition apply --root "$work/root-$1" "$work/$1.ign"
}
export -f apply
export ox work

config big "{\"path\":\"/var/big\",\"contents\":{\"source\":\"$base/zeros/2147483648\"}}"
attack "apply: a 2 GiB file, chunked" ok 100 300 bash -c 'apply big && test "$(stat -c %s "$work/root-big/var/big")" = 2147483648'
config bomb "{\"path\":\"/var/bomb\",\"contents\":{\"source\":\"$base/gzip-bomb/2147483648\",\"compression\":\"gzip\"}}"
attack "apply: a gzip bomb inflating to 2 GiB" ok 100 300 bash -c 'apply bomb && test "$(stat -c %s "$work/root-bomb/var/bomb")" = 2147483648'
config liar "{\"path\":\"/etc/liar\",\"contents\":{\"source\":\"$base/huge-length\"}}"
attack "apply: contents claiming a 1 TiB Content-Length" refused 100 60 bash -c 'apply liar'
config merged "" ",\"config\":{\"merge\":[{\"source\":\"$base/huge-length\"}]}"
attack "apply: a merged config claiming 1 TiB" refused 100 60 bash -c 'apply merged'
finish
