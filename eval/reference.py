"""Slow, obvious reference implementations that the fast code is held to.

- `evaluate_detection_loop`: detection AP in plain Python loops over every prediction.
  It follows the ActivityNet reference evaluator step by step, except that ties in score
  keep input order (Python's sort is stable), ties in tIoU keep the ground truth's file
  order, and thresholds are used exactly as given.
- `evaluate_detection_pandas`: a re-creation of the official ActivityNet evaluator's
  per-prediction pandas loop, the speed baseline of the evaluator (needs pandas).
- `loop_localize_video`: the release's post-processing written literally (needs scipy).

Input parsing and checks are shared with the fast evaluator; only the AP computation is
written again. tests/test_eval_detection.py and tests/test_references.py check the fast
code against these; scripts/benchmark.py times both.
"""
import numpy as np

from .detection import DEFAULT_TIOUS, check_thresholds, tiou
from .loading import align_predictions, load_ground_truth, load_predictions


def segment_iou(pred, gt):
    start_p, end_p = pred
    start_g, end_g = gt
    inter = max(min(end_p, end_g) - max(start_p, start_g), 0.0)
    union = (end_p - start_p) + (end_g - start_g) - inter
    return inter / union if union > 0 else 0.0


def class_ap(predictions, gt_by_video, num_gt, thresholds):
    """AP per threshold for one class.

    predictions: list of (score, video, (start, end)); gt_by_video: video -> list of
    (start, end) in file order.
    """
    predictions = sorted(predictions, key=lambda p: -p[0])  # stable: ties keep input order
    locked = {t: {vid: [False] * len(g) for vid, g in gt_by_video.items()} for t in thresholds}
    flags = {t: [] for t in thresholds}
    for _, vid, segment in predictions:
        gts = gt_by_video.get(vid, [])
        ious = [segment_iou(segment, g) for g in gts]
        by_iou = sorted(range(len(gts)), key=lambda j: -ious[j])  # stable: file order on ties
        for t in thresholds:
            is_tp = False
            for j in by_iou:
                if ious[j] < t:
                    break  # the rest have lower tIoU still
                if locked[t][vid][j]:
                    continue
                locked[t][vid][j] = True
                is_tp = True
                break
            flags[t].append(is_tp)
    return [interpolated_ap(flags[t], num_gt) for t in thresholds]


def interpolated_ap(tp_flags, num_gt):
    """VOC2011 all-point interpolated AP."""
    precision, recall, hits = [], [], 0
    for rank, is_tp in enumerate(tp_flags, start=1):
        hits += is_tp
        precision.append(hits / rank)
        recall.append(hits / num_gt)
    prec = [0.0] + precision + [0.0]
    rec = [0.0] + recall + [1.0]
    for i in range(len(prec) - 2, -1, -1):
        prec[i] = max(prec[i], prec[i + 1])
    ap = 0.0
    for i in range(1, len(rec)):
        if rec[i] != rec[i - 1]:
            ap += (rec[i] - rec[i - 1]) * prec[i]
    return ap


def evaluate_detection_loop(ground_truth, predictions, subset="test",
                            tiou_thresholds=DEFAULT_TIOUS):
    """Same inputs as `eval.evaluate_detection`; returns tiou, mAP, average_mAP, ap_per_class."""
    gt = load_ground_truth(ground_truth, subset)
    preds = load_predictions(predictions)
    thresholds = check_thresholds(tiou_thresholds).tolist()
    aligned = align_predictions(preds, gt)
    by_class = {c: [] for c in range(len(gt.classes))}
    for i in range(len(preds)):
        v = int(aligned.video[i])
        vid = gt.videos[v] if v >= 0 else None  # None: a video of another subset
        segment = (float(aligned.start[i]), float(aligned.end[i]))
        by_class[int(aligned.cls[i])].append((float(aligned.scores[i]), vid, segment))
    ap_per_class = {}
    for c, label in enumerate(gt.classes):
        gt_by_video = {}
        for vid, instances in gt.annotations.items():
            segments = [(i.start, i.end) for i in instances if i.label == label]
            if segments:
                gt_by_video[vid] = segments
        num_gt = sum(len(s) for s in gt_by_video.values())
        ap_per_class[label] = class_ap(by_class[c], gt_by_video, num_gt, thresholds)
    mean_ap = [sum(ap[k] for ap in ap_per_class.values()) / len(ap_per_class)
               for k in range(len(thresholds))]
    return {"tiou": thresholds, "mAP": mean_ap, "average_mAP": sum(mean_ap) / len(mean_ap),
            "ap_per_class": ap_per_class}


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
        segment = pred[["t-start", "t-end"]].to_numpy(dtype=float)
        gt_segments = video_gt[["t-start", "t-end"]].to_numpy()
        ious = tiou(segment[0], segment[1], gt_segments[:, 0], gt_segments[:, 1])
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


