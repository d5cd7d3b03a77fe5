"""Speed benchmark of the whole pipeline on this machine (issue #7).

    python scripts/benchmark.py                      # CPU (paper-size parts reduced, see below)
    python scripts/benchmark.py --device cuda        # GPU, everything at full size
    python scripts/benchmark.py --quick              # tiny sizes, a few seconds (the test uses it)
    python scripts/benchmark.py --json bench.json    # also write every figure as JSON

Prints, side by side from one run:
  1. training steps per second at the paper's size (F 2048, T 750, batch 16, 20 classes,
     hidden 2048) and at the demo size (the `synthetic` preset: F 64, T 320, hidden 256,
     batch 16), for the bare step (forward, loss, backward, Adam on a fixed tensor) and
     for the loop path of train.py (TrainBatches gathering from an in-memory FeatureStore,
     loss, step, losses logged and flushed every 10 steps), with peak memory (CUDA max
     allocated on a GPU, peak RSS on the CPU);
  2. one whole test pass at the paper's size over a THUMOS14-size test set (210 videos,
     lengths like the real ones, random features), split into forward, post-processing
     and evaluation (mAP, then the files that train.py writes);
  3. post-processing (utils.localize_video) against a literal loop version of the
     release's algorithm written below, after checking that both give the same proposals;
  4. the evaluator (eval.evaluate_detection) against its loop reference
     (eval/reference.py) on 20,000 predictions over the THUMOS14 test ground truth
     (dataset/THUMOS14/gt.json, shipped with the repository);
  5. the estimated time of the paper's whole recipe (1500 steps, a test pass every 100
     steps and at the end, as train.py does: 15 passes) against the release's schedule (a test pass with
     loop post-processing and a loop evaluation after every step), from the parts
     measured above.

Figures are medians over --repeats. On the CPU a paper-size training step takes about a
minute, so by default the CPU run times one paper-size step of each kind (after one
warm-up step of each) and a test pass over --test_videos 8 videos, scaled to 210 (the
output says so); use --paper_cpu_repeats and --test_videos to measure more. The whole
CPU run takes a few minutes; --quick takes a few seconds.
"""
import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import interp1d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import test as evaluation  # noqa: E402
from dataset import FeatureStore, VideoSet, test_batches  # noqa: E402
from eval import evaluate_detection, load_ground_truth  # noqa: E402
from eval.reference import evaluate_detection_loop  # noqa: E402
from model import BaSNet  # noqa: E402
from options import parse_args  # noqa: E402
from train import Logger, make_batches, train_step  # noqa: E402
from utils import localize_video, pick_device  # noqa: E402

REAL_GT = ROOT / "dataset" / "THUMOS14" / "gt.json"  # the real annotations, shipped
SECONDS_PER_SEGMENT = 16 / 25
THUMOS_CLASSES = [
    "BaseballPitch", "BasketballDunk", "Billiards", "CleanAndJerk", "CliffDiving",
    "CricketBowling", "CricketShot", "Diving", "FrisbeeCatch", "GolfSwing", "HammerThrow",
    "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "SoccerPenalty",
    "TennisSwing", "ThrowDiscus", "VolleyballSpiking",
]
NUM_TEST_VIDEOS = 210       # THUMOS14 test set
NUM_TRAIN_VIDEOS = 200      # THUMOS14 validation set, the training videos
RECIPE_STEPS, RECIPE_EVAL_EVERY = 1500, 100
RELEASE_EVAL_S = 50.0       # the release's ActivityNet evaluator on one THUMOS14 pass

# Model sizes. "paper": the released architecture (README, "Model"); "demo": the synthetic preset of options.py.
SIZES = {
    "paper": dict(F=2048, T=750, B=16, C=20, H=2048, lr=1e-4),
    "demo": dict(F=64, T=320, B=16, C=20, H=256, lr=5e-4),
}
QUICK_SIZES = {
    "paper": dict(F=32, T=32, B=2, C=20, H=32, lr=1e-4),
    "demo": dict(F=16, T=16, B=2, C=20, H=16, lr=5e-4),
}


# ----------------------------------------------------------------------------- timing
class Clock:
    """Wall time that waits for the device first."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def now(self):
        self.sync()
        return time.perf_counter()


class PeakMemory:
    """Peak memory of what runs inside: CUDA max allocated on a GPU, peak RSS on the CPU
    (VmHWM, reset through /proc/self/clear_refs where Linux allows it, else the process's
    peak so far)."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.kind = "CUDA max allocated" if self.cuda else "peak RSS"

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        else:
            self.reset = False
            with contextlib.suppress(OSError):
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.reset = True
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.bytes = torch.cuda.max_memory_allocated()
        else:
            self.bytes = _vm_hwm() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return False


def _vm_hwm():
    with contextlib.suppress(OSError):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return None


