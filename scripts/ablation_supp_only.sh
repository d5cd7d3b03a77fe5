#!/usr/bin/env bash
# Table 2, suppression branch only (filter module + background class; THUMOS14, I3D).
# Paper: average mAP 21.2 (0.1:0.9), mAP@0.5 18.6.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset thumos14 --variant supp_only --output_path outputs/ablation_supp_only "$@"
