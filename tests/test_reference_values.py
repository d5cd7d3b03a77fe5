"""The code held to values known independently of it (issue 17): a label matrix written
by hand, test.py reproducing a run trained with non-default options, Table 5 on a time
grid that does not start at 0 computed by hand, a two-instance tIoU boundary case, the
filter's gradient against a functional re-implementation and finite differences, and a
run's saved options beating its dataset preset on resume."""
import json
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
import test as testing
from conftest import write_dataset
from dataset import FeatureStore, Grid, VideoSet, load_dataset
from eval import evaluate_detection, load_ground_truth
from evaluation import background_detection
from model import BaSNet
from options import inference_options, parse_args
from train import compute_loss


def write_npy(root, split, video, length, dim=4):
    for stream in ("rgb", "flow"):
        folder = os.path.join(root, "features", split, stream)
        os.makedirs(folder, exist_ok=True)
        np.save(os.path.join(folder, video + ".npy"), np.zeros((length, dim), np.float32))


# ----------------------------------------------------------------------------- 1. video-level labels
def test_video_level_labels_win_over_the_segment_labels(tmp_path):
    """gt.json with W-TALC's `labels_all` (video labels that differ from the segments')
    and A2CL-PT's label-only videos: the training label matrix, written by hand."""
    root = str(tmp_path / "data")
    seg = lambda label, s, e: {"segment": [s, e], "label": label}
    database = {
        # segments of A and B, video label B only (W-TALC labels_all)
        "wtalc": {"subset": "train", "annotations": [seg("A", 1, 2), seg("B", 3, 4)], "labels": ["B"]},
        # no segment at all, only video labels (A2CL-PT)
        "only_labels": {"subset": "train", "annotations": [], "labels": ["C"]},
        "no_annotations_key": {"subset": "train", "labels": ["A", "C"]},
        # segments of B, video labels A and C
        "disagree": {"subset": "train", "annotations": [seg("B", 0, 1)], "labels": ["C", "A"]},
        # no "labels": the labels of the segments
        "segments_only": {"subset": "train", "annotations": [seg("C", 0, 1), seg("A", 2, 3), seg("C", 4, 5)]},
        "test_wtalc": {"subset": "test", "annotations": [seg("A", 0, 1), seg("C", 2, 3)], "labels": ["B", "C"]},
        "test_only_labels": {"subset": "test", "annotations": [], "labels": ["A"]},
        "test_segments": {"subset": "test", "annotations": [seg("B", 0, 1)]},
    }
    os.makedirs(root)
    with open(os.path.join(root, "gt.json"), "w") as f:
        json.dump({"database": database}, f)
    train = ["wtalc", "only_labels", "no_annotations_key", "disagree", "segments_only"]
    test = ["test_wtalc", "test_only_labels", "test_segments"]
    for split, names in (("train", train), ("test", test)):
        with open(os.path.join(root, f"split_{split}.txt"), "w") as f:
            f.write("\n".join(names) + "\n")
        for video in names:
            write_npy(root, split, video, 5)
    cfg = parse_args(["--dataset", "custom", "--data_path", root, "--output_path", str(tmp_path / "run")])
    # the test split alone first: a label-only video needs no annotation there
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    assert classes == ["A", "B", "C"]
    #                                    A  B  C
    assert test_set.labels.tolist() == [[0, 1, 1],    # test_wtalc
                                        [1, 0, 0],    # test_only_labels
                                        [0, 1, 0]]    # test_segments
    # training: a label-only video is a valid weakly-labelled video
    classes, train_set, test_set = load_dataset(cfg)
    assert train_set.names == train
    #                         A  B  C
    assert train_set.labels.tolist() == [[0, 1, 0],    # wtalc
                                         [0, 0, 1],    # only_labels
                                         [1, 0, 1],    # no_annotations_key
                                         [1, 0, 1],    # disagree
                                         [1, 0, 1]]    # segments_only


