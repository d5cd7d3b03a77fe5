"""Modules whose tests compared the code with itself or checked shapes and ranges only,
held to values worked out by hand here (issue 17's sweep): the loss of each ablation
variant, the localization with up-sampling and a shifted grid, the Evaluator's scores,
the model a bare state_dict describes, feature gathering and batch composition, the
synthetic features under their annotations, figure lanes and curves, seeding and
atomic writes."""
import argparse
import json
import math
import os
import random

import numpy as np
import pytest
import torch

import synthetic
from checkpoint import checkpoint_classes, model_for_checkpoint
from dataset import FeatureStore, Grid, TrainBatches, VideoSet, load_dataset
from evaluation import Evaluator
from figures import curves_of, stack_segments
from model import BaSNet
from options import parse_args
from postprocess import Localization, localize_video
from train import compute_loss
from utils import atomic_write, seed_worker, set_seed
from visualize import choose_videos


def bce(p, t):
    return -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / len(p)


# ----------------------------------------------------------------------------- train.py: the loss per variant
def test_loss_of_each_ablation_variant_by_hand():
    labels = torch.tensor([[0.0, 1.0, 1.0]])
    p3 = torch.tensor([[0.2, 0.3, 0.5]])               # no background class: plain MIL
    p4 = torch.tensor([[0.1, 0.2, 0.3, 0.4]])          # with the background class
    w = torch.tensor([[[0.5], [0.25], [1.0]]])
    # baseline: [y] / |y| = [0, 1/2, 1/2]; no suppression branch, no L_norm
    got = compute_loss({"score_base": p3}, labels, alpha=0.5)
    assert got["loss_base"].item() == pytest.approx(bce([0.2, 0.3, 0.5], [0, 0.5, 0.5]), rel=1e-6)
    assert got["loss_supp"].item() == 0 and got["loss_norm"].item() == 0
    assert got["loss_total"].item() == pytest.approx(got["loss_base"].item(), rel=1e-7)
    # base_bg: [y, 1] / (|y| + 1) = [0, 1/3, 1/3, 1/3]
    got = compute_loss({"score_base": p4}, labels, alpha=0.5)
    assert got["loss_base"].item() == pytest.approx(bce([0.1, 0.2, 0.3, 0.4], [0, 1 / 3, 1 / 3, 1 / 3]), rel=1e-6)
    # supp_only: [y, 0] / |y| = [0, 1/2, 1/2, 0], L_norm = 1.75, no base loss
    got = compute_loss({"score_supp": p4, "fore_weights": w}, labels, alpha=0.5)
    want_supp = bce([0.1, 0.2, 0.3, 0.4], [0, 0.5, 0.5, 0])
    assert got["loss_base"].item() == 0
    assert got["loss_supp"].item() == pytest.approx(want_supp, rel=1e-6)
    assert got["loss_total"].item() == pytest.approx(want_supp + 0.5 * 1.75, rel=1e-6)


# ----------------------------------------------------------------------------- postprocess.py
def test_localization_with_up_sampling_and_a_shifted_grid_by_hand():
    """T = 4 samples of L = 10 vectors of 0.5 s starting at 1.0 s, scale 2: one up-sampled
    point is 0.5 * 10 / (2 * 4) = 0.625 s."""
    cas = np.array([[-1.0, -1.0], [3.0, -1.0], [3.0, -1.0], [-1.0, -1.0]])
    params = Localization(class_th=0.25, act_thresh=(0.2, 0.5), scale=2, lambda_oic=0.25, gamma_oic=0.2,
                          nms_thresh=0.7)
    out, predicted = localize_video(cas, np.array([0.5, 0.1]), ["A", "B"], num_real_segments=10, params=params,
                                    seconds_per_segment=0.5, start=1.0)
    assert predicted.tolist() == [0]
    # class 0 normalised (max 3, min clipped to 0): -1/3, 1, 1, -1/3; up-sampled x2 (the last
    # point extrapolated): -1/3, 1/3, 1, 1, 1, 1/3, -1/3, -1
    # theta 0.5: run [2, 4], inner 1, outer band point 1 (zeroed) -> 1 + 0.2 * 0.5 = 1.1,
    #   [1 + 2 * 0.625, 1 + 5 * 0.625] = [2.25, 4.125]
    # theta 0.2: run [1, 5], inner (1/3 + 3 + 1/3) / 5 = 11/15, outer points 0 and 6 (zeroed)
    #   -> 11/15 + 0.1, [1.625, 4.75]; tIoU with the first 1.875 / 3.125 = 0.6 < 0.7: kept
    assert [i["label"] for i in out] == ["A", "A"]
    assert [i["segment"] for i in out] == [pytest.approx([2.25, 4.125]), pytest.approx([1.625, 4.75])]
    assert [i["score"] for i in out] == pytest.approx([1.1, 11 / 15 + 0.1])


