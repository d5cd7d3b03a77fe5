"""A seeded THUMOS14 look-alike for demos and tests: annotations with THUMOS14's
statistics, two-stream features that contain the problem BaS-Net was designed for.

    python synthetic.py dataset/SYNTHETIC --seed 0

writes, in the authors' release layout (read exactly like the real data):

    ROOT/gt.json                                 {"database": {video: {"subset", "annotations"}}}
    ROOT/split_train.txt, ROOT/split_test.txt    one video id per line
    ROOT/features/{train,test}/{rgb,flow}/<video>.npy   float32 (L, feature_dim), L segments
    ROOT/README.txt                              seed and parameters

One segment is 16 frames at 25 fps (0.64 s). Train videos are `video_validation_0000001`...,
test videos `video_test_0000001`... Everything is generated into a temporary sibling
folder and renamed into place at the end, so an interrupted run never leaves a partial
dataset at ROOT.

Annotations. Every distribution below is measured on the real THUMOS14 gt.json (the 200
validation + 210 test videos WTAL papers use; `scripts/thumos14_stats.py` prints the
numbers) and hard-coded, so generation needs no real data:
  - the set of classes of a video is drawn from the 28 label sets seen in THUMOS14
    (about 9% of videos have two classes, mostly CricketBowling + CricketShot); every
    CliffDiving instance is also written as Diving, as in the real file, so about 15% of
    videos carry two labels;
  - instances per class and video: log-normal per class (BasketballDunk videos have tens
    of instances, GolfSwing a few); median about 8 instances per video;
  - instance durations: log-normal per class (CricketShot about 1 s, CleanAndJerk about
    9 s), median about 3 s, at 0.1 s resolution like the real file;
  - video length: gt.json has no durations, only a lower bound (the last annotation ends
    at 131 s for the median video, 1661 s at most), so lengths are log-normal with
    median 3 min, clipped to [30 s, 28 min] (the longest THUMOS14 test video), and
    stretched when the instances need more room (at most 60% of a video is action),
    which gives a median of about 3.5 min;
  - instances of a video are laid out on one time line with Dirichlet-distributed gaps
    (many short gaps, a few long ones), so instances never overlap, within a class or
    across classes.

Features: the phenomenon. Each class c has an action pattern a_c (two phases: the pattern
drifts from the start to the end of an instance) and a venue pattern v_c (the sport's
setting; related sports, the athletics field events and the two cricket classes, share
part of their venue). K = 8 generic background patterns g_k (crowd, commentator, replay
graphics, ...) are shared by all classes. All action patterns share one component (things
move) and all generic patterns share another (nothing happens). Per 0.64 s segment:
  - background of a video of class c: the venue (v_c plus a per-video offset: another
    stadium) at a strength that changes from shot to shot, 0.3 to 1.8 (close-ups of the
    venue show it more than the action does) + one generic pattern g_k (constant over a
    shot of about 4 s, then another one) + noise. Long gaps between instances may hold
    a stretch of pure generic background (venue off);
  - action: a_c + the venue at strength 1 + the generic pattern at 10% + noise.
So the class of a video is predictable from its background alone, which a plain MIL
model's top-k uses: its CAS stays high on venue shots and does not fall at instance
boundaries, which only a_c marks. The generic component is in the background of every
video: BaS-Net's background class can learn it and its filter can suppress it.
Streams: rgb and flow are two different random orthogonal projections of the same latent
signal, flow weighting the action pattern more, rgb the venue more, each with independent
noise. The latent signal is smoothed by a 3-tap moving average, so instance edges and
shot changes ramp over about one segment (instances also cover segments fractionally).
Features are roughly zero-mean with unit variance per dimension, float32.

The design was checked against a re-implementation of the release's recipe: plain MIL
fires on the venues and scores below BaS-Net, the paper's ordering (figures in
docs/benchmarks.md, "The demo data against the release's recipe").
"""
import argparse
import json
import os
import shutil
import tempfile

import numpy as np

from dataset import SECONDS_PER_SEGMENT as SEGMENT_SECONDS
from dataset import STREAMS, THUMOS14_CLASSES, feature_file

SYNTHETIC_CLASSES = THUMOS14_CLASSES

