#!/usr/bin/env bash
# Replays the attacks of a hostile server, client or input against a
# release build, each under memory caps, and fails when one gets through
# (a crash, a peak RSS over its cap, no answer in time, or an exit status
# that is not the one expected). Every script in bench/attacks/ is one
# family; each prints a line per attack with its figures.
# Usage: bench/attacks.sh [OXCORE_BINARY]   (default: a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --locked -q -p oxcore
    bin=$PWD/target/release/oxcore
fi
bin=$(realpath "$bin")
failed=0
for s in bench/attacks/*.sh; do
    [ "$(basename "$s")" = lib.sh ] && continue
    echo "== $s"
    bash "$s" "$bin" || failed=1
done
if [ "$failed" != 0 ]; then
    echo "attacks.sh: at least one attack got through" >&2
    exit 1
fi
echo "attacks.sh: every attack was contained"
