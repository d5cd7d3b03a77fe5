"""Reading a dataset in the authors' release layout, checking it, and sampling segments.

    DATA/gt.json                                  annotations ({"database": {video: ...}})
    DATA/split_train.txt, DATA/split_test.txt     one video id per line
    DATA/features/{train,test}/{rgb,flow}/<video>.npy   (L, D) per stream, equal L
    DATA/classes.txt                              optional: the class list, one per line

Optional fields, written by scripts/convert_features.py for the public feature sets:
gt.json's "feature_grid": {"step": s, "start": s0} (the dataset's time grid: feature
vector i covers [s0 + i s, s0 + (i + 1) s) seconds; default 16 / 25 and 0, the release's
16-frame segments at 25 fps), the same per video to override it, and a video's "labels":
its video-level classes, which training uses instead of those of its annotations.

Everything is checked before training starts, and a problem is reported with the file
or video at fault (DataError). Features are read once: into memory when they fit in
--max_memory_gb, memory-mapped otherwise.
"""
import json
import math
import os
from typing import NamedTuple

import numpy as np
import torch

from utils import UserError

FEATURE_FPS = 25                # the release's grid: non-overlapping 16-frame segments of 25 fps video
SNIPPET_FRAMES = 16
SECONDS_PER_SEGMENT = SNIPPET_FRAMES / FEATURE_FPS
STREAMS = ("rgb", "flow")     # the release's two feature streams, in the order they are concatenated
I3D_WIDTH = 1024               # the width of one I3D stream's feature vector (the final average pool)

# The 20 THUMOS14 classes in index order (alphabetical), as the release's class list.
THUMOS14_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving", "CricketBowling",
    "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow", "HighJump", "JavelinThrow",
    "LongJump", "PoleVault", "Shotput", "SoccerPenalty", "TennisSwing", "ThrowDiscus", "VolleyballSpiking"]


class Grid(NamedTuple):
    """The time grid of a video's features: vector i covers [start + i step, start + (i+1) step) s."""
    step: float = SECONDS_PER_SEGMENT
    start: float = 0.0


class DataError(UserError):
    """The dataset on disk cannot be used as it is; the message names the file or video."""


# ----------------------------------------------------------------------------- sampling
SAMPLINGS = ("release", "stratified")


