"""Speed of the pipeline on this machine, in sections; prints one Markdown table per section.

    python scripts/benchmark.py [--section training,evaluator,i3d,flow,extraction|all] [--device cpu|cuda|auto]
                                [--quick] [section options, see --help]

Every row gives what was measured, its size, the figure, a note, and the 1-minute load
average when the row was measured (other processes on the machine slow every figure down:
check it before trusting one). docs/benchmarks.md records the figures measured so far.

- training: the bare step (train.train_step on one fixed tensor: forward, loss, backward,
  Adam) against the real loop (train.train: data gathered from an in-memory FeatureStore,
  losses read back, checked and logged every 10 steps), at the "demo" size (the synthetic
  preset) and the "paper" size (THUMOS14's recipe), with peak memory. The loop's step is
  timed inside one train.train run between the starts of two of its steps, so that setup,
  the warm-up steps, the run's evaluation and its checkpoint fall outside it.
- evaluator (--evaluator_parts): "test", a paper-size test pass over THUMOS14 test videos
  (random features and weights): evaluation.infer timed whole, its input and post-processing
  through wrappers, forward = the rest, then evaluation.Evaluator; "post",
  postprocess.localize_video against the release's algorithm written literally
  (eval/reference.py), checked to give the same proposals; "eval", eval.evaluate_detection
  against the plain-loop and pandas-style references on realistic predictions over the
  shipped THUMOS14 test ground truth. With the training section's paper size, the paper's
  recipe (1500 steps, 15 test passes) estimated from the parts.
- i3d: the plain InceptionI3d (pytorch-i3d's computation) against load_i3d's fast path
  (i3d.FastI3d) on the same random weights, alternating, first with the C library's default
  allocator (as pytorch-i3d's scripts run), then after utils.retain_freed_memory() (which
  load_i3d calls on the CPU; it cannot be undone within a process, so this section runs
  before flow and extraction).
- flow: on a synthetic 1280 x 720 clip (a panning texture, a textured block moving across
  it), the flow orders (OpenCV TV-L1 on the crop against TV-L1 on the resized frame cropped
  afterwards, DeepMind's order: end-point error inside the crop and the cost of each, one
  thread) and each TV-L1 backend as the extractor computes a snippet (one thread on the CPU,
  batched on a GPU).
- extraction: decoding with resampling to 25 fps, frame preparation for each flow order,
  I3D's fast path with the extractor's planned threads, the estimate for a 3-minute video
  (4,500 frames at 25 fps) with each backend and flow order, and (unless --no_end_to_end)
  extract_video end to end with each backend on a clip of --snippets snippets. The estimate
  is for a long video: a short clip adds, once, the networks' loading, their first call, the
  I3D batch after the last flow and the last snippets' flow left to the helpers alone.

--quick: tiny sizes (a 56 x 56 crop for the video sections), seconds; the figures are
meaningless (tests/test_benchmark.py runs it).
"""
import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluation  # noqa: E402
from dataset import SECONDS_PER_SEGMENT, THUMOS14_CLASSES, FeatureStore, VideoSet  # noqa: E402
from eval import evaluate_detection, load_ground_truth, load_predictions  # noqa: E402
from eval.reference import (action_like_cas, evaluate_detection_loop, evaluate_detection_pandas,  # noqa: E402
                            loop_localize_video, same_proposals)
from options import RECIPE, ConfigError, Parser, parse_args  # noqa: E402
from postprocess import Localization, localize_video  # noqa: E402
import train as training_loop  # noqa: E402
from train import build_model, build_optimizer, train, train_step  # noqa: E402
from utils import autocast_for, pick_device, retain_freed_memory, run_entry_point  # noqa: E402
from video import flow as vflow, frames as vframes  # noqa: E402
from video.extractor import SNIPPETS_PER_BATCH, extract_video  # noqa: E402
from video.i3d import fast_i3d, random_i3d  # noqa: E402

SECTIONS = ("training", "evaluator", "i3d", "flow", "extraction")
EVALUATOR_PARTS = ("test", "post", "eval")
THUMOS14 = ROOT / "dataset" / "THUMOS14"    # its gt.json (the real annotations) is shipped
SIZES = {"demo": ("synthetic", 64), "paper": ("thumos14", 2048)}   # preset, feature width
QUICK = ["--num_segments", "16", "--hidden_dim", "16", "--batch_size", "2"], 16
QUICK_FRAME = 64, 56          # resize, crop of the video sections with --quick
RECIPE_STEPS, RECIPE_PASSES = RECIPE["num_iters"], RECIPE["num_iters"] // RECIPE["eval_every"]   # 1500, 15
NUM_TEST_VIDEOS, C = 210, len(THUMOS14_CLASSES)
MINUTES_3 = 3 * 60 * vframes.FPS          # frames of a 3-minute video at 25 fps
COLUMNS = "| what | size | figure | note | load (1 min) |\n|---|---|---|---|---|"


# ----------------------------------------------------------------------------- shared helpers
def load():
    return f"{os.getloadavg()[0]:.1f}"


