"""Tests of the synthetic THUMOS14-like dataset (synthetic.py)."""
import json
import os
import re

import numpy as np
import pytest

import synthetic
from synthetic import SYNTHETIC_CLASSES, generate_synthetic

SEG = 16 / 25
TINY = dict(num_train=16, num_test=8, feature_dim=8, length_scale=0.2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny") / "data")
    generate_synthetic(root, seed=0, **TINY)
    return root


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The default size, as the demo uses it."""
    root = str(tmp_path_factory.mktemp("full") / "data")
    generate_synthetic(root, seed=0)
    return root


def load_gt(root):
    with open(os.path.join(root, "gt.json")) as f:
        return json.load(f)["database"]


def read_split(root, subset):
    with open(os.path.join(root, f"split_{subset}.txt")) as f:
        return f.read().split()


def features(root, subset, name):
    return [np.load(os.path.join(root, "features", subset, s, name + ".npy"))
            for s in ("rgb", "flow")]


def all_files(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def segments_of(video):
    return [(a["label"], float(a["segment"][0]), float(a["segment"][1]))
            for a in video["annotations"]]


def test_classes():
    assert len(SYNTHETIC_CLASSES) == 20
    assert SYNTHETIC_CLASSES == sorted(SYNTHETIC_CLASSES)
    assert SYNTHETIC_CLASSES[0] == "BaseballPitch" and SYNTHETIC_CLASSES[-1] == "VolleyballSpiking"


def test_layout_and_shapes(tiny):
    gt = load_gt(tiny)
    train, test = read_split(tiny, "train"), read_split(tiny, "test")
    assert train == [f"video_validation_{i:07d}" for i in range(1, 17)]
    assert test == [f"video_test_{i:07d}" for i in range(1, 9)]
    assert set(gt) == set(train) | set(test)
    assert os.path.isfile(os.path.join(tiny, "README.txt"))
    for subset, names in (("train", train), ("test", test)):
        assert sorted(os.listdir(os.path.join(tiny, "features", subset))) == ["flow", "rgb"]
        for name in names:
            assert gt[name]["subset"] == subset
            assert len(gt[name]["annotations"]) >= 1
            rgb, flow = features(tiny, subset, name)
            assert rgb.dtype == np.float32 and flow.dtype == np.float32
            assert rgb.ndim == 2 and rgb.shape[1] == 8
            assert rgb.shape == flow.shape and rgb.shape[0] >= 8
            assert np.isfinite(rgb).all() and np.isfinite(flow).all()


def test_annotations_valid(tiny):
    gt = load_gt(tiny)
    for name, video in gt.items():
        length = np.load(os.path.join(tiny, "features", video["subset"], "rgb", name + ".npy"),
                         mmap_mode="r").shape[0]
        for a in video["annotations"]:
            assert a["label"] in SYNTHETIC_CLASSES
            assert all(re.fullmatch(r"\d+\.\d", s) for s in a["segment"])
            start, end = map(float, a["segment"])
            assert 0 <= start < end <= length * SEG + 1e-9


def check_no_overlap_within_class(gt):
    for video in gt.values():
        by_class = {}
        for label, s, e in segments_of(video):
            by_class.setdefault(label, []).append((s, e))
        for spans in by_class.values():
            spans.sort()
            for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
                assert e0 <= s1, (s0, e0, s1, e1)


def test_no_overlap_within_class(tiny, full):
    check_no_overlap_within_class(load_gt(tiny))
    check_no_overlap_within_class(load_gt(full))


def test_cliffdiving_also_diving(full):
    gt = load_gt(full)
    n_cliff = 0
    for video in gt.values():
        segs = segments_of(video)
        cliff = sorted((s, e) for lab, s, e in segs if lab == "CliffDiving")
        diving = {(s, e) for lab, s, e in segs if lab == "Diving"}
        assert set(cliff) <= diving
        n_cliff += len(cliff)
    assert n_cliff > 0


def test_deterministic(tiny, tmp_path):
    generate_synthetic(str(tmp_path / "same"), seed=0, **TINY)
    assert all_files(tiny) == all_files(str(tmp_path / "same"))
    generate_synthetic(str(tmp_path / "other"), seed=1, **TINY)
    a, b = all_files(tiny), all_files(str(tmp_path / "other"))
    assert a["gt.json"] != b["gt.json"]
    rgb = os.path.join("features", "train", "rgb", "video_validation_0000001.npy")
    assert a[rgb] != b[rgb]


def test_refuses_non_empty_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(ValueError):
        generate_synthetic(str(root), **TINY)
    assert os.listdir(root) == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    generate_synthetic(str(empty), **TINY)  # an existing empty folder is fine
    assert os.path.isfile(empty / "gt.json")
    assert sorted(os.listdir(tmp_path)) == ["data", "empty"]  # no temporary folder left


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def failing_save(*args, **kwargs):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return np.lib.format.write_array(open(args[0], "wb"), args[1])

    monkeypatch.setattr(synthetic.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(str(tmp_path / "data"), **TINY)
    assert os.listdir(tmp_path) == []


def background_and_action(root, subset):
    """Per video: class index, features of clear background and of clear action segments."""
    gt = load_gt(root)
    out = []
    for name in read_split(root, subset):
        segs = segments_of(gt[name])
        labels = {lab for lab, _, _ in segs} - {"Diving"} if any(
            lab == "CliffDiving" for lab, _, _ in segs) else {lab for lab, _, _ in segs}
        if len(labels) != 1:
            continue
        x = np.concatenate(features(root, subset, name), axis=1)
        centre = (np.arange(len(x)) + 0.5) * SEG
        action = np.zeros(len(x), bool)
        near = np.zeros(len(x), bool)
        for _, s, e in segs:
            action |= (centre >= s + SEG / 2) & (centre < e - SEG / 2)
            near |= (centre >= s - SEG) & (centre < e + SEG)
        out.append((SYNTHETIC_CLASSES.index(labels.pop()), x[~near], x[action]))
    return out


def auc(pos, neg):
    """Probability that a random positive scores above a random negative."""
    ranks = np.concatenate([pos, neg]).argsort().argsort() + 1
    return (ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


@pytest.fixture(scope="module")
def medium(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("medium") / "data")
    generate_synthetic(root, seed=3, num_train=120, num_test=60, feature_dim=16,
                       length_scale=0.5)
    return background_and_action(root, "train"), background_and_action(root, "test")


def test_background_alone_predicts_class(medium):
    train, test = medium
    means = {}
    for c in range(20):
        bg = [b for k, b, _ in train if k == c and len(b)]
        if bg:
            means[c] = np.concatenate(bg).mean(0)
    classes = sorted(means)
    centres = np.stack([means[c] for c in classes])
    hits = [classes[((bg.mean(0) - centres) ** 2).sum(1).argmin()] == c
            for c, bg, _ in test if len(bg) and c in means]
    assert len(hits) >= 30
    # Chance is 1/20; the venue in the background gives the class away.
    assert np.mean(hits) > 0.6


def test_action_separable_from_background_within_video(medium):
    train, test = medium
    bg_mean = np.concatenate([b for _, b, _ in train]).mean(0)
    act_mean = np.concatenate([a for _, _, a in train if len(a)]).mean(0)
    direction = act_mean - bg_mean
    aucs = [auc(a @ direction, b @ direction) for _, b, a in test if len(a) and len(b)]
    # One class-agnostic direction ranks action above background within a video...
    assert np.mean(aucs) > 0.85
    # ...while the class evidence of the background (the venue) does not find the actions.
    venue = {}
    for c, b, _ in train:
        venue.setdefault(c, []).append(b)
    venue_aucs = []
    for c, b, a in test:
        if c in venue and len(a) and len(b):
            w = np.concatenate(venue[c]).mean(0) - bg_mean
            venue_aucs.append(auc(a @ w, b @ w))
    assert np.mean(venue_aucs) < 0.75


def test_statistics_default_size(full):
    gt = load_gt(full)
    assert len(gt) == 410
    per_video = [len(v["annotations"]) for v in gt.values()]
    durations = [e - s for v in gt.values() for _, s, e in segments_of(v)]
    two = np.mean([len({a["label"] for a in v["annotations"]}) >= 2 for v in gt.values()])
    lengths = [np.load(os.path.join(full, "features", v["subset"], "rgb", n + ".npy"),
                       mmap_mode="r").shape[0] * SEG for n, v in gt.items()]
    assert 6 <= np.median(per_video) <= 12
    assert max(per_video) >= 40  # heavy tail
    assert 2 <= np.median(durations) <= 4.5
    assert 0.08 <= two <= 0.25
    assert 150 <= np.median(lengths) <= 300 and max(lengths) <= 28 * 60 + 1
    x = np.concatenate(features(full, "test", "video_test_0000001"))
    assert abs(x.mean()) < 0.3 and 0.6 < x.std() < 1.5
