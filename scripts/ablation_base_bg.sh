#!/usr/bin/env bash
# Table 2, base branch + background class, no suppression branch (THUMOS14, I3D).
# Paper: average mAP 11.3 (0.1:0.9), mAP@0.5 9.2.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset thumos14 --variant base_bg --output_path outputs/ablation_base_bg "$@"
