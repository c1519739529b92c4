#!/usr/bin/env bash
# One short GPU check (run on a lent CUDA machine, from the repository root, without installing the package):
# SRDC trains on CUDA (fp32 and bf16), then the epoch breakdown on ImageNet-sized synthetic images with
# ResNet-50 in fp32 vs bf16 + channels_last, and K-means' peak GPU memory for N=50,000, d=2048, K=31.
set -euo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
for bf16 in false true; do
  python3 -m srdc.cli --device cuda --epochs 3 --bf16 "$bf16" --quiet --out "${OUT:-/tmp}/embedded_bf16_$bf16"
done
python3 benchmarks/epoch_breakdown.py --dataset synthetic --backbone resnet50 --device cuda --epochs 2
python3 benchmarks/epoch_breakdown.py --dataset synthetic --backbone resnet50 --device cuda --epochs 2 \
  --bf16 true --channels_last true --kmeans_n 1000
