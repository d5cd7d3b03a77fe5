"""Command line: detection mAP of a results file.

python -m eval GT.json PRED.json [--subset test] [--tiou 0.1 ... 0.9] [--json OUT.json]
                                 [--per-class] [--ambiguous Ambiguous_test.txt]
Bad input prints `error: ...` and exits with status 2.
"""
import argparse
import json
import sys
import warnings

from . import DEFAULT_TIOUS, EvalError, evaluate_detection, format_table


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
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate_detection(args.ground_truth, args.predictions,
                                        subset=args.subset, tiou_thresholds=args.tiou, ambiguous=args.ambiguous)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        if args.json:
            try:
                with open(args.json, "w", encoding="utf-8") as f:
                    json.dump(result, f, indent=1)
            except OSError as exc:
                raise EvalError(f"cannot write {args.json}: {exc.strerror or exc}") from None
    except EvalError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result, per_class=args.per_class))
    if args.ambiguous:
        print(f"{result['num_predictions_ambiguous']} prediction(s) inside ambiguous segments of "
              f"{args.ambiguous} removed before scoring")
    return 0


if __name__ == "__main__":
    sys.exit(main())
