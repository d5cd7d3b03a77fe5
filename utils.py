"""Post-processing (CAS -> action proposals -> NMS) and small helpers shared by
training and testing: seeding, devices, safe file writes."""
import json
import os
import random
import tempfile

import numpy as np
import torch


# ----------------------------------------------------------------------------- run helpers
def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def seed_worker(worker_id):
    """DataLoader worker_init_fn: numpy and random follow torch's per-worker seed
    (the release passed None here, so all workers shared one NumPy state)."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but no CUDA device is available (use --device cpu)")
    return torch.device(name)


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside `path`, then rename it into place,
    so a kill never leaves a truncated file behind."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def save_json(path, obj, indent=2):
    """indent=None for large files: indented output takes json's slow pure-Python encoder."""
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=indent).encode()))


def save_torch(path, obj):
    atomic_write(path, lambda f: torch.save(obj, f))


# ----------------------------------------------------------------------------- CAS
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


def proposals(cas, thresholds, class_score, seconds_per_point, lam=0.25, gamma=0.2):
    """All proposals of one class: runs of the curve above each threshold, scored by the
    outer-inner contrast.

    cas: (N,) normalised, up-sampled activation of one class. For each theta, points below
    theta are zeroed and each run of points > 0 becomes [s, e] (inclusive, n = e - s + 1).
    score = mean(w[s..e]) - mean(w[outer band]) + gamma * class_score, where w is the
    thresholded curve and the outer band is [max(0, int(s - lam n)), s - 1] and
    [e + 1, min(N - 1, int(e + lam n))] (mean 0 when empty). Times in seconds:
    [s * f, (e + 1) * f].

    Returns (starts_s, ends_s, scores), in the release's order (threshold, then time).
    """
    N = cas.shape[0]
    if all(t >= 0 for t in np.ravel(thresholds)):
        # only points > 0 can be in a run or add to a sum: keep those and the point after each
        points = np.flatnonzero(_with_next(cas > 0))
        return _proposals_at(points, cas[points], N, thresholds, class_score, seconds_per_point, lam, gamma)
    return _proposals_at(np.arange(N), cas, N, thresholds, class_score, seconds_per_point, lam, gamma)


