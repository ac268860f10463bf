#!/bin/bash
# Copy this working tree (without node_modules, virtualenvs, dist, kiln-data, .git) to DEST, link
# node_modules and .venv back, and build there, so a long `node dist/chaos/run.js` is not broken by
# other sessions rebuilding dist/. Usage: chaos/copy-tree.sh DEST   (then: cd DEST && node dist/chaos/run.js ...)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:?usage: chaos/copy-tree.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
if [ "$dest" = "$src" ] || [ -e "$dest/.git" ]; then echo "copy-tree: $dest is a checkout; refusing to clear it" >&2; exit 2; fi
find "$dest" -mindepth 1 -maxdepth 1 ! -name dist ! -name node_modules ! -name .venv -exec rm -rf {} +
tar -C "$src" -cf - --exclude=./node_modules --exclude=./.venv --exclude=./.venv-bench --exclude=./.venv-models \
  --exclude=./dist --exclude=./kiln-data --exclude=./.git . | tar -xf - -C "$dest"
ln -sfn "$src/node_modules" "$dest/node_modules"
ln -sfn "$src/.venv" "$dest/.venv"
cd "$dest" && npx tsc -p tsconfig.json
