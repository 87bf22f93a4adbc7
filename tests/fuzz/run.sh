#!/bin/sh
# Builds and runs the libFuzzer harness for the pm.fold parsers for a while
# (default 60 s). Not part of `make test`: run it by hand after changing
# runtime/fold*.c.   tests/fuzz/run.sh [SECONDS]
set -e
cd "$(dirname "$0")/../.."
secs=${1:-60}
out=build/fuzz
mkdir -p "$out/corpus"
# seeds: the checked-in perf script captures
cp tests/fixtures/perf/*.txt "$out/corpus/" 2>/dev/null || true
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iruntime $(pkg-config --cflags luajit) \
  tests/fuzz/fuzz_fold.c runtime/fold*.c runtime/util.c \
  $(pkg-config --libs luajit) -lpthread -lm -o "$out/fuzz_fold"
exec "$out/fuzz_fold" -artifact_prefix="$out/" -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 "$out/corpus"
