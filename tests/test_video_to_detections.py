"""From a video file to detections (test.py --video) and training on your own videos whose
test subset has no temporal annotation yet."""
import functools
import json
import os

import numpy as np
import pytest
import torch

import main
import test as testing
import video.extractor as vextractor
from conftest import TEST_ARGS, TINY_ARGS, write_dataset
from model import BaSNet
from test_extract_features import moving_square, write_video


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random I3D weight files in the pytorch-i3d layout and a bare BaS-Net state_dict for
    2 x 1024 features and the 20 THUMOS14 classes (as the authors' release)."""
    from test_i3d import random_i3d
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for stream, channels, seed in (("rgb", 3, 0), ("flow", 2, 1)):
        paths[stream] = str(folder / f"{stream}_imagenet.pt")
        torch.save(random_i3d(channels, seed=seed).state_dict(), paths[stream])
    torch.manual_seed(0)
    paths["model"] = str(folder / "BaS-Net_model.pkl")
    torch.save(BaSNet(2048, 20, 8, hidden_dim=16).state_dict(), paths["model"])
    return paths


def test_video_file_to_detections_and_figure(tmp_path, weights, monkeypatch, capsys):
    # small crops and flow in this process keep the test fast; the recipe is the same
    monkeypatch.setattr(vextractor, "extract_video", functools.partial(vextractor.extract_video, resize=40, crop=32, workers=0))
    video = write_video(tmp_path / "my_clip.avi", moving_square(70), fps=30)          # 59 frames at 25 fps
    out = str(tmp_path / "out")
    args = ["--model_file", weights["model"], "--num_segments", "8", "--class_th", "0.01", "--device", "cpu",
            "--no_progress"]
    instances = testing.main(args + ["--output_path", out, "--video", video, "--rgb_weights", weights["rgb"],
                                     "--flow_weights", weights["flow"]])
    printed = capsys.readouterr().out
    assert "my_clip: 3 segments (1.9 s)" in printed                                   # 59 // 16 = 3
    predictions = json.load(open(os.path.join(out, "predictions.json")))
    assert list(predictions["results"]) == ["my_clip"] and predictions["results"]["my_clip"] == instances
    assert instances and all(0 <= i["segment"][0] < i["segment"][1] <= 3 * 0.64 + 1e-9 for i in instances)
    assert os.path.getsize(os.path.join(out, "my_clip.png")) > 10_000
    # the same as extracting first and giving the feature files
    feats = vextractor.extract_video(video, weights["rgb"], weights["flow"])
    for stream in ("rgb", "flow"):
        np.save(tmp_path / f"my_clip_{stream}.npy", feats[stream])
    again = testing.main(args + ["--output_path", str(tmp_path / "again"), "--features",
                                 str(tmp_path / "my_clip_rgb.npy"), str(tmp_path / "my_clip_flow.npy")])
    assert again == instances


def test_video_needs_the_weights_of_its_streams(tmp_path, weights, capsys):
    with pytest.raises(Exception, match="--video needs --flow_weights"):
        testing.main(["--model_file", weights["model"], "--video", str(tmp_path / "x.mp4"),
                      "--rgb_weights", weights["rgb"], "--output_path", str(tmp_path / "o")])


def test_training_without_test_annotations_writes_predictions(tmp_path, capsys):
    root = str(tmp_path / "mine")
    write_dataset(root, num_train=8, num_test=4)
    gt = json.load(open(os.path.join(root, "gt.json")))
    for entry in gt["database"].values():
        if entry["subset"] == "test":
            entry["annotations"] = []
    json.dump(gt, open(os.path.join(root, "gt.json"), "w"))
    run = str(tmp_path / "run")
    results = main.main(TINY_ARGS + ["--data_path", root, "--num_iters", "4", "--eval_every", "2",
                                     "--output_path", run, "--seed", "0"])
    assert "mAP" not in results and results["num_videos"] == 4
    assert "no annotation: no mAP" in capsys.readouterr().out
    predictions = json.load(open(os.path.join(run, "predictions.json")))
    assert sorted(predictions["results"]) == [f"video_test_{i:04d}" for i in range(4)]
    testing.main(TEST_ARGS + ["--data_path", root, "--model_file", os.path.join(run, "last.pt"),
                              "--output_path", str(tmp_path / "t")])
    assert "has no annotation, so no mAP" in capsys.readouterr().out
