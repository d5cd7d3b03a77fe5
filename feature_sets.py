"""Converters of the public WTAL feature sets into the layout main.py reads.

Sources (one reader each; `scripts/convert_features.py` is the command line):

  wtalc         W-TALC files (sujoyp/wtalc-pytorch; also naraysa/3c-net and its followers):
                `<Set>-I3D-JOINTFeatures.npy`, a pickled object array of per-video (L, 2048)
                arrays, and `<Set>-Annotations/` with one .npy per field (videoname, subset,
                classlist, segments, labels, labels_all, duration, original_fps, url),
                row i of every field = video i. THUMOS14 "reduced" and ActivityNet 1.2.
  actionformer  happyharrycn/actionformer_release: `i3d_features/<video>.npy` (L, 2048) and
                `annotations/thumos14.json` (or its ActivityNet 1.3 json; feature files
                `v_<id>.npy` there, json keys bare ids).
  acmnet        ispc-lab/ACM-Net: `data/ActivityNet13/{gt.json, split_train.txt,
                split_test.txt, train/<vid>.npy, test/<vid>.npy}` (same layout for THUMOS14).
  a2clpt        MichiganCOG/A2CL-PT: `feature_train.npy`, `feature_val.npy` (pickled dicts
                {video: (L, 2048)}) and `annotation.json`.

The benchmark (BENCHMARKS: thumos14, anet12, anet13) is said by the caller, or read from
the sources' own file names (W-TALC `Thumos14reduced-...` / `ActivityNet1.2-...`,
ActionFormer `thumos14.json` / `anet1.3...json`, ACM-Net `THUMOS14/` / `ActivityNet13/`,
A2CL-PT `THUMOS14/annotation.json`); anything else must be said (AmbiguousBenchmark). It
decides which subsets of the source are trained on and evaluated, the subset names written
(those of the main.py preset of the same name) and the printed training command.

Output (OUT):

    OUT/gt.json        {"database": {video: {...}}, "feature_grid": {"step": s, "start": s0}}
    OUT/classes.txt    the class names in the source's class index order
    OUT/split_train.txt, OUT/split_test.txt    training and evaluated videos with features, sorted
    OUT/features/{train,test}/{rgb,flow}/<video>.npy   (L, 1024) float32; columns 0-1023 of
                       the source's (L, 2048) rows are RGB, 1024-2047 flow
    OUT/Ambiguous_test.txt   beside gt.json when the source has ambiguous segments
    OUT/conversion.json      what was converted, skipped, corrected (and the source, benchmark)

Per video in gt.json's database: "subset"; "annotations": [{"label", "segment": [start_s,
end_s]}] (seconds, numbers); "duration" (seconds, when known); "source_duration" (the
source's value, where it contradicted the annotations or the features); "labels" (video-level
class names, where the source has them: W-TALC `labels_all`, A2CL-PT annotations without a
segment); "feature_grid" (only where it differs per video: ActionFormer THUMOS14); "fps"
(when the source gives the video's frame rate); "source_name" (when the name was changed).

Time grid: feature vector i covers seconds [start + i*step, start + (i+1)*step). 16-frame
snippets at 25 fps (W-TALC, ACM-Net, A2CL-PT, ActionFormer ActivityNet): step 0.64, start 0.
ActionFormer THUMOS14: 16-frame windows every 4 frames at the video's own fps, window i
centred at (4 i + 8) / fps; the cell of width 4 / fps centred there gives step = 4 / fps,
start = 6 / fps.

The evaluated ground truth is the source's, as its own evaluator scores it:
- Annotations are written as given: nothing is clipped to a duration or dropped. Where a
  duration contradicts the annotations (a segment ends after it) or the features (they span
  more than one vector beyond it; ACM-Net's THUMOS14 gt.json stores frames / 30 s for 25 and
  24 fps videos), the annotations are kept, the duration written is the one covering both,
  the source's value is kept as "source_duration" and the video is reported.
- Exact duplicates (same label, both ends within 1 ms) and segments shorter than 1 ms are
  removed only for ActionFormer, whose evaluator and loaders remove them
  (`libs/utils/metrics.py`, remove_duplicate_annotations); every other source's evaluator
  scores them, so they stay.
- A video of the evaluated subset without usable features (no file, no row, all rows zero,
  fewer than `min_rows` non-zero rows) stays in gt.json with its subset but not in
  split_test.txt: its instances count as misses, as in the sources' evaluators, and it is
  reported (videos and instances). drop_missing=True leaves such videos out (recorded).
- The three THUMOS14 test videos the authors' release leaves out (RELEASE_LEFT_OUT) are left
  out of every set by default (names absent from a set are ignored); `exclude=()` keeps them.

Other decisions:
- Subsets are renamed to those of the benchmark's main.py preset: THUMOS14 "train" (the
  source's validation videos) and "test"; ActivityNet "training" and "validation". Videos
  of any other subset (ActivityNet "testing") are skipped and listed.
- W-TALC ActivityNet names (`video_<n>`) become `v_<YouTube id>` (from url.npy), the names
  of ACM-Net's set and of the official ground truth (whose evaluator strips `v_`); the
  old name is kept in "source_name". names="source" keeps `video_<n>`.
- A2CL-PT THUMOS14 (`dataset/THUMOS14/annotation.json`): 101 classes, and 810 of its 1010
  training videos annotated with a label only (no segment). protocol="paper" (default) is
  the paper's Table 1 protocol: the classes with temporal annotations (20), training on the
  videos with temporal annotations (200); protocol="a2clpt" is A2CL-PT's own training: every
  class of `list_classes` and every training video, label-only annotations becoming
  video-level "labels". Either way the evaluated videos are the annotated test videos.
- Training videos without any annotation (and without video-level labels) or without usable
  features are skipped and listed, as the sources' own loaders do.
- Video-level labels that differ from the set of segment labels: kept as they are ("labels"
  are what the loaders train on) and listed in a warning.
- Bad or inconsistent source files (row counts differing between fields, a label not in
  the class list, a width other than 2048, NaN/Inf, a segment ending before it starts) end
  in a DataError whose one-line message names the file and the video.

What rests on the sources' loading code rather than on published files: ACM-Net's
ActivityNet 1.3 gt.json (read as ispc-lab/ACM-Net `dataset/dataset_class.py` reads it:
"annotations" and "duration"; its split files decide the splits), A2CL-PT's ActivityNet
files (MichiganCOG/A2CL-PT `dataset.py`: the feature file decides the split; "list_classes",
"miscellany", "set_ambiguous"), and the 25 fps of W-TALC's ActivityNet 1.2 features (never
stated by sujoyp/wtalc-pytorch; every loader of the set converts with 25/16).

Memory: readers stream one video at a time where the source allows it (ActionFormer and
ACM-Net: one file per video, memory-mapped). A pickled object array (W-TALC) or pickled dict
(A2CL-PT) cannot be memory-mapped or read in parts: the whole file is in memory while it is
converted, so the peak is about the size of that file (W-TALC THUMOS14 ~ 1 GB (unverified),
ActivityNet 1.2 several GB; A2CL-PT: one of its two files at a time), plus one video.

Resuming: every output file is written to a temporary file in the same folder and renamed
into place, so an existing feature file with the expected shape is complete; such videos are
not written again. gt.json, the split files, classes.txt and conversion.json are written at
the end. Nothing is deleted: a file in the way that is not what this conversion would write
(another shape, a gt.json not written by this converter, another source) stops the run
with a DataError unless overwrite=True.
"""
import json
import os
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from dataset import (FEATURE_FPS, SECONDS_PER_SEGMENT, SNIPPET_FRAMES, DataError, load_json,
                     read_split)
