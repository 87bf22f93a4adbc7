#!/bin/sh
# Adds up the "<suite> <passed> <failed> <skipped>" lines that the C and Lua
# runners append to the results file and prints the closing summary line.
f=${1:-build/test-results}
if [ ! -s "$f" ]; then echo "test: 0 passed, 1 failed (no test results were recorded)"; exit 1; fi
awk '{p+=$2; f+=$3; s+=$4; printf "  %-6s %d passed, %d failed, %d skipped\n", $1, $2, $3, $4}
     END {printf "test: %d passed, %d failed, %d skipped\n", p, f, s; exit (f > 0 || p == 0)}' "$f"
