"""Command line: detection mAP of a results file.

python -m eval GT.json PRED.json [--subset test] [--tiou 0.1 ... 0.9] [--json OUT.json]
                                 [--per-class] [--ambiguous Ambiguous_test.txt]

Scores test.py's predictions as they are: detections of a class without ground truth in
the subset are not scored (and counted). Warns when most videos of the subset have no
prediction (a predictions file of another subset, or a truncated one). Bad input prints
`error: ...` and exits with status 2.
"""
import argparse
import os
import sys
import warnings

from utils import check_folder_option, run_entry_point, save_json

from . import (DEFAULT_TIOUS, EvalError, drop_unscored, evaluate_detection, format_table, load_ground_truth,
               load_predictions, videos_without_predictions)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m eval", description="ActivityNet-style detection mAP of a results file.")
    parser.add_argument("ground_truth", help="gt.json (release form) or ActivityNet json")
    parser.add_argument("predictions", help="results json: {'results': {video: [...]}}")
    parser.add_argument("--subset", default="test", help="ground-truth subset (default: test)")
    parser.add_argument("--tiou", type=float, nargs="+", default=list(DEFAULT_TIOUS),
                        metavar="T", help="tIoU thresholds, used exactly (default: 0.1 ... 0.9)")
    parser.add_argument("--json", metavar="OUT", help="write the result dict to this file")
    parser.add_argument("--per-class", action="store_true", help="also print AP per class")
    parser.add_argument("--ambiguous", metavar="FILE",
                        help="W-TALC style ambiguous segments ('video start end' per line, e.g. the "
                             "Ambiguous_test.txt a converted set holds): predictions overlapping one are "
                             "removed before scoring, as W-TALC's evaluator does (default: none removed, "
                             "as for BaS-Net's published numbers)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.json:
        check_folder_option(os.path.dirname(os.path.abspath(args.json)), "--json", EvalError)
    gt = load_ground_truth(args.ground_truth, args.subset)
    preds = load_predictions(args.predictions)
    missing = videos_without_predictions(preds, gt)
    scored, unscored = drop_unscored(preds, gt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate_detection(gt, scored, tiou_thresholds=args.tiou, ambiguous=args.ambiguous)
    result["num_predictions_unscored"] = sum(unscored.values())
    if missing > len(gt.videos) / 2:
        print(f"warning: {missing} of {len(gt.videos)} ground-truth videos of subset {gt.subset!r} have no "
              f"prediction in {preds.source} (predictions of another subset, or a truncated file?)", file=sys.stderr)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    if args.json:
        try:
            save_json(args.json, result, indent=1)
        except OSError as exc:
            raise EvalError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    print(format_table(result, per_class=args.per_class))
    if unscored:
        names = sorted(unscored)
        print(f"{sum(unscored.values())} prediction(s) of {len(names)} class(es) without ground truth in subset "
              f"{gt.subset!r} not scored: {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}")
    if args.ambiguous:
        print(f"{result['num_predictions_ambiguous']} prediction(s) inside ambiguous segments of "
              f"{args.ambiguous} removed before scoring")
    return result


if __name__ == "__main__":
    run_entry_point(main, sys.argv[1:])
