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

Output (OUT):

    OUT/gt.json        {"database": {video: {...}}, "feature_grid": {"step": s, "start": s0}}
    OUT/classes.txt    the class names in the source's class index order
    OUT/split_train.txt, OUT/split_test.txt    training and evaluated videos, sorted
    OUT/features/{train,test}/{rgb,flow}/<video>.npy   (L, 1024) float32; columns 0-1023 of
                       the source's (L, 2048) rows are RGB, 1024-2047 flow
    OUT/Ambiguous_test.txt   beside gt.json when the source has ambiguous segments
    OUT/conversion.json      what was converted, skipped, clipped (and the source it came from)

Per video in gt.json's database: "subset"; "annotations": [{"label", "segment": [start_s,
end_s]}] (seconds, numbers); "duration" (seconds, when known); "labels" (video-level class
names, only where the source has a video-level field: W-TALC `labels_all`); "feature_grid"
(only where it differs per video: ActionFormer THUMOS14); "fps" (when the source gives the
video's frame rate); "source_name" (when the name was changed, e.g. W-TALC ActivityNet).

Time grid: feature vector i covers seconds [start + i*step, start + (i+1)*step). 16-frame
snippets at 25 fps (W-TALC, ACM-Net, A2CL-PT, ActionFormer ActivityNet): step 0.64, start 0.
ActionFormer THUMOS14: 16-frame windows every 4 frames at the video's own fps, window i
centred at (4 i + 8) / fps; the cell of width 4 / fps centred there gives step = 4 / fps,
start = 6 / fps.

Decisions on the quirks:
- Subsets are renamed so the presets work: THUMOS14 sets use "train" (the source's
  validation videos) and "test"; ActivityNet sets "training" and "validation". Videos of any
  other subset (ActivityNet "testing") are skipped and listed.
- The three THUMOS14 test videos the release leaves out (RELEASE_LEFT_OUT) are left out of
  every set by default (names absent from a set are ignored); `exclude=()` keeps them.
- W-TALC ActivityNet names (`video_<n>`) become `v_<YouTube id>` (from url.npy), the names
  of ACM-Net's set and of the official ground truth (whose evaluator strips `v_`); the
  old name is kept in "source_name". names="source" keeps `video_<n>`. Other sets keep
  their names (ActionFormer ActivityNet: bare ids, as in its json).
- Videos without any annotation (and without video-level labels) are skipped and listed,
  as the sources' own loaders do (A2CL-PT `_filter_vnames`).
- Feature rows: a video with no row, with only all-zero rows, or with fewer than
  `min_rows` (default 2) non-zero rows is skipped and listed (one vector gives no
  temporal extent to localise; `min_rows=6` reproduces 3C-Net's filter of ActivityNet,
  `video_dataset.py`). Zero rows inside a kept video are kept (they are time).
- A segment reaching past the video's duration is clipped to it (counted and listed); one
  starting at or after the duration is dropped (counted). A negative start becomes 0.
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

from dataset import (FEATURE_FPS, SECONDS_PER_SEGMENT, SNIPPET_FRAMES, DataError, classes_of,
                     load_json, read_split)
from utils import save_json, save_npy, save_text

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
SUBSET_NAMES = {"thumos": {"train": "train", "test": "test"},
                "activitynet": {"train": "training", "test": "validation"}}
CONVERTER = "feature_sets"


# ----------------------------------------------------------------------------- videos
@dataclass
class Video:
    """One video of a source, its features read on demand."""
    name: str                       # name in the output
    split: str                      # "train" or "test"
    annotations: list               # [(label, start_s, end_s)]
    source: str                     # the file holding its features (for messages)
    load: Callable                  # -> (L, 2048) array
    rows: Callable                  # -> L, cheaply where the source allows it
    duration: Optional[float] = None
    labels: Optional[list] = None   # video-level labels, where the source has them
    grid: Optional[dict] = None     # per-video grid, where it varies
    fps: Optional[float] = None
    source_name: Optional[str] = None


@dataclass
class Report:
    """What a conversion did; `skipped` maps a reason to the videos skipped for it."""
    out: str = ""
    source: str = ""
    converted: dict = field(default_factory=lambda: {"train": 0, "test": 0})
    resumed: int = 0
    skipped: dict = field(default_factory=dict)
    excluded: list = field(default_factory=list)
    clipped: dict = field(default_factory=dict)        # video -> number of segments clipped
    dropped_segments: dict = field(default_factory=dict)  # video -> segments past the end
    label_mismatch: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    subsets: dict = field(default_factory=dict)

    def skip(self, reason, video):
        self.skipped.setdefault(reason, []).append(video)

    def as_dict(self):
        return {k: getattr(self, k) for k in ("source", "converted", "resumed", "skipped", "excluded",
                                              "clipped", "dropped_segments", "label_mismatch", "subsets")}


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


def json_annotations(entry, where):
    """([(label, start, end)], duration or None) of one video of an ActivityNet-style json."""
    anns = [(a.get("label"), *parse_segments([a.get("segment")], where)[0]) for a in entry.get("annotations", [])]
    duration = to_seconds(entry["duration"], where) if entry.get("duration") is not None else None
    return anns, duration


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


def subset_table(values):
    """{source subset (lower case) -> "train" | "test"} and the naming ("thumos" or
    "activitynet") from the subset values of a source: ActivityNet sets have "training"
    (and evaluate on "validation"); THUMOS14 sets train on "validation" and test on "test"."""
    low = {str(v).lower() for v in values}
    if "training" in low:
        return {"training": "train", "validation": "test"}, "activitynet"
    return {"validation": "train", "test": "test"}, "thumos"


def naming_for(classes):
    return "thumos" if len(classes) == 20 else "activitynet"


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
    """A source: its classes, default grid, naming, ambiguous segments and videos."""
    kind = ""
    classes: list
    grid = SNIPPET_GRID
    naming = "thumos"
    annotation_file = ""
    ambiguous = None        # text of Ambiguous_test.txt, when the source has one

    def __len__(self):
        return 0

    def videos(self):
        raise NotImplementedError

    def signature(self):
        """What identifies this source in conversion.json (a resumed run must match it)."""
        return {"kind": self.kind}


class WTALCReader(Reader):
    """W-TALC features and annotation folder (THUMOS14 "reduced", ActivityNet 1.2).
    Peak memory: the whole features file (a pickled object array)."""
    kind = "wtalc"

    def __init__(self, features, annotations, names="youtube"):
        if names not in ("youtube", "source"):
            raise ValueError(f"names must be 'youtube' or 'source', not {names!r}")
        self.features_path, self.folder = features, annotations
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
        self.subsets, self.naming = subset_table(to_str(s) for s in f["subset"])
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
        return {"kind": self.kind, "features": os.path.basename(self.features_path)}

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
            subset = str(to_str(f["subset"][i])).lower()
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
            yield Video(name=name, split=self.subsets.get(subset, subset),
                        annotations=[(lab, s, e) for lab, (s, e) in zip(labs, segs)],
                        source=self.features_path, load=lambda i=i: self.feats[i],
                        rows=lambda i=i: len(self.feats[i]), duration=duration, labels=labels_all,
                        fps=fps, source_name=source_name if name != source_name else None)


class ActionFormerReader(Reader):
    """ActionFormer's per-video feature files and annotation json (THUMOS14, or its
    ActivityNet 1.3 I3D set). One video in memory at a time."""
    kind = "actionformer"

    def __init__(self, features, annotations, file_prefix=None):
        if not os.path.isdir(features):
            raise DataError(f"feature folder not found: {features}")
        self.features_dir, self.annotation_file, self.file_prefix = features, annotations, file_prefix
        _, self.db = read_database(annotations)
        self.subsets, self.naming = subset_table(v.get("subset", "") for v in self.db.values())
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
        self.per_video_grid = self.naming == "thumos"

    def signature(self):
        return {"kind": self.kind, "annotations": os.path.basename(self.annotation_file)}

    def __len__(self):
        return len(self.db)

    def feature_file(self, video):
        prefixes = [self.file_prefix] if self.file_prefix is not None else ["", "v_"]
        for p in prefixes:
            path = os.path.join(self.features_dir, p + video + ".npy")
            if os.path.isfile(path):
                return path
        return None

    def videos(self):
        for video, v in self.db.items():
            subset = str(v.get("subset", "")).lower()
            where = f"{self.annotation_file}: video {video}"
            anns, duration = json_annotations(v, where)
            fps = to_seconds(v["fps"], where) if v.get("fps") is not None else None
            grid = None
            if self.per_video_grid:
                if not fps or fps <= 0:
                    raise DataError(f"{where}: no valid 'fps', needed for the 4-frame grid of its features")
                grid = {"step": THUMOS_STRIDE / fps, "start": (THUMOS_WINDOW - THUMOS_STRIDE) / 2 / fps}
            path = self.feature_file(video)
            yield Video(name=video, split=self.subsets.get(subset, subset), annotations=anns,
                        source=path or os.path.join(self.features_dir, video + ".npy"),
                        load=(lambda p=path: npy_load(p)) if path else None,
                        rows=(lambda p=path: npy_rows(p)) if path else None,
                        duration=duration, grid=grid, fps=fps)


class ACMNetReader(Reader):
    """ACM-Net's folder: gt.json, split_train.txt, split_test.txt, train/<vid>.npy,
    test/<vid>.npy (concatenated (L, 2048) features). One video in memory at a time.
    Read to what ACM-Net's `dataset/dataset_class.py` expects: database[video]
    ["annotations"] ({"label", "segment"}) and ["duration"]; the split files decide train
    and evaluated videos (its gt.json subset field is not relied on)."""
    kind = "acmnet"

    def __init__(self, root, classes=None):
        if not os.path.isdir(root):
            raise DataError(f"ACM-Net data folder not found: {root}")
        self.root = root
        self.annotation_file = os.path.join(root, "gt.json")
        _, self.db = read_database(self.annotation_file)
        self.splits = {s: read_split(os.path.join(root, f"split_{s}.txt"), "split file") for s in ("train", "test")}
        if classes:
            self.classes = list(classes)
        else:   # ACM-Net's class lists (config/model_config.py) are the sorted label names
            self.classes = classes_of(self.db)
        self.naming = naming_for(self.classes)
        self.ambiguous = read_ambiguous(root)

    def signature(self):
        return {"kind": self.kind, "root": os.path.basename(os.path.normpath(self.root))}

    def __len__(self):
        return sum(len(v) for v in self.splits.values())

    def videos(self):
        for split, names in self.splits.items():
            split_file = os.path.join(self.root, f"split_{split}.txt")
            for video in names:
                if video not in self.db:
                    raise DataError(f"{split_file}: video {video} is absent from {self.annotation_file}")
                v = self.db[video]
                where = f"{self.annotation_file}: video {video}"
                anns, duration = json_annotations(v, where)
                path = os.path.join(self.root, split, video + ".npy")
                ok = os.path.isfile(path)
                yield Video(name=video, split=split, annotations=anns, source=path,
                            load=(lambda p=path: npy_load(p)) if ok else None,
                            rows=(lambda p=path: npy_rows(p)) if ok else None, duration=duration)


class A2CLPTReader(Reader):
    """A2CL-PT's `feature_train.npy` / `feature_val.npy` (pickled dicts {video: (L, 2048)})
    and `annotation.json`. Read to what its `dataset.py` expects: database[video]
    ["annotations"] ({"label", "segment"}), "list_classes", "miscellany" {"fps_extracted",
    "len_feature_chunk"}, "set_ambiguous" {video: [[s, e], ...]}. As there, the feature file
    decides the split (not the json's subset). Peak memory: one features file at a time."""
    kind = "a2clpt"

    def __init__(self, features, annotations):
        if isinstance(features, str):
            features = [features]
        if not 1 <= len(features) <= 2:
            raise ValueError("give the training features file, then the evaluated one")
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
        if "list_classes" in data:
            self.classes = [to_str(c) for c in data["list_classes"]]
        else:
            self.classes = classes_of(self.db)
        misc = data.get("miscellany") or {}
        fps, chunk = misc.get("fps_extracted", FEATURE_FPS), misc.get("len_feature_chunk", SNIPPET_FRAMES)
        self.grid = {"step": float(chunk) / float(fps), "start": 0.0}
        self.naming = naming_for(self.classes)
        amb = data.get("set_ambiguous")
        if amb:
            self.ambiguous = "".join(f"{video}  {to_seconds(s, annotations)} {to_seconds(e, annotations)}\n"
                                     for video in sorted(amb) for s, e in amb[video])
        self._count = None

    def signature(self):
        return {"kind": self.kind, "features": [os.path.basename(p) for p, _ in self.files]}

    def __len__(self):
        return self._count or 0

    def videos(self):
        for path, split in self.files:
            obj = load_pickled(path, "features file")
            feats = obj[()] if isinstance(obj, np.ndarray) and obj.dtype == object and obj.ndim == 0 else obj
            if not isinstance(feats, dict):
                raise DataError(f"{path}: expected a pickled dict {{video: (L, 2048) array}}, got {type(feats).__name__}")
            feats = {to_str(k): v for k, v in feats.items()}
            self._count = (self._count or 0) + len(feats)
            for video in sorted(feats):
                v = self.db.get(video)
                if v is None:
                    yield Video(name=video, split=split, annotations=None, source=path, load=None, rows=None)
                    continue
                anns, duration = json_annotations(v, f"{self.annotation_file}: video {video}")
                yield Video(name=video, split=split, annotations=anns, source=path,
                            load=lambda a=feats[video]: a, rows=lambda a=feats[video]: len(a), duration=duration)
            del feats, obj


# ----------------------------------------------------------------------------- writing
def clip_segments(anns, duration):
    """Segments clipped to [0, duration]: (kept, number clipped, number dropped)."""
    kept, clipped, dropped = [], 0, 0
    for label, s, e in anns:
        if duration is not None:
            if s >= duration:
                dropped += 1
                continue
            if e > duration:
                e, clipped = duration, clipped + 1
        if s < 0:
            s, clipped = 0.0, clipped + 1
        kept.append((label, s, e))
    return kept, clipped, dropped


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
    """Refuse to write over a user's annotations or another conversion."""
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


def convert(reader, out, exclude=RELEASE_LEFT_OUT, min_rows=MIN_ROWS, subsets=None, overwrite=False,
            progress=True, log=None):
    """Convert every video of `reader` into `out` (see the module docstring); returns a Report.
    subsets: {"train": name, "test": name} to override the subset names of gt.json.
    log: a callable taking one line (warnings); nothing is printed otherwise."""
    log = log or (lambda line: None)
    check_out(out, reader, overwrite)
    names = dict(SUBSET_NAMES[reader.naming], **(subsets or {}))
    report = Report(out=out, source=reader.signature(), classes=list(reader.classes), subsets=names)
    class_index = set(reader.classes)
    excluded = set(exclude or ())
    database, split_lists = {}, {"train": [], "test": []}
    grids = {}
    bar = tqdm(total=len(reader) or None, desc=f"converting ({reader.kind})", unit="video",
               disable=not progress) if tqdm else None
    try:
        for video in reader.videos():
            if bar is not None:
                if len(reader) and bar.total != len(reader):
                    bar.total = len(reader)
                bar.update(1)
            _convert_one(video, reader, out, report, database, split_lists, grids, class_index,
                         excluded, min_rows, names, overwrite)
    finally:
        if bar is not None:
            bar.close()
    if not any(split_lists.values()):
        raise DataError(f"no video of {reader.annotation_file} could be converted "
                        f"(skipped: {', '.join(f'{k}: {len(v)}' for k, v in report.skipped.items()) or 'none'})")
    grid = _top_grid(reader, grids)
    for video, g in grids.items():
        if g != grid:
            database[video]["feature_grid"] = g
    if report.label_mismatch:
        log(f"warning: {len(report.label_mismatch)} video(s) whose video-level labels differ from their "
            f"segment labels (the video-level ones are kept as training labels): "
            f"{', '.join(report.label_mismatch)}")
    for reason, videos in report.skipped.items():
        log(f"warning: skipped {len(videos)} video(s) ({reason}): {', '.join(videos[:20])}"
            + (", ... (all in conversion.json)" if len(videos) > 20 else ""))
    _write_annotations(out, reader, report, database, split_lists, grid)
    return report


def _convert_one(video, reader, out, report, database, split_lists, grids, class_index, excluded,
                 min_rows, names, overwrite):
    if video.name in excluded or (video.source_name and video.source_name in excluded):
        report.excluded.append(video.name)
        return
    if video.annotations is None:
        report.skip(f"not in {os.path.basename(reader.annotation_file)}", video.name)
        return
    if video.split not in ("train", "test"):
        report.skip(f"subset {video.split!r} not used", video.name)
        return
    if video.name in database:
        raise DataError(f"{reader.annotation_file}: video {video.name} appears twice"
                        + (f" (also as {video.source_name})" if video.source_name else ""))
    for label in [a[0] for a in video.annotations] + list(video.labels or []):
        if label not in class_index:
            raise DataError(f"{reader.annotation_file}: video {video.source_name or video.name}: "
                            f"label {label!r} is not in the class list")
    for label, s, e in video.annotations:
        if e < s:
            raise DataError(f"{reader.annotation_file}: video {video.source_name or video.name}: "
                            f"{label} segment ends ({e}) before it starts ({s})")
    if not video.annotations and not video.labels:
        report.skip("no annotation", video.name)
        return
    if video.load is None:
        report.skip("no feature file", video.name)
        return
    anns, clipped, dropped = clip_segments(video.annotations, video.duration)
    folder = os.path.join(out, "features", video.split)
    paths = [os.path.join(folder, s, video.name + ".npy") for s in ("rgb", "flow")]
    rows = video.rows()
    states = [existing_state(p, rows) for p in paths] if rows else ["missing", "missing"]
    bad = [p for p, st in zip(paths, states) if st == "other"]
    if bad and not overwrite:
        raise DataError(f"{bad[0]} exists but is not the (L={rows}, {STREAM_WIDTH}) float32 array this "
                        f"conversion writes for video {video.name}; remove it or pass --overwrite")
    if all(st == "complete" for st in states):
        report.resumed += 1
    else:
        feats = check_features(video.load(), video)
        if feats.shape[0] == 0:
            report.skip("no feature row", video.name)
            return
        nonzero = int((np.abs(feats).max(axis=1) > 0).sum())
        if nonzero == 0:
            report.skip("all feature rows zero", video.name)
            return
        if nonzero < min_rows:
            report.skip(f"fewer than {min_rows} non-zero feature rows", video.name)
            return
        for path, state, cols in zip(paths, states, (slice(0, STREAM_WIDTH), slice(STREAM_WIDTH, FEATURE_WIDTH))):
            if state != "complete":
                save_npy(path, feats[:, cols])
    if clipped:
        report.clipped[video.name] = clipped
    if dropped:
        report.dropped_segments[video.name] = dropped
    if video.labels is not None and set(video.labels) != {a[0] for a in video.annotations}:
        report.label_mismatch.append(video.name)
    entry = {"subset": names[video.split],
             "annotations": [{"label": label, "segment": [s, e]} for label, s, e in anns]}
    if video.duration is not None:
        entry["duration"] = video.duration
    if video.labels is not None:
        entry["labels"] = list(video.labels)
    if video.fps is not None:
        entry["fps"] = video.fps
    if video.source_name:
        entry["source_name"] = video.source_name
    database[video.name] = entry
    grids[video.name] = video.grid or dict(reader.grid)
    split_lists[video.split].append(video.name)
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


def _write_annotations(out, reader, report, database, split_lists, grid):
    train = set(split_lists["train"])
    order = sorted(database, key=lambda v: (v not in train, v))
    gt = {"database": {v: database[v] for v in order}, "feature_grid": grid}
    save_text(os.path.join(out, "classes.txt"), "".join(c + "\n" for c in reader.classes))
    for split in ("train", "test"):
        save_text(os.path.join(out, f"split_{split}.txt"), "".join(v + "\n" for v in sorted(split_lists[split])))
    if reader.ambiguous is not None:
        save_text(os.path.join(out, "Ambiguous_test.txt"), reader.ambiguous)
    save_json(os.path.join(out, "gt.json"), gt, indent=None)
    save_json(os.path.join(out, "conversion.json"), dict(report.as_dict(), converter=CONVERTER))


def preset_for(classes):
    """The main.py preset whose protocol fits a converted set (by its class count)."""
    return {20: "thumos14", 100: "anet12", 200: "anet13"}.get(len(classes), "custom")


def train_command(report):
    return f"python main.py --dataset {preset_for(report.classes)} --data_path {report.out}"
