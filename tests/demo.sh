#!/bin/sh
# make demo: a short, self-contained run on a built-in default. Starts the
# CPU workload (4 busy threads, more than this machine's cores), runs
# use-check on it and on the whole system, saves the results under
# build/demo/ and stops the workload. About 10 seconds.
set -u
cd "$(dirname "$0")/.." || exit 2
PM=bin/perf_manual
OUT=build/demo
if [ ! -x "$PM" ] || [ ! -x build/workloads/cpu_burn ]; then
  echo "demo: build first (make all)" >&2
  exit 2
fi
# the demo loads the machine: never at the same time as tests that judge it
if [ "${PM_MACHINE_LOCK_HELD:-}" != 1 ] && command -v flock >/dev/null; then
  export PM_MACHINE_LOCK_HELD=1
  exec flock /tmp/perf_manual-machine.lock "$0" "$@"
fi
mkdir -p "$OUT"
rm -f "$OUT"/use-check-*

build/workloads/cpu_burn 4 30 >/dev/null 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM
sleep 0.3

status=0
echo "== perf_manual use-check --target $pid --duration 4   (cpu_burn: 4 threads on $(nproc) CPUs)"
$PM use-check --target "$pid" --duration 4 --save "$OUT/use-check-pid.json" | tee "$OUT/use-check-pid.txt" || status=1
echo
echo "== perf_manual use-check --target system --duration 3"
$PM use-check --target system --duration 3 --save "$OUT/use-check-system.json" | tee "$OUT/use-check-system.txt" || status=1
cleanup
trap - EXIT

echo
echo "demo: results are in $OUT/:"
for f in "$OUT"/use-check-*; do echo "  $f"; done
verdict=$(sed -n 's/^verdict: //p' "$OUT/use-check-pid.txt")
echo "demo: verdict for the CPU workload: ${verdict:-none}"
exit $status
