#!/usr/bin/env bash
# Runs one cargo-fuzz target for a bounded time, from the repository root.
#
#   fuzz/run.sh TARGET SECONDS [LIBFUZZER_OPTION ...]
#
# TARGET is connection, password_file or config (see fuzz/fuzz_targets/). New inputs go to
# fuzz/corpus/TARGET, which git ignores. fuzz/seeds/TARGET is read as well and stays unchanged.
# A crash, hang or leak is saved under fuzz/artifacts/TARGET/ and ends the run with a
# non-zero status. Needs the nightly toolchain and cargo-fuzz (cargo install cargo-fuzz --locked).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 TARGET SECONDS [LIBFUZZER_OPTION ...]" >&2
    exit 2
fi
target=$1
seconds=$2
shift 2
case $seconds in
    '' | *[!0-9]*)
        echo "invalid SECONDS '$seconds': expected a whole number of seconds" >&2
        exit 2
        ;;
esac

cd "$(dirname "$0")/.."
if [ ! -f "fuzz/fuzz_targets/$target.rs" ]; then
    echo "invalid TARGET '$target': expected one of $(cd fuzz/fuzz_targets && ls -- *.rs | sed 's/\.rs$//' | tr '\n' ' ')" >&2
    exit 2
fi
mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target"

# cargo fuzz builds into fuzz/target, so that its sanitizer builds stay apart from the
# workspace's builds in a shared CARGO_TARGET_DIR.
unset CARGO_TARGET_DIR
# -timeout is the real time one input may take before it counts as a hang, in seconds. No
# -jobs option: one fuzzing process, which prints to this terminal (with -jobs, libFuzzer
# starts child processes that write to fuzz-N.log files instead).
exec cargo +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 "$@"
