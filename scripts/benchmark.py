"""Speed benchmark of the pipeline on this machine; prints a Markdown table (docs/speed.md).

    python scripts/benchmark.py [--device cuda] [--sections train,test,post,eval] [--quick]

Sections, each a function that returns table rows:
  train  the bare step (train.train_step on one fixed tensor) against the real loop, train.train
         itself (the difference of two runs of different lengths, so that setup, warm-up, the
         one evaluation and the checkpoint cancel out), at the "demo" size (the synthetic preset,
         64 features) and the "paper" size (THUMOS14 recipe, 2048 features); peak memory.
  test   one paper-size test pass over THUMOS14 test videos (random features of THUMOS14-like
         lengths, random weights): evaluation.infer, its input (dataset.test_batches) and its
         post-processing (postprocess.localize_video) timed through wrappers; then the Evaluator.
  post   postprocess.localize_video against the release-style loop of eval/reference.py.
  eval   eval.evaluate_detection against the plain-loop and pandas-style references of
         eval/reference.py on 20,000 predictions over the real THUMOS14 test ground truth.
Medians over --repeats. On the CPU, where a paper-size step takes about half a minute, the
paper-size steps are timed once (--paper_cpu_steps) and the test pass runs over 8 videos.
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

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import evaluation  # noqa: E402
from dataset import SECONDS_PER_SEGMENT, THUMOS14_CLASSES, FeatureStore, VideoSet  # noqa: E402
from eval import evaluate_detection, load_ground_truth, load_predictions  # noqa: E402
from eval.reference import (action_like_cas, evaluate_detection_loop, evaluate_detection_pandas,  # noqa: E402
                            loop_localize_video, same_proposals)
from options import parse_args  # noqa: E402
from postprocess import Localization, localize_video  # noqa: E402
from train import build_model, build_optimizer, train, train_step  # noqa: E402
from utils import autocast_for, pick_device  # noqa: E402

THUMOS14 = ROOT / "dataset" / "THUMOS14"    # its gt.json (the real annotations) is shipped
SIZES = {"demo": ("synthetic", 64), "paper": ("thumos14", 2048)}   # preset, feature width
QUICK = ["--num_segments", "16", "--hidden_dim", "16", "--batch_size", "2"], 16
SECTIONS = ("train", "test", "post", "eval")
RECIPE_STEPS, RECIPE_PASSES, NUM_TEST_VIDEOS = 1500, 15, 210   # test passes at steps 100, 200, ..., 1500


def config(size, args, output_path, *extra):
    """(cfg, feature width) of a size: its preset of options.py, on the shipped THUMOS14 ground truth."""
    preset, width = SIZES[size]
    argv = ["--dataset", preset, "--data_path", str(THUMOS14), "--device", args.device, "--seed", "0",
            "--output_path", str(output_path), "--no_progress", *extra]
    if args.quick:
        argv, width = argv + QUICK[0], QUICK[1]
    return parse_args(argv), width


def now(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def median_time(fn, repeats, device=torch.device("cpu")):
    """(median seconds, last result) of `repeats` calls."""
    times = []
    for _ in range(repeats):
        t0 = now(device)
        out = fn()
        times.append(now(device) - t0)
    return statistics.median(times), out


@contextlib.contextmanager
def peak_memory(device, out):
    """out[0] = peak memory inside the block: CUDA max allocated, else peak RSS (VmHWM, reset
    through /proc/self/clear_refs where Linux allows it, else the process's peak so far)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    yield
    out[:] = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]
    with contextlib.suppress(OSError, StopIteration), open("/proc/self/status") as f:
        out[:] = [next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))]
    if device.type == "cuda":
        out[:] = [torch.cuda.max_memory_allocated()]


# ----------------------------------------------------------------------------- data
def video_lengths(rng, count, at_least=None):
    """THUMOS14-like lengths in segments: log-normal, median 300 (about 3 min), in [47, 2625]
    (30 s to 28 min), the longest at 28 min as in the real test set."""
    lengths = np.clip(rng.lognormal(np.log(300), 0.7, count), 47, 2625).astype(np.int64)
    if at_least is not None:
        lengths = np.maximum(lengths, at_least)
    if count >= 20:
        lengths[int(np.argmax(lengths))] = 2625
    return lengths


