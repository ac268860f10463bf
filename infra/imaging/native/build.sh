#!/usr/bin/env bash
# Builds the optional native JPEG addon (kiln_jpeg.c and the other .c files here) into build/kiln_jpeg.node.
# Needs a C compiler, the libjpeg-turbo headers (Debian: libjpeg62-turbo-dev) and Node's own
# headers (node_api.h, shipped with Node in <prefix>/include/node). Exits non-zero, saying what is
# missing, when it cannot build; the crawler then uses sharp for every image (same results, slower).
# Usage: bash infra/imaging/native/build.sh
set -euo pipefail
cd "$(dirname "$0")"
say() { printf '[kiln native jpeg] %s\n' "$*" >&2; }
CC=${CC:-cc}
command -v "$CC" >/dev/null || { say "no C compiler ($CC). Fix: apt-get install gcc"; exit 1; }
NODE_PREFIX=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
NODE_INC=${KILN_NODE_INCLUDE:-$NODE_PREFIX/include/node}
[ -f "$NODE_INC/node_api.h" ] || { say "node_api.h not found in $NODE_INC. Fix: install Node's headers (Debian's nodejs: libnode-dev) or set KILN_NODE_INCLUDE"; exit 1; }
mkdir -p build
printf '#include <stdio.h>\n#include <jpeglib.h>\nint main(void) { return LIBJPEG_TURBO_VERSION_NUMBER > 0 ? 0 : 1; }\n' > build/probe.c
"$CC" build/probe.c -o build/probe -ljpeg 2>/dev/null && ./build/probe \
  || { say "libjpeg-turbo development files not found. Fix: apt-get install libjpeg62-turbo-dev (Ubuntu: libjpeg-turbo8-dev)"; exit 1; }
# -O3 vectorises the resampler; target_clones in the source adds an AVX2 variant picked at load time.
"$CC" -O3 -fPIC -shared -Wall -Wextra -Werror -I"$NODE_INC" ./*.c -ljpeg -o build/kiln_jpeg.node.tmp
mv -f build/kiln_jpeg.node.tmp build/kiln_jpeg.node
node -e 'const m = require(process.argv[1]); if (typeof m.process !== "function") process.exit(1)' "$PWD/build/kiln_jpeg.node" \
  || { say "built build/kiln_jpeg.node but Node cannot load it"; rm -f build/kiln_jpeg.node; exit 1; }
say "built infra/imaging/native/build/kiln_jpeg.node"
