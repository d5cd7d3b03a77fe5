"""Reading ground truth and predictions.

Every malformed input becomes an `EvalError` whose one-line message names the file,
the video and, where it applies, the label, so a failed evaluation after hours of
training says what to fix instead of ending in a bare KeyError.
"""
import json
import math
import os
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np


class EvalError(ValueError):
    """Bad evaluation input (the message is a single line)."""


class Instance(NamedTuple):
    """One ground-truth action instance, in seconds."""
    label: str
    start: float
    end: float


@dataclass
class GroundTruth:
    """The ground truth of one subset, parsed and checked once.

    Load it once and pass it to `evaluate_detection` at every periodic evaluation:
    nothing is re-read or re-validated then.
    """
    subset: str
    classes: list        # sorted labels that occur in the subset: the classes of the mAP
    videos: list         # video ids of the subset, in file order
    annotations: dict    # video id -> list[Instance], in file order
    source: str          # file name, or a placeholder for a dict
    database_videos: frozenset  # every video id of the file, whatever its subset

    @cached_property
    def class_index(self):
        return {label: i for i, label in enumerate(self.classes)}

    @cached_property
    def video_index(self):
        return {vid: i for i, vid in enumerate(self.videos)}

    @cached_property
    def arrays(self):
        """(class index, video index, start, end) of every instance, as numpy arrays."""
        rows = [(self.class_index[inst.label], v, inst.start, inst.end)
                for v, vid in enumerate(self.videos) for inst in self.annotations[vid]]
        cls, vid, start, end = zip(*rows)
        return (np.array(cls, np.int64), np.array(vid, np.int64),
                np.array(start, np.float64), np.array(end, np.float64))


@dataclass
class Predictions:
    """Predictions in input order (results-dict order, then list order)."""
    video_ids: list      # distinct video ids as written in the file, in input order
    video: np.ndarray    # (N,) index into video_ids
    labels: list         # (N,) label strings
    scores: np.ndarray   # (N,) float64
    segments: np.ndarray  # (N, 2) float64 start, end in seconds
    source: str

    def __len__(self):
        return len(self.labels)

    def where(self, i):
        """'video X, prediction j' for the i-th prediction, for error messages."""
        v = int(self.video[i])
        j = i - int(np.searchsorted(self.video, v))  # video indices are non-decreasing
        return f"video {self.video_ids[v]!r}, prediction {j}"