def sample_train_indices(length, num_segments, rng, sampling="release"):
    """T segment indices of a video of L segments for one training sample.

    release: the authors' `random_perturb`. With s_i = i L / T, bin i < T - 1 draws uniformly
      among the integers floor(s_i) .. floor(s_{i+1}) (both ends included) and the last bin
      among floor(s_{T-1}) .. L - 1; L == T takes every segment. A bin that crosses an
      integer picks one of its segments at random, so short videos (L < T) vary too; for
      L > T neighbouring bins may pick the same index.
    stratified: for L >= T, one index drawn uniformly among the integers inside each bin
      [i L / T, (i+1) L / T) (no index repeats); for L < T, the segment under a jittered
      position floor((i + u) L / T), u uniform in [0, 1)."""
    if length == num_segments:
        return np.arange(length)
    bins = np.arange(num_segments, dtype=np.int64)
    u = rng.random(num_segments)
    if sampling == "release":
        lo = (bins * length) // num_segments                     # floor(s_i), exact
        hi = np.append(((bins[1:]) * length) // num_segments, length - 1)  # inclusive
        return lo + np.floor(u * (hi - lo + 1)).astype(np.int64)
    if sampling != "stratified":
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    if length < num_segments:
        return np.floor((bins + u) * length / num_segments).astype(np.int64)
    lo = -((-bins * length) // num_segments)             # ceil(i L / T)
    hi = -((-(bins + 1) * length) // num_segments)       # ceil((i+1) L / T), exclusive
    return lo + np.floor(u * (hi - lo)).astype(np.int64)


def sample_test_indices(length, num_segments):
    """Uniform sampling, floor(i L / T), as in the release."""
    return (np.arange(num_segments, dtype=np.int64) * length) // num_segments


# ----------------------------------------------------------------------------- files
def load_json(path, what):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not valid JSON: {e}") from None


def read_split(path, what="split file"):
    try:
        with open(path) as f:
            return [line.strip() for line in f if line.strip()]
    except FileNotFoundError:
        raise DataError(f"{what} not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not a text file ({type(e).__name__})") from None


def read_class_list(path):
    classes = read_split(path, "class list")
    if len(set(classes)) != len(classes):
        raise DataError(f"class list {path} names a class twice")
    return classes


def load_gt(data_path):
    """gt.json: {"database": {video: {"subset": ..., "annotations": [{"segment", "label"}]}}, ...}."""
    path = os.path.join(data_path, "gt.json")
    gt = load_json(path, "annotation file")
    if not isinstance(gt, dict) or not isinstance(gt.get("database"), dict):
        raise DataError(f"{path} has no 'database' object")
    return gt


def load_annotations(data_path):
    """gt.json's database."""
    return load_gt(data_path)["database"]


def dataset_classes(data_path, class_list=None, database=None):
    """The class list: --class_list, else DATA/classes.txt, else the sorted labels of gt.json."""
    own = os.path.join(data_path, "classes.txt")
    if class_list or os.path.isfile(own):
        return read_class_list(class_list or own)
    classes = classes_of(database if database is not None else load_annotations(data_path))
    if not classes:
        raise DataError(f"{os.path.join(data_path, 'gt.json')} holds no annotation")
    return classes


def classes_of(database):
    """The class list of a gt.json database: its labels in alphabetical order."""
    return sorted({a.get("label") for v in database.values() for a in v.get("annotations", [])}
                  | {label for v in database.values() for label in v.get("labels", [])})


def video_labels(database, video, index, gt_path):
    """The class indices (index: label -> class index) of one video: its video-level
    "labels" when gt.json has them, else the labels of its annotations."""
    entry = database[video]
    names = entry["labels"] if "labels" in entry else [a.get("label") for a in entry.get("annotations", [])]
    labels = set()
    for label in names:
        if label not in index:
            raise DataError(f"{gt_path}: video {video} has label {label!r}, which is not in the class list")
        labels.add(index[label])
    return sorted(labels)


def read_grid(value, where):
    """A Grid from a gt.json "feature_grid" object."""
    try:
        grid = Grid(float(value["step"]), float(value.get("start", 0.0)))
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{where}: feature_grid must be {{\"step\": seconds, \"start\": seconds}}, got {value!r}") from None
    if not (math.isfinite(grid.step) and grid.step > 0 and math.isfinite(grid.start)):
        raise DataError(f"{where}: feature_grid {value!r} needs a finite step > 0 and a finite start")
    return grid


def video_grids(gt, names, gt_path):
    """The Grid of each video: its own "feature_grid", else gt.json's, else the release's."""
    default = read_grid(gt["feature_grid"], gt_path) if "feature_grid" in gt else Grid()
    database = gt["database"]
    return [read_grid(database[v]["feature_grid"], f"{gt_path}, video {v}")
            if "feature_grid" in database[v] else default for v in names]


def npy_shape(path):
    """Shape of a .npy file from its header alone (fast, nothing is read)."""
    if not os.path.isfile(path):
        raise DataError(f"missing feature file: {path}")
    if os.path.getsize(path) == 0:
        raise DataError(f"empty feature file: {path}")
    try:
        arr = np.load(path, mmap_mode="r")
    except Exception as e:  # numpy raises several kinds for a broken file
        raise DataError(f"not a valid .npy file: {path} ({e})") from None
    if arr.ndim != 2 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"feature file {path} holds a {arr.dtype} array of shape {arr.shape};"
                        " expected a non-empty float array (segments, width)")
    return arr.shape


# ----------------------------------------------------------------------------- videos
class FeatureStore:
    """Features of a set of videos. In memory: one (sum L, F) tensor and offsets, so a
    batch is one index operation (on the GPU too, after .to(device)). Memory-mapped:
    one array per video, gathered per video."""

    def __init__(self, lengths, flat=None, arrays=None):
        """flat: (sum L, F) float32 array of all videos in order (in memory), or
        arrays: one memory-mapped (L, F) array per video."""
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.in_memory = flat is not None
        if self.in_memory:
            self.offsets = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
            self.flat = torch.from_numpy(flat)
        else:
            self.arrays = arrays

    @classmethod
    def from_arrays(cls, arrays):
        """An in-memory store of a few (L, F) arrays."""
        return cls([a.shape[0] for a in arrays], flat=np.concatenate(arrays).astype(np.float32, copy=False))

    @property
    def device(self):
        return self.flat.device if self.in_memory else torch.device("cpu")

    def to(self, device):
        if self.in_memory:
            self.flat = self.flat.to(device)
        return self

    def move_if_fits(self, device, fraction=0.5):
        """Keep in-memory features on the GPU when they take at most `fraction` of its free
        memory, so that batches are gathered there without a host-to-device copy."""
        if device.type == "cuda" and self.in_memory and self.device.type != "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if self.flat.numel() * 4 < fraction * free:
                self.to(device)
        return self

    def gather(self, videos, indices):
        """videos: (B,) video indices; indices: (B, T) segment indices -> (B, T, F)."""
        if self.in_memory:
            flat = torch.from_numpy(self.offsets[videos][:, None] + indices).to(self.flat.device)
            return self.flat[flat]
        return torch.from_numpy(np.stack([np.asarray(self.arrays[v][i], dtype=np.float32)
                                          for v, i in zip(videos, indices)]))


class VideoSet:
    """The videos of one split: ids, multi-hot labels, real lengths, time grids and features."""

    def __init__(self, names, labels, store, feature_dim, grids=None):
        self.names = list(names)
        self.labels = labels            # (N, C) float32 multi-hot
        self.store = store
        self.lengths = store.lengths    # real number of segments per video
        self.feature_dim = feature_dim
        self.grids = list(grids) if grids is not None else [Grid()] * len(self.names)

    def seconds(self, v):
        """Duration in seconds covered by the features of video v."""
        return float(self.lengths[v]) * self.grids[v].step

    def __len__(self):
        return len(self.names)


def feature_file(data_path, split, stream, video):
    """The release layout's file of one video's features of one stream."""
    return os.path.join(data_path, "features", split, stream, video + ".npy")


def stream_files(data_path, split, modal, video):
    streams = list(STREAMS) if modal == "all" else [modal]
    return [feature_file(data_path, split, s, video) for s in streams]


def scan_videos(data_path, split, modal, names):
    """Header check of every feature file: presence, format, equal stream lengths and one
    feature width for all videos. Returns the lengths and the width."""
    lengths, width, first = [], None, None
    for video in names:
        shapes = [(f, npy_shape(f)) for f in stream_files(data_path, split, modal, video)]
        if len({s[0] for _, s in shapes}) > 1:
            detail = ", ".join(f"{f}: {s[0]}" for f, s in shapes)
            raise DataError(f"video {video}: rgb and flow have different lengths ({detail})")
        w = sum(s[1] for _, s in shapes)
        if width is None:
            width, first = w, video
        elif w != width:
            raise DataError(f"video {video} has feature width {w}, but {first} has {width}:"
                            " all videos must have the same width")
        lengths.append(shapes[0][1][0])
    return np.array(lengths, dtype=np.int64), width


def map_features(data_path, split, modal, video):
    """Memory maps of a video's streams, indexed like their concatenation along the width."""
    arrays = [np.load(f, mmap_mode="r") for f in stream_files(data_path, split, modal, video)]
    return arrays[0] if len(arrays) == 1 else _ConcatStreams(arrays)


def read_features_into(out, data_path, split, modal, video):
    """Read a video's streams side by side into `out` (L, F): no intermediate copy."""
    col = 0
    for f in stream_files(data_path, split, modal, video):
        a = np.load(f)
        out[:, col:col + a.shape[1]] = a
        col += a.shape[1]
    return out


class _ConcatStreams:
    """Two memory-mapped streams that index like their concatenation along the width."""

    def __init__(self, arrays):
        self.arrays = arrays
        self.shape = (arrays[0].shape[0], sum(a.shape[1] for a in arrays))

    def __getitem__(self, idx):
        return np.concatenate([np.asarray(a[idx], dtype=np.float32) for a in self.arrays], axis=-1)


def all_finite(feats):
    streams = feats.arrays if isinstance(feats, _ConcatStreams) else [feats]
    return all(np.isfinite(a).all() for a in streams)


def load_split(data_path, split_name, *, gt, classes, modal, max_bytes, skip_bad, require_labels):
    """Read and check one split (train or test); returns a VideoSet."""
    split_file = os.path.join(data_path, f"split_{split_name}.txt")
    gt_path = os.path.join(data_path, "gt.json")
    database = gt["database"]
    names = read_split(split_file)
    if not names:
        raise DataError(f"split file {split_file} lists no video")
    seen = set()
    twice = [v for v in names if v in seen or seen.add(v)]
    if twice:
        raise DataError(f"split file {split_file} lists video {twice[0]} more than once"
                        f" ({len(twice)} repeated line(s)): each video must appear once")
    missing = [v for v in names if v not in database]
    if missing:
        raise DataError(f"{split_file} names {len(missing)} video(s) absent from {gt_path}, e.g. {missing[0]}")
    labels = np.zeros((len(names), len(classes)), dtype=np.float32)
    index = {c: i for i, c in enumerate(classes)}
    for i, video in enumerate(names):
        idx = video_labels(database, video, index, gt_path)
        if require_labels and not idx:
            raise DataError(f"training video {video} has no annotation in {gt_path}: "
                            "weak supervision needs at least one label per video")
        labels[i, idx] = 1
    grids = video_grids(gt, names, gt_path)
    lengths, width = scan_videos(data_path, split_name, modal, names)
    mmap = int(lengths.sum()) * width * 4 > max_bytes
    # In memory: every video is read straight into its rows of one array (the memory is
    # taken once); memory-mapped: the files are read through once for the NaN/Inf check.
    flat = None if mmap else np.empty((int(lengths.sum()), width), dtype=np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)])
    arrays, bad = [], []
    for i, video in enumerate(names):
        if mmap:
            feats = map_features(data_path, split_name, modal, video)
            arrays.append(feats)
        else:
            feats = read_features_into(flat[starts[i]:starts[i + 1]], data_path, split_name, modal, video)
        if not all_finite(feats):
            if not skip_bad:
                raise DataError(f"video {video}: features hold NaN or Inf "
                                f"({', '.join(stream_files(data_path, split_name, modal, video))}); "
                                "use --skip_bad_videos to leave such videos out")
            bad.append(i)
    keep = sorted(set(range(len(names))) - set(bad))
    if bad:
        print(f"warning: skipped {len(bad)} {split_name} video(s) with NaN/Inf features: "
              f"{', '.join(names[i] for i in bad)}")
    if not keep:
        raise DataError(f"no usable video left in {split_file}")
    if mmap:
        store = FeatureStore(lengths[keep], arrays=[arrays[i] for i in keep])
    else:
        if bad:  # rare: copy the rows of the good videos
            flat = np.concatenate([flat[starts[i]:starts[i + 1]] for i in keep])
        store = FeatureStore(lengths[keep], flat=flat)
    return VideoSet([names[i] for i in keep], labels[keep], store, width, [grids[i] for i in keep])


def load_dataset(cfg, splits=("train", "test")):
    """The class list and the train and test VideoSets (None when not in splits) of cfg.data_path."""
    gt = load_gt(cfg.data_path)
    classes = dataset_classes(cfg.data_path, cfg.class_list, gt["database"])
    max_bytes = cfg.max_memory_gb * 2 ** 30
    sets = {}
    for split in splits:
        sets[split] = load_split(cfg.data_path, split, gt=gt, classes=classes, modal=cfg.modal, max_bytes=max_bytes,
                                 skip_bad=cfg.skip_bad_videos, require_labels=split == "train")
    widths = {s.feature_dim for s in sets.values()}
    if len(widths) > 1:
        raise DataError(f"train and test features differ in width ({sorted(widths)})")
    return classes, sets.get("train"), sets.get("test")


def has_features(data_path):
    """gt.json and a features/ folder: the annotations alone (shipped for THUMOS14) are not a dataset."""
    return os.path.isfile(os.path.join(data_path, "gt.json")) and os.path.isdir(os.path.join(data_path, "features"))


def describe_missing_data(data_path):
    """The message shown when the dataset folder has no features."""
    what = ("the folder has the annotations but no features/ folder"
            if os.path.isfile(os.path.join(data_path, "gt.json"))
            else "this is a file, not a folder" if os.path.isfile(data_path) else "the folder does not exist")
    return (f"no dataset at {data_path}: {what}. Expected gt.json, split_train.txt, split_test.txt and "
            f"features/{{train,test}}/{{rgb,flow}}/<video>.npy there (see README, 'Data'). "
            f"Point --data_path at your copy of the features, or try the generated demo: "
            f"python main.py --dataset synthetic")


# ----------------------------------------------------------------------------- batches
class TrainBatches(torch.utils.data.Dataset):
    """Item s is the whole training batch of step s: a pure function of (seed, s), so the
    batches do not depend on the number of DataLoader workers or processes, and a resumed
    run sees the same batches as an uninterrupted one.

    Videos are visited in a fresh random order every epoch; batches are consecutive
    chunks of that endless stream (so every batch is full). Each sampled video gets its
    own generator seeded by (seed, step, position in batch)."""

    def __init__(self, videos: VideoSet, batch_size, num_segments, seed, *, rank=0, world_size=1,
                 sampling="release"):
        if batch_size % world_size:
            raise ValueError(f"--batch_size {batch_size} is not divisible by the {world_size} processes")
        self.videos, self.batch_size, self.T, self.seed = videos, batch_size, num_segments, seed
        self.rank, self.world_size, self.sampling = rank, world_size, sampling
        self._orders = {}

    def epoch_order(self, epoch):
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, 1, epoch]).permutation(len(self.videos))}
        return self._orders[epoch]

    def batch_videos(self, step):
        """Video indices of the global batch of a step."""
        n = len(self.videos)
        positions = step * self.batch_size + np.arange(self.batch_size)
        return np.array([self.epoch_order(p // n)[p % n] for p in positions], dtype=np.int64)

    def indices(self, step):
        """(videos, segment indices (B_local, T)) of this process's share of a step."""
        videos = self.batch_videos(step)
        share = self.batch_size // self.world_size
        pos = np.arange(self.rank * share, (self.rank + 1) * share)
        idx = np.stack([sample_train_indices(int(self.videos.lengths[videos[p]]), self.T,
                                             np.random.default_rng([self.seed, 2, step, p]), self.sampling)
                        for p in pos])
        return videos[pos], idx

    def __len__(self):
        return 2 ** 62

    def __getitem__(self, step):
        videos, idx = self.indices(step)
        return self.videos.store.gather(videos, idx), torch.from_numpy(self.videos.labels[videos])


def test_batches(videos: VideoSet, num_segments, batch_size):
    """Uniformly sampled test batches: (video indices, features (B, T, F))."""
    for start in range(0, len(videos), batch_size):
        vids = np.arange(start, min(start + batch_size, len(videos)))
        idx = np.stack([sample_test_indices(int(videos.lengths[v]), num_segments) for v in vids])
        yield vids, videos.store.gather(vids, idx)


def epochs_for(num_iters, batch_size, num_videos):
    return math.ceil(num_iters * batch_size / max(1, num_videos))
