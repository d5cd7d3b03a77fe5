#!/usr/bin/env bash
# Table 2, plain MIL baseline: base branch only, no background class (THUMOS14, I3D).
# Paper: average mAP 13.4 (0.1:0.9), mAP@0.5 12.0.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset thumos14 --variant baseline --output_path outputs/ablation_baseline "$@"