# ----------------------------------------------------------------------------- evaluation.py: the Evaluator
def test_evaluator_scores_by_hand(tmp_path):
    """Classes A, B, C; the test subset has ground truth of A and B only."""
    root = str(tmp_path)
    seg = lambda label, s, e: {"segment": [s, e], "label": label}
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": {"v1": {"subset": "test", "annotations": [seg("A", 0, 10)]},
                                "v2": {"subset": "test", "annotations": [seg("B", 5, 10)]},
                                "t1": {"subset": "train", "annotations": [seg("C", 0, 1)]}}}, f)
    cfg = argparse.Namespace(data_path=root, test_subset="test", tiou=[0.5], class_th=0.25)
    videos = VideoSet(["v1", "v2"], np.array([[1, 0, 0], [0, 1, 0]], np.float32),
                      FeatureStore.from_arrays([np.zeros((3, 2), np.float32)] * 2), 2)
    det = lambda label, score, s, e: {"label": label, "score": score, "segment": [s, e]}
    inferred = {"results": {"v1": [det("A", 0.9, 0, 10), det("C", 0.8, 0, 5)],
                            "v2": [det("B", 0.7, 0, 5), det("B", 0.6, 5, 10)]},
                "scores": np.array([[0.9, 0.1, 0.1], [0.95, 0.7, 0.0]]), "predicted": []}
    res = Evaluator(cfg, videos, ["A", "B", "C"])(None, torch.device("cpu"), inferred=inferred)
    # AP(A) = 1; AP(B): FP then TP -> precision 0, 1/2 at recall 0, 1 -> 1/2; C has no
    # ground truth in the subset: not a class of the mAP, its detection not scored
    assert res["classes"] == ["A", "B"]
    assert res["mAP"] == pytest.approx([0.75])
    assert res["num_predictions"] == 3 and res["num_predictions_unscored"] == 1
    # accuracy at 0.25: v1 predicts {A} (right), v2 {A, B} (wrong) -> 1/2
    assert res["accuracy"] == pytest.approx(0.5)
    # classification AP: A ranks v2 (negative) above v1 -> 1/2; B -> 1; C has no positive
    assert res["classification_mAP"] == pytest.approx(0.75)


# ----------------------------------------------------------------------------- checkpoint.py
@pytest.mark.parametrize("variant,expected", [("basnet", "basnet"), ("base_bg", "base_bg"),
                                              ("baseline", "baseline")])
def test_a_bare_state_dict_gives_the_model_its_shapes_describe(variant, expected):
    torch.manual_seed(0)
    source = BaSNet(5, 3, 40, r=5, hidden_dim=6, variant=variant).eval()
    cfg = argparse.Namespace(num_segments=40, r=5, modal="all")
    model = model_for_checkpoint({"model": source.state_dict()}, cfg, ["a", "b", "c"], 5, "x.pkl").eval()
    assert model.variant == expected
    assert model.cas_module.conv_1[0].out_channels == 6         # hidden width read off the weights
    assert model.k == 8                                          # 40 // 5: T and r from the config
    x = torch.randn(2, 40, 5)
    for key, value in source(x).items():
        torch.testing.assert_close(model(x)[key], value)


def test_a_bare_thumos14_state_dict_without_class_names_gets_the_thumos14_classes(tmp_path):
    state = {"model": BaSNet(4, 20, 16, hidden_dim=4).state_dict()}
    classes = checkpoint_classes(state, None, str(tmp_path / "nothing"))
    assert len(classes) == 20 and classes[0] == "BaseballPitch" and classes[4] == "CliffDiving"
    assert classes[7] == "Diving" and classes[-1] == "VolleyballSpiking"


# ----------------------------------------------------------------------------- dataset.py
def coded(video, length, width, sign=1.0):
    """Features whose every value says where it is: video * 1000 + row * 10 + column."""
    return sign * (video * 1000 + np.arange(length)[:, None] * 10 + np.arange(width)[None, :]).astype(np.float32)