def median(values):
    return statistics.median(values) if values else float("nan")


# ----------------------------------------------------------------------------- data
def video_lengths(rng, names_and_bounds, count):
    """THUMOS14-like lengths in segments: log-normal, median 300 (about 3 min), clipped to
    [47, 2625] (30 s to 28 min), at least the end of the last annotation, and the longest
    video at 28 min as in the real test set."""
    lengths = np.clip(rng.lognormal(np.log(300), 0.7, count), 47, 2625).astype(np.int64)
    if names_and_bounds is not None:
        bounds = np.array([b for _, b in names_and_bounds], dtype=np.float64)
        lengths = np.maximum(lengths, np.ceil(bounds / SECONDS_PER_SEGMENT).astype(np.int64) + 5)
    if count >= 20:
        lengths[int(np.argmax(lengths))] = 2625
    return lengths


def generated_gt(rng, num_videos=NUM_TEST_VIDEOS, num_instances=3311):
    """A THUMOS14-size test ground truth: one or two classes per video, ~16 instances per
    video on average, median instance about 3 s."""
    database = {}
    per_video = rng.multinomial(num_instances, rng.dirichlet(np.full(num_videos, 2.0)))
    for v, n in enumerate(per_video):
        duration = float(np.clip(rng.lognormal(np.log(190), 0.7), 30, 1680))
        labels = rng.choice(THUMOS_CLASSES, size=rng.integers(1, 3), replace=False)
        anns = []
        for _ in range(max(int(n), 1)):
            length = float(np.clip(rng.lognormal(np.log(3.0), 0.7), 0.3, 60))
            start = float(rng.uniform(0, max(duration - length, 1)))
            anns.append({"segment": [round(start, 1), round(start + length, 1)], "label": str(rng.choice(labels))})
        database[f"video_test_{v + 1:07d}"] = {"subset": "test", "annotations": anns}
    return {"database": database}


def thumos_gt(rng, path):
    """(gt dict, where from): the real THUMOS14 test annotations when present."""
    if path and os.path.exists(path):
        with open(path) as f:
            gt = json.load(f)
        gt = {"database": {v: e for v, e in gt["database"].items() if e.get("subset") == "test"}}
        return gt, f"real THUMOS14 test GT ({path})"
    return generated_gt(rng), f"generated THUMOS14-size GT ({path} absent)"


def annotation_bounds(gt):
    """[(video, end of its last annotation in seconds)] in file order."""
    return [(v, max([float(a["segment"][1]) for a in e["annotations"]] or [0.0]))
            for v, e in gt["database"].items()]


def video_set(rng, names, lengths, labels, feature_dim):
    """A VideoSet of random features held in memory, as load_dataset builds it."""
    arrays = [rng.standard_normal((int(L), feature_dim), dtype=np.float32) for L in lengths]
    return VideoSet(names, labels, FeatureStore.from_arrays(arrays), feature_dim)


def random_labels(rng, count, num_classes):
    labels = np.zeros((count, num_classes), dtype=np.float32)
    labels[np.arange(count), rng.integers(0, num_classes, count)] = 1
    extra = rng.random(count) < 0.15
    labels[np.flatnonzero(extra), rng.integers(0, num_classes, int(extra.sum()))] = 1
    return labels


def make_predictions(rng, gt, num_predictions):
    """ActivityNet-format predictions: 70% jittered copies of ground-truth instances,
    30% random segments, mostly of the video's own classes."""
    database = gt["database"]
    videos = list(database)
    instances = [(v, a) for v in videos for a in database[v]["annotations"]]
    own = {v: sorted({a["label"] for a in database[v]["annotations"]}) or THUMOS_CLASSES for v in videos}
    classes = sorted({a["label"] for _, a in instances})
    results = {v: [] for v in videos}
    near = int(0.7 * num_predictions)
    for k in rng.integers(0, len(instances), near):
        v, a = instances[k]
        s, e = float(a["segment"][0]), float(a["segment"][1])
        length = max(e - s, 0.1) * rng.lognormal(0, 0.4)
        centre = (s + e) / 2 + rng.normal(0, 0.3 * max(e - s, 0.1))
        start = max(0.0, centre - length / 2)
        results[v].append({"label": a["label"], "score": float(rng.beta(5, 2)),
                           "segment": [round(start, 2), round(start + length, 2)]})
    for _ in range(num_predictions - near):
        v = videos[rng.integers(len(videos))]
        label = rng.choice(own[v]) if rng.random() < 0.8 else rng.choice(classes)
        start = float(rng.uniform(0, 300))
        results[v].append({"label": str(label), "score": float(rng.beta(2, 5)),
                           "segment": [round(start, 2), round(start + float(rng.lognormal(np.log(4), 0.8)), 2)]})
    return {"version": "VERSION 1.3", "results": results, "external_data": {}}