def fmt_time(s):
    return (f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else
            f"{s:.2f} s" if s >= 1 else f"{s * 1000:.1f} ms")


def fmt_rate(per_second, unit):
    return f"{per_second:.0f} {unit}" if per_second >= 100 else f"{per_second:.2f} {unit}"


class Table:
    """The rows of one section: (what, size, figure, note, load); `seconds` keeps the times
    of timed rows by name (the recipe estimate reads them)."""

    def __init__(self, seconds):
        self.rows, self.seconds = [], seconds

    def add(self, what, size, figure, note=""):
        self.rows.append((what, size, figure, note, load()))
        print(f"  {what}: {figure}", file=sys.stderr, flush=True)

    def timed(self, what, size, seconds, note=""):
        self.seconds[what] = seconds
        self.add(what, size, fmt_time(seconds), note)

    def markdown(self, title):
        return "\n".join([f"## {title}", "", COLUMNS] + ["| " + " | ".join(row) + " |" for row in self.rows])


def median_time(fn, repeats=1, device=torch.device("cpu")):
    """(median seconds, last result) of `repeats` calls, CUDA synchronised around each."""
    sync, times = torch.cuda.synchronize if device.type == "cuda" else lambda: None, []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def with_peak(device, fn):
    """(fn(), its peak memory as text): CUDA max allocated, else peak RSS (VmHWM, reset where Linux allows)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    out, peak = fn(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with contextlib.suppress(OSError, StopIteration), open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else peak
    return out, f"{peak / 2 ** 30:.2f} GiB" if peak >= 2 ** 30 else f"{peak / 2 ** 20:.0f} MiB"


# ----------------------------------------------------------------------------- training and evaluator
def config(size, args, output_path, *extra):
    """(cfg, feature width) of a size: its preset of options.py, on the shipped THUMOS14 ground truth."""
    preset, width = SIZES[size]
    argv = ["--dataset", preset, "--data_path", str(THUMOS14), "--device", args.device, "--seed", "0",
            "--output_path", str(output_path), "--no_progress", *extra]
    return (parse_args(argv + QUICK[0]), QUICK[1]) if args.quick else (parse_args(argv), width)


def video_lengths(rng, count, at_least=0):
    """THUMOS14-like lengths in segments: log-normal, median 300 (about 3 min), in [47, 2625]
    (30 s to 28 min), the longest at 28 min as in the real test set."""
    lengths = np.maximum(np.clip(rng.lognormal(np.log(300), 0.7, count), 47, 2625).astype(np.int64), at_least)
    if count >= 20:
        lengths[int(np.argmax(lengths))] = 2625
    return lengths


def random_videos(rng, names, lengths, labels, width):
    """A VideoSet of random features in memory, as dataset.load_dataset builds it."""
    arrays = [rng.standard_normal((int(L), width), dtype=np.float32) for L in lengths]
    return VideoSet(names, labels, FeatureStore.from_arrays(arrays), width)


def test_videos(rng, count, width):
    """`count` THUMOS14 test videos, labelled by their annotations, each longer than its last one."""
    gt = load_ground_truth(THUMOS14 / "gt.json", subset="test")
    names = [gt.videos[i] for i in np.sort(rng.choice(len(gt.videos), min(count, len(gt.videos)), replace=False))]
    ends = np.array([max([a.end for a in gt.annotations[v]] or [0.0]) for v in names])
    labels = np.array([np.isin(THUMOS14_CLASSES, [a.label for a in gt.annotations[v]]) for v in names], np.float32)
    lengths = video_lengths(rng, len(names), np.ceil(ends / SECONDS_PER_SEGMENT).astype(np.int64) + 5)
    return random_videos(rng, names, lengths, labels, width)


def realistic_predictions(rng, gt, num_predictions):
    """70% jittered ground-truth instances (higher scores), 30% random segments, mostly of the video's classes."""
    instances = [(vid, i) for vid in gt.videos for i in gt.annotations[vid]]
    own = {vid: sorted({i.label for i in gt.annotations[vid]}) or gt.classes for vid in gt.videos}
    results = {vid: [] for vid in gt.videos}
    near = int(0.7 * num_predictions)
    for k in rng.integers(0, len(instances), size=near):
        vid, inst = instances[k]
        length = (inst.end - inst.start) * rng.lognormal(0, 0.4)
        start = max(0.0, (inst.start + inst.end) / 2 + rng.normal(0, 0.3 * (inst.end - inst.start)) - length / 2)
        results[vid].append({"label": inst.label, "score": float(rng.beta(5, 2)),
                             "segment": [round(start, 2), round(start + length, 2)]})
    for _ in range(num_predictions - near):
        vid = gt.videos[rng.integers(len(gt.videos))]
        label = rng.choice(own[vid]) if rng.random() < 0.8 else rng.choice(gt.classes)
        start = float(rng.uniform(0, 300))
        results[vid].append({"label": str(label), "score": float(rng.beta(2, 5)),
                             "segment": [round(start, 2), round(start + float(rng.lognormal(np.log(4.0), 0.8)), 2)]})
    return {"version": "VERSION 1.3", "results": results, "external_data": {}}