from options import PRESETS, RECIPE
from utils import check_folder_option, save_json, save_npy, save_text

try:
    from tqdm import tqdm
except ImportError:  # progress is optional
    tqdm = None

FEATURE_WIDTH = 2048                      # rows of every source: RGB (1024) then flow (1024)
STREAM_WIDTH = FEATURE_WIDTH // 2
SNIPPET_GRID = {"step": SECONDS_PER_SEGMENT, "start": 0.0}   # 16-frame snippets of 25 fps video
THUMOS_WINDOW, THUMOS_STRIDE = SNIPPET_FRAMES, 4   # ActionFormer THUMOS14: 16 frames every 4 frames
MIN_ROWS = 2
# THUMOS14 test videos the authors' release leaves out of its test split.
RELEASE_LEFT_OUT = ("video_test_0000270", "video_test_0001292", "video_test_0001496")
CONVERTER = "feature_sets"

# The benchmarks a set is converted for; each is also the main.py preset that trains and
# evaluates it (its subset names and tIoU thresholds are the preset's).
BENCHMARKS = ("thumos14", "anet12", "anet13")
THUMOS14 = "thumos14"
# What the sources call the training and the evaluated subset (lower case), per benchmark:
# THUMOS14 trains on its validation videos and tests on its test videos; ActivityNet trains
# on "training" and evaluates "validation".
SOURCE_SUBSETS = {"thumos14": {"validation": "train", "test": "test"},
                  "anet12": {"training": "train", "validation": "test"},
                  "anet13": {"training": "train", "validation": "test"}}
