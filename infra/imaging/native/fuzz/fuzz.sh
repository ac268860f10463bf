#!/usr/bin/env bash
# Coverage-guided fuzzing of the native addon's three entry points (libFuzzer + ASan + UBSan, clang
# from Debian's packages, installed here when missing and running as root).
# Usage: bash infra/imaging/native/fuzz/fuzz.sh [SECONDS_PER_HARNESS (default 600)] [HARNESS ...]
#   harnesses: fuzz_process fuzz_decode_rgb fuzz_resize_rgb (default: all three, one after another)
# Seeds: the committed corpus in fuzz/corpus/<harness>/ plus the repo's fixture JPEGs. New inputs are
# merged (minimized) back into fuzz/corpus/<harness>/; crashes land in fuzz/findings/ (not committed)
# and the script exits 1.
set -euo pipefail
cd "$(dirname "$0")"
say() { printf '[kiln fuzz] %s\n' "$*" >&2; }
SECONDS_EACH=${1:-600}
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(fuzz_process fuzz_decode_rgb fuzz_resize_rgb)
CLANG=${CLANG:-clang}
probe() { printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > build/probe.c &&
  "$CLANG" -fsanitize=fuzzer build/probe.c -o build/probe 2>/dev/null; }
mkdir -p build findings
if ! command -v "$CLANG" >/dev/null || ! probe; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    say "installing clang and libFuzzer (Debian: clang libclang-rt-14-dev)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang libclang-rt-14-dev >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends clang libclang-rt-14-dev >/dev/null; }
  fi
  probe || { say "clang with libFuzzer is not available. Fix: apt-get install clang libclang-rt-14-dev"; exit 1; }
fi
CORES=(../jpeg_errors.c ../jpeg_to_rgb.c ../jpeg_resize.c ../pil_passes.c)
FLAGS=(-g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror)
SEEDS=$(mktemp -d)
trap 'rm -rf "$SEEDS"' EXIT
find ../../../../fixtures -name '*.jpg' -size -200k -exec cp {} "$SEEDS"/ \; 2>/dev/null || true
# Small JPEGs in every layout the web serves (4:4:4, 4:2:2, 4:2:0, 4:4:0, grey; progressive; restart
# markers), odd and tiny sizes, each also with 12 geometry bytes appended (fuzz_process reads them).
cc -O2 ../tools/make_jpeg.c -ljpeg -o build/make_jpeg
i=0
for dims in "1 1" "3 2" "17 9" "33 47" "64 48" "7 130"; do
  for layout in "3 1 1" "3 2 1" "3 2 2" "3 1 2" "1 1 1"; do
    set -- $dims $layout
    i=$((i + 1))
    head -c $(($1 * $2 * $3)) /dev/urandom | ./build/make_jpeg "$1" "$2" "$3" "$4" "$5" $((30 + i * 7 % 70)) $((i % 2)) $((i % 3)) > "$SEEDS/gen-$i.jpg"
    { cat "$SEEDS/gen-$i.jpg"; head -c 12 /dev/urandom; } > "$SEEDS/gen-$i-geom.bin"
  done
done
status=0
for h in "${HARNESSES[@]}"; do
  "$CLANG" "${FLAGS[@]}" "$h.c" "${CORES[@]}" -ljpeg -o "build/$h"
  mkdir -p "corpus/$h"
  work=$(mktemp -d)
  say "$h: ${SECONDS_EACH}s"
  if ! ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 "./build/$h" -max_total_time="$SECONDS_EACH" -max_len=65536 \
      -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 -artifact_prefix="findings/$h-" "$work" "corpus/$h" "$SEEDS" \
      > "build/$h.log" 2>&1; then
    status=1
    say "$h: FOUND A BUG, see infra/imaging/native/fuzz/build/$h.log and fuzz/findings/"
    grep -m5 -E 'ERROR|SUMMARY|runtime error' "build/$h.log" >&2 || true
  fi
  # Minimize what this run found into the committed corpus.
  merged=$(mktemp -d)
  "./build/$h" -merge=1 "$merged" "corpus/$h" "$work" > "build/$h.merge.log" 2>&1 || true
  rm -rf "corpus/$h" && mv "$merged" "corpus/$h" && rm -rf "$work"
  say "$h: $(grep -E '^stat::number_of_executed_units' "build/$h.log" | awk '{print $2}') runs, corpus $(ls "corpus/$h" | wc -l) files"
done
exit $status
