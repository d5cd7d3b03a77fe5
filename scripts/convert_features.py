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
        --annotations annotation.json --out dataset/ActivityNet1.3

A run can be interrupted and started again with the same command: finished videos are
skipped. Problems with the source files end in one line `error: ...` and exit status 2.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import feature_sets as fs  # noqa: E402
from dataset import DataError, read_split  # noqa: E402


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sub = p.add_subparsers(dest="source", required=True)

    def common(q):
        q.add_argument("--out", required=True, help="output folder (the --data_path of main.py)")
        q.add_argument("--exclude", nargs="*", default=list(fs.RELEASE_LEFT_OUT), metavar="VIDEO",
                       help="videos left out (default: the three THUMOS14 test videos the authors' release "
                            "leaves out; give --exclude with no video to keep all)")
        q.add_argument("--min_rows", type=int, default=fs.MIN_ROWS,
                       help="skip videos with fewer non-zero feature rows (3C-Net's ActivityNet filter: 6)")
        q.add_argument("--subsets", nargs=2, metavar=("TRAIN", "TEST"), default=None,
                       help="subset names written to gt.json (default: train/test for THUMOS14, "
                            "training/validation for ActivityNet)")
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
    return p


def make_reader(args):
    if args.source == "wtalc":
        return fs.WTALCReader(args.features, args.annotations, names=args.names)
    if args.source == "actionformer":
        return fs.ActionFormerReader(args.features, args.annotations, file_prefix=args.file_prefix)
    if args.source == "acmnet":
        classes = read_split(args.classes, "class list") if args.classes else None
        return fs.ACMNetReader(args.root, classes=classes)
    if len(args.features) > 2:
        raise DataError("a2clpt: give at most two feature files (feature_train.npy feature_val.npy)")
    return fs.A2CLPTReader(args.features, args.annotations)


def listing(videos, n=10):
    return ", ".join(videos[:n]) + (f", ... ({len(videos) - n} more)" if len(videos) > n else "")


def summary(report):
    lines = [f"converted {report.converted['train']} training and {report.converted['test']} evaluated "
             f"videos into {report.out} (subsets {report.subsets['train']} / {report.subsets['test']}, "
             f"{len(report.classes)} classes)"]
    if report.resumed:
        lines.append(f"  {report.resumed} of them were already converted (resumed)")
    if report.excluded:
        lines.append(f"  left out (--exclude): {listing(report.excluded)}")
    for reason, videos in report.skipped.items():
        lines.append(f"  skipped {len(videos)} ({reason}): {listing(videos)}")
    if report.clipped:
        lines.append(f"  clipped {sum(report.clipped.values())} segment(s) past the video's duration in "
                     f"{len(report.clipped)} video(s): {listing(sorted(report.clipped))}")
    if report.dropped_segments:
        lines.append(f"  dropped {sum(report.dropped_segments.values())} segment(s) starting after the video's "
                     f"end: {listing(sorted(report.dropped_segments))}")
    if report.label_mismatch:
        lines.append(f"  {len(report.label_mismatch)} video(s) with video-level labels other than their "
                     f"segment labels: {listing(report.label_mismatch)}")
    lines.append(f"  full lists: {os.path.join(report.out, 'conversion.json')}")
    lines.append(f"train and test: {fs.train_command(report)}")
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        reader = make_reader(args)
        report = fs.convert(reader, args.out, exclude=args.exclude, min_rows=args.min_rows,
                            subsets=dict(zip(("train", "test"), args.subsets)) if args.subsets else None,
                            overwrite=args.overwrite, progress=not args.no_progress,
                            log=lambda line: print(line, file=sys.stderr))
    except DataError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
