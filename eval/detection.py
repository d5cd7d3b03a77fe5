"""ActivityNet detection AP (the rules of ActivityNet's Evaluation/eval_detection.py, see eval/README.md), vectorised with numpy.

The matching is the reference's greedy one: per class, predictions in descending
score order (ties: input order) each take, per tIoU threshold independently, the
unmatched ground truth of the same class and video with the highest tIoU (ties: file
order) if that tIoU >= threshold; otherwise they are false positives. AP is the VOC2011
all-point interpolated area.

The greedy order only matters among predictions that can reach a common ground
truth, so the loop that the greedy needs runs over the rank of a prediction inside its
connected component of (prediction, GT) pairs with tIoU >= the lowest threshold, and
each step handles the k-th prediction of every component and every threshold at once.
Memory is bounded by the number of pairs of a prediction with a ground truth of its own
class and video: no matrix across videos is ever built.
"""
import warnings

import numpy as np

from .loading import (EvalError, align_predictions, load_ambiguous, load_ground_truth, load_predictions,
                      remove_ambiguous)

# Written as literals: np.linspace(0.1, 0.9, 9)[6] is 0.7000000000000001, which makes a
# tIoU of exactly 0.7 fail at "0.7".
DEFAULT_TIOUS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)

# Averages that papers report; each is given whenever the thresholds cover it.
# Pairs (prediction, GT of its class and video) computed at once: bounds the memory.
PAIR_CHUNK = 1 << 20

AVERAGE_RANGES = {
    "0.1:0.5": (0.1, 0.2, 0.3, 0.4, 0.5),
    "0.1:0.7": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    "0.1:0.9": DEFAULT_TIOUS,
    "0.3:0.7": (0.3, 0.4, 0.5, 0.6, 0.7),
    "0.5:0.95": (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95),
}


def check_thresholds(tiou_thresholds):
    """Thresholds as a float64 array, used exactly as given."""
    try:
        thr = np.array([float(t) for t in tiou_thresholds], np.float64)
    except (TypeError, ValueError):
        raise EvalError(f"tIoU thresholds must be numbers, got {tiou_thresholds!r}") from None
    if thr.size == 0:
        raise EvalError("no tIoU threshold given")
    if not np.all((thr >= 0) & (thr <= 1)):
        raise EvalError(f"tIoU thresholds must lie in [0, 1], got {thr.tolist()}")
    return thr