# The sources' own file and folder names that say which benchmark they hold.
BENCHMARK_NAMES = (("thumos14", re.compile(r"thumos[-_ ]?14", re.I)),
                   ("anet12", re.compile(r"(activitynet|anet)[-_ ]?1\.?2", re.I)),
                   ("anet13", re.compile(r"(activitynet|anet)[-_ ]?1\.?3", re.I)))
# ActionFormer's remove_duplicate_annotations (libs/utils/metrics.py): same label, both ends
# within this many seconds of an earlier annotation, or shorter than it.
DUPLICATE_TOLERANCE = 1e-3
A2CLPT_PROTOCOLS = ("paper", "a2clpt")
A2CLPT_SUBSETS = {"train": "train", "val": "test"}   # annotation.json "subset" -> split


class AmbiguousBenchmark(DataError):
    """The benchmark of a source cannot be read from its file names: it must be given."""


def preset_subsets(benchmark):
    """{"train": name, "test": name}: the subset names of the benchmark's main.py preset."""
    preset = {**RECIPE, **PRESETS[benchmark]}
    return {"train": preset["train_subset"], "test": preset["test_subset"]}


def resolve_benchmark(benchmark, paths):
    """The benchmark given, else the one the source's file names say (exactly one)."""
    if benchmark is not None:
        if benchmark not in BENCHMARKS:
            raise ValueError(f"benchmark must be one of {BENCHMARKS}, not {benchmark!r}")
        return benchmark
    names = [os.path.basename(os.path.normpath(p)) for p in paths if p]
    found = sorted({b for b, pattern in BENCHMARK_NAMES for n in names if pattern.search(n)})
    if len(found) == 1:
        return found[0]
    said = f"they name {' and '.join(found)}" if found else "they name none"
    raise AmbiguousBenchmark(f"cannot tell the benchmark from the file names ({', '.join(names)}: {said}); "
                             f"give --dataset {'|'.join(BENCHMARKS)}")


# ----------------------------------------------------------------------------- videos
@dataclass
class Video:
    """One video of a source, its features read on demand."""
    name: str                       # name in the output
    split: str                      # "train" or "test" (else: a subset that is not used)
    annotations: list               # [(label, start_s, end_s)]
    source: str                     # the file holding (or that should hold) its features, for messages
    load: Optional[Callable] = None   # -> (L, 2048) array; None: the video has no features
    rows: Optional[Callable] = None   # -> L, cheaply where the source allows it
    duration: Optional[float] = None
    labels: Optional[list] = None   # video-level labels; None: the source has no such field
    grid: Optional[dict] = None     # per-video grid; None: the reader's
    fps: Optional[float] = None
    source_name: Optional[str] = None
    skip: str = ""                  # why the reader leaves it out ("" = it does not)
    dropped_labels: list = field(default_factory=list)   # video-level labels outside the classes

    @property
    def has_features(self):
        return self.load is not None

    @property
    def where(self):
        return self.source_name or self.name


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


# ----------------------------------------------------------------------------- reading helpers
def to_str(x):
    """bytes (Python-2 pickles, numpy 'S' arrays) and numpy strings -> str."""
    if isinstance(x, (bytes, np.bytes_)):
        try:
            return bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(x).decode("latin1")
    if isinstance(x, np.str_):
        return str(x)
    return x


def to_seconds(x, where):
    """A time from a source (number, numpy scalar or numeric string) -> float. float32
    values keep their shortest decimal form (np.float32(18.6) -> 18.6, not 18.6000004)."""
    try:
        if isinstance(x, np.floating) and x.dtype == np.float32:
            value = float(str(x))
        else:
            value = float(to_str(x))
    except (TypeError, ValueError):
        raise DataError(f"{where}: time {x!r} is not a number") from None
    if not np.isfinite(value):
        raise DataError(f"{where}: time {x!r} is not finite")
    return value


