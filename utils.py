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


def save_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2).encode()))


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
    th = np.asarray(thresholds, dtype=cas.dtype)[:, None]
    w = np.where(cas[None, :] >= th, cas[None, :], 0)                 # (K, N)
    on = w > 0
    edges = np.diff(np.pad(on, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    k_s, s = np.nonzero(edges == 1)                                    # run starts
    _, e1 = np.nonzero(edges == -1)                                    # one past run ends
    if s.size == 0:
        empty = np.zeros(0)
        return empty, empty, empty
    N = cas.shape[0]
    csum = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(w, axis=1, dtype=np.float64)], axis=1)
    n = e1 - s
    inner = (csum[k_s, e1] - csum[k_s, s]) / n
    # int() truncates towards zero, as in the release
    o_lo = np.maximum(0, np.trunc(s - lam * n).astype(np.int64))
    o_hi = np.minimum(N - 1, np.trunc(e1 - 1 + lam * n).astype(np.int64)) + 1   # exclusive
    outer_sum = (csum[k_s, s] - csum[k_s, o_lo]) + (csum[k_s, o_hi] - csum[k_s, e1])
    outer_len = (s - o_lo) + (o_hi - e1)
    outer = np.where(outer_len > 0, outer_sum / np.maximum(outer_len, 1), 0.0)
    score = inner - outer + gamma * class_score
    return s * seconds_per_point, e1 * seconds_per_point, score


def nms(starts, ends, scores, threshold):
    """Greedy non-maximum suppression of 1-D segments in seconds; removes a segment whose
    tIoU with a kept, higher-scored one exceeds the threshold. Ties keep input order.
    Returns the kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    starts, ends = starts[order], ends[order]
    lengths = ends - starts
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(order[i])
        rest = np.arange(i + 1, len(order))
        rest = rest[alive[rest]]
        inter = np.clip(np.minimum(ends[i], ends[rest]) - np.maximum(starts[i], starts[rest]), 0, None)
        union = lengths[i] + lengths[rest] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        alive[rest[iou > threshold]] = False
    return np.array(keep, dtype=np.int64)


def localize_video(cas, class_probs, num_real_segments, cfg, classes):
    """Action instances of one video from its (T, C) CAS logits and (C,) class probabilities
    (background excluded). Returns a list of ActivityNet result dicts and the predicted
    class indices."""
    T = cas.shape[0]
    predicted = np.flatnonzero(class_probs >= cfg.class_th)
    if predicted.size == 0:  # fall back to the top class rather than output nothing
        predicted = np.array([int(np.argmax(class_probs))])
    norm = minmax_norm(cas[:, predicted])
    curve = upsample(norm, cfg.scale)
    seconds_per_point = 16 * num_real_segments / (cfg.scale * T * 25)
    out = []
    for j, c in enumerate(predicted):
        s, e, score = proposals(curve[:, j], cfg.act_thresh, float(class_probs[c]), seconds_per_point,
                                lam=cfg.lambda_oic, gamma=cfg.gamma_oic)
        for i in nms(s, e, score, cfg.nms_thresh):
            out.append({"label": classes[c], "score": float(score[i]), "segment": [float(s[i]), float(e[i])]})
    return out, predicted
