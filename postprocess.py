"""Post-processing: a video's CAS -> action proposals -> NMS -> action instances in seconds,
as in the authors' release (its defects fixed: see README, "Differences from the original
code"). Every function takes explicit arguments; `Localization` holds the inference
options (--class_th, --act_thresh, --scale, --lambda_oic, --gamma_oic, --nms_thresh)."""
from dataclasses import dataclass

import numpy as np

from eval.detection import tiou


@dataclass(frozen=True)
class Localization:
    """The options of the localization (their defaults: options.RECIPE); `from_config(cfg)`
    reads them off a config."""
    class_th: float
    act_thresh: tuple
    scale: int
    lambda_oic: float
    gamma_oic: float
    nms_thresh: float

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.class_th, tuple(cfg.act_thresh), cfg.scale, cfg.lambda_oic, cfg.gamma_oic, cfg.nms_thresh)


def minmax_norm(cas):
    """Per-class min-max normalisation over time of (..., T, C) scores, as in the release:
    max and min are clipped at 0 from below and a zero range becomes 1."""
    hi = np.maximum(cas.max(axis=-2, keepdims=True), 0)
    lo = np.maximum(cas.min(axis=-2, keepdims=True), 0)
    delta = hi - lo
    delta[delta <= 0] = 1
    return (cas - lo) / delta


def upsample(cas, scale):
    """Linear interpolation of (T, C) to (T * scale, C) at t = i / scale, the points past
    T - 1 extrapolated from the last two samples (scipy's interp1d with 'extrapolate',
    which the release uses)."""
    T = cas.shape[0]
    if T == 1 or scale == 1:
        return np.repeat(cas, scale, axis=0)
    t = np.arange(T * scale) / scale
    left = np.minimum(np.floor(t).astype(np.int64), T - 2)
    frac = (t - left)[:, None]
    return cas[left] * (1 - frac) + cas[left + 1] * frac


