#!/usr/bin/env bash
# The models venv (.venv-models) for `kiln models import` and the model/fixture scripts: the pinned
# exporters of requirements-models.txt (torch CPU, transformers, optimum, diffusers, pytorch-fid,
# onnx, onnxruntime). Idempotent: reinstalls only when requirements-models.txt changed.
# KILN_SKIP_MODELS_VENV=1 skips it (then `kiln models import` says how to get it).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '[kiln setup] %s\n' "$*" >&2; }
die() { printf '[kiln setup] ERROR: %s\n' "$*" >&2; exit 1; }
[ "${KILN_SKIP_MODELS_VENV:-0}" = 1 ] && { say "skipping .venv-models (KILN_SKIP_MODELS_VENV=1)"; exit 0; }
PY=${KILN_PYTHON:-python3}
STAMP=.venv-models/.kiln-stamp
HASH=$(sha256sum requirements-models.txt | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$HASH" ]; then
  say "creating .venv-models (model exporters: $(tr '\n' ' ' < requirements-models.txt))"
  "$PY" -m venv .venv-models || die "python3 -m venv failed. Fix: install the venv module (Debian: apt-get install python3-venv)."
  # torch: the CPU build (a local wheel where the machine has one, else PyPI's).
  .venv-models/bin/pip install --disable-pip-version-check -q -r requirements-models.txt \
    || die "pip could not install requirements-models.txt. Fix: check access to PyPI, or set KILN_SKIP_MODELS_VENV=1 to set up without \`kiln models import\`."
  echo "$HASH" > "$STAMP"
fi
