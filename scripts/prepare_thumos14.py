"""Convert the official THUMOS14 temporal annotations into the release's gt.json and splits.

The official annotations come as one text file per class and subset,
`<Class>_val.txt` (validation videos) and `<Class>_test.txt` (test videos), one
instance per line: `video start end`, times in seconds. WTAL papers train on the
validation videos and test on the test videos, so this writes

    OUT/gt.json          {"database": {video: {"subset": "train"|"test",
                                               "annotations": [{"segment": ["18.6", "24.8"],
                                                                "label": "HighJump"}, ...]}}}
    OUT/split_train.txt  the validation videos, sorted, one per line
    OUT/split_test.txt   the test videos, sorted, one per line

Times are kept exactly as written in the files (strings, as in the release's gt.json).
`Ambiguous_val.txt` / `Ambiguous_test.txt` mark stretches that are neither action nor
background; they are not a class and are skipped. The three annotated test videos that
WTAL papers leave out (video_test_0000270, video_test_0001292, video_test_0001496; 213 - 3
= 210 test videos remain) are dropped, with a note, unless --exclude says otherwise.
Exact duplicate lines (same video, start and end in one class file) are kept once.

    python scripts/prepare_thumos14.py \\
        --val_dir TH14_Temporal_annotations_validation/annotation \\
        --test_dir TH14_Temporal_Annotations_Test/annotations/annotation \\
        --out dataset/THUMOS14

or, with both folders somewhere below one folder (searched recursively):

    python scripts/prepare_thumos14.py --annotations TH14_annotations --out dataset/THUMOS14

Then put the features at OUT/features/{train,test}/{rgb,flow}/<video>.npy.
"""
import argparse
import json
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from utils import UserError, check_folder_option, run_entry_point, save_text  # noqa: E402

SUBSETS = {"val": "train", "test": "test"}          # file suffix -> gt.json subset
SPLIT_FILES = {"train": "split_train.txt", "test": "split_test.txt"}
NOT_CLASSES = {"Ambiguous"}
# Test videos that every WTAL paper leaves out of THUMOS14's 213 annotated test videos.
FIELD_EXCLUDED = ("video_test_0000270", "video_test_0001292", "video_test_0001496")


class AnnotationError(UserError):
    """A problem with the input files; the message names the file (and line)."""


# ----------------------------------------------------------------------------- reading
def find_class_files(folders, suffix):
    """{class: path} of every `<Class>_<suffix>.txt` below the folders (recursive),
    without the non-class files (Ambiguous)."""
    found, skipped = {}, []
    ending = f"_{suffix}.txt"
    for folder in folders:
        if not os.path.isdir(folder):
            raise AnnotationError(f"annotation folder not found: {folder}")
        for parent, dirs, files in os.walk(folder):
            dirs.sort()
            for name in sorted(files):
                if not name.endswith(ending) or name.startswith("."):
                    continue
                label = name[: -len(ending)]
                path = os.path.join(parent, name)
                if label in NOT_CLASSES:
                    skipped.append(path)
                    continue
                if not label:
                    raise AnnotationError(f"{path}: no class name before '{ending}'")
                if label in found:
                    raise AnnotationError(f"class {label} has two {suffix} files: {found[label]} and {path}")
                found[label] = path
    return found, skipped