def random_videos(rng, names, lengths, labels, width):
    """A VideoSet of random features in memory, as dataset.load_dataset builds it."""
    arrays = [rng.standard_normal((int(L), width), dtype=np.float32) for L in lengths]
    return VideoSet(names, labels, FeatureStore.from_arrays(arrays), width)


def test_videos(rng, count, width):
    """`count` THUMOS14 test videos (all 210 at most), labelled by their annotations, each at
    least as long as its last annotation."""
    gt = load_ground_truth(THUMOS14 / "gt.json", subset="test")
    pick = np.sort(rng.choice(len(gt.videos), min(count, len(gt.videos)), replace=False))
    names = [gt.videos[i] for i in pick]
    ends = np.array([max([a.end for a in gt.annotations[v]] or [0.0]) for v in names])
    labels = np.zeros((len(names), len(THUMOS14_CLASSES)), dtype=np.float32)
    for j, v in enumerate(names):
        labels[j, [THUMOS14_CLASSES.index(a.label) for a in gt.annotations[v]]] = 1
    lengths = video_lengths(rng, len(names), np.ceil(ends / SECONDS_PER_SEGMENT).astype(np.int64) + 5)
    return random_videos(rng, names, lengths, labels, width)


def realistic_predictions(rng, gt, num_predictions):
    """70% jittered copies of ground-truth instances (higher scores), the rest random
    segments, mostly of the video's own classes."""
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


# ----------------------------------------------------------------------------- sections
def train_rows(size, device, args, rng, tmp):
    """Bare step (median over --repeats blocks) and train.train's step: (time(train, n + k) -
    time(train, n)) / k, both runs ending in one evaluation (2 test videos) and one checkpoint."""
    cpu_paper = device.type == "cpu" and size == "paper" and not args.quick
    warmup, block = (1, args.paper_cpu_steps) if cpu_paper else (2, 2) if args.quick else (3, 10)
    repeats = 1 if cpu_paper else args.repeats
    cfg, F = config(size, args, tmp / "bare")
    C, shape = len(THUMOS14_CLASSES), f"F{F} T{cfg.num_segments} B{cfg.batch_size} H{cfg.hidden_dim}"
    torch.manual_seed(0)
    model, scaler = build_model(cfg, F, C).to(device), torch.amp.GradScaler(enabled=False)
    optimizer, autocast = build_optimizer(cfg, model), autocast_for(cfg.amp, device)
    x = torch.randn(cfg.batch_size, cfg.num_segments, F, device=device)
    y = torch.eye(C, device=device)[torch.arange(cfg.batch_size) % C]

    def bare(steps):
        for _ in range(steps):
            train_step(model, optimizer, scaler, autocast, x, y, cfg.alpha)

    bare(warmup)
    bare_peak, loop_peak = [], []
    with peak_memory(device, bare_peak):
        bare_s = median_time(lambda: bare(block), repeats, device)[0] / block
    del model, optimizer, x
    n = 20 if args.quick else 200
    train_set = random_videos(rng, [f"video_validation_{i:07d}" for i in range(n)], video_lengths(rng, n),
                              np.eye(C, dtype=np.float32)[rng.integers(0, C, n)], F)
    data = (THUMOS14_CLASSES, train_set, test_videos(rng, 2, F))

    def run(steps):
        cfg, _ = config(size, args, tmp / f"train_{size}_{steps}", "--num_iters", str(steps), "--eval_every", str(steps))
        torch.manual_seed(0)
        t0 = now(device)
        with contextlib.redirect_stdout(io.StringIO()):   # its evaluation line
            train(cfg, data, device, log=lambda *a: None)
        return now(device) - t0

    if not cpu_paper:
        run(warmup)   # first-call costs (TensorBoard, kernels) out of the timed runs
    with peak_memory(device, loop_peak):
        short, long = run(warmup), run(warmup + block * repeats)
    loop_s = (long - short) / (block * repeats)
    return [(f"train step, bare ({size})", shape, bare_s,
             f"{1 / bare_s:.3g} steps/s; {fmt_bytes(bare_peak[0])} peak; {repeats} x {block} steps"),
            (f"train step, loop ({size})", shape, loop_s,
             f"{100 * (loop_s / bare_s - 1):+.0f}% vs bare; {fmt_bytes(loop_peak[0])} peak; train.train: "
             f"{fmt_time(long)} for {warmup + block * repeats} steps - {fmt_time(short)} for {warmup}")]