def _with_next(mask):
    """mask, plus the element after each True one."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    return out


def _proposals_at(points, values, N, thresholds, class_score, seconds_per_point, lam, gamma):
    """proposals() of a curve of N points given at `points` (sorted) only. Every point left
    out must count as 0 at every threshold (its value is <= 0 and the thresholds >= 0, or
    nothing is left out), and the point after a point > 0 must be given, so that runs of
    given points are runs of the curve.

    Sums over a range of the thresholded curve w are differences of its prefix sums, and
    a prefix sum over the given points adds the same numbers in the same order as one over
    all points (the others add exact zeros): the scores are bit for bit those of the
    dense computation."""
    th = np.asarray(thresholds, dtype=values.dtype)[:, None]
    K, M = th.shape[0], points.shape[0]
    # w with a 0 in front of each row: (K, M + 1). Laid end to end, the rows' leading
    # zeros separate the runs of different thresholds, and the row-wise prefix sums are
    # csum[k, i] = sum(w[k, :i]).
    w = np.zeros((K, M + 1), dtype=values.dtype)
    np.copyto(w[:, 1:], values[None, :], where=values[None, :] >= th)
    on = np.zeros(K * (M + 1) + 1, dtype=bool)
    np.greater(w.ravel(), 0, out=on[:-1])
    # changes of the flat mask: run starts and (one past) run ends, alternating, in
    # (threshold, time) order; position p is prefix-sum index p - k (M + 1) of row k
    change = np.flatnonzero(on[1:] != on[:-1])
    if change.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    p_s, p_e1 = change[0::2], change[1::2]
    row = (p_s // (M + 1)) * (M + 1)
    s, e1 = points[p_s - row], points[p_e1 - row - 1] + 1              # curve indices
    csum = np.cumsum(w, axis=1, dtype=np.float64).ravel()
    n = e1 - s
    c_s, c_e1 = csum[p_s], csum[p_e1]
    inner = (c_e1 - c_s) / n
    # int() truncates towards zero, as in the release
    o_lo = np.maximum(0, np.trunc(s - lam * n).astype(np.int64))
    o_hi = np.minimum(N - 1, np.trunc(e1 - 1 + lam * n).astype(np.int64)) + 1   # exclusive
    c_lo = csum[row + np.searchsorted(points, o_lo)]                     # sum(w[:o_lo])
    c_hi = csum[row + np.searchsorted(points, o_hi)]
    outer_sum = (c_s - c_lo) + (c_hi - c_e1)
    outer_len = (s - o_lo) + (o_hi - e1)
    outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    score = inner - outer + gamma * class_score
    return s * seconds_per_point, e1 * seconds_per_point, score


def nms(starts, ends, scores, threshold):
    """Greedy non-maximum suppression of 1-D segments in seconds; removes a segment whose
    tIoU with a kept, higher-scored one is >= the threshold (as the release). Ties keep
    input order.
    Returns the kept indices, best first.

    Only overlapping segments can suppress each other (for a threshold > 0), so the
    overlapping pairs are found by sorting on the start, and the greedy pass runs over
    that sparse graph: a segment is kept once every segment that would suppress it is
    removed, and removed once one of them is kept. Same result as the quadratic loop."""
    starts, ends = np.asarray(starts), np.asarray(ends)
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
    iou = _tiou(starts[a], ends[a], starts[b], ends[b])
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


def _tiou(s1, e1, s2, e2):
    """tIoU of segment arrays, 0 where the union is empty."""
    inter = np.clip(np.minimum(e1, e2) - np.maximum(s1, s2), 0, None)
    union = (e1 - s1) + (e2 - s2) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0)


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
        alive[rest[_tiou(starts[i], ends[i], starts[rest], ends[rest]) >= threshold]] = False
    return np.array(keep, dtype=np.int64)


def _upsampled_points(x, scale):
    """(points, values) of upsample(x[:, None], scale)[:, 0] at every point that can be > 0
    and the point after each: the points between two samples of which one is > 0, and the
    extrapolated tail. Values are computed by upsample's own formula, so they are the
    same numbers; every point left out is a mix of two samples <= 0, hence <= 0."""
    T = x.shape[0]
    positive = x > 0
    near = positive[:-1] | positive[1:]              # sample interval [L, L + 1]
    near[-1] = True                                  # [T - 2, T - 1] and the tail past T - 1
    if near.all():
        points = np.arange(T * scale)
    else:
        lo = np.flatnonzero(near) * scale
        hi = np.where(lo == (T - 2) * scale, T * scale, lo + scale)
        # one point of margin on each side
        lo, hi = np.maximum(lo - 1, 0), np.minimum(hi + 1, T * scale)
        mask = np.zeros(T * scale + 1, dtype=np.int8)
        np.add.at(mask, lo, 1)
        np.add.at(mask, hi, -1)
        points = np.flatnonzero(np.cumsum(mask[:-1]) > 0)
    t = points / scale
    left = np.minimum(np.floor(t).astype(np.int64), T - 2)
    frac = t - left
    values = x[left] * (1 - frac) + x[left + 1] * frac
    keep = _with_next(values > 0)
    return points[keep], values[keep]


def localize_video(cas, class_probs, num_real_segments, cfg, classes):
    """Action instances of one video from its (T, C) CAS logits and (C,) class probabilities
    (background excluded). Returns a list of ActivityNet result dicts and the predicted
    class indices.

    The up-sampled curve is computed only where it can be > 0 (points <= 0 are never in a
    proposal and add nothing to a score when the thresholds are >= 0); the result is the
    same as proposals() over upsample()'s whole curve."""
    T = cas.shape[0]
    predicted = np.flatnonzero(class_probs >= cfg.class_th)
    if predicted.size == 0:  # fall back to the top class rather than output nothing
        predicted = np.array([int(np.argmax(class_probs))])
    norm = minmax_norm(cas[:, predicted])
    sparse = T > 1 and cfg.scale > 1 and all(t >= 0 for t in cfg.act_thresh)
    curve = None if sparse else upsample(norm, cfg.scale)
    N = T * cfg.scale
    seconds_per_point = 16 * num_real_segments / (cfg.scale * T * 25)
    out = []
    for j, c in enumerate(predicted):
        if sparse:
            points, values = _upsampled_points(norm[:, j], cfg.scale)
            s, e, score = _proposals_at(points, values, N, cfg.act_thresh, float(class_probs[c]),
                                        seconds_per_point, cfg.lambda_oic, cfg.gamma_oic)
        else:
            s, e, score = proposals(curve[:, j], cfg.act_thresh, float(class_probs[c]), seconds_per_point,
                                    lam=cfg.lambda_oic, gamma=cfg.gamma_oic)
        keep = nms(s, e, score, cfg.nms_thresh)
        label = classes[c]
        out.extend({"label": label, "score": sc, "segment": [st, en]}
                   for sc, st, en in zip(score[keep].tolist(), s[keep].tolist(), e[keep].tolist()))
    return out, predicted
