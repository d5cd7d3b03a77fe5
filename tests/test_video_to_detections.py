"""From video files to detections: the Python API (detector.py, the README example),
test.py --video on several files and folders, and the checks made before any extraction;
training on your own videos whose test subset has no temporal annotation yet."""
import json
import os
import re

import numpy as np
import pytest
import torch

import main
import test as testing
import video.extractor as vextractor
from checkpoint import CheckpointError
from conftest import ROOT, TEST_ARGS, TINY_ARGS, write_dataset
from detector import Detector, DetectorError, Instance
from model import BaSNet
from test_extract_features import moving_square, write_video


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random I3D weight files in the pytorch-i3d layout and bare BaS-Net state_dicts for
    2 x 1024 features (both streams) and 1024 (one stream), with the 20 THUMOS14 classes
    (as the authors' release)."""
    from video.i3d import random_i3d
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for stream, channels, seed in (("rgb", 3, 0), ("flow", 2, 1)):
        paths[stream] = str(folder / f"{stream}_imagenet.pt")
        torch.save(random_i3d(channels, seed=seed).state_dict(), paths[stream])
    torch.manual_seed(0)
    paths["model"] = str(folder / "BaS-Net_model.pkl")
    torch.save(BaSNet(2048, 20, 8, hidden_dim=16).state_dict(), paths["model"])
    paths["model_1024"] = str(folder / "one_stream.pkl")
    torch.save(BaSNet(1024, 20, 8, hidden_dim=16).state_dict(), paths["model_1024"])
    return paths


@pytest.fixture
def extractor(monkeypatch):
    """video.extractor.I3DExtractor on small crops and in this process (the recipe is the
    same, only faster), counting the extractors made and the videos asked for."""
    calls = {"made": 0, "videos": []}
    real = vextractor.I3DExtractor

    class Small(real):
        def __init__(self, *args, **kw):
            calls["made"] += 1
            super().__init__(*args, **{**kw, "resize": 40, "crop": 32, "workers": 0})

        def extract(self, path, progress=None, streams=None):
            calls["videos"].append(os.path.basename(path))
            return super().extract(path, progress, streams)
    monkeypatch.setattr(vextractor, "I3DExtractor", Small)
    return calls


ARGS = ["--num_segments", "8", "--class_th", "0.01", "--device", "cpu", "--no_progress"]


def test_readme_example_runs_as_written(tmp_path, weights, extractor, monkeypatch, capsys):
    text = open(os.path.join(ROOT, "README.md")).read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "from detector import Detector" in b]
    assert len(blocks) == 1
    # the files the example names, in a folder of their own: random weights, a bare state_dict
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN").mkdir()
    os.link(weights["model"], tmp_path / "RUN" / "last.pt")
    for stream in ("rgb", "flow"):
        os.link(weights[stream], tmp_path / f"{stream}_imagenet.pt")
    write_video(tmp_path / "video.mp4", moving_square(70), fps=30, fourcc="mp4v")       # 59 frames at 25 fps
    namespace = {}
    exec(blocks[0], namespace)
    result = namespace["result"]
    assert extractor == {"made": 1, "videos": ["video.mp4"]}
    assert result.num_segments == 3 and result.seconds == pytest.approx(3 * 0.64)
    assert sorted(result.class_scores) == sorted(namespace["det"].classes) and len(result.class_scores) == 20
    assert all(0 <= p <= 1 for p in result.class_scores.values())
    assert result.instances and all(isinstance(i, Instance) for i in result.instances)
    assert [i.score for i in result.instances] == sorted((i.score for i in result.instances), reverse=True)
    assert all(0 <= i.start < i.end <= 3 * 0.64 + 1e-9 and i.label in result.predicted for i in result.instances)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split()[0] == result.instances[0].label and len(printed) == len(result.instances)
    namespace["det"].close()


def test_detector_api_features_and_video_agree(tmp_path, weights, extractor):
    video = write_video(tmp_path / "clip.avi", moving_square(70), fps=30)
    with Detector(weights["model"], rgb_weights=weights["rgb"], flow_weights=weights["flow"], device="cpu",
                  num_segments=8, class_th=0.01) as det:
        feats = det.features(video)
        assert sorted(feats) == ["flow", "rgb"] and feats["rgb"].shape == (3, 1024)
        from_video = det.detect(video)
        assert extractor["made"] == 1 and extractor["videos"] == ["clip.avi", "clip.avi"]      # networks loaded once
    from_features = Detector(weights["model"], device="cpu", num_segments=8, class_th=0.01).detect_features(
        feats["rgb"], feats["flow"], name="clip")
    assert from_video.video == "clip" and from_video.instances == from_features.instances
    assert from_video.class_scores == from_features.class_scores
    # the instances are the written ones, best first; the scores those of the class
    assert sorted((i.as_dict() for i in from_video.instances), key=lambda d: -d["score"]) == \
        sorted(from_video.results(), key=lambda d: -d["score"])
    # one concatenated array is the same input
    both = Detector(weights["model"], device="cpu", num_segments=8, class_th=0.01)
    assert both.detect_features(np.concatenate([feats["rgb"], feats["flow"]], axis=1), name="clip").instances == \
        from_video.instances
    with pytest.raises(CheckpointError, match="expects features 2048 wide, but clip's are 1024"):
        both.detect_features(feats["rgb"], name="clip")
    with pytest.raises(DetectorError, match="made without I3D weight files"):
        both.detect(video)
    with pytest.raises(DetectorError, match="unknown option"):
        Detector(weights["model"], device="cpu", class_threshold=0.1)


