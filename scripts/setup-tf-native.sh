#!/usr/bin/env bash
# Native TensorFlow for training: builds tfjs-node's N-API binding (tfjs_binding.node) against the
# libtensorflow inside PyPI's TensorFlow wheel. Called by scripts/setup.sh after the npm packages;
# idempotent (a stamp keyed by this script, the variant and the Node version); never fatal: when any
# step fails it says why and exits 0, and training falls back to the wasm backend
# (infra/tfjs-backend.ts records which backend ran and why).
#
#   variant cpu (default): tensorflow-cpu wheel      -> node_modules/@tensorflow/tfjs-node
#   variant gpu (KILN_TF_VARIANT=gpu, or auto when `nvidia-smi -L` lists a GPU):
#                          tensorflow wheel (CUDA 12) -> node_modules/@tensorflow/tfjs-node-gpu,
#                          plus NVIDIA's CUDA runtime wheels (tensorflow[and-cuda]'s pins) in deps/nvidia
#   KILN_TF_VARIANT=none:  skip (wasm)
#
# Why not `npm install @tensorflow/tfjs-node` alone: its install script downloads libtensorflow 2.9
# from storage.googleapis.com, which is not reachable here; PyPI is, and its wheels carry a current
# libtensorflow with the C and eager C APIs (TF_*, TFE_*) that the binding calls.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

say() { printf '[kiln setup] %s\n' "$*" >&2; }
give_up() { say "WARNING: native TensorFlow not built: $*. Training uses the wasm backend (correct, 10-50x slower). Fix: see the lines above, or KILN_TF_VARIANT=none to skip this step."; exit 0; }

# --- pinned versions ----------------------------------------------------------------------------------
TFJS_NODE_VERSION=4.22.0
TF_VERSION=2.18.0
WHEEL_PLATFORM=manylinux_2_17_x86_64
WHEEL_PY=3.11
CPU_WHEEL=tensorflow_cpu-2.18.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
CPU_WHEEL_SHA256=089e71746960ea581dca53401f84b3b99c8537313e337a9e5dbf97036a936f7e
GPU_WHEEL=tensorflow-2.18.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl
GPU_WHEEL_SHA256=70b8dd70fa3600bfce66ab529eebb804e1f9d7c863d2f71bc8fe9fc7a1ec3976
# tensorflow 2.18.0's `and-cuda` extra, as its METADATA pins them.
CUDA_WHEELS="nvidia-cublas-cu12==12.5.3.2 nvidia-cuda-cupti-cu12==12.5.82 nvidia-cuda-nvcc-cu12==12.5.82
nvidia-cuda-nvrtc-cu12==12.5.82 nvidia-cuda-runtime-cu12==12.5.82 nvidia-cudnn-cu12==9.3.0.75
nvidia-cufft-cu12==11.2.3.61 nvidia-curand-cu12==10.3.6.82 nvidia-cusolver-cu12==11.6.3.83
nvidia-cusparse-cu12==12.5.1.3 nvidia-nccl-cu12==2.21.5 nvidia-nvjitlink-cu12==12.5.82"

# --- variant --------------------------------------------------------------------------------------------
VARIANT=${KILN_TF_VARIANT:-auto}
case "$VARIANT" in
  auto) if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then VARIANT=gpu; else VARIANT=cpu; fi ;;
  cpu|gpu) ;;
  none) exit 0 ;;
  *) give_up "KILN_TF_VARIANT=$VARIANT is not one of auto, cpu, gpu, none" ;;
esac
if [ "$(uname -s)/$(uname -m)" != "Linux/x86_64" ]; then give_up "the pinned TensorFlow wheels are for Linux x86_64 only (this is $(uname -s)/$(uname -m))"; fi
if [ "$VARIANT" = gpu ]; then
  PKG=@tensorflow/tfjs-node-gpu; WHEEL=$GPU_WHEEL; WHEEL_SHA256=$GPU_WHEEL_SHA256; WHEEL_REQ="tensorflow==$TF_VERSION"
else
  PKG=@tensorflow/tfjs-node; WHEEL=$CPU_WHEEL; WHEEL_SHA256=$CPU_WHEEL_SHA256; WHEEL_REQ="tensorflow-cpu==$TF_VERSION"
fi
PKG_DIR=$ROOT/node_modules/$PKG
BINDING=$PKG_DIR/lib/napi-v8/tfjs_binding.node
STAMP=$PKG_DIR/.kiln-stamp
HASH=$( (cat "$ROOT/scripts/setup-tf-native.sh"; echo "$VARIANT"; node --version) | sha256sum | cut -c1-16)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ] && [ -f "$BINDING" ]; then exit 0; fi

say "building native TensorFlow for training ($VARIANT: $PKG@$TFJS_NODE_VERSION against $WHEEL_REQ from PyPI; ~250 MB download for cpu, ~600 MB + CUDA wheels for gpu)"
PY=${KILN_PYTHON:-python3}
command -v "$PY" >/dev/null || give_up "python3 is not on PATH (pip downloads the TensorFlow wheel)"
T0=$(date +%s)

