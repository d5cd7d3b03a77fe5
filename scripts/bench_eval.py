"""Time the vectorised detection evaluator against the plain-loop and pandas-style references.

THUMOS14-size case: 20,000 predictions over the real THUMOS14 test ground truth when
dataset/THUMOS14/gt.json exists (shipped with the repository), otherwise over a
generated ground truth of the same size (210 videos, 20 classes, ~3300 instances).

Three implementations of the same AP (ActivityNet's Evaluation/eval_detection.py rules, eval/README.md), all checked to agree:
- fast: eval.evaluate_detection (numpy, vectorised);
- loop: eval.reference (plain Python loops over every prediction);
- pandas-style: `evaluate_detection_pandas` below, a re-creation of the official
  ActivityNet evaluator's per-prediction pandas loop (DataFrames, groupby/get_group,
  iterrows, .loc), the speed baseline that "100x faster than the reference" refers to.
  It takes tens of seconds and runs once (not the median); --no-pandas skips it.
Runs on one CPU core.
Usage: python scripts/bench_eval.py [--repeats 5] [--no-pandas] [--activitynet]
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
from eval.loading import align_predictions  # noqa: E402
from eval.reference import evaluate_detection_loop  # noqa: E402

REAL_GT = ROOT / "dataset" / "THUMOS14" / "gt.json"  # the real annotations, shipped


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


# ---------------------------------------------------------------- pandas-style reference
#
# The official ActivityNet detection evaluator keeps ground truth and predictions in
# pandas DataFrames and, per class, walks the predictions one row at a time with
# iterrows(), fetching each prediction's ground truth with groupby().get_group() and
# reading the matched instance's row id back with .loc. Every one of those calls builds
# pandas objects (a Series per row, a DataFrame per group, another per reset_index, a
# Series per .loc row), which is why it costs tens of seconds on 20k predictions.
#
# The code below deliberately pays the same costs so that the benchmark's speed-up is
# measured against that baseline; do NOT "optimise" it. It differs from the official code
# only where the official one is ill-defined, so that its APs equal ours exactly:
# - the sort on score is stable (mergesort), so ties keep input order;
# - the sort on tIoU is stable too, so ties keep the ground truth's file order;
# - thresholds are used exactly as given (no np.linspace);
# - the tIoU of two zero-length segments at the same time is 0, not 0/0.


def pandas_tables(gt, preds):
    """Ground truth and predictions as DataFrames, one row per instance / prediction, with
    columns video-id, t-start, t-end, label (class index) and, for predictions, score.

    Rows are in file order. A prediction on a video of another subset keeps its own id,
    which no ground-truth group has, so it is a false positive as in the official code.
    """
    import pandas as pd

    gt_rows = [(vid, inst.start, inst.end, gt.class_index[inst.label])
               for vid in gt.videos for inst in gt.annotations[vid]]
    gt_df = pd.DataFrame(gt_rows, columns=["video-id", "t-start", "t-end", "label"])
    aligned = align_predictions(preds, gt)  # label -> class index, 'v_' ids resolved
    video_ids = [gt.videos[v] if v >= 0 else preds.video_ids[raw]
                 for v, raw in zip(aligned.video.tolist(), preds.video.tolist())]
    pred_df = pd.DataFrame({"video-id": video_ids, "t-start": aligned.start,
                            "t-end": aligned.end, "label": aligned.cls,
                            "score": aligned.scores})
    return gt_df, pred_df


def pandas_segment_tiou(segment, gt_segments):
    """tIoU of one (start, end) with each row of an (n, 2) array; 0 for an empty union."""
    inter = np.maximum(np.minimum(segment[1], gt_segments[:, 1])
                       - np.maximum(segment[0], gt_segments[:, 0]), 0.0)
    union = (segment[1] - segment[0]) + (gt_segments[:, 1] - gt_segments[:, 0]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pandas_interpolated_ap(precision, recall):
    """VOC2011 all-point interpolated AP, as the official code computes it."""
    prec = np.concatenate([[0.0], precision, [0.0]])
    rec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(prec) - 2, -1, -1):  # envelope, in a Python loop like the original
        prec[i] = max(prec[i], prec[i + 1])
    steps = np.flatnonzero(rec[1:] != rec[:-1]) + 1
    return float(np.sum((rec[steps] - rec[steps - 1]) * prec[steps]))


def pandas_class_ap(class_gt, class_pred, thresholds):
    """AP per threshold of one class; both DataFrames indexed 0..n-1."""
    order = np.argsort(-class_pred["score"].to_numpy(), kind="mergesort")  # stable
    class_pred = class_pred.loc[order].reset_index(drop=True)
    num_thr, num_pred = len(thresholds), len(class_pred)
    tp = np.zeros((num_thr, num_pred))
    fp = np.zeros((num_thr, num_pred))
    locked_by = np.full((num_thr, len(class_gt)), -1)  # prediction that took each GT
    gt_by_video = class_gt.groupby("video-id")
    # One Python iteration, and several pandas objects, per prediction: the slow part.
    for idx, pred in class_pred.iterrows():
        try:
            video_gt = gt_by_video.get_group(pred["video-id"])
        except KeyError:  # no ground truth of this class in that video
            fp[:, idx] = 1
            continue
        video_gt = video_gt.reset_index()  # column 'index': the row in class_gt
        ious = pandas_segment_tiou(pred[["t-start", "t-end"]].to_numpy(dtype=float),
                                   video_gt[["t-start", "t-end"]].to_numpy())
        by_iou = np.argsort(-ious, kind="mergesort")  # stable: file order on ties
        for t, threshold in enumerate(thresholds):
            for j in by_iou:
                if ious[j] < threshold:
                    fp[t, idx] = 1  # the rest have lower tIoU still
                    break
                gt_row = video_gt.loc[j]["index"]  # a row Series per look-up, as upstream
                if locked_by[t, gt_row] >= 0:
                    continue  # taken at this threshold: try the next best
                tp[t, idx] = 1
                locked_by[t, gt_row] = idx
                break
            if not tp[t, idx] and not fp[t, idx]:
                fp[t, idx] = 1  # every reachable GT already locked
    hits = np.cumsum(tp, axis=1)
    misses = np.cumsum(fp, axis=1)
    recall = hits / len(class_gt)
    precision = hits / (hits + misses)
    return [pandas_interpolated_ap(precision[t], recall[t]) for t in range(num_thr)]


def evaluate_detection_pandas(ground_truth, predictions, subset="test",
                              tiou_thresholds=DEFAULT_TIOUS):
    """Same inputs as `eval.evaluate_detection`; returns tiou, mAP, average_mAP,
    ap_per_class. Deliberately slow: see the comment above."""
    gt = load_ground_truth(ground_truth, subset)
    preds = load_predictions(predictions)
    thresholds = [float(t) for t in tiou_thresholds]
    gt_df, pred_df = pandas_tables(gt, preds)
    gt_by_label = gt_df.groupby("label")
    pred_by_label = pred_df.groupby("label")
    ap = np.zeros((len(gt.classes), len(thresholds)))
    for c in range(len(gt.classes)):
        class_gt = gt_by_label.get_group(c).reset_index(drop=True)
        try:
            class_pred = pred_by_label.get_group(c).reset_index(drop=True)
        except KeyError:  # no prediction of this class: AP 0, still in the mean
            continue
        ap[c] = pandas_class_ap(class_gt, class_pred, thresholds)
    mean_ap = ap.mean(axis=0)
    return {"tiou": thresholds, "mAP": mean_ap.tolist(), "average_mAP": float(mean_ap.mean()),
            "ap_per_class": {label: ap[c].tolist() for c, label in enumerate(gt.classes)}}


def max_ap_difference(result, other):
    """Largest |AP| difference over classes and thresholds, mAP included."""
    diffs = [abs(a - b) for label, values in result["ap_per_class"].items()
             for a, b in zip(values, other["ap_per_class"][label])]
    diffs += [abs(a - b) for a, b in zip(result["mAP"], other["mAP"])]
    return max(diffs)


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
    parser.add_argument("--no-pandas", action="store_true",
                        help="skip the pandas-style reference (one run of tens of seconds)")
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
    loop_repeats = max(1, args.repeats // 2)
    loop_s, loop = median_time(
        lambda: evaluate_detection_loop(gt, preds, tiou_thresholds=thresholds), loop_repeats)
    loop_diff = max_ap_difference(result, loop)
    print(f"loop (eval.reference):                    {loop_s * 1000:8.1f} ms"
          f"   (median of {loop_repeats})")
    ratios = f"ratio loop / fast: {loop_s / fast_s:.1f}x"
    diffs = f"max |AP difference| vs fast: loop {loop_diff:.1e}"
    if not args.no_pandas:
        pandas_s, pandas = median_time(
            lambda: evaluate_detection_pandas(gt, preds, tiou_thresholds=thresholds), 1)
        pandas_diff = max_ap_difference(result, pandas)
        assert pandas_diff < 1e-9, f"pandas-style reference disagrees: {pandas_diff:.1e}"
        print(f"pandas-style reference (ActivityNet):     {pandas_s * 1000:8.1f} ms   (1 run)")
        ratios += f"   ratio pandas / fast: {pandas_s / fast_s:.0f}x"
        diffs += f", pandas {pandas_diff:.1e}"
    print(ratios)
    print(f"{diffs}   average mAP: {100 * result['average_mAP']:.2f}")


if __name__ == "__main__":
    main()