def json_annotations(entry, where, label_only=False):
    """([(label, start, end)], labels of annotations without a segment, duration or None) of
    one video of an ActivityNet-style json. An annotation without "segment" is an error
    unless label_only (A2CL-PT's THUMOS14 json holds such video-level annotations)."""
    anns, labels = [], []
    for a in entry.get("annotations") or []:
        if label_only and isinstance(a, dict) and "segment" not in a:
            labels.append(a.get("label"))
        else:
            anns.append((a.get("label"), *parse_segments([a.get("segment")], where)[0]))
    duration = to_seconds(entry["duration"], where) if entry.get("duration") is not None else None
    return anns, labels, duration
def load_pickled(path, what):
    """np.load of a pickled .npy; Python-2 pickles are retried with encoding='latin1'
    (their str come back as str, their arrays intact), then 'bytes'."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    last = None
    for kwargs in ({}, {"encoding": "latin1"}, {"encoding": "bytes"}):
        try:
            return np.load(path, allow_pickle=True, **kwargs)
        except (UnicodeDecodeError, UnicodeError) as e:
            last = e
        except Exception as e:  # numpy and pickle raise many kinds for a broken file
            raise DataError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None
    raise DataError(f"cannot read {what} {path}: {last}")


def read_database(path):
    """An ActivityNet-style annotation json: (the whole object, its "database")."""
    data = load_json(path, "annotation file")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DataError(f"{path} has no 'database' object")
    return data, data["database"]


def read_ambiguous(folder):
    """The text of folder/Ambiguous_test.txt, or None where there is none."""
    path = os.path.join(folder, "Ambiguous_test.txt")
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8", "replace")


def npy_rows(path):
    """Row count of a per-video .npy from its header (memory-mapped, nothing read)."""
    try:
        return np.load(path, mmap_mode="r").shape[0]
    except Exception as e:
        raise DataError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from None


def npy_load(path):
    try:
        return np.load(path)
    except Exception as e:
        raise DataError(f"{path}: not a readable .npy file ({type(e).__name__}: {e})") from None


def parse_segments(segs, where):
    """A video's segments (list/array of [start, end]) -> [(start, end)]."""
    if segs is None:
        return []
    out = []
    for seg in list(segs):
        seg = list(np.asarray(seg, dtype=object).reshape(-1))
        if len(seg) != 2:
            raise DataError(f"{where}: segment {seg!r} is not [start, end]")
        out.append((to_seconds(seg[0], where), to_seconds(seg[1], where)))
    return out


# ----------------------------------------------------------------------------- readers
class Reader:
    """A source: its benchmark, classes, default grid, ambiguous segments and videos."""
    kind = ""
    classes: list
    benchmark = THUMOS14
    grid = SNIPPET_GRID
    annotation_file = ""
    ambiguous = None        # text of Ambiguous_test.txt, when the source has one
    removes_duplicates = False   # whether the source's own evaluator removes duplicate annotations

    def __len__(self):
        return 0

    def videos(self):
        raise NotImplementedError

    def signature(self):
        """What identifies this source in conversion.json (a resumed run must match it)."""
        return {"kind": self.kind, "benchmark": self.benchmark}

    def split_of(self, subset):
        """"train", "test", or the source's subset name when the benchmark does not use it."""
        subset = str(subset).lower()
        return SOURCE_SUBSETS[self.benchmark].get(subset, subset)


