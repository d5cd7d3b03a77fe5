#!/usr/bin/env bash
# Table 1, BaS-Net (I3D); also the 'BaS-Net' row of the Table 2 ablation.
# THUMOS14 with two-stream I3D features at dataset/THUMOS14 and the paper's recipe
# (T = 750, batch 16, Adam 1e-4, 1500 steps). Paper: average mAP 27.9 (0.1:0.9), mAP@0.5 27.0.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset thumos14 --variant basnet --output_path outputs/thumos14_i3d "$@"