# ----------------------------------------------------------------------------- 4. test.py restores the run's options
def test_test_py_reproduces_a_run_trained_with_non_default_options(tiny_data, tmp_path):
    """Trained with --r 4 and other non-default data and inference options, test.py given
    only the checkpoint reproduces training's last evaluation and predictions exactly."""
    run = str(tmp_path / "run")
    trained = main.main([
        "--dataset", "custom", "--data_path", tiny_data, "--output_path", run, "--seed", "0",
        "--device", "cpu", "--no_progress", "--num_iters", "12", "--eval_every", "12",
        "--batch_size", "6", "--hidden_dim", "16", "--lr", "2e-3", "--modal", "flow",
        "--num_segments", "24", "--r", "4", "--scale", "3", "--class_th", "0.2", "--act_thresh", "0.1", "0.4",
        "--nms_thresh", "0.6", "--gamma_oic", "0.5", "--lambda_oic", "0.4", "--tiou", "0.2", "0.35", "0.5"])
    assert trained["tiou"] == [0.2, 0.35, 0.5]
    during = json.load(open(os.path.join(run, "predictions.json")))["results"]
    out = str(tmp_path / "test")
    again = testing.main(["--model_file", os.path.join(run, "last.pt"), "--output_path", out,
                          "--device", "cpu", "--no_progress"])
    assert again["tiou"] == [0.2, 0.35, 0.5]
    assert again["mAP"] == trained["mAP"]
    assert again["accuracy"] == trained["accuracy"]
    after = json.load(open(os.path.join(out, "predictions.json")))["results"]
    assert sum(map(len, during.values())) > 0
    assert set(after) == set(during)
    for video in during:
        assert [(i["label"], i["segment"]) for i in after[video]] == [(i["label"], i["segment"]) for i in during[video]]
        assert [i["score"] for i in after[video]] == pytest.approx([i["score"] for i in during[video]], abs=1e-9)


# ----------------------------------------------------------------------------- 5. Table 5 on a shifted grid
def test_background_detection_on_a_grid_that_starts_at_0_6_s():
    """One video of L = 10 vectors of 1 s starting at 0.6 s (centres 1.1, 2.1, ..., 10.1 s),
    T = 5 samples (segment j takes sample j // 2), one instance [2.0, 4.0] s."""
    # centres in [2.0, 4.0]: 2.1 and 3.1 -> segments 1, 2 are action, the other 8 background
    # (on a grid starting at 0 it would be segments 2, 3: centres 2.5, 3.5)
    C = 2
    fore_weights = np.array([[0.2], [0.9], [0.3], [0.1], [0.8]], np.float32)  # W < 0.5 on samples 0, 2, 3
    bg, act = [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]
    cas_supp = np.array([bg, act, bg, act, act], np.float32)    # background class on samples 0, 2
    cas_base = np.array([bg] * 5, np.float32)                    # background everywhere
    inferred = {"cas_base": [cas_base], "cas_supp": [cas_supp], "fore_weights": [fore_weights]}
    videos = VideoSet(["v"], np.array([[1, 0]], np.float32), FeatureStore.from_arrays([np.zeros((10, 3), np.float32)]),
                      3, [Grid(1.0, 0.6)])
    gt = load_ground_truth({"database": {"v": {"subset": "test", "annotations": [{"segment": [2.0, 4.0], "label": "A"}]}}})
    table = background_detection(inferred, videos, gt, C)
    # filter: samples 0, 2, 3 -> segments {0, 1, 4, 5, 6, 7}; true background {0, 3, ..., 9}
    #   TP {0, 4, 5, 6, 7} = 5, predicted 6, actual 8: P 5/6, R 5/8, F = 2PR / (P + R) = 5/7
    assert table["filter (W < 0.5)"] == pytest.approx({"precision": 5 / 6, "recall": 5 / 8, "f_measure": 5 / 7})
    # suppression branch: samples 0, 2 -> segments {0, 1, 4, 5}: TP {0, 4, 5}: P 3/4, R 3/8, F 1/2
    assert table["suppression branch"] == pytest.approx({"precision": 3 / 4, "recall": 3 / 8, "f_measure": 1 / 2})
    # base branch: all 10 segments: TP 8: P 4/5, R 1, F 8/9
    assert table["base branch"] == pytest.approx({"precision": 4 / 5, "recall": 1.0, "f_measure": 8 / 9})