def test_video_file_to_detections_and_figure(tmp_path, weights, extractor, capsys):
    video = write_video(tmp_path / "my_clip.avi", moving_square(70), fps=30)          # 59 frames at 25 fps
    out = str(tmp_path / "out")
    args = ["--model_file", weights["model"]] + ARGS
    run = testing.main(args + ["--output_path", out, "--video", video, "--rgb_weights", weights["rgb"],
                               "--flow_weights", weights["flow"]])
    printed = capsys.readouterr().out
    assert "my_clip: 3 segments (1.9 s)" in printed                                   # 59 // 16 = 3
    assert run.skipped == {} and run.exit_status == 0
    assert extractor == {"made": 1, "videos": ["my_clip.avi"]}
    instances = run.detections["my_clip"].results()
    predictions = json.load(open(os.path.join(out, "predictions.json")))
    assert list(predictions["results"]) == ["my_clip"] and predictions["results"]["my_clip"] == instances
    assert instances and all(0 <= i["segment"][0] < i["segment"][1] <= 3 * 0.64 + 1e-9 for i in instances)
    assert os.path.getsize(os.path.join(out, "my_clip.png")) > 10_000
    # the same as extracting first and giving the feature files
    with vextractor.I3DExtractor(weights["rgb"], weights["flow"]) as ex:
        feats = ex.extract(video)
    for stream in ("rgb", "flow"):
        np.save(tmp_path / f"my_clip_{stream}.npy", feats[stream])
    again = testing.main(args + ["--output_path", str(tmp_path / "again"), "--features",
                                 str(tmp_path / "my_clip_rgb.npy"), str(tmp_path / "my_clip_flow.npy")])
    assert again == instances