# ---- Measured on THUMOS14 gt.json (200 validation + 210 test videos, 6318 instances),
# ---- see scripts/thumos14_stats.py. The Diving copies of CliffDiving instances are left out
# ---- (the generator adds them back), so Diving below means the 20 pure Diving videos.
# Label sets and how many of the 410 videos have each.
LABEL_SET_COUNTS = [
    (("BaseballPitch",), 21), (("BaseballPitch", "FrisbeeCatch"), 1),
    (("BasketballDunk",), 20), (("Billiards",), 20), (("CleanAndJerk",), 21),
    (("CleanAndJerk", "HammerThrow"), 1), (("CleanAndJerk", "ThrowDiscus"), 1),
    (("CliffDiving",), 26), (("CricketBowling",), 6),
    (("CricketBowling", "CricketShot"), 27), (("CricketShot",), 7), (("Diving",), 20),
    (("FrisbeeCatch",), 16), (("GolfSwing",), 18), (("GolfSwing", "TennisSwing"), 1),
    (("HammerThrow",), 18), (("HighJump",), 20),
    (("HighJump", "JavelinThrow", "Shotput"), 1), (("JavelinThrow",), 20),
    (("LongJump",), 20), (("LongJump", "PoleVault"), 1), (("PoleVault",), 19),
    (("Shotput",), 23), (("Shotput", "ThrowDiscus"), 2), (("SoccerPenalty",), 21),
    (("TennisSwing",), 18), (("ThrowDiscus",), 18), (("VolleyballSpiking",), 23),
]
# Per class: (mean, std) of log(instances of that class in a video that has it),
# then (mean, std) of log(instance duration in seconds).
CLASS_STATS = {
    "BaseballPitch": ((0.829, 0.745), (1.033, 0.467)),
    "BasketballDunk": ((3.180, 1.096), (0.449, 0.522)),
    "Billiards": ((1.757, 1.082), (0.761, 0.721)),
    "CleanAndJerk": ((1.364, 0.934), (2.204, 0.677)),
    "CliffDiving": ((2.248, 0.861), (0.978, 0.553)),
    "CricketBowling": ((1.750, 1.072), (0.319, 0.625)),
    "CricketShot": ((1.860, 0.933), (0.176, 0.559)),
    "Diving": ((2.646, 1.190), (0.958, 0.509)),
    "FrisbeeCatch": ((1.654, 1.033), (0.842, 0.669)),
    "GolfSwing": ((1.041, 0.643), (1.576, 0.992)),
    "HammerThrow": ((2.707, 0.849), (1.935, 0.401)),
    "HighJump": ((2.474, 1.042), (1.477, 0.528)),
    "JavelinThrow": ((2.617, 0.840), (1.805, 0.399)),
    "LongJump": ((2.088, 1.170), (1.900, 0.460)),
    "PoleVault": ((2.698, 1.140), (1.874, 0.478)),
    "Shotput": ((1.794, 0.842), (1.453, 0.747)),
    "SoccerPenalty": ((1.251, 0.857), (1.019, 0.524)),
    "TennisSwing": ((2.091, 0.818), (0.480, 0.695)),
    "ThrowDiscus": ((1.515, 1.226), (1.153, 0.971)),
    "VolleyballSpiking": ((1.965, 1.058), (0.572, 0.788)),
}
MAX_INSTANCES_PER_CLASS = 220       # real maximum: 218 BasketballDunk in one video
DURATION_RANGE_S = (0.2, 118.0)     # real shortest and longest instance
# Video length: chosen (gt.json has no durations), consistent with its lower bounds.
VIDEO_MEDIAN_S, VIDEO_LOG_STD = 180.0, 0.8
VIDEO_RANGE_S = (30.0, 1680.0)      # 28 min: the longest THUMOS14 test video
MAX_ACTION_FRACTION = 0.6
MIN_GAP_S = 0.2
GAP_DIRICHLET_ALPHA = 0.35          # small: many short gaps, a few long ones
MIN_SEGMENTS = 8

