"""Compare two feature sets in the release layout video by video and stream by stream, and
name the likely cause of a difference (scripts/compare_features.py is the command line).

A set is a dataset folder holding features/<subset>/{rgb,flow}/<video>.npy (dataset.py);
a video is matched by its id, whatever subset folder it lies in. For every video both sets
hold and every stream both hold, with A's vectors a (L_a, D) and B's b (L_b, D):

- lag: the offset k in [-max_lag, max_lag] that maximises the mean cosine similarity of
  the aligned vectors a[t] and b[t + k]; k > 0 when B lags A (A's vector t is B's t + k).
  Only offsets that leave at least half of the shorter video aligned are tried; of equal
  means the smaller |k| wins, so identical or constant features give 0.
- cosine, cosine_p5: the mean and the 5th percentile of cos(a[t], b[t + k]) over the
  aligned t (two zero vectors count as equal, one zero vector as orthogonal).
- norm_ratio: mean |b[t + k]| / mean |a[t]| over the aligned t (2: B is twice A's scale).
- cross_cosine: the same mean cosine (at its own best offset) of A's stream against B's
  other stream, which tells a swap of B's rgb and flow.

The summary gives, per stream, the distribution of these over the videos, the worst
videos, the videos (and streams) only in one set and warnings naming the likely cause of
a systematic difference: an offset, a scale, swapped streams, a stream that does not match
(other weights, network or preprocessing), different lengths or widths, missing videos.
"""
import os
from collections import Counter

import numpy as np

from dataset import SECONDS_PER_SEGMENT as SEGMENT_SECONDS
from dataset import STREAMS, DataError, npy_shape

COSINE_MATCH = 0.9      # a stream matches when the median of its videos' mean cosine is at least this
SCALE_TOLERANCE = 0.1   # a median norm ratio outside [1 / 1.1, 1.1] is a scale difference


# ----------------------------------------------------------------------------- sets
def index_set(root):
    """{video: {stream: path}} of the feature files under root/features/<subset>/<stream>/."""
    features = os.path.join(root, "features")
    if not os.path.isdir(features):
        raise DataError(f"{root} holds no features/ folder: expected "
                        "features/<subset>/{rgb,flow}/<video>.npy (the release layout)")
    found = {}
    for subset in sorted(os.listdir(features)):
        for stream in STREAMS:
            folder = os.path.join(features, subset, stream)
            if not os.path.isdir(folder):
                continue
            for name in sorted(os.listdir(folder)):
                if not name.endswith(".npy") or name.startswith("."):
                    continue
                video, path = name[:-4], os.path.join(folder, name)
                other = found.setdefault(video, {}).get(stream)
                if other is not None:
                    raise DataError(f"video {video} has two {stream} files in {root}: {other} and {path}; "
                                    "a video must be in one subset")
                found[video][stream] = path
    if not found:
        raise DataError(f"{features} holds no feature file (<subset>/{{rgb,flow}}/<video>.npy)")
    return found


def read_stream(path):
    """The (L, D) vectors of one feature file as float64, checked as dataset.py checks them."""
    npy_shape(path)
    array = np.load(path).astype(np.float64)
    if not np.isfinite(array).all():
        raise DataError(f"feature file {path} holds NaN or Inf")
    return array


# ----------------------------------------------------------------------------- one pair
def _lags(max_lag):
    """0, 1, -1, 2, -2, ...: the order in which equal means are decided."""
    yield 0
    for k in range(1, max_lag + 1):
        yield k
        yield -k


def _cosines(a, b):
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    dot = np.einsum("ij,ij->i", a, b)
    both = na * nb
    return np.where(both > 0, dot / np.where(both > 0, both, 1), np.where((na == 0) & (nb == 0), 1.0, 0.0))


