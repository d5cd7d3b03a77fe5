"""Speed benchmark of the pipeline on this machine; prints a Markdown table (docs/benchmarks.md records the figures).

    python scripts/benchmark.py [--device cuda] [--sections train,test,post,eval] [--sizes demo,paper] [--quick]

Each section (train, test, post, eval, then the paper recipe estimated from their rows) is a
function that returns table rows; docs/benchmarks.md says what each one measures.
"""
import argparse
import contextlib
import io
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluation  # noqa: E402
from dataset import SECONDS_PER_SEGMENT, THUMOS14_CLASSES, FeatureStore, VideoSet  # noqa: E402
from eval import evaluate_detection, load_ground_truth, load_predictions  # noqa: E402
from eval.reference import (action_like_cas, evaluate_detection_loop, evaluate_detection_pandas,  # noqa: E402
                            loop_localize_video, same_proposals)
from options import RECIPE, parse_args  # noqa: E402
from postprocess import Localization, localize_video  # noqa: E402
from train import build_model, build_optimizer, train, train_step  # noqa: E402
from utils import autocast_for, pick_device  # noqa: E402

THUMOS14 = ROOT / "dataset" / "THUMOS14"    # its gt.json (the real annotations) is shipped
SIZES = {"demo": ("synthetic", 64), "paper": ("thumos14", 2048)}   # preset, feature width
QUICK = ["--num_segments", "16", "--hidden_dim", "16", "--batch_size", "2"], 16
SECTIONS = ("train", "test", "post", "eval")
RECIPE_STEPS, RECIPE_PASSES = RECIPE["num_iters"], RECIPE["num_iters"] // RECIPE["eval_every"]   # 1500, 15
NUM_TEST_VIDEOS, C = 210, len(THUMOS14_CLASSES)


def config(size, args, output_path, *extra):
    """(cfg, feature width) of a size: its preset of options.py, on the shipped THUMOS14 ground truth."""
    preset, width = SIZES[size]
    argv = ["--dataset", preset, "--data_path", str(THUMOS14), "--device", args.device, "--seed", "0",
            "--output_path", str(output_path), "--no_progress", *extra]
    return (parse_args(argv + QUICK[0]), QUICK[1]) if args.quick else (parse_args(argv), width)


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


def train_rows(size, device, args, rng, tmp):
    """Bare step (median over --repeats blocks) and train.train's step: (time(train, n + k) -
    time(train, n)) / k, both runs ending in one evaluation (2 test videos) and one checkpoint."""
    cpu_paper = device.type == "cpu" and size == "paper" and not args.quick
    warmup, block = (1, args.paper_cpu_steps) if cpu_paper else (2, 2) if args.quick else (3, 10)
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
            train_step(model, optimizer, scaler, autocast, x, y, cfg.alpha)

    bare(warmup)
    (bare_s, _), bare_peak = with_peak(device, lambda: median_time(lambda: bare(block), repeats, device))
    bare_s /= block
    del model, optimizer, x
    n = 20 if args.quick else 200
    train_set = random_videos(rng, [f"video_validation_{i:07d}" for i in range(n)], video_lengths(rng, n),
                              np.eye(C, dtype=np.float32)[rng.integers(0, C, n)], F)
    data = (THUMOS14_CLASSES, train_set, test_videos(rng, 2, F))

    def run(steps):
        cfg, _ = config(size, args, tmp / f"train_{size}_{steps}", "--num_iters", str(steps), "--eval_every", str(steps))
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):   # its evaluation line
            return median_time(lambda: train(cfg, data, device, log=lambda *a: None), 1, device)[0]

    if not cpu_paper:
        run(warmup)   # first-call costs (TensorBoard, kernels) out of the timed runs
    (short, long), loop_peak = with_peak(device, lambda: (run(warmup), run(warmup + block * repeats)))
    loop_s = (long - short) / (block * repeats)
    return [(f"train step, bare ({size})", shape, bare_s,
             f"{1 / bare_s:.3g} steps/s; {bare_peak} peak; {repeats} x {block} steps"),
            (f"train step, loop ({size})", shape, loop_s,
             f"{100 * (loop_s / bare_s - 1):+.0f}% vs bare; {loop_peak} peak; train.train: "
             f"{fmt_time(long)} for {warmup + block * repeats} steps - {fmt_time(short)} for {warmup}")]


