"""Converted public feature sets through the pipeline: seconds on each time grid, the same
predictions as the release layout, and the ActivityNet presets on converted folders."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

import main
import test as testing
from conftest import TEST_ARGS, TINY_ARGS
from dataset import Grid, load_dataset
from evaluation import infer
from options import parse_args
from postprocess import Localization, localize_video
from public_sets.actionformer import ActionFormerReader
from public_sets.convert import convert
from public_sets.wtalc import WTALCReader
from test_convert_features import CLASSES3, write_actionformer, write_wtalc_thumos


@pytest.fixture
def rng():
    return np.random.default_rng(0)


PEAK = Localization(class_th=0.25, act_thresh=(0.5,), scale=1, lambda_oic=0.25, gamma_oic=0.2, nms_thresh=0.7)


def peak_cas(T, first, last, C=2):
    cas = np.full((T, C), -1.0)
    cas[first:last + 1, 0] = 3.0
    return cas


@pytest.mark.parametrize("grid", [Grid(), Grid(4 / 30, 6 / 30), Grid(4 / 25, 6 / 25)])
def test_a_cas_peak_maps_to_the_seconds_its_vectors_cover(grid):
    # T = L: sample i is feature vector i, which covers [start + i step, start + (i + 1) step)
    cas = peak_cas(40, 10, 12)
    out, _ = localize_video(cas, np.array([0.9, 0.1]), ["A", "B"], num_real_segments=40, params=PEAK,
                            seconds_per_segment=grid.step, start=grid.start)
    assert len(out) == 1
    assert out[0]["segment"] == pytest.approx([grid.start + 10 * grid.step, grid.start + 13 * grid.step])
    # ActionFormer's 4-frame grid at 30 fps: windows 10..12 are centred at (4 i + 8) / 30 s
    if grid == Grid(4 / 30, 6 / 30):
        centres = [(4 * i + 8) / 30 for i in (10, 11, 12)]
        s, e = out[0]["segment"]
        assert s < centres[0] < centres[-1] < e
        assert centres[0] - s == pytest.approx(e - centres[-1]) == pytest.approx(2 / 30)


class PeakModel(torch.nn.Module):
    """A stand-in network whose CAS is the first feature column (class 0) on every sample."""
    localization_branch = "supp"

    def forward(self, x, branches=("supp",)):
        B, T, _ = x.shape
        cas = torch.full((B, T, len(CLASSES3) + 1), -1.0)
        cas[..., 0] = x[..., 0]
        score = torch.tensor([0.9, 0.05, 0.05, 0.0]).expand(B, -1)
        return {"cas_supp": cas, "score_supp": score}


def test_infer_uses_each_videos_grid(tmp_path, rng):
    fdir, ann, arrays = write_actionformer(str(tmp_path), rng)
    out = str(tmp_path / "out")
    convert(ActionFormerReader(fdir, ann, benchmark="thumos14"), out, progress=False)
    # a peak on vectors 40..59 of the 25 fps test video (184 vectors)
    path = os.path.join(out, "features", "test", "rgb", "video_test_0000004.npy")
    feats = np.load(path)
    feats[:, 0] = -5.0
    feats[40:60, 0] = 5.0
    np.save(path, feats)
    cfg = parse_args(["--dataset", "custom", "--data_path", out, "--num_segments", "184", "--scale", "1",
                      "--act_thresh", "0.5", "--output_path", str(tmp_path / "run")])
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    assert test_set.grids == [Grid(4 / 25, 6 / 25)]
    result = infer(PeakModel(), test_set, classes, cfg, torch.device("cpu"))["results"]["video_test_0000004"]
    assert len(result) == 1 and result[0]["label"] == "Archery"
    assert result[0]["segment"] == pytest.approx([6 / 25 + 40 * 4 / 25, 6 / 25 + 60 * 4 / 25])


def release_layout_of(source, converted, root):
    """The same features in the authors' layout, written from the source arrays: gt.json
    with the release's fields only, split files, (L, 1024) rgb and flow files."""
    gt = json.load(open(os.path.join(converted, "gt.json")))
    db = {v: {"subset": e["subset"], "annotations": e["annotations"]} for v, e in gt["database"].items()}
    os.makedirs(root)
    json.dump({"database": db}, open(os.path.join(root, "gt.json"), "w"))
    for split in ("train", "test"):
        shutil.copy(os.path.join(converted, f"split_{split}.txt"), root)
        for video in open(os.path.join(root, f"split_{split}.txt")).read().split():
            for stream, cols in (("rgb", slice(0, 1024)), ("flow", slice(1024, 2048))):
                folder = os.path.join(root, "features", split, stream)
                os.makedirs(folder, exist_ok=True)
                np.save(os.path.join(folder, video + ".npy"), source[video][:, cols])


def test_wtalc_conversion_predicts_like_the_release_layout(tmp_path, rng):
    features, ann, source = write_wtalc_thumos(str(tmp_path), rng)
    converted, release = str(tmp_path / "converted"), str(tmp_path / "release")
    convert(WTALCReader(features, ann), converted, progress=False)
    release_layout_of(source, converted, release)
    run = str(tmp_path / "run")
    main.main(TINY_ARGS + ["--data_path", converted, "--num_iters", "4", "--eval_every", "4",
                           "--output_path", run, "--seed", "0"])
    ckpt = os.path.join(run, "last.pt")
    predictions = []
    for data, name in ((converted, "a"), (release, "b")):
        testing.main(TEST_ARGS + ["--data_path", data, "--model_file", ckpt, "--output_path", str(tmp_path / name)])
        predictions.append(json.load(open(tmp_path / name / "predictions.json")))
    assert predictions[0]["results"] and predictions[0] == predictions[1]


def test_activitynet_presets_run_on_converted_sets(tmp_path, rng):
    """anet12 on a W-TALC ActivityNet 1.2 layout, anet13 on ActionFormer's ActivityNet 1.3
    layout: the 'validation' subset, tIoU 0.5:0.05:0.95, the paper's T = 750 by default."""
    assert parse_args(["--dataset", "anet12", "--output_path", "x"]).num_segments == 750
    assert parse_args(["--dataset", "anet13", "--output_path", "x"]).num_segments == 750
    fdir, ann, _ = write_actionformer(str(tmp_path / "af"), rng, anet=True)
    out = str(tmp_path / "anet13")
    convert(ActionFormerReader(fdir, ann, benchmark="anet13"), out, progress=False)
    res = main.main(["--dataset", "anet13", "--data_path", out, "--num_segments", "16", "--hidden_dim", "16",
                     "--num_iters", "2", "--eval_every", "2", "--output_path", str(tmp_path / "run13"),
                     "--device", "cpu", "--no_progress"])
    assert res["subset"] == "validation" and res["tiou"] == pytest.approx([0.5 + 0.05 * i for i in range(10)])
    assert res["num_videos"] == 1
