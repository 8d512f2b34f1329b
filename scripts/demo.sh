#!/usr/bin/env bash
# Set up the environment if needed, then answer the question bloodcli exists for on sample_data/pbc (about a
# minute): do hand-crafted features (glcm+shape+color), deep embeddings (the shipped MobileNetV2 weights, no
# download) or both fused classify these cells better, at what cost per image, and is the difference significant?
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=out/demo
# --no-cache: every image is computed, so the cost per image is measured on every run.
.venv/bin/bloodcli compare sample_data/pbc \
    -f glcm+shape+color mobilenetv2 glcm+shape+color+mobilenetv2 -m svm,logreg --folds 5 --repeats 2 \
    --weights sample_data/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5 \
    --no-cache --out-dir "$OUT"
echo "HTML report (scores, costs, the paired test, confusion matrices, ROC curves): $OUT/report.html"
