# Shared by the attack replays: run one attack under caps and judge it.
# Needs /usr/bin/time (Debian package `time`) and python3.

work=$(mktemp -d /var/tmp/oxcore-attack.XXXXXX)
servers=()
cleanup() {
    for p in "${servers[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
got_through=0

# hostile_server ROOT: starts bench/attacks/hostile_http.py over ROOT and
# sets $port.
hostile_server() {
    local fifo="$work/port.$RANDOM"
    mkfifo "$fifo"
    python3 "$(dirname "${BASH_SOURCE[0]}")/hostile_http.py" "$1" >"$fifo" &
    servers+=($!)
    read -r _ port <"$fifo"
    rm -f "$fifo"
}

# attack NAME EXPECT RSS_CAP_MB SECONDS COMMAND...: runs COMMAND with its
# address space capped at 4 GiB (so an allocation of what a header claims
# aborts instead of succeeding), judges it, prints one line.
# EXPECT is `ok` (must succeed) or `refused` (must fail with exit 1 and a
# message; a signal or a timeout is a failure either way).
attack() {
    local name=$1 expect=$2 cap=$3 secs=$4; shift 4
    local out="$work/out" rss="$work/rss" rc=0
    /usr/bin/time -f %M -o "$rss" timeout "$secs" \
        bash -c 'ulimit -v 4194304; exec "$@"' _ "$@" >"$out" 2>&1 || rc=$?
    local kb mb verdict=contained
    kb=$(tail -n 1 "$rss" | grep -Eo '^[0-9]+$' || echo 0)
    mb=$((kb / 1024))
    if [ "$rc" = 124 ]; then
        verdict="GOT THROUGH: no answer in ${secs} s"
    elif [ "$rc" -gt 128 ]; then
        verdict="GOT THROUGH: killed by signal $((rc - 128))"
    elif [ "$mb" -gt "$cap" ]; then
        verdict="GOT THROUGH: peak RSS over ${cap} MB"
    elif [ "$expect" = ok ] && [ "$rc" != 0 ]; then
        verdict="GOT THROUGH: failed (exit $rc): $(tail -c 300 "$out")"
    elif [ "$expect" = refused ] && [ "$rc" != 1 ]; then
        verdict="GOT THROUGH: exit $rc, expected a refusal"
    fi
    printf '  %-58s exit %3s  peak RSS %5d MB  %s\n' "$name" "$rc" "$mb" "$verdict"
    if [ "$verdict" != contained ]; then
        got_through=1
        sed 's/^/      | /' "$out" | tail -n 5
    elif [ "$expect" = refused ]; then
        printf '      | %s\n' "$(grep -m1 . "$out" | cut -c1-150)"
    fi
}

finish() {
    [ "$got_through" = 0 ]
}
