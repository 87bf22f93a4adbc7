#!/bin/sh
# Builds one libFuzzer target (fold: the pm.fold readers, writers and SVG
# layout; http: the HTTP/1.1 response parser; cfi: the CFI compiler) with ASan/UBSan into
# build/fuzz/fuzz_TARGET, when a source is newer than the binary.
#   tests/fuzz/build.sh TARGET
set -e
cd "$(dirname "$0")/../.."
t=$1
case "$t" in
  fold) src="tests/fuzz/fuzz_fold.c runtime/fold.c runtime/fold_perf.c runtime/fold_svg.c runtime/util.c" ;;
  http) src="tests/fuzz/fuzz_http.c runtime/http.c runtime/util.c" ;;
  cfi) src="tests/fuzz/fuzz_cfi.c runtime/cfi.c runtime/util.c"; libs="-lelf" ;;
  *) echo "tests/fuzz/build.sh: unknown target '$t' (fold, http, cfi)" >&2; exit 2 ;;
esac
out=build/fuzz/fuzz_$t
mkdir -p build/fuzz
if [ -x "$out" ] && [ -z "$(find $src runtime/*.h -newer "$out" 2>/dev/null)" ]; then exit 0; fi
clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iruntime $(pkg-config --cflags luajit openssl) $src $(pkg-config --libs luajit) ${libs:-} -ldl -lpthread -lm -o "$out"
