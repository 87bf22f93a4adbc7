#!/bin/sh
# The fuzz targets as tests (part of `make test`): each replays its stored
# seeds (tests/fuzz/seeds/TARGET) and then runs a fixed number of mutated
# inputs with a fixed seed, under ASan/UBSan. A crash, leak, sanitizer report
# or failed assertion is a failed case; the crashing input is left in
# build/fuzz/TARGET-crash-*. Appends "fuzz P F S" to build/test-results.
#   tests/fuzz/run_tests.sh [TARGET...]   FUZZ_RUNS scales the iterations (default 1)
cd "$(dirname "$0")/../.."
scale=${FUZZ_RUNS:-1}
mkdir -p build/fuzz
pass=0; fail=0; skip=0
for t in ${*:-fold http cfi}; do
  case "$t" in
    fold) runs=$((3000 * scale)) ;;     # each input goes through every reader, writer and the SVG layout
    http) runs=$((20000 * scale)) ;;
    cfi) runs=$((20000 * scale)) ;;
    *) runs=$((5000 * scale)) ;;
  esac
  if ! tests/fuzz/build.sh "$t" > "build/fuzz/$t-build.log" 2>&1; then
    if grep -q 'fuzzer' "build/fuzz/$t-build.log" && ! clang -fsanitize=fuzzer -x c /dev/null -o /dev/null 2>/dev/null; then
      echo "skip   fuzz_$t: clang has no libFuzzer (apt-get install libclang-rt-14-dev)"; skip=$((skip + 1)); continue
    fi
    echo "FAIL   fuzz_$t: does not build"; cat "build/fuzz/$t-build.log"; fail=$((fail + 1)); continue
  fi
  scratch=build/fuzz/scratch_$t
  rm -rf "$scratch"; mkdir -p "$scratch"
  log=build/fuzz/$t.log
  if "build/fuzz/fuzz_$t" -seed=1 -runs="$runs" -max_len=4096 -timeout=30 -rss_limit_mb=2048 \
      -artifact_prefix="build/fuzz/$t-" "$scratch" "tests/fuzz/seeds/$t" > "$log" 2>&1; then
    echo "ok     fuzz_$t: stored seeds and $runs inputs"; pass=$((pass + 1))
  else
    echo "FAIL   fuzz_$t (build/fuzz/$t.log):"; tail -n 30 "$log"; fail=$((fail + 1))
  fi
done
mkdir -p build && echo "fuzz $pass $fail $skip" >> build/test-results
echo "fuzz tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
