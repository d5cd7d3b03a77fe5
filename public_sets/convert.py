"""The conversion engine: a reader's videos written into the layout main.py reads
(features split into streams, gt.json, split files, classes.txt, conversion.json),
resumable, and the report of what was converted, skipped and corrected."""
import os
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from dataset import DataError, stream_files
from public_sets import record
from public_sets.common import (BENCHMARKS, FEATURE_WIDTH, MIN_ROWS, RELEASE_LEFT_OUT, SOURCE_SUBSETS, STREAM_WIDTH,
                                Reader, preset_subsets)
from utils import check_folder_option, save_json, save_npy, save_text

try:
    from tqdm import tqdm
except ImportError:  # progress is optional
    tqdm = None

CONVERTER = "public_sets"
# ActionFormer's remove_duplicate_annotations (libs/utils/metrics.py): same label, both ends
# within this many seconds of an earlier annotation, or shorter than it.
DUPLICATE_TOLERANCE = 1e-3


def add_arguments(add):
    """The options of every sub-command of scripts/convert_features.py."""
    add("--out", required=True, help="output folder (the --data_path of main.py)")
    add("--dataset", choices=BENCHMARKS,
        help="the benchmark the set holds (default: read from the source's file names, e.g. "
             "Thumos14reduced-..., ActivityNet1.2-...; an error where they do not say it)")
    add("--drop_missing", action="store_true",
        help="leave evaluated videos without usable features out of the ground truth (default: kept, "
             "their instances count as misses, as in the sources' evaluators)")
    add("--exclude", nargs="*", default=list(RELEASE_LEFT_OUT), metavar="VIDEO",
        help="videos left out (the three THUMOS14 test videos the authors' release leaves out; give "
             "--exclude with no video to keep all)")
    add("--min_rows", type=int, default=MIN_ROWS,
        help="features with fewer non-zero rows are not usable: such training videos are skipped, "
             "evaluated ones count as misses (3C-Net's ActivityNet filter: 6)")
    add("--subsets", nargs=2, metavar=("TRAIN", "TEST"),
        help="subset names written to gt.json (default: those of the --dataset preset, train/test for "
             "THUMOS14, training/validation for ActivityNet)")
    add("--overwrite", action="store_true",
        help="convert anew into an --out holding another conversion (its files, and only those, are removed "
             "first) or files in the way (replaced)")
    add("--no_progress", action="store_true", help="no progress bar")


@dataclass
class Report:
    """What a conversion did; `skipped` maps a reason to the videos skipped for it."""
    out: str = ""
    source: dict = field(default_factory=dict)
    benchmark: str = ""
    converted: dict = field(default_factory=lambda: {"train": 0, "test": 0})
    resumed: int = 0
    skipped: dict = field(default_factory=dict)
    excluded: list = field(default_factory=list)
    # evaluated videos without usable features: video -> {"reason", "instances"}
    missing_features: dict = field(default_factory=dict)
    drop_missing: bool = False
    # video -> {"source": duration of the source, "written": duration written, "why": ...}
    durations: dict = field(default_factory=dict)
    duplicates: dict = field(default_factory=dict)     # video -> annotations removed (ActionFormer)
    label_mismatch: list = field(default_factory=list)
    dropped_labels: dict = field(default_factory=dict)  # video -> video-level labels outside the classes
    classes: list = field(default_factory=list)
    subsets: dict = field(default_factory=dict)

    def skip(self, reason, video):
        self.skipped.setdefault(reason, []).append(video)

    def as_dict(self):
        return {k: getattr(self, k) for k in (
            "source", "benchmark", "converted", "resumed", "skipped", "excluded", "missing_features",
            "drop_missing", "durations", "duplicates", "label_mismatch", "dropped_labels", "subsets")}


# ----------------------------------------------------------------------------- writing
def remove_duplicates(anns, tol=DUPLICATE_TOLERANCE):
    """ActionFormer's rule (libs/utils/metrics.py, remove_duplicate_annotations): an
    annotation shorter than tol, or with the label and both ends within tol of an earlier
    kept one, is removed. Returns (kept, number removed)."""
    kept = []
    for label, s, e in anns:
        if e - s >= tol and not any(label == k[0] and abs(s - k[1]) <= tol and abs(e - k[2]) <= tol for k in kept):
            kept.append((label, s, e))
    return kept, len(anns) - len(kept)


def reconcile_duration(duration, anns, span, step):
    """The duration to write and why the source's is not it ("" when it is): a duration
    that ends before an annotation, or before the features' span by more than one vector,
    contradicts them; the one covering both is written."""
    if duration is None:
        return None, ""
    last = max((e for _, _, e in anns), default=None)
    why = []
    if last is not None and last > duration:
        why.append(f"annotations end at {last:g} s")
    if span is not None and span > duration + step:
        why.append(f"features span {span:g} s")
    if not why:
        return duration, ""
    return max(duration, last if last is not None else duration, span if span is not None else duration), \
        ", ".join(why)


