#!/usr/bin/env bash
# Side by side with airlock: the same FleetLock requests to airlock and to
# `oxcore fleetlock serve`, both on one etcd, and their answers (status and
# body) compared byte for byte; then a slot taken through one server must
# be seen by the other. airlock is not part of this repository: build it
# from its source elsewhere and name it with AIRLOCK.
#
#   AIRLOCK=/path/to/airlock bench/fleetlock-airlock.sh    # OXCORE=path for another build
#
# Needs etcd (Debian's etcd-server) and curl. Exits 1 when an answer differs.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${AIRLOCK:-}" ] || { echo "SKIP: set AIRLOCK to an airlock binary" >&2; exit 0; }
command -v etcd >/dev/null || { echo "SKIP: etcd is not installed (etcd-server)" >&2; exit 0; }
if [ -n "${OXCORE:-}" ]; then
    ox=$(realpath "$OXCORE")
else
    cargo build --release --locked -q -p oxcore
    ox=$PWD/target/release/oxcore
fi
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ec=$(port); ep=$(port); a=$(port); o=$(port)
etcd --name t --data-dir "$work/etcd" \
    --listen-client-urls "http://127.0.0.1:$ec" --advertise-client-urls "http://127.0.0.1:$ec" \
    --listen-peer-urls "http://127.0.0.1:$ep" --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
    --initial-cluster "t=http://127.0.0.1:$ep" >"$work/etcd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ec/health" >/dev/null && break; sleep 0.1; done
config() {
    cat <<EOF
[service]
address = "127.0.0.1"
port = $1
tls = false
[etcd3]
endpoints = ["http://127.0.0.1:$ec"]
[lock]
default_group_name = "default"
default_slots = 1
[[lock.groups]]
name = "workers"
slots = 2
EOF
}
config "$a" >"$work/a.toml"; config "$o" >"$work/o.toml"
"$AIRLOCK" serve -c "$work/a.toml" >"$work/airlock.log" 2>&1 &
pids+=($!)
"$ox" fleetlock serve -c "$work/o.toml" >"$work/oxcore.log" 2>&1 &
pids+=($!)
for p in "$a" "$o"; do
    for _ in $(seq 100); do curl -s "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.1; done
done

# One request; prints "STATUS BODY" with the body's newlines as ~.
req() { # port method path header(yes|no) body
    local h=()
    [ "$4" = yes ] && h=(-H 'fleet-lock-protocol: true')
    curl -s -o "$work/body" -w '%{http_code}' -X "$2" "${h[@]}" --data-binary "$5" "http://127.0.0.1:$1$3"
    printf ' %s' "$(tr '\n' '~' <"$work/body")"
}
same=0; differ=0
both() { # method path header body
    local x y
    x=$(req "$a" "$1" "$2" "$3" "$4"); y=$(req "$o" "$1" "$2" "$3" "$4")
    if [ "$x" = "$y" ]; then
        same=$((same + 1)); echo "same    $1 $2 [$4] -> $x"
    else
        differ=$((differ + 1)); echo "DIFFER  $1 $2 [$4]"; echo "    airlock: $x"; echo "    oxcore:  $y"
    fi
}
Z='{"client_params":{"id":"n1","group":"default"}}'
both POST /v1/pre-reboot no "$Z"
both POST /v1/pre-reboot yes ""
both POST /v1/pre-reboot yes "{"
both POST /v1/pre-reboot yes "x"
both POST /v1/pre-reboot yes "[]"
both POST /v1/pre-reboot yes "{}"
both POST /v1/pre-reboot yes '{"client_params":{"group":"default"}}'
both POST /v1/pre-reboot yes '{"client_params":{"group":"default","id":7}}'
both POST /v1/pre-reboot yes '{"client_params":"x"}'
both POST /v1/pre-reboot yes '{"client_params":{"id":"n1","group":"nosuch<&>"}}'
both POST /v1/pre-reboot yes '{"CLIENT_PARAMS":{"ID":"n1","Group":"default"},"extra":1}'
both POST /v1/pre-reboot yes "$Z trailing"
both POST /v1/pre-reboot yes '{"client_params":{"id":"n2","group":"default"}}'
both GET /v1/pre-reboot yes '{"client_params":{"id":"w1","group":"workers"}}'
both POST /v1/steady-state yes '{"client_params":{"id":"w1","group":"workers"}}'
both POST /v1/steady-state yes '{"client_params":{"id":"nobody","group":"workers"}}'
both POST /v1/steady-state yes "$Z"
both POST /v1/other yes "$Z"
both POST /v1/pre-reboot/ yes "$Z"

echo "-- one etcd, two servers: a slot taken through one is seen by the other"
expect() { # what got want
    if [ "${2%% *}" = "$3" ]; then same=$((same + 1)); echo "ok      $1 -> $2"; else differ=$((differ + 1)); echo "WRONG   $1 -> $2 (want $3)"; fi
}
expect "airlock: a1 pre-reboot" "$(req "$a" POST /v1/pre-reboot yes '{"client_params":{"id":"a1","group":"default"}}')" 200
expect "oxcore:  o1 pre-reboot" "$(req "$o" POST /v1/pre-reboot yes '{"client_params":{"id":"o1","group":"default"}}')" 500
expect "oxcore:  a1 steady-state" "$(req "$o" POST /v1/steady-state yes '{"client_params":{"id":"a1","group":"default"}}')" 200
expect "airlock: o1 pre-reboot" "$(req "$a" POST /v1/pre-reboot yes '{"client_params":{"id":"o1","group":"default"}}')" 200
expect "oxcore:  a1 pre-reboot" "$(req "$o" POST /v1/pre-reboot yes '{"client_params":{"id":"a1","group":"default"}}')" 500
echo "$same agree, $differ differ"
[ "$differ" -eq 0 ]