def make_cfg(data_path, device, size, output_path):
    cfg = parse_args(["--data_path", str(data_path), "--device", device.type, "--output_path", str(output_path),
                      "--num_segments", str(size["T"]), "--hidden_dim", str(size["H"]),
                      "--batch_size", str(size["B"]), "--lr", str(size["lr"]), "--no_progress"])
    cfg.seed = 0
    return cfg


# ----------------------------------------------------------------------------- 1. training
def train_speed(size_name, size, device, args, rng, tmp):
    """Bare step and loop step, timed in interleaved blocks (so that drift in the
    machine's load hits both alike); returns a dict of figures."""
    F, T, B, C, H = size["F"], size["T"], size["B"], size["C"], size["H"]
    clock = Clock(device)
    torch.manual_seed(0)
    model = BaSNet(F, C, T, hidden_dim=H).to(device)
    # the optimiser of train.py
    optimizer = torch.optim.Adam(model.parameters(), lr=size["lr"], betas=(0.9, 0.999), weight_decay=5e-4)
    cfg = make_cfg(tmp, device, size, os.path.join(tmp, f"train_{size_name}"))
    os.makedirs(cfg.output_path, exist_ok=True)

    num_videos = args.train_videos
    lengths = video_lengths(rng, None, num_videos)
    train_set = video_set(rng, [f"video_validation_{i + 1:07d}" for i in range(num_videos)], lengths,
                          random_labels(rng, num_videos, C), F)
    train_set.store.move_if_fits(device)  # as train.py does
    features_on = str(train_set.store.device)
    batches = make_batches(cfg, train_set, device, 0, 1, 0)
    try:
        logger = Logger(cfg.output_path, 0, True)
        logging_note = "losses to TensorBoard and train_log.txt every 10 steps, as train.py"
    except ImportError:  # tensorboardX missing: the in-memory part of the logging only
        logger = Logger(cfg.output_path, 0, False)
        logging_note = "tensorboardX missing: losses gathered and flushed every 10 steps, no TensorBoard file"

    x = torch.randn(B, T, F, device=device)
    y = torch.from_numpy(random_labels(rng, B, C)).to(device)
    scaler = torch.amp.GradScaler(enabled=False)

    no_autocast = contextlib.nullcontext()

    def bare_step():  # the same step on one fixed tensor: no data, no logging
        train_step(model, optimizer, scaler, no_autocast, x, y, 1e-4)

    step_no = [0]

    def loop_step():  # the body of train.train's loop (no evaluation, no checkpoint)
        feats, labels = next(batches)
        losses = train_step(model, optimizer, scaler, no_autocast, feats.to(device, non_blocking=True),
                            labels.to(device, non_blocking=True), cfg.alpha)
        logger.add_losses(step_no[0], losses)
        step_no[0] += 1
        if step_no[0] % 10 == 0:
            logger.flush(1)

    slow = device.type == "cpu" and size_name == "paper" and not args.quick
    block = 1 if slow else (2 if args.quick else 10)  # steps per timed block (10: one flush period)
    repeats = args.paper_cpu_repeats if slow else args.repeats
    warmup = 1 if slow or args.quick else 3  # the first step allocates Adam's state and kernels
    model.train()
    for _ in range(warmup):
        bare_step()
        loop_step()
    def timed_block(step):
        """(seconds per step, peak memory) of `block` steps."""
        with PeakMemory(device) as pm:
            t0 = clock.now()
            for _ in range(block):
                step()
            seconds = (clock.now() - t0) / block
        return seconds, pm.bytes

    bare, loop = [], []
    mem_bare = mem_loop = 0
    for _ in range(repeats):  # bare and loop alternate, so drifts hit both alike
        seconds, peak = timed_block(bare_step)
        bare.append(seconds)
        mem_bare = max(mem_bare, peak)
        seconds, peak = timed_block(loop_step)
        loop.append(seconds)
        mem_loop = max(mem_loop, peak)
    logger.close()
    store_bytes = int(train_set.store.flat.numel() * 4)
    del batches, train_set, model, optimizer
    return {"size": size_name, **size, "bare_step_s": median(bare), "loop_step_s": median(loop),
            "bare_steps": bare, "loop_steps": loop, "steps_per_block": block, "blocks": repeats,
            "warmup_steps": warmup, "peak_bare_bytes": mem_bare, "peak_loop_bytes": mem_loop,
            "features_bytes": store_bytes, "features_on": features_on, "logging": logging_note}