def proposals(curve, thresholds, *, class_score, seconds_per_point, start=0.0, lam=0.25, gamma=0.2):
    """All proposals of one class: runs of the curve above each threshold, scored by the
    outer-inner contrast.

    curve: (N,) normalised, up-sampled activation of one class. For each theta, points below
    theta are zeroed and each run of points > 0 becomes [s, e] (inclusive, n = e - s + 1).
    score = mean(w[s..e]) - mean(w[outer band]) + gamma * class_score, where w is the
    thresholded curve and the outer band is [max(0, int(s - lam n)), s - 1] and
    [e + 1, min(N - 1, int(e + lam n))] (mean 0 when empty). Times in seconds:
    [start + s * f, start + (e + 1) * f], f = seconds_per_point.

    All thresholds at once: the thresholded curves are the rows of w, each with a 0 in
    front; laid end to end, those zeros separate the runs of different thresholds, and a
    sum over a range of a row is a difference of its prefix sums.
    Returns (starts_s, ends_s, scores), in the release's order (threshold, then time).
    """
    th = np.asarray(thresholds, dtype=curve.dtype)[:, None]
    K, N = th.shape[0], curve.shape[0]
    w = np.zeros((K, N + 1), dtype=curve.dtype)
    np.copyto(w[:, 1:], curve[None, :], where=curve[None, :] >= th)
    on = np.zeros(K * (N + 1) + 1, dtype=bool)
    np.greater(w.ravel(), 0, out=on[:-1])
    # changes of the flat mask: run starts and (one past) run ends, alternating, in
    # (threshold, time) order; flat position p is curve index p - k (N + 1) of row k
    change = np.flatnonzero(on[1:] != on[:-1])
    if change.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    p_s, p_e1 = change[0::2], change[1::2]
    row = (p_s // (N + 1)) * (N + 1)
    s, e1 = p_s - row, p_e1 - row                                        # [s, e1) on the curve
    csum = np.cumsum(w, axis=1, dtype=np.float64).ravel()                # csum[row + i] = sum(w[k, :i])
    n = e1 - s
    inner = (csum[p_e1] - csum[p_s]) / n
    # int() truncates towards zero, as in the release
    o_lo = np.maximum(0, np.trunc(s - lam * n).astype(np.int64))
    o_hi = np.minimum(N - 1, np.trunc(e1 - 1 + lam * n).astype(np.int64)) + 1   # exclusive
    outer_sum = (csum[p_s] - csum[row + o_lo]) + (csum[row + o_hi] - csum[p_e1])
    outer_len = (s - o_lo) + (o_hi - e1)
    outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    score = inner - outer + gamma * class_score
    return start + s * seconds_per_point, start + e1 * seconds_per_point, score


def nms(starts, ends, scores, threshold):
    """Greedy non-maximum suppression of 1-D segments in seconds; removes a segment whose
    tIoU with a kept, higher-scored one is >= the threshold (as the release). Ties keep
    input order.
    Returns the kept indices, best first.

    Only overlapping segments can suppress each other (for a threshold > 0), so the
    overlapping pairs are found by sorting on the start, and the greedy pass runs over
    that sparse graph: a segment is kept once every segment that would suppress it is
    removed, and removed once one of them is kept. Same result as the quadratic loop."""
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    order = np.argsort(-np.asarray(scores), kind="stable")
    n = len(order)
    if n == 0 or not threshold > 0:
        return _nms_dense(starts, ends, order, threshold)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # pairs (a, b), a before b in start order, with b starting strictly inside a
    by_start = np.argsort(starts, kind="stable")
    s_sorted = starts[by_start]
    last = np.searchsorted(s_sorted, ends[by_start], side="left")   # exclusive
    count = np.maximum(last - np.arange(n) - 1, 0)
    if count.sum() == 0:
        return order
    first_pair = np.cumsum(count) - count
    pos_a = np.repeat(np.arange(n), count)
    pos_b = pos_a + 1 + np.arange(count.sum()) - np.repeat(first_pair, count)
    a, b = by_start[pos_a], by_start[pos_b]
    iou = tiou(starts[a], ends[a], starts[b], ends[b])
    over = iou >= threshold
    a, b = a[over], b[over]
    # edge u -> v: u ranks before v, so u suppresses v if u is kept
    u = np.where(rank[a] < rank[b], a, b)
    v = np.where(rank[a] < rank[b], b, a)
    state = np.zeros(n, dtype=np.int8)            # 0 undecided, 1 kept, -1 removed
    pending = np.bincount(v, minlength=n)         # suppressors not yet removed
    state[pending == 0] = 1
    while u.size:
        kept_u = state[u] == 1
        state[v[kept_u]] = -1
        gone = state[u] == -1
        if gone.any():
            pending -= np.bincount(v[gone], minlength=n)
        state[(state == 0) & (pending == 0)] = 1
        live = state[v] == 0                       # edges that still decide something
        u, v = u[live & ~gone], v[live & ~gone]
    return order[state[order] == 1]


def _nms_dense(starts, ends, order, threshold):
    """The plain greedy loop (any threshold)."""
    starts, ends = starts[order], ends[order]
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(order[i])
        rest = np.arange(i + 1, len(order))
        rest = rest[alive[rest]]
        alive[rest[tiou(starts[i], ends[i], starts[rest], ends[rest]) >= threshold]] = False
    return np.array(keep, dtype=np.int64)


def localize_video(cas, class_probs, classes, *, num_real_segments, params, seconds_per_segment, start=0.0):
    """Action instances of one video from its (T, C) CAS logits and (C,) class probabilities
    (background excluded). The T samples span the video's num_real_segments feature
    segments of seconds_per_segment each, the first starting at `start` seconds.
    Returns a list of ActivityNet result dicts and the predicted class indices."""
    T = cas.shape[0]
    predicted = np.flatnonzero(class_probs >= params.class_th)
    if predicted.size == 0:  # fall back to the top class rather than output nothing
        predicted = np.array([int(np.argmax(class_probs))])
    curve = upsample(minmax_norm(cas[:, predicted]), params.scale)
    seconds_per_point = seconds_per_segment * num_real_segments / (params.scale * T)
    out = []
    for j, c in enumerate(predicted):
        s, e, score = proposals(curve[:, j], params.act_thresh, class_score=float(class_probs[c]),
                                seconds_per_point=seconds_per_point, start=start, lam=params.lambda_oic,
                                gamma=params.gamma_oic)
        keep = nms(s, e, score, params.nms_thresh)
        out.extend({"label": classes[c], "score": sc, "segment": [st, en]}
                   for sc, st, en in zip(score[keep].tolist(), s[keep].tolist(), e[keep].tolist()))
    return out, predicted