def patched(name, totals, device, keep=None):
    """A patch of evaluation.<name> that adds its time to totals[name]; keep gets the first 10 calls' arguments."""
    original, totals[name] = getattr(evaluation, name), 0.0

    def timed(fn, *a, **k):
        seconds, out = median_time(lambda: fn(*a, **k), 1, device)
        totals[name] += seconds
        return out

    def wrapper(*a, **k):
        if keep is not None and len(keep) < 10:
            keep.append(a)
        if name != "test_batches":
            return timed(original, *a, **k)
        batches = original(*a, **k)   # a generator: its time is that of its items
        return iter(lambda: timed(next, batches, None), None)
    return mock.patch.object(evaluation, name, wrapper)


def test_rows(device, args, rng, tmp, kept):
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
    rows = [("test pass: infer", what, whole,
             f"evaluation.infer, batch {cfg.batch_size}; lengths median {np.median(L):.0f}, max {L.max()} segments"),
            ("  of which forward", what, whole - inputs - post, "model + copy back (the rest)"),
            ("  of which input", what, inputs, f"dataset.test_batches, features on {videos.store.device}"),
            ("  of which post-processing", what, post,
             f"postprocess.localize_video; {sum(map(len, inferred['results'].values()))} proposals"),
            ("test pass: Evaluator", what, eval_s, "mAP, accuracy, predictions.json, results.json")]
    if n < NUM_TEST_VIDEOS:
        rows.append(("test pass: scaled", f"{NUM_TEST_VIDEOS} videos", (whole + eval_s) * NUM_TEST_VIDEOS / n,
                     f"infer + Evaluator, x {NUM_TEST_VIDEOS / n:.1f}"))
    return rows


def post_rows(args, rng, kept):
    """localize_video against loop_localize_video, checked to agree; a noise CAS stands in for `kept` if empty."""
    cfg, _ = config("paper", args, "unused")
    params, T = Localization.from_config(cfg), cfg.num_segments
    probs = np.where(np.arange(C) < 2, 0.4, 0.02).astype(np.float32)   # two classes above class_th
    noise = [(rng.standard_normal((T, C)).astype(np.float32), probs, THUMOS14_CLASSES, 300, params,
              SECONDS_PER_SEGMENT) for _ in range(3)]
    cases = {"random-weight CAS": kept} if kept else {"noise CAS": noise}
    cases["action-like CAS"] = [(*action_like_cas(rng, T, C), THUMOS14_CLASSES, int(L), params, SECONDS_PER_SEGMENT)
                                for L in video_lengths(rng, len(next(iter(cases.values()))))]
    rows = []
    for label, calls in cases.items():
        fast, loop, count, same = 0, 0, 0, True
        for a in calls:
            t, (out, _) = median_time(lambda: localize_video(*a), max(3, args.repeats))
            t_loop, ref = median_time(lambda: loop_localize_video(*a), 1)
            fast, loop, count, same = fast + t, loop + t_loop, count + len(out), same and same_proposals(out, ref)
        rows.append((f"post-processing, {label}", f"{len(calls)} videos", fast,
                     f"release-style loop {fmt_time(loop)}: {loop / fast:.0f}x; {count} proposals, "
                     f"{'identical' if same else 'DIFFERENT'}"))
    return rows