def compare_arrays(a, b, max_lag):
    """lag, cosine, cosine_p5, norm_ratio of B's vectors b against A's a (module docstring)."""
    la, lb = len(a), len(b)
    need = max(1, -(-min(la, lb) // 2))
    best = None
    for k in _lags(max_lag):
        t0, t1 = max(0, -k), min(la, lb - k)
        if t1 - t0 < need:
            continue
        cos = _cosines(a[t0:t1], b[t0 + k:t1 + k])
        if best is None or cos.mean() > best[1].mean() + 1e-12:
            best = (k, cos, t0, t1)
    k, cos, t0, t1 = best
    norm_a = np.linalg.norm(a[t0:t1], axis=1).mean()
    norm_b = np.linalg.norm(b[t0 + k:t1 + k], axis=1).mean()
    ratio = float(norm_b / norm_a) if norm_a > 0 else (1.0 if norm_b == 0 else float("inf"))
    return {"lag": k, "cosine": float(cos.mean()), "cosine_p5": float(np.percentile(cos, 5)),
            "norm_ratio": ratio}


# ----------------------------------------------------------------------------- two sets
def compare_sets(root_a, root_b, max_lag=4, worst=5):
    """{"videos": [one entry per video and stream both sets hold], "summary": {...}}."""
    if max_lag < 0:
        raise DataError(f"--max_lag must be >= 0, got {max_lag}")
    set_a, set_b = index_set(root_a), index_set(root_b)
    entries, stream_only = [], {"a": [], "b": []}
    for video in sorted(set(set_a) & set(set_b)):
        files_a, files_b = set_a[video], set_b[video]
        for stream in STREAMS:
            if (stream in files_a) != (stream in files_b):
                stream_only["a" if stream in files_a else "b"].append([video, stream])
        common = [s for s in STREAMS if s in files_a and s in files_b]
        arrays = {(side, s): read_stream(files[s]) for side, files in (("a", files_a), ("b", files_b))
                  for s in common}
        for stream in common:
            a, b = arrays["a", stream], arrays["b", stream]
            entry = {"video": video, "stream": stream, "length_a": len(a), "length_b": len(b),
                     "width_a": a.shape[1], "width_b": b.shape[1]}
            if a.shape[1] == b.shape[1]:
                entry.update(compare_arrays(a, b, max_lag))
            else:
                entry.update(lag=None, cosine=None, cosine_p5=None, norm_ratio=None)
            other = "flow" if stream == "rgb" else "rgb"
            cross = arrays.get(("b", other))
            entry["cross_cosine"] = (compare_arrays(a, cross, max_lag)["cosine"]
                                     if cross is not None and cross.shape[1] == a.shape[1] else None)
            entries.append(entry)
    summary = summarize(entries, set_a, set_b, stream_only, worst)
    summary.update(set_a=root_a, set_b=root_b, max_lag=max_lag)
    return {"videos": entries, "summary": summary}


def _stats(values, names):
    values = np.asarray(values, dtype=np.float64)
    table = {"min": np.min, "p5": lambda v: np.percentile(v, 5), "median": np.median,
             "mean": np.mean, "max": np.max}
    return {n: float(table[n](values)) for n in names}


def summarize(entries, set_a, set_b, stream_only, worst=5):
    """Distribution per stream, worst videos, videos only in one set, warnings and causes."""
    streams = {}
    for stream in STREAMS:
        rows = [e for e in entries if e["stream"] == stream]
        scored = [e for e in rows if e["cosine"] is not None]
        if not rows:
            continue
        item = {"videos": len(rows),
                "widths": sorted({(e["width_a"], e["width_b"]) for e in rows}),
                "length_differences": {f"{d:+d}": n for d, n in sorted(
                    Counter(e["length_b"] - e["length_a"] for e in rows if e["length_b"] != e["length_a"]).items())}}
        if scored:
            item["cosine"] = _stats([e["cosine"] for e in scored], ("min", "p5", "median", "mean", "max"))
            item["cosine_p5"] = _stats([e["cosine_p5"] for e in scored], ("min", "median"))
            item["norm_ratio"] = _stats([e["norm_ratio"] for e in scored], ("min", "median", "max"))
            item["lags"] = {f"{k:+d}" if k else "0": n for k, n in sorted(Counter(e["lag"] for e in scored).items())}
            cross = [e["cross_cosine"] for e in scored if e["cross_cosine"] is not None]
            if cross:
                item["cross_cosine"] = _stats(cross, ("median",))
        streams[stream] = item
    ranked = sorted((e for e in entries if e["cosine"] is not None), key=lambda e: e["cosine"])
    summary = {
        "videos_compared": len({e["video"] for e in entries}),
        "videos_a": len(set_a), "videos_b": len(set_b),
        "only_in_a": sorted(set(set_a) - set(set_b)), "only_in_b": sorted(set(set_b) - set(set_a)),
        "stream_only_in_a": stream_only["a"], "stream_only_in_b": stream_only["b"],
        "streams": streams,
        "worst": [{k: e[k] for k in ("video", "stream", "cosine", "lag", "norm_ratio")} for e in ranked[:worst]],
    }
    summary["causes"], summary["warnings"] = diagnose(summary, entries)
    return summary


def _names(items, limit=5):
    items = list(items)
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def diagnose(summary, entries):
    """(causes, warnings): short tags and one sentence each for the systematic differences
    the summary shows (an empty list when the sets agree)."""
    causes, warnings = [], []

    def warn(cause, text):
        if cause not in causes:
            causes.append(cause)
        warnings.append(f"{cause}: {text}")

    streams = summary["streams"]
    for stream, item in streams.items():
        for wa, wb in item["widths"]:
            if wa != wb:
                warn("width", f"B's {stream} features are {wb} wide, A's {wa}: another network or layer, "
                              "or both streams in one file; these are not compared")
    swapped = (set(streams) == set(STREAMS) and all("cross_cosine" in streams[s] and "cosine" in streams[s]
                                                   for s in STREAMS)
               and all(streams[s]["cross_cosine"]["median"] > streams[s]["cosine"]["median"] for s in STREAMS))
    if swapped:
        warn("swapped", "B's rgb and flow streams look swapped: A's rgb matches B's flow (median cosine "
                        f"{streams['rgb']['cross_cosine']['median']:.3f}, against {streams['rgb']['cosine']['median']:.3f}"
                        " with B's rgb) and A's flow B's rgb; check which file of B is which")
    for stream, item in streams.items():
        if "cosine" not in item:
            continue
        cosine = item["cosine"]["median"]
        if cosine < COSINE_MATCH and not swapped:
            warn("mismatched stream", f"B's {stream} features do not match A's (median cosine {cosine:.3f} over "
                                      f"{item['videos']} videos, best offsets tried): other weights or network, "
                                      "or other preprocessing (resize, crop, frame rate, flow algorithm)")
        ratio = item["norm_ratio"]["median"]
        if not 1 / (1 + SCALE_TOLERANCE) <= ratio <= 1 + SCALE_TOLERANCE:
            how = ("the same directions at another scale (features multiplied or normalised differently)"
                   if cosine >= COSINE_MATCH else "besides the difference in direction")
            warn("scale", f"B's {stream} vectors are {ratio:.3g} times as long as A's (median over "
                          f"{item['videos']} videos): {how}")
        # an offset among vectors that match only then; among unrelated vectors a lag means nothing
        lags = Counter(e["lag"] for e in entries if e["stream"] == stream and e["cosine"] is not None
                       and e["cosine"] >= COSINE_MATCH)
        shifted = {k: n for k, n in lags.items() if k}
        if shifted:
            k, n = max(shifted.items(), key=lambda kv: kv[1])
            total = sum(lags.values())
            direction = "lags A (its features start later)" if k > 0 else "leads A (its features start earlier)"
            extra = f"; {sum(shifted.values()) - n} other video(s) with other offsets" if sum(shifted.values()) > n else ""
            warn("offset", f"in the {stream} stream B {direction} by {abs(k)} vector(s) ({abs(k) * SEGMENT_SECONDS:.2f} s "
                           f"on the release's grid) in {n} of {total} matching videos{extra}: another first "
                           "frame, frame rate or snippet start")
    differ = {}      # video -> length B - A (of its first stream that differs)
    for e in entries:
        if e["length_a"] != e["length_b"]:
            differ.setdefault(e["video"], e["length_b"] - e["length_a"])
    if differ:
        detail = ", ".join(f"{d:+d} in {n}" for d, n in sorted(Counter(differ.values()).items()))
        warn("lengths", f"{len(differ)} of {summary['videos_compared']} videos differ in length (B - A: {detail}; "
                        f"e.g. {_names(sorted(differ), 3)}): another frame rate, another count of snippets at "
                        "the end, or a truncated video")
    for side, other in (("a", "b"), ("b", "a")):
        only = summary[f"only_in_{side}"]
        if only:
            warn("missing videos", f"{len(only)} video(s) only in {side.upper()}, not in {other.upper()}: {_names(only)}")
        only_streams = summary[f"stream_only_in_{side}"]
        if only_streams:
            warn("missing streams", f"{len(only_streams)} stream file(s) only in {side.upper()}: "
                                    f"{_names(f'{v} ({s})' for v, s in only_streams)}")
    return causes, warnings


# ----------------------------------------------------------------------------- text
def format_report(report):
    """The comparison as text: per stream, the worst videos, the warnings."""
    s = report["summary"]
    lines = [f"A: {s['set_a']} ({s['videos_a']} videos)   B: {s['set_b']} ({s['videos_b']} videos)",
             f"{s['videos_compared']} video(s) in both; {len(s['only_in_a'])} only in A, "
             f"{len(s['only_in_b'])} only in B; offsets tried: -{s['max_lag']} .. +{s['max_lag']} vectors", ""]
    head = (f"{'':<14}{'cosine (video means)':^25}   {'cosine p5':^9}   {'norm B/A':^22}\n"
            f"{'stream':<7}{'videos':>7}{'median':>9}{'p5':>8}{'min':>8}   {'median':>9}   "
            f"{'median':>8}{'min':>7}{'max':>7}   {'lags (vectors: videos)':<24} length B-A")
    lines.append(head)
    for stream, item in s["streams"].items():
        if "cosine" not in item:
            lines.append(f"{stream:<7}{item['videos']:>7}  widths differ: {item['widths']}")
            continue
        c, n = item["cosine"], item["norm_ratio"]
        lags = " ".join(f"{k}: {v}" for k, v in item["lags"].items())
        lengths = " ".join(f"{k}: {v}" for k, v in item["length_differences"].items()) or "equal"
        lines.append(f"{stream:<7}{item['videos']:>7}{c['median']:>9.4f}{c['p5']:>8.4f}{c['min']:>8.4f}   "
                     f"{item['cosine_p5']['median']:>9.4f}   {n['median']:>8.3f}{n['min']:>7.3f}{n['max']:>7.3f}   "
                     f"{lags:<24} {lengths}")
    if s["worst"]:
        lines += ["", "worst videos (lowest mean cosine):"]
        lines += [f"  {w['video']:<30} {w['stream']:<5} cosine {w['cosine']:.4f}  lag {w['lag']:+d}  "
                  f"norm B/A {w['norm_ratio']:.3f}" for w in s["worst"]]
    lines.append("")
    lines += [f"warning: {w}" for w in s["warnings"]] or ["no systematic difference found"]
    return "\n".join(lines)


def format_map_table(results_a, results_b):
    """Two test passes of one checkpoint (test.score_split's results) side by side: mAP (%) per tIoU."""
    lines = [f"{'tIoU':<8}{'A':>8}{'B':>8}{'B - A':>8}"]
    for t, ma, mb in zip(results_a["tiou"], results_a["mAP"], results_b["mAP"]):
        lines.append(f"{t:<8g}{100 * ma:>8.2f}{100 * mb:>8.2f}{100 * (mb - ma):>+8.2f}")
    ma, mb = results_a["average_mAP"], results_b["average_mAP"]
    lines.append(f"{'average':<8}{100 * ma:>8.2f}{100 * mb:>8.2f}{100 * (mb - ma):>+8.2f}")
    return "\n".join(lines)