class WTALCReader(Reader):
    """W-TALC features and annotation folder (THUMOS14 "reduced", ActivityNet 1.2).
    Peak memory: the whole features file (a pickled object array)."""
    kind = "wtalc"

    def __init__(self, features, annotations, names="youtube", benchmark=None):
        if names not in ("youtube", "source"):
            raise ValueError(f"names must be 'youtube' or 'source', not {names!r}")
        self.features_path, self.folder = features, annotations
        self.benchmark = resolve_benchmark(benchmark, [features, annotations])
        if not os.path.isdir(annotations):
            raise DataError(f"annotation folder not found: {annotations}")
        self.annotation_file = os.path.join(annotations, "segments.npy")
        f = {}
        for key in ("videoname", "subset", "classlist", "segments", "labels"):
            f[key] = self._field(key, required=True)
        for key in ("labels_all", "duration", "original_fps", "url"):
            f[key] = self._field(key, required=False)
        self.classes = [to_str(c) for c in np.asarray(f["classlist"]).reshape(-1)]
        self.feats = load_pickled(features, "features file")
        if self.feats.dtype != object and self.feats.ndim != 3:
            raise DataError(f"{features}: expected a pickled array of per-video (L, 2048) arrays, "
                            f"got a {self.feats.dtype} array of shape {self.feats.shape}")
        self.names = [to_str(v) for v in np.asarray(f["videoname"]).reshape(-1)]
        n = len(self.feats)
        for key, arr in f.items():
            if arr is None or key == "classlist":
                continue
            if key == "duration":
                arr = np.asarray(arr)
                if arr.ndim == 2 and arr.shape[1] == 1:      # (N, 1) in THUMOS14, (N,) in ActivityNet
                    arr = arr[:, 0]
                if arr.ndim != 1:
                    raise DataError(f"{self._path(key)}: expected (N,) or (N, 1) durations, got shape {arr.shape}")
                f[key] = arr
            if len(arr) != n:
                first = self.names[min(len(arr), n, len(self.names) - 1)] if self.names else "?"
                raise DataError(f"{self._path(key)} has {len(arr)} rows but {features} has {n} videos "
                                f"(rows differ from video {first} on)")
        self.f = f
        self.rename = names == "youtube" and f["url"] is not None
        self.ambiguous = read_ambiguous(annotations)

    def _path(self, key):
        return os.path.join(self.folder, key + ".npy")

    def _field(self, key, required):
        path = self._path(key)
        if not os.path.isfile(path):
            if required:
                raise DataError(f"W-TALC annotation file not found: {path}")
            return None
        return load_pickled(path, "annotation file")

    def signature(self):
        return dict(super().signature(), features=os.path.basename(self.features_path))

    def __len__(self):
        return len(self.feats)

    def youtube_name(self, i):
        url = to_str(self.f["url"][i])
        vid = urllib.parse.parse_qs(urllib.parse.urlparse(str(url)).query).get("v", [None])[0]
        if not vid:
            m = re.search(r"(?:v=|youtu\.be/)([\w-]{6,})", str(url))
            vid = m.group(1) if m else None
        if not vid:
            raise DataError(f"{self._path('url')}: video {self.names[i]}: no YouTube id in {url!r}")
        return "v_" + vid

    def videos(self):
        f = self.f
        for i, source_name in enumerate(self.names):
            where = f"{self.annotation_file}: video {source_name}"
            segs = parse_segments(f["segments"][i], where)
            labs = [to_str(x) for x in list(f["labels"][i] if f["labels"][i] is not None else [])]
            if len(labs) != len(segs):
                raise DataError(f"{self._path('labels')}: video {source_name} has {len(labs)} labels "
                                f"for {len(segs)} segments in {self.annotation_file}")
            labels_all = None
            if f["labels_all"] is not None:
                la = f["labels_all"][i]
                labels_all = [to_str(x) for x in (list(la) if la is not None else [])]
            name = self.youtube_name(i) if self.rename else source_name
            duration = None
            if f["duration"] is not None:
                duration = to_seconds(f["duration"][i], f"{self._path('duration')}: video {source_name}")
            fps = None
            if f["original_fps"] is not None:
                fps = to_seconds(np.asarray(f["original_fps"][i]).reshape(-1)[0],
                                 f"{self._path('original_fps')}: video {source_name}")
            yield Video(name=name, split=self.split_of(to_str(f["subset"][i])),
                        annotations=[(lab, s, e) for lab, (s, e) in zip(labs, segs)],
                        source=self.features_path, load=lambda i=i: self.feats[i],
                        rows=lambda i=i: len(self.feats[i]), duration=duration, labels=labels_all,
                        fps=fps, source_name=source_name if name != source_name else None)


def npy_video(name, path, **kw):
    """A Video whose features are one .npy file (memory-mapped for its row count); a
    path that does not exist gives a Video without features."""
    ok = os.path.isfile(path)
    return Video(name=name, source=path, load=(lambda: npy_load(path)) if ok else None,
                 rows=(lambda: npy_rows(path)) if ok else None, **kw)