def tiou(start_a, end_a, start_b, end_b):
    """Elementwise temporal IoU; 0 where the union is empty (two equal points)."""
    inter = np.maximum(np.minimum(end_a, end_b) - np.maximum(start_a, start_b), 0.0)
    union = (end_a - start_a) + (end_b - start_b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def evaluate_detection(ground_truth, predictions, subset="test", tiou_thresholds=DEFAULT_TIOUS,
                       ambiguous=None):
    """Detection AP per class and mAP per tIoU threshold.

    ground_truth: path, dict or `GroundTruth` (a loaded one keeps its own subset).
    predictions: path, dict (ActivityNet results form) or `Predictions`.
    ambiguous: None, or a W-TALC style ambiguous segments file (path) or {video: [(s, e)]}:
    predictions overlapping one are removed before scoring, as W-TALC's evaluator does.
    Returns a JSON-serialisable dict (fractions, not percent):
    tiou, mAP, average_mAP, averages, classes, ap_per_class, subset,
    num_predictions, num_ground_truth, num_videos, num_unknown_videos
    (and num_predictions_ambiguous, the predictions removed, with `ambiguous`).
    """
    gt = load_ground_truth(ground_truth, subset)
    preds = load_predictions(predictions)
    removed = None
    if ambiguous is not None:
        preds, removed = remove_ambiguous(preds, load_ambiguous(ambiguous) if not isinstance(ambiguous, dict)
                                          else ambiguous)
    thr = check_thresholds(tiou_thresholds)
    aligned = align_predictions(preds, gt)
    if aligned.num_unknown_videos:
        warnings.warn(f"{aligned.num_unknown_videos} video(s) of {preds.source} are not in subset "
                      f"{gt.subset!r} of {gt.source}; their predictions count as false positives",
                      stacklevel=2)
    ap = detection_ap(gt, aligned, thr)
    result = _result(gt, thr, ap, len(preds), aligned.num_unknown_videos)
    if removed is not None:
        result["num_predictions_ambiguous"] = removed
    return result


def _result(gt, thr, ap, num_predictions, num_unknown):
    mean_ap = ap.mean(axis=0)
    return {
        "subset": gt.subset,
        "tiou": thr.tolist(),
        "mAP": mean_ap.tolist(),
        "average_mAP": float(mean_ap.mean()),
        "averages": covered_averages(thr, mean_ap),
        "classes": list(gt.classes),
        "ap_per_class": {label: ap[c].tolist() for c, label in enumerate(gt.classes)},
        "num_predictions": int(num_predictions),
        "num_ground_truth": int(len(gt.arrays[0])),
        "num_videos": len(gt.videos),
        "num_unknown_videos": int(num_unknown),
    }


def covered_averages(thr, mean_ap):
    """Mean mAP over each range of AVERAGE_RANGES that the thresholds cover.

    Only this look-up tolerates float noise (1e-9), so thresholds made by linspace still
    get their averages; the matching itself uses them exactly.
    """
    out = {}
    for name, wanted in AVERAGE_RANGES.items():
        picks = []
        for w in wanted:
            hits = np.flatnonzero(np.abs(thr - w) <= 1e-9)
            if hits.size == 0:
                break
            picks.append(mean_ap[hits[0]])
        else:
            out[name] = float(np.mean(picks))
    return out


def detection_ap(gt, aligned, thr):
    """(num_classes, num_thresholds) AP array."""
    groups = _GtGroups(gt)
    # Class-major, descending score; the stable sort keeps input order among ties.
    order = np.argsort(-aligned.scores, kind="stable")
    order = order[np.argsort(aligned.cls[order], kind="stable")]
    cls = aligned.cls[order]
    group = groups.lookup(cls, aligned.video[order])
    tp = _greedy_match(group, aligned.start[order], aligned.end[order], groups, thr)
    num_classes = len(gt.classes)
    bounds = np.searchsorted(cls, np.arange(num_classes + 1))
    ap = np.zeros((num_classes, len(thr)))
    for c in range(num_classes):
        ap[c] = voc_ap(tp[:, bounds[c]:bounds[c + 1]], groups.per_class[c])
    return ap


def voc_ap(tp, num_positives):
    """VOC2011 all-point interpolated AP of (T, n) true-positive flags in rank order."""
    if tp.shape[1] == 0:
        return np.zeros(tp.shape[0])
    hits = np.cumsum(tp, axis=1, dtype=np.float64)
    precision = hits / np.arange(1, tp.shape[1] + 1)
    recall = hits / num_positives
    # Precision envelope: the best precision at this recall or any higher one.
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    # Recall steps weighted by the envelope; the final step to recall 1 has precision 0.
    return (np.diff(recall, axis=1, prepend=0.0) * envelope).sum(axis=1)


class _GtGroups:
    """Ground truth sorted by (class, video), file order kept inside each group."""

    def __init__(self, gt):
        cls, vid, start, end = gt.arrays
        self.num_videos = len(gt.videos)
        key = cls * self.num_videos + vid
        order = np.argsort(key, kind="stable")
        self.start, self.end = start[order], end[order]
        self.keys, self.first, self.count = np.unique(key[order], return_index=True,
                                                      return_counts=True)
        self.per_class = np.bincount(cls, minlength=len(gt.classes))

    def lookup(self, cls, video):
        """Group index of each prediction, -1 when its video has no GT of its class."""
        key = cls * self.num_videos + video
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        found = (video >= 0) & (self.keys[pos] == key)
        return np.where(found, pos, -1)

    def pairs(self, preds, group, start, end):
        """tIoU of each prediction in `preds` with every GT of its group, flattened.

        Returns, per pair: owner (position in `preds`), GT index (into the sorted GT)
        and tIoU; a prediction's pairs are contiguous and in the group's file order.
        """
        g = group[preds]
        counts = self.count[g]
        first_pair = np.cumsum(counts) - counts
        owner = np.repeat(np.arange(len(preds)), counts)
        gt_index = np.arange(counts.sum()) + np.repeat(self.first[g] - first_pair, counts)
        p = preds[owner]
        iou = tiou(start[p], end[p], self.start[gt_index], self.end[gt_index])
        return owner, gt_index, iou


def _greedy_match(group, start, end, groups, thr):
    """(T, N) true-positive flags for predictions already in score order per class."""
    tp = np.zeros((len(thr), len(group)), bool)
    candidates = np.flatnonzero(group >= 0)
    owner, gt_index, iou = _kept_pairs(candidates, group, start=start, end=end, groups=groups,
                                       min_threshold=thr.min())
    if owner.size == 0:
        return tp
    live, owner = np.unique(owner, return_inverse=True)
    preds = candidates[live]
    # The greedy order only matters among predictions that can reach the same GT, i.e.
    # inside a connected component of the pairs. Step k matches the k-th prediction
    # (in score order) of every component at once, so the Python loop runs over the
    # largest component only.
    rank = _rank_within(_components(owner, gt_index, len(preds)))
    owner, gt_index, iou = _pairs_by_step(rank, owner, gt_index, iou)
    pair_starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    step_pairs = np.searchsorted(rank[owner], np.arange(rank.max() + 2))
    step_preds = np.searchsorted(pair_starts, step_pairs)
    locked = np.zeros((len(thr), len(groups.start)), bool)
    for k in range(len(step_pairs) - 1):
        lo, hi = step_pairs[k], step_pairs[k + 1]
        starts = pair_starts[step_preds[k]:step_preds[k + 1]]
        hit = _match_step(iou[lo:hi], gt_index[lo:hi], starts - lo, locked, thr)
        tp[:, preds[owner[starts]]] = hit
    return tp


def _kept_pairs(candidates, group, *, start, end, groups, min_threshold):
    """The pairs that can match at some threshold, computed chunk by chunk so that
    memory stays bounded by the kept pairs plus one chunk.

    A pair below the lowest threshold can never match, so it is dropped; a prediction
    left without pairs is a false positive whatever is locked, and locks nothing.
    """
    counts = groups.count[group[candidates]]
    chunk_of = (np.cumsum(counts) - counts) // PAIR_CHUNK
    bounds = np.searchsorted(chunk_of, np.arange(chunk_of[-1] + 2)) if counts.size else [0]
    parts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        owner, gt_index, iou = groups.pairs(candidates[lo:hi], group, start, end)
        keep = iou >= min_threshold
        parts.append((owner[keep] + lo, gt_index[keep], iou[keep]))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return tuple(np.concatenate(columns) for columns in zip(*parts))


def _components(owner, gt_index, num_preds):
    """Connected components of the prediction-GT pairs, labelled by their smallest
    prediction. Min-label propagation: each round spreads labels across two hops."""
    label = np.arange(num_preds)
    gt_label = np.empty(gt_index.max() + 1, np.int64)
    while True:
        gt_label.fill(num_preds)
        np.minimum.at(gt_label, gt_index, label[owner])
        new = label.copy()
        np.minimum.at(new, owner, gt_label[gt_index])
        if np.array_equal(new, label):
            return label
        label = new


def _rank_within(component):
    """Position of each prediction inside its component; predictions are in ascending
    index order, which is score order inside a class (and components lie in one class)."""
    order = np.argsort(component, kind="stable")
    sorted_comp = component[order]
    first = np.flatnonzero(np.r_[True, sorted_comp[1:] != sorted_comp[:-1]])
    rank = np.empty(len(component), np.int64)
    rank[order] = np.arange(len(component)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
    return rank


def _pairs_by_step(rank, owner, gt_index, iou):
    """Reorder pairs rank-major, each prediction's pairs kept together in file order."""
    pred_order = np.argsort(rank, kind="stable")
    position = np.empty_like(pred_order)
    position[pred_order] = np.arange(len(pred_order))
    pair_order = np.argsort(position[owner], kind="stable")
    return owner[pair_order], gt_index[pair_order], iou[pair_order]


def _match_step(iou, gt_index, starts, locked, thr):
    """Match one prediction per component (pairs flattened; `starts` = first pair of
    each prediction) at every threshold, locking the GT taken. Returns (T, preds) TP flags."""
    # Locked GT can never be taken: give them a tIoU below any threshold.
    free_iou = np.where(locked[:, gt_index], -1.0, iou)                 # (T, pairs)
    if len(starts) == len(iou):  # one pair per prediction: nothing to choose
        hit = free_iou >= thr[:, None]
        t, a = np.nonzero(hit)
        locked[t, gt_index[a]] = True
        return hit
    best = np.maximum.reduceat(free_iou, starts, axis=1)               # (T, preds)
    hit = best >= thr[:, None]
    if hit.any():
        # The GT taken is the first pair reaching the best tIoU (ties: file order).
        sizes = np.diff(np.r_[starts, len(iou)])
        at_best = free_iou == np.repeat(best, sizes, axis=1)
        position = np.where(at_best, np.arange(len(iou)), len(iou))
        first = np.minimum.reduceat(position, starts, axis=1)
        t, a = np.nonzero(hit)
        locked[t, gt_index[first[t, a]]] = True
    return hit