# ----------------------------------------------------------------------------- 2. test pass
def test_pass(device, args, rng, tmp, gt, size):
    """Forward, post-processing and evaluation of one test pass, timed apart, then the
    whole pass as train.py runs it (test.evaluate)."""
    clock = Clock(device)
    F, T, H = size["F"], size["T"], size["H"]
    bounds = annotation_bounds(gt)
    all_lengths = video_lengths(rng, bounds, len(bounds))
    n = min(args.test_videos, len(bounds))
    pick = np.sort(rng.choice(len(bounds), n, replace=False)) if n < len(bounds) else np.arange(n)
    names = [bounds[i][0] for i in pick]
    lengths = all_lengths[pick]
    classes = sorted({a["label"] for e in gt["database"].values() for a in e["annotations"]})
    labels = np.zeros((n, len(classes)), dtype=np.float32)
    for j, v in enumerate(names):
        for a in gt["database"][v]["annotations"]:
            labels[j, classes.index(a["label"])] = 1
    data_path = os.path.join(tmp, "test_data")
    os.makedirs(data_path, exist_ok=True)
    with open(os.path.join(data_path, "gt.json"), "w") as f:
        json.dump(gt, f)
    videos = video_set(rng, names, lengths, labels, F)
    videos.store.move_if_fits(device)  # as train.py and test.py do
    cfg = make_cfg(data_path, device, size, os.path.join(tmp, "test_out"))
    os.makedirs(cfg.output_path, exist_ok=True)
    torch.manual_seed(1)
    model = BaSNet(F, len(classes), T, hidden_dim=H).to(device).eval()
    branch = model.localization_branch

    def forward_part():
        """infer()'s model part: gather, copy to the device, forward, back to numpy."""
        preds = []
        t0 = clock.now()
        with torch.no_grad():
            for vids, feats in test_batches(videos, cfg.num_segments, cfg.batch_size):
                with evaluation.autocast_for(cfg, device):  # as infer(): the localizing branch only
                    pred = model(feats.to(device, non_blocking=True), branches=(branch,))
                preds.append((vids, {k: v.float().cpu().numpy() for k, v in pred.items()}))
        return time.perf_counter() - t0, preds

    def input_part():
        """Only the gather and the copy to the device that forward_part includes."""
        t0 = clock.now()
        for _, feats in test_batches(videos, cfg.num_segments, cfg.batch_size):
            feats.to(device, non_blocking=True)
        return clock.now() - t0

    def post_part(preds):
        """infer()'s post-processing part: localize_video for every video."""
        results, scores = {}, np.zeros((n, len(classes)))
        t0 = time.perf_counter()
        for vids, pred in preds:
            for j, v in enumerate(vids):
                probs = pred[f"score_{branch}"][j, :len(classes)]
                results[videos.names[v]], _ = localize_video(pred[f"cas_{branch}"][j, :, :len(classes)], probs,
                                                            int(videos.lengths[v]), cfg, classes)
                scores[v] = probs
        return time.perf_counter() - t0, {"results": results, "scores": scores}

    gt_loaded = evaluation.ground_truth(cfg)  # loaded once per run, as in training
    fwd, post, mAP, ev = [], [], [], []
    if device.type == "cuda":
        forward_part()  # warm-up (cuDNN, allocator); on the CPU a pass costs too much for one
    repeats = max(1, args.test_repeats)
    for _ in range(repeats):
        t, preds = forward_part()
        fwd.append(t)
        t, inferred = post_part(preds)
        post.append(t)
        predictions = {"version": "VERSION 1.3", "results": inferred["results"], "external_data": {}}
        t0 = time.perf_counter()
        evaluate_detection(gt_loaded, predictions, subset=cfg.test_subset, tiou_thresholds=cfg.tiou)
        mAP.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evaluation.evaluate(model, videos, classes, cfg, device, output_dir=cfg.output_path, inferred=inferred)
        ev.append(time.perf_counter() - t0)
    t0 = clock.now()
    evaluation.evaluate(model, videos, classes, cfg, device, output_dir=cfg.output_path)
    whole = clock.now() - t0
    inputs = median([input_part() for _ in range(repeats)])
    num_preds = sum(len(r) for r in inferred["results"].values())
    # CAS and probabilities of the first videos, for the loop comparison (section 3)
    kept = []
    for vids, pred in preds:
        for j, v in enumerate(vids):
            if len(kept) < args.compare_videos:
                kept.append((pred[f"cas_{branch}"][j, :, :len(classes)].copy(),
                             pred[f"score_{branch}"][j, :len(classes)].copy(), int(videos.lengths[v])))
    del model, videos
    return {"videos": n, "segments_median": float(np.median(lengths)), "segments_max": int(lengths.max()),
            "forward_s": median(fwd), "post_s": median(post), "map_s": median(mAP), "evaluate_s": median(ev),
            "whole_s": whole, "inputs_s": inputs, "predictions": num_preds, "repeats": repeats,
            "forward_runs": fwd, "post_runs": post}, kept, cfg, classes