def check_features(feats, video):
    """(L, 2048) float rows of a video -> float32 array; DataError naming file and video."""
    arr = np.asarray(feats)
    if arr.size == 0:
        return np.zeros((0, FEATURE_WIDTH), dtype=np.float32)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{video.source}: video {video.name}: features are a {arr.dtype} array, not numbers")
    if arr.ndim != 2 or arr.shape[1] != FEATURE_WIDTH:
        raise DataError(f"{video.source}: video {video.name}: features of shape {arr.shape}; expected "
                        f"(L, {FEATURE_WIDTH}) (RGB columns 0-{STREAM_WIDTH - 1}, flow {STREAM_WIDTH}-{FEATURE_WIDTH - 1})")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise DataError(f"{video.source}: video {video.name}: features hold NaN or Inf")
    return arr


def unusable(feats, min_rows):
    """Why a video's (L, 2048) features cannot be used ("" when they can)."""
    if feats.shape[0] == 0:
        return "no feature row"
    nonzero = int((np.abs(feats).max(axis=1) > 0).sum())
    if nonzero == 0:
        return "all feature rows zero"
    if nonzero < min_rows:
        return f"fewer than {min_rows} non-zero feature rows"
    return ""


def existing_state(path, rows):
    """'missing', 'complete' (a (rows, 1024) float32 .npy) or 'other' (anything else)."""
    if not os.path.exists(path):
        return "missing"
    try:
        a = np.load(path, mmap_mode="r")
    except Exception:
        return "other"
    if a.shape == (rows, STREAM_WIDTH) and a.dtype == np.float32:
        return "complete"
    return "other"


@dataclass(kw_only=True)
class Conversion:
    """The state of one conversion, shared by the steps of `convert`."""
    reader: Reader
    out: str
    report: Report
    excluded: set
    min_rows: int
    subsets: dict               # "train" / "test" -> subset name written to gt.json
    overwrite: bool
    drop_missing: bool
    resuming: bool              # --out holds this conversion, interrupted or done: finished files are kept
    admitted: set = field(default_factory=set)
    unusable: dict = field(default_factory=lambda: {"train": [], "test": []})   # [(video, why)]
    class_index: set = field(default_factory=set)
    database: dict = field(default_factory=dict)
    split_lists: dict = field(default_factory=lambda: {"train": [], "test": []})
    grids: dict = field(default_factory=dict)


def convert(reader, out, *, exclude=RELEASE_LEFT_OUT, min_rows=MIN_ROWS, subsets=None, overwrite=False,
            progress=True, log=None, drop_missing=False):
    """Convert every video of `reader` into `out` (docs/feature_sets.md); returns a Report.
    subsets: {"train": name, "test": name} to override the subset names of gt.json.
    drop_missing: leave evaluated videos without usable features out of the ground truth.
    overwrite: convert anew where `out` holds another conversion (removing the files it wrote)
    or files in the way. Everything that can be refused is refused before anything is
    written: another conversion in `out`, files in the way, a split left empty.
    log: a callable taking one line (warnings); nothing is printed otherwise."""
    log = log or (lambda line: None)
    check_folder_option(out, "--out", DataError)
    names = dict(preset_subsets(reader.benchmark), **(subsets or {}))
    made_from = record.made_from(reader.sources(), dict(
        reader.signature(), exclude=sorted(set(exclude or ())), min_rows=min_rows, subsets=names,
        drop_missing=drop_missing))
    resuming = record.check_out(out, made_from, overwrite)
    report = Report(out=out, source=reader.signature(), benchmark=reader.benchmark, classes=list(reader.classes),
                    subsets=names, drop_missing=drop_missing)
    run = Conversion(reader=reader, out=out, report=report, excluded=set(exclude or ()), min_rows=min_rows,
                     subsets=names, overwrite=overwrite, drop_missing=drop_missing, resuming=resuming,
                     class_index=set(reader.classes))
    files = _plan(run)
    if overwrite:
        record.remove_files(out, record.recorded_files(out))
    existed = os.path.isdir(out)
    save_json(os.path.join(out, record.RECORD), {"converter": CONVERTER, "complete": False, "made_from": made_from,
                                                 "files": files})
    bar = tqdm(total=len(reader) or None, desc=f"converting ({reader.kind})", unit="video",
               disable=not progress) if tqdm else None
    try:
        for video in reader.videos():
            if bar is not None:
                if len(reader) and bar.total != len(reader):
                    bar.total = len(reader)
                bar.update(1)
            _convert_one(video, run)
    finally:
        if bar is not None:
            bar.close()
    empty = _empty_split(run, {s: len(run.split_lists[s]) for s in ("train", "test")}, run.unusable)
    if empty:       # only usable-looking features turned out unusable: nothing of this run is kept
        record.remove_files(out, files)
        if not existed and not os.listdir(out):
            os.rmdir(out)
        raise DataError(empty)
    grid = _top_grid(reader, run.grids)
    for video, g in run.grids.items():
        if g != grid:
            run.database[video]["feature_grid"] = g
    if report.label_mismatch:
        log(f"warning: {len(report.label_mismatch)} video(s) whose video-level labels differ from their "
            f"segment labels (the video-level ones are kept as training labels): "
            f"{', '.join(report.label_mismatch)}")
    for reason, videos in report.skipped.items():
        log(f"warning: skipped {len(videos)} video(s) ({reason}): {', '.join(videos[:20])}"
            + (", ... (all in conversion.json)" if len(videos) > 20 else ""))
    _write_annotations(run, grid, made_from, files)
    return report


