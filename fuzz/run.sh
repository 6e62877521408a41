#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain (no sanitizer; panics are
# what we look for). Usage: fuzz/run.sh [TARGET] [SECONDS] [CORPUS_DIR]
set -euo pipefail
cd "$(dirname "$0")"
target=${1:-ignition_parse}
secs=${2:-300}
corpus=${3:-corpus/$target}
mkdir -p "$corpus"
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions" \
    cargo build --release --target x86_64-unknown-linux-gnu --bins
"target/x86_64-unknown-linux-gnu/release/$target" "$corpus" -max_total_time="$secs" -max_len=4096
