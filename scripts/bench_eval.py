"""Time the vectorised detection evaluator against the plain-loop reference.

THUMOS14-size case: 20,000 predictions over the real THUMOS14 test ground truth when
../shared/data/thumos14/gt.json exists (relative to the repo root), otherwise over a
generated ground truth of the same size (210 videos, 20 classes, ~3300 instances).
Runs on one CPU core. Usage: python scripts/bench_eval.py [--repeats 5] [--activitynet]
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from eval import (AVERAGE_RANGES, DEFAULT_TIOUS, evaluate_detection,  # noqa: E402
                  load_ground_truth, load_predictions)
from eval.reference import evaluate_detection_loop  # noqa: E402

REAL_GT = ROOT.parent / "shared" / "data" / "thumos14" / "gt.json"


def generated_ground_truth(rng, num_videos=210, num_classes=20, num_instances=3300,
                           subset="test"):
    """THUMOS14-like by default: one or two classes per video, median instance ~3 s."""
    classes = [f"Class{c:03d}" for c in range(num_classes)]
    per_video = rng.multinomial(num_instances, rng.dirichlet(np.full(num_videos, 2.0)))
    database = {}
    for v, n in enumerate(per_video):
        duration = float(rng.uniform(60, 600))
        labels = rng.choice(classes, size=rng.integers(1, 3), replace=False)
        anns = []
        for _ in range(max(n, 1)):
            length = float(np.clip(rng.lognormal(np.log(3.0), 0.7), 0.3, 60))
            start = float(rng.uniform(0, duration - length))
            anns.append({"segment": [f"{start:.1f}", f"{start + length:.1f}"],
                         "label": str(rng.choice(labels))})
        database[f"video_{v:07d}"] = {"subset": subset, "annotations": anns}
    return {"database": database}


def realistic_predictions(rng, gt, num_predictions):
    """About 70% jittered copies of GT instances, the rest random segments, mostly of the
    video's own classes; scores higher for the jittered ones."""
    instances = [(vid, i) for vid in gt.videos for i in gt.annotations[vid]]
    video_classes = {vid: sorted({i.label for i in gt.annotations[vid]}) or gt.classes
                     for vid in gt.videos}
    results = {vid: [] for vid in gt.videos}
    num_near = int(0.7 * num_predictions)
    for k in rng.integers(0, len(instances), size=num_near):
        vid, inst = instances[k]
        length = (inst.end - inst.start) * rng.lognormal(0, 0.4)
        centre = (inst.start + inst.end) / 2 + rng.normal(0, 0.3 * (inst.end - inst.start))
        start = max(0.0, centre - length / 2)
        results[vid].append({"label": inst.label, "score": float(rng.beta(5, 2)),
                             "segment": [round(start, 2), round(start + length, 2)]})
    for _ in range(num_predictions - num_near):
        vid = gt.videos[rng.integers(len(gt.videos))]
        label = (rng.choice(video_classes[vid]) if rng.random() < 0.8
                 else rng.choice(gt.classes))
        start = float(rng.uniform(0, 300))
        length = float(rng.lognormal(np.log(4.0), 0.8))
        results[vid].append({"label": str(label), "score": float(rng.beta(2, 5)),
                             "segment": [round(start, 2), round(start + length, 2)]})
    return {"version": "VERSION 1.3", "results": results, "external_data": {}}


def median_time(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--activitynet", action="store_true",
                        help="ActivityNet-size case instead: 200 classes, 5000 videos, 100 "
                             "predictions per video, tIoU 0.5:0.05:0.95 (fast evaluator only)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    rng = np.random.default_rng(args.seed)
    thresholds = DEFAULT_TIOUS
    if args.activitynet:
        source = "generated ActivityNet-size GT"
        gt = load_ground_truth(generated_ground_truth(rng, 5000, 200, 7500))
        args.predictions, thresholds = 100 * 5000, AVERAGE_RANGES["0.5:0.95"]
    elif REAL_GT.exists():
        source, gt = f"real THUMOS14 test GT ({REAL_GT})", load_ground_truth(REAL_GT)
    else:
        source, gt = "generated GT", load_ground_truth(generated_ground_truth(rng))
    preds_dict = realistic_predictions(rng, gt, args.predictions)
    preds = load_predictions(preds_dict)
    n_inst = sum(len(a) for a in gt.annotations.values())
    print(f"{source}: {len(gt.videos)} videos, {len(gt.classes)} classes, {n_inst} instances; "
          f"{args.predictions} predictions; {len(thresholds)} tIoU thresholds; "
          f"median of {args.repeats} runs on 1 core")

    def fast():
        return evaluate_detection(gt, preds, tiou_thresholds=thresholds)

    parse_s, _ = median_time(lambda: load_predictions(preds_dict), args.repeats)
    fast_s, result = median_time(fast, args.repeats)
    print(f"parse predictions dict (shared by both):  {parse_s * 1000:8.1f} ms")
    print(f"fast (eval.evaluate_detection):           {fast_s * 1000:8.1f} ms"
          f"   (+ parsing: {(fast_s + parse_s) * 1000:.1f} ms)")
    if args.activitynet:
        return
    loop_s, loop = median_time(lambda: evaluate_detection_loop(gt, preds),
                               max(1, args.repeats // 2))
    diff = max(abs(a - b) for c in gt.classes
               for a, b in zip(result["ap_per_class"][c], loop["ap_per_class"][c]))
    print(f"loop (eval.reference):                    {loop_s * 1000:8.1f} ms")
    print(f"ratio loop / fast: {loop_s / fast_s:.1f}x   max |AP difference|: {diff:.1e}   "
          f"average mAP: {100 * result['average_mAP']:.2f}")


if __name__ == "__main__":
    main()
