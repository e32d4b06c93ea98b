#!/usr/bin/env bash
# Runs each fuzz target in turn (one job, one core) for SECONDS each.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 600 seconds, all targets
#
# New inputs go to fuzz/corpus/<target>, crashes to fuzz/artifacts/<target>;
# fuzz/seeds/<target> (the unit tests' vectors) is read as corpus too.
# FUZZ_TARGET_DIR overrides the build directory (default fuzz/target).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(engine_packet payload socket_packet packet_data)
fi

# cargo fuzz finds fuzz/ from the crate's directory.
cd "$here/.."
for target in "${targets[@]}"; do
    mkdir -p "$here/corpus/$target"
    echo "== $target: ${seconds}s"
    cargo +nightly fuzz run "$target" \
        --target-dir "${FUZZ_TARGET_DIR:-$here/target}" \
        "$here/corpus/$target" "$here/seeds/$target" \
        -- -max_len=65536 -max_total_time="$seconds" -print_final_stats=1
done
