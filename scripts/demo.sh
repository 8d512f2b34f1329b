#!/usr/bin/env bash
# Set up the environment if needed, then train and evaluate on sample_data/ (about a minute).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
.venv/bin/bloodcli info sample_data/pbc
.venv/bin/bloodcli train sample_data/pbc --features glcm,shape,color --model svm --folds 5 -o out/model.bcm