def _read_json(source, what):
    """Return (dict, name) for a path or an already-loaded dict."""
    if isinstance(source, dict):
        return source, f"<{what} dict>"
    if not isinstance(source, (str, os.PathLike)):
        raise EvalError(f"{what} must be a path or a dict, not {type(source).__name__}")
    name = os.fspath(source)
    try:
        with open(name, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as exc:
        raise EvalError(f"cannot read {what} file {name}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise EvalError(f"{what} file {name} is not valid JSON: {exc.msg} "
                        f"(line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise EvalError(f"{what} file {name} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise EvalError(f"{what} file {name}: the top level must be a JSON object")
    return data, name


def _parse_segment(segment, where):
    """[start, end] in seconds (numbers or numeric strings) -> (float, float)."""
    if not isinstance(segment, (list, tuple)) or len(segment) != 2:
        raise EvalError(f"{where}: malformed segment {segment!r}, expected [start, end]")
    try:
        start, end = float(segment[0]), float(segment[1])
    except (TypeError, ValueError):
        raise EvalError(f"{where}: malformed segment {segment!r}, expected numbers") from None
    if not (math.isfinite(start) and math.isfinite(end)):
        raise EvalError(f"{where}: segment {segment!r} is not finite")
    if end < start:
        raise EvalError(f"{where}: segment {segment!r} ends before it starts")
    return start, end


def _parse_instance(ann, where):
    if not isinstance(ann, dict) or "segment" not in ann or "label" not in ann:
        raise EvalError(f"{where}: an annotation needs 'segment' and 'label'")
    if not isinstance(ann["label"], str):
        raise EvalError(f"{where}: label {ann['label']!r} is not a string")
    return Instance(ann["label"], *_parse_segment(ann["segment"], where))


def load_ground_truth(source, subset="test"):
    """Ground truth of `subset` from a gt.json / ActivityNet json path or dict.

    Both the release's gt.json and the official ActivityNet file work: only
    `database` is read (`taxonomy`, `version` are ignored). A `GroundTruth` passed in
    is returned as it is (its own subset wins).
    """
    if isinstance(source, GroundTruth):
        return source
    data, name = _read_json(source, "ground truth")
    database = data.get("database")
    if not isinstance(database, dict):
        raise EvalError(f"ground truth {name} has no 'database' object")
    annotations, subsets = {}, set()
    for vid, entry in database.items():
        if not isinstance(entry, dict) or "subset" not in entry:
            raise EvalError(f"ground truth {name}: video {vid!r} has no 'subset'")
        subsets.add(str(entry["subset"]))
        if entry["subset"] != subset:
            continue
        anns = entry.get("annotations")
        if not isinstance(anns, list):
            raise EvalError(f"ground truth {name}: video {vid!r} has no 'annotations' list")
        where = f"ground truth {name}, video {vid!r}, annotation"
        annotations[vid] = [_parse_instance(a, f"{where} {i}") for i, a in enumerate(anns)]
    if not annotations:
        raise EvalError(f"ground truth {name} has no video of subset {subset!r} "
                        f"(subsets present: {', '.join(sorted(subsets)) or 'none'})")
    classes = sorted({inst.label for insts in annotations.values() for inst in insts})
    if not classes:
        raise EvalError(f"ground truth {name}: subset {subset!r} has no annotated instance")
    return GroundTruth(subset, classes, list(annotations), annotations, name, frozenset(database))


def load_predictions(source):
    """Predictions in the ActivityNet results form, from a path or a dict.

    Checks types, scores and segments (finite, end >= start); labels and video ids are
    checked against the ground truth by `align_predictions`.
    """
    if isinstance(source, Predictions):
        return source
    data, name = _read_json(source, "predictions")
    results = data.get("results")
    if not isinstance(results, dict):
        raise EvalError(f"predictions {name} have no 'results' object")
    video_ids, video, labels, scores, bounds = [], [], [], [], []
    for vid, entries in results.items():
        if not isinstance(entries, list):
            raise EvalError(f"predictions {name}: results of video {vid!r} are not a list")
        v = len(video_ids)
        video_ids.append(vid)
        for j, pred in enumerate(entries):
            # A plain loop: the values arrive as Python objects anyway.
            try:
                label, score, segment = pred["label"], float(pred["score"]), pred["segment"]
                start, end = float(segment[0]), float(segment[1])
                ok = (isinstance(label, str) and isinstance(segment, (list, tuple))
                      and len(segment) == 2)
            except (KeyError, TypeError, ValueError, IndexError):
                ok = False
            if not ok:
                raise EvalError(f"predictions {name}: video {vid!r}, prediction {j}: "
                                f"{_what_is_wrong(pred)}")
            video.append(v)
            labels.append(label)
            scores.append(score)
            bounds.append((start, end))
    preds = Predictions(video_ids, np.array(video, np.int64), labels,
                        np.array(scores, np.float64),
                        np.array(bounds, np.float64).reshape(-1, 2), name)
    _check_values(preds)
    return preds


def load_ambiguous(path):
    """Ambiguous segments, {video: [(start, end)]}, from a W-TALC style file: one
    `video start end` per line, seconds, whitespace-separated (W-TALC's
    Ambiguous_test.txt; A2CL-PT's set_ambiguous as written by the converter)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise EvalError(f"cannot read ambiguous segments file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EvalError(f"ambiguous segments file {path} is not UTF-8 text") from None
    segments = {}
    for n, line in enumerate(lines, 1):
        words = line.split()
        if not words:
            continue
        if len(words) != 3:
            raise EvalError(f"{path}, line {n}: expected 'video start end', got {line.strip()!r}")
        segments.setdefault(words[0], []).append(_parse_segment(words[1:], f"{path}, line {n}"))
    return segments


def remove_ambiguous(preds, ambiguous):
    """(predictions without those that overlap an ambiguous segment of their video, number
    removed): W-TALC's filter (detectionMAP.py, filter_segments) with the overlap taken in
    seconds rather than on its 16-frame snippet grid. A `v_` on a prediction's id is ignored
    when only the id without it has ambiguous segments."""
    keep = np.ones(len(preds), bool)
    for v, vid in enumerate(preds.video_ids):
        segments = ambiguous.get(vid) or (ambiguous.get(vid[2:]) if vid.startswith("v_") else None)
        if not segments:
            continue
        rows = np.flatnonzero(preds.video == v)
        start, end = preds.segments[rows, 0], preds.segments[rows, 1]
        for a, b in segments:
            keep[rows[np.minimum(end, b) - np.maximum(start, a) > 0]] = False
    return _subset(preds, np.flatnonzero(keep)), int(len(preds) - keep.sum())


def _subset(preds, keep):
    """The predictions at the sorted indices `keep`, input order kept."""
    return Predictions(preds.video_ids, preds.video[keep], [preds.labels[i] for i in keep],
                       preds.scores[keep], preds.segments[keep], preds.source)


def drop_unscored(preds, gt):
    """(predictions whose label is a class of gt's subset, {label: count} of the others).
    A class without ground truth in the subset has no AP (the mAP runs over the subset's
    classes): its detections are left out of the scoring, not an error. test.py writes
    detections for every class of the class list, whatever the evaluated subset holds."""
    scored = np.fromiter((label in gt.class_index for label in preds.labels), bool, len(preds))
    unscored = {}
    for i in np.flatnonzero(~scored):
        unscored[preds.labels[i]] = unscored.get(preds.labels[i], 0) + 1
    return _subset(preds, np.flatnonzero(scored)), unscored


def videos_without_predictions(preds, gt):
    """How many videos of gt's subset have no prediction at all (any label)."""
    have = {_resolve_video(preds.video_ids[v], gt) for v in np.unique(preds.video)}
    return sum(1 for vid in gt.videos if vid not in have)


def _what_is_wrong(pred):
    """Reason a prediction entry could not be read, for the error message."""
    if not isinstance(pred, dict):
        return f"expected an object, got {type(pred).__name__}"
    for key in ("label", "score", "segment"):
        if key not in pred:
            return f"missing {key!r}"
    if not isinstance(pred["label"], str):
        return f"label {pred['label']!r} is not a string"
    try:
        float(pred["score"])
    except (TypeError, ValueError):
        return f"score {pred['score']!r} is not a number"
    try:
        _parse_segment(pred["segment"], "segment")
    except EvalError as exc:
        return str(exc).removeprefix("segment: ")
    return "malformed entry"


def _check_values(preds):
    """Vectorised check of scores and segments; the message names the first bad one."""
    start, end = preds.segments[:, 0], preds.segments[:, 1]
    bad = ~np.isfinite(preds.scores)
    if bad.any():
        i = int(np.argmax(bad))
        raise EvalError(f"predictions {preds.source}: {preds.where(i)}: score is not finite")
    bad = ~(np.isfinite(start) & np.isfinite(end))
    if bad.any():
        i = int(np.argmax(bad))
        raise EvalError(f"predictions {preds.source}: {preds.where(i)}: "
                        f"segment {preds.segments[i].tolist()} is not finite")
    bad = end < start
    if bad.any():
        i = int(np.argmax(bad))
        raise EvalError(f"predictions {preds.source}: {preds.where(i)}: "
                        f"segment {preds.segments[i].tolist()} ends before it starts")


@dataclass
class AlignedPredictions:
    """Predictions with labels and videos mapped to ground-truth indices."""
    cls: np.ndarray      # (N,) class index into gt.classes
    video: np.ndarray    # (N,) index into gt.videos, -1 for a video of another subset
    scores: np.ndarray
    start: np.ndarray
    end: np.ndarray
    num_unknown_videos: int


def _resolve_video(vid, gt):
    # ActivityNet's database drops the 'v_' of YouTube-derived ids; many result files keep it.
    if (isinstance(vid, str) and vid.startswith("v_") and vid not in gt.database_videos
            and vid[2:] in gt.database_videos):
        return vid[2:]
    return vid


def align_predictions(preds, gt):
    """Map labels to class indices and videos to ground-truth video indices.

    A label outside the subset's classes, or a video missing from the whole ground-truth
    file, is an error. A video of the file but of another subset is kept: its predictions
    are false positives (as in the ActivityNet reference), and such videos are counted.
    """
    video_map = np.empty(len(preds.video_ids), np.int64)
    has_preds = np.bincount(preds.video, minlength=len(preds.video_ids)) > 0
    unknown = 0
    for v, raw in enumerate(preds.video_ids):
        vid = _resolve_video(raw, gt)
        if vid in gt.video_index:
            video_map[v] = gt.video_index[vid]
        elif vid in gt.database_videos:
            video_map[v] = -1
            unknown += int(has_preds[v])
        else:
            raise EvalError(f"predictions {preds.source}: video {raw!r} is not in the "
                            f"ground truth {gt.source}")
    index = gt.class_index
    cls = np.fromiter((index.get(label, -1) for label in preds.labels), np.int64, len(preds))
    if (cls < 0).any():
        i = int(np.argmax(cls < 0))
        raise EvalError(f"predictions {preds.source}: {preds.where(i)}: label {preds.labels[i]!r}"
                        f" is not a class of subset {gt.subset!r} of {gt.source}")
    return AlignedPredictions(cls, video_map[preds.video], preds.scores,
                              preds.segments[:, 0], preds.segments[:, 1], unknown)
