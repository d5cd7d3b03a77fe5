"""The paper recipe's defaults, the optimiser, the per-step sampling and the loss over a
batch, each pinned to values written out here (not read from the code under test)."""
import math

import numpy as np
import pytest
import torch

from dataset import FeatureStore, TrainBatches, VideoSet
from options import parse_args
from train import build_model, build_optimizer, compute_loss


def test_defaults_are_the_papers_thumos14_recipe():
    cfg = parse_args(["--output_path", "unused"])
    want = dict(dataset="thumos14", data_path="dataset/THUMOS14", modal="all", num_segments=750, r=8,
                hidden_dim=2048, dropout=0.7, lr=1e-4, weight_decay=5e-4, batch_size=16, num_iters=1500,
                alpha=1e-4, class_th=0.25, nms_thresh=0.7, scale=24, gamma_oic=0.2, lambda_oic=0.25,
                train_subset="train", test_subset="test", variant="basnet", sampling="release")
    assert {k: getattr(cfg, k) for k in want} == want
    assert cfg.act_thresh == pytest.approx([0.025 * i for i in range(10)])   # the release: 0 .. 0.225
    assert cfg.tiou == pytest.approx([0.1 * i for i in range(1, 10)])


def test_optimizer_is_adam_with_the_releases_settings():
    cfg = parse_args(["--dataset", "custom", "--data_path", "x", "--output_path", "unused"])
    model = build_model(cfg, 8, 3)
    opt = build_optimizer(cfg, model)
    assert type(opt) is torch.optim.Adam
    group = opt.param_groups[0]
    assert group["lr"] == 1e-4 and group["betas"] == (0.9, 0.999) and group["weight_decay"] == 5e-4
    assert not group["amsgrad"] and not group.get("decoupled_weight_decay", False)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def one_video_batches(length, seed=0, sampling="release"):
    videos = VideoSet(["v"], np.ones((1, 1), np.float32),
                      FeatureStore.from_arrays([np.zeros((length, 2), np.float32)]), 2)
    return TrainBatches(videos, batch_size=1, num_segments=750, seed=seed, sampling=sampling)


@pytest.mark.parametrize("length", [300, 2000])
def test_a_videos_segments_change_from_step_to_step(length):
    batches = one_video_batches(length)
    draws = [batches.indices(step)[1][0] for step in range(6)]
    assert len({tuple(d) for d in draws}) == 6                     # every step draws anew
    again = one_video_batches(length).indices(3)[1][0]
    assert (again == draws[3]).all()                               # ... as a function of (seed, step)
    other_seed = one_video_batches(length, seed=1).indices(3)[1][0]
    assert (other_seed != draws[3]).any()


def test_loss_over_a_batch_is_the_mean_of_the_per_video_formula():
    # batch of 3, C = 2 (+ background), hand-written release formula per video, then averaged
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    p_base = torch.tensor([[0.5, 0.2, 0.3], [0.3, 0.3, 0.4], [0.1, 0.6, 0.3]])
    p_supp = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.2, 0.7, 0.1]])
    w = torch.tensor([[[0.5], [0.25]], [[1.0], [0.0]], [[0.75], [0.75]]])      # (B, T, 1)

    def bce(p, t):
        return -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in zip(p, t)) / len(p)

    base_t = [[0.5, 0, 0.5], [1 / 3, 1 / 3, 1 / 3], [0, 0.5, 0.5]]            # [y, 1] / (|y| + 1)
    supp_t = [[1, 0, 0], [0.5, 0.5, 0], [0, 1, 0]]                            # [y, 0] / |y|
    want_base = sum(bce(p.tolist(), t) for p, t in zip(p_base, base_t)) / 3
    want_supp = sum(bce(p.tolist(), t) for p, t in zip(p_supp, supp_t)) / 3
    want_norm = (0.75 + 1.0 + 1.5) / 3                                        # mean of sum_t W
    losses = compute_loss({"score_base": p_base, "score_supp": p_supp, "fore_weights": w}, labels, alpha=1e-4)
    assert losses["loss_base"].item() == pytest.approx(want_base, rel=1e-6)
    assert losses["loss_supp"].item() == pytest.approx(want_supp, rel=1e-6)
    assert losses["loss_norm"].item() == pytest.approx(want_norm, rel=1e-6)
    assert losses["loss_total"].item() == pytest.approx(want_base + want_supp + 1e-4 * want_norm, rel=1e-6)