@pytest.mark.parametrize("max_memory_gb", [16.0, 0.0])   # in memory, memory-mapped
def test_gathered_features_are_the_rows_of_the_files(tmp_path, max_memory_gb):
    root = str(tmp_path)
    names, lengths = ["v0", "v1", "v2"], [4, 6, 5]
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": {v: {"subset": "train", "annotations": [{"segment": [0, 1], "label": "A"}]}
                                for v in names}}, f)
    for split in ("train", "test"):
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(names))
        for i, (v, L) in enumerate(zip(names, lengths)):
            for stream, sign in (("rgb", 1.0), ("flow", -1.0)):
                os.makedirs(os.path.join(root, "features", split, stream), exist_ok=True)
                np.save(os.path.join(root, "features", split, stream, v + ".npy"), coded(i, L, 3, sign))
    cfg = parse_args(["--dataset", "custom", "--data_path", root, "--output_path", str(tmp_path / "run"),
                      "--max_memory_gb", str(max_memory_gb)])
    _, train_set, _ = load_dataset(cfg)
    assert train_set.store.in_memory == (max_memory_gb > 0)
    assert train_set.lengths.tolist() == lengths
    got = train_set.store.gather(np.array([2, 0]), np.array([[4, 0, 1], [3, 3, 2]])).numpy()
    # rgb columns then flow columns of video 2 rows 4, 0, 1 and video 0 rows 3, 3, 2
    want = [[[2040, 2041, 2042, -2040, -2041, -2042], [2000, 2001, 2002, -2000, -2001, -2002],
             [2010, 2011, 2012, -2010, -2011, -2012]],
            [[30, 31, 32, -30, -31, -32], [30, 31, 32, -30, -31, -32], [20, 21, 22, -20, -21, -22]]]
    assert got.tolist() == want