def test_a_folder_of_three_clips_one_broken(tmp_path, weights, extractor, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "alpha.avi", moving_square(70), fps=30)
    (clips / "broken.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    write_video(clips / "gamma.avi", moving_square(50, seed=2), fps=25)              # 50 frames: 3 snippets
    (clips / "notes.txt").write_text("not a video")
    out = tmp_path / "out"
    status = testing.run(["--model_file", weights["model"], "--output_path", str(out), "--video", str(clips),
                          "--rgb_weights", weights["rgb"], "--flow_weights", weights["flow"]] + ARGS)
    captured = capsys.readouterr()
    assert status == 1
    assert extractor["videos"] == ["alpha.avi", "broken.mp4", "gamma.avi"]           # not the .txt
    predictions = json.load(open(out / "predictions.json"))["results"]
    assert sorted(predictions) == ["alpha", "gamma"] and all(predictions.values())
    assert sorted(f for f in os.listdir(out) if f.endswith(".png")) == ["alpha.png", "gamma.png"]
    assert "skipped broken: " in captured.err and str(clips / "broken.mp4") in captured.err
    assert captured.err.strip().splitlines()[-1] == "detections in 2 of 3 videos; skipped 1: broken"
    assert "[2/3]" in captured.err and "Traceback" not in captured.err
    # a file and a folder together, the broken one alone: nothing usable is an error (status 2)
    status = testing.run(["--model_file", weights["model"], "--output_path", str(tmp_path / "none"),
                          "--video", str(clips / "broken.mp4"), "--rgb_weights", weights["rgb"],
                          "--flow_weights", weights["flow"]] + ARGS)
    err = capsys.readouterr().err
    assert status == 2 and err.splitlines()[-1].startswith("error: no video could be used (1): broken: ")
    assert not os.path.exists(tmp_path / "none" / "predictions.json")


@pytest.mark.parametrize("model, streams, extra, message", [
    ("model_1024", ("rgb", "flow"), [], "expects features 1024 wide, but the streams used (rgb + flow, modal all) "
                                    "give 2048 (1024 per I3D stream); 1024 fits one stream: give modal rgb or flow"),
    ("model", (), [], "--video needs the I3D weight files of the checkpoint's streams: --rgb_weights and/or"),
    ("model", ("rgb",), [], "the checkpoint uses the rgb and flow stream(s): flow_weights missing (test.py: --flow_weights"),
    ("model", ("rgb", "flow"), ["--modal", "rgb"], "expects features 2048 wide, but the streams used (rgb, modal rgb) "
                                                 "give 1024"),
])
def test_a_width_or_weights_mismatch_is_refused_before_extraction(tmp_path, weights, extractor, capsys, model,
                                                                   streams, extra, message):
    video = write_video(tmp_path / "clip.avi", moving_square(40), fps=25)
    given = extra + [arg for s in streams for arg in (f"--{s}_weights", weights[s])]
    status = testing.run(["--model_file", weights[model], "--video", video, "--output_path", str(tmp_path / "o")]
                         + given + ARGS)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and message in err, err
    assert extractor == {"made": 0, "videos": []}
    assert not os.path.exists(tmp_path / "o")
    Detector(weights["model"], rgb_weights=weights["rgb"], flow_weights=weights["flow"], device="cpu").close()
    assert extractor["made"] == 1              # the extractor a Detector builds is the counted one


def test_the_one_stream_checkpoint_with_its_modal_detects(tmp_path, weights, extractor, capsys):
    video = write_video(tmp_path / "clip.avi", moving_square(40), fps=25)
    run = testing.main(["--model_file", weights["model_1024"], "--video", video, "--modal", "flow",
                        "--rgb_weights", weights["rgb"], "--flow_weights", weights["flow"],
                        "--output_path", str(tmp_path / "o")] + ARGS)
    assert run.detections["clip"].num_segments == 2 and extractor["made"] == 1
    assert "--rgb_weights is not used" in capsys.readouterr().err


def test_nothing_is_replaced_and_an_unwritable_folder_is_refused_first(tmp_path, weights, extractor, capsys,
                                                                       unwritable_dir):
    video = write_video(tmp_path / "clip.avi", moving_square(40), fps=25)
    common = ["--model_file", weights["model"], "--rgb_weights", weights["rgb"], "--flow_weights", weights["flow"]]
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.json").write_text("earlier")
    for mode in (["--video", video], ["--features", str(tmp_path / "absent.npy")]):
        status = testing.run(common + mode + ["--output_path", str(out)] + ARGS)
        err = capsys.readouterr().err
        assert status == 2 and f"error: {out} already holds predictions.json; " in err and "--overwrite" in err
    assert (out / "predictions.json").read_text() == "earlier" and extractor["made"] == 0
    status = testing.run(common + ["--video", video, "--output_path", str(out), "--overwrite"] + ARGS)
    assert status == 0 and list(json.load(open(out / "predictions.json"))["results"]) == ["clip"]
    capsys.readouterr()
    made = extractor["made"]
    assert made == 1
    status = testing.run(common + ["--video", video, "--output_path", os.path.join(unwritable_dir, "o")] + ARGS)
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and "--output_path" in err and "cannot be written" in err
    assert extractor["made"] == made


def test_split_mode_does_not_replace_predictions_either(tmp_path, tiny_data, capsys):
    run = str(tmp_path / "run")
    main.main(TINY_ARGS + ["--data_path", tiny_data, "--num_iters", "2", "--eval_every", "2", "--output_path", run])
    out = tmp_path / "t"
    out.mkdir()
    (out / "predictions.json").write_text("from --video")
    status = testing.run(TEST_ARGS + ["--data_path", tiny_data, "--model_file", os.path.join(run, "last.pt"),
                                      "--output_path", str(out)])
    assert status == 2 and "already holds predictions.json" in capsys.readouterr().err
    assert (out / "predictions.json").read_text() == "from --video"


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


def test_bad_feature_files_are_one_line_errors(tmp_path, weights, capsys):
    """--features: files of unequal length, of another rank, empty or holding NaN are refused
    (by Detector.detect_features) with one line naming the video, and nothing is written."""
    good = np.zeros((6, 1024), np.float32)
    nan = good.copy()
    nan[2, 5] = np.nan
    cases = {"unequal": (good, good[:5], "arrays of equal length"), "rank": (good, good[None], "(segments, width)"),
             "empty": (good[:0], good[:0], "non-empty"), "nan": (good, nan, "hold NaN or Inf")}
    for name, (rgb, flow, message) in cases.items():
        files = [str(tmp_path / f"{name}.npy"), str(tmp_path / f"{name}_flow.npy")]
        np.save(files[0], rgb)
        np.save(files[1], flow)
        out = tmp_path / f"out_{name}"
        status = testing.run(["--model_file", weights["model"], "--features", *files, "--output_path", str(out)] + ARGS)
        err = capsys.readouterr().err
        assert status == 2 and err.count("\n") == 1 and err.startswith(f"error: {name}: ") and message in err, err
        assert not (out / "predictions.json").exists()
