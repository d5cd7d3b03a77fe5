"""options.py: one definition per option, and a training run's config.json holds training options only."""
import argparse
import json
import os
import subprocess
import sys

import pytest

import main
import options
from conftest import ROOT, TINY_ARGS, write_dataset

# What only test.py, visualize.py or extract_features.py take (written out here, not taken
# from options.py): none of it may reach a training run's config.json.
NOT_TRAINING = {"video", "videos", "features", "rgb_weights", "flow_weights", "flow_backend", "flow_batch",
                "flow_before_crop", "snippets_per_batch", "streams", "workers", "resize", "crop", "shard", "gt",
                "split", "out", "inputs"}


def test_training_config_json_holds_training_options_only(tmp_path):
    root = str(tmp_path / "data")
    write_dataset(root)
    run = str(tmp_path / "run")
    main.main(TINY_ARGS + ["--data_path", root, "--num_iters", "2", "--eval_every", "2", "--output_path", run,
                           "--seed", "0"])
    with open(os.path.join(run, "config.json")) as f:
        keys = set(json.load(f))
    assert keys == set(options.DEFAULTS)
    assert not keys & NOT_TRAINING
    assert {"lr", "num_segments", "batch_size", "seed", "device", "data_path"} <= keys


def test_resuming_a_run_saved_by_an_older_version_drops_its_test_only_keys():
    saved = dict(vars(options.parse_args(["--dataset", "synthetic"])), video=None, rgb_weights=None,
                 flow_backend="auto", features=None, videos=None)
    cfg = options.resolve({}, saved=saved, resuming=True)
    assert not set(vars(cfg)) & NOT_TRAINING and cfg.dataset == "synthetic"


def actions(parser):
    return {a.dest: a for a in parser._actions}


def test_options_shared_by_test_py_and_extract_features_py_are_one_definition():
    test, extract = actions(options.test_parser()), actions(options.extraction_parser())
    for dest in ("rgb_weights", "flow_weights", "flow_backend", "device", "no_progress"):
        a, b = test[dest], extract[dest]
        assert (a.option_strings, a.help, a.choices) == (b.option_strings, b.help, b.choices), dest
    assert f"AUTO_TVL1_MAX_CORES = {options.AUTO_TVL1_MAX_CORES} cores" in test["flow_backend"].help
    # --batch_size is test.py's videos per pass; extraction's snippets per pass has its own name
    assert "videos" in test["batch_size"].help and "batch_size" not in extract
    spellings = [(a.option_strings, a.help == argparse.SUPPRESS) for a in options.extraction_parser()._actions
                 if a.dest == "snippets_per_batch"]
    assert spellings == [(["--snippets_per_batch"], False), (["--batch_size"], True)]     # the old one hidden
    # the old spelling is still accepted, and means snippets
    assert options.extraction_options(["v.mp4", "--out", "o", "--batch_size", "3"]).snippets_per_batch == 3


def test_importing_options_imports_no_video_code():
    code = "import sys, options; options.test_parser(); print(sorted(m for m in sys.modules if m == 'cv2' or m.split('.')[0] == 'video'))"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--flow_backend", "farneback"], ["--model_file"]])
def test_parser_errors_are_config_errors(argv):
    with pytest.raises(options.ConfigError):
        options.given_options(options.test_parser(), argv)
