"""Compare two feature sets in the release layout: per video and stream, the lengths, the
best temporal offset, the cosine similarity and the norm ratio of the aligned vectors, and
the likely cause of a systematic difference (feature_check.py has the definitions).

    python scripts/compare_features.py dataset/THUMOS14_WTALC dataset/MINE [--max_lag 4] \\
        [--json report.json] [--model_file outputs/RUN/last.pt]

A and B are dataset folders holding features/<subset>/{rgb,flow}/<video>.npy: one
converted from a public set (scripts/convert_features.py) and one extracted here
(extract_features.py), or two extraction settings. Videos are matched by id. lag is in
vectors, positive when B lags A. --model_file also evaluates that checkpoint on the test
split of each set (the mAP of `python test.py --model_file CKPT --data_path A`, and B) and
prints the two side by side. Bad input: one line `error: ...`, exit status 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dataset import DataError  # noqa: E402
from feature_check import compare_sets, format_map_table, format_report  # noqa: E402
from utils import check_folder_option, run_entry_point, save_json  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("set_a", metavar="A", help="dataset folder of the reference features (e.g. a converted public set)")
    p.add_argument("set_b", metavar="B", help="dataset folder of the features to check")
    p.add_argument("--max_lag", type=int, default=4, help="largest temporal offset tried, in vectors")
    p.add_argument("--worst", type=int, default=5, help="how many of the least similar videos to list")
    p.add_argument("--json", metavar="OUT", help="also write the per-video numbers and the summary to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--model_file", metavar="CKPT",
                   help="evaluate this checkpoint on the test split of both sets, as test.py does")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="device of --model_file's pass")
    return p


def evaluate_on_sets(model_file, state, roots, device):
    """test.py's scored pass of one checkpoint (read: `state`) over the test split of each dataset folder."""
    from detector import inference_config
    from test import score_split
    from utils import pick_device
    out = []
    for root in roots:
        cfg = inference_config(state, {"model_file": model_file, "data_path": root, "device": device,
                                       "no_progress": True})
        results, _ = score_split(state, cfg, pick_device(cfg.device))
        if "mAP" not in results:
            raise DataError(f"{root}: subset {cfg.test_subset!r} has no temporal annotation, so no mAP to compare")
        out.append(results)
    return out


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.max_lag < 0 or args.worst < 0:
        raise DataError(f"--max_lag and --worst must be >= 0, got {args.max_lag} and {args.worst}")
    if args.json:
        check_folder_option(os.path.dirname(os.path.abspath(args.json)), "--json's folder")
        if os.path.exists(args.json) and not args.overwrite:
            raise DataError(f"--json {args.json} exists; choose another file or pass --overwrite")
    state = None
    if args.model_file:
        from checkpoint import read_checkpoint
        state = read_checkpoint(args.model_file)        # a bad checkpoint is named before the comparison
    report = compare_sets(args.set_a, args.set_b, args.max_lag, args.worst)
    print(format_report(report))
    if args.model_file:
        results = evaluate_on_sets(args.model_file, state, (args.set_a, args.set_b), args.device)
        print(f"\n{args.model_file} on the test split of A and of B: detection mAP (%)")
        print(format_map_table(*results))
        report["summary"]["mAP"] = {"tiou": results[0]["tiou"], "a": results[0]["mAP"], "b": results[1]["mAP"],
                                    "average_a": results[0]["average_mAP"], "average_b": results[1]["average_mAP"]}
    if args.json:
        save_json(args.json, report)
        print(f"wrote {args.json}")
    return report


if __name__ == "__main__":
    run_entry_point(main, sys.argv[1:])