# ---------------------------------------------------------------- release-style post-processing

def loop_nms(starts, ends, scores, threshold):
    """The plain greedy NMS of the release: best score first (ties keep input order), a
    proposal is suppressed when its tIoU with a kept one is >= threshold. Returns the kept
    indices, best first."""
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    while remaining:
        best = remaining.pop(0)
        keep.append(best)
        remaining = [i for i in remaining
                     if segment_iou((starts[best], ends[best]), (starts[i], ends[i])) < threshold]
    return keep


def loop_localize_video(cas, class_probs, classes, *, num_real_segments, params, seconds_per_segment, start=0.0):
    """The release's post-processing (its utils.py and test.py) written literally, with the
    arguments of `postprocess.localize_video` (params: a `postprocess.Localization`): per
    predicted class, min-max normalisation, linear up-sampling by params.scale with scipy's
    interp1d, then per threshold zero the points below it, group consecutive indices in a
    Python loop, score each group with np.mean over index lists, and `loop_nms` (with a
    correct tIoU). Returns ActivityNet result dicts."""
    from scipy.interpolate import interp1d

    T, C = cas.shape
    lam, gamma, scale = params.lambda_oic, params.gamma_oic, params.scale
    predicted = [c for c in range(C) if class_probs[c] >= params.class_th]
    if not predicted:
        predicted = [int(np.argmax(class_probs))]
    f = seconds_per_segment * num_real_segments / (scale * T)  # seconds per up-sampled point
    out = []
    for c in predicted:
        col = cas[:, c]
        hi, lo = max(col.max(), 0), max(col.min(), 0)
        delta = hi - lo if hi - lo > 0 else 1
        norm = (col - lo) / delta  # in the CAS's precision, as postprocess.minmax_norm
        # up-sampled in float64 (scipy keeps float32 for float32 input; the project uses float64)
        curve = interp1d(np.arange(T), norm.astype(np.float64), kind="linear",
                         fill_value="extrapolate")(np.arange(T * scale) / scale)
        N = len(curve)
        scores, starts, ends = [], [], []
        for theta in params.act_thresh:
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
                scores.append(float(inner - outer + gamma * float(class_probs[c])))
                starts.append(start + g[0] * f)
                ends.append(start + (g[-1] + 1) * f)
        for k in loop_nms(starts, ends, scores, params.nms_thresh):
            out.append({"label": classes[c], "score": scores[k], "segment": [float(starts[k]), float(ends[k])]})
    return out


def same_proposals(a, b, tol=1e-9):
    """Two lists of ActivityNet result dicts hold the same (label, start, end, score), each
    number within tol, in any order."""
    key = lambda p: (p["label"], p["segment"][0], p["segment"][1], p["score"])  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    return len(a) == len(b) and all(
        p["label"] == q["label"] and abs(p["score"] - q["score"]) <= tol
        and abs(p["segment"][0] - q["segment"][0]) <= tol and abs(p["segment"][1] - q["segment"][1]) <= tol
        for p, q in zip(a, b))


def action_like_cas(rng, T, C):
    """Inputs for the comparison: a trained-looking (T, C) CAS, one or two classes with a
    few bumps over a low background, and (C,) probabilities above the class threshold for
    those classes."""
    cas = rng.normal(-2, 0.3, (T, C)).astype(np.float32)
    probs = np.full(C, 0.01, dtype=np.float32)
    for c in rng.choice(C, rng.integers(1, 3), replace=False):
        probs[c] = rng.uniform(0.3, 0.9)
        t = np.arange(T)
        for centre in rng.uniform(0, T, rng.integers(3, 12)):
            cas[:, c] += 3 * np.exp(-0.5 * ((t - centre) / rng.uniform(1, 8)) ** 2)
    return cas, probs