# ----------------------------------------------------------------------------- (a) tIoU == threshold, two instances
def test_tiou_equal_to_the_threshold_with_two_ground_truth_instances():
    """g1 = [0, 10], g2 = [3, 13] (class A, one video); predictions in score order:
    p0 [40, 50]: no overlap: FP at every threshold;
    p1 [0, 7]:   tIoU 7/10 = 0.7 with g1, 4/13 with g2 -> g1;
    p2 [3, 10]:  tIoU 7/10 = 0.7 with g1 (locked) AND with g2 -> g2.
    At 0.3 and 0.7: FP, TP, TP -> precision 0, 1/2, 2/3, recall 0, 1/2, 1 -> AP 2/3.
    At 0.75: all FP -> AP 0."""
    assert 7.0 / 10.0 == 0.7
    gt = {"database": {"v": {"subset": "test", "annotations": [
        {"segment": [0, 10], "label": "A"}, {"segment": [3, 13], "label": "A"}]}}}
    preds = {"results": {"v": [{"label": "A", "score": 0.95, "segment": [40, 50]},
                               {"label": "A", "score": 0.9, "segment": [0, 7]},
                               {"label": "A", "score": 0.8, "segment": [3, 10]}]}}
    res = evaluate_detection(gt, preds, tiou_thresholds=(0.3, 0.7, 0.75))
    assert res["ap_per_class"]["A"] == pytest.approx([2 / 3, 2 / 3, 0.0], abs=1e-12)


# ----------------------------------------------------------------------------- (b) the filter's gradient
def functional_basnet(params, x, r):
    """BaS-Net written out with torch.nn.functional from the release's layer list:
    returns (cas_base, cas_supp, W, p_base, p_supp), CAS (B, T, C+1), W (B, T)."""
    leaky = lambda h: F.leaky_relu(h, 0.01)
    xt = x.transpose(1, 2)                                                  # (B, F, T)

    def cas(inp):
        h = leaky(F.conv1d(inp, params["cas_module.conv_1.0.weight"], params["cas_module.conv_1.0.bias"], padding=1))
        h = leaky(F.conv1d(h, params["cas_module.conv_2.0.weight"], params["cas_module.conv_2.0.bias"], padding=1))
        return F.conv1d(h, params["cas_module.conv_3.0.weight"]).transpose(1, 2)

    def probs(a):
        k = a.shape[1] // r
        return torch.softmax(a.sort(dim=1, descending=True).values[:, :k].mean(dim=1), dim=1)

    h = leaky(F.conv1d(xt, params["filter_module.conv_1.0.weight"], params["filter_module.conv_1.0.bias"]))
    w = torch.sigmoid(F.conv1d(h, params["filter_module.conv_2.0.weight"], params["filter_module.conv_2.0.bias"]))
    a_base, a_supp = cas(xt), cas(xt * w)
    return a_base, a_supp, w[:, 0], probs(a_base), probs(a_supp)