def eval_rows(args, rng):
    gt = load_ground_truth(THUMOS14 / "gt.json", subset="test")
    as_dict = realistic_predictions(rng, gt, args.predictions)
    parse_s, preds = median_time(lambda: load_predictions(as_dict), args.repeats)
    fast_s, fast = median_time(lambda: evaluate_detection(gt, preds), args.repeats)
    what = f"{args.predictions} predictions"
    rows = [("evaluator: parse predictions", what, parse_s, "eval.load_predictions (shared by all three)"),
            ("evaluator: fast", what, fast_s, f"eval.evaluate_detection; average mAP {100 * fast['average_mAP']:.2f}")]
    references = [("plain loop", evaluate_detection_loop, max(1, args.repeats // 2))]
    for name, fn, repeats in references + [("pandas-style", evaluate_detection_pandas, 1)] * (not args.no_pandas):
        t, res = median_time(lambda: fn(gt, preds), repeats)
        diff = max(abs(a - b) for c, ap in res["ap_per_class"].items() for a, b in zip(ap, fast["ap_per_class"][c]))
        rows.append((f"evaluator: {name} reference", what, t,
                     f"{t / fast_s:.1f}x the fast one's time; max AP difference {diff:.1e}; {repeats} run(s)"))
    return rows


def recipe_rows(rows):
    """The paper's recipe (1500 steps, 15 test passes) from the measured parts."""
    t = {what: s for what, _, s, _ in rows}
    step = t.get("train step, loop (paper)")
    test = t.get("test pass: scaled", t.get("test pass: infer", 0) + t.get("test pass: Evaluator", 0))
    if step is None or "test pass: infer" not in t:
        return []
    return [("paper recipe, estimated", f"{RECIPE_STEPS} steps", RECIPE_STEPS * step + RECIPE_PASSES * test,
             f"{RECIPE_STEPS} x {fmt_time(step)} + {RECIPE_PASSES} test passes x {fmt_time(test)}")]


def fmt_time(s):
    return (f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else
            f"{s:.2f} s" if s >= 1 else f"{s * 1000:.1f} ms")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    p.add_argument("--sizes", default="demo,paper", help="training sizes, comma-separated, of demo, paper")
    p.add_argument("--repeats", type=int, help="timed repeats (default 5 on cuda, 3 on cpu, 2 with --quick)")
    p.add_argument("--paper_cpu_steps", type=int, default=1, help="timed paper-size steps on the CPU (~30 s each)")
    p.add_argument("--test_videos", type=int, help="videos of the test pass (default 210; 8 on cpu)")
    p.add_argument("--test_repeats", type=int, help="timed test passes (default 3 on cuda, else 1)")
    p.add_argument("--predictions", type=int, default=20000, help="predictions of the eval section")
    p.add_argument("--no_pandas", action="store_true", help="skip the pandas-style evaluator (tens of seconds)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few seconds, figures meaningless (tests)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    args.device, cuda, quick = device.type, device.type == "cuda", args.quick
    sections, sizes = args.sections.split(","), args.sizes.split(",")
    if not set(sections) <= set(SECTIONS) or not set(sizes) <= set(SIZES):
        p.error(f"--sections takes {', '.join(SECTIONS)}; --sizes takes {', '.join(SIZES)}")
    args.repeats = args.repeats or (2 if quick else 5 if cuda else 3)
    args.test_videos = args.test_videos or (4 if quick else NUM_TEST_VIDEOS if cuda else 8)
    args.test_repeats = args.test_repeats or (3 if cuda and not quick else 1)
    args.predictions = min(args.predictions, 1000) if quick else args.predictions
    rng, started, rows, kept = np.random.default_rng(args.seed), time.perf_counter(), [], []
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"benchmark on {name}, torch {torch.__version__}{' (--quick: figures meaningless)' * quick}", flush=True)
    with tempfile.TemporaryDirectory(prefix="basnet_bench_") as tmp:
        tmp = Path(tmp)
        jobs = {"train": [(f"train: {size} size", lambda s=size: train_rows(s, device, args, rng, tmp)) for size in sizes],
                "test": [(f"test: a pass over {args.test_videos} videos", lambda: test_rows(device, args, rng, tmp, kept))],
                "post": [("post: against the release-style loop", lambda: post_rows(args, rng, kept))],
                "eval": [(f"eval: {args.predictions} predictions", lambda: eval_rows(args, rng))]}
        for message, rows_of in (job for name in SECTIONS if name in sections for job in jobs[name]):
            print(f"{message} ...", flush=True)
            rows += rows_of()
    rows += recipe_rows(rows)
    print("\n| what | size | time | note |\n|---|---|---|---|")
    print("\n".join(f"| {what} | {size} | {fmt_time(t)} | {note} |" for what, size, t, note in rows))
    print(f"\nbenchmark took {fmt_time(time.perf_counter() - started)}; {json.dumps(vars(args))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
