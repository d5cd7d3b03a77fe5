#!/usr/bin/env bash
# The Table 2 ablation on the generated demo dataset: 4 variants x 3 seeds, summarised as
# mean ± std in outputs/demo_ablation/summary.md (finished runs are reused; 12 demo runs of a few minutes each).
# Extra options go to main.py, e.g. --device cpu (not --seed/--output_path/--variant,
# which scripts/seeds.py sets).
set -e
cd "$(dirname "$0")/.."
python scripts/seeds.py --variants basnet baseline base_bg supp_only --seeds 0 1 2 --name demo_ablation -- --dataset synthetic "$@"
