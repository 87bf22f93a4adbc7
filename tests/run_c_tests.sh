#!/bin/sh
# Runs each C test program; a program exits 0 when all its cases pass.
pass=0; fail=0
for t in "$@"; do
  if "$t"; then pass=$((pass + 1)); else echo "FAIL $t"; fail=$((fail + 1)); fi
done
mkdir -p build && echo "c $pass $fail 0" >> build/test-results
echo "c tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
