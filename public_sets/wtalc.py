"""W-TALC's feature file and annotation folder (sujoyp/wtalc-pytorch; THUMOS14 "reduced",
ActivityNet 1.2) read as videos for the conversion engine."""
import os
import re
import urllib.parse

import numpy as np

from dataset import DataError
from public_sets.common import (Reader, Video, load_pickled, npy_header, parse_segments, read_ambiguous,
                                resolve_benchmark, to_seconds, to_str)

HELP = "W-TALC files (THUMOS14 reduced, ActivityNet 1.2)"


def add_arguments(add):
    add("--features", required=True, help="<Set>-I3D-JOINTFeatures.npy")
    add("--annotations", required=True, help="<Set>-Annotations folder")
    add("--names", choices=["youtube", "source"], default="youtube",
        help="ActivityNet: name videos v_<YouTube id> (from url.npy) or keep video_<n>")


def read(args):
    return WTALCReader(args.features, args.annotations, names=args.names, benchmark=args.dataset)


class WTALCReader(Reader):
    """W-TALC features and annotation folder (THUMOS14 "reduced", ActivityNet 1.2).
    The features file is read when the first video's features are (its header says how many
    videos it holds); peak memory: that whole file (a pickled object array)."""
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
        shape, dtype = npy_header(features, "features file")
        if dtype != object and len(shape) != 3:
            raise DataError(f"{features}: expected a pickled array of per-video (L, 2048) arrays, "
                            f"got a {dtype} array of shape {shape}")
        self._feats = None
        self.names = [to_str(v) for v in np.asarray(f["videoname"]).reshape(-1)]
        self.count = n = shape[0] if shape else 0
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

    @property
    def feats(self):
        """The (N,) object array of per-video features, read once, when first needed."""
        if self._feats is None:
            self._feats = load_pickled(self.features_path, "features file")
        return self._feats

    def sources(self):
        return [self.features_path, self.folder]

    def signature(self):
        return dict(super().signature(), names="youtube" if self.rename else "source")

    def __len__(self):
        return self.count

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
            subset = to_str(f["subset"][i])
            yield Video(name=name, split=self.split_of(subset), subset=subset,
                        annotations=[(lab, s, e) for lab, (s, e) in zip(labs, segs)],
                        source=self.features_path, load=lambda i=i: self.feats[i],
                        rows=lambda i=i: len(self.feats[i]), duration=duration, labels=labels_all,
                        fps=fps, source_name=source_name if name != source_name else None)
