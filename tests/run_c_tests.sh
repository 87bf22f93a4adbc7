#!/bin/sh
# Runs each C test program (tests/c/test_*.c, built into build/tests/). A
# program prints a case per line and ends with "<name>: N passed, N failed"
# (tests/c/check.h); the cases are what is counted. A program that dies
# before its closing line, or exits non-zero with no failed case, counts as
# one failed case more.
pass=0; fail=0
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | tail -n 1)
  p=$(printf '%s\n' "$line" | sed -n 's/^[^ ]*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1/p')
  f=$(printf '%s\n' "$line" | sed -n 's/^[^ ]*: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\2/p')
  if [ -z "$p" ]; then
    echo "FAIL $t: no closing line (exit status $rc)"; p=0; f=1
  elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "FAIL $t: exit status $rc"; f=1
  fi
  pass=$((pass + p)); fail=$((fail + f))
done
mkdir -p build && echo "c $pass $fail 0" >> build/test-results
echo "c tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