# 1. The npm package, without its install script (which would download libtensorflow 2.9 from Google).
#    --no-save: it stays out of package.json so installs never depend on it; it resolves to the same
#    @tensorflow/tfjs(-core) as the project, so it registers its backend into the project's engine.
if [ ! -f "$PKG_DIR/package.json" ] || [ "$(node -p "require('$PKG_DIR/package.json').version")" != "$TFJS_NODE_VERSION" ]; then
  npm install --no-save --no-audit --no-fund --ignore-scripts "$PKG@$TFJS_NODE_VERSION" >&2 \
    || give_up "npm install $PKG@$TFJS_NODE_VERSION failed"
fi

# 2. The wheel (pip's cache makes a repeat cheap), its hash checked, then the two libraries and the
#    headers unpacked into the package's deps/.
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-tf-native.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
"$PY" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
  --python-version "$WHEEL_PY" --platform "$WHEEL_PLATFORM" -d "$TMP" "$WHEEL_REQ" >&2 \
  || give_up "pip could not download $WHEEL_REQ (check access to PyPI)"
[ -f "$TMP/$WHEEL" ] || give_up "pip did not produce $WHEEL (got: $(ls "$TMP"))"
GOT=$(sha256sum "$TMP/$WHEEL" | cut -d' ' -f1)
[ "$GOT" = "$WHEEL_SHA256" ] || give_up "$WHEEL has sha256 $GOT, expected $WHEEL_SHA256"
rm -rf "$PKG_DIR/deps" "$PKG_DIR/build" "$PKG_DIR/lib/napi-v8"
mkdir -p "$PKG_DIR/deps/lib" "$PKG_DIR/deps/include"
"$PY" - "$TMP/$WHEEL" "$PKG_DIR/deps" <<'EOF' || give_up "could not unpack the wheel"
import os, shutil, sys, zipfile
wheel, deps = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        name = info.filename
        if name in ('tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2'):
            dest = os.path.join(deps, 'lib', os.path.basename(name))
        elif name.startswith('tensorflow/include/') and not name.endswith('/'):
            dest = os.path.join(deps, 'include', name[len('tensorflow/include/'):])
        else:
            continue
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with z.open(info) as src, open(dest, 'wb') as out:
            shutil.copyfileobj(src, out, 1 << 20)
EOF
rm -rf "$TMP"
ln -sf libtensorflow_cc.so.2 "$PKG_DIR/deps/lib/libtensorflow.so"
ln -sf libtensorflow_framework.so.2 "$PKG_DIR/deps/lib/libtensorflow_framework.so"

# 3. GPU only: NVIDIA's CUDA runtime wheels into deps/nvidia/<lib>/lib, where the libraries' RUNPATH
#    ($ORIGIN/../nvidia/...) finds them. Without them TensorFlow runs on the CPU.
if [ "$VARIANT" = gpu ]; then
  # shellcheck disable=SC2086
  # NVIDIA's wheels carry manylinux2014 / 2_27 tags, which --platform must name one by one.
  "$PY" -m pip install --disable-pip-version-check -q --no-deps --only-binary=:all: --python-version "$WHEEL_PY" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_28_x86_64 --target "$PKG_DIR/deps" $CUDA_WHEELS >&2 \
    || say "WARNING: could not install NVIDIA's CUDA wheels ($CUDA_WHEELS); TensorFlow will run on the CPU. Fix: check access to PyPI and rerun setup."
fi

# 4. The binding, built with this Node's own headers.
NODE_PREFIX=$(node -p 'require("path").resolve(process.execPath, "..", "..")')
GYP_ARGS=()
if [ -f "$NODE_PREFIX/include/node/node.h" ]; then GYP_ARGS+=("--nodedir=$NODE_PREFIX"); fi
NODE_GYP=${npm_config_node_gyp:-$(dirname "$(command -v npm)")/../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js}
[ -f "$NODE_GYP" ] || NODE_GYP=$(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js
[ -f "$NODE_GYP" ] || give_up "node-gyp (bundled with npm) not found; set npm_config_node_gyp to node-gyp.js"
(cd "$PKG_DIR" && node "$NODE_GYP" rebuild "${GYP_ARGS[@]}" --module_name=tfjs_binding \
  --module_path="$PKG_DIR/lib/napi-v8" --napi_build_version=8 >"$PKG_DIR/deps/build.log" 2>&1) \
  || { tail -20 "$PKG_DIR/deps/build.log" >&2; give_up "node-gyp could not build tfjs_binding.node (log: $PKG_DIR/deps/build.log)"; }

# 5. Check it: the backend registers and runs a matmul.
node --input-type=module -e "
const tf = await import('@tensorflow/tfjs');
await import('$PKG');
await tf.setBackend('tensorflow');
const v = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]])).dataSync()[0];
if (tf.getBackend() !== 'tensorflow' || v !== 11) throw new Error('backend ' + tf.getBackend() + ', 1x2 @ 2x1 = ' + v);
" >"$PKG_DIR/deps/check.log" 2>&1 || { tail -5 "$PKG_DIR/deps/check.log" >&2; give_up "the built binding did not run a matmul"; }
printf '{"package":"%s","version":"%s","variant":"%s","wheel":"%s","wheelSha256":"%s"}\n' \
  "$PKG" "$TFJS_NODE_VERSION" "$VARIANT" "$WHEEL" "$WHEEL_SHA256" > "$PKG_DIR/kiln-native.json"
echo "$HASH" > "$STAMP"
say "native TensorFlow ready ($PKG, libtensorflow from $WHEEL_REQ, $(( $(date +%s) - T0 )) s)"
