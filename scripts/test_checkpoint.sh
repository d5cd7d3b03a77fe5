#!/usr/bin/env bash
# Evaluate a checkpoint on the test split: test.py writes predictions.json and results.json
# into <checkpoint folder>/test and prints the mAP table.
#   scripts/test_checkpoint.sh outputs/thumos14_i3d/last.pt [--dataset ... --data_path ...]
# Further options go to test.py (the data options must match the checkpoint's dataset).
set -e
cd "$(dirname "$0")/.."
if [ -z "$1" ]; then echo "usage: $0 CHECKPOINT [test.py options]" >&2; exit 2; fi
python test.py --model_file "$1" "${@:2}"
