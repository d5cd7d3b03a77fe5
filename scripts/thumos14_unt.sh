#!/usr/bin/env bash
# Table 1, BaS-Net (UNT): UntrimmedNet features at dataset/THUMOS14_UNT, same recipe.
# Paper: mAP@0.5 25.1.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset thumos14_unt --variant basnet --output_path outputs/thumos14_unt "$@"