# ---- Feature model (chosen, not measured).
VENUE_FAMILIES = [  # sports that share part of their venue
    ("CricketBowling", "CricketShot"),
    ("HammerThrow", "HighJump", "JavelinThrow", "LongJump", "PoleVault", "Shotput", "ThrowDiscus"),
]
NUM_GENERIC = 8
SHOT_MEAN_SEGMENTS = 6              # generic pattern / venue strength change every ~4 s
VENUE_STRENGTH_RANGE = (0.3, 1.8)
VIDEO_VENUE_JITTER = 0.35           # each video's venue differs a little (another stadium)
INSTANCE_JITTER = 0.3               # each instance differs a little from its class pattern
GENERIC_IN_ACTION = 0.1
SHARED_ACTION = 0.5                 # part of every action pattern common to all classes
SHARED_GENERIC = 0.7                # part of every generic pattern common to all of them
EXPECTED_BACKGROUND_FRACTION = 0.79
PURE_BACKGROUND_MIN_GAP_S = 20.0    # gaps longer than this may hold pure generic background
PURE_BACKGROUND_PROB = 0.5
# Per stream: weight of action, venue, generic; noise std.
STREAM_WEIGHTS = {"rgb": (0.6, 0.65, 0.75, 0.6), "flow": (1.0, 0.38, 0.75, 0.7)}
SMOOTHING = np.array([0.25, 0.5, 0.25])


def generate_synthetic(root, seed=0, *, num_train=200, num_test=210, feature_dim=32,
                       length_scale=1.0):
    """Write a synthetic THUMOS14-like dataset to `root` (which must not exist or be empty).

    feature_dim is the width of each stream; length_scale multiplies video lengths
    (use e.g. 0.2 for tiny test datasets). Same arguments give identical files.
    """
    root = os.path.abspath(root)
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise ValueError(f"refusing to write into non-empty {root}")
    if num_train < 0 or num_test < 0 or feature_dim < 1 or length_scale <= 0:
        raise ValueError("need num_train, num_test >= 0, feature_dim >= 1, length_scale > 0")
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.partial-", dir=parent)
    try:
        os.chmod(tmp, 0o755)
        _write_dataset(tmp, seed=seed, num_train=num_train, num_test=num_test, feature_dim=feature_dim,
                       length_scale=length_scale)
        os.rename(tmp, root)  # atomic; replaces root only if it is an empty folder
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_dataset(out, *, seed, num_train, num_test, feature_dim, length_scale):
    pattern_seq, train_seq, test_seq = np.random.SeedSequence(seed).spawn(3)
    patterns = _make_patterns(np.random.default_rng(pattern_seq), feature_dim)
    database = {}
    for subset, prefix, count, seq in (("train", "video_validation", num_train, train_seq),
                                       ("test", "video_test", num_test, test_seq)):
        for stream in STREAMS:
            os.makedirs(os.path.join(out, "features", subset, stream))
        names = [f"{prefix}_{i + 1:07d}" for i in range(count)]
        for name, video_seq in zip(names, seq.spawn(count)):
            layout_seq, feature_seq = video_seq.spawn(2)
            labels, num_segments, instances, pure = _sample_layout(
                np.random.default_rng(layout_seq), length_scale)
            feats = _render_features(np.random.default_rng(feature_seq), patterns, labels=labels,
                                     num_segments=num_segments, instances=instances, pure=pure)
            for stream, x in feats.items():
                np.save(feature_file(out, subset, stream, name), x)
            database[name] = {"subset": subset, "annotations": _annotations(instances)}
        with open(os.path.join(out, f"split_{subset}.txt"), "w") as f:
            f.write("".join(n + "\n" for n in names))
    with open(os.path.join(out, "gt.json"), "w") as f:
        json.dump({"database": database}, f)
    with open(os.path.join(out, "README.txt"), "w") as f:
        f.write("Synthetic THUMOS14-like dataset, generated by synthetic.py (not real data).\n"
                f"seed={seed} num_train={num_train} num_test={num_test} "
                f"feature_dim={feature_dim} (per stream) length_scale={length_scale}\n"
                "Segments of 16 frames at 25 fps (0.64 s); see synthetic.py for the design.\n")


def _annotations(instances):
    """Instances as in gt.json: grouped by class, each CliffDiving also as Diving."""
    rows = []
    for label, start, end in instances:  # times in tenths of a second
        rows.append((label, start, end))
        if label == "CliffDiving":
            rows.append(("Diving", start, end))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [{"segment": [f"{s / 10:.1f}", f"{e / 10:.1f}"], "label": lab}
            for lab, s, e in rows]


