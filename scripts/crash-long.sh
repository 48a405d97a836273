#!/usr/bin/env bash
# Long crash-safety run: `kill -9` at random moments, CYCLES times per backend (default 200); debug build as in CI
# (KETENPOORT_CRASH_PROFILE=release for an optimised one).
# Prints one summary line per backend (acknowledged-but-missing, delivered-but-unlogged, fetches-unlogged,
# acks-unlogged, duplicates, audit verify, recovery p50/p99). PostgreSQL runs too when KETENPOORT_TEST_POSTGRES is set (see .ci/run).
# Usage: scripts/crash-long.sh [CYCLES] [SEED-HEX]
set -euo pipefail
cd "$(dirname "$0")/.."
export KETENPOORT_CRASH_CYCLES="${1:-200}"
[ -n "${2:-}" ] && export KETENPOORT_CRASH_SEED="$2"
cargo test ${KETENPOORT_CRASH_PROFILE:+--profile "$KETENPOORT_CRASH_PROFILE"} --locked --test crash -- --nocapture 2>&1 | grep -E '^crash\[|^log |^verified|SKIPPED|panicked|test result'
