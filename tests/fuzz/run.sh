#!/bin/sh
# Fuzzes one target for a while (default 60 s), starting from its stored
# corpus (tests/fuzz/seeds/TARGET); new inputs go to build/fuzz/corpus_TARGET.
# `make test` runs a fixed number of iterations instead (tests/fuzz/run_tests.sh).
#   tests/fuzz/run.sh [fold|http] [SECONDS]
set -e
cd "$(dirname "$0")/../.."
t=${1:-fold}
secs=${2:-60}
tests/fuzz/build.sh "$t"
mkdir -p "build/fuzz/corpus_$t"
# extra seeds for fold: the checked-in perf script captures
[ "$t" = fold ] && cp tests/fixtures/perf/*.txt "build/fuzz/corpus_$t/" 2>/dev/null || true
exec "build/fuzz/fuzz_$t" -artifact_prefix="build/fuzz/$t-" -max_total_time="$secs" -max_len=65536 \
  -rss_limit_mb=2048 "build/fuzz/corpus_$t" "tests/fuzz/seeds/$t"