@contextlib.contextmanager
def timing(name, totals, device, keep=None):
    """evaluation.<name> replaced by a wrapper that adds its time (per call, or per item of
    test_batches, a generator) to totals[name]; keep receives the first 10 calls' arguments."""
    original, totals[name] = getattr(evaluation, name), 0.0

    def timed(fn, *a, **k):
        t0 = now(device)
        out = fn(*a, **k)
        totals[name] += now(device) - t0
        return out

    def call(*a, **k):
        if keep is not None and len(keep) < 10:
            keep.append(a)
        return timed(original, *a, **k)

    def items(*a, **k):
        it = original(*a, **k)
        while (item := timed(next, it, None)) is not None:
            yield item

    setattr(evaluation, name, items if name == "test_batches" else call)
    try:
        yield
    finally:
        setattr(evaluation, name, original)


def test_rows(device, args, rng, tmp, kept):
    """One test pass: infer (forward, input, post-processing) and the Evaluator; fills `kept`
    with the first videos' localize_video arguments (for the post section)."""
    cfg, F = config("paper", args, tmp / "test")
    videos = test_videos(rng, args.test_videos, F)
    videos.store.move_if_fits(device)   # as train.py and test.py
    torch.manual_seed(1)
    model = build_model(cfg, F, len(THUMOS14_CLASSES)).to(device)
    evaluator = evaluation.Evaluator(cfg, videos, THUMOS14_CLASSES)
    if device.type == "cuda":
        evaluation.infer(model, videos, THUMOS14_CLASSES, cfg, device)   # warm-up (cuDNN, allocator)
    parts = {"whole": [], "test_batches": [], "localize_video": []}
    for r in range(args.test_repeats):
        totals = {}
        with timing("test_batches", totals, device), timing("localize_video", totals, device, kept if r == 0 else None):
            t0 = now(device)
            inferred = evaluation.infer(model, videos, THUMOS14_CLASSES, cfg, device)
            totals["whole"] = now(device) - t0
        for k, v in totals.items():
            parts[k].append(v)
    whole, inputs, post = (statistics.median(v) for v in parts.values())
    eval_s, _ = median_time(lambda: evaluator(model, device, tmp / "test", inferred=inferred), args.test_repeats)
    n, L = len(videos), videos.lengths
    rows = [("test pass: infer", f"{n} videos", whole,
             f"evaluation.infer, batch {cfg.batch_size}; lengths median {np.median(L):.0f}, max {L.max()} segments"),
            ("  of which forward", f"{n} videos", whole - inputs - post, "model + copy back (the rest)"),
            ("  of which input", f"{n} videos", inputs, f"dataset.test_batches, features on {videos.store.device}"),
            ("  of which post-processing", f"{n} videos", post,
             f"postprocess.localize_video; {sum(map(len, inferred['results'].values()))} proposals"),
            ("test pass: Evaluator", f"{n} videos", eval_s, "mAP, accuracy, predictions.json, results.json")]
    if n < NUM_TEST_VIDEOS:
        rows.append(("test pass: scaled", f"{NUM_TEST_VIDEOS} videos", (whole + eval_s) * NUM_TEST_VIDEOS / n,
                     f"infer + Evaluator, x {NUM_TEST_VIDEOS / n:.1f}"))
    return rows


