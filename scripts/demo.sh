#!/usr/bin/env bash
# Demo on the generated THUMOS14 look-alike (synthetic.py; generated into dataset/SYNTHETIC
# on first use): a few minutes on two CPU cores, no download.
# Extra options go to main.py (paths relative to the repository root), e.g.
# --data_path DIR --device cpu --seed 0 --output_path DIR.
set -e
cd "$(dirname "$0")/.."
python main.py --dataset synthetic --variant basnet --output_path outputs/demo "$@"
