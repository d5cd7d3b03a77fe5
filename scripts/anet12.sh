#!/usr/bin/env bash
# Paper, ActivityNet 1.2 (train on 'training', test on 'validation', tIoU 0.5:0.05:0.95),
# features at dataset/ActivityNet1.2. Paper: mAP@0.5 38.5, @0.75 24.2, @0.95 5.6, average 24.3.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset anet12 --variant basnet --output_path outputs/anet12 "$@"