class ActionFormerReader(Reader):
    """ActionFormer's per-video feature files and annotation json (THUMOS14, or its
    ActivityNet 1.3 I3D set). One video in memory at a time. Its evaluator and loaders
    remove duplicate annotations (libs/utils/metrics.py): so does the conversion."""
    kind = "actionformer"
    removes_duplicates = True

    def __init__(self, features, annotations, file_prefix=None, benchmark=None):
        self.benchmark = resolve_benchmark(benchmark, [annotations])
        if not os.path.isdir(features):
            raise DataError(f"feature folder not found: {features}")
        self.features_dir, self.annotation_file, self.file_prefix = features, annotations, file_prefix
        _, self.db = read_database(annotations)
        ids = {}
        for video, v in self.db.items():
            for a in v.get("annotations", []):
                label = a.get("label")
                if "label_id" in a:
                    if ids.setdefault(label, a["label_id"]) != a["label_id"]:
                        raise DataError(f"{annotations}: video {video}: label {label!r} has label_id "
                                        f"{a['label_id']}, elsewhere {ids[label]}")
                else:
                    ids.setdefault(label, None)
        if ids and all(i is not None for i in ids.values()):
            order = sorted(ids, key=lambda c: ids[c])
            if sorted(ids.values()) != list(range(len(ids))):
                raise DataError(f"{annotations}: label_id values are not 0..{len(ids) - 1}")
            self.classes = order
        else:
            self.classes = sorted(ids)
        # THUMOS14: 16-frame windows every 4 frames at each video's fps; ActivityNet (I3D
        # config): 16-frame snippets at 25 fps, the release's grid.
        self.per_video_grid = self.benchmark == THUMOS14

    def signature(self):
        return dict(super().signature(), annotations=os.path.basename(self.annotation_file))

    def __len__(self):
        return len(self.db)

    def feature_file(self, video):
        prefixes = [self.file_prefix] if self.file_prefix is not None else ["", "v_"]
        for p in prefixes:
            path = os.path.join(self.features_dir, p + video + ".npy")
            if os.path.isfile(path):
                return path
        return os.path.join(self.features_dir, prefixes[0] + video + ".npy")

    def videos(self):
        for video, v in self.db.items():
            where = f"{self.annotation_file}: video {video}"
            anns, _, duration = json_annotations(v, where)
            fps = to_seconds(v["fps"], where) if v.get("fps") is not None else None
            grid = None
            if self.per_video_grid:
                if not fps or fps <= 0:
                    raise DataError(f"{where}: no valid 'fps', needed for the 4-frame grid of its features")
                grid = {"step": THUMOS_STRIDE / fps, "start": (THUMOS_WINDOW - THUMOS_STRIDE) / 2 / fps}
            yield npy_video(video, self.feature_file(video), split=self.split_of(v.get("subset", "")),
                            annotations=anns, duration=duration, grid=grid, fps=fps)


class ACMNetReader(Reader):
    """ACM-Net's folder: gt.json, split_train.txt, split_test.txt, train/<vid>.npy,
    test/<vid>.npy (concatenated (L, 2048) features). One video in memory at a time.
    Read to what ACM-Net's `dataset/dataset_class.py` expects: database[video]
    ["annotations"] ({"label", "segment"}) and ["duration"]; the split files decide train
    and evaluated videos (its gt.json subset field is not relied on)."""
    kind = "acmnet"

    def __init__(self, root, classes=None, benchmark=None):
        self.benchmark = resolve_benchmark(benchmark, [root])
        if not os.path.isdir(root):
            raise DataError(f"ACM-Net data folder not found: {root}")
        self.root = root
        self.annotation_file = os.path.join(root, "gt.json")
        _, self.db = read_database(self.annotation_file)
        self.splits = {s: read_split(os.path.join(root, f"split_{s}.txt"), "split file") for s in ("train", "test")}
        if classes:
            self.classes = list(classes)
        else:   # ACM-Net's class lists (config/model_config.py) are the sorted label names
            self.classes = sorted({a.get("label") for v in self.db.values() for a in v.get("annotations", [])})
        self.ambiguous = read_ambiguous(root)

    def signature(self):
        return dict(super().signature(), root=os.path.basename(os.path.normpath(self.root)))

    def __len__(self):
        return sum(len(v) for v in self.splits.values())

    def videos(self):
        for split, names in self.splits.items():
            split_file = os.path.join(self.root, f"split_{split}.txt")
            for video in names:
                if video not in self.db:
                    raise DataError(f"{split_file}: video {video} is absent from {self.annotation_file}")
                anns, _, duration = json_annotations(self.db[video], f"{self.annotation_file}: video {video}")
                yield npy_video(video, os.path.join(self.root, split, video + ".npy"), split=split,
                                annotations=anns, duration=duration)


