"""End to end on a tiny generated dataset: train, evaluate, test a checkpoint."""
import json
import os
from collections import OrderedDict

import numpy as np
import pytest
import torch

import main
from checkpoint import CheckpointError
import test as testing
from conftest import TEST_ARGS, TINY_ARGS, folder_digest, write_dataset
from dataset import load_dataset
from evaluation import Evaluator
from model import BaSNet
from options import parse_args
from train import build_model


@pytest.fixture(scope="module")
def trained_run(shared_data, tmp_path_factory):
    """(options, run folder, final results) of one 60-step run, trained once for the tests
    that evaluate its checkpoint. Read-only."""
    run = str(tmp_path_factory.mktemp("pipeline") / "run")
    args = TINY_ARGS + ["--data_path", shared_data, "--num_iters", "60", "--eval_every", "30",
                        "--output_path", run, "--seed", "0"]
    results = main.main(args)
    before = folder_digest(run)
    yield args, run, results
    assert folder_digest(run) == before, "a test changed the shared run instead of a copy"


def test_training_beats_untrained_model_and_writes_the_run_folder(shared_data, trained_run, tmp_path):
    args, run, trained = trained_run

    cfg = parse_args(args)
    classes, _, test_set = load_dataset(cfg, splits=("test",))
    torch.manual_seed(0)
    untrained = Evaluator(cfg, test_set, classes)(build_model(cfg, test_set.feature_dim, len(classes)),
                                                  torch.device("cpu"))
    avg = lambda r: r["averages"]["0.1:0.7"]
    assert avg(trained) > avg(untrained) + 0.2, (avg(trained), avg(untrained))

    for name in ("config.json", "last.pt", "predictions.json", "results.json"):
        assert os.path.isfile(os.path.join(run, name)), name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(run))
    preds = json.load(open(os.path.join(run, "predictions.json")))
    assert preds["version"] == "VERSION 1.3" and set(preds["results"]) == set(test_set.names)
    inst = next(i for v in preds["results"].values() for i in v)
    assert set(inst) == {"label", "score", "segment"} and inst["segment"][0] < inst["segment"][1]
    saved = json.load(open(os.path.join(run, "results.json")))
    assert saved["average_mAP"] == pytest.approx(trained["average_mAP"])
    assert all(0 <= m <= 1 for m in saved["mAP"])
    assert json.load(open(os.path.join(run, "config.json")))["seed"] == 0

    # test.py on the checkpoint reproduces the last evaluation exactly
    out = str(tmp_path / "test_out")
    again = testing.main(TEST_ARGS + ["--data_path", shared_data, "--model_file", os.path.join(run, "last.pt"),
                                      "--output_path", out])
    assert again["mAP"] == pytest.approx(trained["mAP"], abs=1e-12)
    assert os.path.isfile(os.path.join(out, "predictions.json"))


def test_release_state_dict_loads_strictly_and_runs_on_cpu(tmp_path):
    """A state_dict shaped and named like the authors' release (.pkl, 20 classes,
    2 x 1024 features) evaluates with test.py."""
    root = str(tmp_path / "data")
    write_dataset(root, num_train=20, num_test=4, num_classes=20, dim=1024, length=(20, 30))
    torch.manual_seed(0)
    release = BaSNet(2048, 20, 750)
    state = OrderedDict((k, v.clone()) for k, v in release.state_dict().items())
    pkl = str(tmp_path / "BaS-Net_model.pkl")
    torch.save(state, pkl)
    res = testing.main(["--data_path", root, "--model_file", pkl, "--num_segments", "64",
                        "--output_path", str(tmp_path / "out"), "--device", "cpu"])
    assert len(res["mAP"]) == 9
    # strict: a renamed key is refused
    state["cas_module.conv_3.weight"] = state.pop("cas_module.conv_3.0.weight")
    torch.save(state, pkl)
    with pytest.raises(CheckpointError, match="conv_3.0.weight"):
        testing.main(["--data_path", root, "--model_file", pkl, "--output_path", str(tmp_path / "out2")])


def test_any_feature_width_and_single_stream(tmp_path):
    root = str(tmp_path / "data")
    write_dataset(root, num_train=8, num_test=4, dim=5)
    run = str(tmp_path / "run")
    res = main.main(TINY_ARGS + ["--data_path", root, "--modal", "flow", "--num_iters", "2",
                                 "--eval_every", "2", "--output_path", run])
    ckpt = torch.load(os.path.join(run, "last.pt"), weights_only=True)
    assert ckpt["feature_dim"] == 5 and ckpt["model"]["cas_module.conv_1.0.weight"].shape[1] == 5
    assert np.isfinite(res["average_mAP"])


def test_single_video_inference_matches_the_test_pass(shared_data, trained_run, tmp_path):
    _, run, _ = trained_run
    full = json.load(open(os.path.join(run, "predictions.json")))["results"]["video_test_0001"]
    feats = [os.path.join(shared_data, "features", "test", s, "video_test_0001.npy") for s in ("rgb", "flow")]
    one = testing.main(["--model_file", os.path.join(run, "last.pt"), "--features"] + feats +
                       ["--output_path", str(tmp_path / "one")])
    def same(a, b):  # batch of 1 versus a batch of videos: float rounding in the scores only
        assert [(i["label"], i["segment"]) for i in a] == [(i["label"], i["segment"]) for i in b]
        assert [i["score"] for i in a] == pytest.approx([i["score"] for i in b], abs=1e-6)
    assert len(one) > 0
    same(one, full)
    # one concatenated file gives the same
    both = str(tmp_path / "video_test_0001.npy")
    np.save(both, np.concatenate([np.load(f) for f in feats], axis=1))
    same(testing.main(["--model_file", os.path.join(run, "last.pt"), "--features", both,
                       "--output_path", str(tmp_path / "two")]), full)


def test_test_py_reports_background_detection(trained_run, tmp_path):
    _, run, _ = trained_run
    res = testing.main(["--model_file", os.path.join(run, "last.pt"), "--output_path", str(tmp_path / "t")])
    table = json.load(open(tmp_path / "t" / "results.json"))["background_detection"]
    assert set(table) == {"base branch", "suppression branch", "filter (W < 0.5)"}
    assert res["background_detection"] == table
    for m in table.values():
        assert 0 <= m["f_measure"] <= 1


def test_activitynet_preset_subsets_and_thresholds(tmp_path):
    """The anet13 preset: official subset names, tIoU 0.5:0.05:0.95 and its average."""
    root = str(tmp_path / "data")
    db = write_dataset(root, num_train=8, num_test=4)
    for video in db.values():
        video["subset"] = {"train": "training", "test": "validation"}[video["subset"]]
    json.dump({"version": "VERSION 1.3", "taxonomy": [], "database": db}, open(os.path.join(root, "gt.json"), "w"))
    res = main.main(["--dataset", "anet13", "--data_path", root, "--num_segments", "16", "--hidden_dim", "16",
                     "--num_iters", "2", "--eval_every", "2", "--output_path", str(tmp_path / "run"),
                     "--device", "cpu", "--no_progress"])
    assert res["tiou"] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]
    assert set(res["averages"]) == {"0.5:0.95"} and res["subset"] == "validation"
    assert res["num_videos"] == 4
