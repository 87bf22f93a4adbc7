#!/bin/sh
# Runs every benchmark, one at a time under the machine lock, so they never
# overlap each other, a test that judges the machine, or a build.
# Usage: tests/bench/run.sh [name ...]   (names: the files below without extension)
cd "$(dirname "$0")/../.." || exit 2
LOCK=/tmp/perf_manual-machine.lock
# benchmarks that take the lock themselves see it is already held
export PM_MACHINE_LOCK_HELD=1
run() {
  echo "== $1"
  case "$1" in
    *.lua) flock "$LOCK" bin/perf_manual --lua "$1" ;;
    *.sh)  flock "$LOCK" sh "$1" ;;
  esac
}
status=0
for f in tests/bench/*.lua tests/bench/*.sh; do
  [ -e "$f" ] || continue
  name=$(basename "$f"); name=${name%.*}
  [ "$name" = run ] && continue
  if [ $# -gt 0 ]; then
    case " $* " in *" $name "*) ;; *) continue ;; esac
  fi
  run "$f" || status=1
done
exit $status
