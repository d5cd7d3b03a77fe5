"""The extraction's output folder: where each feature file goes, the per-video records of what
it was made from, what is left to extract (resume, --overwrite, refusal of files made
otherwise), and gt.json with the split files from a labels CSV.

OUT/features/<split>/<stream>/<video>.npy holds the features (the release layout,
dataset.feature_file); OUT/extraction/<split>/<video>.json records, per stream, what its file
was made from (video.extractor.made_from). The functions taking `args` read the checked
options of extract_features.py: out, split, streams, weights ({stream: {"file", "sha256"}}),
resize, crop, flow_before_crop, overwrite. Bad input raises options.ConfigError (a
utils.UserError) naming the file or option.
"""
import csv
import os

from dataset import feature_file, load_annotations
from options import ConfigError
from utils import read_json_object, save_json, save_npy, save_text
from video.extractor import made_from, video_identity, what_differs


# ----------------------------------------------------------------------------- provenance
def record_path(out, split, vid):
    return os.path.join(out, "extraction", split, vid + ".json")


def read_record(out, split, vid):
    """{stream: made_from record} of a video's written features ({} when there is none or it
    is unreadable: its files then count as made without a record)."""
    streams = (read_json_object(record_path(out, split, vid)) or {}).get("streams")
    return streams if isinstance(streams, dict) else {}


def wanted(args, stream, path, flow_backend=None):
    """The made_from record of `stream`'s features of the video file `path` under these options."""
    return made_from(stream, video=video_identity(path), weights=args.weights[stream], resize=args.resize,
                     crop=args.crop, flow_before_crop=args.flow_before_crop, flow_backend=flow_backend)


def plan(args, videos, mine):
    """({video: [streams to extract]}, [(file, why)] of existing files made otherwise): a stream
    is extracted when its file is missing, or (with --overwrite) made otherwise."""
    todo, stale = {}, []
    for vid in mine:
        record = read_record(args.out, args.split, vid)
        for stream in args.streams:
            path = feature_file(args.out, args.split, stream, vid)
            why = what_differs(stream, record.get(stream), wanted(args, stream, videos[vid])) \
                if os.path.isfile(path) else None
            if why is not None:
                stale.append((path, why))
            if not os.path.isfile(path) or (why is not None and args.overwrite):
                todo.setdefault(vid, []).append(stream)
    return todo, stale


def refuse_stale(stale, n=3):
    """Raise the refusal of the files made otherwise, naming the first `n`."""
    listed = "; ".join(f"{path}: {why}" for path, why in stale[:n])
    more = f"; and {len(stale) - n} more" if len(stale) > n else ""
    raise ConfigError(f"{len(stale)} existing feature file(s) were made otherwise: {listed}{more}. Pass --overwrite "
                      "to extract those videos again (replacing their files), or choose another --out")


def save_video(args, vid, path, feats, backend):
    """The features of one video: the old files of the streams written removed (--overwrite),
    then the record, then the files, so that at every moment each existing file is described by
    the record (an interruption leaves a file missing, never a file and a wrong record)."""
    for stream in feats:
        old = feature_file(args.out, args.split, stream, vid)
        if os.path.exists(old):
            os.remove(old)
    record = read_record(args.out, args.split, vid)
    for stream in feats:
        record[stream] = wanted(args, stream, path, flow_backend=backend)
    save_json(record_path(args.out, args.split, vid), {"streams": dict(sorted(record.items()))})
    for stream in feats:
        save_npy(feature_file(args.out, args.split, stream, vid), feats[stream])


# ----------------------------------------------------------------------------- ground truth
def read_labels_csv(path):
    """{video: (subset, [labels])} of a `video,subset,labels` CSV (extract_features.py's
    docstring gives the format)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise ConfigError(f"--gt {path}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"--gt {path} is not a readable CSV file ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["video", "subset"] or len(header) not in (2, 3) or (len(header) == 3 and header[2] != "labels"):
        raise ConfigError(f"--gt {path}: the first line must be the header video,subset,labels")
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row] + [""] * (3 - len(row))
        vid, subset, labels = row[0], row[1], row[2]
        if len(row) > 3 and any(row[3:]):
            raise ConfigError(f"--gt {path} line {line}: more than 3 columns (separate labels with ';')")
        if not vid:
            raise ConfigError(f"--gt {path} line {line}: no video id")
        if subset not in ("train", "test"):
            raise ConfigError(f"--gt {path} line {line}: subset must be train or test, got {subset!r}")
        names = sorted({x.strip() for x in labels.split(";") if x.strip()})
        if subset == "train" and not names:
            raise ConfigError(f"--gt {path} line {line}: training video {vid} has no label")
        if vid in table:
            raise ConfigError(f"--gt {path} line {line}: video {vid} is listed twice")
        table[vid] = (subset, names)
    return table


def check_gt(table, ids, split, path):
    """This run's videos must agree with the CSV: same subset; training videos listed."""
    for vid in ids:
        if vid in table and table[vid][0] != split:
            raise ConfigError(f"--gt {path}: video {vid} is in subset {table[vid][0]}, "
                              f"but this run writes into features/{split} (use --split {table[vid][0]})")
        if vid not in table and split == "train":
            raise ConfigError(f"--gt {path} has no row for training video {vid}: its labels are needed")


def write_gt(out, table, ids, split, streams):
    """OUT/gt.json (updated) and OUT/split_{train,test}.txt; returns the split lists."""
    gt_path = os.path.join(out, "gt.json")
    database = dict(load_annotations(out)) if os.path.isfile(gt_path) else {}
    for vid in ids:
        if vid not in table:
            database[vid] = {"subset": split, "annotations": []}
    for vid, (subset, labels) in table.items():
        entry = {"subset": subset, "annotations": []}
        if labels:
            entry["labels"] = labels
        database[vid] = entry
    save_json(gt_path, {"database": dict(sorted(database.items()))})
    splits = {}
    for subset in ("train", "test"):
        names = [v for v, e in sorted(database.items()) if e.get("subset") == subset
                 and all(os.path.isfile(feature_file(out, subset, s, v)) for s in streams)]
        splits[subset] = names
        text = "".join(n + "\n" for n in names)
        save_text(os.path.join(out, f"split_{subset}.txt"), text)
    return splits
