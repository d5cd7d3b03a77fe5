"""What every public-set reader shares: the Video and Reader types, the benchmarks and
their subsets, and the parsers of the sources' annotation and feature files."""
import os
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from dataset import I3D_WIDTH, SECONDS_PER_SEGMENT, STREAMS, DataError, load_json
from options import PRESETS, RECIPE

STREAM_WIDTH = I3D_WIDTH
FEATURE_WIDTH = len(STREAMS) * STREAM_WIDTH   # rows of every source: RGB (1024) then flow (1024)
SNIPPET_GRID = {"step": SECONDS_PER_SEGMENT, "start": 0.0}   # 16-frame snippets of 25 fps video
MIN_ROWS = 2
# THUMOS14 test videos the authors' release leaves out of its test split.
RELEASE_LEFT_OUT = ("video_test_0000270", "video_test_0001292", "video_test_0001496")

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
    subset: Optional[str] = None    # the source's subset name, where the source has one (for messages)

    @property
    def has_features(self):
        return self.load is not None

    @property
    def where(self):
        return self.source_name or self.name


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


def npy_header(path, what):
    """(shape, dtype) of a .npy file from its header: nothing else is read or unpickled."""
    if not os.path.isfile(path):
        raise DataError(f"{what} not found: {path}")
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    except Exception as e:  # numpy raises several kinds for a file that is not .npy
        raise DataError(f"cannot read {what} {path}: {type(e).__name__}: {e}") from None
    return shape, dtype


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

    def sources(self):
        """The files and folders the conversion reads (their identity is recorded)."""
        raise NotImplementedError

    def signature(self):
        """The source's kind and the reader's options that change the outputs (recorded in
        conversion.json: a resumed run must match them)."""
        return {"kind": self.kind, "benchmark": self.benchmark}

    def split_source(self, split):
        """Where the videos of a split ("train" / "test") come from, for messages."""
        subsets = [s for s, to in SOURCE_SUBSETS[self.benchmark].items() if to == split]
        return f"the source's {'/'.join(subsets)} subset"

    def split_of(self, subset):
        """"train", "test", or the source's subset name when the benchmark does not use it."""
        subset = str(subset).lower()
        return SOURCE_SUBSETS[self.benchmark].get(subset, subset)


def npy_video(name, path, **kw):
    """A Video whose features are one .npy file (memory-mapped for its row count); a
    path that does not exist gives a Video without features."""
    ok = os.path.isfile(path)
    return Video(name=name, source=path, load=(lambda: npy_load(path)) if ok else None,
                 rows=(lambda: npy_rows(path)) if ok else None, **kw)
