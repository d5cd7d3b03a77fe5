"""Slow, obvious detection AP: plain Python loops over every prediction.

It follows the ActivityNet reference evaluator step by step, except that ties in score
keep input order (Python's sort is stable), ties in tIoU keep the ground truth's file
order, and thresholds are used exactly as given. The tests check the fast evaluator
against it, and scripts/bench_eval.py times both. Input parsing and checks are shared
with the fast evaluator; only the AP computation is written again.
"""
from .detection import DEFAULT_TIOUS, check_thresholds
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