def test_training_batches_visit_every_video_once_per_epoch_and_split_over_processes():
    N, B = 5, 2
    labels = np.eye(N, dtype=np.float32)
    videos = VideoSet([f"v{i}" for i in range(N)], labels,
                      FeatureStore.from_arrays([coded(i, 7 + i, 1) for i in range(N)]), 1)
    batches = TrainBatches(videos, B, 4, seed=3)
    stream = np.concatenate([batches.batch_videos(step) for step in range(10)])   # 20 positions = 4 epochs
    for epoch in range(4):
        assert sorted(stream[epoch * N:(epoch + 1) * N].tolist()) == list(range(N))
    assert len({tuple(stream[e * N:(e + 1) * N]) for e in range(4)}) > 1          # a new order each epoch
    # a step's features are rows of the right videos, its labels theirs
    feats, step_labels = batches[3]
    vids = batches.batch_videos(3)
    assert (feats[:, :, 0].numpy() // 1000 == vids[:, None]).all()
    assert step_labels.numpy().tolist() == labels[vids].tolist()
    # two processes take the two halves of the same global batch
    halves = [TrainBatches(videos, B, 4, seed=3, rank=r, world_size=2).indices(3) for r in (0, 1)]
    assert [h[0].tolist() for h in halves] == [[vids[0]], [vids[1]]]
    whole = batches.indices(3)[1]
    assert np.array_equal(np.concatenate([h[1] for h in halves]), whole)


# ----------------------------------------------------------------------------- synthetic.py
def test_synthetic_annotations_and_the_action_under_them(monkeypatch):
    """One instance from 1.0 s to 2.0 s on 0.64 s segments covers 0.28 / 0.64 of segment 1,
    all of segment 2 and 0.08 / 0.64 of segment 3; the features carry the action pattern in
    those proportions, smoothed by the 3-tap [1/4, 1/2, 1/4] average (edges repeated)."""
    assert synthetic._annotations([("CliffDiving", 12, 30), ("BaseballPitch", 50, 61)]) == [
        {"segment": ["5.0", "6.1"], "label": "BaseballPitch"},
        {"segment": ["1.2", "3.0"], "label": "CliffDiving"},
        {"segment": ["1.2", "3.0"], "label": "Diving"}]
    # only the action: no venue, generic pattern, noise, jitter, offset or projection
    monkeypatch.setattr(synthetic, "INSTANCE_JITTER", 0.0)
    monkeypatch.setattr(synthetic, "STREAM_WEIGHTS", {"rgb": (0.6, 0.0, 0.0, 0.0), "flow": (1.0, 0.0, 0.0, 0.0)})
    dim, C = 3, len(synthetic.SYNTHETIC_CLASSES)
    action = np.zeros((C, dim))
    action[:, 0] = 1.0
    patterns = {"index": {c: i for i, c in enumerate(synthetic.SYNTHETIC_CLASSES)}, "venue": np.zeros((C, dim)),
                "action_start": action, "action_end": action, "generic": np.zeros((synthetic.NUM_GENERIC, dim)),
                "offsets": {"rgb": 0.0, "flow": 0.0}, "projections": {"rgb": np.eye(dim), "flow": np.eye(dim)}}
    feats = synthetic._render_features(np.random.default_rng(0), patterns, labels=("HighJump",), num_segments=6,
                                       instances=[("HighJump", 10, 20)], pure=[])
    cover = [0.0, 0.4375, 1.0, 0.125, 0.0, 0.0]
    smoothed = [0.109375, 0.46875, 0.640625, 0.3125, 0.03125, 0.0]   # by hand from `cover`
    assert np.allclose([0.25 * a + 0.5 * b + 0.25 * c for a, b, c in zip([0.0] + cover[:-1], cover,
                                                                           cover[1:] + [0.0])], smoothed)
    np.testing.assert_allclose(feats["rgb"][:, 0], 0.6 * np.array(smoothed), atol=1e-6)
    np.testing.assert_allclose(feats["flow"][:, 0], smoothed, atol=1e-6)
    assert np.abs(feats["rgb"][:, 1:]).max() == 0 and np.abs(feats["flow"][:, 1:]).max() == 0


# ----------------------------------------------------------------------------- figures.py
def test_detection_lanes_by_hand():
    d = lambda s, e: {"label": "A", "score": 0.5, "segment": [s, e]}
    # by start: [0, 5] lane 1; [2, 6] overlaps it: lane 2; [5.5, 7]: lane 1 is free again
    # (ends 5 <= 5.5); [6, 8]: lane 2 is free (ends 6 <= 6)
    placed = stack_segments([d(6, 8), d(0, 5), d(5.5, 7), d(2, 6)])
    assert [(p["segment"], y) for p, y in placed] == [([0, 5], 1.04), ([2, 6], 1.08), ([5.5, 7], 1.04),
                                                     ([6, 8], 1.08)]


def test_figure_curves_are_the_normalised_cas_without_background():
    cas = np.array([[2.0, -1.0, 9.0], [4.0, -3.0, -9.0], [0.0, 1.0, 0.0]])   # 2 classes + background
    inferred = {"cas_base": [cas], "cas_supp": [cas * 2], "fore_weights": [np.array([[0.1], [0.5], [0.9]])]}
    curves = curves_of(inferred, 0, 2)
    # class 0: max 4, min 0 -> x / 4; class 1: max 1, min clipped to 0 -> unchanged
    np.testing.assert_allclose(curves["base"], [[0.5, -1.0], [1.0, -3.0], [0.0, 1.0]])
    np.testing.assert_allclose(curves["supp"], [[0.5, -1.0], [1.0, -3.0], [0.0, 1.0]])
    np.testing.assert_allclose(curves["weights"], [0.1, 0.5, 0.9])


def test_visualize_draws_the_videos_it_names():
    grids = [Grid(1.0, 0.1 * i) for i in range(4)]
    test_set = VideoSet([f"v{i}" for i in range(4)], np.eye(4, dtype=np.float32),
                        FeatureStore.from_arrays([coded(i, 5 + i, 2) for i in range(4)]), 2, grids)
    chosen = choose_videos(test_set, ["v3", "v1"])
    assert chosen.names == ["v3", "v1"] and chosen.lengths.tolist() == [8, 6]
    assert chosen.labels.tolist() == [[0, 0, 0, 1], [0, 1, 0, 0]] and chosen.grids == [grids[3], grids[1]]
    rows = chosen.store.gather(np.array([1, 0]), np.array([[5, 0], [7, 2]])).numpy()[..., 0]
    assert rows.tolist() == [[1050, 1000], [3070, 3020]]            # v1 rows 5, 0; v3 rows 7, 2
    assert choose_videos(test_set, None).names == ["v0", "v1", "v2"]


# ----------------------------------------------------------------------------- utils.py
def test_set_seed_seeds_every_generator_with_the_seed():
    set_seed(2 ** 32 + 7)
    assert random.random() == random.Random(2 ** 32 + 7).random()
    assert np.random.random() == np.random.RandomState(7).random_sample()      # numpy takes seed mod 2^32
    assert torch.rand(3).tolist() == torch.rand(3, generator=torch.Generator().manual_seed(2 ** 32 + 7)).tolist()


def test_seed_worker_follows_torchs_seed():
    torch.manual_seed(2 ** 33 + 11)                   # a worker's torch seed, as DataLoader sets it
    seed_worker(0)
    assert np.random.random() == np.random.RandomState(11).random_sample()
    assert random.random() == random.Random(11).random()


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "out.txt")
    atomic_write(path, lambda f: f.write(b"old"))

    def failing(f):
        f.write(b"partial")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, failing)
    assert open(path, "rb").read() == b"old" and os.listdir(tmp_path) == ["out.txt"]
