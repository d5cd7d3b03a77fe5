"""Background detection F-measure (paper, Table 5), segment level."""
import numpy as np

from .loading import EvalError, _parse_segment


def _bounds(annotation):
    """(start, end) of an Instance, a {"segment": [s, e]} dict or an (s, e) pair."""
    if hasattr(annotation, "start") and hasattr(annotation, "end"):
        return float(annotation.start), float(annotation.end)
    if isinstance(annotation, dict):
        return _parse_segment(annotation.get("segment"), "annotation")
    return _parse_segment(annotation, "annotation")


def segment_labels(annotations, num_segments, seconds_per_segment, start=0.0):
    """Ground-truth foreground mask of a video cut into `num_segments` segments.

    Centre rule: segment i covers [s0 + i*d, s0 + (i+1)*d) (d = seconds_per_segment,
    s0 = start) and is foreground when its centre lies in some instance [start, end],
    both ends included. Unlike an
    any-overlap rule it does not mark a whole segment as action for a sliver of overlap,
    so background and foreground segments are counted symmetrically. The background
    mask of `background_f_measure` is the negation of this one.
    """
    centres = start + (np.arange(num_segments) + 0.5) * seconds_per_segment
    coverage = np.zeros(num_segments + 1, np.int64)
    for annotation in annotations:
        first, last = _bounds(annotation)
        # centres are sorted: the ones inside [first, last] form one run [lo, hi)
        lo = np.searchsorted(centres, first, side="left")
        hi = np.searchsorted(centres, last, side="right")
        coverage[lo] += 1
        coverage[hi] -= 1
    return np.cumsum(coverage[:-1]) > 0


def background_f_measure(pred_background, gt_background):
    """Precision, recall and F-measure of background (the positive class), counted over
    all segments of all videos. A ratio with an empty denominator is 0."""
    if len(pred_background) != len(gt_background):
        raise EvalError(f"{len(pred_background)} predicted masks for {len(gt_background)} videos")
    tp = predicted = actual = 0
    for i, (pred, gt) in enumerate(zip(pred_background, gt_background)):
        pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
        if pred.shape != gt.shape or pred.ndim != 1:
            raise EvalError(f"video {i}: predicted mask of shape {pred.shape}, "
                            f"ground truth of shape {gt.shape}")
        tp += int(np.count_nonzero(pred & gt))
        predicted += int(np.count_nonzero(pred))
        actual += int(np.count_nonzero(gt))
    precision = tp / predicted if predicted else 0.0
    recall = tp / actual if actual else 0.0
    f = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f_measure": f}
