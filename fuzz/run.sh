#!/bin/sh
# Runs every fuzz target for N seconds each (default 180), one after another, starting from the
# committed seeds (fuzz/seeds/TARGET) and growing fuzz/corpus/TARGET (not committed).
# A crash does not stop the run (libFuzzer's -fork=1 -ignore_crashes=1): every failing input is
# kept in fuzz/artifacts/TARGET/, and the script exits 1 when any target left one.
#
#   fuzz/run.sh        # 180 s per target
#   fuzz/run.sh 30     # 30 s per target
#
# Needs cargo-fuzz (cargo install cargo-fuzz --locked). cargo-fuzz passes nightly-only flags
# to rustc; RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
set -eu

seconds=${1:-180}
case $seconds in
    '' | *[!0-9]*)
        echo "usage: $0 [SECONDS_PER_TARGET]" >&2
        exit 2
        ;;
esac

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
cd "$fuzz_dir/.."

failed=""
for target in protocol cache_document platform_response; do
    case $target in
        protocol) dict=fuzz/dicts/protocol.dict ;;
        *) dict=fuzz/dicts/json.dict ;;
    esac
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    echo "== $target: ${seconds}s" >&2
    status=0
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -dict="$dict" -max_total_time="$seconds" -fork=1 -ignore_crashes=1 \
        -print_final_stats=1 || status=$?
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    if [ "$after" -gt "$before" ]; then
        echo "== $target: $((after - before)) new failing input(s) in fuzz/artifacts/$target" >&2
        failed="$failed $target"
    elif [ "$status" -ne 0 ]; then
        echo "== $target: cargo fuzz exited with status $status" >&2
        failed="$failed $target"
    else
        echo "== $target: no failures" >&2
    fi
done

if [ -n "$failed" ]; then
    echo "failing targets:$failed" >&2
    exit 1
fi