def release_losses(p_base, p_supp, w, labels, alpha):
    """The release's loss written out: BCE on [y, 1] / (|y| + 1) and on [y, 0] / |y|,
    plus alpha times the mean over videos of sum_t W."""
    def bce(p, t):
        return -(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    ones = torch.ones_like(labels[:, :1])
    base = bce(p_base, torch.cat([labels, ones], 1) / (labels.sum(1, keepdim=True) + 1))
    supp = bce(p_supp, torch.cat([labels, 0 * ones], 1) / labels.sum(1, keepdim=True))
    return {"loss_supp": supp, "loss_total": base + supp + alpha * w.sum(1).mean()}


def small_model():
    torch.manual_seed(0)
    model = BaSNet(6, 3, 16, r=4, hidden_dim=8, dropout=0.0).double()
    x = torch.randn(2, 16, 6, dtype=torch.float64)
    labels = torch.tensor([[1.0, 0, 0], [0, 1.0, 1.0]], dtype=torch.float64)
    return model, x, labels


def test_forward_matches_a_functional_re_implementation():
    model, x, _ = small_model()
    params = dict(model.named_parameters())
    out = model(x)
    a_base, a_supp, w, p_base, p_supp = functional_basnet(params, x, r=4)
    for got, want in ((out["cas_base"], a_base), (out["cas_supp"], a_supp), (out["fore_weights"][..., 0], w),
                      (out["score_base"], p_base), (out["score_supp"], p_supp)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("loss_name", ["loss_supp", "loss_total"])
def test_filter_module_gets_the_gradient_of_the_loss(loss_name):
    """The filter's gradient equals autograd through a functional re-implementation and
    central finite differences; the suppression loss alone reaches it (X * W is not
    detached)."""
    model, x, labels = small_model()
    alpha = 1e-4
    compute_loss(model(x), labels, alpha)[loss_name].backward()

    filter_names = [n for n, _ in model.named_parameters() if n.startswith("filter_module")]
    params = {n: p.detach().clone().requires_grad_() for n, p in model.named_parameters()}

    def loss_of(params):
        _, _, w, p_base, p_supp = functional_basnet(params, x, r=4)
        return release_losses(p_base, p_supp, w, labels, alpha)[loss_name]

    want = torch.autograd.grad(loss_of(params), [params[n] for n in filter_names])
    got = {n: p.grad if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
    for name, g in zip(filter_names, want):
        assert g.abs().max() > 1e-6, name
        torch.testing.assert_close(got[name], g, rtol=1e-9, atol=1e-12)

    # finite differences on the filter's output bias and a few first-layer weights
    eps = 1e-6
    with torch.no_grad():
        for name, index in (("filter_module.conv_2.0.bias", (0,)), ("filter_module.conv_2.0.weight", (0, 3, 0)),
                            ("filter_module.conv_1.0.weight", (5, 2, 0)), ("filter_module.conv_1.0.bias", (7,))):
            shifted = {n: p.detach().clone() for n, p in params.items()}
            shifted[name][index] += eps
            up = loss_of(shifted).item()
            shifted[name][index] -= 2 * eps
            down = loss_of(shifted).item()
            numeric = (up - down) / (2 * eps)
            assert got[name][index].item() == pytest.approx(numeric, rel=1e-5, abs=1e-10), name


# ----------------------------------------------------------------------------- (c) saved options beat the preset
def test_a_resumed_run_keeps_its_saved_options_over_the_preset(tiny_data, tmp_path):
    """Trained with --dataset synthetic and values other than the preset's (T 320, hidden
    256, lr 5e-4, eval every 100): resuming, and test.py, keep the run's values."""
    run = str(tmp_path / "run")
    main.main(["--dataset", "synthetic", "--data_path", tiny_data, "--output_path", run, "--seed", "0",
               "--device", "cpu", "--no_progress", "--num_iters", "2", "--eval_every", "2", "--batch_size", "4",
               "--num_segments", "24", "--hidden_dim", "16", "--lr", "2e-3"])
    mine = dict(num_segments=24, hidden_dim=16, lr=2e-3, eval_every=2, batch_size=4)
    cfg, _ = main.configure(["--resume", run, "--num_iters", "3"])
    assert cfg.dataset == "synthetic" and cfg.num_iters == 3
    assert {k: getattr(cfg, k) for k in mine} == mine
    main.main(["--resume", run, "--num_iters", "3"])   # the model of the saved width loads
    assert {k: json.load(open(os.path.join(run, "config.json")))[k] for k in mine} == mine
    saved = torch.load(os.path.join(run, "last.pt"), weights_only=True)["config"]
    assert inference_options({"model_file": "x", "output_path": "y"}, saved).num_segments == 24
    assert inference_options({"model_file": "x", "output_path": "y", "dataset": "synthetic"}, saved).num_segments == 24