# ----------------------------------------------------------------------------- 3. post-processing, loop version
def loop_localize_video(cas, class_probs, num_real_segments, cfg, classes):
    """The release's post-processing written literally (the release's utils.py and test.py): per class,
    min-max normalisation, x24 linear up-sampling (scipy's interp1d, as the release), then
    per threshold zero the points below it, group consecutive indices with a Python loop,
    score each group with np.mean over index lists, and a Python-loop NMS with a correct
    tIoU. Returns ActivityNet result dicts."""
    T, C = cas.shape
    lam, gamma, scale = cfg.lambda_oic, cfg.gamma_oic, cfg.scale
    predicted = [c for c in range(C) if class_probs[c] >= cfg.class_th]
    if not predicted:
        predicted = [int(np.argmax(class_probs))]
    f = 16 * num_real_segments / (scale * T * 25)
    out = []
    for c in predicted:
        col = cas[:, c]
        hi, lo = max(col.max(), 0), max(col.min(), 0)
        delta = hi - lo if hi - lo > 0 else 1
        norm = (col - lo) / delta  # in the CAS's precision (float32), as utils.minmax_norm
        # up-sampled in float64 (scipy keeps float32 precision for float32 input; the
        # project up-samples in float64)
        curve = interp1d(np.arange(T), norm.astype(np.float64), kind="linear",
                         fill_value="extrapolate")(np.arange(T * scale) / scale)
        N = len(curve)
        props = []
        for theta in cfg.act_thresh:
            w = curve.copy()
            w[w < theta] = 0
            groups = []
            for i in np.where(w > 0)[0]:
                if groups and i == groups[-1][-1] + 1:
                    groups[-1].append(i)
                else:
                    groups.append([i])
            for g in groups:
                n = len(g)
                inner = np.mean(w[g])
                outer_s, outer_e = max(0, int(g[0] - lam * n)), min(N - 1, int(g[-1] + lam * n))
                outer_idx = list(range(outer_s, g[0])) + list(range(g[-1] + 1, outer_e + 1))
                outer = np.mean(w[outer_idx]) if outer_idx else 0
                props.append([inner - outer + gamma * float(class_probs[c]), g[0] * f, (g[-1] + 1) * f])
        remaining = sorted(props, key=lambda p: -p[0])
        while remaining:
            best = remaining.pop(0)
            out.append({"label": classes[c], "score": float(best[0]), "segment": [float(best[1]), float(best[2])]})
            remaining = [p for p in remaining if _iou(best, p) < cfg.nms_thresh]
    return out