def _feature_paths(out, video):
    return stream_files(out, video.split, "all", video.name)


def _plan(run):
    """Go over the reader's videos without reading features: refuse bad annotations, a split
    left empty, and (unless resuming or overwrite) a file in the way. Returns the files the
    conversion would write (relative to --out)."""
    admitted, split_of, subsets, files = set(), {}, Counter(), []
    without = {"train": [], "test": []}
    for video in run.reader.videos():
        subsets[video.subset or video.split] += 1
        if not _admit(video, run, Report(), admitted):
            continue
        split_of[video.name] = video.split
        if not video.has_features:
            without[video.split].append((video.name, "no feature file"))
            continue
        for path in _feature_paths(run.out, video):
            if os.path.exists(path) and not run.resuming and not run.overwrite:
                raise DataError(f"{path} exists but was not written by this conversion (video {video.name}); "
                                "remove it or pass --overwrite")
            files.append(os.path.relpath(path, run.out))
    per_split = Counter(split_of.values())
    empty = _empty_split(run, {s: per_split[s] - len(without[s]) for s in without}, without,
                         admitted=per_split, subsets=subsets)
    if empty:
        raise DataError(empty)
    top = [f for f in record.TOP_FILES if f != "Ambiguous_test.txt" or run.reader.ambiguous is not None]
    return top + sorted(files)


def _empty_split(run, usable, why_not, admitted=None, subsets=None):
    """Why the conversion would leave a split without a video ("" when it does not): none of
    the source's videos is in it (admitted: videos per split), or none of those in it has
    usable features (usable: such videos per split; why_not: [(video, why)] per split)."""
    reader, benchmark = run.reader, run.reader.benchmark
    for split, what in (("train", "training"), ("test", "evaluated")):
        if admitted is not None and not admitted[split]:
            found = ", ".join(f"{k} {n}" for k, n in sorted(subsets.items())) or "none"
            return (f"--dataset {benchmark}: no {what} video in {reader.annotation_file}: the {benchmark} preset "
                    f"takes them from {reader.split_source(split)}, and the source's videos are {found} "
                    "(is --dataset right?)")
        if not usable[split]:
            example = ", ".join(f"{name}: {why}" for name, why in why_not[split][:2])
            if split == "test" and run.drop_missing:
                return (f"--drop_missing would leave no evaluated video: none of the {len(why_not[split])} of "
                        f"{reader.annotation_file} has usable features (e.g. {example}); check the features given")
            return (f"none of the {len(why_not[split])} {what} videos of {reader.annotation_file} has usable "
                    f"features (e.g. {example}): split_{split}.txt would be empty; check the features given")
    return ""


def _check_labels(video, run):
    where = f"{run.reader.annotation_file}: video {video.where}"
    for label in [a[0] for a in video.annotations] + list(video.labels or []):
        if label not in run.class_index:
            raise DataError(f"{where}: label {label!r} is not in the class list")
    for label, s, e in video.annotations:
        if e < s:
            raise DataError(f"{where}: {label} segment ends ({e}) before it starts ({s})")


def _features(video, run):
    """Write the video's rgb and flow files unless already complete: (rows, why the features
    are unusable, "" when they are usable)."""
    if not video.has_features:
        return 0, "no feature file"
    paths = _feature_paths(run.out, video)
    rows = video.rows()
    states = [existing_state(p, rows) for p in paths] if rows and run.resuming else ["missing", "missing"]
    bad = [p for p, st in zip(paths, states) if st == "other"]
    if bad:
        raise DataError(f"{bad[0]} exists but is not the (L={rows}, {STREAM_WIDTH}) float32 array this "
                        f"conversion writes for video {video.name}; remove it or pass --overwrite")
    if all(st == "complete" for st in states):
        run.report.resumed += 1
        return rows, ""
    feats = check_features(video.load(), video)
    why = unusable(feats, run.min_rows)
    if not why:
        for path, state, cols in zip(paths, states, (slice(0, STREAM_WIDTH), slice(STREAM_WIDTH, FEATURE_WIDTH))):
            if state != "complete":
                save_npy(path, feats[:, cols])
    return feats.shape[0], why


