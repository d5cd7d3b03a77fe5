"""A2CL-PT's feature dictionaries and annotation.json (MichiganCOG/A2CL-PT; THUMOS14, and
ActivityNet 1.3 files as its loader reads them) read as videos for the conversion engine."""
import os

import numpy as np

from dataset import FEATURE_FPS, SNIPPET_FRAMES, DataError
from public_sets.common import (Reader, Video, json_annotations, load_pickled, read_database, resolve_benchmark,
                                to_seconds, to_str)

HELP = "A2CL-PT feature_train.npy / feature_val.npy + annotation.json"

A2CLPT_PROTOCOLS = ("paper", "a2clpt")
A2CLPT_SUBSETS = {"train": "train", "val": "test"}   # annotation.json "subset" -> split


def add_arguments(add):
    add("--features", required=True, nargs="+", help="feature_train.npy feature_val.npy")
    add("--annotations", required=True, help="annotation.json")
    add("--protocol", choices=A2CLPT_PROTOCOLS, default="paper",
        help="paper: the classes and training videos with temporal annotations (THUMOS14: 20 classes, 200 "
             "videos, the paper's Table 1); a2clpt: A2CL-PT's own training, every class of list_classes and "
             "every training video (label-only annotations as video-level labels)")


def read(args):
    if len(args.features) > 2:
        raise DataError("a2clpt: give at most two feature files (feature_train.npy feature_val.npy)")
    return A2CLPTReader(args.features, args.annotations, protocol=args.protocol, benchmark=args.dataset)


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

    def sources(self):
        return [p for p, _ in self.files] + [self.annotation_file]

    def signature(self):
        return dict(super().signature(), protocol=self.protocol)

    def split_source(self, split):
        given = [p for p, s in self.files if s == split]
        subset = next(k for k, v in A2CLPT_SUBSETS.items() if v == split)
        return given[0] if given else f"the '{subset}' videos of {self.annotation_file} (no features file given)"

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