class A2CLPTReader(Reader):
    """A2CL-PT's `feature_train.npy` / `feature_val.npy` (pickled dicts {video: (L, 2048)})
    and `annotation.json`. Read to what its `dataset.py` expects: database[video]
    ["annotations"] ({"label"} and, for temporally annotated videos, "segment"),
    "list_classes", "miscellany" {"fps_extracted", "len_feature_chunk"}, "set_ambiguous"
    {video: [[s, e], ...]}. As there, the feature file decides the split of the videos it
    holds; annotated videos of the json that no feature file holds take the split of their
    "subset" ("train" / "val"), so an evaluated one stays in the ground truth.
    protocol: "paper" (the classes and training videos with temporal annotations) or
    "a2clpt" (every class of list_classes and every training video; see the module
    docstring). Peak memory: one features file at a time."""
    kind = "a2clpt"

    def __init__(self, features, annotations, protocol="paper", benchmark=None):
        if isinstance(features, str):
            features = [features]
        if not 1 <= len(features) <= 2:
            raise ValueError("give the training features file, then the evaluated one")
        if protocol not in A2CLPT_PROTOCOLS:
            raise ValueError(f"protocol must be one of {A2CLPT_PROTOCOLS}, not {protocol!r}")
        self.benchmark = resolve_benchmark(benchmark, [os.path.dirname(os.path.abspath(annotations))])
        self.protocol = protocol
        self.files = []
        for i, path in enumerate(features):
            base = os.path.basename(path).lower()
            split = "train" if "train" in base else "test" if ("val" in base or "test" in base) else ("train", "test")[i]
            self.files.append((path, split))
        if len({s for _, s in self.files}) != len(self.files):
            raise DataError(f"{features[0]} and {features[1]} are both {self.files[0][1]} files "
                            "(give feature_train.npy and feature_val.npy)")
        self.annotation_file = annotations
        data, self.db = read_database(annotations)
        self.parsed = {}
        for video, v in self.db.items():
            self.parsed[video] = json_annotations(v, f"{annotations}: video {video}", label_only=True)
        listed = [to_str(c) for c in data["list_classes"]] if "list_classes" in data else None
        temporal = {label for anns, _, _ in self.parsed.values() for label, _, _ in anns}
        every = set(temporal) | {label for _, labels, _ in self.parsed.values() for label in labels}
        if protocol == "paper":
            self.classes = [c for c in listed if c in temporal] if listed else sorted(temporal)
        else:
            self.classes = listed or sorted(every)
        self.class_set = set(self.classes)
        misc = data.get("miscellany") or {}
        fps, chunk = misc.get("fps_extracted", FEATURE_FPS), misc.get("len_feature_chunk", SNIPPET_FRAMES)
        self.grid = {"step": float(chunk) / float(fps), "start": 0.0}
        amb = data.get("set_ambiguous")
        if amb:
            self.ambiguous = "".join(f"{video}  {to_seconds(s, annotations)} {to_seconds(e, annotations)}\n"
                                     for video in sorted(amb) for s, e in amb[video])
        self._count = None

    def signature(self):
        return dict(super().signature(), features=[os.path.basename(p) for p, _ in self.files],
                    protocol=self.protocol)

    def __len__(self):
        return self._count or 0

    def video(self, name, split, path, load=None, rows=None):
        if name not in self.parsed:
            return Video(name=name, split=split, annotations=[], source=path, load=load, rows=rows,
                         skip=f"not in {os.path.basename(self.annotation_file)}")
        anns, label_only, duration = self.parsed[name]
        video = Video(name=name, split=split, annotations=anns, source=path, load=load, rows=rows,
                      duration=duration)
        if label_only:
            if self.protocol == "paper" and not anns:
                video.skip = "label-only annotations (the paper protocol trains on temporally annotated videos)"
            labels = sorted({a[0] for a in anns} | set(label_only))
            outside = [c for c in labels if c not in self.class_set] if self.protocol == "paper" else []
            video.labels = [c for c in labels if c not in outside]
            video.dropped_labels = outside
        return video

    def videos(self):
        seen = set()
        for path, split in self.files:
            obj = load_pickled(path, "features file")
            feats = obj[()] if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0 else obj
            if not isinstance(feats, dict):
                raise DataError(f"{path}: expected a pickled dict {{video: (L, 2048) array}}, got {type(feats).__name__}")
            feats = {to_str(k): v for k, v in feats.items()}
            self._count = (self._count or 0) + len(feats)
            for name in sorted(feats):
                seen.add(name)
                yield self.video(name, split, path, load=lambda a=feats[name]: a, rows=lambda a=feats[name]: len(a))
            del feats, obj
        files = dict((s, p) for p, s in self.files)
        for name in sorted(set(self.parsed) - seen):
            split = A2CLPT_SUBSETS.get(str(self.db[name].get("subset", "")).lower(), self.db[name].get("subset"))
            self._count += 1
            yield self.video(name, split, files.get(split, self.annotation_file))


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