def _iou(a, b):
    inter = max(0.0, min(a[2], b[2]) - max(a[1], b[1]))
    union = (a[2] - a[1]) + (b[2] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def same_proposals(a, b, tol=1e-9):
    """Same set of (label, start, end) and scores within tol."""
    key = lambda p: (p["label"], p["segment"][0], p["segment"][1], p["score"])  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    return len(a) == len(b) and all(
        p["label"] == q["label"] and abs(p["score"] - q["score"]) <= tol
        and abs(p["segment"][0] - q["segment"][0]) <= tol and abs(p["segment"][1] - q["segment"][1]) <= tol
        for p, q in zip(a, b))


def action_like_cas(rng, T, C):
    """A trained-looking CAS: one or two classes with a few bumps over a low background,
    their probabilities above the class threshold."""
    cas = rng.normal(-2, 0.3, (T, C)).astype(np.float32)
    probs = np.full(C, 0.01, dtype=np.float32)
    for c in rng.choice(C, rng.integers(1, 3), replace=False):
        probs[c] = rng.uniform(0.3, 0.9)
        t = np.arange(T)
        for centre in rng.uniform(0, T, rng.integers(3, 12)):
            cas[:, c] += 3 * np.exp(-0.5 * ((t - centre) / rng.uniform(1, 8)) ** 2)
    return cas, probs


def postprocess_compare(cases, cfg, classes, repeats):
    """Times utils.localize_video and the loop version on the same videos; checks them."""
    fast, loop, same, props = [], [], True, 0
    for cas, probs, length in cases:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a, _ = localize_video(cas, probs, length, cfg, classes)
            times.append(time.perf_counter() - t0)
        fast.append(median(times))
        t0 = time.perf_counter()
        b = loop_localize_video(cas, probs, length, cfg, classes)
        loop.append(time.perf_counter() - t0)
        same &= same_proposals(a, b)
        props += len(a)
    return {"videos": len(cases), "fast_s": sum(fast), "loop_s": sum(loop), "ratio": sum(loop) / sum(fast),
            "same": bool(same), "proposals": props}


# ----------------------------------------------------------------------------- 4. evaluator
def evaluator_compare(rng, gt, num_predictions, repeats):
    gt_loaded = load_ground_truth(gt, subset="test")
    preds = make_predictions(rng, gt, num_predictions)
    fast, loop = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = evaluate_detection(gt_loaded, preds)
        fast.append(time.perf_counter() - t0)
    for _ in range(max(1, repeats // 2)):
        t0 = time.perf_counter()
        ref = evaluate_detection_loop(gt_loaded, preds)
        loop.append(time.perf_counter() - t0)
    diff = max(abs(x - y) for c in gt_loaded.classes for x, y in zip(res["ap_per_class"][c], ref["ap_per_class"][c]))
    return {"predictions": num_predictions, "fast_s": median(fast), "loop_s": median(loop),
            "ratio": median(loop) / median(fast), "max_ap_diff": diff, "average_mAP": res["average_mAP"]}


# ----------------------------------------------------------------------------- report
def fmt_time(s):
    if s != s:
        return "n/a"
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 120:
        return f"{s / 60:.1f} min"
    if s >= 1:
        return f"{s:.2f} s"
    return f"{s * 1000:.1f} ms"


def fmt_bytes(b):
    return f"{b / 2 ** 30:.2f} GiB" if b >= 2 ** 30 else f"{b / 2 ** 20:.0f} MiB"


def table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header] if r is not None) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)), line]
    for r in rows:
        out.append(line if r is None else "  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


def device_name(device):
    if device.type == "cuda":
        return (f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"cuDNN TF32 {'on' if torch.backends.cudnn.allow_tf32 else 'off'})")
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return f"CPU {cpu}, {torch.get_num_threads()} torch threads (torch {torch.__version__})"


def main(argv=None):
    p = argparse.ArgumentParser(description="Speed benchmark: training, test pass, post-processing, evaluation.")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats (blocks of 10 training steps); default 5 on cuda, 3 on cpu, 2 with --quick")
    p.add_argument("--paper_cpu_repeats", type=int, default=1,
                   help="timed paper-size training steps of each kind on the CPU (about a minute each)")
    p.add_argument("--test_videos", type=int, default=None,
                   help="videos in the timed test pass (default 210 on cuda, 8 on cpu; scaled to 210)")
    p.add_argument("--test_repeats", type=int, default=None, help="timed test passes (default 3 on cuda, 1 on cpu)")
    p.add_argument("--compare_videos", type=int, default=None,
                   help="videos in the post-processing comparison with the loop version (default 10, 3 with --quick)")
    p.add_argument("--predictions", type=int, default=20000, help="predictions of the evaluator comparison")
    p.add_argument("--quick", "--smoke", action="store_true", help="tiny sizes: a few seconds, for tests")
    p.add_argument("--json", default=None, help="write every figure to this JSON file")
    p.add_argument("--gt", default=str(REAL_GT),
                   help="THUMOS14 gt.json (release format); a generated one of the same size when absent")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = pick_device(args.device)
    cuda = device.type == "cuda"
    if args.repeats is None:
        args.repeats = 2 if args.quick else (5 if cuda else 3)
    if args.test_videos is None:
        args.test_videos = 4 if args.quick else (NUM_TEST_VIDEOS if cuda else 8)
    if args.test_repeats is None:
        args.test_repeats = 1 if args.quick or not cuda else 3
    if args.compare_videos is None:
        args.compare_videos = 3 if args.quick else 10
    if args.quick:
        args.predictions = min(args.predictions, 1000)
    args.train_videos = 20 if args.quick else NUM_TRAIN_VIDEOS
    sizes = QUICK_SIZES if args.quick else SIZES
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    notes = []
    print(f"benchmark on {device_name(device)}{' [--quick: tiny sizes, figures not meaningful]' if args.quick else ''}",
          flush=True)

    with tempfile.TemporaryDirectory(prefix="basnet_bench_") as tmp:
        gt, gt_source = thumos_gt(rng, args.gt)
        if args.quick:  # a few videos of the ground truth keep the quick run quick
            keep = list(gt["database"])[:6]
            gt = {"database": {v: gt["database"][v] for v in keep}}
        # 1. training
        train = {}
        for name in ("paper", "demo"):
            print(f"[1] training steps, {name} size ...", flush=True)
            train[name] = train_speed(name, sizes[name], device, args, rng, tmp)
        # 2. test pass at paper size
        print(f"[2] test pass over {args.test_videos} videos, paper size ...", flush=True)
        tp, kept, cfg, classes = test_pass(device, args, rng, tmp, gt, sizes["paper"])
        # 3. post-processing against the loop version
        print("[3] post-processing against the loop version ...", flush=True)
        pp_model = postprocess_compare(kept, cfg, classes, max(3, args.repeats))
        cases = [(*action_like_cas(rng, sizes["paper"]["T"], len(classes)), int(L))
                 for L in video_lengths(rng, None, args.compare_videos)]
        pp_action = postprocess_compare(cases, cfg, classes, max(3, args.repeats))
        # 4. evaluator against its loop reference
        print(f"[4] evaluator on {args.predictions} predictions ...", flush=True)
        ev = evaluator_compare(rng, gt, args.predictions, max(3, args.repeats))

    # ---- whole recipe, from the parts
    full = NUM_TEST_VIDEOS if not args.quick else tp["videos"]
    scale = full / tp["videos"]
    fwd_pass, post_pass = tp["forward_s"] * scale, tp["post_s"] * scale
    if tp["videos"] == full:
        eval_pass, eval_src = tp["evaluate_s"], "measured on the pass"
        preds_pass = tp["predictions"]
    else:
        # evaluation of a THUMOS14-size pass: the 20k-prediction case, plus the files
        eval_pass = ev["fast_s"] + max(0.0, tp["evaluate_s"] - tp["map_s"]) * scale
        eval_src = f"{args.predictions} predictions (section 4) + files scaled"
        preds_pass = args.predictions
        notes.append(f"the test pass ran over {tp['videos']} of {full} videos; forward and post-processing "
                     f"are scaled by {scale:.1f}, evaluation taken from section 4")
    pass_s = fwd_pass + post_pass + eval_pass
    step_s = train["paper"]["loop_step_s"]
    # as train.py: every 100 steps and at the last step (which is one of them): 15
    num_passes = len({s for s in range(1, RECIPE_STEPS + 1) if s % RECIPE_EVAL_EVERY == 0} | {RECIPE_STEPS})
    ours = RECIPE_STEPS * step_s + num_passes * pass_s
    # the release: after every step a full pass with loop post-processing and loop evaluation
    post_loop_pass = post_pass * pp_model["ratio"]
    eval_loop_pass = ev["loop_s"] * preds_pass / ev["predictions"]
    release = RECIPE_STEPS * (step_s + fwd_pass + post_loop_pass + eval_loop_pass)
    release_50 = RECIPE_STEPS * (step_s + fwd_pass + post_loop_pass + RELEASE_EVAL_S)

    # ---- print
    kind = "CUDA max allocated" if cuda else "peak RSS"
    rows = []
    for name in ("paper", "demo"):
        r = train[name]
        size = f"F{r['F']} T{r['T']} B{r['B']} H{r['H']}"
        over = r["loop_step_s"] / r["bare_step_s"] - 1
        rows.append([f"train step, bare ({name})", size, fmt_time(r["bare_step_s"]), f"{1 / r['bare_step_s']:.2f} steps/s",
                     fmt_bytes(r["peak_bare_bytes"]), f"{r['blocks']} x {r['steps_per_block']} steps"])
        rows.append([f"train step, loop ({name})", size, fmt_time(r["loop_step_s"]), f"{1 / r['loop_step_s']:.2f} steps/s",
                     fmt_bytes(r["peak_loop_bytes"]), f"{100 * over:+.1f}% vs bare; features {fmt_bytes(r['features_bytes'])}"
                     f" on {r['features_on']}"])
    rows.append(None)
    tv = f"{tp['videos']} videos"
    rows.append(["test pass: forward", tv, fmt_time(tp["forward_s"]), f"{1000 * tp['forward_s'] / tp['videos']:.1f} ms/video",
                 "", f"gather + copy + model + to numpy, batch {cfg.batch_size}"])
    rows.append(["  of which gather + copy", tv, fmt_time(tp["inputs_s"]), "", "",
                 "test_batches from the FeatureStore (on the GPU when it fits), then .to(device)"])
    rows.append(["test pass: post-processing", tv, fmt_time(tp["post_s"]), f"{1000 * tp['post_s'] / tp['videos']:.2f} ms/video",
                 "", f"{tp['predictions']} predictions"])
    rows.append(["test pass: evaluation (mAP)", tv, fmt_time(tp["map_s"]), "", "", "eval.evaluate_detection"])
    rows.append(["test pass: evaluation + files", tv, fmt_time(tp["evaluate_s"]), "", "",
                 "test.evaluate(inferred=...): mAP, accuracy, predictions.json, results.json"])
    rows.append(["test pass: whole (test.evaluate)", tv, fmt_time(tp["whole_s"]), "", "", "one run, as train.py calls it"])
    if tp["videos"] != full:
        rows.append(["test pass: scaled to 210 videos", f"{full} videos", fmt_time(pass_s), "", "",
                     f"forward {fmt_time(fwd_pass)} + post {fmt_time(post_pass)} + eval {fmt_time(eval_pass)}"])
    rows.append(None)
    for label, pp in (("random-weight CAS", pp_model), ("action-like CAS", pp_action)):
        rows.append([f"post-processing ({label})", f"{pp['videos']} videos", fmt_time(pp["fast_s"]),
                     f"loop {fmt_time(pp['loop_s'])}", f"{pp['ratio']:.1f}x faster",
                     f"{pp['proposals']} proposals, {'identical' if pp['same'] else 'DIFFERENT'} to the loop version"])
    rows.append([f"evaluator ({ev['predictions']} predictions)", "9 tIoU", fmt_time(ev["fast_s"]),
                 f"loop {fmt_time(ev['loop_s'])}", f"{ev['ratio']:.1f}x faster", f"max |AP diff| {ev['max_ap_diff']:.1e}"])
    rows.append(None)
    rows.append(["recipe: this code", "paper", fmt_time(ours), "", "",
                 f"{RECIPE_STEPS} x {fmt_time(step_s)} + {num_passes} passes x {fmt_time(pass_s)}"])
    rows.append(["recipe: release schedule", "paper", fmt_time(release), f"{release / ours:.0f}x", "",
                 f"{RECIPE_STEPS} x (step + forward {fmt_time(fwd_pass)} + loop post {fmt_time(post_loop_pass)}"
                 f" + loop eval {fmt_time(eval_loop_pass)})"])
    rows.append(["recipe: release, 50 s evaluator", "paper", fmt_time(release_50), f"{release_50 / ours:.0f}x", "",
                 "the same with the release's ActivityNet evaluator (~50 s per pass, measured on the release's code)"])
    print()
    print(table(rows, ["what", "size", "median", "rate / other", f"{kind} / ratio", "note"]))

    targets = [
        ("post-processing >= 10x faster than the loop version, identical proposals",
         pp_model["ratio"] >= 10 and pp_model["same"] and pp_action["same"],
         f"{pp_model['ratio']:.1f}x / {pp_action['ratio']:.1f}x, "
         f"{'identical' if pp_model['same'] and pp_action['same'] else 'DIFFERENT'}"),
        (f"evaluation of {ev['predictions']} predictions < 0.5 s" + ("" if not cuda else " (on this host's CPU)"),
         ev["fast_s"] < 0.5, fmt_time(ev["fast_s"])),
        ("post-processing + evaluation < 10% of the test pass's forward",
         (post_pass + eval_pass) < 0.1 * fwd_pass,
         f"{fmt_time(post_pass + eval_pass)} vs forward {fmt_time(fwd_pass)} "
         f"({100 * (post_pass + eval_pass) / fwd_pass:.1f}%)"),
        ("training step (loop) within 10% of the bare step, paper size",
         train["paper"]["loop_step_s"] <= 1.1 * train["paper"]["bare_step_s"],
         f"{100 * (train['paper']['loop_step_s'] / train['paper']['bare_step_s'] - 1):+.1f}%"),
        ("training step (loop) within 10% of the bare step, demo size",
         train["demo"]["loop_step_s"] <= 1.1 * train["demo"]["bare_step_s"],
         f"{100 * (train['demo']['loop_step_s'] / train['demo']['bare_step_s'] - 1):+.1f}%"),
        ("whole paper recipe < 2 min (an H100-class GPU)", ours < 120,
         fmt_time(ours) + ("" if cuda else " on this CPU: the target is for a GPU")),
    ]
    print("\ntargets (checked, not asserted):")
    for text, ok, value in targets:
        print(f"  [{'met ' if ok else 'MISS'}] {text}: {value}")
    if device.type == "cpu" and not args.quick:
        notes.append(f"paper-size training: {train['paper']['blocks']} timed step(s) of each kind after one "
                     "warm-up step of each (--paper_cpu_repeats); test pass without warm-up")
    notes.append(f"test set: {tp['videos']} videos, median {tp['segments_median']:.0f} segments, longest "
                 f"{tp['segments_max']}; ground truth: {gt_source}; random features and weights")
    notes.append(f"loop evaluator = eval/reference.py, scaled to {preds_pass} predictions per pass; "
                 f"release schedule also uses the loop post-processing ({pp_model['ratio']:.0f}x slower, measured)")
    notes.append(f"training logging: {train['paper']['logging']}")
    print("\nnotes:")
    for n in notes:
        print(f"  - {n}")
    total = time.perf_counter() - started
    print(f"\nbenchmark took {fmt_time(total)}")

    if args.json:
        report = {"device": device_name(device), "quick": args.quick, "args": vars(args), "train": train,
                  "test_pass": tp, "test_pass_scaled": {"videos": full, "forward_s": fwd_pass, "post_s": post_pass,
                                                        "evaluate_s": eval_pass, "evaluate_from": eval_src,
                                                        "total_s": pass_s},
                  "postprocess": {"random_weight_cas": pp_model, "action_like_cas": pp_action},
                  "evaluator": ev,
                  "recipe": {"steps": RECIPE_STEPS, "test_passes": num_passes, "ours_s": ours, "release_s": release,
                             "release_50s_eval_s": release_50, "release_eval_per_pass_s": eval_loop_pass,
                             "release_post_per_pass_s": post_loop_pass},
                  "targets": [{"target": t, "met": bool(ok), "value": v} for t, ok, v in targets],
                  "notes": notes, "seconds": total}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
