"""ACM-Net's data folder (ispc-lab/ACM-Net; data/ActivityNet13 or data/THUMOS14) read as
videos for the conversion engine."""
import os

from dataset import DataError, read_split
from public_sets.common import Reader, json_annotations, npy_video, read_ambiguous, read_database, resolve_benchmark

HELP = "ACM-Net's data/ActivityNet13 (or data/THUMOS14) folder"


def add_arguments(add):
    add("--root", required=True, help="folder with gt.json, split_*.txt, train/, test/")
    add("--classes", help="class list file, one per line (default: sorted labels)")


def read(args):
    classes = read_split(args.classes, "class list") if args.classes else None
    return ACMNetReader(args.root, classes=classes, benchmark=args.dataset)


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
        self.given_classes = list(classes) if classes else None
        if classes:
            self.classes = list(classes)
        else:   # ACM-Net's class lists (config/model_config.py) are the sorted label names
            self.classes = sorted({a.get("label") for v in self.db.values() for a in v.get("annotations", [])})
        self.ambiguous = read_ambiguous(root)

    def sources(self):
        files = ["gt.json", "split_train.txt", "split_test.txt", "train", "test"]
        if self.ambiguous is not None:
            files.append("Ambiguous_test.txt")
        return [os.path.join(self.root, f) for f in files]

    def signature(self):
        return dict(super().signature(), classes=self.given_classes)

    def split_source(self, split):
        return os.path.join(self.root, f"split_{split}.txt")

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