def check_out(out, reader, overwrite):
    """Refuse a file as the output folder, and writing over a user's annotations or another
    conversion."""
    check_folder_option(out, "--out", DataError)
    gt, record = os.path.join(out, "gt.json"), os.path.join(out, "conversion.json")
    if overwrite:
        return
    if os.path.exists(record):
        try:
            with open(record) as f:
                previous = json.load(f).get("source")
        except (OSError, ValueError):
            previous = None
        if previous != reader.signature():
            raise DataError(f"{out} holds a conversion of another source ({record}: {previous}); "
                            "choose another --out or pass --overwrite")
    elif os.path.exists(gt):
        raise DataError(f"{gt} exists and was not written by this converter; choose another --out "
                        "or pass --overwrite")


@dataclass
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
    class_index: set = field(default_factory=set)
    database: dict = field(default_factory=dict)
    split_lists: dict = field(default_factory=lambda: {"train": [], "test": []})
    grids: dict = field(default_factory=dict)


def convert(reader, out, exclude=RELEASE_LEFT_OUT, min_rows=MIN_ROWS, subsets=None, overwrite=False,
            progress=True, log=None, drop_missing=False):
    """Convert every video of `reader` into `out` (see the module docstring); returns a Report.
    subsets: {"train": name, "test": name} to override the subset names of gt.json.
    drop_missing: leave evaluated videos without usable features out of the ground truth.
    log: a callable taking one line (warnings); nothing is printed otherwise."""
    log = log or (lambda line: None)
    check_out(out, reader, overwrite)
    names = dict(preset_subsets(reader.benchmark), **(subsets or {}))
    report = Report(out=out, source=reader.signature(), benchmark=reader.benchmark, classes=list(reader.classes),
                    subsets=names, drop_missing=drop_missing)
    run = Conversion(reader, out, report, set(exclude or ()), min_rows, names, overwrite, drop_missing,
                     class_index=set(reader.classes))
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
    if not any(run.split_lists.values()):
        raise DataError(f"no video of {reader.annotation_file} could be converted "
                        f"(skipped: {', '.join(f'{k}: {len(v)}' for k, v in report.skipped.items()) or 'none'})")
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
    _write_annotations(run, grid)
    return report


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
    folder = os.path.join(run.out, "features", video.split)
    paths = [os.path.join(folder, s, video.name + ".npy") for s in ("rgb", "flow")]
    rows = video.rows()
    states = [existing_state(p, rows) for p in paths] if rows else ["missing", "missing"]
    bad = [p for p, st in zip(paths, states) if st == "other"]
    if bad and not run.overwrite:
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


def _convert_one(video, run):
    report, reader = run.report, run.reader
    if video.name in run.excluded or (video.source_name and video.source_name in run.excluded):
        report.excluded.append(video.name)
        return
    if video.skip:
        report.skip(video.skip, video.name)
        return
    if video.split not in ("train", "test"):
        report.skip(f"subset {video.split!r} not used", video.name)
        return
    if video.name in run.database:
        raise DataError(f"{reader.annotation_file}: video {video.name} appears twice"
                        + (f" (also as {video.source_name})" if video.source_name else ""))
    _check_labels(video, run)
    if not video.annotations and not video.labels:
        report.skip("no annotation", video.name)
        return
    rows, why = _features(video, run)
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


def _write_annotations(run, grid):
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
    save_json(os.path.join(out, "conversion.json"),
              dict(report.as_dict(), converter=CONVERTER, train_command=train_command(report)))


def train_command(report):
    """The main.py command that trains on the converted set and evaluates its evaluated
    subset with the benchmark's preset (tIoU thresholds included)."""
    command = f"python main.py --dataset {report.benchmark} --data_path {report.out}"
    preset = preset_subsets(report.benchmark)
    for split in ("train", "test"):
        if report.subsets[split] != preset[split]:
            command += f" --{split}_subset {report.subsets[split]}"
    return command
