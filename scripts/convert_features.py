"""Convert a public WTAL feature set into the layout main.py reads (public_sets/; docs/feature_sets.md).

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
finished videos are skipped. An --out holding a conversion of other source files or with
other options is refused (--overwrite removes that conversion's files, only those, first).
Problems with the source files or the options, an unwritable --out, and a conversion that
would leave the training or the evaluated split empty end in one line `error: ...` and exit
status 2 before anything is written.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from options import convert_parser  # noqa: E402
from public_sets import SOURCES, convert  # noqa: E402
from utils import check_folder_option, run_entry_point  # noqa: E402
from dataset import DataError  # noqa: E402


def listing(videos, n=10):
    return ", ".join(videos[:n]) + (f", ... ({len(videos) - n} more)" if len(videos) > n else "")


def summary(report):
    """What the conversion did, for stdout; what the conversion warned about on stderr (videos
    skipped, video-level labels other than the segment labels) is not said again."""
    lines = [f"converted {report.converted['train']} training and {report.converted['test']} evaluated "
             f"videos into {report.out} ({report.benchmark}: subsets {report.subsets['train']} / "
             f"{report.subsets['test']}, {len(report.classes)} classes)"]
    if report.resumed:
        lines.append(f"  {report.resumed} of them were already converted (resumed)")
    if report.excluded:
        lines.append(f"  left out (--exclude): {listing(report.excluded)}")
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
    lines.append(f"  full lists: {os.path.join(report.out, 'conversion.json')}")
    lines.append(f"train and test: {convert.train_command(report)}")
    return "\n".join(lines)


def main(argv=None):
    args = convert_parser(__doc__.split("\n\n")[0], SOURCES, convert.add_arguments).parse_args(argv)
    check_folder_option(args.out, "--out", DataError)     # before a source is read (W-TALC's: a whole file)
    reader = SOURCES[args.source].read(args)
    report = convert.convert(reader, args.out, exclude=args.exclude, min_rows=args.min_rows,
                             subsets=dict(zip(("train", "test"), args.subsets)) if args.subsets else None,
                             overwrite=args.overwrite, progress=not args.no_progress,
                             log=lambda line: print(line, file=sys.stderr), drop_missing=args.drop_missing)
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, sys.argv[1:]))
