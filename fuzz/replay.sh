#!/usr/bin/env bash
# CI: build every fuzz target and replay its committed corpus once
# (no new inputs are generated). Fails on the first crash.
#
#   fuzz/replay.sh                 # AddressSanitizer (as when fuzzing)
#   SANITIZER=none fuzz/replay.sh  # faster build, no ASan
#
# Needs the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# nightly-only -Z flags it uses.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SANITIZER="${SANITIZER:-address}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

targets=$(cargo fuzz list)
cargo fuzz build --sanitizer "$SANITIZER"
# Run the binaries just built. (`cargo fuzz run` would build them again:
# cargo-fuzz 0.13 runs them through `cargo run` with another debug-info
# setting, which recompiles jwtgate and the targets, minutes in release.)
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir="${CARGO_TARGET_DIR:-fuzz/target}/$triple/release"
for t in $targets; do
    dir="fuzz/corpus/$t"
    if [ ! -d "$dir" ]; then
        echo "fuzz/replay.sh: no corpus for $t" >&2
        exit 1
    fi
    echo "== $t: $(find "$dir" -type f | wc -l) inputs"
    mkdir -p "fuzz/artifacts/$t"
    # -runs=0 runs every corpus input once and stops.
    "$bin_dir/$t" -runs=0 -rss_limit_mb=2048 -artifact_prefix="fuzz/artifacts/$t/" "$dir"
done
echo "fuzz/replay.sh: every corpus replayed without a crash"