def _admit(video, run, report, admitted):
    """Whether the video is converted (its features written where usable): a video left out,
    skipped by the reader, of an unused subset or without annotations is not (said in the
    report); bad annotations and a second video of the same name are errors."""
    if video.name in run.excluded or (video.source_name and video.source_name in run.excluded):
        report.excluded.append(video.name)
        return False
    if video.skip:
        report.skip(video.skip, video.name)
        return False
    if video.split not in ("train", "test"):
        report.skip(f"subset {video.split!r} not used", video.name)
        return False
    if video.name in admitted:
        raise DataError(f"{run.reader.annotation_file}: video {video.name} appears twice"
                        + (f" (also as {video.source_name})" if video.source_name else ""))
    _check_labels(video, run)
    if not video.annotations and not video.labels:
        report.skip("no annotation", video.name)
        return False
    admitted.add(video.name)
    return True


def _convert_one(video, run):
    report, reader = run.report, run.reader
    if not _admit(video, run, report, run.admitted):
        return
    rows, why = _features(video, run)
    if why:
        run.unusable[video.split].append((video.name, why))
    evaluated = video.split == "test" and video.annotations
    if why and not evaluated:
        report.skip(why, video.name)
        return
    anns = video.annotations
    if reader.removes_duplicates:
        anns, removed = remove_duplicates(anns)
        if removed:
            report.duplicates[video.name] = removed
    grid = video.grid or dict(reader.grid)
    span = grid["start"] + rows * grid["step"] if not why else None
    duration, contradiction = reconcile_duration(video.duration, anns, span, grid["step"])
    if contradiction:
        report.durations[video.name] = {"source": video.duration, "written": duration, "why": contradiction}
    if why:   # an evaluated video without usable features: its instances are misses
        report.missing_features[video.name] = {"reason": why, "instances": len(anns)}
        if run.drop_missing:
            return
    if video.labels is not None and video.annotations and set(video.labels) != {a[0] for a in video.annotations}:
        report.label_mismatch.append(video.name)
    if video.dropped_labels:
        report.dropped_labels[video.name] = list(video.dropped_labels)
    entry = {"subset": run.subsets[video.split],
             "annotations": [{"label": label, "segment": [s, e]} for label, s, e in anns]}
    if duration is not None:
        entry["duration"] = duration
    if contradiction:
        entry["source_duration"] = video.duration
    if video.labels is not None:
        entry["labels"] = list(video.labels)
    if video.fps is not None:
        entry["fps"] = video.fps
    if video.source_name:
        entry["source_name"] = video.source_name
    run.database[video.name] = entry
    if why:
        return
    run.grids[video.name] = grid
    run.split_lists[video.split].append(video.name)
    report.converted[video.split] += 1


def _top_grid(reader, grids):
    """The grid of gt.json's top level: the source's, or the most common per-video grid."""
    if not grids:
        return dict(reader.grid)
    counts = {}
    for g in grids.values():
        key = (g["step"], g["start"])
        counts[key] = counts.get(key, 0) + 1
    step, start = max(counts, key=counts.get)
    return {"step": step, "start": start}


def _write_annotations(run, grid, made_from, files):
    out, reader, report = run.out, run.reader, run.report
    train = set(run.split_lists["train"])
    order = sorted(run.database, key=lambda v: (v not in train, v))
    gt = {"database": {v: run.database[v] for v in order}, "feature_grid": grid}
    save_text(os.path.join(out, "classes.txt"), "".join(c + "\n" for c in reader.classes))
    for split in ("train", "test"):
        save_text(os.path.join(out, f"split_{split}.txt"), "".join(v + "\n" for v in sorted(run.split_lists[split])))
    if reader.ambiguous is not None:
        save_text(os.path.join(out, "Ambiguous_test.txt"), reader.ambiguous)
    save_json(os.path.join(out, "gt.json"), gt, indent=None)
    save_json(os.path.join(out, record.RECORD),
              dict(report.as_dict(), converter=CONVERTER, train_command=train_command(report), complete=True,
                   made_from=made_from, files=files))


def train_command(report):
    """The main.py command that trains on the converted set and evaluates its evaluated
    subset with the benchmark's preset (tIoU thresholds included)."""
    command = f"python main.py --dataset {report.benchmark} --data_path {report.out}"
    preset = preset_subsets(report.benchmark)
    for split in ("train", "test"):
        if report.subsets[split] != preset[split]:
            command += f" --{split}_subset {report.subsets[split]}"
    return command
