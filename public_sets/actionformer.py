"""ActionFormer's per-video I3D feature files and annotation json
(happyharrycn/actionformer_release; THUMOS14, ActivityNet 1.3) read as videos for the
conversion engine."""
import os

from dataset import SNIPPET_FRAMES, DataError
from public_sets.common import (THUMOS14, Reader, json_annotations, npy_video, read_database, resolve_benchmark,
                                to_seconds)

HELP = "ActionFormer I3D features (THUMOS14, ActivityNet 1.3)"

THUMOS_WINDOW, THUMOS_STRIDE = SNIPPET_FRAMES, 4   # ActionFormer THUMOS14: 16 frames every 4 frames


def add_arguments(add):
    add("--features", required=True, help="folder of <video>.npy (L, 2048)")
    add("--annotations", required=True, help="thumos14.json or the ActivityNet 1.3 json")
    add("--file_prefix", help="feature file name prefix (default: none, else v_ as in its ActivityNet config)")


def read(args):
    return ActionFormerReader(args.features, args.annotations, file_prefix=args.file_prefix,
                              benchmark=args.dataset)


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

    def sources(self):
        return [self.features_dir, self.annotation_file]

    def signature(self):
        return dict(super().signature(), file_prefix=self.file_prefix)

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
            subset = str(v.get("subset", ""))
            yield npy_video(video, self.feature_file(video), split=self.split_of(subset), subset=subset,
                            annotations=anns, duration=duration, grid=grid, fps=fps)