def _sample_layout(rng, length_scale):
    """Labels, length in segments, instances [(label, start, end) in 0.1 s units] and
    pure-background intervals [(start, end) in 0.1 s units] of one video."""
    sets = [s for s, _ in LABEL_SET_COUNTS]
    counts = np.array([n for _, n in LABEL_SET_COUNTS], dtype=float)
    labels = sets[rng.choice(len(sets), p=counts / counts.sum())]
    pool = []
    for label in labels:
        (cnt_mu, cnt_sd), (dur_mu, dur_sd) = CLASS_STATS[label]
        n = int(np.clip(round(np.exp(rng.normal(cnt_mu, cnt_sd))), 1, MAX_INSTANCES_PER_CLASS))
        durs = np.clip(np.exp(rng.normal(dur_mu, dur_sd, n)), *DURATION_RANGE_S)
        pool += [(label, int(round(10 * d))) for d in durs]
    order = rng.permutation(len(pool))
    pool = [pool[i] for i in order]
    action_s = sum(d for _, d in pool) / 10
    seconds = np.clip(np.exp(rng.normal(np.log(VIDEO_MEDIAN_S), VIDEO_LOG_STD)), *VIDEO_RANGE_S)
    seconds = min(max(seconds, action_s / MAX_ACTION_FRACTION), VIDEO_RANGE_S[1])
    num_segments = max(MIN_SEGMENTS, int(round(seconds * length_scale / SEGMENT_SECONDS)))
    total = num_segments * 64 // 10  # video duration in 0.1 s, rounded down
    min_gap = int(round(10 * MIN_GAP_S))

    # Keep one instance per class, then others (random order) while they fit.
    budget = MAX_ACTION_FRACTION * total
    first = {}
    for i, (label, _) in enumerate(pool):
        first.setdefault(label, i)
    mandatory = set(first.values())
    keep = sorted(mandatory)
    used = sum(pool[i][1] + min_gap for i in keep)
    if used > budget:  # tiny video: shrink the mandatory instances
        f = budget / used
        pool = [(lab, max(2, int(d * f))) for lab, d in pool]
        used = sum(pool[i][1] + min_gap for i in keep)
    for i in range(len(pool)):
        if i not in mandatory and used + pool[i][1] + min_gap <= budget:
            keep.append(i)
            used += pool[i][1] + min_gap
    keep.sort()
    chosen = [pool[i] for i in keep]

    # Lay them out on one time line: leading gap, instances with gaps, trailing gap.
    n = len(chosen)
    spare = total - sum(d for _, d in chosen) - min_gap * (n - 1)
    gaps = np.floor(rng.dirichlet(np.full(n + 1, GAP_DIRICHLET_ALPHA)) * max(spare, 0))
    gaps = gaps.astype(int)
    gaps[-1] += max(spare, 0) - gaps.sum()
    instances, free, t = [], [], 0
    for k, (label, d) in enumerate(chosen):
        free.append((t, t + gaps[k]))
        t += gaps[k]
        instances.append((label, t, t + d))
        t += d + min_gap
    free.append((t - min_gap, total))

    pure = []
    for s, e in free:
        long_gap = e - s >= 10 * PURE_BACKGROUND_MIN_GAP_S * length_scale
        if long_gap and rng.random() < PURE_BACKGROUND_PROB:
            length = int((e - s) * rng.uniform(0.4, 0.9))
            start = s + int(rng.integers(0, e - s - length + 1))
            pure.append((start, start + length))
    return labels, num_segments, instances, pure


