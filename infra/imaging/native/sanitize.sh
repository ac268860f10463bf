#!/usr/bin/env bash
# Builds the addon with AddressSanitizer + UndefinedBehaviorSanitizer (gcc's runtimes: every UB is
# fatal) and runs the randomized differential check (test/imaging/native-random-cases.ts) through all
# three entry points on it. Any sanitizer report aborts the run and fails it.
# Usage: bash infra/imaging/native/sanitize.sh [--cases N (default 5000)] [--seed S]
#   (npm run test:native-asan: the full form; npm test runs a short form through
#   test/imaging/native-sanitized.test.ts). Needs `npm run build` first (dist/).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
ROOT=$(cd ../../.. && pwd)
say() { printf '[kiln native asan] %s\n' "$*" >&2; }
CASES=5000
SEED=1
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) CASES=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) say "unknown argument $1 (usage: sanitize.sh [--cases N] [--seed S])"; exit 2 ;;
  esac
done
CC=${CC:-gcc}
LIBASAN=$("$CC" -print-file-name=libasan.so)
[ -f "$LIBASAN" ] || { say "no AddressSanitizer runtime for $CC ($LIBASAN). Fix: apt-get install gcc (Debian ships libasan with it)"; exit 1; }
NODE_PREFIX=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
NODE_INC=${KILN_NODE_INCLUDE:-$NODE_PREFIX/include/node}
[ -f "$ROOT/dist/test/imaging/native-random-cases.js" ] || { say "dist/ is not built. Fix: npm run build"; exit 1; }
OUT=build/asan
mkdir -p "$OUT"
"$CC" -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -fPIC -shared -Wall -Wextra -Werror \
  -I"$NODE_INC" ./*.c -ljpeg -o "$OUT/kiln_jpeg.node"
"$CC" -O2 -Wall -Wextra -Werror tools/make_jpeg.c -ljpeg -o "$OUT/make_jpeg"
say "built $OUT/kiln_jpeg.node (ASan + UBSan); $CASES cases from seed $SEED"
# detect_leaks=0: Node itself does not free everything at exit (the fuzzers check leaks in the C cores).
cd "$ROOT"
KILN_NATIVE_JPEG_ADDON="$HERE/$OUT/kiln_jpeg.node" LD_PRELOAD="$LIBASAN" \
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  node dist/test/imaging/native-random-cases.js --cases "$CASES" --seed "$SEED" --make-jpeg "$HERE/$OUT/make_jpeg"
