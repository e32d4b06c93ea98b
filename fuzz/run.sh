#!/usr/bin/env bash
# Runs the commit log decoder's fuzz target (one job, one core).
#
#   fuzz/run.sh [SECONDS]     default: 600 seconds
#
# New inputs go to fuzz/corpus/commit_log_segment, crashes to
# fuzz/artifacts/commit_log_segment; fuzz/seeds/segment (valid, torn and
# copied segments, read by a unit test too) is read as corpus.
# FUZZ_TARGET_DIR overrides the build directory (default fuzz/target).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-600}
target=commit_log_segment

cd "$here/.."
mkdir -p "$here/corpus/$target"
cargo +nightly fuzz run "$target" \
    --target-dir "${FUZZ_TARGET_DIR:-$here/target}" \
    "$here/corpus/$target" "$here/seeds/segment" \
    -- -max_len=65536 -max_total_time="$seconds" -print_final_stats=1