def train_size(table, size, device, args, *, rng, tmp):
    """The bare step (median over --repeats blocks of train_step on one fixed tensor) and the
    loop's step: inside one train.train run, the time from the start of the first step after
    the warm-up to the start of the step `block x repeats` later (train.train_step's calls
    timestamped), so that setup, the run's one evaluation and its checkpoint, which come at
    the end, fall outside it; `block` is a multiple of the loop's 10-step logging."""
    cpu_paper = device.type == "cpu" and size == "paper" and not args.quick
    warmup, block = (1, args.paper_cpu_steps) if cpu_paper else (3, 10)
    repeats = 1 if cpu_paper else args.repeats
    cfg, F = config(size, args, tmp / "bare")
    shape = f"F{F} T{cfg.num_segments} B{cfg.batch_size} H{cfg.hidden_dim}"
    torch.manual_seed(0)
    model, scaler = build_model(cfg, F, C).to(device), torch.amp.GradScaler(enabled=False)
    optimizer, autocast = build_optimizer(cfg, model), autocast_for(cfg.amp, device)
    x = torch.randn(cfg.batch_size, cfg.num_segments, F, device=device)
    y = torch.eye(C, device=device)[torch.arange(cfg.batch_size) % C]

    def bare(steps):
        for _ in range(steps):
            train_step(model, optimizer, scaler, autocast, feats=x, labels=y, alpha=cfg.alpha)

    bare(warmup)
    (bare_s, _), bare_peak = with_peak(device, lambda: median_time(lambda: bare(block), repeats, device))
    bare_s /= block
    del model, optimizer, x
    n = 20 if args.quick else 200
    train_set = random_videos(rng, [f"video_validation_{i:07d}" for i in range(n)], video_lengths(rng, n),
                              np.eye(C, dtype=np.float32)[rng.integers(0, C, n)], F)
    data = (THUMOS14_CLASSES, train_set, test_videos(rng, 2, F))
    timed_steps, starts = block * repeats, []

    def stamped(*a, **k):
        starts.append(time.perf_counter())
        return train_step(*a, **k)

    steps = warmup + timed_steps + 1
    cfg, _ = config(size, args, tmp / f"train_{size}", "--num_iters", str(steps), "--eval_every", str(steps))
    torch.manual_seed(0)
    with mock.patch.object(training_loop, "train_step", stamped), contextlib.redirect_stdout(io.StringIO()):
        (run_s, _), loop_peak = with_peak(device, lambda: median_time(
            lambda: train(cfg, data, device, log=lambda *a: None), 1, device))
    if len(starts) != steps:
        raise RuntimeError(f"train.train made {len(starts)} calls of train.train_step, expected {steps}")
    loop_s = (starts[warmup + timed_steps] - starts[warmup]) / timed_steps
    table.timed(f"train step, bare ({size})", shape, bare_s,
                f"{1 / bare_s:.3g} steps/s; {bare_peak} peak; {repeats} x {block} steps")
    table.timed(f"train step, loop ({size})", shape, loop_s,
                f"{100 * (loop_s / bare_s - 1):+.0f}% vs bare; {loop_peak} peak; steps {warmup + 1} to "
                f"{warmup + timed_steps} of a train.train run of {steps} steps ({fmt_time(run_s)} in all)")


def training(table, args, device, state):
    for size in args.sizes:
        print(f"training: {size} size ...", file=sys.stderr, flush=True)
        train_size(table, size, device, args, rng=state["rng"], tmp=state["tmp"])


@contextlib.contextmanager
def patched(name, totals, device, keep=None):
    """A patch of evaluation.<name> that adds its time to totals[name]; keep gets the first 10 calls'
    (positional, keyword) arguments. Raises if nothing under it called evaluation.<name> (the patch
    timed nothing: evaluation calls that function by another name)."""
    original, totals[name], calls = getattr(evaluation, name), 0.0, []

    def timed(fn, *a, **k):
        seconds, out = median_time(lambda: fn(*a, **k), 1, device)
        totals[name] += seconds
        return out

    def wrapper(*a, **k):
        calls.append(name)
        if keep is not None and len(keep) < 10:
            keep.append((a, k))
        if name != "test_batches":
            return timed(original, *a, **k)
        batches = original(*a, **k)   # a generator: its time is that of its items
        return iter(lambda: timed(next, batches, None), None)
    with mock.patch.object(evaluation, name, wrapper):
        yield
    if not calls:
        raise RuntimeError(f"evaluation.infer made no call of evaluation.{name}: its time would read 0")