def _make_patterns(rng, dim):
    def gauss(*shape):
        return rng.standard_normal(shape + (dim,))

    num_classes = len(SYNTHETIC_CLASSES)
    index = {c: i for i, c in enumerate(SYNTHETIC_CLASSES)}
    venue = gauss(num_classes)
    for family in VENUE_FAMILIES:
        shared = gauss()
        for c in family:
            venue[index[c]] = 0.6 * shared + 0.8 * venue[index[c]]
    motion = gauss()  # shared by all actions (things move), as background is by all g_k
    action_start = gauss(num_classes)
    dv, cd = index["Diving"], index["CliffDiving"]  # cliff diving moves like diving
    action_start[cd] = 0.6 * action_start[dv] + 0.8 * action_start[cd]
    action_end = 0.6 * action_start + 0.8 * gauss(num_classes)
    action_start = SHARED_ACTION * motion + np.sqrt(1 - SHARED_ACTION ** 2) * action_start
    action_end = SHARED_ACTION * motion + np.sqrt(1 - SHARED_ACTION ** 2) * action_end
    background = gauss()
    generic = SHARED_GENERIC * background + np.sqrt(1 - SHARED_GENERIC ** 2) * gauss(NUM_GENERIC)
    # The shared parts do not average out: remove their expected value (about 79% of all
    # segments are background) so that features stay roughly zero-mean.
    bg = EXPECTED_BACKGROUND_FRACTION
    offsets = {stream: (wa * SHARED_ACTION * (1 - bg) * motion
                        + wg * SHARED_GENERIC * bg * background)
               for stream, (wa, _, wg, _) in STREAM_WEIGHTS.items()}
    projections = {}
    for stream in STREAM_WEIGHTS:
        q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
        projections[stream] = q * np.sign(np.diag(r))
    return {"index": index, "venue": venue - venue.mean(0), "action_start": action_start,
            "action_end": action_end, "generic": generic,
            "offsets": offsets, "projections": projections}


def _render_features(rng, patterns, *, labels, num_segments, instances, pure):
    dim = patterns["venue"].shape[1]
    T = num_segments
    idx = patterns["index"]
    seg = SEGMENT_SECONDS

    # Action: fraction of each segment covered, pattern drifting over the instance.
    action = np.zeros((T, dim))
    cover = np.zeros(T)
    for label, start, end in instances:
        s, e = start / 10, end / 10
        i = np.arange(int(s // seg), min(T, int(np.ceil(e / seg))))
        frac = (np.minimum(e, (i + 1) * seg) - np.maximum(s, i * seg)) / seg
        phase = np.clip(((i + 0.5) * seg - s) / (e - s), 0, 1)[:, None]
        c = idx[label]
        pat = ((1 - phase) * patterns["action_start"][c] + phase * patterns["action_end"][c]
               + INSTANCE_JITTER * rng.standard_normal(dim))
        action[i] += frac[:, None] * pat
        cover[i] += frac
    cover = np.minimum(cover, 1.0)

    # Background shots: a generic pattern and a venue strength per shot.
    lengths = rng.geometric(1 / SHOT_MEAN_SEGMENTS, size=T)
    shot = np.repeat(np.arange(T), lengths)[:T]
    generic_id = rng.integers(0, NUM_GENERIC, size=T)[shot]
    venue_amp = rng.uniform(*VENUE_STRENGTH_RANGE, size=T)[shot]
    generic_amp = rng.uniform(0.7, 1.3, size=T)[shot]
    centres = (np.arange(T) + 0.5) * seg
    for s, e in pure:
        venue_amp[(centres >= s / 10) & (centres < e / 10)] = 0.0
    venue_amp = (1 - cover) * venue_amp + cover
    generic_amp = generic_amp * (1 - (1 - GENERIC_IN_ACTION) * cover)
    video_venue = (np.mean([patterns["venue"][idx[c]] for c in labels], axis=0)
                   + VIDEO_VENUE_JITTER * rng.standard_normal(dim))
    venue = venue_amp[:, None] * video_venue
    generic = generic_amp[:, None] * patterns["generic"][generic_id]

    out = {}
    for stream, (wa, wv, wg, noise) in STREAM_WEIGHTS.items():
        x = wa * action + wv * venue + wg * generic - patterns["offsets"][stream]
        padded = np.concatenate([x[:1], x, x[-1:]])
        x = sum(w * padded[k:k + T] for k, w in enumerate(SMOOTHING))
        x = x @ patterns["projections"][stream] + noise * rng.standard_normal((T, dim))
        out[stream] = x.astype(np.float32)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-train", type=int, default=200)
    p.add_argument("--num-test", type=int, default=210)
    p.add_argument("--feature-dim", type=int, default=32)
    p.add_argument("--length-scale", type=float, default=1.0)
    a = p.parse_args()
    generate_synthetic(a.root, a.seed, num_train=a.num_train, num_test=a.num_test, feature_dim=a.feature_dim,
                       length_scale=a.length_scale)


if __name__ == "__main__":
    main()
