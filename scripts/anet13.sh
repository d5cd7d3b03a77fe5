#!/usr/bin/env bash
# Paper, ActivityNet 1.3 (train on 'training', test on 'validation', tIoU 0.5:0.05:0.95),
# features at dataset/ActivityNet1.3. Paper: mAP@0.5 34.5, @0.75 22.5, @0.95 4.9, average 22.2.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset anet13 --variant basnet --output_path outputs/anet13 "$@"