def test_pass(table, device, args, *, rng, tmp, kept):
    """One test pass: infer (forward, input, post-processing), the Evaluator; `kept`: localize_video's calls."""
    cfg, F = config("paper", args, tmp / "test")
    videos = test_videos(rng, args.test_videos, F)
    videos.store.move_if_fits(device)   # as train.py and test.py
    torch.manual_seed(1)
    model = build_model(cfg, F, C).to(device)
    evaluator = evaluation.Evaluator(cfg, videos, THUMOS14_CLASSES)
    infer = lambda: evaluation.infer(model, videos, THUMOS14_CLASSES, cfg, device)  # noqa: E731
    if device.type == "cuda":
        infer()   # warm-up (cuDNN, allocator)
    passes = []
    for r in range(args.test_repeats):
        totals = {}
        with patched("test_batches", totals, device), patched("localize_video", totals, device, kept if r == 0 else None):
            totals["whole"], inferred = median_time(infer, 1, device)
        passes.append(totals)
    whole, inputs, post = (statistics.median(p[k] for p in passes) for k in ("whole", "test_batches", "localize_video"))
    eval_s, _ = median_time(lambda: evaluator(model, device, tmp / "test", inferred=inferred), args.test_repeats)
    n, L, what = len(videos), videos.lengths, f"{len(videos)} videos"
    table.timed("test pass: infer", what, whole,
                f"evaluation.infer, batch {cfg.batch_size}; lengths median {np.median(L):.0f}, max {L.max()} segments")
    table.timed("  of which forward", what, whole - inputs - post, "model + copy back (the rest)")
    table.timed("  of which input", what, inputs, f"dataset.test_batches, features on {videos.store.device}")
    table.timed("  of which post-processing", what, post,
                f"postprocess.localize_video; {sum(map(len, inferred['results'].values()))} proposals")
    table.timed("test pass: Evaluator", what, eval_s, "mAP, accuracy, predictions.json, results.json")
    if n < NUM_TEST_VIDEOS:
        table.timed("test pass: scaled", f"{NUM_TEST_VIDEOS} videos", (whole + eval_s) * NUM_TEST_VIDEOS / n,
                    f"infer + Evaluator, x {NUM_TEST_VIDEOS / n:.1f}")


def post_processing(table, args, rng, kept):
    """localize_video against loop_localize_video, checked to agree, on `kept`: recorded calls,
    (positional, keyword) arguments; a noise CAS stands in for `kept` if empty."""
    cfg, _ = config("paper", args, "unused")
    params, T = Localization.from_config(cfg), cfg.num_segments
    probs = np.where(np.arange(C) < 2, 0.4, 0.02).astype(np.float32)   # two classes above class_th

    def where(length):
        return dict(num_real_segments=length, params=params, seconds_per_segment=SECONDS_PER_SEGMENT)
    noise = [((rng.standard_normal((T, C)).astype(np.float32), probs, THUMOS14_CLASSES), where(300))
             for _ in range(3)]
    cases = {"random-weight CAS": kept} if kept else {"noise CAS": noise}
    cases["action-like CAS"] = [((*action_like_cas(rng, T, C), THUMOS14_CLASSES), where(int(L)))
                                for L in video_lengths(rng, len(next(iter(cases.values()))))]
    for label, calls in cases.items():
        fast, loop, count, same = 0, 0, 0, True
        for a, k in calls:
            t, (out, _) = median_time(lambda: localize_video(*a, **k), max(3, args.repeats))
            t_loop, ref = median_time(lambda: loop_localize_video(*a, **k), 1)
            fast, loop, count, same = fast + t, loop + t_loop, count + len(out), same and same_proposals(out, ref)
        table.timed(f"post-processing, {label}", f"{len(calls)} videos", fast,
                    f"release-style loop {fmt_time(loop)}: {loop / fast:.0f}x; {count} proposals, "
                    f"{'identical' if same else 'DIFFERENT'}")


