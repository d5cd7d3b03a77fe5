"""Convert a public WTAL feature set into the layout main.py reads (see feature_sets.py).

    python scripts/convert_features.py wtalc --features Thumos14reduced-I3D-JOINTFeatures.npy \\
        --annotations Thumos14reduced-Annotations --out dataset/THUMOS14_WTALC
    python scripts/convert_features.py wtalc --features ActivityNet1.2-I3D-JOINTFeatures.npy \\
        --annotations ActivityNet1.2-Annotations --out dataset/ActivityNet1.2
    python scripts/convert_features.py actionformer --features data/thumos/i3d_features \\
        --annotations data/thumos/annotations/thumos14.json --out dataset/THUMOS14_AF
    python scripts/convert_features.py actionformer --features data/anet_1.3/i3d_features \\
        --annotations data/anet_1.3/annotations/anet1.3_i3d_filtered.json --out dataset/ActivityNet1.3
    python scripts/convert_features.py acmnet --root data/ActivityNet13 --out dataset/ActivityNet1.3
    python scripts/convert_features.py a2clpt --features feature_train.npy feature_val.npy \\
        --annotations dataset/THUMOS14/annotation.json --out dataset/THUMOS14_A2CLPT

--dataset thumos14|anet12|anet13 says which benchmark the set holds (needed where the
source's own file names do not say it): it decides the subsets trained on and evaluated and
the printed main.py command (that preset, its tIoU thresholds). The evaluated ground truth
is the source's as given; evaluated videos without usable features stay in it as misses
unless --drop_missing. A run can be interrupted and started again with the same command:
finished videos are skipped. Problems with the source files end in one line `error: ...`
and exit status 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import feature_sets as fs  # noqa: E402
from dataset import DataError, read_split  # noqa: E402
from utils import check_folder_option  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="source", required=True)

    def common(q):
        q.add_argument("--out", required=True, help="output folder (the --data_path of main.py)")
        q.add_argument("--dataset", choices=fs.BENCHMARKS, default=None,
                       help="the benchmark the set holds (default: read from the source's file names, "
                            "e.g. Thumos14reduced-..., ActivityNet1.2-...; an error where they do not say it)")
        q.add_argument("--drop_missing", action="store_true",
                       help="leave evaluated videos without usable features out of the ground truth "
                            "(default: kept, their instances count as misses, as in the sources' evaluators)")
        q.add_argument("--exclude", nargs="*", default=list(fs.RELEASE_LEFT_OUT), metavar="VIDEO",
                       help="videos left out (default: the three THUMOS14 test videos the authors' release "
                            "leaves out; give --exclude with no video to keep all)")
        q.add_argument("--min_rows", type=int, default=fs.MIN_ROWS,
                       help="features with fewer non-zero rows are not usable: such training videos are "
                            "skipped, evaluated ones count as misses (3C-Net's ActivityNet filter: 6)")
        q.add_argument("--subsets", nargs=2, metavar=("TRAIN", "TEST"), default=None,
                       help="subset names written to gt.json (default: those of the --dataset preset, "
                            "train/test for THUMOS14, training/validation for ActivityNet)")
        q.add_argument("--overwrite", action="store_true",
                       help="replace files in --out that this conversion would not write as they are")
        q.add_argument("--no_progress", action="store_true", help="no progress bar")
        return q

    q = common(sub.add_parser("wtalc", help="W-TALC files (THUMOS14 reduced, ActivityNet 1.2)"))
    q.add_argument("--features", required=True, help="<Set>-I3D-JOINTFeatures.npy")
    q.add_argument("--annotations", required=True, help="<Set>-Annotations folder")
    q.add_argument("--names", choices=["youtube", "source"], default="youtube",
                   help="ActivityNet: name videos v_<YouTube id> (from url.npy) or keep video_<n>")
    q = common(sub.add_parser("actionformer", help="ActionFormer I3D features (THUMOS14, ActivityNet 1.3)"))
    q.add_argument("--features", required=True, help="folder of <video>.npy (L, 2048)")
    q.add_argument("--annotations", required=True, help="thumos14.json or the ActivityNet 1.3 json")
    q.add_argument("--file_prefix", default=None,
                   help="feature file name prefix (default: none, else v_ as in its ActivityNet config)")
    q = common(sub.add_parser("acmnet", help="ACM-Net's data/ActivityNet13 (or data/THUMOS14) folder"))
    q.add_argument("--root", required=True, help="folder with gt.json, split_*.txt, train/, test/")
    q.add_argument("--classes", default=None, help="class list file, one per line (default: sorted labels)")
    q = common(sub.add_parser("a2clpt", help="A2CL-PT feature_train.npy / feature_val.npy + annotation.json"))
    q.add_argument("--features", required=True, nargs="+", help="feature_train.npy feature_val.npy")
    q.add_argument("--annotations", required=True, help="annotation.json")
    q.add_argument("--protocol", choices=fs.A2CLPT_PROTOCOLS, default="paper",
                   help="paper: the classes and training videos with temporal annotations (THUMOS14: 20 "
                        "classes, 200 videos, the paper's Table 1); a2clpt: A2CL-PT's own training, every "
                        "class of list_classes and every training video (label-only annotations as "
                        "video-level labels)")
    return p


def make_reader(args):
    if args.source == "wtalc":
        return fs.WTALCReader(args.features, args.annotations, names=args.names, benchmark=args.dataset)
    if args.source == "actionformer":
        return fs.ActionFormerReader(args.features, args.annotations, file_prefix=args.file_prefix,
                                     benchmark=args.dataset)
    if args.source == "acmnet":
        classes = read_split(args.classes, "class list") if args.classes else None
        return fs.ACMNetReader(args.root, classes=classes, benchmark=args.dataset)
    if len(args.features) > 2:
        raise DataError("a2clpt: give at most two feature files (feature_train.npy feature_val.npy)")
    return fs.A2CLPTReader(args.features, args.annotations, protocol=args.protocol, benchmark=args.dataset)


def listing(videos, n=10):
    return ", ".join(videos[:n]) + (f", ... ({len(videos) - n} more)" if len(videos) > n else "")


def summary(report):
    lines = [f"converted {report.converted['train']} training and {report.converted['test']} evaluated "
             f"videos into {report.out} ({report.benchmark}: subsets {report.subsets['train']} / "
             f"{report.subsets['test']}, {len(report.classes)} classes)"]
    if report.resumed:
        lines.append(f"  {report.resumed} of them were already converted (resumed)")
    if report.excluded:
        lines.append(f"  left out (--exclude): {listing(report.excluded)}")
    for reason, videos in report.skipped.items():
        lines.append(f"  skipped {len(videos)} ({reason}): {listing(videos)}")
    missing = report.missing_features
    if missing:
        n = sum(m["instances"] for m in missing.values())
        lines.append(f"  {len(missing)} evaluated video(s) without usable features, {n} instance(s): "
                     + ("left out of the ground truth (--drop_missing)" if report.drop_missing
                        else "kept in the ground truth, their instances count as misses (--drop_missing leaves "
                             "them out)")
                     + f": {listing(sorted(missing))}")
    if report.durations:
        examples = [f"{v} {d['source']:g} s -> {d['written']:g} s ({d['why']})"
                    for v, d in sorted(report.durations.items())]
        lines.append(f"  the source's duration contradicts the annotations or the features of {len(examples)} "
                     f"video(s) (a source inconsistency; annotations kept, the covering duration written): "
                     f"{listing(examples, 3)}")
    if report.duplicates:
        lines.append(f"  removed {sum(report.duplicates.values())} duplicate annotation(s), as the source's "
                     f"evaluator does: {listing(sorted(report.duplicates))}")
    if report.dropped_labels:
        lines.append(f"  video-level labels outside the {len(report.classes)} classes ignored in "
                     f"{len(report.dropped_labels)} video(s): {listing(sorted(report.dropped_labels))}")
    if report.label_mismatch:
        lines.append(f"  {len(report.label_mismatch)} video(s) with video-level labels other than their "
                     f"segment labels: {listing(report.label_mismatch)}")
    lines.append(f"  full lists: {os.path.join(report.out, 'conversion.json')}")
    lines.append(f"train and test: {fs.train_command(report)}")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        check_folder_option(args.out, "--out", DataError)     # before a source is read (W-TALC's: a whole file)
        reader = make_reader(args)
        report = fs.convert(reader, args.out, exclude=args.exclude, min_rows=args.min_rows,
                            subsets=dict(zip(("train", "test"), args.subsets)) if args.subsets else None,
                            overwrite=args.overwrite, progress=not args.no_progress,
                            log=lambda line: print(line, file=sys.stderr), drop_missing=args.drop_missing)
    except DataError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
