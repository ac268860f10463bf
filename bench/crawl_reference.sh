#!/usr/bin/env bash
# Reference crawler for `npm run bench:crawl`: img2dataset (pip) in its own venv (.venv-bench),
# run on the same URL list with the same output settings as Kiln's side.
# Usage: bench/crawl_reference.sh <urls.csv> <outDir> <processes> <threads> <imageSize> <resizeMode> <quality> <rowsPerShard>
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bench
IMG2DATASET_VERSION=1.47.0
if [ ! -x "$VENV/bin/img2dataset" ]; then
  echo "[bench] creating $VENV with img2dataset==$IMG2DATASET_VERSION (one-time, needs PyPI)" >&2
  "${KILN_PYTHON:-python3}" -m venv "$VENV"
  echo '*' > "$VENV/.gitignore"
  "$VENV/bin/pip" install --disable-pip-version-check -q "img2dataset==$IMG2DATASET_VERSION" >&2
fi
[ "${1:-}" = "--install-only" ] && exit 0
URLS=$1 OUT=$2 PROCS=$3 THREADS=$4 SIZE=$5 MODE=$6 QUALITY=$7 PER_SHARD=$8
rm -rf "$OUT"
exec "$VENV/bin/img2dataset" --url_list "$URLS" --input_format csv --url_col url --caption_col caption \
  --output_format parquet --output_folder "$OUT" --processes_count "$PROCS" --thread_count "$THREADS" \
  --image_size "$SIZE" --resize_mode "$MODE" --encode_format jpg --encode_quality "$QUALITY" \
  --number_sample_per_shard "$PER_SHARD" --timeout 10 --retries 0 --distributor multiprocessing \
  --enable_wandb False --compute_hash sha256