def parse_time(token, path, lineno, what):
    try:
        value = float(token)
    except ValueError:
        raise AnnotationError(f"{path}, line {lineno}: {what} time {token!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise AnnotationError(f"{path}, line {lineno}: {what} time {token!r} must be a finite number >= 0")
    return value


def read_class_file(path):
    """[(video, start_text, end_text, line number)] of one class file. Blank lines are
    ignored; anything else that is not `video start end` with 0 <= start <= end is an
    error naming the file and line."""
    instances = []
    try:
        with open(path, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as e:
        raise AnnotationError(f"{path} is not a text file ({e})") from None
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3:
            raise AnnotationError(f"{path}, line {lineno}: expected 'video start end', got {line.strip()!r}")
        video, start, end = fields
        s = parse_time(start, path, lineno, "start")
        e = parse_time(end, path, lineno, "end")
        if e < s:
            raise AnnotationError(f"{path}, line {lineno}: instance ends ({end}) before it starts ({start})")
        instances.append((video, start, end, lineno))
    return instances


# ----------------------------------------------------------------------------- converting
def convert(val_files, test_files, exclude=FIELD_EXCLUDED, log=print):
    """gt.json's dict and the sorted video lists {subset: [videos]} from the class files
    ({class: path} per subset). Annotations of a video are ordered by class name, then
    by line order within the class file."""
    database, counts = {}, {}
    duplicates = 0
    excluded = set(exclude)
    dropped = {}
    for suffix, files in (("val", val_files), ("test", test_files)):
        subset = SUBSETS[suffix]
        counts[subset] = 0
        for label in sorted(files):
            seen = set()
            for video, start, end, lineno in read_class_file(files[label]):
                if video in excluded:
                    dropped[video] = dropped.get(video, 0) + 1
                    continue
                entry = database.setdefault(video, {"subset": subset, "annotations": []})
                if entry["subset"] != subset:
                    raise AnnotationError(f"{files[label]}, line {lineno}: video {video} is also in the "
                                          f"{'test' if subset == 'train' else 'validation'} files")
                key = (video, float(start), float(end))
                if key in seen:
                    duplicates += 1
                    continue
                seen.add(key)
                entry["annotations"].append({"segment": [start, end], "label": label})
                counts[subset] += 1
    for video in sorted(excluded):
        if video in dropped:
            log(f"note: left out {video} ({dropped[video]} instance(s)), as WTAL papers do")
    if duplicates:
        log(f"note: {duplicates} duplicate line(s) kept once")
    # train videos first, each subset sorted by name
    order = sorted(database, key=lambda v: (database[v]["subset"] != "train", v))
    database = {v: database[v] for v in order}
    splits = {subset: [v for v in order if database[v]["subset"] == subset] for subset in SPLIT_FILES}
    return {"database": database}, splits, counts


# ----------------------------------------------------------------------------- writing
def write_outputs(out, gt, splits, overwrite=False):
    targets = [os.path.join(out, "gt.json")] + [os.path.join(out, SPLIT_FILES[s]) for s in SPLIT_FILES]
    existing = [p for p in targets if os.path.exists(p)]
    if existing and not overwrite:
        raise AnnotationError(f"{existing[0]} already exists; pass --overwrite to replace "
                              f"{', '.join(os.path.basename(p) for p in existing)}")
    os.makedirs(out, exist_ok=True)
    save_text(targets[0], json.dumps(gt, indent=1) + "\n")
    for subset, path in zip(SPLIT_FILES, targets[1:]):
        save_text(path, "".join(v + "\n" for v in splits[subset]))
    return targets


def build_parser():
    p = argparse.ArgumentParser(
        description="Convert the official THUMOS14 temporal annotations (per-class <Class>_val.txt / "
                    "<Class>_test.txt files, lines 'video start end' in seconds) into gt.json, "
                    "split_train.txt (validation videos) and split_test.txt (test videos).",
        epilog="Give either --annotations (one folder holding both kinds of files, searched "
               "recursively) or --val_dir and --test_dir. Ambiguous_*.txt files are skipped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--annotations", help="folder below which all <Class>_val.txt and <Class>_test.txt files lie")
    p.add_argument("--val_dir", help="folder with the <Class>_val.txt files (validation videos -> subset 'train')")
    p.add_argument("--test_dir", help="folder with the <Class>_test.txt files (test videos -> subset 'test')")
    p.add_argument("--out", default="dataset/THUMOS14", help="output folder")
    p.add_argument("--exclude", nargs="*", default=list(FIELD_EXCLUDED), metavar="VIDEO",
                   help="videos left out (give --exclude with no video to keep all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing gt.json and split files")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.annotations and (args.val_dir or args.test_dir):
        raise AnnotationError("give either --annotations or --val_dir/--test_dir, not both")
    if not args.annotations and not (args.val_dir and args.test_dir):
        raise AnnotationError("give --annotations DIR, or both --val_dir DIR and --test_dir DIR")
    check_folder_option(args.out, "--out", AnnotationError)
    val_folders = [args.annotations or args.val_dir]
    test_folders = [args.annotations or args.test_dir]
    val_files, skipped_val = find_class_files(val_folders, "val")
    test_files, skipped_test = find_class_files(test_folders, "test")
    for suffix, files, folders in (("val", val_files, val_folders), ("test", test_files, test_folders)):
        if not files:
            raise AnnotationError(f"no <Class>_{suffix}.txt file found in {folders[0]}")
    for path in skipped_val + skipped_test:
        print(f"skipped {path} (not a class)")
    if set(val_files) != set(test_files):
        only_val, only_test = sorted(set(val_files) - set(test_files)), sorted(set(test_files) - set(val_files))
        print(f"warning: the class lists differ (only in validation: {only_val or 'none'}; "
              f"only in test: {only_test or 'none'})")
    gt, splits, counts = convert(val_files, test_files, args.exclude)
    written = write_outputs(args.out, gt, splits, args.overwrite)
    classes = sorted(set(val_files) | set(test_files))
    print(f"{len(classes)} classes; train (validation videos): {len(splits['train'])} videos, "
          f"{counts['train']} instances; test: {len(splits['test'])} videos, {counts['test']} instances")
    print("wrote " + ", ".join(written))
    return gt, splits


if __name__ == "__main__":
    run_entry_point(main, sys.argv[1:])
