"""Video-level classification metrics of the release's test log."""
import numpy as np

from .loading import EvalError


def _check(scores, labels):
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels) > 0
    if scores.ndim != 2 or scores.shape != labels.shape or scores.shape[0] == 0:
        raise EvalError(f"scores and labels must be non-empty (videos, classes) arrays of one "
                        f"shape, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise EvalError("video scores contain NaN or infinity")
    return scores, labels


def video_accuracy(scores, labels, threshold=0.25):
    """Exact-match accuracy: a video is right when the classes scoring >= threshold are
    exactly its ground-truth classes (the release's test accuracy)."""
    scores, labels = _check(scores, labels)
    return float(np.mean(np.all((scores >= threshold) == labels, axis=1)))


def _average_precision(score, positive):
    """Non-interpolated AP of ranking by score. Tied scores form one block (precision is
    taken after the whole block), so the input order of ties does not matter."""
    order = np.argsort(-score, kind="stable")
    score, positive = score[order], positive[order]
    block_end = np.r_[np.flatnonzero(np.diff(score) != 0), len(score) - 1]
    hits = np.cumsum(positive)[block_end]
    precision = hits / (block_end + 1)
    recall_step = np.diff(hits, prepend=0) / positive.sum()
    return float(np.sum(recall_step * precision))


def video_map(scores, labels):
    """Mean over classes of the AP of ranking videos by that class's score.

    Classes with no positive video have no AP and are left out of the mean.
    """
    scores, labels = _check(scores, labels)
    present = np.flatnonzero(labels.any(axis=0))
    if present.size == 0:
        raise EvalError("no class has a positive video: video mAP is undefined")
    return float(np.mean([_average_precision(scores[:, c], labels[:, c]) for c in present]))