def post_rows(args, rng, kept, params, T):
    """localize_video against loop_localize_video on the same inputs, after checking they agree;
    without the test section, a noise CAS (two classes predicted) stands in for the random-weight one."""
    probs = np.where(np.arange(20) < 2, 0.4, 0.02).astype(np.float32)   # two classes above class_th
    noise = [(rng.standard_normal((T, 20)).astype(np.float32), probs, THUMOS14_CLASSES, 300, params,
              SECONDS_PER_SEGMENT) for _ in range(3)]
    cases = {"random-weight CAS": kept} if kept else {"noise CAS": noise}
    cases["action-like CAS"] = [(*action_like_cas(rng, T, 20), THUMOS14_CLASSES, int(L), params, SECONDS_PER_SEGMENT)
                                for L in video_lengths(rng, len(next(iter(cases.values()))))]
    rows = []
    for label, calls in cases.items():
        fast = loop = count = 0
        same = True
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
    others = [("plain loop", evaluate_detection_loop, max(1, args.repeats // 2))]
    others += [] if args.no_pandas else [("pandas-style", evaluate_detection_pandas, 1)]
    for name, fn, repeats in others:
        t, res = median_time(lambda: fn(gt, preds), repeats)
        diff = max(abs(a - b) for c, ap in res["ap_per_class"].items() for a, b in zip(ap, fast["ap_per_class"][c]))
        rows.append((f"evaluator: {name} reference", what, t,
                     f"{t / fast_s:.1f}x the fast one's time; max AP difference {diff:.1e}; {repeats} run(s)"))
    return rows


def recipe_rows(rows):
    """The paper's recipe (1500 steps, 15 test passes) from the measured parts."""
    t = {what: s for what, _, s, _ in rows}
    step, test = t.get("train step, loop (paper)"), t.get("test pass: scaled", t.get("test pass: infer"))
    if step is None or test is None:
        return []
    test += t["test pass: Evaluator"] if "test pass: scaled" not in t else 0
    return [("paper recipe, estimated", f"{RECIPE_STEPS} steps", RECIPE_STEPS * step + RECIPE_PASSES * test,
             f"{RECIPE_STEPS} x {fmt_time(step)} + {RECIPE_PASSES} test passes x {fmt_time(test)}")]


# ----------------------------------------------------------------------------- report
def fmt_time(s):
    return (f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 120 else
            f"{s:.2f} s" if s >= 1 else f"{s * 1000:.1f} ms")


def fmt_bytes(b):
    return f"{b / 2 ** 30:.2f} GiB" if b >= 2 ** 30 else f"{b / 2 ** 20:.0f} MiB"


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
    args.device, cuda = device.type, device.type == "cuda"
    sections, sizes = args.sections.split(","), args.sizes.split(",")
    if not set(sections) <= set(SECTIONS) or not set(sizes) <= set(SIZES):
        p.error(f"--sections takes {', '.join(SECTIONS)}; --sizes takes {', '.join(SIZES)}")
    args.repeats = args.repeats or (2 if args.quick else 5 if cuda else 3)
    args.test_videos = args.test_videos or (4 if args.quick else NUM_TEST_VIDEOS if cuda else 8)
    args.test_repeats = args.test_repeats or (3 if cuda and not args.quick else 1)
    args.predictions = min(args.predictions, 1000) if args.quick else args.predictions
    rng, started, rows, kept = np.random.default_rng(args.seed), time.perf_counter(), [], []
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"benchmark on {name}, torch {torch.__version__}{' (--quick: figures meaningless)' * args.quick}", flush=True)
    with tempfile.TemporaryDirectory(prefix="basnet_bench_") as tmp:
        for size in sizes if "train" in sections else []:
            print(f"train: {size} size ...", flush=True)
            rows += train_rows(size, device, args, rng, Path(tmp))
        if "test" in sections:
            print(f"test: a pass over {args.test_videos} videos ...", flush=True)
            rows += test_rows(device, args, rng, Path(tmp), kept)
    if "post" in sections:
        print("post: against the release-style loop ...", flush=True)
        cfg, _ = config("paper", args, "unused")
        rows += post_rows(args, rng, kept, Localization.from_config(cfg), cfg.num_segments)
    if "eval" in sections:
        print(f"eval: {args.predictions} predictions ...", flush=True)
        rows += eval_rows(args, rng)
    rows += recipe_rows(rows)
    print("\n| what | size | time | note |\n|---|---|---|---|")
    print("\n".join(f"| {what} | {size} | {fmt_time(t)} | {note} |" for what, size, t, note in rows))
    print(f"\nbenchmark took {fmt_time(time.perf_counter() - started)}; {json.dumps(vars(args))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