def evaluator_speed(table, args, rng):
    gt = load_ground_truth(THUMOS14 / "gt.json", subset="test")
    as_dict = realistic_predictions(rng, gt, args.predictions)
    parse_s, preds = median_time(lambda: load_predictions(as_dict), args.repeats)
    fast_s, fast = median_time(lambda: evaluate_detection(gt, preds), args.repeats)
    what = f"{args.predictions} predictions"
    table.timed("evaluator: parse predictions", what, parse_s, "eval.load_predictions (shared by all three)")
    table.timed("evaluator: fast", what, fast_s, f"eval.evaluate_detection; average mAP {100 * fast['average_mAP']:.2f}")
    references = [("plain loop", evaluate_detection_loop, max(1, args.repeats // 2))]
    for name, fn, repeats in references + [("pandas-style", evaluate_detection_pandas, 1)] * (not args.no_pandas):
        t, res = median_time(lambda: fn(gt, preds), repeats)
        diff = max(abs(a - b) for c, ap in res["ap_per_class"].items() for a, b in zip(ap, fast["ap_per_class"][c]))
        table.timed(f"evaluator: {name} reference", what, t,
                    f"{t / fast_s:.1f}x the fast one's time; max AP difference {diff:.1e}; {repeats} run(s)")


def evaluator(table, args, device, state):
    kept, rng, parts = [], state["rng"], args.evaluator_parts
    if "test" in parts:
        print(f"evaluator: a test pass over {args.test_videos} videos ...", file=sys.stderr, flush=True)
        test_pass(table, device, args, rng=rng, tmp=state["tmp"], kept=kept)
    if "post" in parts:
        post_processing(table, args, rng, kept)
    if "eval" in parts:
        evaluator_speed(table, args, rng)
    t = state["seconds"]
    step = t.get("train step, loop (paper)")
    if step is not None and "test pass: infer" in t:
        test = t.get("test pass: scaled", t["test pass: infer"] + t["test pass: Evaluator"])
        table.timed("paper recipe, estimated", f"{RECIPE_STEPS} steps", RECIPE_STEPS * step + RECIPE_PASSES * test,
                    f"{RECIPE_STEPS} x {fmt_time(step)} + {RECIPE_PASSES} test passes x {fmt_time(test)}")


# ----------------------------------------------------------------------------- I3D
def i3d(table, args, device, state):
    """Plain InceptionI3d against FastI3d, same random weights, alternating, in two allocator phases."""
    saved = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    size = (f"batch {args.batch} x {args.frames} x {args.size} x {args.size}, {device.type}, "
            f"{torch.get_num_threads()} thread(s)")
    setups = {}
    for stream in args.streams:
        channels = {"rgb": 3, "flow": 2}[stream]
        plain = random_i3d(channels, seed=channels).to(device)
        nets = {"plain": plain.features, "fast": fast_i3d(plain).features}
        if args.bf16:
            nets["fast bf16"] = fast_i3d(plain, bf16=True).features
        torch.manual_seed(0)
        x = torch.rand(args.batch, channels, args.frames, args.size, args.size, device=device) * 2 - 1
        setups[stream] = nets, x
    frames, fps = args.batch * args.frames, {}
    try:
        for phase in ("default", "retained"):
            if phase == "retained" and not retain_freed_memory():
                print("i3d: no second phase (the C library is not glibc)", file=sys.stderr)
                break
            for stream, (nets, x) in setups.items():
                times, outs = {k: [] for k in nets}, {}
                with torch.inference_mode():
                    for name, fn in nets.items():      # warm-up (oneDNN primitive creation)
                        outs[name] = fn(x)
                    for _ in range(args.repeats):
                        for name, fn in nets.items():
                            times[name].append(median_time(lambda: fn(x), 1, device)[0])
                fps.update({(stream, phase, name): frames / statistics.median(t) for name, t in times.items()})
                for name in nets:
                    rate = fps[stream, phase, name]
                    diff = ((outs[name].float() - outs["plain"]).abs().max() / outs["plain"].abs().max()).item()
                    table.add(f"I3D {stream}, {name}, {phase} allocator", size, fmt_rate(rate, "frames/s"),
                              f"{rate / fps[stream, 'default', 'plain']:.2f}x pytorch-i3d's network as it runs, "
                              f"{rate / fps[stream, phase, 'plain']:.2f}x the plain one with the same allocator; "
                              f"features within {diff:.1e} of their largest magnitude; median of {args.repeats}")
    finally:
        torch.set_num_threads(saved)


# ----------------------------------------------------------------------------- flow and extraction
def synthetic_video(path, seconds, fps=30, size=(1280, 720)):
    """A panning texture (3 px/frame) with a textured block moving (+9, +4) px/frame."""
    rng = np.random.default_rng(0)
    w, h = size
    n = int(seconds * fps)
    background = cv2.resize(rng.integers(0, 255, (h // 8, (w + 3 * n) // 8 + 1, 3), dtype=np.uint8),
                            (w + 3 * n + 8, h), interpolation=cv2.INTER_CUBIC)
    block = cv2.resize(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8), (240, 240), interpolation=cv2.INTER_CUBIC)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for i in range(n):
        frame = background[:, 3 * i:3 * i + w].copy()
        x, y = (300 + 9 * i) % (w - 240), (200 + 4 * i) % (h - 240)
        frame[y:y + 240, x:x + 240] = block
        writer.write(frame)
    writer.release()


def decoded_frames(clip, n):
    """The first n frames of the clip at 25 fps."""
    cap, fps, _ = vframes.open_video(clip)
    try:
        return [f for _, f in zip(range(n), vframes.resampled_frames(cap, fps))]
    finally:
        cap.release()


def clip_frames(args, state, n=40):
    """The synthetic clip (written once per run) and its first n frames at 25 fps."""
    if "clip" not in state:
        state["clip"] = str(state["tmp"] / "clip.mp4")
        synthetic_video(state["clip"], seconds=2 if args.quick else 6)
    return state["clip"], decoded_frames(state["clip"], n)


@contextlib.contextmanager
def one_thread():
    """torch and OpenCV on one thread, as each of the extractor's flow helpers runs."""
    torch_threads, cv_threads = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        cv2.setNumThreads(cv_threads)


def flow_orders(table, args, frames):
    """End-point error of crop-first flow against resized-first flow inside the crop, and the
    cost of each with OpenCV on one thread: (seconds per crop pair, per resized pair)."""
    pairs = 1 if args.quick else 6
    tvl1 = vflow.opencv_tvl1()
    resized = [cv2.cvtColor(vframes.resize_shorter(f, args.resize), cv2.COLOR_BGR2GRAY) for f in frames[:pairs + 1]]
    box = vframes.centre_box(*resized[0].shape, args.crop)
    crops = [r[box] for r in resized]
    errors, cost = [], {"crop": 0.0, "resized": 0.0}
    with one_thread():
        for t in range(pairs):
            seconds, first = median_time(lambda: tvl1.calc(crops[t], crops[t + 1], None))
            cost["crop"] += seconds
            seconds, whole = median_time(lambda: tvl1.calc(resized[t], resized[t + 1], None))
            cost["resized"] += seconds
            errors.append(np.linalg.norm(first - whole[box], axis=2))
    e = np.stack(errors)
    inner = np.zeros(e.shape[1:], bool)
    inner[4:-4, 4:-4] = True
    h, w = resized[0].shape
    crop_s, resized_s = cost["crop"] / pairs, cost["resized"] / pairs
    table.add("flow order: EPE of crop-first vs resized-first, inside the crop", f"{pairs} pair(s), {h} x {w}",
              f"{e.mean():.3f} px", f"mean; within 4 px of the border {e[:, ~inner].mean():.3f}, inside "
              f"{e[:, inner].mean():.3f}; {100 * (e > 1).mean():.2f} % of the pixels > 1 px")
    table.add("TV-L1 OpenCV on the crop, 1 thread", f"{args.crop} x {args.crop}", fmt_rate(1 / crop_s, "pairs/s"))
    table.add("TV-L1 OpenCV on the resized frame (--flow_before_crop), 1 thread", f"{h} x {w}",
              fmt_rate(1 / resized_s, "pairs/s"),
              f"{resized_s / crop_s:.2f}x the time of the crop, {h * w / args.crop ** 2:.2f}x the pixels")
    return crop_s, resized_s


def flow_backends(table, args, device, gray):
    """Seconds per frame pair of each TV-L1 backend as the extractor computes a snippet: on
    the CPU on one thread (the extractor's helpers and its main process each use one; tvl1.py
    CPU_FLOW_PAIRS pairs per call); on a GPU, tvl1.py batched --flow_batch pairs per call
    (TorchFlow). Returns {backend: seconds per pair}."""
    cost = {}
    for backend in ("opencv", "torch"):
        if vflow.flow_on_device(backend, device):
            flow = vflow.TorchFlow(device, args.flow_batch)
            frames = np.concatenate([gray] * (args.flow_batch // (len(gray) - 1) + 1))[:args.flow_batch + 1]
            flow.submit(frames).get()                                  # warm-up
            seconds, _ = median_time(lambda: flow.submit(frames).get(), 1, device)
            cost[backend], where = seconds / args.flow_batch, f"on {device}, {args.flow_batch} pairs per call"
        else:
            fields = vflow.FIELDS[backend]
            with one_thread():
                fields(gray[:3])                                       # warm-up
                seconds, _ = median_time(lambda: fields(gray))
            cost[backend] = seconds / (len(gray) - 1)
            where = "1 thread" + (f", {vflow.CPU_FLOW_PAIRS} pairs per call" if backend == "torch" else "")
        name = "OpenCV" if backend == "opencv" else "tvl1.py"
        table.add(f"TV-L1 {name}, {where}, as the extractor computes a snippet", f"{args.crop} x {args.crop}",
                  fmt_rate(1 / cost[backend], "pairs/s"), f"{len(gray) - 1} pairs")
    return cost


def flow_costs(table, args, device, state):
    """The flow section's measurements, taken once per run: the orders' costs and the backends'."""
    if "flow" not in state:
        retain_freed_memory()     # as the extractor and load_i3d do, before any measurement
        _, frames = clip_frames(args, state)
        crop_s, resized_s = flow_orders(table, args, frames)
        snippet = 3 if args.quick else vframes.SNIPPET + 1
        gray = np.stack([cv2.cvtColor(vframes.resize_crop(f, args.resize, args.crop), cv2.COLOR_BGR2GRAY)
                         for f in frames[:snippet]])
        state["flow"] = crop_s, resized_s, flow_backends(table, args, device, gray)
    return state["flow"]


def flow(table, args, device, state):
    flow_costs(table, args, device, state)


def estimate(main_s, flow_s, cores, sequential=False):
    """Seconds for MINUTES_3 frames. On the CPU the flow helpers and the main process (which
    also computes flow when the helpers are busy) share `cores` cores: flow_s core-seconds per
    pair, main_s per frame for the main process's own work on one thread; the total is spread
    over the cores unless that own work is longer. sequential: flow and the rest take turns
    (tvl1.py on a GPU)."""
    if sequential:
        return MINUTES_3 * (main_s + flow_s)
    return MINUTES_3 * max(main_s, (main_s + flow_s) / cores)


def i3d_per_frame(table, args, device, threads):
    """Seconds per frame of each stream with load_i3d's fast network on `threads` threads."""
    per_frame, saved = {}, torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for stream, channels in (("rgb", 3), ("flow", 2)):
            net = fast_i3d(random_i3d(channels, seed=channels)).to(device)
            x = torch.rand(args.batch, channels, vframes.SNIPPET, args.crop, args.crop, device=device) * 2 - 1
            with torch.inference_mode():
                net.features(x)                                        # warm-up
                seconds, _ = median_time(lambda: net.features(x), 1, device)
            per_frame[stream] = seconds / (args.batch * vframes.SNIPPET)
            table.add(f"I3D {stream}, fast (load_i3d), the extractor's threads",
                      f"batch {args.batch} x {vframes.SNIPPET} x {args.crop} x {args.crop}, {threads} thread(s)",
                      fmt_rate(1 / per_frame[stream], "frames/s"))
    finally:
        torch.set_num_threads(saved)
    return per_frame


def end_to_end(table, args, device, state, *, cost, main_s):
    """extract_video with each backend on a clip of --snippets snippets, against the estimate."""
    tmp = state["tmp"]
    short = str(tmp / "short.mp4")
    synthetic_video(short, seconds=(vframes.SNIPPET * args.snippets + 1) / vframes.FPS)
    paths = {}
    for stream, channels in (("rgb", 3), ("flow", 2)):
        paths[stream] = str(tmp / f"{stream}.pt")
        torch.save(random_i3d(channels, seed=channels).state_dict(), paths[stream])
    for backend, flow_s in cost.items():
        t, feats = median_time(lambda: extract_video(
            short, paths["rgb"], paths["flow"], device=device, snippets_per_batch=args.batch, cores=args.cores,
            flow_backend=backend, resize=args.resize, crop=args.crop), 1, device)
        frames = vframes.SNIPPET * len(feats["rgb"])
        guess = estimate(main_s, flow_s, args.cores, vflow.flow_on_device(backend, device)) * frames / MINUTES_3
        table.add(f"end to end, extract_video --flow_backend {backend}, both streams",
                  f"{frames} frames ({len(feats['rgb'])} snippets)", fmt_rate(frames / t, "frames/s"),
                  f"{t:.1f} s; {MINUTES_3 / (frames / t) / 60:.1f} min for 4,500 frames at that rate; "
                  f"estimate {guess:.1f} s")


def extraction(table, args, device, state):
    crop_s, resized_s, cost = flow_costs(table, args, device, state)   # its rows here unless the flow section ran
    backend = vflow.resolve_backend("auto", device, args.cores)
    threads, _ = vflow.plan_threads(args.cores, backend, device)   # the main process's, as extract_video plans them
    clip, frames = clip_frames(args, state)
    decode_s, n = median_time(lambda: len(decoded_frames(clip, 10 ** 6)))
    table.add("decode 1280 x 720 (mp4v), resample to 25 fps", f"{n} frames", fmt_rate(n / decode_s, "frames/s"))
    prep = {}
    for before in (False, True):
        seconds, _ = median_time(lambda: [vframes.prepare_frame(f, args.resize, args.crop, before) for f in frames])
        prep[before] = seconds / len(frames)
        table.add(f"resize {args.resize} + crop {args.crop} + RGB + gray of the "
                  f"{'resized frame' if before else 'crop'}", f"{len(frames)} frames",
                  fmt_rate(1 / prep[before], "frames/s"))
    i3d_s = i3d_per_frame(table, args, device, threads)
    main_s = {before: decode_s / n + prep[before] + i3d_s["rgb"] + i3d_s["flow"] for before in (False, True)}
    for b, flow_s in cost.items():
        plan = "{} cores: {} torch thread(s), {} TV-L1 helper(s)".format(args.cores, *vflow.plan_threads(args.cores, b,
                                                                                                       device))
        for before, what in ((False, "flow on the crop"), (True, "--flow_before_crop (x the OpenCV cost ratio)")):
            t = estimate(main_s[before], flow_s * (resized_s / crop_s if before else 1), args.cores,
                         vflow.flow_on_device(b, device))
            table.add(f"estimate, 3-minute video, both streams, --flow_backend {b}, {what}", "4,500 frames",
                      f"{t / 60:.1f} min", f"{MINUTES_3 / t:.2f} frames/s; {plan}")
    t_rgb = MINUTES_3 * (decode_s / n + prep[False] + i3d_s["rgb"])
    table.add("estimate, 3-minute video, --streams rgb", "4,500 frames", f"{t_rgb / 60:.1f} min",
              f"{MINUTES_3 / t_rgb:.2f} frames/s")
    if not args.no_end_to_end:
        end_to_end(table, args, device, state, cost=cost, main_s=main_s[False])


# ----------------------------------------------------------------------------- the command
def comma_list(choices, everything=None):
    """An argparse type: a comma-separated subset of `choices` ("all": every one, if given)."""
    def parse(text):
        items = choices if text == everything else tuple(text.split(","))
        if not items or not set(items) <= set(choices):
            raise argparse.ArgumentTypeError(f"takes a comma-separated list of {', '.join(choices)}"
                                             + (f", or {everything}" if everything else "") + f", got {text!r}")
        return tuple(c for c in choices if c in items)
    return parse


def build_parser():
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("--section", type=comma_list(SECTIONS, "all"), default=SECTIONS,
                   help=f"comma-separated, of {', '.join(SECTIONS)}; or all (default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--repeats", type=int, help="timed repeats (default 5 on cuda, 3 on cpu, 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, seconds, figures meaningless (tests)")
    p.add_argument("--seed", type=int, default=0)
    g = p.add_argument_group("training")
    g.add_argument("--sizes", type=comma_list(tuple(SIZES)), default=tuple(SIZES),
                   help="training sizes, comma-separated, of demo, paper")
    g.add_argument("--paper_cpu_steps", type=int, default=1, help="timed paper-size steps on the CPU (default 1: a step is long there)")
    g = p.add_argument_group("evaluator")
    g.add_argument("--evaluator_parts", type=comma_list(EVALUATOR_PARTS), default=EVALUATOR_PARTS,
                   help=f"comma-separated, of {', '.join(EVALUATOR_PARTS)}")
    g.add_argument("--test_videos", type=int, help="videos of the test pass (default 210; 8 on cpu)")
    g.add_argument("--test_repeats", type=int, help="timed test passes (default 3 on cuda, else 1)")
    g.add_argument("--predictions", type=int, default=20000, help="predictions of the evaluator's eval part")
    g.add_argument("--no_pandas", action="store_true", help="skip the pandas-style evaluator (the slowest)")
    g = p.add_argument_group("i3d")
    g.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    g.add_argument("--frames", type=int, default=vframes.SNIPPET, help="frames per snippet (default %(default)s)")
    g.add_argument("--size", type=int, help="frame height and width (default 224; 32 with --quick)")
    g.add_argument("--streams", type=comma_list(("rgb", "flow")), default=("rgb", "flow"))
    g.add_argument("--bf16", action="store_true", help="also time the bf16 autocast option")
    g = p.add_argument_group("i3d and extraction")
    g.add_argument("--batch", type=int, help=f"snippets per I3D call (default {SNIPPETS_PER_BATCH}; 1 with --quick)")
    g = p.add_argument_group("flow and extraction")
    g.add_argument("--flow_batch", type=int, default=vflow.FLOW_BATCH, help="frame pairs per tvl1.py call on a GPU (default %(default)s)")
    g.add_argument("--cores", type=int, default=vflow.available_cores(), help="cores to plan threads for (default: those this process may use, %(default)s)")
    g.add_argument("--snippets", type=int,
                   help="length of the end-to-end clip in snippets (default 12; 1 with --quick)")
    g.add_argument("--no_end_to_end", action="store_true", help="skip extract_video end to end")
    return p


def defaults(args, device):
    """The defaults that depend on the device and --quick; values below 1 are refused."""
    cuda, quick = device.type == "cuda", args.quick
    given = {name: value for name, value in vars(args).items() if value is not None}
    for name in ("repeats", "test_videos", "test_repeats", "predictions", "size", "batch", "snippets", "frames",
                 "flow_batch", "cores", "paper_cpu_steps", "threads"):
        if name in given and given[name] < 1:
            raise ConfigError(f"--{name} must be at least 1, got {given[name]}")

    def default(name, value):
        if getattr(args, name) is None:
            setattr(args, name, value)

    args.device = device.type
    default("repeats", 2 if quick else 5 if cuda else 3)
    default("test_videos", 4 if quick else NUM_TEST_VIDEOS if cuda else 8)
    default("test_repeats", 3 if cuda and not quick else 1)
    default("size", 32 if quick else 224)
    default("batch", 1 if quick else SNIPPETS_PER_BATCH)
    default("snippets", 1 if quick else 12)
    args.resize, args.crop = QUICK_FRAME if quick else (256, 224)
    if quick:
        args.predictions, args.frames, args.flow_batch = min(args.predictions, 1000), min(args.frames, 8), \
            min(args.flow_batch, 4)


def main(argv=None):
    args = build_parser().parse_args(argv)
    device = pick_device(args.device)
    defaults(args, device)
    run = {"training": training, "evaluator": evaluator, "i3d": i3d, "flow": flow, "extraction": extraction}
    started = time.perf_counter()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} torch threads, {vflow.available_cores()} cores"
    print(f"benchmark on {name}, torch {torch.__version__}, OpenCV {cv2.__version__}; load {load()}"
          f"{' (--quick: figures meaningless)' * args.quick}\n", flush=True)
    with tempfile.TemporaryDirectory(prefix="basnet_bench_") as tmp:
        state = {"rng": np.random.default_rng(args.seed), "tmp": Path(tmp), "seconds": {}}
        for section in args.section:
            table = Table(state["seconds"])
            run[section](table, args, device, state)
            print(table.markdown(section.capitalize() if section != "i3d" else "I3D") + "\n", flush=True)
    print(f"benchmark took {fmt_time(time.perf_counter() - started)}; "
          f"{json.dumps({k: v for k, v in vars(args).items()})}")
    return 0


if __name__ == "__main__":
    sys.exit(run_entry_point(main, sys.argv[1:]))
